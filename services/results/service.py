"""Results rules: the payment gate on orders and audited result lookup (the release rule is release.py,
a report's lifecycle lifecycle.py, critical values critical.py)."""

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import object_session
from sqlmodel import Session

from kit.auth import visible_to
from kit.client import ServiceClient
from kit.clock import utcnow
from kit.database import ReadConnection, mark_outbox_written
from kit.errors import BadGateway, ServiceUnavailable, ensure_visit_open
from kit.outbox import record_event
from kit.requestid import current_request_id
from services.results import audit, repository
from services.results.errors import (
    OrderAwaitingPayment,
    OrderCancelled,
    OrderNotFound,
    UnknownTest,
    VisitNotFound,
)
from services.results.models import LabOrder, OrderableTest, OutboxEvent, Report, ResultAccess
from services.results.release import ReleasePolicy, releasable
from services.results.schemas import (
    BillingCredit,
    OrderableTestPublic,
    OrderCreate,
    OrderPublic,
    OrderStatus,
    PaymentHold,
    PaymentMode,
    RegistrationVisit,
    ReportPublic,
)

logger = logging.getLogger("patientflow.results")
SEED_FILE = Path(__file__).parent / "tests.json"
SUBJECT_MAX_LENGTH = 64


def load_orderable_tests(session: Session, *, seed_file: Path = SEED_FILE) -> None:
    """Upsert the orderable tests from the seed file (run at every start, so edits to it take effect).

    The seed is validated first: a malformed file stops start-up rather than serving a broken catalogue.
    """
    seed = json.loads(seed_file.read_text(encoding="utf-8"))
    tests = [OrderableTestPublic.model_validate(entry).model_dump(mode="json") for entry in seed]
    repository.upsert_orderable_tests(session, tests)


def list_orderable_tests(session: Session) -> list[OrderableTest]:
    return repository.list_orderable_tests(session)


async def fetch_visit(registration: ServiceClient, *, visit_id: str) -> RegistrationVisit:
    """The visit as registration knows it; the order's patient and payment mode come from here only.

    Awaited before the unit of work opens (`router.resolve_visit`), so no transaction waits on it.
    """
    visit = await registration.get(RegistrationVisit, "/visits/{visit_id}", visit_id=visit_id)
    if visit is None:
        raise VisitNotFound("No such visit.")
    ensure_visit_open(visit.id, visit.status)
    return visit


def _record(session: Session, order: LabOrder, event_type: str, payload: dict[str, Any]) -> None:
    record_event(
        session,
        OutboxEvent,
        event_type=event_type,
        aggregate_type="order",
        aggregate_id=order.id,
        visit_id=order.visit_id,
        patient_id=order.patient_id,
        payload={"order_id": order.id, "test_code": order.test_code, **payload},
    )


# --- the settle-later credit limit -----------------------------------------------------------------
#
# A settle-later (先诊疗后结算) order whose charge would take the account past billing's credit limit waits
# for payment; within the limit it goes to the lab at once; a green-channel (绿色通道) order never waits.
# Both ways are used, because each alone leaves a hole:
#
# 1. Before the unit of work, `fetch_credit` asks billing whether the test's price still fits the
#    account's remaining credit (`GET /visits/{id}/credit/{item_code}`); if not, the order is placed
#    `awaiting_payment` (`hold_reason` credit_limit) and the lab never sees it. This closes the window
#    a hold by event alone leaves open: an order released at once could be collected (采样) before a
#    hold arrived two feeds later.
# 2. The check is advice read at one moment: billing may not have charged the orders placed just
#    before (its feed lags ours), and two orders placed together both see the same credit. Billing
#    decides for good as it posts each order's charge, one after another under the account's row lock
#    (`deposits.hold_over_credit`), and says `charge.held` for a charge past the limit; `record_held`
#    then takes a released order back from the lab while no specimen has been collected (the lab's
#    collection and receipt are refused for an order awaiting payment, 402).
#
# Billing down (or answering nonsense) at ordering: the order is released, as green channel does while
# billing is down. Clinical work does not wait on the cashier's system, and nothing is lost: the charge
# is posted when billing reads our feed again, and if it lies past the limit the `charge.held` path
# above still holds the order unless its specimen was collected meanwhile (then the charge stays due
# on billing's standing, `held_charge_ids`, for the cashier). Either way a held order is released by
# its charge's payment (`charge.paid`, reason `paid`), once; paying earlier charges, a deposit top-up
# or a raised limit do not release it by themselves (pay the held charge, from the deposit if need be).


