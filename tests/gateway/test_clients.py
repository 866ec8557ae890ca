"""API clients through the admin API and the `patientflow keys` command, against a running gateway."""

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session

from gateway import repository
from gateway.api_clients import ApiClientStore
from gateway.app import create_app as create_gateway
from gateway.config import GatewaySettings
from gateway.models import ApiClientRow
from kit.auth import verify_internal_token
from kit.clock import utcnow
from kit.testing import HTTP_TIMEOUT_SECONDS, TEST_SECRET, eventually, serve
from patientflow.cli import main as cli
from tests.gateway.factories import bearer, gateway_database, gateway_settings
from tests.gateway.servers import EchoUpstream, closed_port_url
from tests.gateway.test_proxy import assert_problem

ADMIN = "/v1/admin/clients"


def unique_name() -> str:
    return f"client-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin(client: httpx.Client, api_keys: dict[str, str]) -> httpx.Client:
    client.headers.update(bearer(api_keys["admin"]))
    return client


def create(admin: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"name": unique_name(), "kind": "his", "scopes": ["triage:read"]} | fields
    response = admin.post(ADMIN, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def reads_queue(client: httpx.Client, key: str) -> int:
    return client.get("/v1/queues/internal", headers={"authorization": f"Bearer {key}"}).status_code


# --- admin API ------------------------------------------------------------------------------------


def test_a_created_client_gets_its_key_once_and_can_call_at_once(
    admin: httpx.Client, gateway_url: str
) -> None:
    created = create(admin, kind="board", scopes=["triage:read"])
    key = created["key"]
    assert created["status"] == "active" and created["kind"] == "board"
    assert key.startswith(created["key_prefix"]) and len(key) > 40
    with httpx.Client(base_url=gateway_url, timeout=HTTP_TIMEOUT_SECONDS) as other:
        assert reads_queue(other, key) == 200
        assert other.post("/v1/queues/internal/tickets", json={}, headers=bearer(key)).status_code == 403
    one = admin.get(f"{ADMIN}/{created['name']}")
    listed = admin.get(ADMIN)
    assert one.status_code == 200 and listed.status_code == 200
    assert created["name"] in {c["name"] for c in listed.json()}
    for response in (one, listed):  # never the key, never its hash
        assert key not in response.text and "hash" not in response.text
        assert "key" not in one.json()


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "robot"},
        {"scopes": ["everything:write"]},
        {"name": "Has Spaces"},
        {"expires_at": "2001-01-01T00:00:00Z"},
        {"expires_at": "2999-01-01T00:00:00"},  # no UTC offset
        {"rate_limit_per_second": 0},
        {"surprise": True},
    ],
)
def test_bad_client_definitions_are_422(admin: httpx.Client, body: dict[str, Any]) -> None:
    response = admin.post(ADMIN, json={"name": unique_name(), "kind": "his", "scopes": []} | body)
    assert_problem(response, 422)


def test_an_expiry_is_answered_in_utc_whatever_offset_it_was_sent_with(admin: httpx.Client) -> None:
    created = create(admin, expires_at="2999-12-31T00:00:00+08:00")
    rotated = admin.post(f"{ADMIN}/{created['name']}/rotate")
    assert rotated.status_code == 200, rotated.text
    listed = admin.get(f"{ADMIN}/{created['name']}")
    assert created["expires_at"] == rotated.json()["expires_at"] == listed.json()["expires_at"]
    assert created["expires_at"] == "2999-12-30T16:00:00Z"


def test_a_taken_name_is_409_and_unknown_names_are_404(admin: httpx.Client, echo: EchoUpstream) -> None:
    created = create(admin)
    body = assert_problem(admin.post(ADMIN, json={"name": created["name"], "kind": "his"}), 409)
    assert body["type"].endswith("/client-exists")
    for response in (
        admin.get(f"{ADMIN}/nobody"),
        admin.post(f"{ADMIN}/nobody/rotate"),
        admin.post(f"{ADMIN}/nobody/revoke"),
    ):
        assert assert_problem(response, 404)["type"].endswith("/client-not-found")
    assert not [seen for seen in echo.seen if seen.path.startswith("/owners/")]  # the hub was not asked


