"""The simulated provider's Batch API (``/v1/files``, ``/v1/batches``), over HTTP on 127.0.0.1.

Every scenario runs in simulated time (``run_in_virtual_time``): the simulator's batch waits
are asyncio timers, so a batch's minutes (or its 24 h window) pass in milliseconds, the same
on a loaded machine as on an idle one. The client is a plain ``aiohttp.ClientSession``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable
from typing import Any, Callable, TypeVar

import aiohttp
import numpy as np
import pytest

from embedsdk.testing import SimConfig, SimulatedProvider, expected_matrix, run_in_virtual_time

T = TypeVar("T")
DIM = 8
MODEL = "BAAI/bge-m3"
TERMINAL = ("completed", "failed", "expired", "cancelled")


class Client:
    """A few calls of the Batch API, with answers as (status, JSON or bytes)."""

    def __init__(self, sim: SimulatedProvider, session: aiohttp.ClientSession, key: str) -> None:
        self.sim = sim
        self.session = session
        self.headers = {"Authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {**self.headers, **kw.pop("headers", {})}
        async with self.session.request(
            method, self.sim.base_url + path, headers=headers, **kw
        ) as r:
            raw = await r.read()
            self.last_headers = r.headers
            if r.content_type == "application/json":
                return r.status, json.loads(raw)
            return r.status, raw

    async def upload(
        self, content: bytes, purpose: str = "batch", filename: str = "in.jsonl"
    ) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("purpose", purpose)
        form.add_field("file", content, filename=filename, content_type="application/jsonl")
        return await self.call("POST", "/files", data=form)

    async def create(self, file_id: str, **extra: Any) -> tuple[int, Any]:
        payload = {"input_file_id": file_id, "endpoint": "/v1/embeddings"}
        payload.update({"completion_window": "24h", **extra})
        return await self.call("POST", "/batches", json=payload)

    async def submit(self, lines: list[dict[str, Any]]) -> dict[str, Any]:
        status, file = await self.upload(jsonl(lines))
        assert status == 200, file
        status, batch = await self.create(file["id"])
        assert status == 200, batch
        return dict(batch)

    async def wait(
        self, batch_id: str, every: float = 0.25, seen: list[str] | None = None
    ) -> dict[str, Any]:
        """Poll until the batch is terminal; ``seen`` gets each status met, once."""
        while True:
            status, batch = await self.call("GET", f"/batches/{batch_id}")
            assert status == 200, batch
            if seen is not None and (not seen or seen[-1] != batch["status"]):
                seen.append(batch["status"])
            if batch["status"] in TERMINAL:
                return dict(batch)
            await asyncio.sleep(every)

    async def lines(self, file_id: str | None) -> list[dict[str, Any]]:
        """The JSON lines of a file (none for a null file id)."""
        if file_id is None:
            return []
        status, raw = await self.call("GET", f"/files/{file_id}/content")
        assert status == 200 and isinstance(raw, bytes)
        return [json.loads(line) for line in raw.splitlines()]


def simulate(
    scenario: Callable[[Client], Awaitable[T]], key: str = "sk-test", **config: Any
) -> tuple[T, float]:
    """Run ``scenario`` against a fresh provider in simulated time: (result, seconds)."""

    async def main() -> T:
        provider = SimulatedProvider(dim=DIM, api_key=key, **config)
        async with provider as sim, aiohttp.ClientSession() as session:
            return await scenario(Client(sim, session, key))

    return run_in_virtual_time(main())


def request(custom_id: str, texts: Any, url: str = "/v1/embeddings", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": url,
        "body": {"model": MODEL, "input": texts, **body},
    }


def jsonl(lines: list[Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def chunks(texts: list[str], size: int) -> dict[str, list[str]]:
    """custom_id -> texts, ``size`` texts a request."""
    return {f"req-{i}": texts[i : i + size] for i in range(0, len(texts), size)}


def rows(body: dict[str, Any]) -> np.ndarray:
    """An /embeddings answer's vectors, placed by index (base64 little-endian or floats)."""
    found: list[Any] = [None] * len(body["data"])
    for item in body["data"]:
        value = item["embedding"]
        if isinstance(value, str):
            found[item["index"]] = np.frombuffer(base64.b64decode(value), "<f4")
        else:
            found[item["index"]] = np.asarray(value, dtype=np.float32)
    return np.vstack(found)


