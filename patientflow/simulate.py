"""The bank lesson, proven: a discrete-event simulation of a day's arrivals at N counters.

Every call takes whoever `services.triage.rules` puts first, so what is measured here is the ordering
the live queue uses. Times are minutes from the start of the day; a lane is a set of counters serving
only some service classes ("from one long queue to small queues": split simple from complex).
"""

import csv
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kit.stats import nearest_rank
from services.triage.estimates import ServiceSpell, WaitBand, active_stations, estimate_wait, recent_durations
from services.triage.rules import PriorityKind, QueueRules, QueueState, Waiting, advance, next_in_queue

DAY_START = datetime(2026, 1, 5, tzinfo=UTC)  # any instant: the ordering only compares times
TARGET_MINUTES = 10


@dataclass(frozen=True, slots=True)
class Arrival:
    """One patient of the day: when they arrive, how long their service takes, and what they are."""

    number: int
    minute: float
    service_minutes: float
    service_class: str = "simple"
    level: str | None = None
    priority: PriorityKind | None = None
    appointment: float | None = None  # the booked slot's minute


@dataclass(frozen=True, slots=True)
class Lane:
    """Counters serving the given classes only; `classes=None` serves everyone."""

    counters: int
    classes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Served:
    arrival: Arrival
    start: float
    counter: int

    @property
    def wait(self) -> float:
        return self.start - self.arrival.minute

    @property
    def finish(self) -> float:
        return self.start + self.arrival.service_minutes


@dataclass(frozen=True, slots=True)
class LaneView:
    """A lane at an instant patients arrive: who just came, who waits (them included), the services so
    far (started before now), the rules' state, and the lane's counters (numbered from `first`)."""

    now: float
    arrived: list[Waiting]
    waiting: list[Waiting]
    served: list[Served]
    state: QueueState
    counters: int
    first: int


ArrivalObserver = Callable[[LaneView], None]


@dataclass(frozen=True, slots=True)
class WaitSummary:
    label: str
    patients: int
    mean: float
    p90: float
    max: float
    over_target_share: float  # waiting more than 10 minutes


@dataclass(frozen=True, slots=True)
class Outcome:
    served: list[Served]

    @property
    def makespan(self) -> float:
        """From the first arrival to the last service's end."""
        return max(s.finish for s in self.served) - min(s.arrival.minute for s in self.served)

    def summary(self) -> list[WaitSummary]:
        """Per service class (alphabetical), then everyone."""
        classes = sorted({s.arrival.service_class for s in self.served})
        rows = [summarise(c, [s.wait for s in self.served if s.arrival.service_class == c]) for c in classes]
        return [*rows, summarise("all", [s.wait for s in self.served])]


def summarise(label: str, waits: Sequence[float]) -> WaitSummary:
    ordered = sorted(waits)
    p90 = nearest_rank(ordered, 90)
    over = sum(1 for w in ordered if w > TARGET_MINUTES + 1e-9)
    return WaitSummary(
        label, len(ordered), sum(ordered) / len(ordered), p90, ordered[-1], over / len(ordered)
    )


def _at(minute: float) -> datetime:
    return DAY_START + timedelta(minutes=minute)


def _waiting(arrival: Arrival) -> Waiting:
    return Waiting(
        key=str(arrival.number),
        number=arrival.number,
        arrived_at=_at(arrival.minute),
        level=arrival.level,
        priority=arrival.priority,
        appointment_at=_at(arrival.appointment) if arrival.appointment is not None else None,
        service_class=arrival.service_class,
    )


def _run_lane(
    arrivals: Sequence[Arrival],
    *,
    rules: QueueRules,
    counters: int,
    first: int,
    on_arrival: ArrivalObserver | None = None,
) -> list[Served]:
    """One queue and its counters: whenever a counter is free and someone waits, call the rules' first.

    `on_arrival` sees the lane as it is when patients arrive, before anyone is called at that instant."""
    pending = sorted(arrivals, key=lambda a: (a.minute, a.number))
    by_key = {str(a.number): a for a in pending}
    free_at = [0.0] * counters
    waiting: list[Waiting] = []
    served: list[Served] = []
    state = QueueState()
    now = pending[0].minute if pending else 0.0
    while pending or waiting:
        arrived = []
        while pending and pending[0].minute <= now:
            arrived.append(_waiting(pending.pop(0)))
        waiting += arrived
        if arrived and on_arrival is not None:
            on_arrival(LaneView(now, arrived, list(waiting), list(served), state, counters, first))
        free = [c for c in range(counters) if free_at[c] <= now]
        if free and waiting:
            placed = next_in_queue(waiting, rules=rules, now=_at(now), state=state)
            assert placed is not None
            waiting.remove(placed.ticket)
            state = advance(state, placed.ticket, rules, now=_at(now))
            arrival = by_key[placed.ticket.key]
            free_at[free[0]] = now + arrival.service_minutes
            served.append(Served(arrival=arrival, start=now, counter=first + free[0]))
            continue
        later = [t for t in free_at if t > now] if waiting else []
        if pending:
            later.append(pending[0].minute)
        now = min(later)
    return served


