"""API keys: the seed file, the in-memory cache (expiry, revocation, rotation grace) and start-up rules."""

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from gateway import repository
from gateway.api_clients import ApiClientStore, create_client, revoke_client
from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.errors import ApiKeyExpired, ApiKeyRevoked, InvalidApiKey, MissingApiKey
from gateway.keys import KeyCache, hash_key, presented_key, read_seed_file
from gateway.models import ApiClientRow
from gateway.schemas import ApiClientCreate
from kit.auth import verify_internal_token
from kit.clock import utcnow
from kit.testing import TEST_SECRET
from tests.gateway.factories import gateway_database, write_keys_file

STRONG_SECRET = "a-long-random-production-secret-0123456789"


@pytest.fixture(autouse=True)
def _keep_test_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """A production app configures root logging; keep pytest's handlers in place."""
    monkeypatch.setattr("gateway.app.configure_process_logging", lambda *_args, **_kwargs: None)


def production_settings(keys_file: Path | None, secret: str = STRONG_SECRET) -> GatewaySettings:
    values = {"environment": "production", "internal_secret": secret, "api_keys_file": keys_file}
    return GatewaySettings.model_validate(values | gateway_database())


def row(name: str, key: str, **fields: object) -> ApiClientRow:
    return ApiClientRow.model_validate(
        {"name": name, "kind": "his", "scopes": ["results:write"], "key_hash": hash_key(key)} | fields
    )


def cache_of(*rows: ApiClientRow) -> KeyCache:
    cache = KeyCache(TEST_SECRET)
    cache.replace(rows)
    return cache


# --- the cache ------------------------------------------------------------------------------------


def test_keys_are_found_by_hash_never_by_the_hash_itself() -> None:
    cache = cache_of(row("lab-dev", "k-lab"))
    caller = cache.identify("k-lab").caller
    assert (caller.name, caller.kind, caller.scopes) == ("lab-dev", "his", {"results:write"})
    token = caller.tokens.header("results").removeprefix("Bearer ")
    assert verify_internal_token(TEST_SECRET, token, audience="results").subject == "lab-dev"
    for wrong in ("k-lab ", hash_key("k-lab"), "x" * 300):
        with pytest.raises(InvalidApiKey):
            cache.identify(wrong)


def test_an_expired_key_is_refused_as_expired() -> None:
    cache = cache_of(
        row("old", "k-old", expires_at=utcnow() - timedelta(seconds=1)),
        row("new", "k-new", expires_at=utcnow() + timedelta(hours=1)),
    )
    with pytest.raises(ApiKeyExpired):
        cache.identify("k-old")
    assert cache.identify("k-new").caller.name == "new"
    assert len(cache) == 1


def test_a_revoked_key_is_refused_as_revoked() -> None:
    cache = cache_of(row("gone", "k", revoked_at=utcnow()))
    with pytest.raises(ApiKeyRevoked):
        cache.identify("k")
    assert len(cache) == 0


def test_the_previous_key_works_only_during_its_grace() -> None:
    in_grace = row(
        "a",
        "new-a",
        previous_key_hash=hash_key("old-a"),
        previous_key_expires_at=utcnow() + timedelta(minutes=5),
    )
    grace_over = row(
        "b",
        "new-b",
        previous_key_hash=hash_key("old-b"),
        previous_key_expires_at=utcnow() - timedelta(seconds=1),
    )
    cache = cache_of(in_grace, grace_over)
    assert cache.identify("old-a").caller.name == "a"
    assert cache.identify("new-b").caller.name == "b"
    with pytest.raises(ApiKeyExpired):
        cache.identify("old-b")


def test_revoking_stops_the_previous_key_too() -> None:
    revoked = row(
        "a",
        "new-a",
        previous_key_hash=hash_key("old-a"),
        previous_key_expires_at=utcnow() + timedelta(minutes=5),
        revoked_at=utcnow(),
    )
    cache = cache_of(revoked)
    for key in ("new-a", "old-a"):
        with pytest.raises(ApiKeyRevoked):
            cache.identify(key)


def test_a_refresh_replaces_the_whole_table() -> None:
    cache = cache_of(row("a", "k-a"))
    cache.replace([row("b", "k-b")])
    with pytest.raises(InvalidApiKey):
        cache.identify("k-a")
    assert cache.identify("k-b").caller.name == "b"


def test_a_slow_refresh_cannot_undo_a_revocation_made_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings.model_validate({"environment": "test"} | gateway_database())
    cache = KeyCache(TEST_SECRET)
    store = ApiClientStore(repository.open_database(settings), cache)
    try:
        with store.database.session() as session:
            _, key = create_client(
                session, data=ApiClientCreate(name="his-a", kind="his", scopes=["triage:read"])
            )
        store.reload()
        read_the_table, go_on = threading.Event(), threading.Event()
        replace = cache.replace

        def stalling_replace(rows: list[ApiClientRow]) -> None:
            if threading.current_thread().name == "periodic-refresh":  # has read the table, not swapped yet
                read_the_table.set()
                go_on.wait(10)
            replace(rows)

        monkeypatch.setattr(cache, "replace", stalling_replace)
        periodic = threading.Thread(target=store.reload, name="periodic-refresh")
        periodic.start()
        assert read_the_table.wait(10)
        with store.database.session() as session:  # the admin API revokes, then reloads
            revoke_client(session, name="his-a")
        after_revoking = threading.Thread(target=store.reload)
        after_revoking.start()
        after_revoking.join(timeout=0.5)  # unserialised, it would finish before the stale refresh
        go_on.set()
        periodic.join(10)
        after_revoking.join(10)
        with pytest.raises(ApiKeyRevoked):
            cache.identify(key)
    finally:
        store.database.dispose()


