"""Deposits (住院押金 / 预交金), receipts and how an account stands against its payment mode.

The ledger of one visit, in fen, is kept by this identity (`Ledger`):

    balance = deposits + payments − deposit applications − deposit refunds − charges

A payment settles whole charges; the part of it taken from the deposit is a `DepositApplication`, so
money handed over by the patient is `payments − applications` and the deposit still held is
`deposits − applications − refunds`. Nothing here edits a row of money: a deposit, an application, a
refund and a receipt are each written once (receipts refuse updates and deletes outright).

`deposit.low_balance` fires once per crossing: when a charge (or a refund) takes the balance to the
account's threshold or below, the account is marked alerted; a top-up that lifts it back over the
threshold clears the mark, so the next fall fires again.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlmodel import Session, col

from kit.clock import utcnow
from services.billing import catalogue, repository
from services.billing.errors import (
    AccountNotSettled,
    DepositInsufficient,
    NotGreenChannel,
    NothingDue,
    VisitNotFound,
)
from services.billing.immutable import RowImmutable, refuse_changes
from services.billing.models import (
    Charge,
    Deposit,
    DepositApplication,
    DepositRefund,
    Payment,
    Receipt,
    ReceiptCounter,
    VisitAccount,
)
from services.billing.schemas import (
    CreditCheckPublic,
    DepositCreate,
    DepositPublic,
    DepositRefundCreate,
    DepositRefundPublic,
    DepositsPublic,
    PaymentMethod,
    ReceiptPublic,
    RegistrationVisit,
    ReliefCategory,
    ReliefCreate,
    StandingPublic,
)
from services.billing.service.accounts import (
    SETTLED,
    account_for,
    hospital_today,
    known_account,
    record,
    refuse_if_settled,
)

SETTLE_LATER, GREEN_CHANNEL = "settle_later", "green_channel"


# --- receipts ---------------------------------------------------------------------------------------


# A receipt, once issued, is never changed or removed (a correction is a new receipt).
ReceiptImmutable = RowImmutable
refuse_changes(Receipt)


def next_receipt_number(session: Session) -> str:
    """`SJ<year><8 digits>`, consecutive within the hospital year."""
    return "SJ" + next_serial(session, str(hospital_today().year))


def next_serial(session: Session, series: str) -> str:
    """The next number of `series` as `<series><8 digits>`. The counter row is incremented in one
    UPDATE … RETURNING (a row lock on PostgreSQL), so two cashiers never get the same number."""
    statement = (
        ReceiptCounter.__table__.update()  # type: ignore[attr-defined]
        .where(ReceiptCounter.__table__.c.series == series)  # type: ignore[attr-defined]
        .values(last_number=ReceiptCounter.__table__.c.last_number + 1)  # type: ignore[attr-defined]
        .returning(ReceiptCounter.__table__.c.last_number)  # type: ignore[attr-defined]
    )
    number = session.execute(statement).scalar()
    if number is None:
        repository.insert_receipt_series(session, series)  # a racing first writer is fine: it exists
        number = session.execute(statement).scalar_one()
    return f"{series}{number:08d}"


def issue_receipt(
    session: Session,
    account: VisitAccount,
    *,
    kind: str,
    amount_fen: int,
    method: str,
    reference_id: str,
    insurer_fen: int = 0,
) -> Receipt:
    receipt = Receipt(
        number=next_receipt_number(session),
        visit_id=account.visit_id,
        patient_id=account.patient_id,
        kind=kind,
        amount_fen=amount_fen,
        method=method,
        reference_id=reference_id,
        insurer_fen=insurer_fen,
    )
    session.add(receipt)
    return receipt


def refund_method(session: Session, visit_id: str) -> PaymentMethod:
    """How money goes back to the patient by default: the way the last deposit came in (cash when
    there was none)."""
    deposits = repository.deposits_of(session, visit_id)
    return PaymentMethod(deposits[-1].method) if deposits else PaymentMethod.cash


def list_receipts(session: Session, *, visit_id: str, acting_for: str | None) -> list[ReceiptPublic]:
    known_account(session, visit_id, acting_for)
    return [
        ReceiptPublic.model_validate(r, from_attributes=True)
        for r in repository.receipts_of(session, visit_id)
    ]


# --- the ledger -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ledger:
    """One visit's money, summed by the database (see the module docstring for the identity)."""

    charges_fen: int
    unpaid_fen: int
    payments_fen: int
    deposits_fen: int
    applied_fen: int
    refunded_fen: int

    @property
    def held_fen(self) -> int:
        return self.deposits_fen - self.applied_fen - self.refunded_fen

    @property
    def balance_fen(self) -> int:
        return self.deposits_fen + self.payments_fen - self.applied_fen - self.refunded_fen - self.charges_fen


