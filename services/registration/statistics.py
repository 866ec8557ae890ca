"""Registration's statistics for the hospital's reports (统计): appointments by channel, department and
day, follow-up bookings, the appointment ratio, no-shows, cancellations by reason, and the inpatient
movements with their length of stay.

Days are the hospital's calendar days (Asia/Shanghai). The database groups and counts (a few rows per
day, department, channel and status come back, never one row per appointment); only the length of stay,
a median, is computed from each discharge of the range.
"""

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from statistics import median

from sqlmodel import Session

from kit.clock import HOSPITAL_TZ
from services.registration import repository
from services.registration.schemas import (
    AppointmentStatistics,
    DayCount,
    StatisticsRange,
    StayStatistics,
)
from services.registration.stays import length_of_stay_days

# An appointment that came (arrived at the desk, or fulfilled since) or did not (no-show): the no-show
# rate is over these. Open bookings and cancellations are neither.
ATTENDED = ("arrived", "fulfilled")


def instants(period: StatisticsRange) -> tuple[datetime, datetime]:
    """The UTC instants bounding the hospital days `from_date` … `to_date` (inclusive): [start, end)."""
    start = datetime.combine(period.from_date, time(), tzinfo=HOSPITAL_TZ)
    end = datetime.combine(period.to_date + timedelta(days=1), time(), tzinfo=HOSPITAL_TZ)
    return start.astimezone(UTC), end.astimezone(UTC)


def rate(part: int, whole: int) -> float | None:
    """`part / whole` rounded to 4 places; None when there is nothing to divide (not a 0 % that never was)."""
    return round(part / whole, 4) if whole else None


def appointment_statistics(
    session: Session, *, period: StatisticsRange, department: str | None
) -> AppointmentStatistics:
    """Booked appointments (a lapsed hold never was one) of the sessions held on these days."""
    groups = repository.appointment_counts(
        session, from_date=period.from_date, to_date=period.to_date, department=department
    )
    by_channel: Counter[str] = Counter()
    by_department: Counter[str] = Counter()
    by_day: Counter[date] = Counter()
    by_status: Counter[str] = Counter()
    cancellations: Counter[str] = Counter()
    for group in groups:
        by_channel[group.channel] += group.count
        by_department[group.department] += group.count
        by_day[group.day] += group.count
        by_status[group.status] += group.count
        if group.status == "cancelled":
            cancellations[group.cancel_reason or "unknown"] += group.count
    attended = sum(by_status[s] for s in ATTENDED)
    start, end = instants(period)
    outpatient, by_appointment = repository.outpatient_visit_counts(
        session, opened_from=start, opened_before=end, department=department
    )
    return AppointmentStatistics(
        from_date=period.from_date,
        to_date=period.to_date,
        department=department,
        appointments=sum(by_channel.values()),
        by_channel=dict(sorted(by_channel.items())),
        by_department=dict(sorted(by_department.items())),
        by_day=[DayCount(date=day, count=count) for day, count in sorted(by_day.items())],
        by_status=dict(sorted(by_status.items())),
        followup_bookings=by_channel["followup"],
        cancellations_by_reason=dict(sorted(cancellations.items())),
        noshows=by_status["noshow"],
        noshow_rate=rate(by_status["noshow"], attended + by_status["noshow"]),
        outpatient_visits=outpatient,
        appointment_visits=by_appointment,
        appointment_ratio=rate(by_appointment, outpatient),
    )


def stay_statistics(session: Session, *, period: StatisticsRange, department: str | None) -> StayStatistics:
    """Admissions, transfers and discharges on these days; the length of stay of those discharged."""
    start, end = instants(period)
    admissions, transfers = repository.stay_movement_counts(
        session, at_from=start, at_before=end, department=department
    )
    stays = repository.discharged_stays(
        session, discharged_from=start, discharged_before=end, department=department
    )
    days = [length_of_stay_days(admitted, discharged) for admitted, discharged in stays]
    return StayStatistics(
        from_date=period.from_date,
        to_date=period.to_date,
        department=department,
        admissions=admissions,
        transfers=transfers,
        discharges=len(days),
        mean_length_of_stay_days=round(sum(days) / len(days), 2) if days else None,
        median_length_of_stay_days=median(days) if days else None,
        longest_stay_days=max(days, default=None),
    )
