"""Disrupted sessions (预约门诊变更、暂停、取消): a clinic session changed, suspended, resumed or cancelled
with a reason, every affected appointment listed, one `appointment.disrupted` per affected patient (the
event hub carries it to SMS and the app), and for a cancellation or suspension a rebooking offer each.

**Nobody is left booked on a cancelled session.** The cancellation locks the session's slots before it
lists the holds and bookings, cancels every one of them (`reason: session_cancelled`, through the same
`appointments.release` as any cancellation, so billing refunds the paid fees) and leaves no free seat
(`repository.close_seats`), all in one unit of work. A booking that took its seat first has committed
before the slots are locked, so it is listed and cancelled; one that comes after waits for the lock,
then finds no seat (409). A booking that read the session as open a moment before is refused either way.

Accepting an offer books through `appointments.book`, the one way a booking is made, so the quota, one
booking per patient and session and the booking hours hold for a rebooking as for any other.
"""

import uuid
from datetime import datetime, timedelta

from sqlmodel import Session

from kit.auth import visible_to
from kit.clock import hospital_date, utcnow
from kit.outbox import record_event
from services.registration import repository, service
from services.registration.appointments import SEATED, book, release, release_lapsed_holds, to_public
from services.registration.config import RegistrationSettings
from services.registration.errors import (
    ClinicSessionNotFound,
    DisruptionInvalid,
    DisruptionRefused,
    RebookingOfferClosed,
    RebookingOfferNotFound,
)
from services.registration.models import (
    Appointment,
    ClinicSession,
    DisruptedAppointment,
    Doctor,
    OutboxEvent,
    RebookingOffer,
    SessionDisruption,
    SessionSlot,
)
from services.registration.schedules import fee_of
from services.registration.schemas import (
    AffectedAppointment,
    AppointmentStatus,
    CancelReason,
    Channel,
    DisruptionAction,
    DisruptionCategory,
    DisruptionCreate,
    DisruptionPublic,
    OfferDecisionAnswer,
    OfferStatus,
    RebookingOfferPublic,
    SessionStatus,
)

# The session's status each action needs, and the one it leaves.
ALLOWED_FROM = {
    DisruptionAction.change: (SessionStatus.open, SessionStatus.suspended),
    DisruptionAction.suspend: (SessionStatus.open,),
    DisruptionAction.resume: (SessionStatus.suspended,),
    DisruptionAction.cancel: (SessionStatus.open, SessionStatus.suspended),
}
LEAVES = {
    DisruptionAction.suspend: SessionStatus.suspended,
    DisruptionAction.resume: SessionStatus.open,
    DisruptionAction.cancel: SessionStatus.cancelled,
}
OFFERING = (DisruptionAction.cancel, DisruptionAction.suspend)