def _sum(model: Any, *where: Any) -> Any:
    return (
        select(func.coalesce(func.sum(model.amount_fen), 0))
        .where(model.visit_id == bindparam("visit_id"), *where)
        .scalar_subquery()
    )


# Built once, with the visit as a bound parameter: building it per call cost more than running it.
_LEDGER = select(
    _sum(Charge),
    _sum(Charge, col(Charge.payment_id).is_(None)),
    _sum(Payment),
    _sum(Deposit),
    _sum(DepositApplication),
    _sum(DepositRefund),
)


def ledger(session: Session, visit_id: str) -> Ledger:
    """The visit's sums in one round trip."""
    row = session.execute(_LEDGER, {"visit_id": visit_id}).one()
    return Ledger(*(int(value) for value in row))


# --- deposits -----------------------------------------------------------------------------------------


def _deposit_public(deposit: Deposit) -> DepositPublic:
    return DepositPublic.model_validate(deposit, from_attributes=True)


def receive_deposit(
    session: Session,
    *,
    visit_id: str,
    data: DepositCreate,
    unseen: RegistrationVisit | None,
    received_by: str,
    default_threshold_fen: int,
) -> DepositPublic:
    """Take a deposit or top-up, with its receipt; a settled account takes none (409)."""
    account = account_for(session, visit_id=visit_id, unseen=unseen)
    refuse_if_settled(account)
    deposit_id = str(uuid.uuid4())
    receipt = issue_receipt(
        session,
        account,
        kind="deposit",
        amount_fen=data.amount_fen,
        method=data.method.value,
        reference_id=deposit_id,
    )
    deposit = Deposit(
        id=deposit_id,
        visit_id=visit_id,
        amount_fen=data.amount_fen,
        method=data.method.value,
        receipt_number=receipt.number,
        received_by=received_by[:64],
    )
    session.add(deposit)
    if data.low_balance_threshold_fen is not None:
        account.low_balance_threshold_fen = data.low_balance_threshold_fen
    elif account.low_balance_threshold_fen is None:
        account.low_balance_threshold_fen = default_threshold_fen
    session.add(account)
    session.flush()
    check_low_balance(session, account)
    return _deposit_public(deposit)


def refund_deposit(
    session: Session, *, visit_id: str, data: DepositRefundCreate, refunded_by: str
) -> DepositRefundPublic:
    """Give back what is left of the deposit once the account is settled (多退): 409 before settlement
    (the deposit still secures the stay), 409 `nothing-due` when nothing is left."""
    account = repository.get_account(session, visit_id, for_update=True)
    if account is None:
        raise VisitNotFound("Billing has no account for this visit.")
    if account.status != SETTLED:
        raise AccountNotSettled(
            f"Visit {visit_id} is not settled: its deposit still secures its charges. Settle it first."
        )
    held = ledger(session, visit_id).held_fen
    if held <= 0:
        raise NothingDue(f"Visit {visit_id} holds no deposit to refund.")
    method = data.method or refund_method(session, visit_id)
    refund_id = str(uuid.uuid4())
    receipt = issue_receipt(
        session, account, kind="deposit_refund", amount_fen=held, method=method.value, reference_id=refund_id
    )
    refund = DepositRefund(
        id=refund_id,
        visit_id=visit_id,
        amount_fen=held,
        method=method.value,
        receipt_number=receipt.number,
        refunded_by=refunded_by[:64],
    )
    session.add(refund)
    session.flush()
    return DepositRefundPublic.model_validate(refund, from_attributes=True)


