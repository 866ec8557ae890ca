"""The rule engine: one pure function that orders a queue and says, per position, why (no I/O).

A queue's rules are data (`QueueRules`), so each department can differ and the simulator
(`patientflow simulate`) replays a day against exactly the ordering the live queue uses. The order is
projected call by call: the first entry is who the next call-next should take, and the counters that
a ratio or a late-arrival insertion depend on advance as the projection goes.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kit.clock import HOSPITAL_TZ, as_utc

LEVELS = ("I", "II", "III", "IV")


class PriorityKind(StrEnum):
    """Legal priority (老弱残军): the elderly, disabled, pregnant, military; `priority` is unspecified."""

    elderly = "elderly"
    disabled = "disabled"
    pregnant = "pregnant"
    military = "military"
    priority = "priority"


class AppointmentMode(StrEnum):
    """`ignore`: booked patients queue by arrival like everyone (today's rule); `first`: on-time booked
    patients before walk-ins, by booked time; `booked-time`: an on-time booked patient counts as
    having arrived at the booked time. Earlier than the early window, a booked patient queues as a
    walk-in; later than the late window, as a walk-in too, or inserted every `late_every`."""

    ignore = "ignore"
    first = "first"
    booked_time = "booked-time"


class QueueRules(BaseModel):
    """How one queue is ordered. The defaults are the ordering call-next uses today."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    green_channel_levels: tuple[str, ...] = Field(
        default=("I", "II"), description="Levels called before anyone else (绿色通道), most urgent first"
    )
    priority_levels: tuple[str, ...] = Field(
        default=("III",), description="Levels that join the legal-priority tier"
    )
    priority_ranks: dict[PriorityKind, int] = Field(
        default_factory=dict, description="Lower is called first among priority patients; missing is 0"
    )
    normal_per_priority: int | None = Field(
        default=None, ge=1, description="A ratio: this many normal calls per priority call; null = strict"
    )
    appointments: AppointmentMode = AppointmentMode.ignore
    early_minutes: int = Field(default=60, ge=0, description="Earlier than this before the slot is early")
    late_minutes: int = Field(default=15, ge=0, description="Later than this after the slot is late")
    late_every: int | None = Field(
        default=None, ge=1, description="A late booked patient after every N on-time ones; null = walk-in"
    )
    ageing_minutes: int | None = Field(
        default=None, ge=1, description="Who has waited this long goes ahead of all but the green channel"
    )
    service_minutes: dict[str, float] = Field(
        default_factory=lambda: {"simple": 3.0, "complex": 10.0},
        description="Expected service time per service class",
    )
    shortest_work_first: bool = Field(default=False, description="Shorter expected service first")

    @field_validator("green_channel_levels", "priority_levels")
    @classmethod
    def _known_levels(cls, levels: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(levels) - set(LEVELS)
        if unknown:
            raise ValueError(f"unknown levels {sorted(unknown)}; levels are {', '.join(LEVELS)}")
        return levels

    @field_validator("green_channel_levels")
    @classmethod
    def _level_one_first(cls, levels: tuple[str, ...]) -> tuple[str, ...]:
        """A dying patient (level I) is never ordered behind anyone: no configuration may say otherwise."""
        if "I" not in levels:
            raise ValueError("the green channel always includes level I")
        return levels


@dataclass(frozen=True, slots=True)
class Waiting:
    """What the ordering needs of one waiting ticket."""

    key: str
    number: int
    arrived_at: datetime
    level: str | None = None
    priority: PriorityKind | None = None
    appointment_at: datetime | None = None
    service_class: str = "simple"


@dataclass(frozen=True, slots=True)
class QueueState:
    """What earlier calls of the day leave behind: the counts a ratio and a late insertion follow."""

    normal_since_priority: int = 0
    on_time_since_late: int = 0


@dataclass(frozen=True, slots=True)
class Placed:
    position: int
    ticket: Waiting
    reason: str


def clock(instant: datetime) -> str:
    """An instant as the nurse's wall clock shows it (hospital time, 08:12)."""
    return as_utc(instant).astimezone(HOSPITAL_TZ).strftime("%H:%M")


def _minutes(later: datetime, earlier: datetime) -> float:
    return (as_utc(later) - as_utc(earlier)).total_seconds() / 60


def _is_priority(ticket: Waiting, rules: QueueRules) -> bool:
    return ticket.priority is not None or (ticket.level is not None and ticket.level in rules.priority_levels)


def _priority_rank(ticket: Waiting, rules: QueueRules) -> int:
    return rules.priority_ranks.get(ticket.priority, 0) if ticket.priority else 0


def _booked(ticket: Waiting, rules: QueueRules) -> str | None:
    """`on-time`, `early`, `late` for a booked ticket (by arrival against the slot); None for a walk-in."""
    if ticket.appointment_at is None or rules.appointments is AppointmentMode.ignore:
        return None
    offset = _minutes(ticket.arrived_at, ticket.appointment_at)
    if offset > rules.late_minutes:
        return "late"
    if offset < -rules.early_minutes:
        return "early"
    return "on-time"


def _expected(ticket: Waiting, rules: QueueRules) -> float:
    return rules.service_minutes.get(ticket.service_class, 0.0)


def _tier_key(ticket: Waiting, rules: QueueRules) -> tuple[float, int, datetime, int]:
    """Order within the priority or the normal tier: work, booking, then first come first served."""
    work = _expected(ticket, rules) if rules.shortest_work_first else 0.0
    booked = _booked(ticket, rules)
    on_time = booked == "on-time" and ticket.appointment_at is not None  # too early: a walk-in for now
    if rules.appointments is AppointmentMode.first:
        group = 0 if on_time else 1
        at = ticket.appointment_at if on_time and ticket.appointment_at else ticket.arrived_at
    elif rules.appointments is AppointmentMode.booked_time and on_time and ticket.appointment_at:
        group, at = 0, ticket.appointment_at
    else:
        group, at = 0, ticket.arrived_at
    return (work, group, as_utc(at), ticket.number)


def _describe(ticket: Waiting, rules: QueueRules) -> list[str]:
    """What is true of the ticket that the ordering used, in the nurse's words."""
    parts = []
    if ticket.level:
        parts.append(f"level {ticket.level}")
    if ticket.priority:
        rank = _priority_rank(ticket, rules)
        label = "priority" if ticket.priority is PriorityKind.priority else f"priority ({ticket.priority})"
        parts.append(f"{label}, rank {rank}" if rules.priority_ranks else label)
    booked = _booked(ticket, rules)
    if booked and ticket.appointment_at:
        parts.append(f"appointment {clock(ticket.appointment_at)} ({booked})")
    parts.append(f"arrived {clock(ticket.arrived_at)}")
    if rules.shortest_work_first:
        minutes = _expected(ticket, rules)
        parts.append(f"{ticket.service_class} (~{minutes:g} min), shorter work first")
    return parts


def _pick_green(pool: list[Waiting], rules: QueueRules) -> Waiting | None:
    urgent = [t for t in pool if t.level in rules.green_channel_levels]
    if not urgent:
        return None
    return min(urgent, key=lambda t: (LEVELS.index(t.level or "IV"), as_utc(t.arrived_at), t.number))


def order_queue(
    waiting: Sequence[Waiting], *, rules: QueueRules, now: datetime, state: QueueState | None = None
) -> list[Placed]:
    """The waiting tickets in the order they would be called now, each with the reason for its place.

    Tiers, in order: the green channel (level I before II); whoever has waited past the ageing bound,
    oldest first; then the priority tier (legal priority by rank, and `priority_levels`) before the
    normal tier, or interleaved by `normal_per_priority`. Inside a tier: shorter expected work first
    when asked, booked patients as `appointments` says, late booked patients inserted every
    `late_every`, then arrival and number.
    """
    state = state or QueueState()
    pool = list(waiting)
    placed: list[Placed] = []
    while pool:
        ticket, why = _next(pool, rules=rules, now=now, state=state)
        pool.remove(ticket)
        placed.append(Placed(position=len(placed) + 1, ticket=ticket, reason=why))
        state = advance(state, ticket, rules)
    return placed


def next_in_queue(
    waiting: Sequence[Waiting], *, rules: QueueRules, now: datetime, state: QueueState | None = None
) -> Placed | None:
    """Only the first of `order_queue` (what a call would take), without projecting the rest."""
    if not waiting:
        return None
    ticket, why = _next(list(waiting), rules=rules, now=now, state=state or QueueState())
    return Placed(position=1, ticket=ticket, reason=why)


def advance(state: QueueState, ticket: Waiting, rules: QueueRules) -> QueueState:
    """The state after `ticket` is called: replays a day's calls, and steps the projection."""
    if ticket.level in rules.green_channel_levels:
        return state
    if _is_priority(ticket, rules):
        state = replace(state, normal_since_priority=0)
    else:
        state = replace(state, normal_since_priority=state.normal_since_priority + 1)
    booked = _booked(ticket, rules)
    if booked == "late" and rules.late_every:
        return replace(state, on_time_since_late=0)
    return replace(state, on_time_since_late=state.on_time_since_late + 1)


def _next(pool: list[Waiting], *, rules: QueueRules, now: datetime, state: QueueState) -> tuple[Waiting, str]:
    green = _pick_green(pool, rules)
    if green is not None:
        return green, ", ".join([*_describe(green, rules), "green channel: ahead of everyone"])
    if rules.ageing_minutes is not None:
        aged = [t for t in pool if _minutes(now, t.arrived_at) >= rules.ageing_minutes]
        if aged:
            oldest = min(aged, key=lambda t: (as_utc(t.arrived_at), t.number))
            waited = int(_minutes(now, oldest.arrived_at))
            bound = (
                f"waited {waited} min, past the {rules.ageing_minutes}-minute bound: ahead of later arrivals"
            )
            return oldest, ", ".join([*_describe(oldest, rules), bound])
    priority = [t for t in pool if _is_priority(t, rules)]
    normal = [t for t in pool if not _is_priority(t, rules)]
    if priority and normal and rules.normal_per_priority is not None:
        if state.normal_since_priority < rules.normal_per_priority:
            ticket, why = _pick_in_tier(normal, rules, state)
            ratio = f"{rules.normal_per_priority} normal : 1 priority"
            return ticket, f"{why}, normal turn ({state.normal_since_priority + 1} of {ratio})"
        ticket, why = _pick_in_tier(priority, rules, state)
        return ticket, f"{why}, priority turn after {state.normal_since_priority} normal calls"
    if priority:
        ticket, why = _pick_in_tier(priority, rules, state)
        return ticket, f"{why}, ahead of normal patients" if normal else why
    return _pick_in_tier(normal, rules, state)


def _pick_in_tier(tier: list[Waiting], rules: QueueRules, state: QueueState) -> tuple[Waiting, str]:
    key = lambda t: (_priority_rank(t, rules), *_tier_key(t, rules))  # noqa: E731
    if rules.late_every is not None:
        late = [t for t in tier if _booked(t, rules) == "late"]
        others = [t for t in tier if _booked(t, rules) != "late"]
        if late and (not others or state.on_time_since_late >= rules.late_every):
            ticket = min(late, key=key)
            note = f"late, inserted after {state.on_time_since_late} on-time patients"
            return ticket, ", ".join([*_describe(ticket, rules), note])
        tier = others
    ticket = min(tier, key=key)
    parts = _describe(ticket, rules)
    if rules.appointments is AppointmentMode.first and _booked(ticket, rules) == "on-time":
        parts += ["ahead of walk-ins"] if any(_booked(t, rules) != "on-time" for t in tier) else []
    return ticket, ", ".join(parts)
