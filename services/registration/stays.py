"""Inpatient stays (住院): wards and beds, admission (入院), transfers (转科 / 转床) and discharge (出院).

An admission changes the visit in place rather than opening a second one: the outpatient or emergency
visit becomes `inpatient`, keeping its id, its payment mode (a green channel stays a green channel) and
so its one billing account, journey and event stream — the emergency charges are settled with the stay
at discharge. The stay (`InpatientStay`) records where the patient came from and lies now; every step is
a `StayMovement` row. One patient per bed is kept by the database (a unique bed column), not by a check
that two racing requests could both pass. Discharge frees the bed, closes the visit and emits
`visit.discharged`, from which billing marks the account for discharge settlement (出院结算).
"""

from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from kit.clock import as_utc, hospital_date
from kit.outbox import record_event
from services.registration import repository
from services.registration.config import RegistrationSettings
from services.registration.errors import (
    AdmissionRefused,
    BedOccupied,
    DuplicateWard,
    NotAdmitted,
    StayNotFound,
    UnknownBed,
    VisitClosed,
    VisitNotFound,
    WardNotFound,
)
from services.registration.models import Bed, InpatientStay, OutboxEvent, StayMovement, Visit, Ward
from services.registration.schemas import (
    AdmissionCreate,
    BedChoice,
    BedClass,
    BedCreate,
    BedPublic,
    DischargeCreate,
    MovementKind,
    MovementPublic,
    StayPublic,
    TransferCreate,
    VisitKind,
    WardCreate,
    WardPublic,
)

OPEN, CLOSED = "open", "closed"
DISCHARGED = "discharged"


# --- wards and beds ----------------------------------------------------------------------------------


def create_ward(session: Session, *, data: WardCreate) -> WardPublic:
    """A ward with its beds; a ward code already taken, or a bed code twice, is a 409."""
    if repository.get_ward(session, data.code) is not None:
        raise DuplicateWard(f"Ward {data.code} already exists.", ward=data.code)
    codes = [bed.code for bed in data.beds]
    if len(set(codes)) != len(codes):
        raise DuplicateWard("Each bed of a ward needs its own code.", ward=data.code)
    try:
        with session.begin_nested():  # a concurrent twin loses on the primary key, not with a 500
            session.add(Ward(code=data.code, department=data.department, name=data.name))
            session.flush()
            session.add_all(
                [Bed(ward_code=data.code, code=b.code, bed_class=b.bed_class.value) for b in data.beds]
            )
    except IntegrityError:
        raise DuplicateWard(f"Ward {data.code} already exists.", ward=data.code) from None
    return ward_view(session, ward_code=data.code)


def add_bed(session: Session, *, ward_code: str, data: BedCreate) -> WardPublic:
    """One more bed in a ward; its code must be new in the ward (409)."""
    if repository.get_ward(session, ward_code) is None:
        raise WardNotFound("No such ward.")
    try:
        with session.begin_nested():
            session.add(Bed(ward_code=ward_code, code=data.code, bed_class=data.bed_class.value))
    except IntegrityError:
        raise DuplicateWard(f"Ward {ward_code} already has a bed {data.code}.", ward=ward_code) from None
    return ward_view(session, ward_code=ward_code)


def list_wards(session: Session, *, department: str | None) -> list[WardPublic]:
    wards = repository.list_wards(session, department)
    beds = repository.beds_of_wards(session, [w.code for w in wards])
    return [
        _ward_public(ward, [(bed, visit) for bed, visit in beds if bed.ward_code == ward.code])
        for ward in wards
    ]


def ward_view(session: Session, *, ward_code: str) -> WardPublic:
    ward = repository.get_ward(session, ward_code)
    if ward is None:
        raise WardNotFound("No such ward.")
    return _ward_public(ward, repository.beds_of_wards(session, [ward_code]))


def _ward_public(ward: Ward, beds: list[tuple[Bed, str | None]]) -> WardPublic:
    shown = [
        BedPublic(code=b.code, bed_class=BedClass(b.bed_class), occupied_by_visit_id=visit)
        for b, visit in beds
    ]
    return WardPublic(
        code=ward.code,
        department=ward.department,
        name=ward.name,
        beds=shown,
        free_beds=sum(1 for bed in shown if bed.occupied_by_visit_id is None),
    )


def _chosen_bed(session: Session, choice: BedChoice) -> tuple[Ward, Bed]:
    ward = repository.get_ward(session, choice.ward)
    bed = repository.find_bed(session, ward_code=choice.ward, bed_code=choice.bed) if ward else None
    if ward is None or bed is None:
        raise UnknownBed(f"Ward {choice.ward} has no bed {choice.bed}.", ward=choice.ward, bed=choice.bed)
    return ward, bed


def _occupied(bed: Bed, ward: Ward) -> BedOccupied:
    return BedOccupied(f"Bed {bed.code} of ward {ward.code} is taken.", ward=ward.code, bed=bed.code)


