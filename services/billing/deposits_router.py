"""Billing endpoints for deposits, receipts, account standing, inpatient days and the daily bill's PDF,
batch and acknowledgement (thin, as router.py)."""

from datetime import date, timedelta
from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from kit.auth import CallerDep, require_scope, require_service_caller
from kit.config import app_settings
from kit.database import SessionDep
from kit.errors import problem_responses
from kit.params import page_size
from services.billing.config import BillingSettings
from services.billing.errors import (
    AccountNotSettled,
    AccountSettled,
    DailyBillNotIssued,
    InvalidRunDate,
    NotGreenChannel,
    NothingDue,
    VisitNotFound,
)
from services.billing.router import (
    KEYED_WRITE_ERRORS,
    KeyedWriteDep,
    UnseenVisit,
    VisitIdPath,
    settled_visit,
)
from services.billing.schemas import (
    AcknowledgementCreate,
    AcknowledgementPublic,
    AcknowledgementReport,
    CreditCheckPublic,
    DailyBillsRunPublic,
    DepositCreate,
    DepositPublic,
    DepositRefundCreate,
    DepositRefundPublic,
    DepositsPublic,
    InpatientDaysRunPublic,
    ReceiptPublic,
    ReliefCreate,
    RunCreate,
    StandingPublic,
)
from services.billing.service import daily_bill, deposits, inpatient_days
from services.billing.service.accounts import hospital_today
from services.billing.service.charges import MAX_QUANTITY

router = APIRouter()
ITEM_CODE_PATTERN = r"^[A-Za-z0-9.-]{1,32}$"
SettingsDep = Annotated[BillingSettings, Depends(app_settings)]
DayQuery = Annotated[date | None, Query(alias="date", description="Hospital day; default today")]


# --- deposits and receipts ---------------------------------------------------------------------------


@router.post(
    "/visits/{visit_id}/deposits",
    dependencies=[require_scope("billing:write")],
    status_code=status.HTTP_201_CREATED,
    response_model=DepositPublic,
    tags=["deposits"],
    responses=problem_responses(*KEYED_WRITE_ERRORS, VisitNotFound, AccountSettled),
)
def post_deposit(
    visit_id: VisitIdPath,
    data: DepositCreate,
    unseen: Annotated[UnseenVisit, Depends(settled_visit)],
    session: SessionDep,
    caller: CallerDep,
    settings: SettingsDep,
    write: KeyedWriteDep,
) -> JSONResponse:
    """Take a deposit or a top-up (住院押金 / 预交金) with its numbered receipt.

    Needs an `Idempotency-Key`. The deposit secures the stay's charges: `GET …/deposits` shows it against
    the running total, `deposit.low_balance` fires (once per crossing) when the balance falls to
    `low_balance_threshold_fen`, and the discharge settlement takes what is due from it first. A settled
    account takes no deposit (409)."""
    return write(
        "deposit",
        partial(
            deposits.receive_deposit,
            session,
            visit_id=visit_id,
            data=data,
            unseen=unseen,
            received_by=caller.subject,
            default_threshold_fen=settings.deposit_low_balance_fen,
        ),
        visit_id=visit_id,
        body=data,
    )


@router.get(
    "/visits/{visit_id}/deposits",
    dependencies=[require_scope("billing:read", patients=True)],
    tags=["deposits"],
    responses=problem_responses(VisitNotFound),
)
def read_deposits(visit_id: VisitIdPath, session: SessionDep, caller: CallerDep) -> DepositsPublic:
    """The visit's deposits and refunds against its running total (累计费用), and the balance."""
    return deposits.deposits_view(session, visit_id=visit_id, acting_for=caller.patient)


