"""What a call tells those who watch it: event hooks, and the usage collectors.

``event_hooks={"request": [fn], ...}`` (httpx's ``event_hooks`` is the anchor) gives each
callable an :class:`Event`: ``"call"`` when a call starts, ``"request"`` as an attempt goes
out, ``"response"`` when its answer is in, ``"retry"`` before a failed attempt is tried again,
``"pause"`` when requests wait long for a rate limit, ``"call_end"`` when the call is over.
Hooks run on the client's event loop, so they must be quick; one that raises is logged once
and the call goes on. :func:`add_global_hooks` adds hooks for every client of the process
(:mod:`embedsdk.telemetry` uses it). With no hook anywhere, nothing is built: an event costs a
truth test.

:func:`track_usage` collects the usage of the calls made in a ``with`` block, in the caller's
context (a thread, or an asyncio task and those it starts; the sync clients carry the
caller's context to their loop thread).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import itertools
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable

from ._job import Stats

logger = logging.getLogger("embedsdk")

#: The kinds of event, in the order a call meets them.
EVENTS = ("call", "request", "response", "retry", "pause", "call_end")

Hook = Callable[["Event"], Any]
HookMap = Mapping[str, Iterable[Hook]]


@dataclasses.dataclass
class Call:
    """One call as its hooks see it (a stream: one per window).

    ``id``: unique in the process; ``inputs``: its texts (a window's, for a stream);
    ``offset``: the position of its first text in the caller's whole input; ``usage``: its
    :class:`~embedsdk.Stats`, counted as it goes; ``context``: the caller's
    :mod:`contextvars` context when the call began (an OpenTelemetry span's parent is there);
    ``data``: a dict for hooks to keep what they need between one call's events.
    """

    id: int
    model: str
    endpoint: str
    provider: str
    inputs: int
    offset: int
    usage: Stats
    context: contextvars.Context
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Event:
    """One event of a call (see the module's docstring for the kinds).

    ``inputs``: texts in the request (``"call"``/``"call_end"``: in the call); ``tokens``:
    the request's estimate (``"request"``), the tokens the server counted (``"response"``,
    ``None`` when it said nothing or refused); ``status``: the HTTP status (``"response"``;
    ``None`` when no answer came); ``seconds``: the answer's latency, or how long the request
    waited for none (``"response"``), the wait (``"retry"``, ``"pause"``), the call's length
    (``"call_end"``); ``attempt``: 1 for a request's first attempt; ``bytes``: the body sent
    (``"request"``) or received (``"response"``); ``error``: why a request failed
    (``"response"``: no answer, an error answer, one that could not be decoded), the failure
    retried (``"retry"``), the one that ended the call (``"call_end"``), else ``None``;
    ``reason``: why a pause (``"pause"`` after a 429, ``"slot"``, ``"probe"``, ``"pace"``,
    ``"leader"``: a Ray worker before its rate leader first answered) or
    a retry (the error's class name). Every ``"request"`` is followed by one ``"response"``.
    Never a text, never the key.
    """

    kind: str
    call: Call
    inputs: int = 0
    tokens: int | None = None
    status: int | None = None
    seconds: float | None = None
    attempt: int = 0
    bytes: int = 0
    error: BaseException | None = None
    reason: str = ""


def check_hooks(value: object) -> dict[str, tuple[Hook, ...]]:
    """The ``event_hooks`` option: a mapping of event kind to callables (or one callable)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"event_hooks must be a dict of event kind to a list of callables, not "
            f"{type(value).__name__}"
        )
    hooks: dict[str, tuple[Hook, ...]] = {}
    for kind, given in value.items():
        if kind not in EVENTS:
            raise ValueError(f"event_hooks: unknown event {kind!r}; the events are {EVENTS}")
        found = (given,) if callable(given) else tuple(given)
        for hook in found:
            if not callable(hook):
                raise TypeError(f"event_hooks[{kind!r}] holds {hook!r}, which is not callable")
            if _is_async(hook):
                raise TypeError(
                    f"event_hooks[{kind!r}] holds {hook!r}, a coroutine function: hooks are "
                    "plain functions, run on the client's loop (start a task there yourself "
                    "if you must await)"
                )
        hooks[kind] = found
    return hooks


#: Hooks for every client of the process (``add_global_hooks``), by kind.
_GLOBAL: dict[str, tuple[Hook, ...]] = {}
_failed: set[int] = set()  # id() of the hooks that raised (logged once each)


def add_global_hooks(hooks: HookMap) -> Callable[[], None]:
    """Add ``hooks`` to every client of the process, those made before too; returns a
    function that removes them again."""
    checked = check_hooks(hooks)
    for kind, found in checked.items():
        _GLOBAL[kind] = _GLOBAL.get(kind, ()) + found

    def remove() -> None:  # these registrations only: a hook added twice stays once
        for kind, found in checked.items():
            left = list(_GLOBAL.get(kind, ()))
            for hook in found:
                at = next((i for i, h in enumerate(left) if h is hook), None)
                if at is not None:
                    del left[at]
            if left:
                _GLOBAL[kind] = tuple(left)
            else:
                _GLOBAL.pop(kind, None)

    return remove


class Hooks:
    """A client's hooks and the process's, run for each event."""

    def __init__(self, own: Iterable[tuple[str, tuple[Hook, ...]]]) -> None:
        self._own = dict(own)

    def wants(self, kind: str) -> bool:
        """Whether any hook listens for ``kind`` (build no event otherwise)."""
        return kind in self._own or kind in _GLOBAL

    def emit(self, kind: str, call: Call, **fields: Any) -> None:
        hooks = self._own.get(kind, ()) + _GLOBAL.get(kind, ())
        if not hooks:
            return
        event = Event(kind, call, **fields)
        for hook in hooks:
            try:
                result = hook(event)
                if inspect.isawaitable(result):  # an async callable check_hooks did not see
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()  # no "never awaited" warning on top of this one
                    raise TypeError("the hook returned an awaitable, which nothing awaits")
            except Exception:  # a watcher's bug must not fail the call it watches
                if id(hook) not in _failed:
                    _failed.add(id(hook))
                    logger.exception("event hook %r failed on a %r event (said once)", hook, kind)


_ids = itertools.count(1)


def new_call(
    model: str, endpoint: str, provider: str, inputs: int, offset: int, usage: Stats
) -> Call:
    return Call(
        next(_ids), model, endpoint, provider, inputs, offset, usage, contextvars.copy_context()
    )


# -- usage collectors --------------------------------------------------------------------------

_COLLECTORS: contextvars.ContextVar[tuple[Stats, ...]] = contextvars.ContextVar(
    "embedsdk_usage", default=()
)


@contextlib.contextmanager
def track_usage() -> Iterator[Stats]:
    """Collect the usage of every call made inside the ``with`` block, by any client:

    >>> with embedsdk.track_usage() as usage:                 # doctest: +SKIP
    ...     vecs = embedsdk.get_batch_embeddings(texts)
    >>> usage.tokens, usage.requests, usage.cache_hits, usage.cost   # doctest: +SKIP

    Blocks nest (each sees its calls). A call counts when it ends, whole, in the block where
    it began. Works in threads and asyncio tasks: it follows :mod:`contextvars`.
    """
    usage = Stats()
    token = _COLLECTORS.set((*_COLLECTORS.get(), usage))
    try:
        yield usage
    finally:
        _COLLECTORS.reset(token)


_CREDIT_LOCK = threading.Lock()  # calls end on several clients' loop threads


def credit(blocks: tuple[Stats, ...], usage: Stats) -> None:
    """Add a call's ``usage`` to the ``track_usage`` blocks open at its start."""
    if blocks:
        with _CREDIT_LOCK:
            for block in blocks:
                block.add(usage)


def _is_async(hook: object) -> bool:
    # An async def, or an object whose __call__ is one.
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(type(hook).__call__)


def collectors() -> tuple[Stats, ...]:
    """The usage collectors open where this runs."""
    return _COLLECTORS.get()
