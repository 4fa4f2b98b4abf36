"""Pure decisions: retry or not, how long to wait, split or not, tokens, batches, inputs.

Private access: the batch planner's rules (``client._planning``: batches by count and tokens,
windows, de-duplication) are units under test, as pure functions; a client shows only the
requests they lead to (tests/test_autobatch_runs.py).
"""

from __future__ import annotations

import itertools
import random

import backoff
import numpy as np
import pytest

from embedsdk import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    EmbedSDKError,
    InvalidInputError,
    ResponseValidationError,
    estimate_tokens,
)
from embedsdk.client import validate_texts
from embedsdk.client._planning import deduplicate, iter_windows, plan_batches
from embedsdk.http import (
    CallBreaker,
    Failure,
    RetryBudget,
    Verdict,
    blames_input,
    is_retryable,
    is_testing,
    lowered_batch_cap,
    refuses_base64,
    same_refusal,
    set_testing,
    should_split,
    status_error,
    wait_gen,
)
from embedsdk.ratecontrol import NARROWED, NOTED, PAUSED


def http(status: int, message: str = "boom", code: object = None, **headers: str):
    """A status error as the core builds it; ``retry_after="3"`` becomes ``retry-after: 3``."""
    import json

    headers = {k.replace("_", "-"): v for k, v in headers.items()}
    body = {"message": message} if code is None else {"code": code, "message": message}
    return status_error(status, headers, json.dumps(body).encode())


# -- is_retryable ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    assert is_retryable(http(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    assert not is_retryable(http(status))


def test_insufficient_quota_is_not_retried() -> None:
    import json

    body = {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}
    exc = status_error(429, {}, json.dumps(body).encode())
    assert not is_retryable(exc)
    assert is_retryable(status_error(429, {}, b'{"message":"TPM limit reached."}'))


def test_llama_cpp_input_too_large_500_is_not_retried() -> None:
    assert not is_retryable(http(500, "input is too large to process. increase the batch"))
    assert is_retryable(http(500, "internal error"))


@pytest.mark.parametrize(
    "exc",
    [
        APIConnectionError("reset"),
        APITimeoutError("no answer within 60 s"),
        ResponseValidationError("untrustworthy response: short"),
    ],
)
def test_no_answer_and_bad_answers_are_retried(exc: Exception) -> None:
    assert is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ClientClosedError("closed"),
        ValueError("x"),
        KeyboardInterrupt(),
        InvalidInputError("x", index=0),
    ],
)
def test_other_exceptions_are_not_retried(exc: BaseException) -> None:
    assert not is_retryable(exc)


# -- should_split ----------------------------------------------------------------------------


def test_413_splits() -> None:
    assert should_split(http(413, "input batch size 83 > maximum allowed batch size 64"))
    assert should_split(http(413, "Payload Too Large"))  # the 2 MB body limit of TEI


@pytest.mark.parametrize("status", [400, 422])
def test_batch_size_complaint_splits(status: int) -> None:
    assert should_split(http(status, "batch size 77 > maximum allowed Batch Size 32"))


@pytest.mark.parametrize(
    ("message", "sent", "cap", "lowered"),
    [
        ("input batch size 83 > maximum allowed batch size 64", 83, 64, 64),  # SiliconFlow
        ("batch size 77 > maximum allowed batch size 32", 77, 64, 32),  # TEI
        ("Max batch size: 16", 20, 64, 16),
        ("Payload Too Large", 20, 64, 10),  # no number: half
        ("maximum allowed batch size 64", 40, 64, 39),  # named limit above what was sent
        ("Payload Too Large", 20, 8, 8),  # never above the current cap
        ("Payload Too Large", 1, 64, 1),  # never below 1
    ],
)
def test_lowered_batch_cap(message: str, sent: int, cap: int, lowered: int) -> None:
    assert lowered_batch_cap(http(413, message), sent, cap) == lowered


