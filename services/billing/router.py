"""Billing endpoints (thin: parse, call the service under an idempotency key, shape the answer)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlmodel import Session

from kit.auth import CallerDep, require_scope
from kit.client import ServiceClient, sibling
from kit.database import ReadAccess, SessionDep, read_access
from kit.errors import (
    BadRequest,
    Conflict,
    ServiceUnavailable,
    UnprocessableContent,
    VisitClosed,
    problem_response,
    problem_responses,
)
from kit.idempotency import IdempotencyKeyHeader, idempotent
from kit.params import page_size
from services.billing.errors import (
    AccountSettled,
    AmountMismatch,
    BookingFeeNotDue,
    BookingFeeNotFound,
    ChargeAlreadyPaid,
    ChargeAlreadyReversed,
    ChargeIsReversal,
    ChargeNotFound,
    ChargeRefused,
    ChargeReversed,
    ChargesStillArriving,
    InvalidServiceDate,
    ItemNotPricedOnDate,
    NothingDue,
    RefundExceedsPaid,
    UnknownItem,
    VisitNotFound,
)
from services.billing.models import IdempotencyRecord
from services.billing.schemas import (
    ID_PATTERN,
    AccountPublic,
    BookingFeePaymentCreate,
    BookingFeePublic,
    ChargeCreate,
    ChargePublic,
    DailyBillPublic,
    InvoicePublic,
    PaymentCreate,
    PaymentPublic,
    ReconciliationPublic,
    RegistrationVisit,
    RejectedChargePublic,
    ReversalCreate,
    SettlementCreate,
    SettlementPublic,
    VisitRefundCreate,
    VisitRefundPublic,
)
from services.billing.service import (
    accounts,
    booking_fees,
    charges,
    daily_bill,
    invoices,
    payments,
    reconciliation,
    reversals,
    settlement,
    tenders,
)
from services.billing.service.inpatient_days import DayItems

router = APIRouter()
RegistrationDep = Annotated[ServiceClient, Depends(sibling("registration"))]
VisitIdPath = Annotated[str, Path(pattern=ID_PATTERN)]
AppointmentIdPath = Annotated[str, Path(pattern=ID_PATTERN)]
ChargeIdPath = Annotated[str, Path(pattern=ID_PATTERN)]
UnseenVisit = RegistrationVisit | None
# Every keyed write: 400 key missing, 422 key reused with another body, 409 twin still in flight, and
# 503 when registration must be asked about a visit and does not answer.
KEYED_WRITE_ERRORS = (BadRequest, Conflict, UnprocessableContent, ServiceUnavailable)


@dataclass(frozen=True)
class KeyedWrite:
    """A keyed write's `Idempotency-Key`, claimed in the request's session and scoped to the calling
    client (kit.idempotency), so a write route names only its operation, its effect and its payload."""

    session: Session
    client: str
    key: str | None

    def __call__(self, operation: str, run: Callable[[], object], **payload: object) -> JSONResponse:
        """`run` once for the key, answered 201; a retry with the same operation and `payload` gets
        that first answer back."""
        return idempotent(
            self.session,
            IdempotencyRecord,
            client=self.client,
            key=self.key,
            payload={"operation": operation, **payload},
            run=lambda: (status.HTTP_201_CREATED, run()),
        )


# `async def` though it awaits nothing: a plain `def` dependency would cost a worker-thread hop.
async def keyed_write(session: SessionDep, caller: CallerDep, key: IdempotencyKeyHeader = None) -> KeyedWrite:
    return KeyedWrite(session, caller.subject, key)


KeyedWriteDep = Annotated[KeyedWrite, Depends(keyed_write)]


def charges_arrived(request: Request) -> None:
    """Dependency of settlement, resolved before its database session: wait (bounded) until the
    charges registration and results committed before the request have been read."""
    settlement.await_charges(
        request.app.state.consumers, within_seconds=request.app.state.settings.settlement_wait_seconds
    )


async def booking_fee_arrived(appointment_id: AppointmentIdPath, request: Request) -> None:
    """Dependency of the booking-fee routes, before their session: a fee billing has not read yet (the
    app pays right after booking) is waited for, bounded, on registration's feed."""
    database = request.app.state.database
    if await database.read(partial(booking_fees.is_known, appointment_id=appointment_id)):
        return
    registration = [c for c in request.app.state.consumers if c.source == "registration"]
    wait = partial(
        booking_fees.await_bookings,
        registration,
        within_seconds=request.app.state.settings.settlement_wait_seconds,
    )
    await anyio.to_thread.run_sync(wait)


