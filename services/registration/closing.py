"""Visits that close (就诊结束): on settlement, at the desk, at discharge (stays.py), by the end-of-day rule.

A closed visit takes no new work: triage, results and billing read its status from registration before
assessing, queueing, ordering or charging it by hand, and refuse with 409 `visit-closed`. Work already
done before it closed still lands — a report for an earlier order, a charge arriving through a feed.

The end-of-day rule closes what nobody will close otherwise and what owes nothing by design: open
*prepay* outpatient visits opened before the latest end of day (`end_of_day`, hospital time), and open
prepay emergency visits whose admission window has passed. A settle-later or green-channel visit waits
for its settlement (which closes it); an admitted visit waits for its discharge.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlmodel import Session

from kit.clock import HOSPITAL_TZ, utcnow
from kit.database import Database
from kit.worker import ThreadWorker
from services.registration import repository
from services.registration.config import RegistrationSettings
from services.registration.errors import CloseRefused, VisitNotFound
from services.registration.models import Visit
from services.registration.schemas import PaymentMode, VisitKind
from services.registration.stays import CLOSED, close, locked_visit, refuse_if_closed

logger = logging.getLogger("patientflow.registration")
SETTLED, DESK, END_OF_DAY = "settled", "desk", "end-of-day"
# Only visits that pay at each step owe nothing once the day is over.
END_OF_DAY_PAYMENT_MODES = (PaymentMode.prepay.value,)


def close_at_desk(session: Session, *, visit_id: str, now: datetime) -> Visit:
    """Close an open outpatient or emergency visit at the desk; an admitted patient is discharged instead."""
    visit = locked_visit(session, visit_id)
    refuse_if_closed(visit)
    stay = repository.get_stay(session, visit.id)
    if stay is not None and stay.discharged_at is None:
        raise CloseRefused(
            f"Visit {visit.id} is an inpatient stay: discharge the patient to close it.",
            slug="admitted",
            visit_id=visit.id,
        )
    close(session, visit, reason=DESK, now=now)
    return visit


def settle(session: Session, *, visit_id: str, settled_at: datetime) -> None:
    """Billing settled the visit: an outpatient or emergency visit closes; an admitted one is marked
    settled (a mid-stay settlement) and closes at discharge; a closed one only records the time."""
    visit = repository.lock_visit(session, visit_id)
    if visit is None:
        raise VisitNotFound("No such visit.")
    visit.settled_at = settled_at
    session.add(visit)
    if visit.status == CLOSED:
        return
    if visit.kind == VisitKind.inpatient:
        visit.status = SETTLED
        return
    close(session, visit, reason=SETTLED, now=settled_at)


def latest_end_of_day(now: datetime, settings: RegistrationSettings) -> datetime:
    """The latest instant at or before `now` when the hospital's day ended (`end_of_day`, local time)."""
    local = now.astimezone(HOSPITAL_TZ)
    boundary = local.replace(
        hour=settings.end_of_day.hour,
        minute=settings.end_of_day.minute,
        second=settings.end_of_day.second,
        microsecond=0,
    )
    if boundary > local:
        boundary -= timedelta(days=1)
    return boundary


def close_ended_visits(session: Session, *, now: datetime, settings: RegistrationSettings) -> list[str]:
    """Close every visit the end-of-day rule closes at `now`; their ids, oldest first."""
    due = repository.visits_due_to_close(
        session,
        outpatient_before=latest_end_of_day(now, settings),
        emergency_before=now - timedelta(hours=settings.emergency_admission_hours),
        payment_modes=END_OF_DAY_PAYMENT_MODES,
    )
    for visit in due:
        close(session, visit, reason=END_OF_DAY, now=now)
    return [visit.id for visit in due]


class VisitCloser(ThreadWorker):
    """Runs the end-of-day rule every `visit_close_check_seconds` (the clock is injectable for tests)."""

    def __init__(
        self, database: Database, settings: RegistrationSettings, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        super().__init__("registration-visit-closer")
        self.database, self.settings, self.clock = database, settings, clock

    def run_once(self) -> list[str]:
        with self.database.session() as session:
            closed = close_ended_visits(session, now=self.clock(), settings=self.settings)
        if closed:
            logger.info("end of day: closed %d visit(s)", len(closed))
        return closed

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the job: try again next round
                logger.exception("the end-of-day visit close failed; retrying")
            self.stopping.wait(self.settings.visit_close_check_seconds)
