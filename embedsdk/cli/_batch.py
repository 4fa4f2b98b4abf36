"""``embedsdk embed --via batch`` and ``embedsdk batch status|cancel|list``.

``--via batch`` reads INPUT twice: once to plan the batches (the texts no cache holds), and,
when every vector is in the store, once more through the same path as the default route,
which then finds them all stored and writes the output in input order without a request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError, EmbedSDKError, InvalidInputError
from .._text import append_note
from ..batchapi import (
    STDIN_COPY,
    TERMINAL,
    BatchAPI,
    JobState,
    job_store,
    run_job,
)
from ..client import NOT_GIVEN, find_api_key, resolve_options
from ..files import STDIN, STDOUT, LineNumbers, OutputUsageError, import_pyarrow, lock_output
from ._options import api_key_of, client_kwargs, plural


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Batch API (half the price, results within 24 hours)")
    group.add_argument(
        "--via",
        choices=("embeddings", "batch"),
        default="embeddings",
        help="embeddings: send the texts to /embeddings (default); batch: through the "
        "provider's Batch API (/files, /batches), where OpenAI charges half and no rate "
        "limit applies; waits for the batches, and resumes them when run again",
    )
    group.add_argument(
        "--job-dir",
        metavar="DIR",
        help="--via batch: where the job's state is kept (default: OUTPUT.batch); removed "
        "when OUTPUT is written, unless --keep-job",
    )
    group.add_argument(
        "--batch-failed",
        choices=("batch", "embeddings"),
        default="batch",
        help="--via batch: requests that failed in a batch (or expired) go again in a new "
        "batch (default), or to /embeddings at full price",
    )
    group.add_argument(
        "--keep-job", action="store_true", help="--via batch: keep the job directory"
    )


def job_dir_of(args: argparse.Namespace) -> Path:
    if args.job_dir:
        return Path(args.job_dir).expanduser()
    if args.output == STDOUT:
        raise OutputUsageError("--via batch with -o - needs --job-dir DIR for the job's state")
    return Path(args.output + ".batch")


def run_via_batch(
    args: argparse.Namespace, prepare: Any, rows_of: Any, write: Any, by_line: Any
) -> int:
    """Plan and send the batches, then ``write`` the output as the default route does (the
    ``embed`` command's steps are passed in: it imports this module, not the other way)."""
    fmt, input_fmt = prepare(args)
    if fmt == "parquet":
        import_pyarrow()  # before the batches are paid for, not when the output is written
    job_dir = job_dir_of(args)
    kwargs = client_kwargs(args)
    options = resolve_options(**kwargs)
    ours = False  # whether this run held the job directory (its state is ours to report)
    try:
        with lock_output(args.output), job_store(options, job_dir) as stores:
            ours = True
            status = _plan_send_write(
                _readable_twice(args, job_dir), fmt, input_fmt, job_dir, options, stores,
                rows_of, write, by_line,
            )  # fmt: skip
    except EmbedSDKError as exc:  # job_store has removed a job that planned nothing
        kept = ours and job_dir.exists()
        if kept and not isinstance(exc, (InvalidInputError, ConfigurationError)):
            append_note(
                exc, f"the job's state is kept in {job_dir}: run the same command again to resume"
            )
        raise
    if status == 0 and not args.keep_job:
        shutil.rmtree(job_dir, ignore_errors=True)
    return status


def _readable_twice(args: argparse.Namespace, job_dir: Path) -> argparse.Namespace:
    """``args``, reading standard input from a copy in the job directory: the texts are read
    twice (to plan the batches, then to write the output in order). Copied a megabyte at a
    time, so a pipe of any size takes no memory."""
    if args.input != STDIN:
        return args
    copy = job_dir / STDIN_COPY
    with open(copy, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    # Messages still name standard input (``shown_input``), not the copy.
    return argparse.Namespace(**{**vars(args), "input": str(copy), "shown_input": STDIN})


def _plan_send_write(
    args: argparse.Namespace,
    fmt: str,
    input_fmt: str,
    job_dir: Path,
    options: Any,
    stores: Any,
    rows_of: Any,
    write: Any,
    by_line: Any,
) -> int:
    """Run the job (reading INPUT, twice if it changed since the job was planned), then
    write the output from the job's store."""
    numbers = [LineNumbers()]  # of the latest reading

    def texts() -> Any:
        numbers[0] = LineNumbers()
        return (row.text for row in rows_of(args, input_fmt, numbers[0]))

    show = not args.quiet and sys.stderr.isatty()
    try:
        report = asyncio.run(
            run_job(
                texts,
                job_dir,
                options,
                stores,
                failed=args.batch_failed,
                progress=show,
            )
        )
    except InvalidInputError as exc:
        raise by_line(exc, getattr(args, "shown_input", args.input), numbers[0]) from None
    except KeyboardInterrupt:
        if JobState.load(job_dir).parts:
            print(
                "embedsdk: note: the batches go on at the provider; run the same command "
                f"again to resume them (state in {job_dir}), or stop them with "
                f"`embedsdk batch cancel {job_dir}`",
                file=sys.stderr,
            )
        raise
    if not args.quiet:
        print(f"embedsdk: {report.summary()}", file=sys.stderr)
    return int(write(args, fmt, input_fmt, {"cache": stores.job}))


# -- embedsdk batch ----------------------------------------------------------------------------


def _key_for(args: argparse.Namespace, base_url: str) -> str | None:
    given = api_key_of(args)
    key, _ = find_api_key(None if given is NOT_GIVEN else given, base_url)
    return key


def _run_status(args: argparse.Namespace) -> int:
    state = JobState.load(args.job_dir)

    async def refresh() -> None:
        live = [p for p in state.parts if p.get("batch_id") and p["stage"] != "finished"]
        if not live:
            return
        async with BatchAPI(state.data["base_url"], _key_for(args, state.data["base_url"])) as api:
            for part in live:
                batch = await api.retrieve(part["batch_id"])
                part["status"] = batch.get("status")
                part["counts"] = batch.get("request_counts") or part["counts"]

    asyncio.run(refresh())
    if args.json:
        print(json.dumps({"job": state.job_id, "parts": state.parts}))
        return 0
    data = state.data
    print(f"job {state.job_id} in {state.directory}: {data['model']} at {data['base_url']}")
    for part in state.parts:
        counts = part["counts"]
        print(
            f"  part {part['n']}  {part.get('batch_id') or '-':<28} "
            f"{part.get('status') or part['stage']:<11} "
            f"{counts.get('completed', 0):,}+{counts.get('failed', 0):,} failed of "
            f"{counts.get('total', part['requests']):,} requests ({plural(part['inputs'], 'text')})"
        )
    return 0


def _run_cancel(args: argparse.Namespace) -> int:
    state = JobState.load(args.job_dir)
    live = [p for p in state.parts if p.get("batch_id") and p["stage"] != "finished"]

    async def cancel() -> tuple[int, list[str]]:
        asked, failures = 0, []
        async with BatchAPI(state.data["base_url"], _key_for(args, state.data["base_url"])) as api:
            for part in live:
                try:
                    batch = await api.retrieve(part["batch_id"])
                    if batch.get("status") in TERMINAL or batch.get("status") == "cancelling":
                        print(f"part {part['n']}: batch {part['batch_id']} {batch.get('status')}")
                        continue
                    batch = await api.cancel(part["batch_id"])
                except EmbedSDKError as exc:  # one batch's error must not spare the others
                    failures.append(f"part {part['n']}: {exc}")
                    continue
                asked += 1
                print(f"part {part['n']}: batch {part['batch_id']} {batch.get('status')}")
        return asked, failures

    asked, failures = asyncio.run(cancel())
    print(
        f"asked to cancel {plural(asked, 'batch')}; what they finished is kept: run the "
        "embed command again to collect it (and to send the rest again)"
    )
    if failures:
        raise EmbedSDKError("could not cancel every batch: " + "; ".join(failures))
    return 0


def _run_list(args: argparse.Namespace) -> int:
    base_url = resolve_options(base_url=args.base_url or NOT_GIVEN, api_key="").base_url

    async def listing() -> list[dict[str, Any]]:
        async with BatchAPI(base_url, _key_for(args, base_url)) as api:
            return [b async for b in api.batches() if (b.get("metadata") or {}).get("embedsdk_job")]

    found = asyncio.run(listing())
    for batch in found:
        counts = batch.get("request_counts") or {}
        print(
            f"{batch['id']}  {batch.get('status'):<11} {counts.get('completed', 0):,} of "
            f"{counts.get('total', 0):,} requests  job {batch['metadata']['embedsdk_job'][:12]} "
            f"part {batch['metadata'].get('embedsdk_part')}"
        )
    if not found:
        print(f"no batches of embedsdk jobs at {base_url}")
    return 0


def add_batch_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "batch",
        help="show, cancel or list the Batch API jobs of embed --via batch",
        description="The batches of `embedsdk embed --via batch` jobs. The API key comes "
        "from the environment (as for embed) or --api-key-file.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    status = actions.add_parser("status", help="each batch of a job: status, requests done")
    status.add_argument("job_dir", metavar="JOB_DIR")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(run=_run_status)
    cancel = actions.add_parser("cancel", help="cancel a job's batches still running")
    cancel.add_argument("job_dir", metavar="JOB_DIR")
    cancel.set_defaults(run=_run_cancel)
    listing = actions.add_parser("list", help="the account's batches made by embedsdk")
    listing.add_argument("--base-url", metavar="URL", help="API base URL (default: as embed)")
    listing.set_defaults(run=_run_list)
    for action in (status, cancel, listing):
        keys = action.add_mutually_exclusive_group()
        keys.add_argument("--api-key-file", metavar="FILE", help="read the API key from FILE")
        keys.add_argument("--no-api-key", action="store_true", help="send no API key")


__all__ = ["add_batch_options", "add_batch_parser", "run_via_batch"]
