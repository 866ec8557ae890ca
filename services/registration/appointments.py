"""Appointments (预约挂号): booking, holds, cancellation, check-in, walk-ins and no-shows.

Two rules are kept by the database, never by reading first and writing after:
- **A slot is never overbooked.** A seat is taken by one conditional UPDATE of the slot's counter
  (`taken = taken + 1 WHERE taken < capacity`, `repository.take_seat`); a check constraint refuses an
  overbooked row whatever the code does. Every release (cancel, lapsed hold, no-show is not one: the
  patient's seat stays spent) gives the seat back in the same unit of work that ends the appointment,
  and only the change that really moved the appointment out of its active state gives it back
  (`repository.move_appointment_if`), so a seat is never returned twice.
- **One active booking per patient and session**: a partial unique index on (session, patient) over
  proposed, booked and arrived appointments; a racing twin loses on it with a 409.

A hold (`proposed`) lapses at `hold_expires_at` by itself: its seat counts as free from then on, the
booking that needs it releases it first, and the sweep (`AppointmentSweep`) releases the rest.
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from kit.auth import visible_to
from kit.clock import as_utc, utcnow
from kit.database import Database
from kit.outbox import record_event
from kit.worker import ThreadWorker
from services.registration import proofs, repository, service
from services.registration.config import RegistrationSettings
from services.registration.errors import (
    AlreadyBooked,
    AppointmentNotFound,
    AppointmentStateConflict,
    BookingClosed,
    BookingRefused,
    CheckInRefused,
    NoSuchSlot,
    SessionFull,
    SessionNotOpen,
    SlotFull,
)
from services.registration.models import Appointment, ClinicSession, OutboxEvent, Patient
from services.registration.schedules import get_clinic_session
from services.registration.schemas import (
    AppointmentAnswer,
    AppointmentCreate,
    AppointmentPublic,
    AppointmentStatus,
    CancelReason,
    Channel,
    PaymentMode,
    VisitCreate,
    VisitKind,
    VisitOpened,
    VisitPublic,
)

logger = logging.getLogger("patientflow.registration")
ACTIVE = (AppointmentStatus.proposed.value, AppointmentStatus.booked.value, AppointmentStatus.arrived.value)
SEATED = (AppointmentStatus.proposed.value, AppointmentStatus.booked.value)  # cancellable, seat not used yet


def to_public(appointment: Appointment, clinic_session: ClinicSession) -> AppointmentPublic:
    return AppointmentPublic.model_validate(
        {
            **appointment.model_dump(),
            "department": clinic_session.department,
            "doctor_id": clinic_session.doctor_id,
            "fee_item": clinic_session.fee_item,
            "fee_fen": clinic_session.fee_fen,
        }
    )


def _booking_data(appointment: Appointment, clinic_session: ClinicSession) -> dict[str, object]:
    return {
        "appointment_id": appointment.id,
        "patient_id": appointment.patient_id,
        "clinic_session_id": clinic_session.id,
        "doctor_id": clinic_session.doctor_id,
        "department": clinic_session.department,
        "slot_starts_at": appointment.slot_starts_at.isoformat(),
        "channel": appointment.channel,
        "fee_item": clinic_session.fee_item,
        "fee_fen": clinic_session.fee_fen,
    }


def _record(session: Session, appointment: Appointment, event_type: str, payload: dict[str, object]) -> None:
    record_event(
        session,
        OutboxEvent,
        event_type=event_type,
        aggregate_type="appointment",
        aggregate_id=appointment.id,
        patient_id=appointment.patient_id,
        visit_id=appointment.visit_id,
        payload=payload,
    )


def _check_booking_hours(clinic_session: ClinicSession, channel: Channel, now: datetime) -> None:
    """Advance channels book between opening and the cut-off; a walk-in until the session ends; the
    doctor's follow-up before the cut-off, even before booking opens to the public."""
    if clinic_session.status != "open":
        raise SessionNotOpen(
            f"The session is {clinic_session.status}; it takes no bookings.",
            session_status=clinic_session.status,
        )
    opens = None if channel is Channel.followup else clinic_session.booking_opens_at
    closes = clinic_session.ends_at if channel is Channel.onsite else clinic_session.booking_closes_at
    if opens is not None and now < opens:
        raise BookingClosed(
            "Booking for this session has not opened yet.", booking_opens_at=opens.isoformat()
        )
    if now >= closes:
        raise BookingClosed("Booking for this session has closed.", booking_closes_at=closes.isoformat())


