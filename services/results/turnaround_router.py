"""Turnaround endpoints (turnaround.py): the lab's collection and receipt, the overdue list and TAT
figures. Included before results' main router, so `/orders/overdue` is not read as an order id."""

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from kit.auth import require_scope
from kit.clock import hospital_date, utcnow
from kit.config import app_settings
from kit.database import SessionDep
from kit.errors import problem_responses
from kit.params import page_size
from services.results import release, service, turnaround
from services.results.config import ResultsSettings
from services.results.errors import BadPeriod, OrderAwaitingPayment, OrderNotFound, StaffOnly
from services.results.schemas import OrderPublic, OverdueOrderPublic, Priority, TurnaroundFigures

# Lab and ward figures: never for a patient-facing caller (app, kiosk, phone).
staff_only = release.staff_only("Turnaround figures and the overdue list are for staff.")


router = APIRouter(tags=["turnaround"])
IdPath = Annotated[str, Path(min_length=1, max_length=36)]
TestCodeQuery = Annotated[str | None, Query(min_length=1, max_length=16)]
SettingsDep = Annotated[ResultsSettings, Depends(app_settings)]
# TAT periods: hospital days, at most a year, within the range every date arithmetic here survives.
EARLIEST_DAY, LATEST_DAY, LONGEST_PERIOD_DAYS = date(2000, 1, 1), date(2099, 12, 31), 366
DayQuery = Annotated[date | None, Query(ge=EARLIEST_DAY, le=LATEST_DAY)]


@router.post(
    "/orders/{order_id}/collection",
    dependencies=[require_scope("results:write")],
    responses=problem_responses(OrderNotFound, OrderAwaitingPayment),
)
def record_collection(order_id: IdPath, session: SessionDep) -> OrderPublic:
    """The specimen was taken (采样): sets `collected_at`. A repeat is 200 with the first time; 402 while
    the order awaits payment."""
    return service.order_public(turnaround.record_collection(session, order_id=order_id))


@router.post(
    "/orders/{order_id}/receipt",
    dependencies=[require_scope("results:write")],
    responses=problem_responses(OrderNotFound, OrderAwaitingPayment),
)
def record_receipt(order_id: IdPath, session: SessionDep) -> OrderPublic:
    """The lab received the specimen, or the patient reached imaging (签收): sets `received_at` (and
    `collected_at` when none was recorded). A repeat is 200 with the first time."""
    return service.order_public(turnaround.record_receipt(session, order_id=order_id))


@router.get(
    "/orders/overdue",
    dependencies=[require_scope("results:read"), Depends(staff_only)],
    responses=problem_responses(StaffOnly),
)
def list_overdue_orders(
    session: SessionDep,
    priority: Priority | None = None,
    test_code: TestCodeQuery = None,
    limit: Annotated[int, page_size(100)] = 100,
) -> list[OverdueOrderPublic]:
    """Orders released to the lab, not reported and past `due_at`, longest overdue first, each with
    its whole `minutes_overdue`. Staff only."""
    return turnaround.overdue_list(session, now=utcnow(), priority=priority, test_code=test_code, limit=limit)


@router.get(
    "/turnaround",
    dependencies=[require_scope("results:read"), Depends(staff_only)],
    responses=problem_responses(StaffOnly, BadPeriod),
)
def read_turnaround(
    session: SessionDep,
    from_date: DayQuery = None,
    to_date: DayQuery = None,
    test_code: TestCodeQuery = None,
    priority: Priority | None = None,
) -> list[TurnaroundFigures]:
    """TAT (ordered → first final report) per item and priority of the orders placed on the hospital
    days `from_date`..`to_date` (inclusive; default the last 7 days): count, nearest-rank median and
    p90 in minutes, and the share within target; beside it ordered → released to the patient
    (`releasable_at`: holds and payment included). Staff only."""
    now = utcnow()
    to_day = to_date or hospital_date(now)
    from_day = from_date or to_day - timedelta(days=6)
    if from_day > to_day:
        raise BadPeriod("from_date is after to_date.")
    if (to_day - from_day).days >= LONGEST_PERIOD_DAYS:
        raise BadPeriod(f"A period is at most {LONGEST_PERIOD_DAYS} days.")
    return turnaround.period_figures(
        session, from_date=from_day, to_date=to_day, priority=priority, test_code=test_code, now=now
    )
