"""Event hub errors, named for what went wrong."""

from kit.errors import BadRequest, NotFound, UnprocessableContent


class SubscriptionNotFound(NotFound):
    """Also the answer for another client's subscription: its existence is not ours to reveal."""

    slug, title = "subscription-not-found", "Subscription not found"


class SchemaNotFound(NotFound):
    slug, title = "event-schema-not-found", "Event schema not found"


class RefusedWebhookUrl(UnprocessableContent):
    """The URL points where the hub does not send (cloud metadata, unspecified, loopback in production)."""

    slug, title = "webhook-url-refused", "Webhook URL refused"


class UnresolvedWebhookHost(UnprocessableContent):
    """The URL's host name did not resolve within the hub's bound.

    A 4xx, not a 5xx: the hub is healthy, and a name its resolver cannot answer for promptly would stall
    every delivery too; the client fixes it (a name that resolves promptly, or an address). Not 504:
    that would read as the hub itself timing out, and count against it.
    """

    slug, title = "webhook-host-unresolved", "Webhook host not resolved in time"


class InvalidMetricsRange(BadRequest):
    slug, title = "invalid-range", "Invalid date range"


class UnknownDepartment(BadRequest):
    """No event in the log names this department (or queue): a typo, not an empty day. A 400, as any bad
    query parameter here (422 is for bodies)."""

    slug, title = "unknown-department", "Unknown department"


class VisitNotLogged(NotFound):
    slug, title = "visit-not-found", "Visit not found"