def test_the_admin_api_needs_the_admin_scope(client: httpx.Client, api_keys: dict[str, str]) -> None:
    assert_problem(client.get(ADMIN), 401)
    body = assert_problem(client.get(ADMIN, headers=bearer(api_keys["his-dev"])), 403)
    assert body["scope"] == "admin:clients"
    assert_problem(
        client.post(ADMIN, json={"name": "x", "kind": "his"}, headers=bearer(api_keys["reader"])), 403
    )


def test_rotation_without_grace_stops_the_old_key_at_once(admin: httpx.Client) -> None:
    created = create(admin)
    rotated = admin.post(f"{ADMIN}/{created['name']}/rotate")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["key"] != created["key"]
    assert reads_queue(admin, rotated.json()["key"]) == 200
    assert reads_queue(admin, created["key"]) == 401


def test_rotation_with_grace_keeps_the_old_key_working_meanwhile(admin: httpx.Client) -> None:
    created = create(admin)
    rotated = admin.post(f"{ADMIN}/{created['name']}/rotate", json={"grace_seconds": 3600})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["previous_key_expires_at"] is not None
    assert reads_queue(admin, created["key"]) == 200
    assert reads_queue(admin, rotated.json()["key"]) == 200
    assert_problem(admin.post(f"{ADMIN}/{created['name']}/rotate", json={"grace_seconds": -1}), 422)