async def _unseen(request: Request, registration: ServiceClient, visit_id: str) -> RegistrationVisit | None:
    return await accounts.unseen_visit(request.app.state.database, registration, visit_id=visit_id)


# Registration's word on a visit billing has no account for yet (None when it has one): dependencies
# declared before the session, so registration is asked before the database gate is taken.
async def charged_visit(data: ChargeCreate, registration: RegistrationDep) -> UnseenVisit:
    # Always asked: a charge by hand needs registration's word that the visit is not closed.
    return await accounts.chargeable_visit(registration, visit_id=data.visit_id)


async def paid_visit(data: PaymentCreate, request: Request, registration: RegistrationDep) -> UnseenVisit:
    """Also, before the session: an account whose insurance scheme billing has not read yet (its
    `visit.opened` still on registration's feed) waits, bounded, for that feed, so an insured visit's
    cashier payment is split by its scheme, never taken whole from the patient (503 if it can't)."""
    unseen = await _unseen(request, registration, data.visit_id)
    database = request.app.state.database
    if unseen is None and await database.read(partial(accounts.scheme_known, visit_id=data.visit_id)):
        return unseen
    wait = partial(
        settlement.await_charges,
        [c for c in request.app.state.consumers if c.source == "registration"],
        within_seconds=request.app.state.settings.settlement_wait_seconds,
        nothing_done="Nothing was paid",
    )
    await anyio.to_thread.run_sync(wait)
    return unseen


async def settled_visit(
    visit_id: VisitIdPath, request: Request, registration: RegistrationDep
) -> UnseenVisit:
    return await _unseen(request, registration, visit_id)


@router.post(
    "/charges",
    dependencies=[require_scope("billing:write")],
    status_code=status.HTTP_201_CREATED,
    response_model=ChargePublic,
    tags=["charges"],
    responses=problem_responses(
        *KEYED_WRITE_ERRORS,
        VisitNotFound,
        AccountSettled,
        VisitClosed,
        UnknownItem,
        InvalidServiceDate,
        ItemNotPricedOnDate,
        ChargeRefused,
    ),
)
def post_charge(
    data: ChargeCreate,
    unseen: Annotated[UnseenVisit, Depends(charged_visit)],
    session: SessionDep,
    write: KeyedWriteDep,
) -> JSONResponse:
    """Charge a catalogue item to a visit at the catalogue price (`amount_fen = unit_price_fen × quantity`).

    Needs an `Idempotency-Key`. An item not in the active catalogue is 422 `unknown-item`; a
    `service_date` outside the visit (before it opened, after today) is 422 `invalid-service-date`; a
    visit registration does not know is 404; a settled account is 409, and so is a visit registration
    has closed (`visit-closed`: charges for work done before still arrive through the feeds). The price
    is the catalogue's on the service date (422 `not-priced-on-date` if none). A charging rule that
    forbids it (a second bed-day for one day, an item included in one already charged that day, …) is
    409 `charge-refused` with its `reason` and `rule_id`, nothing charged, and emits `charge.refused`
    (the key is not used up: once the cause is reversed, the same request may be sent again). Emits
    `charge.posted`.
    """
    try:
        return write(
            "charge",
            partial(charges.post_charge, session, data=data, unseen=unseen),
            body=data,
        )
    except ChargeRefused as refusal:
        # Answered without raising, so the unit of work commits the refusal's event (and nothing else).
        charges.record_refusal(session, refusal, source="api")
        return problem_response(refusal.to_problem())