@pytest.mark.parametrize(
    ("status", "message", "refuses"),
    [
        (400, "base64 encoding is not currently supported", True),  # older vLLM
        (422, "encoding_format: Input should be 'float'", True),  # FastAPI
        (422, "Failed to deserialize: unknown variant `base64`", True),  # TEI (axum)
        (400, "invalid encoding format", True),
        (400, "dimensions not supported", False),
        (500, "base64 failed", False),  # a server error, not a refusal
        (404, "no base64 here", False),
    ],
)
def test_refuses_base64(status: int, message: str, refuses: bool) -> None:
    assert refuses_base64(http(status, message)) is refuses
    assert not refuses_base64(ValueError("base64"))


def test_other_errors_do_not_split() -> None:
    assert not should_split(http(400, "dimensions not supported"))
    assert not should_split(http(500, "batch size too large"))
    assert not should_split(APIConnectionError("reset"))
    assert not should_split(ValueError("batch size"))


# -- blames_input: is a refusal about an input's content or about the request? ---------------


def refusal(status: int, body: object) -> APIStatusError:
    """The status error the core builds from a body as a provider sends it."""
    import json

    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return status_error(status, {}, raw)


def openai(message: str, param: object = None, code: object = None) -> dict[str, object]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": code}}  # fmt: skip


BLAMES = [
    # SiliconFlow: {"code", "message", "data"}
    (400, {"code": 20015, "message": "input contains content that cannot be processed",
           "data": None}, True),
    (400, {"code": 20015, "message": "The parameter is invalid. Please check again.",
           "data": None}, None),
    (400, {"code": 20015, "message": "dimensions is not supported for this model",
           "data": None}, False),
    (400, {"code": 20012, "message": "Model does not exist. Please check it carefully.",
           "data": None}, False),
    # OpenAI: {"error": {"message", "type", "param", "code"}}
    (400, openai("'$.input' is invalid. Please check the API reference."), True),
    (400, openai("Invalid value for 'input'.", param="input"), True),
    (400, openai("This model's maximum context length is 8192 tokens, however you requested "
                 "9013 tokens (9013 in your prompt; 0 for the completion)."), True),
    (400, openai("This model does not support specifying dimensions."), False),
    (400, openai("Invalid value: 'int8'.", param="encoding_format"), False),
    (400, openai("Unrecognized request argument supplied: foo"), False),
    (400, openai("Input was rejected by the content filter.", code="content_filter"), True),
    # TEI: {"error", "error_type"}, 413/422 for a text too long
    (422, {"error": "Input validation error: `inputs` cannot be empty",
           "error_type": "Validation"}, True),
    (413, {"error": "Input validation error: `inputs` must have less than 512 tokens. "
                    "Given: 600", "error_type": "Validation"}, True),
    (400, {"error": "Tokenizer error", "error_type": "Tokenizer"}, True),
    # FastAPI / vLLM 422: a location names the field
    (422, {"detail": [{"loc": ["body", "input", 3], "msg": "String should have at least 1 "
                       "character", "type": "string_too_short"}]}, True),
    (422, {"detail": [{"loc": ["body", "dimensions"], "msg": "Input should be a valid "
                       "integer", "type": "int_parsing"}]}, False),
    # DashScope, Zhipu
    (400, {"code": "DataInspectionFailed", "message": "Input data may contain inappropriate "
           "content.", "request_id": "x"}, True),
    (400, {"error": {"code": "1301", "message": "输入内容可能包含不安全或敏感内容"}}, True),
    (400, {"error": {"code": "1211", "message": "模型不存在，请检查模型代码。"}}, False),
    # bare text
    (400, "input must not contain empty strings", True),
    (400, "Bad Request", None),
    (400, "invalid api key", False),
    # llama.cpp: a 500 for one input too long to process
    (500, {"error": {"code": 500, "message": "input is too large to process. increase the "
                     "physical batch size", "type": "server_error"}}, True),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "verdict"), BLAMES)
def test_blames_input_reads_each_providers_words(
    status: int, body: object, verdict: object
) -> None:
    assert blames_input(refusal(status, body)) is verdict


