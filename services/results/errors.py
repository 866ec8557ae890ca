"""Results' errors, named for what went wrong."""

from kit.errors import (
    Conflict,
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


class ReportAlreadyFinal(Conflict):
    slug, title = "report-already-final", "Report already final"


class VisitClosed(Conflict):
    """Registration closed the visit (settled, discharged, closed at the desk or at the end of the day):
    it takes no new work here; what was done before still lands."""

    slug, title = "visit-closed", "Visit closed"