def disrupt_session(
    session: Session,
    *,
    clinic_session_id: str,
    data: DisruptionCreate,
    created_by: str,
    settings: RegistrationSettings,
    now: datetime | None = None,
) -> DisruptionPublic:
    """Change, suspend, resume or cancel the session; list, notify and (cancel, suspend) offer each
    affected patient a rebooking. A cancellation cancels every hold and booking not yet checked in."""
    now = now or utcnow()
    clinic_session = repository.lock_clinic_session(session, clinic_session_id)
    if clinic_session is None:
        raise ClinicSessionNotFound("No such clinic session.")
    if clinic_session.status not in ALLOWED_FROM[data.action]:
        raise DisruptionRefused(
            f"The session is {clinic_session.status}; it cannot be {data.action.value}d.",
            session_status=clinic_session.status,
        )
    substitute = _substitute(session, clinic_session, data.substitute_doctor_id)
    requested = _requested_session(session, clinic_session, data.offered_session_id)
    slots = repository.lock_slots(session, clinic_session.id)
    release_lapsed_holds(session, now=now, clinic_session_id=clinic_session.id)  # not theirs to be told
    affected = repository.seated_appointments(session, clinic_session.id)
    disruption = SessionDisruption(
        id=_new_id(),
        clinic_session_id=clinic_session.id,
        action=data.action.value,
        category=data.category.value,
        reason=data.reason,
        substitute_doctor_id=substitute.id if substitute else None,
        offered_session_id=requested.id if requested else None,
        created_by=created_by,
        created_at=now,
    )
    if data.action is DisruptionAction.change:
        if data.starts_at is not None:
            _move(session, clinic_session, slots, starts_at=data.starts_at, ends_at=data.ends_at)
            disruption.starts_at, disruption.ends_at = clinic_session.starts_at, clinic_session.ends_at
        if substitute is not None:  # new bookings pay the substitute's fee; booked ones keep theirs
            clinic_session.doctor_id = substitute.id
            clinic_session.fee_item, clinic_session.fee_fen = fee_of(substitute, settings)
    else:
        clinic_session.status = LEAVES[data.action].value
    clinic_session.status_reason = f"{data.category.value}: {data.reason}"[:200]
    session.add_all([clinic_session, disruption])
    session.flush()
    outcome = "kept"
    if data.action is DisruptionAction.cancel:
        outcome = "cancelled"
        for appointment in affected:
            release(session, appointment, reason=CancelReason.session_cancelled, now=now)
        repository.close_seats(session, clinic_session.id)
    offers = _offer(session, disruption, affected, clinic_session, substitute, requested, settings, now)
    session.add_all(
        DisruptedAppointment(
            disruption_id=disruption.id,
            appointment_id=appointment.id,
            patient_id=appointment.patient_id,
            outcome=outcome,
        )
        for appointment in affected
    )
    session.flush()
    _notify(session, disruption, clinic_session, affected, offers)
    return disruption_view(session, disruption, clinic_session=clinic_session, now=now)


def _new_id() -> str:
    return str(uuid.uuid4())


def _substitute(session: Session, clinic_session: ClinicSession, doctor_id: str | None) -> Doctor | None:
    if doctor_id is None:
        return None
    doctor = repository.get_doctor(session, doctor_id)
    if doctor is None or doctor.department != clinic_session.department:
        raise DisruptionInvalid("The substitute must be a doctor of the session's department.")
    if doctor.id == clinic_session.doctor_id:
        raise DisruptionInvalid("The substitute is the session's own doctor.")
    return doctor


def _requested_session(
    session: Session, clinic_session: ClinicSession, offered_session_id: str | None
) -> ClinicSession | None:
    if offered_session_id is None:
        return None
    offered = repository.get_clinic_session(session, offered_session_id)
    if offered is None or offered.id == clinic_session.id or offered.status != SessionStatus.open.value:
        raise DisruptionInvalid("The offered session must be another open session.")
    return offered


def _move(
    session: Session,
    clinic_session: ClinicSession,
    slots: list[SessionSlot],
    *,
    starts_at: datetime,
    ends_at: datetime | None,
) -> None:
    """New times on the same day: every slot, and the bookings in it, shift with the start."""
    delta = starts_at - clinic_session.starts_at
    new_ends = ends_at or clinic_session.ends_at + delta
    if hospital_date(starts_at) != clinic_session.date:
        raise DisruptionInvalid("A change keeps the session's day; cancel it and offer another day instead.")
    last_end = max((s.starts_at for s in slots), default=clinic_session.starts_at) + delta
    if last_end + timedelta(minutes=clinic_session.slot_minutes) > new_ends:
        raise DisruptionInvalid("The new times leave no room for every slot of the session.")
    # Slot start times are unique per session: move the ones leading the shift first.
    for slot in sorted(slots, key=lambda s: s.starts_at, reverse=delta > timedelta(0)):
        slot.starts_at += delta
        session.add(slot)
        session.flush()
    for appointment in repository.appointments_of_slots(session, [s.id for s in slots if s.id is not None]):
        appointment.slot_starts_at += delta
        session.add(appointment)
    clinic_session.starts_at, clinic_session.ends_at = starts_at, new_ends
    clinic_session.booking_closes_at += delta