def deposits_view(session: Session, *, visit_id: str, acting_for: str | None) -> DepositsPublic:
    account = known_account(session, visit_id, acting_for)
    sums = ledger(session, visit_id)
    return DepositsPublic(
        visit_id=visit_id,
        patient_id=account.patient_id,
        deposits=[_deposit_public(d) for d in repository.deposits_of(session, visit_id)],
        refunds=[
            DepositRefundPublic.model_validate(r, from_attributes=True)
            for r in repository.deposit_refunds_of(session, visit_id)
        ],
        deposit_total_fen=sums.deposits_fen,
        deposit_applied_fen=sums.applied_fen,
        deposit_refunded_fen=sums.refunded_fen,
        deposit_held_fen=sums.held_fen,
        charges_total_fen=sums.charges_fen,
        balance_fen=sums.balance_fen,
        low_balance_threshold_fen=account.low_balance_threshold_fen,
        low_balance=account.low_balance_alerted,
    )


def check_low_balance(session: Session, account: VisitAccount) -> None:
    """Emit `deposit.low_balance` when the balance has fallen to the threshold (once per crossing), or
    re-arm it when the balance is back above. For accounts holding a deposit only."""
    threshold = account.low_balance_threshold_fen
    if threshold is None or account.status == SETTLED:
        return
    sums = ledger(session, account.visit_id)
    low = sums.balance_fen <= threshold
    if low == account.low_balance_alerted:
        return
    account.low_balance_alerted = low
    session.add(account)
    if low:
        record(
            session,
            account,
            "deposit.low_balance",
            {
                "balance_fen": sums.balance_fen,
                "threshold_fen": threshold,
                "deposit_total_fen": sums.deposits_fen,
                "charges_total_fen": sums.charges_fen,
            },
        )


def from_deposit_fen(session: Session, account: VisitAccount, *, due_fen: int, method: PaymentMethod) -> int:
    """How much of `due_fen` the deposit pays: all of it for method `deposit` (409 if the deposit
    holds less), else at settlement whatever it holds up to the amount due."""
    held = ledger(session, account.visit_id).held_fen
    if method == PaymentMethod.deposit:
        if held < due_fen:
            raise DepositInsufficient(
                f"The deposit holds {held} fen; {due_fen} fen are due.", held_fen=held, due_fen=due_fen
            )
        return due_fen
    return max(0, min(held, due_fen))


def after_payment(
    session: Session, account: VisitAccount, *, payment: Payment, from_deposit: int, insurer_fen: int = 0
) -> str:
    """Record the deposit's part of a payment and issue the payment's receipt (for the money handed
    over, or for the whole when the deposit paid it all; beside it the insurer's share, `insurer_fen`).
    Returns the receipt number."""
    if from_deposit:
        session.add(
            DepositApplication(payment_id=payment.id, visit_id=account.visit_id, amount_fen=from_deposit)
        )
    handed_over = payment.amount_fen - from_deposit
    receipt = issue_receipt(
        session,
        account,
        kind="payment",
        amount_fen=handed_over if handed_over else payment.amount_fen,
        method=payment.method if handed_over else PaymentMethod.deposit.value,
        reference_id=payment.id,
        insurer_fen=insurer_fen,
    )
    return receipt.number


# --- standing and the green channel's follow-up ---------------------------------------------------


def held_charge_ids(session: Session, sums: Ledger, visit_id: str, credit_limit_fen: int) -> list[str]:
    """A settle-later visit's unpaid charges, oldest first, past its deposit plus `credit_limit_fen`."""
    covered, allowance, held = 0, sums.held_fen + credit_limit_fen, []
    for charge in repository.unpaid_charges(session, visit_id):
        covered += charge.amount_fen
        if covered > allowance:
            held.append(charge.id)
    return held


def remaining_credit_fen(session: Session, visit_id: str, credit_limit_fen: int) -> int:
    """What a settle-later visit may still run up on credit: deposit + limit − unpaid charges (≥ 0)."""
    sums = ledger(session, visit_id)
    return max(0, sums.held_fen + credit_limit_fen - sums.unpaid_fen)


