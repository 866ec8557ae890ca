"""Results' errors, named for what went wrong."""

from kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PaymentRequired,
    UnprocessableContent,
)


class VisitNotFound(NotFound):
    slug, title = "visit-not-found", "Visit not found"


class OrderNotFound(NotFound):
    slug, title = "order-not-found", "Order not found"


class ReportNotFound(NotFound):
    slug, title = "report-not-found", "Report not found"


class UnknownTest(UnprocessableContent):
    slug, title = "unknown-test", "Unknown test"


class OrderAwaitingPayment(PaymentRequired):
    slug, title = "order-awaiting-payment", "Order awaiting payment"


class OrderCancelled(Conflict):
    slug, title = "order-cancelled", "Order cancelled"


class ReportAlreadyFinal(Conflict):
    slug, title = "report-already-final", "Report already final"


class ReportNotFinal(Conflict):
    slug, title = "report-not-final", "Report not final"


class ReportCancelled(Conflict):
    slug, title = "report-cancelled", "Report cancelled"


class ReportAlreadyVerified(Conflict):
    slug, title = "report-already-verified", "Report already verified"


class HoldUnchanged(Conflict):
    slug, title = "hold-unchanged", "Report already in that state"


class LisClientRequired(Forbidden):
    slug, title = "lis-client-required", "LIS client required"


class ExternalReportConflict(Conflict):
    """The LIS's id names a report of another order, or the order has a report from elsewhere."""

    slug, title = "external-report-conflict", "External report conflict"


class CriticalValueNotFound(NotFound):
    slug, title = "critical-value-not-found", "Critical value not found"


class CriticalAlreadyAcknowledged(Conflict):
    slug, title = "critical-already-acknowledged", "Critical value already acknowledged"


class RecognisedResultExists(Conflict):
    """A recognised result (互认) of the item stands: repeating it needs a `duplicate_reason`."""

    slug, title = "recognised-result-exists", "Recognised result exists"


class StaffOnly(Forbidden):
    slug, title = "staff-only", "Staff only"


class ResultSourceRequired(Forbidden):
    slug, title = "result-source-required", "LIS or HIS client required"


class UnknownTestCode(BadRequest):
    """A query naming no orderable test (a GET's bad parameter is a 400, as everywhere)."""

    slug, title = "unknown-test", "Unknown test"


class BadDateRange(BadRequest):
    slug, title = "bad-date-range", "Bad date range"


class ResultInFuture(UnprocessableContent):
    slug, title = "result-in-future", "Result dated in the future"


class BadPeriod(BadRequest):
    slug, title = "bad-period", "Bad period"
