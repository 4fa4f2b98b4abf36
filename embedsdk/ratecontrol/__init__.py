"""Rate control: how fast requests may go, learned from the provider's answers.

Providers enforce limits in many ways (token buckets that refill continuously, fixed or
sliding windows of a second or a minute, caps on requests in flight), most say nothing of
theirs, and users rarely know their level. This package paces the requests of every client
of one account just under what the server takes, and keeps the user's own ``rpm`` / ``tpm``
as hard ceilings.

Modules, from the bottom up (each imports only those above it, and ``embedsdk.http._responses``):

- ``_tuning``: every number the rest runs on (:class:`Tuning`), each with what it trades off;
- ``_hints``: what a 429 says of the limit (which ran out; a cap?), from its headers and words;
- ``_meter``: what the server took, counted over time;
- ``_pace``: a pace (GCRA without burst) and how it grows between cuts;
- ``_window``: requests in flight, and the evidence that tells a cap from a rate limit;
- ``_openings``: a short fixed window, spent as each of its periods begins;
- ``_controller``: :class:`RateController`, the state machine (its docstring has the table of
  states and transitions, and what moves the pace);
- ``_turns``: the async side: waiting for a turn, reporting an answer, one controller per
  account;
- ``_ceiling``: the user's ``rpm`` / ``tpm`` (aiolimiter), spread evenly;
- ``_cluster``: one account's controller shared by many processes (a leader and followers),
  with no Ray in it (``embedsdk.ray`` is the Ray side).

What the rest of embedsdk uses is exported here; nothing else in it imports the modules
above. The public names are :class:`RateController` and :class:`Tuning`, also exported by
``embedsdk``.
"""

from __future__ import annotations

from ._ceiling import Ceilings
from ._cluster import Follower, RateLeader, Syncer
from ._controller import NARROWED, NOTED, PAUSED, VISIBLE_WAIT, RateController, Ticket, loop_time
from ._tuning import DEFAULT, Tuning
from ._turns import controller_for, forget_shared_controllers, report, shared_controller, take_turn

__all__ = [
    "DEFAULT",
    "NARROWED",
    "NOTED",
    "PAUSED",
    "VISIBLE_WAIT",
    "Ceilings",
    "Follower",
    "RateController",
    "RateLeader",
    "Syncer",
    "Ticket",
    "Tuning",
    "controller_for",
    "forget_shared_controllers",
    "loop_time",
    "report",
    "shared_controller",
    "take_turn",
]