def openai_error(message: str, param: str | None = "id", code: str | None = None) -> Any:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


# -- files ------------------------------------------------------------------------------------


def test_files_upload_retrieve_content_list_delete() -> None:
    content = jsonl([request("a", "hello")])

    async def scenario(c: Client) -> dict[str, Any]:
        status, file = await c.upload(content, filename="mine.jsonl")
        assert status == 200
        assert file["id"].startswith("file-") and file["object"] == "file"
        assert file["bytes"] == len(content) and file["filename"] == "mine.jsonl"
        assert file["purpose"] == "batch" and file["status"] == "processed"
        assert isinstance(file["created_at"], int)
        assert await c.call("GET", f"/files/{file['id']}") == (200, file)
        assert await c.call("GET", f"/files/{file['id']}/content") == (200, content)
        status, other = await c.upload(b"{}\n", filename="two.jsonl")
        status, listed = await c.call("GET", "/files?purpose=batch")
        assert status == 200 and listed["object"] == "list" and listed["has_more"] is False
        assert [f["id"] for f in listed["data"]] == [other["id"], file["id"]]  # newest first
        assert (await c.call("GET", "/files?purpose=batch_output"))[1]["data"] == []
        deleted = {"id": file["id"], "object": "file", "deleted": True}
        assert await c.call("DELETE", f"/files/{file['id']}") == (200, deleted)
        for method, path in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
            missing = openai_error(f"No such File object: {file['id']}")
            assert await c.call(method, f"/files/{file['id']}{path}") == (404, missing)
        status, refused = await c.upload(content, purpose="fine-tune")
        assert status == 400 and refused["error"]["param"] == "purpose"
        status, too_big = await c.upload(b"x" * 501)
        assert status == 400 and too_big["error"]["type"] == "invalid_request_error"
        assert (await c.upload(b"x" * 500))[0] == 200
        return c.sim.stats()["batch"]

    stats, _ = simulate(scenario, batch_max_bytes=500)
    assert stats["uploads"] == 3 and stats["upload_bytes"] == len(content) + 3 + 500


def test_unprefixed_routes_serve_too() -> None:
    async def scenario(c: Client) -> int:
        url = c.sim.url + "/files"
        async with c.session.get(url, headers=c.headers) as r:
            return r.status

    assert simulate(scenario)[0] == 200


# -- a batch from start to end ----------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_batch_runs_through_every_status_and_serves_the_exact_vectors(encoding: str) -> None:
    texts = [f"text number {i} 你好" for i in range(60)]
    by_id = chunks(texts, 3)  # 20 requests

    async def scenario(c: Client) -> Any:
        lines = [request(k, v, encoding_format=encoding) for k, v in by_id.items()]
        batch = await c.submit(lines)
        assert batch["status"] == "validating" and batch["id"].startswith("batch_")
        seen: list[str] = []
        done = await c.wait(batch["id"], seen=seen)
        out = await c.lines(done["output_file_id"])
        status, direct = await c.call("POST", "/embeddings", json=lines[0]["body"])
        assert status == 200
        status, output_file = await c.call("GET", f"/files/{done['output_file_id']}")
        return batch, seen, done, out, direct, output_file, c.sim.stats()

    (batch, seen, done, out, direct, output_file, stats), seconds = simulate(scenario)
    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert done["request_counts"] == {"total": 20, "completed": 20, "failed": 0}
    assert done["error_file_id"] is None and done["errors"] is None
    assert output_file["purpose"] == "batch_output"
    assert output_file["filename"] == f"{batch['id']}_output.jsonl"
    # Shuffled: a client must match lines by custom_id.
    assert [line["custom_id"] for line in out] != list(by_id)
    assert sorted(line["custom_id"] for line in out) == sorted(by_id)
    got = {}
    for line in out:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
        got[line["custom_id"]] = line["response"]["body"]
    for custom_id, chunk in by_id.items():
        assert np.array_equal(rows(got[custom_id]), expected_matrix(chunk, dim=DIM))
    assert got["req-0"] == direct  # the very answer of /embeddings
    tokens = sum(body["usage"]["total_tokens"] for body in got.values())
    assert done["usage"]["input_tokens"] == done["usage"]["total_tokens"] == tokens
    assert done["usage"]["output_tokens"] == 0
    times = [done[k] for k in ("created_at", "in_progress_at", "finalizing_at", "completed_at")]
    assert times == sorted(times) and done["expires_at"] == done["created_at"] + 86400
    assert 3.0 <= seconds <= 5.0  # 1 s validating, 20 x 0.05 s, 1 s finalizing, polls
    batch_stats = stats["batch"]
    assert batch_stats["inputs"] == 60 and batch_stats["tokens"] == tokens
    assert batch_stats["texts"] == {t: 1 for t in texts}  # each paid for once
    assert batch_stats["created"] == 1 and batch_stats["polls"] >= 4
    assert stats["requests"] == 1 and stats["inputs"] == 3  # /embeddings: the direct one