def simulate(
    arrivals: Sequence[Arrival],
    *,
    rules: QueueRules,
    lanes: Sequence[Lane],
    on_arrival: ArrivalObserver | None = None,
) -> Outcome:
    """Replay the arrivals; each patient joins the first lane serving their class."""
    groups: list[list[Arrival]] = [[] for _ in lanes]
    for arrival in arrivals:
        index = next(
            (
                i
                for i, lane in enumerate(lanes)
                if lane.classes is None or arrival.service_class in lane.classes
            ),
            None,
        )
        if index is None:
            raise ValueError(f"no lane serves class {arrival.service_class!r}")
        groups[index].append(arrival)
    served: list[Served] = []
    first = 0
    for lane, group in zip(lanes, groups, strict=True):
        served += _run_lane(group, rules=rules, counters=lane.counters, first=first, on_arrival=on_arrival)
        first += lane.counters
    return Outcome(served=served)


def _minute(text: str) -> float:
    """`8:05`, `08:05:30` (clock time) or `485` (minutes from midnight)."""
    if ":" in text:
        parts = [float(p) for p in text.split(":")]
        return parts[0] * 60 + parts[1] + (parts[2] / 60 if len(parts) > 2 else 0.0)
    return float(text)


def read_arrivals(path: Path) -> list[Arrival]:
    """A day from CSV: `arrival,service_minutes,class[,level][,priority][,appointment]`, a patient a row,
    in ticket order; times as clock times (08:05) or minutes from midnight."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        Arrival(
            number=i + 1,
            minute=_minute(row["arrival"]),
            service_minutes=float(row["service_minutes"]),
            service_class=(row.get("class") or "simple").strip(),
            level=(row.get("level") or "").strip() or None,
            priority=PriorityKind(p) if (p := (row.get("priority") or "").strip()) else None,
            appointment=_minute(b) if (b := (row.get("appointment") or "").strip()) else None,
        )
        for i, row in enumerate(rows)
    ]


def _poisson_times(rng: random.Random, hourly: Iterable[tuple[float, float, float]]) -> list[float]:
    """Arrival minutes of a Poisson process with piecewise-constant rates (start, end, per hour)."""
    times = []
    for start, end, per_hour in hourly:
        t = start
        while True:
            t += rng.expovariate(per_hour / 60)
            if t >= end:
                break
            times.append(t)
    return times


def morning_peak(seed: int) -> list[Arrival]:
    """An outpatient window morning (cashier/registration, 07:30–11:30), peak before 10:00.

    Assumptions: 40/h from 07:30, 95/h 08:00–10:00, 50/h to 11:30 (≈ 305 patients); 70% simple
    (a payment, mean 2 min), 30% complex (insurance, corrections, mean 8 min); service times
    exponential. With 6 counters the peak load is ≈ 1.0 (the crowd builds), off-peak ≈ 0.5.
    """
    rng = random.Random(seed)
    times = _poisson_times(rng, [(450, 480, 40), (480, 600, 95), (600, 690, 50)])
    arrivals = []
    for i, minute in enumerate(times):
        simple = rng.random() < 0.7
        service = rng.expovariate(1 / (2.0 if simple else 8.0))
        arrivals.append(Arrival(i + 1, minute, service, "simple" if simple else "complex"))
    return arrivals


def emergency_day(seed: int) -> list[Arrival]:
    """An emergency department's 24 hours with levels I–IV.

    Assumptions: 5/h at night (00–08), 14/h by day (08–20), 9/h in the evening (≈ 300 patients);
    levels I 1%, II 7%, III 32%, IV 60%; level IV is `simple` (minor complaints, mean 12 min of a
    doctor), I–III `complex` (mean 30 min); service times exponential; 5 doctors.
    """
    rng = random.Random(seed)
    times = _poisson_times(rng, [(0, 480, 5), (480, 1200, 14), (1200, 1440, 9)])
    arrivals = []
    for i, minute in enumerate(times):
        draw = rng.random()
        level = "I" if draw < 0.01 else "II" if draw < 0.08 else "III" if draw < 0.40 else "IV"
        simple = level == "IV"
        service = rng.expovariate(1 / (12.0 if simple else 30.0))
        arrivals.append(Arrival(i + 1, minute, service, "simple" if simple else "complex", level=level))
    return arrivals


DAYS = {"morning": morning_peak, "ed": emergency_day}


def format_table(outcome: Outcome, *, makespan: bool = True) -> str:
    """Per class: patients, mean, p90 and max wait (minutes), share over 10 minutes; then the makespan
    (of one day: days pooled have none)."""
    lines = ["class      patients  mean   p90    max  >10 min"]
    for r in outcome.summary():
        figures = f"{r.mean:>6.1f} {r.p90:>6.1f} {r.max:>6.1f} {r.over_target_share:>8.0%}"
        lines.append(f"{r.label:<10} {r.patients:>8} {figures}")
    if makespan:
        lines.append(f"makespan {outcome.makespan:.1f} min")
    return "\n".join(lines)


def parse_split(texts: Sequence[str], *, counters: int) -> list[Lane]:
    """`simple=2` gives 2 counters to simple patients only; the remaining counters serve the rest."""
    lanes = []
    for text in texts:
        name, _, count = text.partition("=")
        lanes.append(Lane(counters=int(count), classes=frozenset(name.split("+"))))
    rest = counters - sum(lane.counters for lane in lanes)
    if rest < 1:
        raise ValueError("the split leaves no counter for everyone else")
    return [*lanes, Lane(counters=rest)]


# --- Measuring the wait estimator (services/triage/estimates.py) against the waits the day really had


@dataclass(frozen=True, slots=True)
class EstimateCheck:
    """The band the estimator gave a patient on arrival, and the wait the patient then had."""

    arrival: Arrival
    band: WaitBand
    wait: float

    @property
    def error(self) -> float:
        """How far the band's midpoint was from the real wait, in minutes."""
        return abs(self.band.midpoint - self.wait)

    @property
    def above(self) -> bool:
        return self.wait > self.band.high_minutes

    @property
    def below(self) -> bool:
        return self.wait < self.band.low_minutes


