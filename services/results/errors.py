"""Results' errors, named for what went wrong."""

from kit.errors import (
    Conflict,
    NotFound,
    PaymentRequired,
    ProblemError,
    ServiceUnavailable,
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


class RegistrationUnavailable(ServiceUnavailable):
    slug, title = "registration-unavailable", "Registration unavailable"


class RegistrationFailed(ProblemError):
    """Registration answered, but not with something results can use (502 Bad Gateway)."""

    status, title, slug = 502, "Registration failed", "registration-failed"
