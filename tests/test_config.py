"""Options: defaults, the environment, validation, unknown options, the key kept secret,
``NOT_GIVEN`` against ``None``, contradictions refused, and rewrites said at INFO."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any, Callable

import pytest
from test_keys import variables_read

import embedsdk
from embedsdk import (
    NOT_GIVEN,
    AsyncEmbedder,
    ConfigurationError,
    Embedder,
    MockTransport,
    Request,
    Response,
    Rewrite,
)
from embedsdk.client import DEFAULT_MODEL, OPTION_TABLE, resolve_options

LOCAL = "http://127.0.0.1:9/v1"  # never contacted: nothing in this file sends a request
SILICONFLOW = "https://api.siliconflow.cn/v1"  # the default endpoint
SECRET = "sk-SECRET-4f9a1c"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SILICONFLOW_API_KEY", SECRET)
    o = resolve_options()
    assert o.base_url == SILICONFLOW
    assert o.endpoint == "https://api.siliconflow.cn/v1/embeddings"
    assert o.model == DEFAULT_MODEL == "BAAI/bge-m3"
    assert (o.batch_size, o.max_concurrent) == ("auto", 5)
    assert o.rpm is None and o.tpm is None
    assert o.dimensions is None
    assert o.encoding_format == "base64"
    assert o.max_retries >= 1 and o.timeout > 0
    assert o.max_wait == 300.0  # a 429 asking for longer fails at once
    assert o.provider == "siliconflow"
    assert not o.is_loopback


def test_request_size_is_the_batch_size_or_the_providers_cap_for_auto() -> None:
    local = "http://127.0.0.1:9/v1"
    assert resolve_options(base_url=local, api_key="sk-x").request_size == 32  # generic cap
    assert resolve_options(api_key="sk-x").request_size == 64  # SiliconFlow's
    assert resolve_options(base_url=local, api_key="sk-x", batch_size=20).request_size == 20
    assert resolve_options(api_key="sk-x", batch_size=100).request_size == 64  # capped


def test_explicit_values_are_kept() -> None:
    o = resolve_options(
        model="Qwen/Qwen3-Embedding-8B",
        base_url="https://api.siliconflow.com/v1/",
        api_key=SECRET,
        batch_size=32,
        max_concurrent=9,
        rpm=2000,
        tpm=500_000,
        max_retries=0,
        timeout=2.5,
        max_wait=None,
        dimensions=256,
        encoding_format="float",
        cache=False,
    )
    assert o.base_url == "https://api.siliconflow.com/v1"  # trailing slash dropped
    assert (o.model, o.api_key, o.batch_size, o.max_concurrent) == (
        "Qwen/Qwen3-Embedding-8B",
        SECRET,
        32,
        9,
    )
    assert (o.rpm, o.tpm, o.max_retries, o.timeout) == (2000.0, 500_000.0, 0, 2.5)
    assert o.max_wait is None  # no bound
    assert resolve_options(api_key=SECRET, max_wait=0).max_wait == 0.0
    assert (o.dimensions, o.encoding_format, o.cache) == (256, "float", False)


def test_batch_size_above_the_provider_cap_is_lowered() -> None:
    # SiliconFlow enforces 64 inputs per request (413 code 20042 above it).
    assert resolve_options(api_key=SECRET, batch_size=500).batch_size == 64


def test_options_are_hashable_and_compare_by_value() -> None:
    a = resolve_options(base_url=LOCAL, cache=False)
    b = resolve_options(base_url=LOCAL, cache=False)
    assert a == b and hash(a) == hash(b)
    assert a != resolve_options(base_url=LOCAL, cache=False, api_key="other")


# -- the key from the environment -------------------------------------------------------------


SILICONFLOW_VARIABLES = ("EMBEDSDK_API_KEY", "SILICONFLOW_API_KEY", "siliconflow_api_key")


def test_key_variables_in_order_of_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert variables_read(monkeypatch, SILICONFLOW) == SILICONFLOW_VARIABLES


@pytest.mark.parametrize("present", [(0, 1, 2), (1, 2), (2,), (0, 2), (0, 1)])
def test_key_precedence(monkeypatch: pytest.MonkeyPatch, present: tuple[int, ...]) -> None:
    for i in present:
        monkeypatch.setenv(SILICONFLOW_VARIABLES[i], f"key-from-{i}")
    o = resolve_options()
    assert o.api_key == f"key-from-{present[0]}"
    assert o.api_key_source == f"environment variable {SILICONFLOW_VARIABLES[present[0]]}"


def test_argument_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDSDK_API_KEY", "from-env")
    o = resolve_options(api_key=SECRET)
    assert o.api_key == SECRET and o.api_key_source == "api_key argument"


def test_usage_guide_lower_case_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("siliconflow_api_key", SECRET)
    assert resolve_options().api_key == SECRET


def test_empty_variable_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDSDK_API_KEY", "  ")
    monkeypatch.setenv("SILICONFLOW_API_KEY", SECRET)
    assert resolve_options().api_key == SECRET


def test_key_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDSDK_API_KEY", f"  {SECRET}\n")
    assert resolve_options().api_key == SECRET
    assert resolve_options(api_key=f"{SECRET}\r\n").api_key == SECRET


@pytest.mark.parametrize("bad", [f"{SECRET}\nX-Injected: 1", "sk-a b", "sk-\x00"])
def test_key_with_inner_blanks_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="api_key argument") as info:
        resolve_options(api_key=bad)
    assert SECRET not in str(info.value) and "sk-" not in str(info.value)


def test_base_url_and_model_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDSDK_BASE_URL", "http://localhost:8080/v1")
    monkeypatch.setenv("EMBEDSDK_MODEL", "my-model")
    o = resolve_options()
    assert (o.base_url, o.model) == ("http://localhost:8080/v1", "my-model")
    # arguments win
    o = resolve_options(base_url=LOCAL, model="other")
    assert (o.base_url, o.model) == (LOCAL, "other")


def test_missing_key_names_the_variables() -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_options()
    message = str(info.value)
    assert "api_key" in message and "api.siliconflow.cn" in message
    for name in SILICONFLOW_VARIABLES:
        assert name in message
    assert "OPENAI_API_KEY" not in message  # it would not be read for this host


@pytest.mark.parametrize("url", [SILICONFLOW, "https://tei.example.com/v1", LOCAL])
def test_empty_key_argument_sends_none_and_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("EMBEDSDK_API_KEY", "from-env")
    monkeypatch.setenv("SILICONFLOW_API_KEY", "from-env-too")
    for empty in ("", "  "):
        o = resolve_options(api_key=empty, base_url=url)
        assert (o.api_key, o.api_key_source) == (None, "api_key argument")


def test_empty_key_may_go_over_plain_http() -> None:
    # No key, nothing to leak: a keyless TEI or vLLM on the LAN needs no allow_insecure.
    assert resolve_options(api_key="", base_url="http://10.0.0.5:8080/v1").api_key is None


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/v1", "http://localhost:11434/v1", "http://[::1]:80/v1", LOCAL],
)
def test_loopback_runs_without_key(url: str) -> None:
    o = resolve_options(base_url=url)
    assert o.api_key is None and o.is_loopback


def test_loopback_over_plain_http_may_carry_a_key() -> None:
    assert resolve_options(base_url=LOCAL, api_key=SECRET).api_key == SECRET


def test_key_over_plain_http_to_another_host_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="clear text") as info:
        resolve_options(base_url="http://embed.example.com/v1", api_key=SECRET)
    assert SECRET not in str(info.value)
    o = resolve_options(base_url="http://embed.example.com/v1", api_key=SECRET, allow_insecure=True)
    assert o.base_url == "http://embed.example.com/v1"
    assert resolve_options(base_url="https://embed.example.com/v1", api_key=SECRET)


# -- bad values -------------------------------------------------------------------------------

BAD_VALUES = [
    ("batch_size", 0),
    ("batch_size", -1),
    ("batch_size", 1.5),
    ("batch_size", "20"),
    ("batch_size", True),
    ("max_concurrent", 0),
    ("max_concurrent", None),
    ("max_concurrent", 2.0),
    ("rpm", 0),
    ("rpm", -5),
    ("rpm", "2000"),
    ("rpm", True),
    ("tpm", 0),
    ("tpm", float("nan")),
    ("max_retries", -1),
    ("max_retries", 1.5),
    ("max_retries", False),
    ("timeout", 0),
    ("timeout", -1.0),
    ("timeout", "60"),
    ("max_wait", -1),
    ("max_wait", "300"),
    ("max_wait", float("nan")),
    ("max_wait", True),
    ("dimensions", 0),
    ("dimensions", 256.0),
    ("encoding_format", "int8"),
    ("encoding_format", None),
    ("cache", 42),
    ("base_url", "ftp://example.com/v1"),
    ("base_url", ""),
    ("model", ""),
    ("model", "  "),
    ("cache", ""),
    ("cache", " "),
    ("base_url", "not a url"),
    ("base_url", 8080),
    ("model", 3),
    ("api_key", 12345),
    ("provider", "no-such-provider"),
    ("allow_insecure", "yes"),
    ("max_batch_tokens", 0),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_bad_value_is_a_configuration_error_naming_the_option(name: str, value: Any) -> None:
    options: dict[str, Any] = {"base_url": LOCAL, "provider": "generic", name: value}
    with pytest.raises(ConfigurationError) as info:
        resolve_options(**options)
    assert name in str(info.value) or (name == "provider" and "provider" in str(info.value))
    assert isinstance(info.value, ValueError)


def test_dimensions_refused_for_bge_on_siliconflow() -> None:
    with pytest.raises(ConfigurationError, match="dimensions"):
        resolve_options(api_key=SECRET, model="BAAI/bge-m3", dimensions=512)


def test_cache_values_accepted(tmp_path: Any) -> None:
    for value in (True, False, None, str(tmp_path), tmp_path):
        assert resolve_options(base_url=LOCAL, cache=value).cache is value


# -- all five entry points: bad and unknown options -------------------------------------------


def _async_embedder(**options: Any) -> None:
    AsyncEmbedder(**options)


def _embedder(**options: Any) -> None:
    Embedder(**options).close()


def _serial(**options: Any) -> None:
    embedsdk.get_batch_embeddings(["a"], **options)


def _threads(**options: Any) -> None:
    embedsdk.get_batch_embeddings_concurrent(["a"], **options)


def _async_fn(**options: Any) -> None:
    asyncio.run(embedsdk.get_batch_embeddings_async(["a"], **options))


ENTRY_POINTS: list[Callable[..., None]] = [_async_embedder, _embedder, _serial, _threads, _async_fn]


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("unknown", ["batchsize", "api_base", "max_workerz", "temperature"])
def test_unknown_option_is_a_type_error(entry: Callable[..., None], unknown: str) -> None:
    with pytest.raises(TypeError, match=unknown):
        entry(base_url=LOCAL, cache=False, **{unknown: 1})


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_bad_option_is_a_configuration_error(entry: Callable[..., None]) -> None:
    with pytest.raises(ConfigurationError, match="rpm"):
        entry(base_url=LOCAL, cache=False, rpm=-1)


PER_CALL = {
    "_async_embedder": lambda v: asyncio.run(
        AsyncEmbedder(base_url=LOCAL, cache=False).embed(["a"], batch_size=v)
    ),
    "_embedder": lambda v: _embedder_call(max_concurrent=v),
    "_serial": lambda v: embedsdk.get_batch_embeddings(["a"], base_url=LOCAL, batch_size=v),
    "_threads": lambda v: embedsdk.get_batch_embeddings_concurrent(
        ["a"], base_url=LOCAL, max_workers=v
    ),
    "_async_fn": lambda v: asyncio.run(
        embedsdk.get_batch_embeddings_async(["a"], base_url=LOCAL, max_concurrent=v)
    ),
}


def _embedder_call(**call: Any) -> None:
    with Embedder(base_url=LOCAL, cache=False) as emb:
        emb.embed(["a"], **call)


@pytest.mark.parametrize("entry", sorted(PER_CALL))
@pytest.mark.parametrize("value", [0, -2, 1.5, "4", True])
def test_bad_per_call_size_or_concurrency_is_a_configuration_error(entry: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match="must be a positive integer"):
        PER_CALL[entry](value)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_missing_key_on_every_entry_point(entry: Callable[..., None]) -> None:
    with pytest.raises(ConfigurationError, match="SILICONFLOW_API_KEY"):
        entry(cache=False)


def test_wrong_concurrency_name_per_variant() -> None:
    # Each function takes its own name for the concurrency, as in the usage guide.
    with pytest.raises(TypeError, match="max_concurrent"):
        embedsdk.get_batch_embeddings_concurrent(["a"], base_url=LOCAL, max_concurrent=3)
    with pytest.raises(TypeError, match="max_workers"):
        asyncio.run(embedsdk.get_batch_embeddings_async(["a"], base_url=LOCAL, max_workers=3))


# -- the key never shows ----------------------------------------------------------------------


def test_key_not_in_options_repr_or_str() -> None:
    o = resolve_options(api_key=SECRET)
    for text in (repr(o), str(o), repr(dataclasses.asdict(o).keys())):
        assert SECRET not in text
    assert "api_key_source='api_key argument'" in repr(o)


def test_key_not_in_client_repr_or_str() -> None:
    emb = AsyncEmbedder(api_key=SECRET, cache=False)
    assert SECRET not in repr(emb) and SECRET not in str(emb)
    assert SECRET not in repr(emb.options)
    sync = Embedder(api_key=SECRET, cache=False)
    try:
        assert SECRET not in repr(sync) and SECRET not in str(sync)
        assert SECRET not in repr(sync.options)
    finally:
        sync.close()


def test_key_from_environment_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SILICONFLOW_API_KEY", SECRET)
    emb = AsyncEmbedder(cache=False)
    assert emb.options.api_key == SECRET
    assert SECRET not in repr(emb) and SECRET not in repr(emb.options)


# -- NOT_GIVEN and None -------------------------------------------------------------------------

#: Every option resolve_options takes, with NOT_GIVEN.
ALL_NOT_GIVEN = {n: NOT_GIVEN for n, s in OPTION_TABLE.items() if s.scope in ("every", "call")}


def test_not_given_is_the_same_as_leaving_every_option_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SILICONFLOW_API_KEY", SECRET)
    left_out = resolve_options()
    assert resolve_options(**ALL_NOT_GIVEN) == left_out
    assert (left_out.timeout, left_out.max_wait, left_out.api_key) == (60.0, 300.0, SECRET)
    assert NOT_GIVEN not in dataclasses.asdict(left_out).values()


def test_given_options_leaves_out_only_not_given() -> None:
    from embedsdk.client import given_options

    given = {"rpm": None, "model": NOT_GIVEN, "timeout": 5.0, "cache": False}
    assert given_options(given) == {"rpm": None, "timeout": 5.0, "cache": False}


@pytest.mark.parametrize(
    ("name", "not_given", "none"),
    [("timeout", 60.0, None), ("max_wait", 300.0, None), ("rpm", None, None)],
)
def test_none_still_means_no_limit(name: str, not_given: Any, none: Any) -> None:
    # NOT_GIVEN is the default; None is "no limit", not the default.
    assert getattr(resolve_options(base_url=LOCAL, **{name: NOT_GIVEN}), name) == not_given
    assert getattr(resolve_options(base_url=LOCAL, **{name: None}), name) == none


@pytest.mark.parametrize(
    "name", ["model", "base_url", "api_key", "provider", "max_batch_tokens", "rate_controller"]
)
def test_none_where_it_meant_not_given_still_does(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SILICONFLOW_API_KEY", SECRET)
    assert resolve_options(**{name: None}) == resolve_options(**{name: NOT_GIVEN})


def _recording(sizes: list[int]) -> MockTransport:
    """A server that answers float lists of 4 and notes each request's size."""

    def answer(request: Request) -> Response:
        inputs = request.json()["input"]
        sizes.append(len(inputs))
        data = [
            {"object": "embedding", "index": i, "embedding": [1.0] * 4} for i in range(len(inputs))
        ]
        return Response(200, {}, json.dumps({"object": "list", "data": data}).encode())

    return MockTransport(answer)