@router.post(
    "/charges/{charge_id}/reversal",
    dependencies=[require_scope("billing:write")],
    status_code=status.HTTP_201_CREATED,
    response_model=ChargePublic,
    tags=["charges"],
    responses=problem_responses(*KEYED_WRITE_ERRORS, ChargeNotFound, ChargeAlreadyReversed, ChargeIsReversal),
)
def post_reversal(
    request: Request,
    charge_id: ChargeIdPath,
    data: ReversalCreate,
    session: SessionDep,
    write: KeyedWriteDep,
) -> JSONResponse:
    """Correct a charge by a reversal line (冲销) with the reason and the operator: never an edit.

    Needs an `Idempotency-Key`. The answer is the reversal line (negated quantity and amount, the
    charge's service date and payment); the account's total drops by the charge's amount. A charge is
    reversed once (409 `charge-already-reversed`); a reversal line is never reversed (409
    `charge-is-reversal`). On a settled account the correction issues a new invoice superseding the
    old one and refunds what was paid for the charge (the insurer's share decrease and the patient's
    part, with a receipt). Emits `charge.reversed` (and `invoice.issued`).
    """
    return write(
        "reversal",
        partial(
            reversals.reverse_charge,
            session,
            charge_id=charge_id,
            data=data,
            split_table=request.app.state.insurance_split,
        ),
        charge_id=charge_id,
        body=data,
    )


@router.post(
    "/payments",
    dependencies=[require_scope("billing:write")],
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentPublic,
    tags=["payments"],
    responses=problem_responses(
        *KEYED_WRITE_ERRORS,
        VisitNotFound,
        ChargeNotFound,
        ChargeAlreadyPaid,
        ChargeReversed,
        NothingDue,
        AmountMismatch,
        ChargesStillArriving,
    ),
)
def post_payment(
    data: PaymentCreate,
    request: Request,
    unseen: Annotated[UnseenVisit, Depends(paid_visit)],
    session: SessionDep,
    write: KeyedWriteDep,
) -> JSONResponse:
    """Pay the listed charges of a visit (all its unpaid charges when `charge_ids` is omitted).

    Needs an `Idempotency-Key`. All or nothing: a listed charge that is already paid (409) or not this
    visit's (404, with its `missing_positions` in `charge_ids`) pays nothing. `amount_fen`, if sent,
    must equal the total due (422 `amount-mismatch`). After settlement it pays the supplementary bill
    (补费). An insured visit (its scheme from registration's `visit.opened`) is split at once by the
    same table as settlement (covered share, deductible, cap per visit): `amount_fen` is the patient's
    own share, `insurer_fen` the insurer's (a payment by method `insurance` with the scheme), both on
    the receipt, and an invoice is issued (superseding the visit's last); the charges count as paid. If
    billing has not read the visit's scheme yet and can't within seconds, 503 `charges-still-arriving`.
    Emits `payment.received`, one `charge.paid` per charge (and `invoice.issued` when insured).
    """
    return write(
        "payment",
        partial(
            payments.pay, session, data=data, unseen=unseen, split_table=request.app.state.insurance_split
        ),
        body=data,
    )


@router.post(
    "/visits/{visit_id}/refunds",
    dependencies=[require_scope("billing:write")],
    status_code=status.HTTP_201_CREATED,
    response_model=VisitRefundPublic,
    tags=["payments"],
    responses=problem_responses(*KEYED_WRITE_ERRORS, VisitNotFound, NothingDue, RefundExceedsPaid),
)
def post_refund(
    visit_id: VisitIdPath,
    data: VisitRefundCreate,
    session: SessionDep,
    write: KeyedWriteDep,
) -> JSONResponse:
    """Refund what the account owes the patient (退费: paid beyond its charges, e.g. a paid charge
    reversed before settlement), all of it unless `amount_fen` says less, back over the tenders that
    paid (原路退回): the newest payment's last tender first, none beyond what it paid — card to card,
    mobile to mobile, the deposit's part back into the deposit held. The insurer's share is never
    refunded here: a correction (`/charges/{id}/reversal`) gives it back by splitting the bill again.

    Needs an `Idempotency-Key`. One negative payment and one receipt per method (`parts`). 409
    `nothing-due` when nothing is owed back, 409 `refund-exceeds-paid` (with `refundable_fen`) above
    it; nothing is refunded then. Emits `payment.refunded` per method.
    """
    return write(
        "refund", partial(tenders.refund, session, visit_id=visit_id, data=data), visit_id=visit_id, body=data
    )


