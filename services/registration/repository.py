"""All of registration's SQL."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import RowMapping, bindparam
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select, update

from kit.database import ReadConnection
from services.registration.models import (
    Bed,
    InpatientStay,
    OneTimeCode,
    Patient,
    SessionAttempt,
    SessionLock,
    SlipCode,
    StayMovement,
    Visit,
    Ward,
)


def get_patient(session: Session, patient_id: str) -> Patient | None:
    return session.get(Patient, patient_id)


def find_patient_by_id_number(session: Session, id_number: str) -> Patient | None:
    return session.exec(select(Patient).where(Patient.id_number == id_number)).first()


def get_visit(session: Session, visit_id: str) -> Visit | None:
    return session.get(Visit, visit_id)


_VISIT = Visit.__table__  # type: ignore[attr-defined]
_VISIT_BY_ID = core_select(_VISIT).where(_VISIT.c.id == bindparam("visit_id"))


def read_visit_row(reader: ReadConnection, visit_id: str) -> RowMapping | None:
    """The visit as a row, by SQLAlchemy Core: every sibling's most frequent call, a third of the cost of
    the ORM session's `get`."""
    return reader.execute(_VISIT_BY_ID, {"visit_id": visit_id}).mappings().first()


def list_visits(session: Session, patient_id: str) -> list[Visit]:
    query = select(Visit).where(Visit.patient_id == patient_id).order_by(col(Visit.opened_at))
    return list(session.exec(query).all())


def move_visits(session: Session, *, from_patient_id: str, to_patient_id: str) -> list[str]:
    moved = [v.id for v in list_visits(session, from_patient_id)]
    session.execute(
        update(Visit).where(col(Visit.patient_id) == from_patient_id).values(patient_id=to_patient_id)
    )
    return moved


def find_slip(session: Session, code_digest: str) -> SlipCode | None:
    return session.exec(select(SlipCode).where(SlipCode.code_digest == code_digest)).first()


def revoke_slips(session: Session, *, visit_id: str, now: datetime) -> None:
    """Every live slip of the visit stops working (a reissued slip replaces a lost one)."""
    session.execute(
        update(SlipCode)
        .where(col(SlipCode.visit_id) == visit_id, col(SlipCode.revoked_at).is_(None))
        .values(revoked_at=now)
    )


def latest_one_time_code(session: Session, patient_id: str) -> OneTimeCode | None:
    query = (
        select(OneTimeCode)
        .where(OneTimeCode.patient_id == patient_id)
        .order_by(col(OneTimeCode.id).desc())
        .limit(1)
    )
    return session.exec(query).first()


def spend_one_time_codes(session: Session, *, patient_id: str, now: datetime) -> None:
    """The patient's unspent codes stop working (a new code replaces them; a used one is spent)."""
    session.execute(
        update(OneTimeCode)
        .where(col(OneTimeCode.patient_id) == patient_id, col(OneTimeCode.spent_at).is_(None))
        .values(spent_at=now)
    )


def session_locks(session: Session, keys: Sequence[str]) -> list[SessionLock]:
    """The lock rows for these keys, created if missing, held FOR UPDATE until the transaction ends
    (on PostgreSQL; SQLite writers are serialised already), so concurrent tries count one by one."""
    for key in keys:
        if session.get(SessionLock, key) is None:
            try:
                with session.begin_nested():  # a concurrent first try of the same key wins the insert
                    session.add(SessionLock(key=key))
            except IntegrityError:
                pass
    query = (
        select(SessionLock)
        .where(col(SessionLock.key).in_(keys))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    rows = {row.key: row for row in session.exec(query).all()}
    return [rows[key] for key in keys]


def list_session_attempts(
    session: Session, *, patient_id: str | None, client: str | None, limit: int
) -> Sequence[SessionAttempt]:
    query = select(SessionAttempt).order_by(col(SessionAttempt.id).desc()).limit(limit)
    if patient_id is not None:
        query = query.where(SessionAttempt.patient_id == patient_id)
    if client is not None:
        query = query.where(SessionAttempt.client == client)
    return session.exec(query).all()


# --- inpatient stays and visits that close -----------------------------------------------------------


def get_ward(session: Session, code: str) -> Ward | None:
    return session.get(Ward, code)


def list_wards(session: Session, department: str | None) -> list[Ward]:
    query = select(Ward).order_by(col(Ward.code))
    if department is not None:
        query = query.where(Ward.department == department)
    return list(session.exec(query).all())


def beds_of_wards(session: Session, ward_codes: Sequence[str]) -> list[tuple[Bed, str | None]]:
    """Each bed of these wards with the visit lying in it (None when free), by ward and bed code."""
    query = (
        select(Bed, InpatientStay.visit_id)
        .join(InpatientStay, col(InpatientStay.bed_id) == col(Bed.id), isouter=True)
        .where(col(Bed.ward_code).in_(ward_codes))
        .order_by(col(Bed.ward_code), col(Bed.code))
    )
    return [(bed, visit_id) for bed, visit_id in session.exec(query).all()]


def find_bed(session: Session, *, ward_code: str, bed_code: str) -> Bed | None:
    query = select(Bed).where(Bed.ward_code == ward_code, Bed.code == bed_code)
    return session.exec(query).first()


def get_bed(session: Session, bed_id: int) -> Bed | None:
    return session.get(Bed, bed_id)


def get_stay(session: Session, visit_id: str) -> InpatientStay | None:
    return session.get(InpatientStay, visit_id)


def stay_of_bed(session: Session, bed_id: int) -> InpatientStay | None:
    return session.exec(select(InpatientStay).where(InpatientStay.bed_id == bed_id)).first()


def list_movements(session: Session, visit_id: str) -> list[StayMovement]:
    query = select(StayMovement).where(StayMovement.visit_id == visit_id).order_by(col(StayMovement.id))
    return list(session.exec(query).all())


def visits_due_to_close(
    session: Session, *, outpatient_before: datetime, emergency_before: datetime, payment_modes: Sequence[str]
) -> list[Visit]:
    """Open visits the end-of-day rule closes: outpatient ones opened before `outpatient_before`,
    emergency ones opened before `emergency_before`, never one with a stay, only in `payment_modes`."""
    admitted = select(InpatientStay.visit_id).where(col(InpatientStay.visit_id) == col(Visit.id))
    query = (
        select(Visit)
        .where(
            Visit.status == "open",
            col(Visit.payment_mode).in_(payment_modes),
            (col(Visit.kind) == "outpatient") & (col(Visit.opened_at) < outpatient_before)
            | (col(Visit.kind) == "emergency") & (col(Visit.opened_at) < emergency_before),
            ~admitted.exists(),
        )
        .order_by(col(Visit.opened_at))
        .with_for_update(skip_locked=True)
    )
    return list(session.exec(query).all())


def lock_visit(session: Session, visit_id: str) -> Visit | None:
    """The visit, its row held FOR UPDATE to the end of the transaction (on PostgreSQL; SQLite writers
    are serialised already), so a close, an admission and a settlement of one visit take turns."""
    query = (
        select(Visit).where(Visit.id == visit_id).with_for_update().execution_options(populate_existing=True)
    )
    return session.exec(query).first()