def test_unshuffled_output_keeps_the_input_order() -> None:
    by_id = chunks([f"t{i}" for i in range(10)], 1)

    async def scenario(c: Client) -> list[dict[str, Any]]:
        batch = await c.submit([request(k, v) for k, v in by_id.items()])
        return await c.lines((await c.wait(batch["id"]))["output_file_id"])

    out, _ = simulate(scenario, batch_shuffle=False)
    assert [line["custom_id"] for line in out] == list(by_id)


# -- lines that fail ----------------------------------------------------------------------------


def test_line_failure_rate_sends_every_line_to_the_error_file() -> None:
    async def scenario(c: Client) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        batch = await c.submit([request(f"r{i}", [f"t{i}"]) for i in range(5)])
        done = await c.wait(batch["id"])
        return done, await c.lines(done["error_file_id"])

    (done, errors), _ = simulate(scenario, batch_line_failure_rate=1.0)
    assert done["status"] == "completed" and done["output_file_id"] is None
    assert done["request_counts"] == {"total": 5, "completed": 0, "failed": 5}
    assert sorted(line["custom_id"] for line in errors) == [f"r{i}" for i in range(5)]
    for line in errors:
        assert line["error"] is None and line["response"]["status_code"] == 500
        assert line["response"]["body"]["error"]["type"] == "server_error"


def test_refused_lines_are_answered_as_embeddings_would_answer_them() -> None:
    lines = [
        request("ok", ["fine", "also fine"]),
        request("refused", ["fine", "a BAD one"]),
        request("too-many", ["a", "b", "c"]),
        request("empty", ["x", ""]),
        request("ok-2", "single"),
    ]

    async def scenario(c: Client) -> Any:
        done = await c.wait((await c.submit(lines))["id"])
        out, err = await c.lines(done["output_file_id"]), await c.lines(done["error_file_id"])
        direct = [(await c.call("POST", "/embeddings", json=line["body"])) for line in lines]
        return done, out, err, direct, c.sim.stats()["batch"]

    (done, out, err, direct, stats), _ = simulate(
        scenario, refuse_inputs=("BAD",), max_batch=2, error_style="openai"
    )
    assert done["request_counts"] == {"total": 5, "completed": 2, "failed": 3}
    assert sorted(line["custom_id"] for line in out) == ["ok", "ok-2"]
    answers = {line["custom_id"]: line["response"] for line in out + err}
    for line, (status, body) in zip(lines, direct):
        assert answers[line["custom_id"]] == {
            "status_code": status,
            "request_id": answers[line["custom_id"]]["request_id"],
            "body": body,
        }
    assert answers["refused"]["status_code"] == 400 and answers["too-many"]["status_code"] == 413
    assert answers["empty"]["status_code"] == 400
    assert stats["texts"] == {"fine": 1, "also fine": 1, "single": 1}  # refused: not embedded