def _place(session: Session, stay: InpatientStay, *, ward: Ward, bed: Bed) -> None:
    """Put the stay in the bed; the unique bed column refuses a bed someone else lies in, even one taken
    by a transaction committed a moment ago (BedOccupied, 409, the stay unchanged)."""
    if (
        holder := repository.stay_of_bed(session, bed.id or 0)
    ) is not None and holder.visit_id != stay.visit_id:
        raise _occupied(bed, ward)
    try:
        with session.begin_nested():
            stay.bed_id, stay.ward_code, stay.department = bed.id, ward.code, ward.department
            session.add(stay)
            session.flush()
    except IntegrityError:
        if repository.stay_of_bed(session, bed.id or 0) is None:
            raise  # not the bed: a bug to see, not a 409 to hide it behind
        raise _occupied(bed, ward) from None  # a racing admission or transfer took it first


# --- the visit's state ---------------------------------------------------------------------------------


def locked_visit(session: Session, visit_id: str) -> Visit:
    visit = repository.lock_visit(session, visit_id)
    if visit is None:
        raise VisitNotFound("No such visit.")
    return visit


def refuse_if_closed(visit: Visit) -> None:
    if visit.status == CLOSED:
        raise VisitClosed(
            f"Visit {visit.id} is closed ({visit.close_reason}); it takes no new work.",
            visit_id=visit.id,
            close_reason=visit.close_reason,
        )


def _admission_window_check(visit: Visit, *, now: datetime, settings: RegistrationSettings) -> None:
    """An emergency (observation) patient is admitted within the window from the emergency visit."""
    if visit.kind != VisitKind.emergency:
        return
    window = timedelta(hours=settings.emergency_admission_hours)
    waited = now - as_utc(visit.opened_at)
    if waited > window:
        hours = round(waited.total_seconds() / 3600, 1)
        raise AdmissionRefused(
            f"Emergency patients are admitted within {settings.emergency_admission_hours:g} hours of their "
            f"emergency visit; visit {visit.id} opened {hours} hours ago. Open a new visit to admit.",
            slug="admission-window-passed",
            visit_id=visit.id,
            admission_hours=settings.emergency_admission_hours,
        )


def _record(session: Session, visit: Visit, event_type: str, payload: dict[str, object]) -> None:
    record_event(
        session,
        OutboxEvent,
        event_type=event_type,
        aggregate_type="visit",
        aggregate_id=visit.id,
        visit_id=visit.id,
        patient_id=visit.patient_id,
        payload=payload,
    )


def record_visit_event(session: Session, visit: Visit, event_type: str, payload: dict[str, object]) -> None:
    """A visit event in the unit of work (also for green_channel.py)."""
    _record(session, visit, event_type, payload)


def _movement(
    stay: InpatientStay, *, kind: str, ward: Ward, bed: Bed, note: str | None, by: str, now: datetime
) -> StayMovement:
    return StayMovement(
        visit_id=stay.visit_id,
        kind=kind,
        department=ward.department,
        ward_code=ward.code,
        bed_code=bed.code,
        bed_class=bed.bed_class,
        note=note,
        recorded_by=by,
        at=now,
    )


# --- admission, transfer, discharge --------------------------------------------------------------------


def admit(
    session: Session,
    *,
    visit_id: str,
    data: AdmissionCreate,
    recorded_by: str,
    now: datetime,
    settings: RegistrationSettings,
) -> StayPublic:
    """Admit an open visit to a bed: the visit becomes inpatient in place, its payment mode carried over.

    409 when the visit is closed, already admitted, an emergency visit past its admission window, or the
    bed is taken; 422 for a ward or bed that does not exist. Emits `visit.admitted`.
    """
    visit = locked_visit(session, visit_id)
    refuse_if_closed(visit)
    if repository.get_stay(session, visit.id) is not None:
        raise AdmissionRefused(
            f"Visit {visit.id} was already admitted.", slug="already-admitted", visit_id=visit.id
        )
    _admission_window_check(visit, now=now, settings=settings)
    ward, bed = _chosen_bed(session, data)
    stay = InpatientStay(
        visit_id=visit.id,
        admitted_from=visit.kind,
        department=ward.department,
        ward_code=ward.code,
        admitted_at=now,
    )
    _place(session, stay, ward=ward, bed=bed)
    admitted_from = visit.kind
    visit.kind, visit.department = VisitKind.inpatient.value, ward.department
    session.add(visit)
    session.add(
        _movement(stay, kind="admission", ward=ward, bed=bed, note=data.note, by=recorded_by, now=now)
    )
    _record(
        session,
        visit,
        "visit.admitted",
        {
            "admitted_from": admitted_from,
            "department": ward.department,
            "ward": ward.code,
            "bed": bed.code,
            "bed_class": bed.bed_class,
            "payment_mode": visit.payment_mode,
        },
    )
    session.flush()
    return stay_view(session, visit_id=visit.id)


def _current_stay(session: Session, visit: Visit) -> tuple[InpatientStay, Ward, Bed]:
    refuse_if_closed(visit)
    stay = repository.get_stay(session, visit.id)
    if stay is None or stay.discharged_at is not None or stay.bed_id is None:
        raise NotAdmitted(f"Visit {visit.id} has no stay in hospital; admit it first.", visit_id=visit.id)
    ward, bed = repository.get_ward(session, stay.ward_code), repository.get_bed(session, stay.bed_id)
    assert ward is not None and bed is not None  # foreign keys
    return stay, ward, bed