def _offer(
    session: Session,
    disruption: SessionDisruption,
    affected: list[Appointment],
    clinic_session: ClinicSession,
    substitute: Doctor | None,
    requested: ClinicSession | None,
    settings: RegistrationSettings,
    now: datetime,
) -> dict[str, RebookingOffer]:
    """One offer per affected appointment (cancel, suspend): the session asked for, else the
    substitute's or the same doctor's next with room, else one of the department and period; a patient
    already booked in that session is offered the next one found without them."""
    if DisruptionAction(disruption.action) not in OFFERING or not affected:
        return {}
    shared = requested or _session_with_room(session, clinic_session, substitute, now)
    booked_there = (
        repository.patients_booked_in(session, shared.id, [a.patient_id for a in affected])
        if shared is not None and requested is None
        else set()
    )
    for earlier in repository.open_offers_of(session, [a.id for a in affected]):
        earlier.status = OfferStatus.superseded.value
        session.add(earlier)
    offers = {}
    for appointment in affected:
        target = shared
        if appointment.patient_id in booked_there:
            target = _session_with_room(session, clinic_session, substitute, now, appointment.patient_id)
        expires_at = now + timedelta(hours=settings.rebooking_offer_hours)
        offers[appointment.id] = RebookingOffer(
            id=_new_id(),
            disruption_id=disruption.id,
            appointment_id=appointment.id,
            patient_id=appointment.patient_id,
            clinic_session_id=target.id if target else None,
            expires_at=min(expires_at, target.booking_closes_at) if target else expires_at,
            created_at=now,
        )
    session.add_all(offers.values())
    return offers


def _session_with_room(
    session: Session,
    clinic_session: ClinicSession,
    substitute: Doctor | None,
    now: datetime,
    patient_id: str | None = None,
) -> ClinicSession | None:
    """The next open session with room, bookable now (and not one `patient_id` is booked in already)."""
    for doctor_id in (substitute.id if substitute else None, clinic_session.doctor_id):
        if doctor_id is not None:
            found = repository.next_session_with_room(
                session,
                now=now,
                after=now,
                excluding=clinic_session.id,
                doctor_id=doctor_id,
                without_patient=patient_id,
            )
            if found is not None:
                return found
    return repository.next_session_with_room(
        session,
        now=now,
        after=now,
        excluding=clinic_session.id,
        department=clinic_session.department,
        period=clinic_session.period,
        without_patient=patient_id,
    )


def _notify(
    session: Session,
    disruption: SessionDisruption,
    clinic_session: ClinicSession,
    affected: list[Appointment],
    offers: dict[str, RebookingOffer],
) -> None:
    """The session's own event, and one `appointment.disrupted` per affected patient."""
    action = DisruptionAction(disruption.action)
    record_event(
        session,
        OutboxEvent,
        event_type=(
            "session.cancelled"
            if action is DisruptionAction.cancel
            else "session.suspended"
            if action is DisruptionAction.suspend
            else "session.resumed"
            if action is DisruptionAction.resume
            else "session.changed"
        ),
        aggregate_type="clinic_session",
        aggregate_id=clinic_session.id,
        payload={
            "clinic_session_id": clinic_session.id,
            "disruption_id": disruption.id,
            "category": disruption.category,
            "reason": disruption.reason,
            "status": clinic_session.status,
            "doctor_id": clinic_session.doctor_id,
            "department": clinic_session.department,
            "starts_at": clinic_session.starts_at.isoformat(),
            "ends_at": clinic_session.ends_at.isoformat(),
            "affected_appointments": len(affected),
        },
    )
    offered = repository.sessions_by_id(
        session, sorted({o.clinic_session_id for o in offers.values() if o.clinic_session_id})
    )
    for appointment in affected:
        offer = offers.get(appointment.id)
        target = offered.get(offer.clinic_session_id) if offer and offer.clinic_session_id else None
        record_event(
            session,
            OutboxEvent,
            event_type="appointment.disrupted",
            aggregate_type="appointment",
            aggregate_id=appointment.id,
            patient_id=appointment.patient_id,
            visit_id=appointment.visit_id,
            payload={
                "appointment_id": appointment.id,
                "clinic_session_id": clinic_session.id,
                "disruption_id": disruption.id,
                "action": disruption.action,
                "category": disruption.category,
                "reason": disruption.reason,
                "doctor_id": clinic_session.doctor_id,
                "department": clinic_session.department,
                "slot_starts_at": appointment.slot_starts_at.isoformat(),
                "appointment_status": _status_after(session, appointment),
                "offer": None
                if offer is None
                else {
                    "rebooking_offer_id": offer.id,
                    "clinic_session_id": offer.clinic_session_id,
                    "doctor_id": target.doctor_id if target else None,
                    "starts_at": target.starts_at.isoformat() if target else None,
                    "expires_at": offer.expires_at.isoformat(),
                },
            },
        )