# -- validation ---------------------------------------------------------------------------------


GOOD = [request(f"r{i}", f"text {i}") for i in range(3)]


@pytest.mark.parametrize(
    "lines, config, code, line_number",
    [
        ([GOOD[0], request("r1", "x", url="/v1/chat/completions"), GOOD[2]], {}, "url_mismatch", 2),
        (GOOD, {"batch_max_requests": 2}, "too_many_tasks", 3),
        ([GOOD[0], GOOD[1], {**GOOD[2], "custom_id": "r0"}], {}, "duplicate_custom_id", 3),
        ([GOOD[0], "not an object", GOOD[2]], {}, "invalid_json_line", 2),
        ([{**GOOD[0], "method": "GET"}, GOOD[1]], {}, "invalid_method", 1),
        ([GOOD[0], request("r1", ["a", "b"])], {"batch_max_inputs": 2}, "too_many_inputs", 2),
        ([GOOD[0], {**GOOD[1], "body": {"input": "x"}}], {}, "missing_required_parameter", 2),
        ([GOOD[0], request("r1", "x", model="other")], {}, "model_mismatch", 2),
        (GOOD, {"batch_fail_validation": "simulated: no"}, "invalid_request", None),
    ],
)
def test_validation_fails_the_batch_naming_the_line(
    lines: list[Any], config: dict[str, Any], code: str, line_number: int | None
) -> None:
    async def scenario(c: Client) -> dict[str, Any]:
        status, file = await c.upload(jsonl(lines))
        status, batch = await c.create(file["id"])
        assert status == 200 and batch["status"] == "validating"
        return await c.wait(batch["id"])

    done, _ = simulate(scenario, **config)
    assert done["status"] == "failed" and isinstance(done["failed_at"], int)
    assert done["in_progress_at"] is None and done["output_file_id"] is None
    assert done["request_counts"] == {"total": len(lines), "completed": 0, "failed": 0}
    (error,) = done["errors"]["data"]
    assert error["code"] == code and error["line"] == line_number and error["message"]
    if "batch_fail_validation" in config:
        assert error["message"] == "simulated: no"


def test_create_refuses_what_the_simulator_cannot_batch() -> None:
    async def scenario(c: Client) -> list[tuple[int, Any]]:
        _, file = await c.upload(jsonl(GOOD))
        fid = file["id"]
        chat = {"input_file_id": fid, "endpoint": "/v1/chat/completions"}
        return [
            await c.call("POST", "/batches", json={**chat, "completion_window": "24h"}),
            await c.create(fid, completion_window="1h"),
            await c.create("file-nope"),
            await c.create(fid, metadata={"k": 1}),
            await c.call("GET", "/batches/batch_nope"),
        ]

    answers, _ = simulate(scenario)
    assert [status for status, _ in answers] == [400, 400, 404, 400, 404]
    params = [body["error"]["param"] for _, body in answers]
    assert params == ["endpoint", "completion_window", "input_file_id", "metadata", "id"]
    assert answers[2][1]["error"]["message"] == "No such File object: file-nope"
    assert answers[4][1] == openai_error("No such Batch object: batch_nope")


# -- expiry and cancel --------------------------------------------------------------------------


def test_expiry_keeps_what_was_done_and_marks_the_rest_expired() -> None:
    async def scenario(c: Client) -> Any:
        batch = await c.submit([request(f"r{i}", f"text {i}") for i in range(20)])
        done = await c.wait(batch["id"])
        out, err = await c.lines(done["output_file_id"]), await c.lines(done["error_file_id"])
        return done, out, err

    (done, out, err), seconds = simulate(
        scenario, batch_expire_after=10.5, batch_per_request=1.0, batch_validation=1.0
    )
    assert done["status"] == "expired" and done["completed_at"] is None
    assert done["expired_at"] - done["created_at"] in (10, 11)
    assert done["expires_at"] == done["created_at"] + 10
    assert len(out) == 9 and done["request_counts"] == {"total": 20, "completed": 9, "failed": 0}
    assert {line["custom_id"] for line in out} == {f"r{i}" for i in range(9)}
    assert sorted(line["custom_id"] for line in err) == sorted(f"r{i}" for i in range(9, 20))
    for line in err:
        assert line["response"] is None
        assert line["error"] == {
            "code": "batch_expired",
            "message": "This request could not be executed before the completion window expired.",
        }
    assert 10.5 <= seconds < 11.5


