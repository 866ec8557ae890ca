"""Event hub errors, named for what went wrong."""

from kit.errors import NotFound, UnprocessableContent


class SubscriptionNotFound(NotFound):
    """Also the answer for another client's subscription: its existence is not ours to reveal."""

    slug, title = "subscription-not-found", "Subscription not found"


class SchemaNotFound(NotFound):
    slug, title = "event-schema-not-found", "Event schema not found"


class RefusedWebhookUrl(UnprocessableContent):
    """The URL points where the hub does not send (cloud metadata, unspecified, loopback in production)."""

    slug, title = "webhook-url-refused", "Webhook URL refused"
