"""Billing's errors, named for what went wrong."""

from typing import Any

from kit.errors import Conflict, NotFound, ServiceUnavailable, UnprocessableContent

RETRY_SETTLEMENT_SECONDS = 2


class VisitNotFound(NotFound):
    slug, title = "visit-not-found", "Visit not found"


class ItemNotFound(NotFound):
    slug, title = "item-not-found", "Catalogue item not found"


class ChargeNotFound(NotFound):
    slug, title = "charge-not-found", "Charge not found"


class BookingFeeNotFound(NotFound):
    slug, title = "booking-fee-not-found", "Booking fee not found"


class BookingFeeNotDue(Conflict):
    """Already paid, or the appointment was cancelled or checked in: nothing is payable here."""

    slug, title = "booking-fee-not-due", "Booking fee not due"


class UnknownItem(UnprocessableContent):
    slug, title = "unknown-item", "Not an active catalogue item"


class InvalidServiceDate(UnprocessableContent):
    slug, title = "invalid-service-date", "Invalid service date"


class AmountMismatch(UnprocessableContent):
    slug, title = "amount-mismatch", "Amount does not match what is due"


class AccountSettled(Conflict):
    slug, title = "account-settled", "Account already settled"


class VisitClosed(Conflict):
    """Registration closed the visit: no new charge by hand (feed charges for earlier work still land)."""

    slug, title = "visit-closed", "Visit closed"


class ChargeAlreadyPaid(Conflict):
    slug, title = "charge-already-paid", "Charge already paid"


class NothingDue(Conflict):
    slug, title = "nothing-due", "Nothing is due"


class ChargesStillArriving(ServiceUnavailable):
    """Settlement could not confirm it has every charge its sources committed; nothing was settled."""

    slug, title = "charges-still-arriving", "Charges still arriving"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, retry_after=RETRY_SETTLEMENT_SECONDS, **extra)