def test_a_24_hour_window_expires_in_simulated_time() -> None:
    async def scenario(c: Client) -> Any:
        batch = await c.submit([request(f"r{i}", f"text {i}") for i in range(100)])
        done = await c.wait(batch["id"], every=3600)
        return done, await c.lines(done["error_file_id"])

    (done, err), seconds = simulate(scenario, batch_per_request=1000.0)
    assert seconds > 86400  # simulated seconds: the run itself takes milliseconds
    assert done["status"] == "expired" and done["request_counts"]["completed"] == 86
    assert len(err) == 14 and all(line["error"]["code"] == "batch_expired" for line in err)


def test_cancel_keeps_the_lines_done_and_drops_the_rest() -> None:
    async def scenario(c: Client) -> Any:
        batch = await c.submit([request(f"r{i}", f"text {i}") for i in range(20)])
        while (await c.call("GET", f"/batches/{batch['id']}"))[1]["request_counts"][
            "completed"
        ] < 5:
            await asyncio.sleep(0.5)
        status, cancelling = await c.call("POST", f"/batches/{batch['id']}/cancel")
        assert status == 200 and cancelling["status"] == "cancelling"
        again = await c.call("POST", f"/batches/{batch['id']}/cancel")
        assert again == (200, cancelling)
        done = await c.wait(batch["id"])
        out = await c.lines(done["output_file_id"])
        refused = await c.call("POST", f"/batches/{batch['id']}/cancel")
        return cancelling, done, out, refused, c.sim.stats()["batch"]

    (cancelling, done, out, refused, stats), _ = simulate(scenario, batch_per_request=1.0)
    assert isinstance(cancelling["cancelling_at"], int)
    assert done["status"] == "cancelled" and isinstance(done["cancelled_at"], int)
    completed = done["request_counts"]["completed"]
    assert completed == cancelling["request_counts"]["completed"] >= 5
    assert done["request_counts"] == {"total": 20, "completed": completed, "failed": 0}
    assert len(out) == completed and done["error_file_id"] is None
    assert refused[0] == 400 and "cancelled" in refused[1]["error"]["message"]
    assert stats["cancelled"] == 1 and stats["inputs"] == completed


def test_cancel_while_validating() -> None:
    async def scenario(c: Client) -> dict[str, Any]:
        batch = await c.submit(GOOD)
        status, _ = await c.call("POST", f"/batches/{batch['id']}/cancel")
        assert status == 200
        return await c.wait(batch["id"])

    done, _ = simulate(scenario)
    assert done["status"] == "cancelled" and done["in_progress_at"] is None
    assert done["output_file_id"] is None and done["error_file_id"] is None


# -- listing, switches, keys, polls ---------------------------------------------------------------


def test_list_batches_newest_first_with_pages() -> None:
    async def scenario(c: Client) -> Any:
        ids = [(await c.submit(GOOD))["id"] for _ in range(3)]
        first = (await c.call("GET", "/batches?limit=2"))[1]
        rest = (await c.call("GET", f"/batches?limit=2&after={first['last_id']}"))[1]
        return ids, first, rest

    (ids, first, rest), _ = simulate(scenario)
    assert [b["id"] for b in first["data"]] == [ids[2], ids[1]] and first["has_more"] is True
    assert first["object"] == "list" and first["first_id"] == ids[2]
    assert [b["id"] for b in rest["data"]] == [ids[0]] and rest["has_more"] is False