def test_acting_for_a_patient_puts_the_patient_in_forwarded_tokens() -> None:
    cache = cache_of(row("app", "k", kind="app"))
    caller = cache.identify("k").caller
    acting = cache.for_patient(caller, "patient-1")
    forwarded = verify_internal_token(
        TEST_SECRET, acting.tokens.header("results").split()[1], audience="results"
    )
    assert (acting.patient, forwarded.patient, forwarded.subject) == ("patient-1", "patient-1", "app")
    assert forwarded.kind == "app"
    assert (
        verify_internal_token(
            TEST_SECRET, caller.tokens.header("results").split()[1], audience="results"
        ).patient
        is None
    )


def test_forwarded_tokens_carry_the_clients_kind_and_follow_a_changed_kind() -> None:
    cache = cache_of(row("desk", "k", kind="nurse"))
    header = cache.identify("k").caller.tokens.header("registration")
    assert verify_internal_token(TEST_SECRET, header.split()[1], audience="registration").kind == "nurse"
    cache.replace([row("desk", "k", kind="cashier")])
    header = cache.identify("k").caller.tokens.header("registration")
    assert verify_internal_token(TEST_SECRET, header.split()[1], audience="registration").kind == "cashier"


def test_presented_key_prefers_bearer_and_falls_back_to_x_api_key() -> None:
    assert presented_key("Bearer abc", "other") == "abc"
    assert presented_key("bearer  abc ", None) == "abc"
    assert presented_key(None, "xyz") == "xyz"
    for authorization, api_key in [(None, None), (None, " "), ("Bearer ", None), ("Basic abc", None)]:
        with pytest.raises(MissingApiKey):
            presented_key(authorization, api_key)


# --- the seed file --------------------------------------------------------------------------------


def test_upper_case_hashes_are_accepted(tmp_path: Path) -> None:
    entry = {"client": "c", "kind": "his", "sha256": hash_key("k").upper(), "scopes": []}
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [entry]}))
    assert read_seed_file(tmp_path / "keys.json")[0].sha256 == hash_key("k")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"keys": [{"client": "c", "kind": "his", "sha256": "abc", "scopes": []}]}',
        '{"keys": [{"client": "c", "kind": "his", "scopes": []}]}',
        '{"clients": []}',
    ],
)
def test_malformed_keys_files_are_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "keys.json").write_text(content)
    with pytest.raises(ValueError, match="Cannot load API keys"):
        read_seed_file(tmp_path / "keys.json")


@pytest.mark.parametrize(
    ("second", "problem"), [({"client": "d"}, "key hash"), ({"sha256": "f" * 64}, "client")]
)
def test_the_same_key_or_client_twice_is_refused(
    tmp_path: Path, second: dict[str, str], problem: str
) -> None:
    entry = {"client": "c", "kind": "his", "sha256": hash_key("k"), "scopes": []}
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [entry, entry | second]}))
    with pytest.raises(ValueError, match=f"same {problem}"):
        read_seed_file(tmp_path / "keys.json")


def test_a_seed_client_of_unknown_kind_stops_start_up(tmp_path: Path) -> None:
    path = write_keys_file(tmp_path / "keys.json", {"x": ("k", [])}, kind="robot")
    settings = GatewaySettings.model_validate(
        {"environment": "test", "internal_secret": TEST_SECRET, "api_keys_file": path} | gateway_database()
    )
    with pytest.raises(ValueError, match="unknown kind"), TestClient(create_app(settings)):
        pass


# --- start-up rules -------------------------------------------------------------------------------


def test_production_refuses_a_configured_but_missing_keys_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="GATEWAY_API_KEYS_FILE"):
        production_settings(tmp_path / "missing.json")


@pytest.mark.parametrize("with_file", [False, True])
def test_production_refuses_to_start_with_no_clients(tmp_path: Path, with_file: bool) -> None:
    keys_file = write_keys_file(tmp_path / "keys.json", {}) if with_file else None
    with (
        pytest.raises(ValueError, match="No usable API clients"),
        TestClient(create_app(production_settings(keys_file))),
    ):
        pass


def test_production_refuses_a_placeholder_secret(tmp_path: Path) -> None:
    path = write_keys_file(tmp_path / "keys.json", {"his": ("k", ["registration:read"])})
    with pytest.raises(ValidationError, match="PATIENTFLOW_INTERNAL_SECRET"):
        production_settings(path, secret="dev-internal-secret")


def test_production_starts_with_seeded_clients_and_a_real_secret(tmp_path: Path) -> None:
    path = write_keys_file(tmp_path / "keys.json", {"his": ("k", ["registration:read"])})
    app = create_app(production_settings(path))
    with TestClient(app) as client:
        response = client.get("/v1/patients/p-1", headers={"authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert app.state.settings.environment == "production"


def test_development_starts_without_keys() -> None:
    settings = GatewaySettings.model_validate(
        {"environment": "test", "api_keys_file": None, "internal_secret": TEST_SECRET} | gateway_database()
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/catalogue", headers={"authorization": "Bearer k"}).status_code == 401
