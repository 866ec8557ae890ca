"""The one release rule: whether a report may reach a patient (kiosk, app, phone), and why not.

Every patient-facing path (`service.visit_reports`, `service.patient_reports`, `service.read_report`, and
anything printing or reading a report for a patient) asks `releasable` and nothing else, so a
preliminary critical report, an unverified or withheld one, or (where the hospital says so) an unpaid
one can never slip out through a path that checked its own way. Pure: no I/O, unit-tested as such.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from kit.auth import Caller, CallerDep
from services.results.errors import StaffOnly
from services.results.models import LabOrder, Report
from services.results.schemas import FINAL_STATUSES, ReportStatus

# Client kinds that only ever act for a patient: they see released reports only, token or not.
PATIENT_CHANNELS = frozenset({"app", "kiosk", "phone"})


class Refusal(StrEnum):
    """Why a report is not released, first reason first (in the order `releasable` checks)."""

    not_final = "not_final"  # registered, preliminary (初步报告) or cancelled
    not_verified = "not_verified"  # no technician has verified it (未审核)
    withheld = "withheld"  # a doctor withheld it (暂缓发布)
    unpaid = "unpaid"  # the hospital releases only paid reports, and this order is not paid yet


@dataclass(frozen=True, slots=True)
class ReleaseDecision:
    """`released`, or the reason it is not (never shown to the patient, only audited and logged)."""

    refusal: Refusal | None = None

    @property
    def released(self) -> bool:
        return self.refusal is None

    def __bool__(self) -> bool:
        return self.released


RELEASED = ReleaseDecision()


def releasable(report: Report, order: LabOrder, *, require_payment: bool) -> ReleaseDecision:
    """Released only when final, amended or corrected, verified, not withheld, and paid where
    `require_payment` (the hospital's `RESULTS_RELEASE_REQUIRES_PAYMENT`)."""
    if ReportStatus(report.status) not in FINAL_STATUSES:
        return ReleaseDecision(Refusal.not_final)
    if report.verified_by is None or report.verified_at is None:
        return ReleaseDecision(Refusal.not_verified)
    if report.withheld:
        return ReleaseDecision(Refusal.withheld)
    if require_payment and order.paid_at is None:
        return ReleaseDecision(Refusal.unpaid)
    return RELEASED


@dataclass(frozen=True, slots=True)
class ReleasePolicy:
    """The rule as a patient-facing lookup applies it: with the hospital's payment setting."""

    require_payment: bool


def patient_facing(caller: Caller) -> bool:
    """Whether the caller reads for a patient (a patient token, or a client kind that only does), so
    the release rule applies to what it gets."""
    return caller.patient is not None or caller.kind in PATIENT_CHANNELS


def policy_for(caller: Caller, *, require_payment: bool) -> ReleasePolicy | None:
    """The release policy a lookup applies for this caller; None for staff, who see every report."""
    return ReleasePolicy(require_payment) if patient_facing(caller) else None


def staff_only(detail: str) -> Callable[[Caller], Awaitable[None]]:
    """A route dependency that refuses patient-facing callers (403 `staff-only`, `detail` saying why),
    token or not. `async` though it awaits nothing: a plain `def` would cost a worker-thread hop."""

    async def refuse_patient_facing(caller: CallerDep) -> None:
        if patient_facing(caller):
            raise StaffOnly(detail)

    return refuse_patient_facing
