"""Registration's errors, named for what went wrong."""

from kit.errors import BadRequest, Conflict, NotFound, UnprocessableContent


class PatientNotFound(NotFound):
    slug, title = "patient-not-found", "Patient not found"


class VisitNotFound(NotFound):
    slug, title = "visit-not-found", "Visit not found"


class InvalidIdNumber(UnprocessableContent):
    slug, title = "invalid-id-number", "Invalid identity number"


class DuplicatePatient(Conflict):
    slug, title = "duplicate-patient", "Patient already registered"


class MergeRefused(Conflict):
    slug, title = "merge-refused", "Patients cannot be merged"


class PatientMerged(Conflict):
    slug, title = "patient-merged", "Patient record merged"


class VisitRefused(UnprocessableContent):
    slug, title = "visit-refused", "Visit cannot be opened"


class DepartmentNotFound(NotFound):
    slug, title = "department-not-found", "Department not found"


class DoctorNotFound(NotFound):
    slug, title = "doctor-not-found", "Doctor not found"


class TemplateNotFound(NotFound):
    slug, title = "template-not-found", "Schedule template not found"


class ClinicSessionNotFound(NotFound):
    slug, title = "clinic-session-not-found", "Clinic session not found"


class AppointmentNotFound(NotFound):
    slug, title = "appointment-not-found", "Appointment not found"


class DuplicateDepartment(Conflict):
    slug, title = "duplicate-department", "Department already exists"


class ScheduleRefused(UnprocessableContent):
    """A template, exception or session that cannot be (a doctor of another department, no slot fits)."""

    slug, title = "schedule-refused", "Schedule refused"


class NoSuchSlot(UnprocessableContent):
    slug, title = "no-such-slot", "No such slot in this session"


class BookingRefused(UnprocessableContent):
    """A booking that could never succeed as asked (a follow-up of a visit of another patient, …)."""

    slug, title = "booking-refused", "Booking refused"


class BookingConflict(Conflict):
    """Base of every refusal of a booking the state of the session explains (409): full, closed, …"""

    slug, title = "booking-conflict", "Booking not possible"


class SessionFull(BookingConflict):
    slug, title = "session-full", "No free slot in this session"


class SlotFull(BookingConflict):
    slug, title = "slot-full", "This slot is fully booked"


class AlreadyBooked(BookingConflict):
    slug, title = "already-booked", "The patient already holds a booking in this session"


class BookingClosed(BookingConflict):
    slug, title = "booking-closed", "Booking is not open for this session"


class SessionNotOpen(BookingConflict):
    slug, title = "session-not-open", "The session is suspended or cancelled"


class AppointmentStateConflict(Conflict):
    """The appointment is not in a state that allows this (a lapsed hold, a cancel after the cut-off, …)."""

    slug, title = "appointment-state", "Not possible in the appointment's state"


class CheckInRefused(Conflict):
    slug, title = "check-in-refused", "Check-in not possible now"


class DisruptionRefused(Conflict):
    """The session's state does not allow it (resume an open one, anything on a cancelled one, …)."""

    slug, title = "disruption-refused", "Disruption not possible"


class DisruptionInvalid(UnprocessableContent):
    """Asked in a way that can never work (a substitute of another department, slots that do not fit, …)."""

    slug, title = "disruption-invalid", "Disruption refused"


class RebookingOfferNotFound(NotFound):
    slug, title = "rebooking-offer-not-found", "Rebooking offer not found"


class RebookingOfferClosed(Conflict):
    """Accepted, declined, superseded or expired already, or it proposes no session to book."""

    slug, title = "rebooking-offer-closed", "Rebooking offer closed"


# --- inpatient stays and closed visits ---------------------------------------------------------------


class VisitClosed(Conflict):
    """The visit is closed: it takes no new work (orders, tickets, charges, admission)."""

    slug, title = "visit-closed", "Visit closed"


class WardNotFound(NotFound):
    slug, title = "ward-not-found", "Ward not found"


class DuplicateWard(Conflict):
    slug, title = "duplicate-ward", "Ward or bed already exists"


class UnknownBed(UnprocessableContent):
    slug, title = "unknown-bed", "No such ward or bed"


class BedOccupied(Conflict):
    slug, title = "bed-occupied", "Bed occupied"


class AdmissionRefused(Conflict):
    slug, title = "admission-refused", "Visit cannot be admitted"


class NotAdmitted(Conflict):
    slug, title = "not-admitted", "Visit has no stay in hospital"


class CloseRefused(Conflict):
    slug, title = "close-refused", "Visit cannot be closed"


class StayNotFound(NotFound):
    slug, title = "stay-not-found", "No stay for this visit"


class IdentityMismatch(UnprocessableContent):
    """A birth date or sex given that the identity number contradicts (`field` names which)."""

    slug, title = "identity-mismatch", "Does not agree with the identity number"


class DuplicateCard(Conflict):
    slug, title = "duplicate-card-number", "Medical card already on file"


class InvalidSearch(BadRequest):
    slug, title = "invalid-search", "Invalid patient search"