def test_no_batch_api_answers_404_invalid_url() -> None:
    async def scenario(c: Client) -> list[tuple[int, Any]]:
        return [
            await c.upload(jsonl(GOOD)),
            await c.create("file-x"),
            await c.call("GET", "/batches/batch_x"),
            await c.call("GET", "/files"),
        ]

    answers, _ = simulate(scenario, batch_api=False)
    assert answers[1] == (404, openai_error("Invalid URL (POST /v1/batches)", None))
    assert answers[0] == (404, openai_error("Invalid URL (POST /v1/files)", None))
    assert [status for status, _ in answers] == [404] * 4


def test_every_nth_poll_is_rate_limited_with_retry_after() -> None:
    async def scenario(c: Client) -> Any:
        batch = await c.submit(GOOD)
        answers = []
        for _ in range(6):
            answers.append(await c.call("GET", f"/batches/{batch['id']}"))
            answers[-1] = (*answers[-1], c.last_headers.get("Retry-After"))
        return answers, c.sim.stats()["batch"]["polls"]

    (answers, polls), _ = simulate(scenario, batch_poll_429=3)
    assert [status for status, _, _ in answers] == [200, 200, 429, 200, 200, 429]
    _, body, retry_after = answers[2]
    assert retry_after == "2" and body["error"]["code"] == "rate_limit_exceeded"
    assert polls == 6


def test_a_wrong_key_is_refused_on_every_route() -> None:
    async def scenario(c: Client) -> list[int]:
        wrong = {"Authorization": "Bearer sk-wrong"}
        return [
            (await c.call("GET", "/files", headers=wrong))[0],
            (await c.call("POST", "/batches", json={}, headers=wrong))[0],
            (await c.call("GET", "/batches/batch_x", headers=wrong))[0],
            (await c.call("GET", "/files"))[0],
        ]

    assert simulate(scenario)[0] == [401, 401, 401, 200]


def test_reset_stats_zeroes_the_counters_not_the_batches() -> None:
    async def scenario(c: Client) -> Any:
        batch = await c.wait((await c.submit(GOOD))["id"])
        before = c.sim.stats()["batch"]
        c.sim.reset_stats()
        after = c.sim.stats()["batch"]
        status, still = await c.call("GET", f"/batches/{batch['id']}")
        return before, after, status, still["status"]

    (before, after, status, still), _ = simulate(scenario)
    assert before["created"] == 1 and before["inputs"] == 3 and before["uploads"] == 1
    assert after == {
        "uploads": 0,
        "upload_bytes": 0,
        "created": 0,
        "cancelled": 0,
        "polls": 0,
        "inputs": 0,
        "tokens": 0,
        "texts": {},
    }
    assert status == 200 and still == "completed"


def test_texts_are_not_tracked_when_asked_not_to() -> None:
    async def scenario(c: Client) -> dict[str, Any]:
        await c.wait((await c.submit(GOOD))["id"])
        return c.sim.stats()["batch"]

    stats, _ = simulate(scenario, track_texts=False)
    assert "texts" not in stats and stats["inputs"] == 3


def test_stop_cancels_batches_under_way() -> None:
    async def scenario(c: Client) -> str:
        batch = await c.submit(GOOD)
        return str(batch["status"])

    # The provider stops with the batch validating: its task is cancelled, nothing is left.
    assert simulate(scenario)[0] == "validating"


# -- config -------------------------------------------------------------------------------------


def test_batch_config_fields_are_checked_and_convert_to_json() -> None:
    config = SimConfig(batch_per_request=0.5, batch_poll_429=4, batch_fail_validation="no")
    assert SimConfig.from_mapping(json.loads(json.dumps(config.to_json()))) == config
    for bad in (
        {"batch_line_failure_rate": 1.5},
        {"batch_per_request": -1},
        {"batch_expire_after": 0},
        {"batch_max_requests": 0},
        {"batch_max_bytes": 1.5},
        {"batch_poll_429": -1},
        {"batch_api": "yes"},
        {"batch_fail_validation": None},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SimConfig(**bad)
