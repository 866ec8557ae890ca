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


class AccountNotSettled(Conflict):
    """The deposit still secures the stay's charges: refund it after the discharge settlement."""

    slug, title = "account-not-settled", "Account not settled"


class DepositInsufficient(Conflict):
    slug, title = "deposit-insufficient", "The deposit does not cover this"


class NotGreenChannel(Conflict):
    slug, title = "not-green-channel", "Not a green-channel account"


class InvalidRunDate(UnprocessableContent):
    slug, title = "invalid-run-date", "Invalid date for this job"


class DailyBillNotIssued(NotFound):
    """No daily bill was issued for this visit and date (the patient acknowledges an issued bill)."""

    slug, title = "daily-bill-not-issued", "Daily bill not issued"


class ChargesStillArriving(ServiceUnavailable):
    """Settlement could not confirm it has every charge its sources committed; nothing was settled."""

    slug, title = "charges-still-arriving", "Charges still arriving"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, retry_after=RETRY_SETTLEMENT_SECONDS, **extra)