def test_revoking_stops_every_key_and_cannot_be_undone(admin: httpx.Client) -> None:
    created = create(admin)
    rotated = admin.post(f"{ADMIN}/{created['name']}/rotate", json={"grace_seconds": 3600}).json()
    revoked = admin.post(f"{ADMIN}/{created['name']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    for key in (created["key"], rotated["key"]):
        response = admin.get("/v1/queues/internal", headers={"authorization": f"Bearer {key}"})
        assert assert_problem(response, 401)["type"].endswith("/api-key-revoked")
    assert_problem(admin.post(f"{ADMIN}/{created['name']}/revoke"), 409)
    assert_problem(admin.post(f"{ADMIN}/{created['name']}/rotate"), 409)


def hub_deletes(hub: EchoUpstream) -> list[str]:
    """The owners whose subscriptions the (fake) event hub was asked to delete, by the gateway itself."""
    owners = []
    for seen in hub.seen:
        if seen.method == "DELETE" and seen.path.startswith("/owners/"):
            token = seen.headers["authorization"].removeprefix("Bearer ")
            assert verify_internal_token(TEST_SECRET, token, audience="events").subject == "service:gateway"
            owners.append(seen.path.removeprefix("/owners/").removesuffix("/subscriptions"))
    return owners


def test_revoking_while_the_event_hub_is_down_is_503_and_revokes_nothing(
    keys_file: Path, echo_url: str, api_keys: dict[str, str]
) -> None:
    settings = gateway_settings(keys_file, triage_url=echo_url, events_url=closed_port_url())
    with (
        serve(create_gateway(settings)) as url,
        httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as admin,
    ):
        admin.headers.update(bearer(api_keys["admin"]))
        created = create(admin)
        response = admin.post(f"{ADMIN}/{created['name']}/revoke")
        body = assert_problem(response, 503)
        assert body["type"].endswith("/subscriptions-not-dropped") and "nothing was revoked" in body["detail"]
        assert int(response.headers["retry-after"]) >= 1
        assert reads_queue(admin, created["key"]) == 200
        assert admin.get(f"{ADMIN}/{created['name']}").json()["status"] == "active"


def test_revoking_deletes_the_clients_subscriptions_at_the_hub_first(
    keys_file: Path, echo_url: str, api_keys: dict[str, str]
) -> None:
    hub = EchoUpstream()
    with serve(hub) as hub_url:
        settings = gateway_settings(keys_file, triage_url=echo_url, events_url=hub_url)
        with (
            serve(create_gateway(settings)) as url,
            httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as admin,
        ):
            admin.headers.update(bearer(api_keys["admin"]))
            created = create(admin)
            assert_problem(admin.post(f"{ADMIN}/nobody/revoke"), 404)
            assert hub_deletes(hub) == []
            revoked = admin.post(f"{ADMIN}/{created['name']}/revoke")
            assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
            assert hub_deletes(hub) == [created["name"]]
            assert reads_queue(admin, created["key"]) == 401


@pytest.fixture(scope="module")
def own_gateway(keys_file: Path, echo_url: str) -> Iterator[tuple[str, GatewaySettings]]:
    """A gateway whose database the tests also reach directly, as the CLI or a second gateway would."""
    settings = gateway_settings(keys_file, triage_url=echo_url, events_url=echo_url, keys_refresh_seconds=0.1)
    with serve(create_gateway(settings)) as url:
        yield url, settings


def test_a_key_past_its_expiry_is_401(
    own_gateway: tuple[str, GatewaySettings], api_keys: dict[str, str]
) -> None:
    url, settings = own_gateway
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS, headers=bearer(api_keys["admin"])) as admin:
        created = create(admin, expires_at=(utcnow() + timedelta(days=1)).isoformat())
        assert reads_queue(admin, created["key"]) == 200
        database = repository.open_database(settings)
        try:
            with database.session() as session:
                past = utcnow() - timedelta(seconds=1)
                session.execute(
                    update(ApiClientRow).where(ApiClientRow.name == created["name"]).values(expires_at=past)
                )
        finally:
            database.dispose()

        def refused() -> bool:
            response = admin.get("/v1/queues/internal", headers={"authorization": f"Bearer {created['key']}"})
            return response.status_code == 401 and response.json()["type"].endswith("/api-key-expired")

        eventually(refused, what="the expired key to be refused")
        assert admin.get(f"{ADMIN}/{created['name']}").json()["status"] == "expired"


# --- the command line -----------------------------------------------------------------------------