@dataclass(frozen=True, slots=True)
class EstimateSummary:
    patients: int
    median_error: float
    p90_error: float
    above_share: float  # the real wait was above the band's top
    below_share: float
    mean_width: float  # high - low, minutes


def _ahead_of(view: LaneView, rules: QueueRules) -> dict[str, int]:
    """How many the rules put before each patient who just arrived (the order projected call by call)."""
    keys = {t.key for t in view.arrived}
    pool, state, ahead = list(view.waiting), view.state, 0
    found: dict[str, int] = {}
    while keys - found.keys():
        placed = next_in_queue(pool, rules=rules, now=_at(view.now), state=state)
        assert placed is not None
        pool.remove(placed.ticket)
        state = advance(state, placed.ticket, rules)
        if placed.ticket.key in keys:
            found[placed.ticket.key] = ahead
        ahead += 1
    return found


def replay_estimates(
    arrivals: Sequence[Arrival], *, rules: QueueRules, lanes: Sequence[Lane]
) -> list[EstimateCheck]:
    """Replay the day; at each arrival, ask the live estimator for the patient's band exactly as the
    service does (position in the rules' order, recent services, stations calling), then compare it with
    the wait the patient really had."""
    bands: dict[int, WaitBand] = {}

    def observe(view: LaneView) -> None:
        spells = [
            ServiceSpell(s.start, s.finish if s.finish <= view.now else None, str(s.counter))
            for s in view.served
        ]
        durations = recent_durations(spells, now=view.now)
        stations = active_stations(spells, now=view.now, configured=view.counters)
        busy = sum(1 for s in spells if s.end is None)
        for key, ahead in _ahead_of(view, rules).items():
            bands[int(key)] = estimate_wait(
                ahead=ahead, busy=busy, stations=stations, service_minutes=durations
            )

    outcome = simulate(arrivals, rules=rules, lanes=lanes, on_arrival=observe)
    return [EstimateCheck(s.arrival, bands[s.arrival.number], s.wait) for s in outcome.served]


def summarise_estimates(checks: Sequence[EstimateCheck]) -> EstimateSummary:
    errors = sorted(c.error for c in checks)
    count = len(errors)
    middle = count // 2
    median = errors[middle] if count % 2 else (errors[middle - 1] + errors[middle]) / 2
    return EstimateSummary(
        patients=count,
        median_error=median,
        p90_error=nearest_rank(errors, 90),
        above_share=sum(1 for c in checks if c.above) / count,
        below_share=sum(1 for c in checks if c.below) / count,
        mean_width=sum(c.band.high_minutes - c.band.low_minutes for c in checks) / count,
    )


def format_estimates(checks: Sequence[EstimateCheck]) -> str:
    """The estimator's report, for every patient and for those who arrived to find every counter busy
    (whose band is more than "called at once"): the error of the band's midpoint against the real wait,
    and how often the real wait fell above the band's top or below its bottom."""
    lines = ["patients           count  median error  p90 error  above band  below band  mean width"]
    queued = [c for c in checks if c.band.expected_minutes > 0]
    for label, group in (("all", checks), ("counters all busy", queued)):
        if not group:
            continue
        s = summarise_estimates(group)
        lines.append(
            f"{label:<18} {s.patients:>5} {s.median_error:>9.1f} min {s.p90_error:>6.1f} min"
            f" {s.above_share:>10.1%} {s.below_share:>11.1%} {s.mean_width:>7.1f} min"
        )
    return "\n".join(lines)
