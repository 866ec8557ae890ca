"""The rule engine: one pure function that orders a queue and says, per position, why (no I/O).

A queue's rules are data (`QueueRules`), so each department can differ and the simulator
(`patientflow simulate`) replays a day against exactly the ordering the live queue uses. The order is
projected call by call: the first entry is who the next call-next takes (`next_in_queue`, the same
pick), and the counters that a ratio, a late-arrival insertion or a skipped ticket's interval depend on
advance as the projection goes. The cap per station (`station_full`) is checked at the call.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


SERVICE_CLASS_PATTERN = r"^[a-z][a-z0-9-]{0,15}$"


class WaitCondition(BaseModel):
    """A condition on waits (Qmatic's "when the wait in queue X passes 60 minutes, call X"), for the
    patients it selects (a service class, the priority or the normal tier, or both; none: everyone).

    `first`: once the longest wait among them passes `minutes`, the longest-waiting of them is called
    ahead of the tiers. `priority`: each of them waiting past `minutes` is promoted to the priority tier.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    minutes: int = Field(ge=1, le=1440)
    service_class: str | None = Field(default=None, pattern=SERVICE_CLASS_PATTERN)
    tier: Literal["priority", "normal"] | None = None
    action: Literal["first", "priority"] = "first"

    @model_validator(mode="after")
    def _promotes_only_normal(self) -> Self:
        if self.action == "priority" and self.tier == "priority":
            raise ValueError("priority patients cannot be promoted to the priority tier")
        return self

    def label(self) -> str:
        """Who the condition is about, in the nurse's words ("complex normal patients")."""
        return " ".join(p for p in (self.service_class, self.tier, "patients") if p)


class QueueRules(BaseModel):
    """How one queue is ordered. The defaults: green channel (I before II), level III and legal
    priority, then everyone, first come first served within each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    green_channel_levels: tuple[str, ...] = Field(
        default=("I", "II"), description="Levels called before anyone else (绿色通道), most urgent first"
    )
    priority_levels: tuple[str, ...] = Field(
        default=("III",), description="Levels that join the legal-priority tier"
    )
    priority_ranks: dict[PriorityKind, Annotated[int, Field(ge=-99, le=99)]] = Field(
        default_factory=dict, description="Lower is called first among priority patients; missing is 0"
    )
    normal_per_priority: int | None = Field(
        default=None,
        ge=1,
        le=50,
        description="A ratio: this many normal calls per priority call; null = strict",
    )
    appointments: AppointmentMode = AppointmentMode.ignore
    early_minutes: int = Field(
        default=60, ge=0, le=1440, description="Earlier than this before the slot is early"
    )
    late_minutes: int = Field(default=15, ge=0, le=1440, description="Later than this after the slot is late")
    late_every: int | None = Field(
        default=None,
        ge=1,
        le=50,
        description="A late booked patient after every N on-time ones; null = walk-in",
    )
    ageing_minutes: int | None = Field(
        default=None,
        ge=1,
        le=1440,
        description="Who has waited this long goes ahead of all but the green channel",
    )
    service_minutes: dict[str, float] = Field(
        default_factory=lambda: {"simple": 3.0, "complex": 10.0},
        description="Expected service time per service class",
    )
    shortest_work_first: bool = Field(default=False, description="Shorter expected service first")
    default_service_class: str = Field(
        default="simple", description="The class of a ticket nobody classified (a key of service_minutes)"
    )
    wait_conditions: tuple[WaitCondition, ...] = Field(
        default=(), max_length=10, description="Conditions on waits, the first listed winning"
    )

    @field_validator("service_minutes")
    @classmethod
    def _known_classes(cls, minutes: dict[str, float]) -> dict[str, float]:
        bad = [k for k in minutes if not re.fullmatch(SERVICE_CLASS_PATTERN, k)]
        if bad or not minutes or len(minutes) > 10:
            raise ValueError("1 to 10 service classes, each named like `simple` or `x-ray`")
        if any(not 0 <= v <= 1440 for v in minutes.values()):
            raise ValueError("expected service minutes are between 0 and 1440")
        return minutes

    @model_validator(mode="after")
    def _classes_are_known(self) -> Self:
        named = {self.default_service_class} | {
            c.service_class for c in self.wait_conditions if c.service_class
        }
        unknown = named - set(self.service_minutes)
        if unknown:
            raise ValueError(f"service classes {sorted(unknown)} have no service_minutes")
        return self

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
    """What the ordering needs of one waiting ticket.

    A skipped ticket (过号, `skipped_at`) sits out until `recall_after_calls` other patients have been
    called since (`calls_since_skip`) or until `recall_at`, whichever comes first; then it is back at its
    place in line (`arrived_at` is unchanged by a skip).
    """

    key: str
    number: int
    arrived_at: datetime
    level: str | None = None
    priority: PriorityKind | None = None
    appointment_at: datetime | None = None
    service_class: str | None = None  # None: the rules' default class
    skipped_at: datetime | None = None
    recall_after_calls: int = 0
    recall_at: datetime | None = None
    calls_since_skip: int = 0


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


def _is_priority(ticket: Waiting, rules: QueueRules, now: datetime | None = None) -> bool:
    """In the priority tier: legal priority, a `priority_levels` level, or promoted by a wait condition
    by `now` (without `now`, promotion is not considered)."""
    if _base_priority(ticket, rules):
        return True
    return now is not None and _promoted_by(ticket, rules, now) is not None


def _base_priority(ticket: Waiting, rules: QueueRules) -> bool:
    return ticket.priority is not None or (ticket.level is not None and ticket.level in rules.priority_levels)


def _class_of(ticket: Waiting, rules: QueueRules) -> str:
    return ticket.service_class or rules.default_service_class


def _selected(ticket: Waiting, condition: WaitCondition, rules: QueueRules) -> bool:
    if condition.service_class is not None and _class_of(ticket, rules) != condition.service_class:
        return False
    return condition.tier is None or _base_priority(ticket, rules) == (condition.tier == "priority")


def _promoted_by(ticket: Waiting, rules: QueueRules, now: datetime) -> WaitCondition | None:
    """The first `priority` wait condition that promotes the ticket now, if any."""
    for condition in rules.wait_conditions:
        if condition.action != "priority" or not _selected(ticket, condition, rules):
            continue
        if _minutes(now, ticket.arrived_at) >= condition.minutes:
            return condition
    return None


def _sits_out(ticket: Waiting, now: datetime) -> bool:
    """A skipped ticket not yet due back in line."""
    if ticket.skipped_at is None or ticket.calls_since_skip >= ticket.recall_after_calls:
        return False
    return ticket.recall_at is None or as_utc(now) < as_utc(ticket.recall_at)


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
    """Expected service minutes; a class the rules no longer know counts as the default class."""
    minutes = rules.service_minutes
    return minutes.get(_class_of(ticket, rules), minutes.get(rules.default_service_class, 0.0))


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


def _describe(ticket: Waiting, rules: QueueRules, now: datetime, *, work: bool = True) -> list[str]:
    """What is true of the ticket that the ordering used, in the nurse's words (its expected work only
    when shorter work first applies: not to the green channel)."""
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
    if ticket.skipped_at is not None:
        parts.append(_skip_note(ticket, now))
    if rules.shortest_work_first and work:
        minutes = _expected(ticket, rules)
        parts.append(f"{_class_of(ticket, rules)} (~{minutes:g} min), shorter work first")
    promoted = None if _base_priority(ticket, rules) else _promoted_by(ticket, rules, now)
    if promoted is not None:
        waited = int(_minutes(now, ticket.arrived_at))
        parts.append(
            f"waited {waited} min, past the {promoted.minutes}-minute condition: promoted to priority"
        )
    return parts


def _calls(count: int, what: str = "calls") -> str:
    return f"{count} {what[:-1] if count == 1 else what}"


def _skip_note(ticket: Waiting, now: datetime) -> str:
    skipped = f"skipped at {clock(ticket.skipped_at)}" if ticket.skipped_at else "skipped"
    if ticket.calls_since_skip >= ticket.recall_after_calls:
        return f"{skipped}, back in line after {_calls(ticket.recall_after_calls)}"
    if ticket.recall_at is not None and as_utc(now) >= as_utc(ticket.recall_at):
        return f"{skipped}, back in line at {clock(ticket.recall_at)}"
    calls = f"sits out {_calls(ticket.recall_after_calls)} ({ticket.calls_since_skip} so far)"
    until = f" or until {clock(ticket.recall_at)}" if ticket.recall_at else ""
    return f"{skipped}, {calls}{until}"


def _pick_green(pool: list[Waiting], rules: QueueRules) -> Waiting | None:
    urgent = [t for t in pool if t.level in rules.green_channel_levels]
    if not urgent:
        return None
    return min(urgent, key=lambda t: (LEVELS.index(t.level or "IV"), as_utc(t.arrived_at), t.number))


def order_queue(
    waiting: Sequence[Waiting],
    *,
    rules: QueueRules,
    now: datetime,
    state: QueueState | None = None,
    limit: int | None = None,
) -> list[Placed]:
    """The waiting tickets in the order they would be called now, each with the reason for its place
    (only the first `limit` places: each is projected from those before it alone, none from after).

    Tiers, in order: the green channel (level I before II); whoever has waited past the ageing bound,
    oldest first; then the priority tier (legal priority by rank, and `priority_levels`) before the
    normal tier, or interleaved by `normal_per_priority`. Inside a tier: shorter expected work first
    when asked, booked patients as `appointments` says, late booked patients inserted every
    `late_every`, then arrival and number.
    """
    state = state or QueueState()
    pool = list(waiting)
    placed: list[Placed] = []
    while pool and (limit is None or len(placed) < limit):
        ticket, why = _next(pool, rules=rules, now=now, state=state)
        pool.remove(ticket)
        placed.append(Placed(position=len(placed) + 1, ticket=ticket, reason=why))
        state = advance(state, ticket, rules, now=now)
        # Each call counts towards the interval a skipped ticket sits out.
        pool = [replace(t, calls_since_skip=t.calls_since_skip + 1) if t.skipped_at else t for t in pool]
    return placed


def next_in_queue(
    waiting: Sequence[Waiting], *, rules: QueueRules, now: datetime, state: QueueState | None = None
) -> Placed | None:
    """Only the first of `order_queue` (what a call would take), without projecting the rest."""
    if not waiting:
        return None
    ticket, why = _next(list(waiting), rules=rules, now=now, state=state or QueueState())
    return Placed(position=1, ticket=ticket, reason=why)


def advance(
    state: QueueState, ticket: Waiting, rules: QueueRules, *, now: datetime | None = None
) -> QueueState:
    """The state after `ticket` is called at `now`: replays a day's calls, and steps the projection."""
    if ticket.level in rules.green_channel_levels:
        return state
    if _is_priority(ticket, rules, now):
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
        return green, ", ".join(
            [*_describe(green, rules, now, work=False), "green channel: ahead of everyone"]
        )
    # A skipped ticket sits out its interval, unless nobody else waits (no counter idles for it).
    back = [t for t in pool if not _sits_out(t, now)]
    ticket, why = _next_of(back or pool, rules=rules, now=now, state=state)
    return ticket, why if back else f"{why}, nobody else waiting"


