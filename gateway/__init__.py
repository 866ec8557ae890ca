"""The API gateway: the only door for outside clients (HIS, kiosks, staff apps) into patientflow.

It authenticates API keys, checks each route's scope, and forwards allowed calls to the owning service
with a short-lived internal token. Nothing else reaches a service from outside.

Glossary (one word for each idea; the public paths keep their names, e.g. `/v1/admin/clients`):

- **API client**: a registered holder of an API key (a HIS, kiosk, app, waiting-room board…), a row of
  `api_client` (`ApiClientRow`; `gateway.api_clients`, the admin API, `patientflow keys`).
- **Caller**: who one request acts as once its key checked out (`gateway.keys.Caller`): an API client
  with its scopes, and the patient an app or kiosk acts for. Services call the same party
  `kit.auth.Caller`, read from the internal token the gateway forwards.
- **Upstream**: a service the gateway forwards to; `gateway.upstreams` holds one connection pool to
  each (never called a "client" here).

Rooms, as in a service: `app.py` (wiring), `config.py`, `models.py` (tables), `schemas.py` (shapes),
`repository.py` (all SQL), `errors.py` (every problem the gateway raises), `admin.py`, `sessions.py`
and `journey.py` (the routes it serves itself), `proxy.py` with `routes.py` and `upstreams.py` (the
forwarded `/v1` routes).
"""