async def fetch_credit(
    billing: ServiceClient, *, visit: RegistrationVisit, test_code: str
) -> BillingCredit | None:
    """Billing's word on whether a settle-later visit's order still fits its credit (None for the other
    modes, an account billing has not opened yet, or billing not answering: the order is then released
    and billing's `charge.held` is the backstop; see the section comment above).

    Awaited before the unit of work opens (`router.resolve_credit`), like `fetch_visit`.
    """
    if visit.payment_mode is not PaymentMode.settle_later:
        return None
    try:
        return await billing.get(
            BillingCredit, "/visits/{visit_id}/credit/{item_code}", visit_id=visit.id, item_code=test_code
        )
    except (ServiceUnavailable, BadGateway) as exc:
        logger.warning("credit check for visit %s skipped, the order is released: %s", visit.id, exc)
        return None


def _held_for_credit(visit: RegistrationVisit, credit: BillingCredit | None) -> bool:
    return visit.payment_mode is PaymentMode.settle_later and credit is not None and not credit.fits


def place_order(
    session: Session, *, visit: RegistrationVisit, data: OrderCreate, credit: BillingCredit | None = None
) -> LabOrder:
    """Order a test; a `prepay` visit's order waits for payment, and so does a `settle_later` one whose
    price billing says is past the account's remaining credit (`credit`, from `fetch_credit`); the
    others are released at once.

    先诊疗后结算 (settle later) within its limit and 绿色通道 (green channel) never make the lab wait for
    the cashier.
    """
    patient_id = repository.patient_for_visit(session, visit_id=visit.id, registered=visit.patient_id)
    test = repository.get_orderable_test(session, data.test_code)
    if test is None:
        raise UnknownTest(f"No orderable test with code {data.test_code!r}; see GET /tests.")
    over_credit = _held_for_credit(visit, credit)
    released = visit.payment_mode is not PaymentMode.prepay and not over_credit
    hold = None if released else PaymentHold.credit_limit if over_credit else PaymentHold.prepay
    order = LabOrder(
        id=str(uuid.uuid4()),
        visit_id=visit.id,
        patient_id=patient_id,
        test_code=test.code,
        test_name=test.name_zh,
        payment_mode=visit.payment_mode.value,
        status=(OrderStatus.released if released else OrderStatus.awaiting_payment).value,
        hold_reason=hold.value if hold else None,
        ordered_by=data.ordered_by,
        department=data.department or visit.department,
    )
    order.released_at = order.ordered_at if released else None
    session.add(order)
    payload = {
        "quantity": 1,
        "payment_mode": order.payment_mode,
        "status": order.status,
        "department": order.department,  # 开单科室: billing puts it on the order's charge line
    }
    _record(session, order, "order.placed", payload)
    if released:
        _record(session, order, "order.released", {"reason": "payment_mode"})
    elif over_credit:
        assert credit is not None
        _record_held(session, order, amount_fen=credit.price_fen, credit_limit_fen=credit.credit_limit_fen)
    return order


def _record_held(
    session: Session,
    order: LabOrder,
    *,
    amount_fen: int | None,
    credit_limit_fen: int | None,
    charge_id: str | None = None,
) -> None:
    payload = {"reason": PaymentHold.credit_limit.value, "charge_id": charge_id, "amount_fen": amount_fen}
    _record(session, order, "order.held", payload | {"credit_limit_fen": credit_limit_fen})


def record_held(session: Session, order: LabOrder, held: dict[str, Any]) -> None:
    """Billing held the order's charge past the settle-later credit limit (`charge.held`): a released
    order nobody has collected a specimen for goes back to awaiting payment and says `order.held`.

    Nothing changes for an order already held or paid (its `charge.paid` releases or released it), nor
    for one whose specimen was collected or received, or that has a report: the lab has started and a
    specimen is not taken back; its charge stays due on billing's standing for the cashier.
    """
    started = order.collected_at is not None or order.received_at is not None
    if order.status != OrderStatus.released or order.paid_at is not None or started:
        return
    order.status = OrderStatus.awaiting_payment.value
    order.hold_reason = PaymentHold.credit_limit.value
    order.released_at = None
    session.add(order)
    _record_held(
        session,
        order,
        amount_fen=_fen(held.get("amount_fen")),
        credit_limit_fen=_fen(held.get("credit_limit_fen")),
        charge_id=held.get("charge_id") if isinstance(held.get("charge_id"), str) else None,
    )


