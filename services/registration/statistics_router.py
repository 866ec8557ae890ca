"""Registration's statistics endpoints (thin, as router.py): for the HIS and administrators (`stats:read`)."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import ValidationError

from kit.auth import require_scope
from kit.database import SessionDep
from kit.errors import BadRequest, problem_responses
from services.registration import statistics
from services.registration.schemas import (
    MAX_STATISTICS_DAYS,
    AppointmentStatistics,
    StatisticsRange,
    StayStatistics,
)

router = APIRouter(tags=["statistics"])
STATS_SCOPE = "stats:read"
DepartmentQuery = Annotated[
    str | None, Query(max_length=32, pattern=r"^[a-z0-9-]+$", description="Only this department")
]


def statistics_range(
    from_date: Annotated[date, Query(description="First hospital day (Asia/Shanghai), included")],
    to_date: Annotated[date, Query(description="Last hospital day, included")],
) -> StatisticsRange:
    """The days asked for; an inverted range or one longer than a year is a 400 naming the rule."""
    try:
        return StatisticsRange(from_date=from_date, to_date=to_date)
    except ValidationError as exc:
        message = "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
        raise BadRequest(
            f"Invalid range: {message}.", slug="invalid-range", max_days=MAX_STATISTICS_DAYS
        ) from exc


RangeDep = Annotated[StatisticsRange, Depends(statistics_range)]


@router.get(
    "/statistics/appointments",
    dependencies=[require_scope(STATS_SCOPE)],
    responses=problem_responses(BadRequest),
)
def read_appointment_statistics(
    session: SessionDep, period: RangeDep, department: DepartmentQuery = None
) -> AppointmentStatistics:
    """Appointments of the sessions held on these days: by channel, department, day and status; follow-up
    bookings; cancellations by reason; no-shows and their rate; and the appointment ratio (outpatient
    visits an appointment's check-in opened / all outpatient visits opened on these days)."""
    return statistics.appointment_statistics(session, period=period, department=department)


@router.get(
    "/statistics/stays",
    dependencies=[require_scope(STATS_SCOPE)],
    responses=problem_responses(BadRequest),
)
def read_stay_statistics(
    session: SessionDep, period: RangeDep, department: DepartmentQuery = None
) -> StayStatistics:
    """Admissions, transfers and discharges on these days (into or from `department`), and the mean,
    median and longest length of stay (住院天数) of the patients discharged on them."""
    return statistics.stay_statistics(session, period=period, department=department)
