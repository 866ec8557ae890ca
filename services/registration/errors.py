"""Registration's errors, named for what went wrong."""

from kit.errors import Conflict, NotFound, UnprocessableContent


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


class VisitRefused(UnprocessableContent):
    slug, title = "visit-refused", "Visit cannot be opened"


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
