"""What results does with its siblings' events: billing's payments release orders and its credit holds
take them back, registration's merges re-point them. Each handler runs in the consumer's transaction
(kit.feed) and calls no one."""

from typing import Any

from sqlmodel import Session

from services.results import repository, service

BILLING_EVENTS = frozenset({"charge.paid", "charge.held"})
REGISTRATION_EVENTS = frozenset({"patient.merged"})


def apply_billing_event(session: Session, event: dict[str, Any]) -> None:
    """Billing feed handler: a paid charge naming an order marks it paid (and releases it to the lab
    when it awaited payment); a charge held past a settle-later credit limit takes its order back from
    the lab while no specimen was collected (`service.record_held`)."""
    if event["type"] not in BILLING_EVENTS:
        return
    order_id = event["data"].get("order_id")
    if not order_id or not isinstance(order_id, str):
        return
    order = repository.get_order(session, order_id, for_update=True)
    if order is None:
        return
    if event["type"] == "charge.paid":
        service.record_paid(session, order)
    else:
        service.record_held(session, order, event["data"])


def apply_registration_event(session: Session, event: dict[str, Any]) -> None:
    """Registration feed handler: after a merge (身份确认后合并) results follow the surviving patient."""
    if event["type"] != "patient.merged":
        return
    data = event["data"]
    repository.repoint_patient(
        session,
        visit_ids=data.get("visit_ids") or [],
        source_id=data["source_patient_id"],
        target_id=data["target_patient_id"],
    )