def credit_check(
    session: Session, *, visit_id: str, item_code: str, quantity: int, credit_limit_fen: int
) -> CreditCheckPublic:
    """Whether `quantity` of `item_code` at today's price fits the visit's remaining credit (see
    `CreditCheckPublic`). A read, so it can only advise: `hold_over_credit` decides as charges post."""
    account = repository.get_account(session, visit_id)
    if account is None:
        raise VisitNotFound("Billing has no account for this visit.")
    price = catalogue.price_on(session, code=item_code, day=hospital_today())
    price_fen = price.item.price_fen * quantity if price else None
    settle_later = account.payment_mode == SETTLE_LATER
    remaining = remaining_credit_fen(session, visit_id, credit_limit_fen) if settle_later else None
    return CreditCheckPublic(
        visit_id=visit_id,
        payment_mode=account.payment_mode,
        item_code=item_code,
        price_fen=price_fen,
        credit_limit_fen=credit_limit_fen if settle_later else None,
        remaining_credit_fen=remaining,
        fits=remaining is None or price_fen is None or price_fen <= remaining,
    )


def hold_over_credit(
    session: Session, account: VisitAccount, charge: Charge, *, credit_limit_fen: int
) -> bool:
    """Announce `charge.held` when an order's charge just posted to a settle-later account lies past its
    credit limit (the same reckoning as the standing's `held_charge_ids`), so results keeps the order
    from the lab until it is paid. The caller holds the account row locked: charges are reckoned one
    after another, so two orders posted together can't both slip under the limit."""
    if account.payment_mode != SETTLE_LATER or charge.order_id is None:
        return False
    session.flush()
    sums = ledger(session, account.visit_id)
    if charge.id not in held_charge_ids(session, sums, account.visit_id, credit_limit_fen):
        return False
    record(
        session,
        account,
        "charge.held",
        {
            "charge_id": charge.id,
            "order_id": charge.order_id,
            "amount_fen": charge.amount_fen,
            "reason": "credit_limit",
            "credit_limit_fen": credit_limit_fen,
            "credit_used_fen": max(0, sums.unpaid_fen - sums.held_fen),
        },
    )
    return True


def standing_view(
    session: Session, *, visit_id: str, acting_for: str | None, credit_limit_fen: int
) -> StandingPublic:
    """The account against its mode. Settle-later: unpaid charges beyond the deposit use credit; the
    charges (oldest first) past `credit_limit_fen` are held: due now, never dropped."""
    account = known_account(session, visit_id, acting_for)
    sums = ledger(session, visit_id)
    settle_later = account.payment_mode == SETTLE_LATER
    credit_used = max(0, sums.unpaid_fen - sums.held_fen)
    held = held_charge_ids(session, sums, visit_id, credit_limit_fen) if settle_later else []
    return StandingPublic(
        visit_id=visit_id,
        patient_id=account.patient_id,
        payment_mode=account.payment_mode,
        status=account.status,
        unpaid_fen=sums.unpaid_fen,
        deposit_held_fen=sums.held_fen,
        balance_fen=sums.balance_fen,
        credit_limit_fen=credit_limit_fen if settle_later else None,
        credit_used_fen=credit_used,
        over_credit_limit=settle_later and credit_used > credit_limit_fen,
        held_charge_ids=held,
        needs_follow_up=account.payment_mode == GREEN_CHANNEL and account.followed_up_at is None,
        relief_category=ReliefCategory(account.relief_category) if account.relief_category else None,
        followed_up_at=account.followed_up_at,
    )


def record_relief(
    session: Session, *, visit_id: str, data: ReliefCreate, by: str, credit_limit_fen: int
) -> StandingPublic:
    """Follow up a green-channel account: its emergency-relief category (疾病应急救助), who and when."""
    account = repository.get_account(session, visit_id, for_update=True)
    if account is None:
        raise VisitNotFound("Billing has no account for this visit.")
    if account.payment_mode != GREEN_CHANNEL:
        raise NotGreenChannel(
            f"Visit {visit_id} is not on the green channel.", payment_mode=account.payment_mode
        )
    account.relief_category = data.category.value
    account.followed_up_at, account.followed_up_by = utcnow(), by[:64]
    session.add(account)
    session.flush()
    return standing_view(session, visit_id=visit_id, acting_for=None, credit_limit_fen=credit_limit_fen)


def follow_ups(session: Session, *, pending: bool, credit_limit_fen: int, limit: int) -> list[StandingPublic]:
    """Green-channel accounts, those not yet followed up first (or only, with `pending`)."""
    accounts = repository.green_channel_accounts(session, pending=pending, limit=limit)
    return [
        standing_view(session, visit_id=a.visit_id, acting_for=None, credit_limit_fen=credit_limit_fen)
        for a in accounts
    ]