@pytest.mark.parametrize(
    "exc",
    [
        http(413, "input batch size 83 > maximum allowed batch size 64"),  # the batch: split
        http(400, "batch size 77 > maximum allowed batch size 32"),
        http(400, "base64 encoding is not currently supported"),  # floats, not a split
        http(401, "input contains content that cannot be processed"),
        http(404, "The model `x` does not exist"),
        http(429, "Rate limit reached for input tokens"),
        http(503, "Model service overloaded"),
        APIConnectionError("reset"),
        ValueError("input is empty"),
    ],
)
def test_blames_input_is_false_for_what_is_no_refusal_of_content(exc: BaseException) -> None:
    assert blames_input(exc) is False


def test_a_413_about_one_long_input_is_not_a_batch_size_to_split() -> None:
    too_long = refusal(413, {"error": "Input validation error: `inputs` must have less than "
                             "512 tokens. Given: 600", "error_type": "Validation"})  # fmt: skip
    assert not should_split(too_long)
    assert should_split(http(413, "Payload Too Large"))


def test_refusals_are_the_same_whatever_numbers_they_quote() -> None:
    def context(tokens: int) -> APIStatusError:
        return refusal(
            400, openai(f"maximum context length is 8192 tokens, you requested {tokens}")
        )

    assert same_refusal(context(9000), context(12000))
    assert not same_refusal(context(9000), refusal(400, "Bad Request"))


# -- wait_gen: backoff's wait generator ------------------------------------------------------


def failed(exc: EmbedSDKError, verdict: Verdict = Verdict.NOTED) -> Failure:
    """A failed attempt, as the sender hands it to the retry loop (judged: a retry follows)."""
    return Failure(exc, verdict, attempt=1, retry=True)


def started(**kwargs: float):
    """A wait generator primed the way backoff primes it (send(None) first)."""
    gen = wait_gen(**kwargs)
    gen.send(None)
    return gen


@pytest.fixture
def sleeping() -> None:
    set_testing(False)  # conftest turns it back to what it was


def test_wait_honours_retry_after(sleeping: None) -> None:
    gen = started()
    for hint in (3.0, 0.5, 120.0):
        wait = gen.send(failed(http(429, retry_after=str(hint))))
        assert hint <= wait <= hint * 1.1 + 0.05


def test_wait_honours_retry_after_ms(sleeping: None) -> None:
    wait = started().send(failed(http(429, retry_after_ms="2500")))
    assert 2.5 <= wait <= 2.5 * 1.1 + 0.05


def test_wait_caps_absurd_retry_after(sleeping: None) -> None:
    wait = started().send(failed(http(503, retry_after="41165011")))
    assert wait <= 120.0 * 1.1 + 0.05


def test_wait_without_hint_is_exponential_full_jitter(sleeping: None) -> None:
    random.seed(0)
    bounds = [min(30.0, 0.5 * 2.0**k) for k in range(10)]
    for _ in range(50):
        gen = started()
        waits = [gen.send(failed(APIConnectionError("reset"))) for _ in bounds]
        assert all(0.0 <= w <= b for w, b in zip(waits, bounds))
    # and the cap really grows: late waits reach beyond the first bound
    gen = started()
    late = [gen.send(failed(APIConnectionError("reset"))) for _ in range(12)][-3:]
    assert max(late) > 0.5


def test_wait_is_zero_in_testing_mode() -> None:
    set_testing(True)
    gen = started()
    assert gen.send(failed(http(429, retry_after="30"))) == 0.0
    assert gen.send(failed(APIConnectionError("reset"))) == 0.0


def test_set_testing_round_trip() -> None:
    set_testing(False)
    assert not is_testing()
    set_testing(True)
    assert is_testing()


