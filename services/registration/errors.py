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


class IdentityMismatch(UnprocessableContent):
    """A birth date or sex given that the identity number contradicts (`field` names which)."""

    slug, title = "identity-mismatch", "Does not agree with the identity number"


class DuplicateCard(Conflict):
    slug, title = "duplicate-card-number", "Medical card already on file"


class InvalidSearch(BadRequest):
    slug, title = "invalid-search", "Invalid patient search"
