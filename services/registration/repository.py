"""All of registration's SQL."""

from sqlmodel import Session, col, select, update

from services.registration.models import Patient, Visit


def get_patient(session: Session, patient_id: str) -> Patient | None:
    return session.get(Patient, patient_id)


def find_patient_by_id_number(session: Session, id_number: str) -> Patient | None:
    return session.exec(select(Patient).where(Patient.id_number == id_number)).first()


def get_visit(session: Session, visit_id: str) -> Visit | None:
    return session.get(Visit, visit_id)


def list_visits(session: Session, patient_id: str) -> list[Visit]:
    query = select(Visit).where(Visit.patient_id == patient_id).order_by(col(Visit.opened_at))
    return list(session.exec(query).all())


def move_visits(session: Session, *, from_patient_id: str, to_patient_id: str) -> list[str]:
    moved = [v.id for v in list_visits(session, from_patient_id)]
    session.execute(
        update(Visit).where(col(Visit.patient_id) == from_patient_id).values(patient_id=to_patient_id)
    )
    return moved