@router.post(
    "/visits/{visit_id}/settlement",
    # The scope first; the wait before the session dependency opens, so no database connection is
    # held while billing waits.
    dependencies=[require_scope("billing:write"), Depends(charges_arrived)],
    status_code=status.HTTP_201_CREATED,
    response_model=SettlementPublic,
    tags=["payments"],
    responses=problem_responses(
        *KEYED_WRITE_ERRORS, VisitNotFound, AccountSettled, AmountMismatch, ChargesStillArriving
    ),
)
def settle_visit(
    visit_id: VisitIdPath,
    data: SettlementCreate,
    request: Request,
    unseen: Annotated[UnseenVisit, Depends(settled_visit)],
    session: SessionDep,
    write: KeyedWriteDep,
) -> JSONResponse:
    """Settle the visit's account: pay everything unpaid and close it to further charges (结算).

    For settle-later and green-channel visits at discharge. Needs an `Idempotency-Key`. `payment` is
    null when nothing was due. Billing first waits until it has read every charge registration and
    results had committed when the request arrived; if it can't confirm that within a few seconds (a
    source down or far behind), 503 `charges-still-arriving` with `Retry-After`, and nothing is settled.
    An inpatient's bed and nursing days the nightly job has not posted yet (a discharge before that
    night's run, a stay admitted today) are posted first, so the invoice bills every day of the stay.
    A charge caused after settlement goes onto the supplementary bill (补费). The insurer pays its share
    (per the visit's insurance scheme and each line's class: `insurer_fen`), a payment by method
    `insurance`; `amount_fen` is the patient's part after the deposit. The answer carries the invoice
    (发票). Emits `visit.settled` and `invoice.issued`.
    """
    return write(
        "settlement",
        partial(
            settlement.settle,
            session,
            visit_id=visit_id,
            data=data,
            unseen=unseen,
            split_table=request.app.state.insurance_split,
            day_items=DayItems.of(request.app.state.settings),
        ),
        visit_id=visit_id,
        body=data,
    )


@router.get(
    "/visits/{visit_id}/invoices",
    dependencies=[require_scope("billing:read", patients=True)],
    tags=["payments"],
    responses=problem_responses(VisitNotFound),
)
def read_invoices(visit_id: VisitIdPath, session: SessionDep, caller: CallerDep) -> list[InvoicePublic]:
    """The visit's invoices (发票), oldest first; one `superseded_by` a later one was replaced by it
    (the supplementary bill paid after settlement). Invoices are never changed."""
    return invoices.list_invoices(session, visit_id=visit_id, acting_for=caller.patient)


@router.get("/reconciliation", dependencies=[require_scope("billing:read")], tags=["payments"])
def read_reconciliation(
    session: SessionDep, day: Annotated[date, Query(alias="date", description="The hospital day")]
) -> ReconciliationPublic:
    """The day's reconciliation (日对账): every charge, reversal, payment, deposit, deposit application,
    booking-fee payment and refund and insurer share, totals by kind and method, and `balanced` (with
    `mismatches` if not)."""
    return reconciliation.reconcile(session, day=day)