def release(
    session: Session,
    appointment: Appointment,
    *,
    reason: CancelReason,
    now: datetime,
    from_statuses: Sequence[str] = SEATED,
) -> bool:
    """Cancel the appointment and give its seat back, if it is still in `from_statuses`; False when a
    concurrent change got there first (nothing is done then). Emits `appointment.cancelled`."""
    moved = repository.move_appointment_if(
        session,
        appointment.id,
        from_statuses=from_statuses,
        status=AppointmentStatus.cancelled.value,
        cancel_reason=reason.value,
        cancelled_at=now,
    )
    if not moved:
        return False
    repository.give_back_seat(session, appointment.slot_id)
    _record(
        session,
        appointment,
        "appointment.cancelled",
        {
            "appointment_id": appointment.id,
            "patient_id": appointment.patient_id,
            "clinic_session_id": appointment.clinic_session_id,
            "reason": reason.value,
        },
    )
    return True


def release_lapsed_holds(
    session: Session, *, now: datetime, clinic_session_id: str | None = None, patient_id: str | None = None
) -> int:
    """Release holds past their time (all, one session's, or one patient's): their seats are free again."""
    lapsed = repository.lapsed_holds(
        session, now=now, clinic_session_id=clinic_session_id, patient_id=patient_id
    )
    return sum(
        release(session, hold, reason=CancelReason.hold_expired, now=now, from_statuses=("proposed",))
        for hold in lapsed
    )


def _take_seat(
    session: Session, clinic_session: ClinicSession, slot_starts_at: datetime | None
) -> tuple[int, datetime] | None:
    """A seat of the earliest slot with one left (or of the slot asked for): the conditional update
    decides. A slot others are taking seats of is passed over first (skip locked); only when every
    free slot is being taken do we wait for one, so no seat is refused that a racing booking then
    gives up. A slot filled meanwhile sends us to the next."""
    for _ in range(clinic_session.quota + 1):  # each failed try means a racing booking took a seat
        free = repository.first_free_slot(
            session, clinic_session_id=clinic_session.id, starts_at=slot_starts_at, skip_locked=True
        ) or repository.first_free_slot(
            session, clinic_session_id=clinic_session.id, starts_at=slot_starts_at
        )
        if free is None:
            return None
        slot_id, starts_at = free
        if repository.take_seat(session, slot_id):
            return slot_id, as_utc(starts_at)
    return None


def book(
    session: Session,
    *,
    clinic_session: ClinicSession,
    patient: Patient,
    channel: Channel,
    booked_by: str,
    settings: RegistrationSettings,
    slot_starts_at: datetime | None = None,
    hold: bool = False,
    referring_clinic: str | None = None,
    followup_of_visit_id: str | None = None,
    now: datetime | None = None,
) -> Appointment:
    """Book a seat (or hold it) in the session for the patient: the one way a booking is made.

    Enforces the session's status and booking hours, the quota (slot by slot), one active booking per
    patient and session, and holds (a lapsed one frees its seat). Raises `BookingConflict` subclasses
    (409): `SessionNotOpen`, `BookingClosed`, `AlreadyBooked`, `SlotFull`, `SessionFull`; `NoSuchSlot` (422).
    Emits `appointment.booked`, or `appointment.held` for a hold.
    """
    now = now or utcnow()
    _check_booking_hours(clinic_session, channel, now)
    refuse_when_full(session, clinic_session_id=clinic_session.id, now=now)  # the rush's losers, at once
    release_lapsed_holds(session, now=now, clinic_session_id=clinic_session.id, patient_id=patient.id)
    existing = repository.active_appointment(
        session, clinic_session_id=clinic_session.id, patient_id=patient.id
    )
    if existing is not None:
        raise AlreadyBooked(
            "The patient already holds a booking in this session.", appointment_id=existing.id
        )
    if slot_starts_at is not None and (
        repository.find_slot(session, clinic_session_id=clinic_session.id, starts_at=slot_starts_at) is None
    ):
        raise NoSuchSlot("The session has no slot starting then; see its slots.")
    appointment = Appointment(
        id=str(uuid.uuid4()),
        clinic_session_id=clinic_session.id,
        slot_id=0,
        slot_starts_at=now,
        patient_id=patient.id,
        channel=channel.value,
        status=(AppointmentStatus.proposed if hold else AppointmentStatus.booked).value,
        referring_clinic=referring_clinic,
        followup_of_visit_id=followup_of_visit_id,
        hold_expires_at=now + timedelta(seconds=settings.hold_seconds) if hold else None,
        booked_by=booked_by,
        booked_at=None if hold else now,
        created_at=now,
    )
    try:
        with (
            session.begin_nested()
        ):  # the seat and the row together: a lost race on the index gives the seat back
            seat = _take_seat(session, clinic_session, slot_starts_at)
            if seat is None and release_lapsed_holds(session, now=now, clinic_session_id=clinic_session.id):
                seat = _take_seat(session, clinic_session, slot_starts_at)
            if seat is None:
                if slot_starts_at is not None:
                    raise SlotFull("This slot is fully booked; choose another.")
                raise SessionFull("Every slot of this session is booked.")
            appointment.slot_id, appointment.slot_starts_at = seat
            session.add(appointment)
            session.flush()
    except IntegrityError:
        existing = repository.active_appointment(
            session, clinic_session_id=clinic_session.id, patient_id=patient.id
        )
        raise AlreadyBooked(
            "The patient already holds a booking in this session.",
            appointment_id=existing.id if existing else None,
        ) from None
    data = _booking_data(appointment, clinic_session)
    if hold:
        assert appointment.hold_expires_at is not None
        _record(
            session,
            appointment,
            "appointment.held",
            data | {"hold_expires_at": appointment.hold_expires_at.isoformat()},
        )
    else:
        _record(session, appointment, "appointment.booked", data)
    return appointment