@router.post(
    "/visits/{visit_id}/deposit-refunds",
    dependencies=[require_scope("billing:write")],
    status_code=status.HTTP_201_CREATED,
    response_model=DepositRefundPublic,
    tags=["deposits"],
    responses=problem_responses(*KEYED_WRITE_ERRORS, VisitNotFound, AccountNotSettled, NothingDue),
)
def post_deposit_refund(
    visit_id: VisitIdPath,
    data: DepositRefundCreate,
    session: SessionDep,
    caller: CallerDep,
    write: KeyedWriteDep,
) -> JSONResponse:
    """Refund what is left of the deposit after the discharge settlement (多退), with a receipt.

    Needs an `Idempotency-Key`. 409 `account-not-settled` before settlement, `nothing-due` when the
    deposit holds nothing more."""
    return write(
        "deposit-refund",
        partial(deposits.refund_deposit, session, visit_id=visit_id, data=data, refunded_by=caller.subject),
        visit_id=visit_id,
        body=data,
    )


@router.get(
    "/visits/{visit_id}/receipts",
    dependencies=[require_scope("billing:read", patients=True)],
    tags=["deposits"],
    responses=problem_responses(VisitNotFound),
)
def read_receipts(visit_id: VisitIdPath, session: SessionDep, caller: CallerDep) -> list[ReceiptPublic]:
    """Every receipt (收据) of the visit: deposits, payments, deposit refunds; numbered, never changed."""
    return deposits.list_receipts(session, visit_id=visit_id, acting_for=caller.patient)


# --- standing and the green channel ----------------------------------------------------------------


@router.get(
    "/visits/{visit_id}/standing",
    dependencies=[require_scope("billing:read", patients=True)],
    tags=["accounts"],
    responses=problem_responses(VisitNotFound),
)
def read_standing(
    visit_id: VisitIdPath, session: SessionDep, caller: CallerDep, settings: SettingsDep
) -> StandingPublic:
    """The account against its payment mode: prepay (orders released when paid), settle-later (credit
    up to the limit; charges beyond it are still posted and listed in `held_charge_ids`: due now) or
    green channel (no limit; `needs_follow_up` until its relief category is recorded)."""
    return deposits.standing_view(
        session,
        visit_id=visit_id,
        acting_for=caller.patient,
        credit_limit_fen=settings.settle_later_credit_limit_fen,
    )


@router.get(
    "/visits/{visit_id}/credit/{item_code}",
    dependencies=[Depends(require_service_caller)],
    tags=["accounts"],
    responses=problem_responses(VisitNotFound),
)
def read_credit_check(
    visit_id: VisitIdPath,
    item_code: Annotated[str, Path(pattern=ITEM_CODE_PATTERN)],
    session: SessionDep,
    settings: SettingsDep,
    quantity: Annotated[int, Query(ge=1, le=MAX_QUANTITY)] = 1,
) -> CreditCheckPublic:
    """For sibling services: whether `quantity` of the item would still fit the account's credit
    (results asks before it places a settle-later order; past the limit the order waits for payment).
    404 `visit-not-found` while billing has no account for the visit."""
    return deposits.credit_check(
        session,
        visit_id=visit_id,
        item_code=item_code,
        quantity=quantity,
        credit_limit_fen=settings.settle_later_credit_limit_fen,
    )


@router.put(
    "/visits/{visit_id}/relief",
    dependencies=[require_scope("billing:write")],
    tags=["accounts"],
    responses=problem_responses(VisitNotFound, NotGreenChannel),
)
def put_relief(
    visit_id: VisitIdPath, data: ReliefCreate, session: SessionDep, caller: CallerDep, settings: SettingsDep
) -> StandingPublic:
    """Follow up a green-channel account: record its emergency-relief category (疾病应急救助 …); 409
    `not-green-channel` for another mode."""
    return deposits.record_relief(
        session,
        visit_id=visit_id,
        data=data,
        by=caller.subject,
        credit_limit_fen=settings.settle_later_credit_limit_fen,
    )