def _status_after(session: Session, appointment: Appointment) -> str:
    current = repository.get_appointment(session, appointment.id)
    return current.status if current else appointment.status


# --- offers -----------------------------------------------------------------------------------------------


def _known_offer(
    session: Session, offer_id: str, acting_for: str | None, *, for_update: bool = False
) -> RebookingOffer:
    """The offer; acting for another patient, 404 exactly as for one that does not exist."""
    offer = repository.get_offer(session, offer_id, for_update=for_update)
    if offer is None or not visible_to(acting_for, offer.patient_id):
        raise RebookingOfferNotFound("No such rebooking offer.")
    return offer


def _status(offer: RebookingOffer, now: datetime) -> OfferStatus:
    if offer.status == OfferStatus.offered.value and now >= offer.expires_at:
        return OfferStatus.expired
    return OfferStatus(offer.status)


def _refuse_unless_open(offer: RebookingOffer, now: datetime) -> None:
    status = _status(offer, now)
    if status is not OfferStatus.offered:
        raise RebookingOfferClosed(f"This rebooking offer is {status.value}.", offer_status=status.value)


def accept_offer(
    session: Session,
    *,
    offer_id: str,
    acting_for: str | None,
    decided_by: str,
    settings: RegistrationSettings,
    now: datetime | None = None,
) -> OfferDecisionAnswer:
    """Book the offered session for the patient through `appointments.book` (quota, one booking per
    session, booking hours); a still-booked appointment of a suspended session is then given up
    (`reason: rebooked`). A booking refused (full, closed) leaves the offer open. Emits
    `appointment.rebooked`."""
    now = now or utcnow()
    offer = _known_offer(session, offer_id, acting_for, for_update=True)
    _refuse_unless_open(offer, now)
    if offer.clinic_session_id is None:
        raise RebookingOfferClosed(
            "No session with room was found to offer; book another session instead.", slug="nothing-offered"
        )
    target = repository.get_clinic_session(session, offer.clinic_session_id)
    original = repository.get_appointment(session, offer.appointment_id)
    if target is None or original is None:
        raise RebookingOfferNotFound("No such rebooking offer.")
    patient = service.get_patient(session, patient_id=offer.patient_id)
    rebooked = book(
        session,
        clinic_session=target,
        patient=patient,
        channel=Channel(original.channel),
        booked_by=decided_by,
        settings=settings,
        referring_clinic=original.referring_clinic,
        followup_of_visit_id=original.followup_of_visit_id,
        now=now,
    )
    if original.status in SEATED:
        release(session, original, reason=CancelReason.rebooked, now=now)
    offer.status, offer.decided_at, offer.decided_by = OfferStatus.accepted.value, now, decided_by
    offer.rebooked_appointment_id = rebooked.id
    session.add(offer)
    record_event(
        session,
        OutboxEvent,
        event_type="appointment.rebooked",
        aggregate_type="appointment",
        aggregate_id=rebooked.id,
        patient_id=rebooked.patient_id,
        payload={
            "appointment_id": rebooked.id,
            "previous_appointment_id": original.id,
            "rebooking_offer_id": offer.id,
            "clinic_session_id": target.id,
            "slot_starts_at": rebooked.slot_starts_at.isoformat(),
        },
    )
    answer = offer_view(session, offer, now=now)
    return OfferDecisionAnswer(**answer.model_dump(), appointment=to_public(rebooked, target))