def run_cli(settings: GatewaySettings, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setenv("GATEWAY_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("GATEWAY_EVENTS_URL", settings.events_url)
    monkeypatch.setenv("PATIENTFLOW_INTERNAL_SECRET", settings.internal_secret)
    if settings.resolved_schema:
        monkeypatch.setenv("GATEWAY_DATABASE_SCHEMA", settings.resolved_schema)
    return cli(["keys", "--data-dir", str(settings.data_dir), *args])


def printed_key(output: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith("API key")]
    return line.rsplit(" ", 1)[1]


def test_keys_made_on_the_command_line_reach_the_running_gateway(
    own_gateway: tuple[str, GatewaySettings],
    echo: EchoUpstream,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, settings = own_gateway
    name = unique_name()
    assert run_cli(settings, monkeypatch, "create", name, "--kind", "nurse", "--scope", "triage:read") == 0
    key = printed_key(capsys.readouterr().out)
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as client:
        eventually(lambda: reads_queue(client, key) == 200, what="the new key to work")

        assert run_cli(settings, monkeypatch, "list") == 0
        listing = capsys.readouterr().out
        assert name in listing and key not in listing

        assert run_cli(settings, monkeypatch, "rotate", name, "--grace-seconds", "600") == 0
        new_key = printed_key(capsys.readouterr().out)
        eventually(lambda: reads_queue(client, new_key) == 200, what="the rotated key to work")
        assert reads_queue(client, key) == 200  # still in its grace

        assert run_cli(settings, monkeypatch, "revoke", name) == 0
        assert "deleted 0 webhook subscription(s)" in capsys.readouterr().out
        assert name in hub_deletes(echo)
        eventually(lambda: reads_queue(client, new_key) == 401, what="the revoked key to be refused")
        assert reads_queue(client, key) == 401


def test_the_command_line_revokes_nothing_while_the_event_hub_is_down(
    own_gateway: tuple[str, GatewaySettings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, settings = own_gateway
    hub_down = settings.model_copy(update={"events_url": closed_port_url()})
    name = unique_name()
    assert run_cli(settings, monkeypatch, "create", name, "--kind", "his", "--scope", "triage:read") == 0
    key = printed_key(capsys.readouterr().out)
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as client:
        eventually(lambda: reads_queue(client, key) == 200, what="the new key to work")
        assert run_cli(hub_down, monkeypatch, "revoke", name) == 1
        err = capsys.readouterr().err
        assert "nothing was revoked" in err and "--keep-subscriptions" in err
        assert reads_queue(client, key) == 200
        assert run_cli(hub_down, monkeypatch, "revoke", name, "--keep-subscriptions") == 0
        eventually(lambda: reads_queue(client, key) == 401, what="the revoked key to be refused")


def test_the_command_line_refuses_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = GatewaySettings.model_validate({"environment": "test"} | gateway_database(tmp_path))
    assert run_cli(settings, monkeypatch, "create", "x", "--kind", "his", "--scope", "nope:read") == 2
    assert "unknown scopes" in capsys.readouterr().err
    assert run_cli(settings, monkeypatch, "revoke", "nobody") == 1
    assert "No API client" in capsys.readouterr().err
    assert run_cli(settings, monkeypatch, "create", "x", "--kind", "his") == 0
    assert run_cli(settings, monkeypatch, "create", "x", "--kind", "his") == 1
    assert "already exists" in capsys.readouterr().err


# --- shutting down ---------------------------------------------------------------------------------


def test_shutdown_waits_for_a_key_reload_in_flight_before_disposing_of_the_database(
    keys_file: Path, echo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload holding its connection when the database is disposed of would hand it back to the
    discarded pool, still open, for the garbage collector to close later, in whatever test then runs
    (a CI run on PostgreSQL once failed so)."""
    armed, in_flight, release = threading.Event(), threading.Event(), threading.Event()

    def blocking_list_clients(session: Session) -> Any:
        rows = list_api_clients(session)  # the session now holds a connection
        if armed.is_set() and not in_flight.is_set():
            in_flight.set()
            release.wait(10)
        return rows

    class ReleasingLock:
        """The store's reload lock: whoever has to wait for it lets the blocked reload finish first."""

        def __init__(self) -> None:
            self.lock = threading.Lock()

        def __enter__(self) -> None:
            if not self.lock.acquire(blocking=False):
                release.set()
                self.lock.acquire()

        def __exit__(self, *_exc: object) -> None:
            self.lock.release()

    list_api_clients = repository.list_api_clients
    monkeypatch.setattr(repository, "list_api_clients", blocking_list_clients)
    checked_out_at_dispose: list[int] = []
    settings = gateway_settings(
        keys_file, triage_url=echo_url, events_url=echo_url, keys_refresh_seconds=0.01
    )
    with TestClient(create_gateway(settings)) as client:
        store: ApiClientStore = client.app.state.api_clients  # type: ignore[attr-defined]
        store._reload_lock = ReleasingLock()  # type: ignore[assignment]
        dispose = store.database.dispose

        def observed_dispose() -> None:
            engines = {store.database.writer, store.database.reader}
            checked_out_at_dispose.append(sum(engine.pool.checkedout() for engine in engines))  # type: ignore[attr-defined]
            release.set()
            dispose()

        monkeypatch.setattr(store.database, "dispose", observed_dispose)
        armed.set()
        assert in_flight.wait(10), "no periodic reload started"
    assert checked_out_at_dispose == [0]
