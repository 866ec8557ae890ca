"""What registration does with its siblings' events: billing's settlements close visits (and fulfil the
appointment that opened one). Each handler runs in the consumer's transaction (kit.feed) and calls no one."""

import logging
from datetime import datetime
from typing import Any

from sqlmodel import Session

from kit.clock import as_utc
from services.registration import appointments, repository
from services.registration.service import SETTLED

logger = logging.getLogger("patientflow.registration")
BILLING_EVENTS = frozenset({"visit.settled"})


def apply_billing_event(session: Session, event: dict[str, Any]) -> None:
    """Billing's feed: `visit.settled` marks the visit settled (its account is closed, 结算)."""
    if event["type"] != "visit.settled":
        return
    visit = repository.get_visit(session, event["visit_id"]) if isinstance(event["visit_id"], str) else None
    if visit is None:
        logger.warning("billing settled visit %s, which registration does not know", event["visit_id"])
        return
    visit.status, visit.settled_at = SETTLED, as_utc(datetime.fromisoformat(event["occurred_at"]))
    session.add(visit)
    appointments.fulfil(session, visit_id=visit.id, at=visit.settled_at)