def decline_offer(
    session: Session, *, offer_id: str, acting_for: str | None, decided_by: str, now: datetime | None = None
) -> OfferDecisionAnswer:
    """Decline: a cancelled appointment stays cancelled (its fee refunded); a suspended session's booking
    is kept. Declining again answers the same."""
    now = now or utcnow()
    offer = _known_offer(session, offer_id, acting_for, for_update=True)
    if offer.status != OfferStatus.declined.value:
        _refuse_unless_open(offer, now)
        offer.status, offer.decided_at, offer.decided_by = OfferStatus.declined.value, now, decided_by
        session.add(offer)
    return OfferDecisionAnswer(**offer_view(session, offer, now=now).model_dump())


def read_offer(
    session: Session, *, offer_id: str, acting_for: str | None, now: datetime | None = None
) -> RebookingOfferPublic:
    return offer_view(session, _known_offer(session, offer_id, acting_for), now=now or utcnow())


# --- views ------------------------------------------------------------------------------------------------


def offer_view(
    session: Session, offer: RebookingOffer, *, now: datetime, target: ClinicSession | None = None
) -> RebookingOfferPublic:
    if target is None and offer.clinic_session_id is not None:
        target = repository.get_clinic_session(session, offer.clinic_session_id)
    return RebookingOfferPublic(
        id=offer.id,
        disruption_id=offer.disruption_id,
        appointment_id=offer.appointment_id,
        patient_id=offer.patient_id,
        clinic_session_id=offer.clinic_session_id,
        doctor_id=target.doctor_id if target else None,
        starts_at=target.starts_at if target else None,
        status=_status(offer, now),
        expires_at=offer.expires_at,
        decided_at=offer.decided_at,
        rebooked_appointment_id=offer.rebooked_appointment_id,
    )


def disruption_view(
    session: Session, disruption: SessionDisruption, *, clinic_session: ClinicSession, now: datetime
) -> DisruptionPublic:
    """The disruption with every appointment it touched, as each is now, and its offer."""
    touched = repository.disrupted_of(session, disruption.id)
    appointments = repository.appointments_by_id(session, [t.appointment_id for t in touched])
    offers = {offer.appointment_id: offer for offer in repository.offers_of(session, disruption.id)}
    targets = repository.sessions_by_id(
        session, sorted({o.clinic_session_id for o in offers.values() if o.clinic_session_id})
    )
    affected = []
    for row in sorted(
        touched, key=lambda t: (appointments[t.appointment_id].slot_starts_at, t.appointment_id)
    ):
        appointment = appointments[row.appointment_id]
        offer = offers.get(row.appointment_id)
        target = targets.get(offer.clinic_session_id) if offer and offer.clinic_session_id else None
        affected.append(
            AffectedAppointment(
                appointment_id=appointment.id,
                patient_id=appointment.patient_id,
                slot_starts_at=appointment.slot_starts_at,
                status=AppointmentStatus(appointment.status),
                outcome="cancelled" if row.outcome == "cancelled" else "kept",
                offer=offer_view(session, offer, now=now, target=target) if offer else None,
            )
        )
    return DisruptionPublic(
        id=disruption.id,
        clinic_session_id=disruption.clinic_session_id,
        action=DisruptionAction(disruption.action),
        category=DisruptionCategory(disruption.category),
        reason=disruption.reason,
        starts_at=disruption.starts_at,
        ends_at=disruption.ends_at,
        substitute_doctor_id=disruption.substitute_doctor_id,
        offered_session_id=disruption.offered_session_id,
        session_status=SessionStatus(clinic_session.status),
        created_at=disruption.created_at,
        affected=affected,
    )


def list_disruptions(
    session: Session, *, clinic_session_id: str, now: datetime | None = None
) -> list[DisruptionPublic]:
    """Every disruption of the session, oldest first, each with the appointments it touched."""
    clinic_session = repository.get_clinic_session(session, clinic_session_id)
    if clinic_session is None:
        raise ClinicSessionNotFound("No such clinic session.")
    now = now or utcnow()
    return [
        disruption_view(session, disruption, clinic_session=clinic_session, now=now)
        for disruption in repository.disruptions_of(session, clinic_session_id)
    ]
