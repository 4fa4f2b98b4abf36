"""Edge cases found in review: closing while a request waits for its turn, a key echoed in a
200 answer, a quota 429 under adaptive control, and an rpm of zero.

Private access: whether a closed client opened an aiohttp session anyway is read off its
transport's session (``_sender.transport._session``); no public name shows a session.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from typing import Any

import pytest

import embedsdk
from embedsdk import AsyncEmbedder, MockTransport, RateController, Request, Response
from embedsdk.testing import SimulatedProvider, expected_matrix

KEY = "sk-live-SECRET1234567890"


class FrozenClock:
    """A rate controller's clock that moves only when told; ``read`` is set the first time a
    request asks it for its turn."""

    def __init__(self) -> None:
        self.now = 0.0
        self.read = asyncio.Event()

    def __call__(self) -> float:
        self.read.set()
        return self.now


def test_aclose_while_waiting_for_a_turn_sends_nothing_and_leaks_nothing() -> None:
    async def main() -> tuple[int, object, bool]:
        embedsdk.set_testing(False)  # let the request really wait in the shared pause
        async with SimulatedProvider() as sim:
            clock = FrozenClock()
            ctl = RateController(clock=clock)
            # As after a 429: every request waits until the controller's clock reads 0.05,
            # and that clock stands still until the client is closed.
            ctl.on_rate_limited(ctl.reserve(1), retry_after=0.05)
            clock.read.clear()
            emb = AsyncEmbedder(base_url=sim.base_url, cache=False, rate_controller=ctl)
            task = asyncio.ensure_future(emb.embed(["a", "b"]))
            await asyncio.wait_for(clock.read.wait(), 60)  # the call now waits for its turn
            await emb.aclose()
            clock.now = 1.0  # the pause is over: the call may go, on a closed client
            outcome: object
            try:
                outcome = (await asyncio.wait_for(task, 60)).shape
            except embedsdk.ClientClosedError as exc:
                outcome = exc
            session = getattr(emb._sender.transport, "_session", None)
            leaked = session is not None and not session.closed
            if leaked:
                await session.close()
            return sim.stats()["requests"], outcome, leaked

    served, outcome, leaked = asyncio.run(main())
    assert served == 0, f"{served} request(s) sent after aclose(): {outcome!r}"
    assert not leaked, "a session was opened after aclose() and left open"
    assert isinstance(outcome, embedsdk.ClientClosedError)


def test_a_key_echoed_in_a_200_answer_is_not_in_the_error() -> None:
    def handler(request: Request) -> Response:  # a gateway: "200 OK" with an error body
        body = {"code": 20015, "message": f"invalid api key {KEY}", "data": None}
        return Response(200, {}, json.dumps(body).encode())

    with (
        embedsdk.Embedder(
            base_url="https://gw.example/v1",
            api_key=KEY,
            cache=False,
            max_retries=0,
            transport=MockTransport(handler),
        ) as emb,
        pytest.raises(embedsdk.ResponseValidationError) as info,
    ):
        emb.embed(["hello"])
    exc = info.value
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert KEY not in text
    assert "invalid api key ***" in text  # the provider's words are kept, the key is not


def test_a_quota_429_does_not_pause_the_shared_controller() -> None:
    def handler(request: Request) -> Response:  # Zhipu: account in arrears
        body = {"error": {"code": "1113", "message": "余额不足或无可用资源包,请充值。"}}
        return Response(429, {}, json.dumps(body).encode())

    ctl = RateController()
    with (
        embedsdk.Embedder(
            base_url="http://127.0.0.1:9/v1",
            cache=False,
            rate_controller=ctl,
            transport=MockTransport(handler),
        ) as emb,
        pytest.raises(embedsdk.InsufficientQuotaError),
    ):
        emb.embed(["a"])
    assert ctl.pauses == 0


# rpm takes any pace > 0, as tpm does (0.5: one request every two minutes): tests/test_config.py.
@pytest.mark.parametrize("rpm", [0, -0.5])
def test_an_rpm_of_zero_or_less_is_refused_up_front(rpm: Any) -> None:
    with pytest.raises(embedsdk.ConfigurationError, match="rpm must be a positive number"):
        embedsdk.Embedder(base_url="http://127.0.0.1:9/v1", cache=False, rpm=rpm)


def test_a_short_key_inside_a_good_base64_answer_is_left_alone(
    simulated_provider_factory: Any,
) -> None:
    """The key is scrubbed from bodies that fail to decode, never from good ones: a short key
    ("sk") occurs by chance inside base64 vectors, and scrubbing it would corrupt them."""
    sim = simulated_provider_factory(dim=1024)
    texts = [f"short key {i}" for i in range(20)]
    vectors = embedsdk.get_batch_embeddings(texts, base_url=sim.base_url, api_key="sk", cache=False)
    assert (vectors == expected_matrix(texts)).all()
