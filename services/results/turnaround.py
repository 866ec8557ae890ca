"""Turnaround (TAT, 报告时限): each order's priority, target and due time, the lab's collection and
receipt times, its first final report, the overdue list, `order.overdue`, and TAT figures.

- **Priority**: the order's own `priority`, else `emergency` on an emergency visit, else `routine`.
- **Target** (ordered → first final report): the item's own target for that priority where the hospital
  sets one (`RESULTS_TAT_ITEM_MINUTES`), else the priority's (`RESULTS_TAT_EMERGENCY_MINUTES` 120,
  `RESULTS_TAT_ROUTINE_MINUTES` 1440). Fixed on the order when placed (`due_at = ordered_at + target`),
  so a changed setting never rewrites past figures. The orderable test's `turnaround_minutes` is its
  typical bench time (15-120 minutes), not a promise to the patient, so it is not the target.
- **Overdue**: with the lab (`released`: no final report, or its report was cancelled), past `due_at`.
  An order awaiting payment is not the lab's to work and is not listed; the clock still runs from
  `ordered_at`, as the patient waits. `reported_at` stays the first final report's time even then.
- **Released** (to the patient): the order's `releasable_at`, the first moment a report of it passed
  the release rule (verified, not withheld, paid where required: `service.note_releasable`); not its
  `released_at`, the payment gate's release to the lab. The figures give ordered → released beside
  ordered → reported: what the patient waited, holds and payment included.
- **Figures**: durations in whole seconds (integers), medians and p90 the **nearest rank**
  (`sorted[ceil(q n) - 1]`, an observed value, as services/events/waits.py), shown in minutes rounded
  up; the share within target is a `Decimal` of reported-in-time over everything decided (reported, or
  unreported past due).

Exactly once: `order.overdue` is sent by `OverdueWatcher` for rows taken under a row lock (`SKIP
LOCKED`) and marked `overdue_notified_at` in the same transaction as the event.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from sqlmodel import Session

from kit.clock import HOSPITAL_TZ, as_utc, utcnow
from kit.database import Database
from kit.stats import nearest_rank
from kit.worker import ThreadWorker
from services.results import repository
from services.results.config import ResultsSettings
from services.results.models import LabOrder
from services.results.schemas import (
    OverdueOrderPublic,
    Priority,
    RegistrationVisit,
    TurnaroundFigures,
)
from services.results.service import _record, ensure_lab_may_work, get_order, order_public

logger = logging.getLogger("patientflow.results")
EMERGENCY_VISIT = "emergency"
SHARE_PLACES = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class Targets:
    """Turnaround targets in minutes: per priority, and per item and priority where an item differs."""

    emergency: int
    routine: int
    per_item: dict[str, dict[Priority, int]]

    @classmethod
    def of(cls, settings: ResultsSettings) -> "Targets":
        return cls(settings.tat_emergency_minutes, settings.tat_routine_minutes, settings.tat_item_minutes)

    def minutes(self, test_code: str, priority: Priority) -> int:
        default = self.emergency if priority is Priority.emergency else self.routine
        return self.per_item.get(test_code, {}).get(priority, default)


def priority_for(visit: RegistrationVisit, requested: Priority | None) -> Priority:
    """The order's own priority, else emergency on an emergency visit, else routine."""
    if requested is not None:
        return requested
    return Priority.emergency if visit.kind == EMERGENCY_VISIT else Priority.routine


def schedule(
    order: LabOrder, *, visit: RegistrationVisit, requested: Priority | None, targets: Targets
) -> None:
    """Give a new order its priority, target and due time."""
    priority = priority_for(visit, requested)
    order.priority = priority.value
    order.target_minutes = targets.minutes(order.test_code, priority)
    order.due_at = as_utc(order.ordered_at) + timedelta(minutes=order.target_minutes)


def note_reported(order: LabOrder, at: datetime) -> None:
    """The order's first final report: later amendments, corrections or re-reports keep this time."""
    if order.reported_at is None:
        order.reported_at = at


def _lab_order(session: Session, order_id: str) -> LabOrder:
    order = get_order(session, order_id=order_id, for_update=True)
    ensure_lab_may_work(order)
    return order


def record_collection(session: Session, *, order_id: str) -> LabOrder:
    """The specimen was taken (采样); a repeat keeps the first time."""
    order = _lab_order(session, order_id)
    if order.collected_at is None:
        order.collected_at = utcnow()
        session.add(order)
    return order


def record_receipt(session: Session, *, order_id: str) -> LabOrder:
    """The lab received the specimen, or the patient reached imaging (签收); a repeat keeps the first
    time. Received without a recorded collection (imaging: the patient is the specimen), it was collected
    at the same moment."""
    order = _lab_order(session, order_id)
    if order.received_at is None:
        order.received_at = utcnow()
        order.collected_at = order.collected_at or order.received_at
        session.add(order)
    return order