def refuse_when_full(session: Session, *, clinic_session_id: str, now: datetime | None = None) -> None:
    """`SessionFull` when the session has no seat left, read without the writer: at the 8:00 rush the
    many who lose are answered at once instead of queueing for it. Only a hint for the others: `book`
    decides, with the conditional update."""
    if repository.may_have_a_seat(session, clinic_session_id=clinic_session_id, now=now or utcnow()):
        return
    if repository.get_clinic_session(session, clinic_session_id) is not None:  # else `book`'s 404
        raise SessionFull("Every slot of this session is booked.")


def get_appointment(session: Session, *, appointment_id: str, acting_for: str | None = None) -> Appointment:
    """The appointment; acting for another patient, 404 exactly as for one that does not exist."""
    appointment = repository.get_appointment(session, appointment_id)
    if appointment is None or not visible_to(acting_for, appointment.patient_id):
        raise AppointmentNotFound("No such appointment.")
    return appointment


def _followup_visit_checked(session: Session, *, patient: Patient, visit_id: str | None) -> None:
    if visit_id is None:
        return
    visit = repository.get_visit(session, visit_id)
    if visit is None or visit.patient_id != patient.id:
        raise BookingRefused("A follow-up names a visit of the same patient.", slug="followup-visit-mismatch")


def create_appointment(
    session: Session,
    *,
    data: AppointmentCreate,
    booked_by: str,
    acting_for: str | None,
    settings: RegistrationSettings,
    now: datetime | None = None,
) -> AppointmentAnswer:
    """POST /appointments: book (or hold) through `book`; a walk-in (`check_in`) is checked in at once."""
    now = now or utcnow()
    patient = service.get_patient(session, patient_id=data.patient_id, acting_for=acting_for)
    if patient.merged_into_id:
        raise BookingRefused(
            "This patient record was merged; book on the surviving record.",
            merged_into_id=patient.merged_into_id,
        )
    clinic_session = get_clinic_session(session, clinic_session_id=data.clinic_session_id)
    _followup_visit_checked(session, patient=patient, visit_id=data.followup_of_visit_id)
    appointment = book(
        session,
        clinic_session=clinic_session,
        patient=patient,
        channel=data.channel,
        booked_by=booked_by,
        settings=settings,
        slot_starts_at=data.slot_starts_at,
        hold=data.hold,
        referring_clinic=data.referring_clinic,
        followup_of_visit_id=data.followup_of_visit_id,
        now=now,
    )
    if data.check_in:
        return _arrive(
            session, appointment, clinic_session, payment_mode=data.payment_mode, settings=settings, now=now
        )
    return AppointmentAnswer(**to_public(appointment, clinic_session).model_dump())