def test_wait_ceilings_are_backoffs_expo_and_the_jitter_is_backoffs_full_jitter(
    sleeping: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    jittered: list[float] = []

    def no_jitter(value: float) -> float:
        jittered.append(value)
        return value

    monkeypatch.setattr(backoff, "full_jitter", no_jitter)
    gen = started(base=0.5, cap=4.0)
    waits = [gen.send(failed(APIConnectionError("reset"))) for _ in range(6)]
    assert waits == jittered == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    # A Retry-After hint replaces the jitter, and the ceilings go on from where they were.
    assert gen.send(failed(http(503, retry_after="1"))) >= 1.0
    assert gen.send(failed(APIConnectionError("reset"))) == 4.0 and len(jittered) == 7


# -- RetryBudget: what a request may retry ---------------------------------------------------


def dns_error() -> APIConnectionError:
    return APIConnectionError("cannot resolve", host="api.example.invalid", reason="dns")


def attempts_until_give_up(budget: RetryBudget, exc: BaseException) -> int:
    tries = 1
    while not budget.give_up(exc):
        tries += 1
    return tries


@pytest.mark.parametrize(("max_retries", "tries"), [(6, 3), (2, 3), (1, 2), (0, 1)])
def test_a_host_that_does_not_resolve_is_retried_at_most_twice(
    max_retries: int, tries: int
) -> None:
    assert attempts_until_give_up(RetryBudget(max_retries), dns_error()) == tries


def test_a_refused_connection_uses_the_whole_budget() -> None:
    refused = APIConnectionError("refused", host="127.0.0.1", port=9, reason="refused")
    assert attempts_until_give_up(RetryBudget(6), refused) == 7


def test_a_certificate_that_cannot_be_verified_is_not_retried() -> None:
    exc = APIConnectionError("bad certificate", reason="certificate")
    assert not is_retryable(exc)
    assert attempts_until_give_up(RetryBudget(6), exc) == 1


def test_dns_failures_also_draw_on_the_common_budget() -> None:
    budget = RetryBudget(2)
    assert not budget.give_up(http(503))
    assert not budget.give_up(dns_error())
    assert budget.give_up(dns_error())  # 2 retries in all, whatever the mix


def test_the_budget_numbers_each_failed_attempt_and_says_whether_another_may_follow() -> None:
    budget = RetryBudget(2)
    judged = [budget.judge(Failure(http(503))) for _ in range(3)]
    assert [(f.attempt, f.retry) for f in judged] == [(1, True), (2, True), (3, False)]
    once = RetryBudget(6).judge(Failure(http(400)))  # no retry fixes it
    assert (once.attempt, once.retry) == (1, False)


# -- under rate control: the controller's verdict, a typed value -----------------------------


def test_the_rate_controllers_verdicts_are_the_retry_loops_own_type() -> None:
    """One vocabulary: what ratecontrol reports is what the retry loop reads."""
    assert (PAUSED, NARROWED, NOTED) == (Verdict.PAUSED, Verdict.NARROWED, Verdict.NOTED)
    assert [v.controlled for v in (PAUSED, NARROWED, NOTED)] == [True, True, False]
    assert f"{PAUSED}" == "paused"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_controlled_refusals_draw_on_their_own_retry_allowance() -> None:
    limited, busy = http(429, "slow"), http(503, "busy")
    budget = RetryBudget(2, paced=True)  # 20 controlled refusals, then 2 failures
    assert [budget.give_up(limited, Verdict.PAUSED) for _ in range(12)] == [False] * 12
    capped = [budget.give_up(busy, Verdict.NARROWED) for _ in range(11)]
    assert capped == [False] * 10 + [True]
    budget = RetryBudget(2, paced=True)
    assert [budget.give_up(busy, Verdict.NOTED) for _ in range(3)] == [False, False, True]
    budget = RetryBudget(2, paced=False)
    assert [budget.give_up(limited, Verdict.PAUSED) for _ in range(3)] == [False, False, True]


def test_a_rate_limit_is_waited_for_in_time_not_in_refusals() -> None:
    """With a clock, refusals of a rate limit do not count for 30 s per retry from the first
    (a window of a minute refuses every probe until it opens), then they count."""
    clock, limited = Clock(), http(429, "slow")
    budget = RetryBudget(2, paced=True, clock=clock)
    for _ in range(100):  # a hundred probes in the first minute: none counts
        clock.now += 0.6
        assert not budget.give_up(limited, Verdict.PAUSED)
    clock.now += 1.0  # 61 s: the patience (2 x 30 s) is over
    assert [budget.give_up(limited, Verdict.PAUSED) for _ in range(3)] == [False, False, True]


def test_a_controlled_refusal_adds_no_wait_of_its_own(sleeping: None) -> None:
    waits = started()
    assert waits.send(failed(http(429, "slow", retry_after="5"), Verdict.PAUSED)) == 0.0
    assert waits.send(failed(http(429, "slow"), Verdict.NARROWED)) == 0.0  # a free slot
    hinted = waits.send(failed(http(503, "busy", retry_after="2"), Verdict.NARROWED))
    assert 2.0 <= hinted <= 2.0 * 1.1 + 0.05  # a cap that names its wait is waited for
    assert waits.send(failed(http(503, "busy"), Verdict.NOTED)) > 0  # the usual backoff


# -- CallBreaker: a storm stops a call that keeps going ---------------------------------------


def test_breaker_trips_after_two_give_ups_in_a_row_with_one_cause() -> None:
    breaker = CallBreaker()
    assert not breaker.gave_up(http(500), 6)
    assert breaker.gave_up(http(500), 6)
    assert "2 requests in a row" in breaker.note()


def test_breaker_is_reset_by_a_success_or_another_cause() -> None:
    breaker = CallBreaker()
    assert not breaker.gave_up(http(500), 6)
    breaker.success()
    assert not breaker.gave_up(http(500), 6)
    assert not breaker.gave_up(http(503), 6)  # another cause starts another run
    assert not breaker.gave_up(APITimeoutError("slow"), 6)
    assert breaker.gave_up(APITimeoutError("slow"), 6)


def test_breaker_ignores_failures_that_concern_one_batch() -> None:
    breaker = CallBreaker()
    too_long = http(500, "input is too large to process")
    bad = http(400, "The parameter is invalid")
    assert not any(breaker.gave_up(exc, 6) for exc in [too_long, bad] * 5)
    assert breaker.count == 0


@pytest.mark.parametrize(("max_retries", "needed"), [(0, 8), (1, 4), (2, 3), (3, 2), (6, 2)])
def test_breaker_needs_at_least_eight_failed_attempts(max_retries: int, needed: int) -> None:
    assert CallBreaker.needed(max_retries) == needed
    assert needed * (max_retries + 1) >= 8
    breaker = CallBreaker()
    trips = [breaker.gave_up(http(503), max_retries) for _ in range(needed)]
    assert trips == [False] * (needed - 1) + [True]


# -- estimate_tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("a", 3),  # 1 char / 3, rounded up, + 2 specials
        ("abc", 3),
        ("abcd", 4),
        ("hello world!", 6),  # 12 / 3 + 2
        ("你好", 4),  # 2 CJK + 2
        ("今天天气很好", 8),
        ("你好 world", 2 + 2 + 2),  # 2 CJK, 6 others -> 2, + 2
    ],
)
def test_estimate_tokens(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_estimate_tokens_follows_the_facts_formula() -> None:
    """CJK x 1.0 + other / 3 + 2, never below it (an over-estimate is safe)."""
    rng = random.Random(5)
    alphabet = "abcdefgh ,.!你好天气很模型嵌入"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
        assert estimate_tokens(text) >= cjk + (len(text) - cjk) / 3 + 2


def test_estimate_tokens_survives_lone_surrogates_and_emoji() -> None:
    assert estimate_tokens("\ud800x") >= 3
    assert estimate_tokens("😀" * 4) >= 4


# -- plan_batches ----------------------------------------------------------------------------


def test_plan_batches_by_count() -> None:
    assert plan_batches([1] * 7, 3, 10**9) == [(0, 3), (3, 6), (6, 7)]
    assert plan_batches([1] * 6, 3, 10**9) == [(0, 3), (3, 6)]


def test_plan_batches_by_tokens() -> None:
    assert plan_batches([4, 4, 4, 4], 100, 8) == [(0, 2), (2, 4)]
    assert plan_batches([5, 4, 1, 9, 1], 100, 10) == [(0, 3), (3, 5)]


def test_plan_batches_oversized_input_goes_alone() -> None:
    assert plan_batches([2, 50, 2], 100, 10) == [(0, 1), (1, 2), (2, 3)]
    assert plan_batches([50], 100, 10) == [(0, 1)]


def test_plan_batches_empty() -> None:
    assert plan_batches([], 20, 100) == []


def test_plan_batches_invariants() -> None:
    rng = random.Random(7)
    for _ in range(200):
        counts = [rng.randint(1, 40) for _ in range(rng.randint(0, 80))]
        size, budget = rng.randint(1, 10), rng.randint(1, 100)
        batches = plan_batches(counts, size, budget)
        # consecutive, covering, non-empty
        assert [a for a, _ in batches] == [0, *(b for _, b in batches[:-1])][: len(batches)]
        assert (batches[-1][1] if batches else 0) == len(counts)
        for a, b in batches:
            assert 0 < b - a <= size
            assert sum(counts[a:b]) <= budget or b - a == 1


# -- deduplicate -----------------------------------------------------------------------------


def test_deduplicate_no_duplicates_returns_none() -> None:
    unique, inverse = deduplicate(["a", "b", "c"])
    assert unique == ["a", "b", "c"] and inverse is None


def test_deduplicate_first_seen_order_and_inverse() -> None:
    texts = ["b", "a", "b", "c", "a", "b"]
    unique, inverse = deduplicate(texts)
    assert unique == ["b", "a", "c"]
    assert inverse is not None and inverse.tolist() == [0, 1, 0, 2, 1, 0]
    assert [unique[i] for i in inverse] == texts


def test_deduplicate_empty() -> None:
    assert deduplicate([]) == ([], None)


def test_deduplicate_is_exact() -> None:
    # Near-identical texts are different texts.
    unique, inverse = deduplicate(["a", "a ", "A", "a"])
    assert unique == ["a", "a ", "A"]
    assert inverse is not None and inverse.tolist() == [0, 1, 2, 0]


# -- validate_texts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (None, "NoneType, not str"),
        (3, "int, not str"),
        (b"bytes", "bytes, not str"),
        (["nested"], "list, not str"),
        ("", "empty or only whitespace"),
        ("   ", "empty or only whitespace"),
        ("\n\t ", "empty or only whitespace"),
        ("\u3000", "empty or only whitespace"),  # ideographic space
    ],
)
def test_validate_texts_names_the_first_bad_index(bad: object, why: str) -> None:
    texts = ["ok", "fine", bad, None]
    with pytest.raises(InvalidInputError, match=rf"texts\[2\] is .*{why}") as info:
        validate_texts(texts)
    assert info.value.index == 2
    assert isinstance(info.value, ValueError)


