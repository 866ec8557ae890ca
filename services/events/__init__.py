"""The event hub (事件中心): one causally ordered log of every service's events, served to subscribers.

It reads the four services' feeds into its own log, and offers the log as a page API, a Server-Sent
Events stream, signed webhooks and (optionally) NATS JetStream, each filtered to what the caller may see.
"""
