"""API keys and the settings that refuse to run production without them."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.errors import InvalidApiKey, MissingApiKey
from gateway.keys import KeyRing, hash_key, presented_key
from kit.testing import TEST_SECRET
from tests.gateway.factories import write_keys_file

STRONG_SECRET = "a-long-random-production-secret-0123456789"


@pytest.fixture(autouse=True)
def _keep_test_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """A production app configures root logging; keep pytest's handlers in place."""
    monkeypatch.setattr("gateway.app.configure_logging", lambda *_args, **_kwargs: None)


def production_settings(keys_file: Path | None, secret: str = STRONG_SECRET) -> GatewaySettings:
    return GatewaySettings.model_validate(
        {"environment": "production", "internal_secret": secret, "api_keys_file": keys_file}
    )


def test_keys_are_found_by_hash(tmp_path: Path) -> None:
    path = write_keys_file(tmp_path / "keys.json", {"lab-dev": ("k-lab", ["results:write"])})
    ring = KeyRing.from_file(path, TEST_SECRET)
    client = ring.identify("k-lab")
    assert (client.name, client.scopes) == ("lab-dev", frozenset({"results:write"}))
    assert client.tokens.header().startswith("Bearer pf1.")
    with pytest.raises(InvalidApiKey):
        ring.identify("k-lab ")
    with pytest.raises(InvalidApiKey):
        ring.identify(hash_key("k-lab"))  # the stored hash is not itself a key


def test_upper_case_hashes_are_accepted(tmp_path: Path) -> None:
    entry = {"client": "c", "kind": "his", "sha256": hash_key("k").upper(), "scopes": []}
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [entry]}))
    assert KeyRing.from_file(tmp_path / "keys.json", TEST_SECRET).identify("k").name == "c"


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
        KeyRing.from_file(tmp_path / "keys.json", TEST_SECRET)


def test_the_same_key_twice_is_refused(tmp_path: Path) -> None:
    entry = {"client": "c", "kind": "his", "sha256": hash_key("k"), "scopes": []}
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [entry, entry | {"client": "d"}]}))
    with pytest.raises(ValueError, match="twice"):
        KeyRing.from_file(tmp_path / "keys.json", TEST_SECRET)


def test_presented_key_prefers_bearer_and_falls_back_to_x_api_key() -> None:
    assert presented_key("Bearer abc", "other") == "abc"
    assert presented_key("bearer  abc ", None) == "abc"
    assert presented_key(None, "xyz") == "xyz"
    for authorization, api_key in [(None, None), (None, " "), ("Bearer ", None), ("Basic abc", None)]:
        with pytest.raises(MissingApiKey):
            presented_key(authorization, api_key)


def test_production_refuses_to_start_without_a_keys_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="GATEWAY_API_KEYS_FILE"):
        production_settings(None)
    with pytest.raises(ValidationError, match="GATEWAY_API_KEYS_FILE"):
        production_settings(tmp_path / "missing.json")


def test_production_refuses_to_start_with_an_empty_keys_file(tmp_path: Path) -> None:
    settings = production_settings(write_keys_file(tmp_path / "keys.json", {}))
    with pytest.raises(ValueError, match="no keys"):
        create_app(settings)


def test_production_refuses_a_placeholder_secret(tmp_path: Path) -> None:
    path = write_keys_file(tmp_path / "keys.json", {"his": ("k", ["registration:read"])})
    with pytest.raises(ValidationError, match="PATIENTFLOW_INTERNAL_SECRET"):
        production_settings(path, secret="dev-internal-secret")


def test_production_starts_with_keys_and_a_real_secret(tmp_path: Path) -> None:
    path = write_keys_file(tmp_path / "keys.json", {"his": ("k", ["registration:read"])})
    assert create_app(production_settings(path)).state.settings.environment == "production"


def test_development_starts_without_keys() -> None:
    settings = GatewaySettings.model_validate({"environment": "test", "api_keys_file": None})
    assert create_app(settings) is not None
