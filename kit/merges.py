"""Merges (身份确认后合并) as a service that keeps a visit's patient sees them.

Registration's `patient.merged` names the visits it moved. A service that writes rows naming the visit's
patient notes each moved visit when it reads the event (`note_merged_visits`), so a write that asked
registration about the visit just *before* the merge still names the survivor (`patient_for_visit`).

On PostgreSQL a per-visit advisory lock orders the two: the writer holds it shared from
`patient_for_visit` until its commit, the merge takes it exclusively. So the merge is applied either
before the write's read (which then sees the note) or after the write commits (and re-points its row).
SQLite serialises writers already.
"""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlmodel import Field, Session, SQLModel

from kit.models import Timestamp

_VISIT_KEY = "hashtext('patientflow.visit.' || current_schema() || '.' || :visit_id)"
VISIT_LOCK = text(f"SELECT pg_advisory_xact_lock({_VISIT_KEY})")
VISIT_LOCK_SHARED = text(f"SELECT pg_advisory_xact_lock_shared({_VISIT_KEY})")


class MergedVisitBase(SQLModel):
    """A visit registration moved to another patient, as read from its feed."""

    visit_id: str = Field(primary_key=True, max_length=36)
    patient_id: str = Field(max_length=36)
    merged_at: datetime = Timestamp()


def _on_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def patient_for_visit(
    session: Session, merged: type[MergedVisitBase], *, visit_id: str, registered: str
) -> str:
    """The patient a new row of the visit names: `registered` (registration's answer, asked before the
    unit of work) unless a merge read since moved the visit. Call it first in the unit of work."""
    if _on_postgresql(session):
        session.execute(VISIT_LOCK_SHARED, {"visit_id": visit_id})
    moved = session.get(merged, visit_id)
    return moved.patient_id if moved is not None else registered


def note_merged_visits(
    session: Session, merged: type[MergedVisitBase], *, visit_ids: Sequence[str], target_id: str
) -> None:
    """Note the visits a merge moved (each under its lock, in one order so two merges never wait on each
    other); the caller then re-points its own rows in the same unit of work."""
    for visit_id in sorted(set(visit_ids)):
        if _on_postgresql(session):
            session.execute(VISIT_LOCK, {"visit_id": visit_id})
        moved = session.get(merged, visit_id) or merged(visit_id=visit_id, patient_id=target_id)
        moved.patient_id = target_id
        session.add(moved)