def confirm_hold(
    session: Session, *, appointment_id: str, acting_for: str | None, now: datetime | None = None
) -> AppointmentPublic:
    """A hold made a booking (the app took the payment), if it has not lapsed. Emits `appointment.booked`."""
    now = now or utcnow()
    appointment = get_appointment(session, appointment_id=appointment_id, acting_for=acting_for)
    clinic_session = get_clinic_session(session, clinic_session_id=appointment.clinic_session_id)
    if appointment.cancel_reason == CancelReason.hold_expired.value:
        raise AppointmentStateConflict("The hold has lapsed; book again.", slug="hold-lapsed")
    if appointment.status != AppointmentStatus.proposed.value:
        raise AppointmentStateConflict(
            f"Only a hold can be confirmed; this appointment is {appointment.status}."
        )
    assert appointment.hold_expires_at is not None
    if appointment.hold_expires_at <= now or not repository.move_appointment_if(
        session,
        appointment.id,
        from_statuses=("proposed",),
        status=AppointmentStatus.booked.value,
        booked_at=now,
    ):
        raise AppointmentStateConflict("The hold has lapsed; book again.", slug="hold-lapsed")
    appointment = get_appointment(session, appointment_id=appointment.id)
    _record(session, appointment, "appointment.booked", _booking_data(appointment, clinic_session))
    return to_public(appointment, clinic_session)


def cancel(
    session: Session,
    *,
    appointment_id: str,
    reason: CancelReason,
    acting_for: str | None,
    settings: RegistrationSettings,
    now: datetime | None = None,
) -> AppointmentPublic:
    """Cancel a hold or a booking: the patient until the cut-off before the slot, the desk until arrival."""
    now = now or utcnow()
    appointment = get_appointment(session, appointment_id=appointment_id, acting_for=acting_for)
    clinic_session = get_clinic_session(session, clinic_session_id=appointment.clinic_session_id)
    if appointment.status not in SEATED:
        raise AppointmentStateConflict(f"This appointment is {appointment.status}; it cannot be cancelled.")
    cutoff = appointment.slot_starts_at - timedelta(minutes=settings.cancel_cutoff_minutes)
    if reason is CancelReason.patient and appointment.status == "booked" and now > cutoff:
        raise AppointmentStateConflict(
            f"A patient may cancel until {settings.cancel_cutoff_minutes} min before the slot; ask the desk.",
            slug="cancel-cutoff-passed",
            cutoff=cutoff.isoformat(),
        )
    if not release(session, appointment, reason=reason, now=now):
        raise AppointmentStateConflict("The appointment changed meanwhile; read it again.")
    return to_public(get_appointment(session, appointment_id=appointment.id), clinic_session)


def check_in(
    session: Session,
    *,
    appointment_id: str,
    acting_for: str | None,
    payment_mode: PaymentMode,
    settings: RegistrationSettings,
    now: datetime | None = None,
) -> AppointmentAnswer:
    """Check in on the day (desk, kiosk or app) within the early/late window around the slot: opens the
    visit and queues the patient (triage reads `appointment.arrived`)."""
    now = now or utcnow()
    appointment = get_appointment(session, appointment_id=appointment_id, acting_for=acting_for)
    clinic_session = get_clinic_session(session, clinic_session_id=appointment.clinic_session_id)
    if appointment.status == AppointmentStatus.proposed.value:
        raise CheckInRefused("A hold is confirmed before check-in.", slug="hold-not-confirmed")
    if appointment.status != AppointmentStatus.booked.value:
        raise CheckInRefused(
            f"This appointment is {appointment.status}; it cannot be checked in.", slug="not-booked"
        )
    if clinic_session.status != "open":
        raise CheckInRefused(f"The session is {clinic_session.status}.", slug="session-not-open")
    opens = appointment.slot_starts_at - timedelta(minutes=settings.checkin_early_minutes)
    closes = appointment.slot_starts_at + timedelta(minutes=settings.checkin_late_minutes)
    if now < opens:
        raise CheckInRefused("Too early to check in.", slug="check-in-too-early", opens_at=opens.isoformat())
    if now > closes:
        raise CheckInRefused(
            "Too late to check in; ask the desk.", slug="check-in-too-late", closed_at=closes.isoformat()
        )
    return _arrive(
        session, appointment, clinic_session, payment_mode=payment_mode, settings=settings, now=now
    )


