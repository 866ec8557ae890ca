"""Billing's errors, named for what went wrong."""

from datetime import date
from typing import Any

from kit.errors import Conflict, NotFound, ProblemError, ServiceUnavailable, UnprocessableContent

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


class ItemNotPricedOnDate(UnprocessableContent):
    """The item is in the catalogue, but no price period of it covers the charge's service date."""

    slug, title = "not-priced-on-date", "No price on the service date"


class CatalogueInvalid(UnprocessableContent):
    """An uploaded catalogue has bad rows: `errors` lists every one with its line; nothing was loaded."""

    slug, title = "catalogue-invalid", "Catalogue file refused"


class ChargeRulesInvalid(UnprocessableContent):
    """An uploaded rules file has bad rows: `errors` lists every one with its line; nothing was loaded."""

    slug, title = "charge-rules-invalid", "Charging rules file refused"


class UploadTooLarge(ProblemError):
    status, title, slug = 413, "Content too large", "upload-too-large"


class CatalogueVersionNotFound(NotFound):
    slug, title = "catalogue-version-not-found", "Catalogue version not found"


class ChargeRuleVersionNotFound(NotFound):
    slug, title = "charge-rule-version-not-found", "Charging rules version not found"


class ChargeRefused(Conflict):
    """A charging rule forbids the charge (split, duplicate, over the limit, wrong kind of visit):
    `reason` says which, `rule_id` names the rule. Nothing was charged."""

    slug, title = "charge-refused", "Charge refused by a charging rule"

    def __init__(
        self,
        detail: str,
        *,
        reason: str,
        visit_id: str,
        item_code: str,
        quantity: int,
        service_date: date,
        rule_id: int | None,
        **extra: Any,
    ) -> None:
        super().__init__(
            detail,
            reason=reason,
            rule_id=rule_id,
            item_code=item_code,
            service_date=service_date.isoformat(),
            **extra,
        )
        self.reason, self.rule_id, self.visit_id = reason, rule_id, visit_id
        self.item_code, self.quantity, self.service_date = item_code, quantity, service_date


class ChargeAlreadyReversed(Conflict):
    slug, title = "charge-already-reversed", "Charge already reversed"


class ChargeIsReversal(Conflict):
    """A reversal line is never reversed itself: post the charge again instead."""

    slug, title = "charge-is-reversal", "A reversal cannot be reversed"


class ChargeReversed(Conflict):
    """Payment listed a reversed charge or a reversal line: the pair cancels out, nothing is due on it."""

    slug, title = "charge-reversed", "Charge reversed"


class RefundExceedsPaid(Conflict):
    """A refund above what the account owes back (money paid beyond its charges): nothing refunded."""

    slug, title = "refund-exceeds-paid", "Refund above what was paid"