@router.get(
    "/visits/{visit_id}/account",
    dependencies=[require_scope("billing:read", patients=True)],
    tags=["accounts"],
    responses=problem_responses(VisitNotFound),
)
def read_account(visit_id: VisitIdPath, session: SessionDep, caller: CallerDep) -> AccountPublic:
    """The visit's account: every charge, the total, what was paid and the balance still due.

    Charges read after settlement are flagged `supplementary`: the supplementary bill (补费), its unpaid
    part `supplementary_due_fen`, paid with `POST /payments`."""
    return accounts.account_view(session, visit_id=visit_id, acting_for=caller.patient)


@router.get(
    "/visits/{visit_id}/daily-bill",
    tags=["accounts"],
    response_model=DailyBillPublic,
    responses=problem_responses(VisitNotFound),
)
async def read_daily_bill(
    visit_id: VisitIdPath,
    access: Annotated[ReadAccess, read_access("billing:read", patients=True)],
    day: Annotated[date | None, Query(alias="date", description="Hospital day; default today")] = None,
) -> Response:
    """The daily itemised bill (一日清单): each charge of that day with its codes, category and ordering
    department, subtotals by category, the day's total (the sum of its lines), the running total, the
    deposit and the balance, and when the patient acknowledged it. As a PDF: `/daily-bill/pdf`."""
    # Every journey reads it: Core on a reader connection (kit.database.read_access), serialised once.
    bill = await access.reader.run(
        daily_bill.daily_bill, visit_id=visit_id, day=day, acting_for=access.caller.patient
    )
    return Response(bill.model_dump_json(), media_type="application/json")


@router.get("/rejected-charges", dependencies=[require_scope("billing:read")], tags=["accounts"])
def read_rejected_charges(
    session: SessionDep,
    visit_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, page_size(500)] = 100,
) -> list[RejectedChargePublic]:
    """Charges other services asked for that billing refused (unknown item, duplicate order, …), newest
    first, for the cashier to review. Late charges are not here: they are on the account's supplementary
    bill (补费)."""
    return charges.list_rejections(session, visit_id=visit_id, limit=limit)


@router.get(
    "/booking-fees/{appointment_id}",
    dependencies=[require_scope("billing:read", patients=True), Depends(booking_fee_arrived)],
    tags=["booking fees"],
    responses=problem_responses(BookingFeeNotFound),
)
def read_booking_fee(
    appointment_id: AppointmentIdPath, session: SessionDep, caller: CallerDep
) -> BookingFeePublic:
    """An appointment's consultation fee (诊察费): the catalogue price of its session's fee item, and
    whether it is due, paid, refunded (with the refund), void (cancelled unpaid) or on the visit's
    account (checked in)."""
    return booking_fees.booking_fee_view(session, appointment_id=appointment_id, acting_for=caller.patient)


@router.post(
    "/booking-fees/{appointment_id}/payments",
    dependencies=[require_scope("billing:write", patients=True), Depends(booking_fee_arrived)],
    status_code=status.HTTP_201_CREATED,
    response_model=BookingFeePublic,
    tags=["booking fees"],
    responses=problem_responses(*KEYED_WRITE_ERRORS, BookingFeeNotFound, BookingFeeNotDue, AmountMismatch),
)
def pay_booking_fee(
    appointment_id: AppointmentIdPath,
    data: BookingFeePaymentCreate,
    session: SessionDep,
    caller: CallerDep,
    write: KeyedWriteDep,
) -> JSONResponse:
    """Pay an appointment's consultation fee at booking (an app for its own patient, or the desk).

    Needs an `Idempotency-Key`. The whole fee or nothing: `amount_fen`, if sent, must equal it (422
    `amount-mismatch`); a fee already paid, or whose appointment was cancelled or checked in, is 409
    `booking-fee-not-due`. If the appointment is later cancelled, the fee is refunded the way it was
    paid (`payment.refunded`); at check-in it moves onto the visit's account, paid. Emits
    `booking_fee.paid`.
    """
    return write(
        "booking-fee",
        partial(
            booking_fees.pay_booking_fee,
            session,
            appointment_id=appointment_id,
            data=data,
            acting_for=caller.patient,
        ),
        appointment_id=appointment_id,
        body=data,
    )