@router.get("/green-channel/follow-ups", dependencies=[require_scope("billing:read")], tags=["accounts"])
def read_follow_ups(
    session: SessionDep,
    settings: SettingsDep,
    pending: Annotated[bool, Query(description="Only those not followed up yet")] = True,
    limit: Annotated[int, page_size(500)] = 100,
) -> list[StandingPublic]:
    """Green-channel accounts for follow-up, those still pending first."""
    return deposits.follow_ups(
        session, pending=pending, credit_limit_fen=settings.settle_later_credit_limit_fen, limit=limit
    )


# --- inpatient days and the daily bill --------------------------------------------------------------


def _run_day(data: RunCreate | None) -> date:
    return (data.date if data and data.date else None) or hospital_today() - timedelta(days=1)


@router.post(
    "/inpatient-days/runs",
    dependencies=[require_scope("billing:write")],
    tags=["inpatient days"],
    responses=problem_responses(InvalidRunDate),
)
async def run_inpatient_days(
    request: Request, settings: SettingsDep, data: RunCreate | None = None
) -> InpatientDaysRunPublic:
    """Run the nightly bed-day job now for a date (default yesterday; today posts the nights of those in
    a bed now): every stay's bed and nursing days up to it, missed nights included, by the bed's class
    at the price of each day. Safe to repeat: a day is never posted twice. Later than today is 422."""
    job = partial(
        inpatient_days.run_inpatient_days,
        request.app.state.database,
        up_to=_run_day(data),
        items=inpatient_days.DayItems.of(settings),
    )
    return await anyio.to_thread.run_sync(job)


@router.post("/daily-bills/runs", dependencies=[require_scope("billing:write")], tags=["daily bills"])
async def run_daily_bills(request: Request, data: RunCreate | None = None) -> DailyBillsRunPublic:
    """Issue the daily bill of a date (default yesterday) to every patient in a bed that day; each bill
    issued for the first time emits `daily_bill.ready` (for the app). Safe to repeat: totals are
    refreshed, nothing is announced twice."""
    job = partial(daily_bill.issue_daily_bills, request.app.state.database, day=_run_day(data))
    return await anyio.to_thread.run_sync(job)


@router.get(
    "/visits/{visit_id}/daily-bill/pdf",
    dependencies=[require_scope("billing:read", patients=True)],
    tags=["daily bills"],
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, **problem_responses(VisitNotFound)},
)
def read_daily_bill_pdf(
    visit_id: VisitIdPath, session: SessionDep, caller: CallerDep, day: DayQuery = None
) -> Response:
    """The daily bill as a printable PDF (A4, Chinese)."""
    bill = daily_bill.daily_bill(session, visit_id=visit_id, day=day, acting_for=caller.patient)
    name = f"daily-bill-{bill.date.isoformat()}.pdf"
    return Response(
        daily_bill.bill_pdf(bill),
        media_type="application/pdf",
        headers={"content-disposition": f'inline; filename="{name}"'},
    )


@router.post(
    "/visits/{visit_id}/daily-bill/acknowledgements",
    dependencies=[require_scope("billing:write", patients=True)],
    status_code=status.HTTP_201_CREATED,
    tags=["daily bills"],
    responses=problem_responses(VisitNotFound, DailyBillNotIssued),
)
def acknowledge_daily_bill(
    visit_id: VisitIdPath, data: AcknowledgementCreate, session: SessionDep, caller: CallerDep
) -> AcknowledgementPublic:
    """The patient (in the app, or at the bedside) confirms the issued daily bill of a date (知情确认).
    Repeating it keeps the first confirmation; 404 `daily-bill-not-issued` before the bill was issued."""
    return daily_bill.acknowledge(
        session, visit_id=visit_id, day=data.date, acting_for=caller.patient, by=caller.subject
    )


@router.get(
    "/daily-bills/acknowledgements", dependencies=[require_scope("billing:read")], tags=["daily bills"]
)
def read_acknowledgements(
    session: SessionDep, day: Annotated[date, Query(alias="date", description="Hospital day")]
) -> AcknowledgementReport:
    """知情率: of the daily bills issued for a date, how many the patients acknowledged, and who not."""
    return daily_bill.acknowledgement_report(session, day=day)
