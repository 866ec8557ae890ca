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