@pytest.mark.parametrize("left", [{}, {"batch_size": NOT_GIVEN}, {"batch_size": None}])
def test_per_call_not_given_or_none_is_the_clients_own(left: dict[str, Any]) -> None:
    sizes: list[int] = []
    with Embedder(base_url=LOCAL, cache=False, batch_size=2, transport=_recording(sizes)) as emb:
        emb.embed(["a", "b", "c", "d", "e"], max_concurrent=NOT_GIVEN, **left)
        blocks = list(emb.embed_stream(["f", "g", "h"], window=NOT_GIVEN, **left))
    assert sizes == [2, 2, 1, 2, 1]
    assert [start for start, _ in blocks] == [0]


def test_the_clients_take_not_given_for_their_own_parameters() -> None:
    with Embedder(NOT_GIVEN, transport=NOT_GIVEN, base_url=LOCAL, cache=False) as emb:
        assert emb.options.model == DEFAULT_MODEL


# -- contradictions and one rule for the paces ----------------------------------------------------


def test_a_rate_controller_without_adaptive_is_refused() -> None:
    with pytest.raises(ConfigurationError) as info:
        Embedder(base_url=LOCAL, adaptive=False, rate_controller=embedsdk.RateController())
    message = str(info.value)
    assert "rate_controller" in message and "adaptive=False" in message
    assert "drop adaptive=False" in message  # the remedy, both ways
    # Either alone is fine, and so is adaptive=False with the controller left out.
    resolve_options(base_url=LOCAL, adaptive=False, rate_controller=None)
    resolve_options(base_url=LOCAL, rate_controller=embedsdk.RateController())


