"""What only aiohttp itself can show: its exceptions, raised inside the real session
(aioresponses patches the session's request, so no socket is opened), mapped by the real
AiohttpTransport into ours, retried or not through the whole client.

MockTransport bypasses aiohttp, and the local servers of the other tests cannot cut an answer
half-way, present a bad certificate or stand in for a proxy that refuses; here aiohttp raises
each of them exactly as it would.
"""

from __future__ import annotations

import ssl

import aiohttp
import pytest
from _aiohttp_raises import raised_by_send

from embedsdk import APIConnectionError
from embedsdk.http import is_retryable

URL = "https://api.example.test/v1/embeddings"
BASE = "https://api.example.test/v1"


def _certificate_error() -> aiohttp.ClientConnectorCertificateError:
    key = aiohttp.client_reqrep.ConnectionKey("api.example.test", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorCertificateError(key, ssl.SSLCertVerificationError("expired"))


@pytest.mark.parametrize(
    ("exc", "reason", "words"),
    [
        (aiohttp.ServerDisconnectedError(), "disconnected", "closed the connection"),
        (
            aiohttp.ClientPayloadError("Response payload is not completed"),
            "disconnected",
            "cut off",
        ),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), None, "Connection reset"),
    ],
)
def test_aiohttp_failures_become_connection_errors_naming_the_host(
    exc: BaseException, reason: str | None, words: str
) -> None:
    raised = raised_by_send(exc, URL)
    assert isinstance(raised, APIConnectionError)
    assert raised.host == "api.example.test" and raised.port == 443
    assert raised.reason == reason
    assert words in str(raised) and "api.example.test:443" in str(raised)


def test_a_certificate_that_cannot_be_verified_is_not_retried() -> None:
    raised = raised_by_send(_certificate_error(), URL)
    assert isinstance(raised, APIConnectionError) and raised.reason == "certificate"
    assert "could not be verified" in str(raised)
    assert not is_retryable(raised)


def test_a_cut_off_answer_and_a_dropped_connection_are_retried() -> None:
    for exc in (aiohttp.ClientPayloadError("not completed"), aiohttp.ServerDisconnectedError()):
        assert is_retryable(raised_by_send(exc, URL))