def record_charge_reversed(session: Session, order: LabOrder, reversal: dict[str, Any]) -> None:
    """Billing reversed the order's charge (`charge.reversed`: 冲销, or 退费 of a test not to be done): an
    order whose lab has not started — no specimen collected or received, no report — is cancelled
    and says `order.cancelled`, so it neither waits for a payment that can no longer come nor reaches
    the lab uncharged. An order the lab started is left to it; billing's correction stands."""
    started = order.collected_at is not None or order.received_at is not None
    done = order.status in (OrderStatus.reported, OrderStatus.cancelled)
    if done or started or repository.current_report_of_order(session, order.id) is not None:
        return
    order.status = OrderStatus.cancelled.value
    order.hold_reason = None
    session.add(order)

    def text(key: str, limit: int) -> str | None:
        value = reversal.get(key)
        return value[:limit] if isinstance(value, str) else None

    payload = {
        "reason": "charge_reversed",
        "charge_id": text("reversal_of", 36),
        "reversal_id": text("charge_id", 36),
        "reversal_reason": text("reason", 200),
    }
    _record(session, order, "order.cancelled", payload)


def _fen(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def ensure_lab_may_work(order: LabOrder) -> None:
    """The lab collects, receives and reports only released orders: 402 while one awaits payment, 409
    once billing's reversal cancelled it."""
    if order.status == OrderStatus.awaiting_payment:
        raise OrderAwaitingPayment("This order is awaiting payment; the lab cannot start it until paid.")
    if order.status == OrderStatus.cancelled:
        raise OrderCancelled("This order was cancelled (its charge was reversed); the lab does not do it.")


def get_order(
    session: Session, *, order_id: str, for_update: bool = False, acting_for: str | None = None
) -> LabOrder:
    """The order; acting for another patient, 404 exactly as for one that does not exist."""
    order = repository.get_order(session, order_id, for_update=for_update)
    refuse_unless_visible(order.patient_id if order else None, acting_for)
    assert order is not None
    return order


# What a commit that moved an order's status says when it wakes this process's held reads
# (`GET /orders/{id}?wait=`): every change of `LabOrder.status` marks its session, whichever path made
# it and whatever event it recorded (a cancelled report puts its order back to `released` silently).
ORDER_STATUS_MOVED = "results.order_status_moved"


@sa_event.listens_for(LabOrder.status, "set")
def _wake_held_reads(order: LabOrder, status: str, previous: object, _initiator: object) -> None:
    session = object_session(order)
    if session is not None and status != previous:
        mark_outbox_written(session, ORDER_STATUS_MOVED)  # type: ignore[arg-type]


def read_order(reader: ReadConnection, *, order_id: str, acting_for: str | None = None) -> OrderPublic:
    """The order as `get_order` finds it, read with Core on a reader connection (the order a workstation
    polls until payment releases it)."""
    order = repository.order_row(reader, order_id)
    refuse_unless_visible(order["patient_id"] if order else None, acting_for)
    return OrderPublic.model_validate(dict(order or {}))


def refuse_unless_visible(patient_id: str | None, acting_for: str | None) -> None:
    """404 for an order results does not have (`patient_id` None) or another patient's, alike."""
    if patient_id is None or not visible_to(acting_for, patient_id):
        raise OrderNotFound("No such order.")


def _audit(
    session: Session,
    *,
    client: str,
    acting_for: str | None,
    action: str,
    outcome: str,
    reports: Sequence[Report],
    patient_id: str | None = None,
    visit_id: str | None = None,
    report_id: str | None = None,
) -> None:
    """Record a look at results in the lookup's own transaction: no audit row, no answer.

    The client's kind and where the request came from are the request's own (`audit.note_origin`).
    """
    origin = audit.current_origin()
    session.add(
        ResultAccess(
            client=client[:SUBJECT_MAX_LENGTH],
            action=action,
            patient_id=patient_id,
            visit_id=visit_id,
            report_id=report_id,
            report_ids=[r.id for r in reports],
            outcome=outcome,
            request_id=current_request_id(),
            acting_for=acting_for,
            client_kind=origin.client_kind,
            source_address=origin.source_address,
        )
    )


def visit_orders(session: Session, *, visit_id: str, acting_for: str | None = None) -> list[LabOrder]:
    """A visit's orders, oldest first; acting for another patient, empty as for a visit without any."""
    orders = repository.list_visit_orders(session, visit_id)
    return orders if all(visible_to(acting_for, o.patient_id) for o in orders) else []


def _released(session: Session, reports: list[Report], release: ReleasePolicy | None) -> list[Report]:
    """The reports a patient-facing caller may get (`release.releasable`); all of them for staff."""
    if release is None:
        return reports
    orders = repository.orders_by_id(session, [r.order_id for r in reports])
    return [r for r in reports if releasable(r, orders[r.order_id], require_payment=release.require_payment)]


def visit_reports(
    session: Session,
    *,
    visit_id: str,
    client: str,
    limit: int,
    acting_for: str | None = None,
    release: ReleasePolicy | None = None,
) -> list[Report]:
    """A visit's reports, newest first, audited (an empty answer too); for a patient-facing caller
    (`release`) only the released ones.

    Acting for another patient the answer is empty, as for a visit without reports, and the audit
    says `refused`: the row records what the client got, not what the database holds.
    """
    everything = repository.list_visit_reports(session, visit_id, limit=limit)
    reports = _released(session, everything, release)
    patient_id = everything[0].patient_id if everything else repository.patient_of_visit(session, visit_id)
    refused = patient_id is not None and not visible_to(acting_for, patient_id)
    outcome = "refused" if refused else "found" if reports else "empty"
    shown = [] if refused else reports
    _audit(
        session,
        client=client,
        acting_for=acting_for,
        action="visit_reports",
        outcome=outcome,
        reports=shown,
        patient_id=patient_id,
        visit_id=visit_id,
    )
    return shown


def patient_reports(
    session: Session,
    *,
    patient_id: str,
    client: str,
    limit: int,
    acting_for: str | None = None,
    release: ReleasePolicy | None = None,
) -> list[Report]:
    """A patient's reports, newest first, audited (an empty answer too); for a patient-facing caller
    (`release`) only the released ones; acting for another patient, empty and audited as `refused`."""
    refused = not visible_to(acting_for, patient_id)
    found = [] if refused else repository.list_patient_reports(session, patient_id, limit=limit)
    reports = _released(session, found, release)
    _audit(
        session,
        client=client,
        acting_for=acting_for,
        action="patient_reports",
        outcome="refused" if refused else "found" if reports else "empty",
        reports=reports,
        patient_id=patient_id,
    )
    return reports


def read_report(
    session: Session,
    *,
    report_id: str,
    patient_id: str | None,
    client: str,
    acting_for: str | None = None,
    release: ReleasePolicy | None = None,
) -> Report | None:
    """One report, audited; None (never a hint why) when it does not exist, is not that patient's
    (`patient_id` asked for, or the patient the caller acts for), or, for a patient-facing caller
    (`release`), is not released. The audit row tells them apart: `not_found`, `refused` naming whose
    report it was, or `not_released`."""
    report = repository.get_report(session, report_id)
    refused = report is not None and not (
        visible_to(patient_id, report.patient_id) and visible_to(acting_for, report.patient_id)
    )
    held_back = report is not None and not refused and not _released(session, [report], release)
    shown = None if refused or held_back else report
    outcome = "refused" if refused else "not_released" if held_back else "found" if report else "not_found"
    _audit(
        session,
        client=client,
        acting_for=acting_for,
        action="read_report",
        outcome=outcome,
        reports=[shown] if shown else [],
        patient_id=report.patient_id if report else patient_id or acting_for,
        visit_id=report.visit_id if report else None,
        report_id=report_id,
    )
    return shown


def note_releasable(report: Report, order: LabOrder, *, require_payment: bool, now: datetime) -> None:
    """Record the first moment the release rule (`release.releasable`) passed for the report, on it and
    on its order (`releasable_at`). Called at each change that can make it pass: a final report verified
    (posted so, or verified later), the order paid where release requires payment, a doctor lifting a
    hold. The first moment is kept: an amendment or correction, a later hold or a cancellation does not
    move it (the patient had the report from then on; an amendment notifies its readers instead)."""
    if report.releasable_at is None and releasable(report, order, require_payment=require_payment):
        report.releasable_at = now
    if order.releasable_at is None and report.releasable_at is not None:
        order.releasable_at = report.releasable_at


def record_paid(session: Session, order: LabOrder, *, require_payment: bool = False) -> None:
    """Billing was paid for the order: a prepaid one goes to the lab, and where the hospital releases
    only paid reports (`require_payment`, `RESULTS_RELEASE_REQUIRES_PAYMENT`) its report may now reach
    the patient (`note_releasable`)."""
    if order.paid_at is None:
        order.paid_at = utcnow()
        session.add(order)
        report = repository.current_report_of_order(session, order.id)
        if report is not None:
            note_releasable(report, order, require_payment=require_payment, now=order.paid_at)
            session.add(report)
    if order.status == OrderStatus.awaiting_payment:
        order.status = OrderStatus.released.value
        order.released_at = order.paid_at
        order.hold_reason = None
        _record(session, order, "order.released", {"reason": "paid"})


def order_public(order: LabOrder) -> OrderPublic:
    return OrderPublic.model_validate(order, from_attributes=True)


def report_public(report: Report) -> ReportPublic:
    return ReportPublic.model_validate(report, from_attributes=True)