@pytest.mark.parametrize("value", [0.25, 0.5, 0.999, 1, 2000])
@pytest.mark.parametrize("name", ["rpm", "tpm"])
def test_rpm_and_tpm_take_any_number_above_zero(name: str, value: float) -> None:
    # One rule for both: a pace per minute > 0. rpm=0.25 is 15 requests an hour (free tiers
    # have such limits), and embedsdk.ray divides the account's rpm between its workers.
    assert getattr(resolve_options(base_url=LOCAL, **{name: value}), name) == value


@pytest.mark.parametrize("value", [0, -1, float("nan"), "60", True])
@pytest.mark.parametrize("name", ["rpm", "tpm"])
def test_rpm_and_tpm_refuse_the_same_values(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"{name} must be a positive number"):
        resolve_options(base_url=LOCAL, **{name: value})


def test_a_client_paced_below_one_request_a_minute_sends_its_first_request_at_once() -> None:
    sizes: list[int] = []
    with Embedder(base_url=LOCAL, cache=False, rpm=0.5, transport=_recording(sizes)) as emb:
        assert emb.embed(["a"]).shape == (1, 4)
    assert sizes == [1]


# -- rewrites said once at INFO -----------------------------------------------------------------

DASHSCOPE = "https://dashscope.aliyuncs.com/compatible-mode/v1"
SILICONFLOW = "https://api.siliconflow.cn/v1"