def minutes_overdue(order: LabOrder, now: datetime) -> int:
    """Whole minutes since due (0 before)."""
    assert order.due_at is not None
    return max(int((now - as_utc(order.due_at)).total_seconds()) // 60, 0)


def overdue_list(
    session: Session, *, now: datetime, priority: Priority | None, test_code: str | None, limit: int
) -> list[OverdueOrderPublic]:
    orders = repository.overdue_orders(
        session,
        now=now,
        priority=priority.value if priority else None,
        test_code=test_code,
        limit=limit,
    )
    return [
        OverdueOrderPublic(**order_public(o).model_dump(), minutes_overdue=minutes_overdue(o, now))
        for o in orders
    ]


def notify_overdue(session: Session, *, now: datetime) -> list[str]:
    """Send `order.overdue` for each order that passed due unreported and was not yet notified (once
    per order); the ids of the orders notified."""
    notified = []
    for order in repository.overdue_orders(session, now=now, unnotified_only=True):
        order.overdue_notified_at = now
        session.add(order)
        assert order.due_at is not None
        payload = {
            "priority": order.priority,
            "department": order.department,
            "target_minutes": order.target_minutes,
            "due_at": as_utc(order.due_at).isoformat(),
            "minutes_overdue": minutes_overdue(order, now),
        }
        _record(session, order, "order.overdue", payload)
        notified.append(order.id)
    return notified


def _in_time(order: LabOrder) -> bool:
    if order.reported_at is None or order.due_at is None:
        return False
    return as_utc(order.reported_at) <= as_utc(order.due_at)


def _whole_minutes(seconds: int) -> int:
    return -(-seconds // 60)


def _seconds_to(orders: Iterable[LabOrder], moment: Callable[[LabOrder], datetime | None]) -> list[int]:
    """Sorted whole seconds from ordered to `moment`, over the orders that have it."""
    return sorted(
        int((as_utc(at) - as_utc(o.ordered_at)).total_seconds())
        for o in orders
        if (at := moment(o)) is not None
    )


def figures(orders: Iterable[LabOrder], *, now: datetime) -> list[TurnaroundFigures]:
    """TAT per item and priority (see the module's docstring), by item code then priority."""
    groups: dict[tuple[str, str], list[LabOrder]] = {}
    for order in orders:
        groups.setdefault((order.test_code, order.priority), []).append(order)
    found = []
    for (test_code, priority), members in sorted(groups.items()):
        seconds = _seconds_to(members, lambda o: o.reported_at)
        released = _seconds_to(members, lambda o: o.releasable_at)
        within = sum(1 for o in members if _in_time(o))
        late_open = sum(
            1 for o in members if o.reported_at is None and o.due_at is not None and as_utc(o.due_at) < now
        )
        decided = len(seconds) + late_open
        found.append(
            TurnaroundFigures(
                test_code=test_code,
                priority=Priority(priority),
                orders=len(members),
                reported=len(seconds),
                median_minutes=_whole_minutes(nearest_rank(seconds, 50)) if seconds else None,
                p90_minutes=_whole_minutes(nearest_rank(seconds, 90)) if seconds else None,
                within_target=within,
                overdue_unreported=late_open,
                within_target_share=(
                    (Decimal(within) / Decimal(decided)).quantize(SHARE_PLACES, ROUND_HALF_EVEN)
                    if decided
                    else None
                ),
                released=len(released),
                release_median_minutes=_whole_minutes(nearest_rank(released, 50)) if released else None,
                release_p90_minutes=_whole_minutes(nearest_rank(released, 90)) if released else None,
            )
        )
    return found


def hospital_day_bounds(from_date: date, to_date: date) -> tuple[datetime, datetime]:
    """[start of from_date, start of the day after to_date) in hospital time, as UTC instants."""
    start = datetime.combine(from_date, time(), HOSPITAL_TZ)
    end = datetime.combine(to_date + timedelta(days=1), time(), HOSPITAL_TZ)
    return as_utc(start), as_utc(end)


def period_figures(
    session: Session,
    *,
    from_date: date,
    to_date: date,
    priority: Priority | None,
    test_code: str | None,
    now: datetime,
) -> list[TurnaroundFigures]:
    """TAT of the orders placed on the hospital days from_date..to_date (inclusive)."""
    start, end = hospital_day_bounds(from_date, to_date)
    orders = repository.orders_placed_between(
        session, start=start, end=end, priority=priority.value if priority else None, test_code=test_code
    )
    return figures(orders, now=now)


class OverdueWatcher(ThreadWorker):
    """Runs `notify_overdue` every `overdue_check_seconds` (the clock is injectable)."""

    def __init__(
        self, database: Database, settings: ResultsSettings, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        super().__init__("results-overdue-watcher")
        self.database, self.settings, self.clock = database, settings, clock

    def run_once(self) -> list[str]:
        with self.database.session() as session:
            notified = notify_overdue(session, now=self.clock())
        if notified:
            logger.warning("orders past their turnaround target: %d notified", len(notified))
        return notified

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the loop: try again next round
                logger.exception("the overdue-order check failed; retrying")
            self.stopping.wait(self.settings.overdue_check_seconds)
