"""Critical values (危急值): raised with the report that holds them and sent to the ordering department at
once (`report.critical`), acknowledged by a clinician (`critical.acknowledged`), escalated once when
nobody has acknowledged them in time (`critical.escalated`, by `escalation.CriticalEscalator`).

Exactly once, per value: a value is a row unique by (report, observation code), so a report posted
again raises nothing twice; the escalation loop takes rows still unescalated under a row lock
(`SKIP LOCKED`, so two loops never take the same row) and marks them in the same transaction as the event.
"""

import uuid
from datetime import datetime, timedelta

from sqlmodel import Session

from kit.clock import utcnow
from services.results import repository
from services.results.errors import CriticalAlreadyAcknowledged, CriticalValueNotFound
from services.results.models import CriticalValue, LabOrder, Report
from services.results.schemas import (
    CriticalAcknowledgement,
    CriticalStatus,
    CriticalValuePublic,
    Flag,
    ReportContent,
)
from services.results.service import SUBJECT_MAX_LENGTH, _record

WHOLE_REPORT = ""  # the observation code of a report flagged critical as a whole


def _values_of(data: ReportContent) -> list[tuple[str, str | None, str | None]]:
    """(code, value, unit) of each critical observation; the whole report when only it is flagged."""
    flagged = [(o.code, o.value, o.unit) for o in data.observations if o.flag is Flag.critical]
    if not flagged and data.critical:
        return [(WHOLE_REPORT, None, None)]
    return list(dict.fromkeys(flagged))


def raise_critical_values(
    session: Session, *, order: LabOrder, report: Report, data: ReportContent, now: datetime
) -> list[CriticalValue]:
    """Record the report's new critical values and send `report.critical` to the ordering department,
    once per report change that brings any; values already raised for this report are not raised again."""
    known = {value.observation_code for value in repository.critical_values_of_report(session, report.id)}
    raised = [
        CriticalValue(
            id=str(uuid.uuid4()),
            report_id=report.id,
            order_id=order.id,
            visit_id=order.visit_id,
            patient_id=order.patient_id,
            department=order.department,
            test_code=order.test_code,
            observation_code=code,
            value=value,
            unit=unit,
            raised_at=now,
        )
        for code, value, unit in _values_of(data)
        if code not in known
    ]
    if not raised:
        return []
    session.add_all(raised)
    # The note stays out of the event: events carry references, and a note may name people.
    payload = {
        "report_id": report.id,
        "department": order.department,
        "critical_value_ids": [value.id for value in raised],
    }
    _record(session, order, "report.critical", payload)
    return raised


def _value_payload(value: CriticalValue) -> dict[str, object]:
    return {
        "critical_value_id": value.id,
        "report_id": value.report_id,
        "department": value.department,
        "observation_code": value.observation_code or None,
    }


def _order_of(session: Session, value: CriticalValue) -> LabOrder:
    order = repository.get_order(session, value.order_id)
    assert order is not None  # orders are never deleted
    return order


def acknowledge(
    session: Session, *, critical_id: str, data: CriticalAcknowledgement, client: str
) -> CriticalValue:
    """A clinician acknowledges the value (危急值接收确认): once; 409 after that."""
    value = repository.get_critical_value(session, critical_id, for_update=True)
    if value is None:
        raise CriticalValueNotFound("No such critical value.")
    if value.acknowledged_at is not None:
        raise CriticalAlreadyAcknowledged(f"Acknowledged at {value.acknowledged_at.isoformat()}.")
    value.acknowledged_at = utcnow()
    value.acknowledged_by = data.acknowledged_by
    value.acknowledged_client = client[:SUBJECT_MAX_LENGTH]
    value.acknowledgement_note = data.note
    session.add(value)
    payload = _value_payload(value) | {
        "escalated": value.escalated_at is not None,
        "minutes_to_acknowledge": round((value.acknowledged_at - value.raised_at).total_seconds() / 60, 1),
    }
    _record(session, _order_of(session, value), "critical.acknowledged", payload)
    return value


def escalate_overdue(session: Session, *, now: datetime, after: timedelta) -> list[str]:
    """Escalate each value nobody acknowledged within `after` (`critical.escalated`, once per value);
    the ids of the values escalated."""
    escalated = []
    for value in repository.escalation_candidates(session, raised_before=now - after):
        value.escalated_at = now
        session.add(value)
        payload = _value_payload(value) | {
            "raised_at": value.raised_at.isoformat(),
            "waited_minutes": round((now - value.raised_at).total_seconds() / 60, 1),
        }
        _record(session, _order_of(session, value), "critical.escalated", payload)
        escalated.append(value.id)
    return escalated


def list_values(
    session: Session, *, status: CriticalStatus, department: str | None, limit: int
) -> list[CriticalValue]:
    acknowledged = {CriticalStatus.pending: False, CriticalStatus.acknowledged: True}.get(status)
    return repository.list_critical_values(
        session, acknowledged=acknowledged, department=department, limit=limit
    )


def critical_public(value: CriticalValue) -> CriticalValuePublic:
    public = CriticalValuePublic.model_validate(value, from_attributes=True)
    return public.model_copy(update={"observation_code": value.observation_code or None})
