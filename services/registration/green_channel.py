"""The green channel (绿色通道, 先救治后付费) switched on by triage: an emergency visit triaged at level I or
II pays later, whatever mode it was opened with.

There is one way a visit is on the green channel: its `payment_mode` here, which results reads when an
order is placed and billing learns from `visit.opened` and, for a switch, `visit.green_channel`. Triage
says which level a visit is at (`visit.triaged` with `green_channel`); this module applies it, in
registration's consumer of triage's feed. A visit already on the green channel, closed, or not an
emergency visit is left as it is (the channel is for emergencies only, as at the desk); a later lower
level does not switch it back: treatment already given on credit stays on credit.
"""

import logging
from typing import Any

from sqlmodel import Session

from services.registration import repository
from services.registration.schemas import PaymentMode, VisitKind
from services.registration.stays import CLOSED, record_visit_event

logger = logging.getLogger("patientflow.registration")
TRIAGE_EVENTS = frozenset({"visit.triaged"})


def apply_triage_event(session: Session, event: dict[str, Any]) -> None:
    """Triage's feed: a `visit.triaged` at level I/II puts an open emergency visit on the green channel."""
    if event["type"] != "visit.triaged" or not event["data"].get("green_channel"):
        return
    visit = repository.lock_visit(session, event["visit_id"]) if isinstance(event["visit_id"], str) else None
    if visit is None:
        logger.warning("triage assessed visit %s, which registration does not know", event["visit_id"])
        return
    if visit.payment_mode == PaymentMode.green_channel or visit.status == CLOSED:
        return
    if visit.kind != VisitKind.emergency:
        logger.info(
            "visit %s triaged at level %s is not an emergency visit", visit.id, event["data"]["level"]
        )
        return
    previous = visit.payment_mode
    visit.payment_mode = PaymentMode.green_channel.value
    session.add(visit)
    record_visit_event(
        session,
        visit,
        "visit.green_channel",
        {
            "payment_mode": visit.payment_mode,
            "previous_payment_mode": previous,
            "level": event["data"]["level"],
            "assessment_id": event["data"]["assessment_id"],
        },
    )
