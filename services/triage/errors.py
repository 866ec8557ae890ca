"""Triage's errors, named for what went wrong."""

from kit.errors import Conflict, NotFound, UnprocessableContent


class VisitNotFound(NotFound):
    slug, title = "visit-not-found", "Visit not found"


class TicketNotFound(NotFound):
    slug, title = "ticket-not-found", "Ticket not found"


class QueueEmpty(NotFound):
    slug, title = "queue-empty", "Queue empty"


class AlreadyQueued(Conflict):
    slug, title = "already-queued", "Visit already queued"


class TicketNotCalled(Conflict):
    slug, title = "ticket-not-called", "Ticket not called"


class QueueSuspended(Conflict):
    slug, title = "queue-suspended", "Queue suspended"


class QueueNotSuspended(Conflict):
    slug, title = "queue-not-suspended", "Queue not suspended"


# --- Queue actions (issue 10) ---
class TicketWrongState(Conflict):
    """The action does not apply to a ticket in its current status (e.g. recalling a waiting ticket)."""

    slug, title = "ticket-wrong-state", "Ticket in the wrong state"


class UnknownStation(UnprocessableContent):
    slug, title = "unknown-station", "Unknown station"


# --- Queue rules (0009_queue_rules) ---
class StationFull(Conflict):
    """The station already has as many called, not yet seen patients as the queue's cap per room."""

    slug, title = "station-full", "Station full"


class UnknownServiceClass(UnprocessableContent):
    """A service class the queue's rules give no expected service time."""

    slug, title = "unknown-service-class", "Unknown service class"


# --- Assessment in depth (0007_vitals) ---


class OverrideReasonRequired(UnprocessableContent):
    """The nurse's level differs from the one the vital signs suggest, and no reason was given."""

    slug, title = "override-reason-required", "Override reason required"
