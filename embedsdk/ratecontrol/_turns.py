"""The async side of rate control: which controller a client uses, waiting for a turn, and
reporting an answer to the controller. The controller itself (``_controller``) never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import weakref
from collections.abc import Mapping
from typing import Callable, Protocol

from ..http import is_quota, is_testing, parse_error_body, parse_retry_after
from ._controller import NARROWED, NOTED, PAUSED, VISIBLE_WAIT, RateController, Ticket


class UsesAController(Protocol):
    """What :func:`controller_for` reads of a client's options (``client.ClientOptions`` has
    it): rate control stays below the client and does not import it."""

    @property
    def adaptive(self) -> bool: ...
    @property
    def rate_controller(self) -> RateController | None: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def api_key(self) -> str | None: ...
    @property
    def model(self) -> str: ...


__all__ = [
    "NARROWED",
    "NOTED",
    "PAUSED",
    "controller_for",
    "forget_shared_controllers",
    "report",
    "shared_controller",
    "take_turn",
]


_registry: weakref.WeakValueDictionary[tuple[str, str, str], RateController] = (
    weakref.WeakValueDictionary()
)
_registry_lock = threading.Lock()


def shared_controller(endpoint: str, api_key: str | None, model: str) -> RateController:
    """The controller of one account: same endpoint, API key and model, same controller.

    Held weakly: it lives as long as a client uses it. The key is hashed, never kept.
    """
    digest = hashlib.sha256((api_key or "").encode("utf-8")).hexdigest()[:16]
    key = (endpoint, digest, model)
    with _registry_lock:
        controller = _registry.get(key)
        if controller is None:
            controller = RateController()
            _registry[key] = controller
        return controller


def forget_shared_controllers() -> None:
    """Forget every account's controller: the next client of an account starts afresh (the
    clients that hold one keep it). For tests, where one test's 429s must not pace the next
    one against the same simulated endpoint."""
    with _registry_lock:
        _registry.clear()


def controller_for(options: UsesAController) -> RateController | None:
    """The controller a client uses: its ``rate_controller``, else its account's shared one,
    or ``None`` with ``adaptive=False``."""
    if not options.adaptive:
        return None
    if options.rate_controller is not None:
        return options.rate_controller
    return shared_controller(options.endpoint, options.api_key, options.model)


async def take_turn(
    controller: RateController,
    estimate: int,
    waiting: Callable[[str, float], None] | None = None,
) -> Ticket:
    """Wait until ``controller`` lets a request of ``estimate`` estimated tokens go.

    Before any limit is learned this returns at once. ``waiting(why, seconds)`` is told,
    once per turn, before a wait that brings this turn's waiting to :data:`VISIBLE_WAIT`
    seconds or more (``why``: ``"pause"``, ``"pace"``, ``"slot"``, ``"probe"`` or
    ``"leader"``; ``seconds``: the wait about to start). In testing mode
    (:func:`embedsdk.set_testing`) it never sleeps.
    """
    held = 0.0
    told = waiting is None
    while True:
        ticket = controller.reserve(estimate)
        if is_testing():  # no sleeping; a full window is still waited for
            if controller.admit(ticket, force=True):
                return ticket
            await _slot_freed(controller, controller.tuning.slot_poll)
            continue
        while True:  # a booked turn may be put back a little (see admit): keep it
            start = controller.now()
            delay = ticket.at - start
            if delay > 0:
                if not told and held + delay >= VISIBLE_WAIT:
                    told = True
                    waiting(ticket.why, delay)  # type: ignore[misc]
                voided = False
                if ticket.why == "slot":
                    await _slot_freed(controller, delay)
                else:
                    voided = not await _turn_comes(controller, delay, ticket)
                held += controller.now() - start
                if voided:  # voided before the wait began: book again now
                    break
            if not ticket.booked:
                break
            if ticket.epoch == controller.epoch and controller.now() < ticket.at:
                continue  # woken early, yet the turn still stands
            at = ticket.at
            if controller.admit(ticket):
                return ticket
            if ticket.at == at or ticket.epoch != controller.epoch:
                break  # a pause began, or the probe is out: book again


def _waker(
    loop: asyncio.AbstractEventLoop,
) -> tuple[asyncio.Future[None], Callable[[], None], Callable[[], None]]:
    """A future of ``loop``, a ``settle()`` that completes it on the loop's thread, and a
    ``wake()`` that does so from any thread."""
    done: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle)

    return done, settle, wake


async def _turn_comes(controller: RateController, delay: float, ticket: Ticket) -> bool:
    """Sleep ``delay`` seconds, or less when the controller voids the turns booked (a
    follower's new pace and pause: its turns may come sooner than the one booked). ``False``
    at once when ``ticket``'s turn was voided since it was booked, before this wait began
    (another thread's ``follow``: its wake-up came before anyone waited for it)."""
    loop = asyncio.get_running_loop()
    due, settle, wake = _waker(loop)
    if not controller.wait_for_turn(wake, ticket):
        return False
    timer = loop.call_later(delay, settle)
    try:
        await due
    finally:
        timer.cancel()
        controller.forget_turn(wake)
    return True


async def _slot_freed(controller: RateController, timeout: float) -> None:
    """Wait, at most ``timeout`` seconds, for a request in flight to end."""
    freed, _, wake = _waker(asyncio.get_running_loop())
    if controller.wait_for_slot(wake):
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(freed, timeout)


def report(
    controller: RateController,
    ticket: Ticket,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
) -> str:
    """Tell ``controller`` how the server answered the request of ``ticket``; returns its
    verdict (:data:`PAUSED`, :data:`NARROWED` or :data:`NOTED`)."""
    if status < 400:
        controller.on_success(ticket, headers)
        return NOTED
    if status == 429:
        message, code = parse_error_body(body)
        if not is_quota(status, code):
            return controller.on_rate_limited(ticket, parse_retry_after(headers), message, headers)
    if status == 503:
        return controller.on_overloaded(ticket)
    controller.on_error(ticket)
    return NOTED
