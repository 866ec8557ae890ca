"""Revoking a client at the gateway also stops its webhooks: the hub deletes its subscriptions first."""

import uuid

import httpx

from kit.auth import mint_internal_token
from kit.testing import HTTP_TIMEOUT_SECONDS
from patientflow.supervisor import System
from tests.e2e.clients import Gateway, assert_problem, eventually, ok, register_patient
from tests.events.receiver import WebhookReceiver, served_receiver

SCOPES = ["events:read", "events:subscribe", "registration:read"]


def patients_hooked(receiver: WebhookReceiver) -> set[str]:
    return {event["patient_id"] for event in receiver.delivered}


def test_a_revoked_client_gets_no_more_webhooks(
    system: System, gateway: Gateway, receiver: WebhookReceiver
) -> None:
    name = f"revoked-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "kind": "his", "scopes": SCOPES}
    key = ok(gateway.admin.post("/v1/admin/clients", json=body), 201)["key"]
    with httpx.Client(
        base_url=system.url("gateway"),
        headers={"authorization": f"Bearer {key}"},
        timeout=HTTP_TIMEOUT_SECONDS,
    ) as client:
        hook = {"url": receiver.url, "event_types": ["patient.registered"]}
        subscription = ok(client.post("/v1/subscriptions", json=hook), 201)
        receiver.secret = subscription["secret"]
        before = register_patient(gateway.his)["id"]
        eventually(lambda: before in patients_hooked(receiver), what="the webhook before the revocation")

        revoked = ok(gateway.admin.post(f"/v1/admin/clients/{name}/revoke"))
        assert revoked["status"] == "revoked"
        assert_problem(client.get("/v1/subscriptions"), 401)

    # A witness subscribed to the same events: once it has the new registration, the hub has logged it,
    # and with it the deliveries it owes (written in the same transaction), and has sent them.
    with served_receiver() as witness:
        hook = {"url": witness.url, "event_types": ["patient.registered"]}
        witnessing = ok(gateway.his.post("/v1/subscriptions", json=hook), 201)
        witness.secret = witnessing["secret"]
        try:
            attempts = len(receiver.attempts)
            after = register_patient(gateway.his)["id"]
            eventually(lambda: after in patients_hooked(witness), what="the witness's webhook")
        finally:
            assert gateway.his.delete(f"/v1/subscriptions/{witnessing['id']}").status_code == 204
    assert after not in patients_hooked(receiver) and len(receiver.attempts) == attempts
    assert receiver.rejected == witness.rejected == 0

    # The hub itself has no subscription of that client any more (asked as the gateway would, for it).
    token = mint_internal_token(
        system.env["PATIENTFLOW_INTERNAL_SECRET"], name, {"events:subscribe"}, audience="events"
    )
    with httpx.Client(
        base_url=system.url("events"),
        headers={"authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT_SECONDS,
    ) as hub:
        assert hub.get(f"/subscriptions/{subscription['id']}").status_code == 404
        assert ok(hub.get("/subscriptions")) == []
