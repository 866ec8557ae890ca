"""Billing's errors, named for what went wrong."""

from kit.errors import Conflict, NotFound, UnprocessableContent


class VisitNotFound(NotFound):
    slug, title = "visit-not-found", "Visit not found"


class ItemNotFound(NotFound):
    slug, title = "item-not-found", "Catalogue item not found"


class ChargeNotFound(NotFound):
    slug, title = "charge-not-found", "Charge not found"


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