def _arrive(
    session: Session,
    appointment: Appointment,
    clinic_session: ClinicSession,
    *,
    payment_mode: PaymentMode,
    settings: RegistrationSettings,
    now: datetime,
) -> AppointmentAnswer:
    visit = service.open_visit(
        session,
        data=VisitCreate(
            patient_id=appointment.patient_id,
            kind=VisitKind.outpatient,
            department=clinic_session.department,
            payment_mode=payment_mode,
        ),
        settings=settings,
        fee_item=clinic_session.fee_item,
        appointment_id=appointment.id,
    )
    if not repository.move_appointment_if(
        session,
        appointment.id,
        from_statuses=("booked",),
        status=AppointmentStatus.arrived.value,
        arrived_at=now,
        visit_id=visit.id,
    ):
        raise CheckInRefused("The appointment changed meanwhile; read it again.", slug="not-booked")
    appointment = get_appointment(session, appointment_id=appointment.id)
    _record(
        session,
        appointment,
        "appointment.arrived",
        {
            "appointment_id": appointment.id,
            "visit_id": visit.id,
            "department": clinic_session.department,
            "slot_starts_at": appointment.slot_starts_at.isoformat(),
        },
    )
    code, slip = proofs.issue_slip(session, visit=visit, settings=settings)
    opened = VisitOpened(
        **VisitPublic.model_validate(visit, from_attributes=True).model_dump(),
        slip_code=code,
        slip_expires_at=slip.expires_at,
    )
    return AppointmentAnswer(**to_public(appointment, clinic_session).model_dump(), visit=opened)


def fulfil(session: Session, *, visit_id: str, at: datetime) -> None:
    """The appointment that opened this visit is fulfilled once the visit is settled (its bill paid).
    Emits `appointment.fulfilled`."""
    appointment = repository.appointment_of_visit(session, visit_id)
    if appointment is None or not repository.move_appointment_if(
        session, appointment.id, from_statuses=("arrived",), status=AppointmentStatus.fulfilled.value
    ):
        return
    _record(
        session,
        appointment,
        "appointment.fulfilled",
        {"appointment_id": appointment.id, "visit_id": visit_id, "fulfilled_at": at.isoformat()},
    )


def mark_noshows(session: Session, *, settings: RegistrationSettings, now: datetime | None = None) -> int:
    """Booked appointments still not checked in `noshow_grace_minutes` after their slot: no-shows.

    The seat stays spent (the slot is past). Emits `appointment.noshow` for each.
    """
    now = now or utcnow()
    overdue = repository.overdue_bookings(
        session, slot_before=now - timedelta(minutes=settings.noshow_grace_minutes)
    )
    marked = 0
    for appointment in overdue:
        if repository.move_appointment_if(
            session,
            appointment.id,
            from_statuses=("booked",),
            status=AppointmentStatus.noshow.value,
            noshow_at=now,
        ):
            marked += 1
            _record(
                session,
                appointment,
                "appointment.noshow",
                {
                    "appointment_id": appointment.id,
                    "patient_id": appointment.patient_id,
                    "clinic_session_id": appointment.clinic_session_id,
                    "slot_starts_at": appointment.slot_starts_at.isoformat(),
                },
            )
    return marked


def sweep(
    session: Session, *, settings: RegistrationSettings, now: datetime | None = None
) -> tuple[int, int]:
    """One pass of the background job: lapsed holds released, no-shows marked (counts of each)."""
    now = now or utcnow()
    return release_lapsed_holds(session, now=now), mark_noshows(session, settings=settings, now=now)


class AppointmentSweep(ThreadWorker):
    """Runs `sweep` every `appointment_sweep_seconds` for the app's lifetime (kit.worker)."""

    def __init__(self, database: Database, settings: RegistrationSettings) -> None:
        super().__init__("appointment-sweep")
        self.database, self.settings = database, settings

    def run(self) -> None:
        interval = self.settings.appointment_sweep_seconds
        while not self.stopping.wait(interval):
            try:
                with self.database.session() as session:
                    sweep(session, settings=self.settings)
            except Exception:  # a failed pass is retried at the next; the loop never dies
                logger.exception("appointment sweep failed")
