"""Plans: the receivers one send calls, in order, as the dispatch loop reads them.

A plan is a tuple of plan entries ``(ref, call)`` (see `asignals._receivers`), and its
class says what it holds, so that the loop compiled for it need not ask per receiver:
an `InlinePlan` only inline sync receivers, an `AwaitPlan` only plain coroutine
receivers, a plain tuple anything. The connection table keeps the class right as it
publishes plans (`plan_of`, `extend`).
"""

from __future__ import annotations

from typing import Any

from ._receivers import ASYNC, SYNC, Entry, Receiver

Plan = tuple[Entry, ...]
Responses = list[tuple[Receiver, Any]]


class InlinePlan(tuple[Entry, ...]):
    """A plan whose receivers are all inline sync receivers (:data:`SYNC`)."""

    __slots__ = ()


class AwaitPlan(tuple[Entry, ...]):
    """A plan whose receivers are all plain coroutine receivers (:data:`ASYNC`).

    It keeps its parts for gather (`parts`, one per receiver) once computed: a plan never
    changes (connecting publishes a new one), and splitting a plan of 100 receivers again
    on every gather cost a twentieth of the gather. (Hence no ``__slots__``.)
    """

    parts: list[Plan] | None = None


KINDS: tuple[type, ...] = (tuple, InlinePlan, AwaitPlan)
"""The plan classes the loop is compiled for (a subclass of tuple made elsewhere, by a
send hook for instance, counts as a plain tuple)."""


def kind_of(plan: Plan) -> type:
    """The class the loop for *plan* is compiled for."""
    kind = type(plan)
    return kind if kind is InlinePlan or kind is AwaitPlan else tuple


def plan_of(entries: tuple[Entry, ...]) -> Plan:
    """*entries* as a plan whose class tells the loop what it holds."""
    if not entries:
        return ()
    first = entries[0][1]
    if first is SYNC or first is ASYNC:
        for _, call in entries:
            if call is not first:
                return entries
        return InlinePlan(entries) if first is SYNC else AwaitPlan(entries)
    return entries


def extend(plan: Plan, entry: Entry) -> Plan:
    """*plan* with *entry* appended, its class kept when *entry* is of the same kind."""
    entries = (*plan, entry)
    kind = type(plan)
    if kind is InlinePlan:
        return InlinePlan(entries) if entry[1] is SYNC else entries
    if kind is AwaitPlan:
        return AwaitPlan(entries) if entry[1] is ASYNC else entries
    return plan_of(entries) if len(entries) == 1 else entries


def inline(plan: Plan) -> bool:
    """Whether every receiver of *plan* is a sync receiver called inline: a loop over it
    finishes without ever suspending."""
    return type(plan) is InlinePlan or all(call is SYNC for _, call in plan)
