"""What registration does with its siblings' events: billing's settlements close visits (closing.py) and
fulfil the appointment that opened one. Each handler runs in the consumer's transaction (kit.feed) and calls
no one."""

import logging
from datetime import datetime
from typing import Any

from sqlmodel import Session

from kit.clock import as_utc
from services.registration import appointments, closing
from services.registration.errors import VisitNotFound

logger = logging.getLogger("patientflow.registration")
BILLING_EVENTS = frozenset({"visit.settled"})


def apply_billing_event(session: Session, event: dict[str, Any]) -> None:
    """Billing's feed: `visit.settled` records the settlement (结算), closes an outpatient or emergency
    visit (`visit.closed`; an inpatient visit closes at its discharge) and fulfils its appointment."""
    if event["type"] != "visit.settled":
        return
    settled_at = as_utc(datetime.fromisoformat(event["occurred_at"]))
    try:
        if not isinstance(event["visit_id"], str):
            raise VisitNotFound("not a visit id")
        closing.settle(session, visit_id=event["visit_id"], settled_at=settled_at)
    except VisitNotFound:
        logger.warning("billing settled visit %s, which registration does not know", event["visit_id"])
        return
    appointments.fulfil(session, visit_id=event["visit_id"], at=settled_at)
