"""What triage does with registration's events: a merge (身份确认后合并) re-points assessments and tickets
to the surviving patient. Each handler runs in the consumer's transaction (kit.feed) and calls no one;
applying an event twice changes nothing (kit.feed records it, and re-pointing is idempotent anyway)."""

from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from services.triage import repository

Handler = Callable[[Session, dict[str, Any]], None]


def _apply_merge(session: Session, event: dict[str, Any]) -> None:
    """The merged visits' assessments and tickets, and any left on the merged record, name the survivor."""
    data = event["data"]
    repository.repoint_patient(
        session,
        visit_ids=data.get("visit_ids") or [],
        source_id=data["source_patient_id"],
        target_id=data["target_patient_id"],
    )


REGISTRATION_HANDLERS: dict[str, Handler] = {"patient.merged": _apply_merge}
REGISTRATION_EVENTS = frozenset(REGISTRATION_HANDLERS)


def apply_registration_event(session: Session, event: dict[str, Any]) -> None:
    """Registration's feed handler, dispatching on the event's type (others are not asked for)."""
    handler = REGISTRATION_HANDLERS.get(event["type"])
    if handler is not None:
        handler(session, event)