def transfer(
    session: Session, *, visit_id: str, data: TransferCreate, recorded_by: str, now: datetime
) -> StayPublic:
    """Move an admitted patient to another bed, of this department or another, with the handover note.

    409 when the visit is not admitted (or closed), the bed is the patient's own or taken. Emits
    `visit.transferred`; the visit's department becomes the new ward's.
    """
    visit = locked_visit(session, visit_id)
    stay, from_ward, from_bed = _current_stay(session, visit)
    ward, bed = _chosen_bed(session, data)
    if bed.id == from_bed.id:
        raise BedOccupied(
            f"Visit {visit.id} already lies in bed {bed.code} of ward {ward.code}.",
            slug="same-bed",
            visit_id=visit.id,
        )
    _place(session, stay, ward=ward, bed=bed)
    visit.department = ward.department
    session.add(visit)
    movement = _movement(stay, kind="transfer", ward=ward, bed=bed, note=data.note, by=recorded_by, now=now)
    movement.from_department, movement.from_ward_code, movement.from_bed_code = (
        from_ward.department,
        from_ward.code,
        from_bed.code,
    )
    session.add(movement)
    _record(
        session,
        visit,
        "visit.transferred",
        {
            "from_department": from_ward.department,
            "from_ward": from_ward.code,
            "from_bed": from_bed.code,
            "department": ward.department,
            "ward": ward.code,
            "bed": bed.code,
            "bed_class": bed.bed_class,
            "note": data.note,
        },
    )
    session.flush()
    return stay_view(session, visit_id=visit.id)


def length_of_stay_days(admitted_at: datetime, discharged_at: datetime) -> int:
    """Hospital days (住院天数): discharge day minus admission day, at least one."""
    return max(1, (hospital_date(discharged_at) - hospital_date(admitted_at)).days)


def discharge(
    session: Session, *, visit_id: str, data: DischargeCreate, recorded_by: str, now: datetime
) -> StayPublic:
    """Discharge the patient: the bed is freed, the visit closed (`discharged`), billing asked for the
    discharge settlement through `visit.discharged`. Emits `visit.discharged` and `visit.closed`."""
    visit = locked_visit(session, visit_id)
    stay, ward, bed = _current_stay(session, visit)
    stay.bed_id, stay.discharged_at = None, now
    session.add(stay)
    session.add(
        _movement(stay, kind="discharge", ward=ward, bed=bed, note=data.note, by=recorded_by, now=now)
    )
    days = length_of_stay_days(as_utc(stay.admitted_at), now)
    _record(
        session,
        visit,
        "visit.discharged",
        {
            "department": ward.department,
            "ward": ward.code,
            "bed": bed.code,
            "admitted_at": as_utc(stay.admitted_at).isoformat(),
            "length_of_stay_days": days,
            "payment_mode": visit.payment_mode,
        },
    )
    close(session, visit, reason=DISCHARGED, now=now)
    session.flush()
    return stay_view(session, visit_id=visit.id)


def close(session: Session, visit: Visit, *, reason: str, now: datetime) -> None:
    """Close an open (or mid-stay settled) visit for good and emit `visit.closed`."""
    visit.status, visit.closed_at, visit.close_reason = CLOSED, now, reason
    session.add(visit)
    _record(session, visit, "visit.closed", {"reason": reason, "kind": visit.kind})


# --- the stay as the API shows it --------------------------------------------------------------------


def stay_view(session: Session, *, visit_id: str) -> StayPublic:
    stay = repository.get_stay(session, visit_id)
    visit = repository.get_visit(session, visit_id)
    if stay is None or visit is None:
        raise StayNotFound("This visit has no inpatient stay.")
    movements = repository.list_movements(session, visit_id)
    bed = repository.get_bed(session, stay.bed_id) if stay.bed_id is not None else None
    discharged_at = as_utc(stay.discharged_at) if stay.discharged_at else None
    return StayPublic(
        visit_id=stay.visit_id,
        patient_id=visit.patient_id,
        admitted_from=VisitKind(stay.admitted_from),
        admitted_at=as_utc(stay.admitted_at),
        discharged_at=discharged_at,
        department=stay.department,
        ward=stay.ward_code,
        bed=bed.code if bed else None,
        bed_class=BedClass(bed.bed_class) if bed else None,
        length_of_stay_days=length_of_stay_days(as_utc(stay.admitted_at), discharged_at)
        if discharged_at
        else None,
        movements=[
            MovementPublic(
                kind=MovementKind(m.kind),
                at=as_utc(m.at),
                department=m.department,
                ward=m.ward_code,
                bed=m.bed_code,
                bed_class=BedClass(m.bed_class),
                from_department=m.from_department,
                from_ward=m.from_ward_code,
                from_bed=m.from_bed_code,
                note=m.note,
                recorded_by=m.recorded_by,
            )
            for m in movements
        ],
    )
