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