def _next_of(
    pool: list[Waiting], *, rules: QueueRules, now: datetime, state: QueueState
) -> tuple[Waiting, str]:
    if rules.ageing_minutes is not None:
        aged = [t for t in pool if _minutes(now, t.arrived_at) >= rules.ageing_minutes]
        if aged:
            oldest = min(aged, key=lambda t: (as_utc(t.arrived_at), t.number))
            waited = int(_minutes(now, oldest.arrived_at))
            bound = (
                f"waited {waited} min, past the {rules.ageing_minutes}-minute bound: ahead of later arrivals"
            )
            return oldest, ", ".join([*_describe(oldest, rules, now), bound])
    for condition in rules.wait_conditions:
        if condition.action != "first":
            continue
        selected = [t for t in pool if _selected(t, condition, rules)]
        if not selected:
            continue
        oldest = min(selected, key=lambda t: (as_utc(t.arrived_at), t.number))
        waited = int(_minutes(now, oldest.arrived_at))
        if waited >= condition.minutes:
            met = (
                f"waited {waited} min, the longest of the {condition.label()}, past the "
                f"{condition.minutes}-minute condition: called first"
            )
            return oldest, ", ".join([*_describe(oldest, rules, now), met])
    priority = [t for t in pool if _is_priority(t, rules, now)]
    normal = [t for t in pool if not _is_priority(t, rules, now)]
    if priority and normal and rules.normal_per_priority is not None:
        if state.normal_since_priority < rules.normal_per_priority:
            ticket, why = _pick_in_tier(normal, rules, state, now)
            ratio = f"{rules.normal_per_priority} normal : 1 priority"
            return ticket, f"{why}, normal turn ({state.normal_since_priority + 1} of {ratio})"
        ticket, why = _pick_in_tier(priority, rules, state, now)
        return ticket, f"{why}, priority turn after {_calls(state.normal_since_priority, 'normal calls')}"
    if priority:
        ticket, why = _pick_in_tier(priority, rules, state, now)
        return ticket, f"{why}, ahead of normal patients" if normal else why
    return _pick_in_tier(normal, rules, state, now)