def _rewrites(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "INFO" and "was given" in r.getMessage()
    ]


def test_base64_for_a_float_only_provider_is_said_once_per_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="embedsdk")
    for _ in range(2):
        emb = AsyncEmbedder(
            base_url=DASHSCOPE, api_key=SECRET, cache=False, encoding_format="base64"
        )
        assert emb.options.encoding_format == "float"
    said = (
        "encoding_format='base64' was given; 'float' is used: dashscope answers only with "
        "float lists (it has no base64)"
    )
    assert _rewrites(caplog) == [said, said]  # two clients, once each
    assert emb.options.rewritten == (
        Rewrite("encoding_format", "base64", "float", said.split(": ", 1)[1]),
    )
    assert SECRET not in caplog.text


def test_the_default_format_on_a_float_only_provider_is_no_rewrite(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="embedsdk")
    options = AsyncEmbedder(base_url=DASHSCOPE, api_key=SECRET, cache=False).options
    assert (options.encoding_format, options.rewritten) == ("float", ())
    assert (
        AsyncEmbedder(base_url=SILICONFLOW, api_key=SECRET, cache=False).options.encoding_format
        == "base64"
    )
    assert _rewrites(caplog) == []


def test_a_batch_size_above_the_cap_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="embedsdk")
    emb = AsyncEmbedder(base_url=SILICONFLOW, api_key=SECRET, cache=False, batch_size=100)
    assert emb.options.batch_size == 64
    assert _rewrites(caplog) == [
        "batch_size=100 was given; 64 is used: siliconflow takes at most 64 texts per request; "
        "a larger batch would be refused"
    ]


def test_a_per_call_batch_size_above_the_cap_is_said_once_per_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="embedsdk")
    sizes: list[int] = []
    options: dict[str, Any] = {"base_url": SILICONFLOW, "api_key": SECRET, "cache": False}
    with Embedder(transport=_recording(sizes), **options) as emb:
        for _ in range(3):
            emb.embed([f"t{i}" for i in range(70)], batch_size=100)
    assert sizes == [64, 6] * 3
    assert _rewrites(caplog) == [
        "batch_size=100 was given; 64 is used: siliconflow takes at most 64 texts per request; "
        "a larger batch would be refused"
    ]


def test_an_unknown_keyword_names_the_option_meant() -> None:
    with pytest.raises(
        TypeError, match=r"^Embedder\(\) got .* 'batchsize'; did you mean 'batch_size'\?"
    ):
        Embedder(base_url=LOCAL, batchsize=8)  # type: ignore[call-arg]
    with pytest.raises(
        TypeError, match=r"get_batch_embeddings\(\) got .* 'time_out'; did you mean 'timeout'"
    ):
        embedsdk.get_batch_embeddings(["a"], base_url=LOCAL, time_out=3)  # type: ignore[call-overload]