def test_validate_texts_offset_for_windows() -> None:
    with pytest.raises(InvalidInputError, match=r"texts\[1001\]") as info:
        validate_texts(["a", ""], start=1000)
    assert info.value.index == 1001


def test_validate_texts_accepts_good_texts_and_str_subclasses() -> None:
    class Text(str):
        pass

    validate_texts(["a", " padded ", "你好", Text("sub"), np.str_("numpy")])
    validate_texts([])


@pytest.mark.parametrize("blank", ["", "  "])
def test_validate_texts_str_subclass_still_checked_for_blank(blank: str) -> None:
    class Text(str):
        pass

    for value in (Text(blank), np.str_(blank)):
        with pytest.raises(InvalidInputError, match="empty or only whitespace"):
            validate_texts(["a", value])


def test_validate_texts_long_repr_is_truncated() -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_texts([b"x" * 10_000])
    assert len(str(info.value)) < 200


# -- iter_windows ----------------------------------------------------------------------------


def test_iter_windows() -> None:
    assert list(iter_windows(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(iter_windows([], 3)) == []
    assert list(iter_windows(itertools.islice(itertools.count(), 6), 3)) == [[0, 1, 2], [3, 4, 5]]


def test_validate_texts_names_a_lone_surrogate() -> None:
    validate_texts(["ok", "中文 ✓", "emoji 😀"])
    with pytest.raises(InvalidInputError, match=r"texts\[3\] is not valid Unicode") as info:
        validate_texts(["a", "b", "c", "bad \ud800 text"])
    assert info.value.index == 3