def _pick_in_tier(
    tier: list[Waiting], rules: QueueRules, state: QueueState, now: datetime
) -> tuple[Waiting, str]:
    key = lambda t: (_priority_rank(t, rules), *_tier_key(t, rules))  # noqa: E731
    if rules.late_every is not None:
        late = [t for t in tier if _booked(t, rules) == "late"]
        others = [t for t in tier if _booked(t, rules) != "late"]
        if late and (not others or state.on_time_since_late >= rules.late_every):
            ticket = min(late, key=key)
            note = f"late, inserted after {_calls(state.on_time_since_late, 'on-time patients')}"
            return ticket, ", ".join([*_describe(ticket, rules, now), note])
        tier = others
    ticket = min(tier, key=key)
    parts = _describe(ticket, rules, now)
    if rules.appointments is AppointmentMode.first and _booked(ticket, rules) == "on-time":
        parts += ["ahead of walk-ins"] if any(_booked(t, rules) != "on-time" for t in tier) else []
    return ticket, ", ".join(parts)


def station_full(*, station: str, called_there: int, cap: int | None) -> str | None:
    """The cap per room (候诊人数上限): why `station` may take no more patients now, or None if it may.

    A called patient counts at the station until finished, skipped, held or sent on.
    """
    if cap is None or called_there < cap:
        return None
    return (
        f"station {station} has {called_there} patients called and not yet seen (cap {cap}): "
        "finish, skip or hold one first"
    )
