"""All of registration's SQL."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import RowMapping, bindparam
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select, update

from kit.database import ReadConnection
from services.registration.models import (
    OneTimeCode,
    Patient,
    SessionAttempt,
    SessionLock,
    SlipCode,
    Visit,
)


def get_patient(session: Session, patient_id: str) -> Patient | None:
    return session.get(Patient, patient_id)


def find_patient_by_id_number(session: Session, id_number: str) -> Patient | None:
    return session.exec(select(Patient).where(Patient.id_number == id_number)).first()


def find_patient_by_card_number(session: Session, card_number: str) -> Patient | None:
    return session.exec(select(Patient).where(Patient.card_number == card_number)).first()


def search_patients(
    session: Session,
    *,
    id_number: str | None,
    card_number: str | None,
    phone: str | None,
    name_prefix: str | None,
    after: str | None,
    limit: int,
) -> list[Patient]:
    """Patients matching every key given (a name by prefix, `%` and `_` taken literally), by id."""
    query = select(Patient)
    if id_number is not None:
        query = query.where(Patient.id_number == id_number)
    if card_number is not None:
        query = query.where(Patient.card_number == card_number)
    if phone is not None:
        query = query.where(Patient.phone == phone)
    if name_prefix is not None:
        # The pattern is built here, whole, so PostgreSQL can use the prefix index for it.
        escaped = name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(col(Patient.name).like(escaped + "%", escape="\\"))
    if after is not None:
        query = query.where(col(Patient.id) > after)
    return list(session.exec(query.order_by(col(Patient.id)).limit(limit)).all())


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
