"""API keys: who is calling the gateway and with which scopes.

The keys file holds only SHA-256 hashes (`{"keys": [{"client", "kind", "sha256", "scopes"}]}`), so a
leaked file or memory dump gives away no usable key. A presented key is hashed and looked up by hash.
"""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.errors import InvalidApiKey, MissingApiKey
from gateway.routes import SCOPES
from kit.auth import TokenSource

logger = logging.getLogger("patientflow.gateway")
MAX_KEY_LENGTH = 256


def hash_key(key: str) -> str:
    """The hex SHA-256 the keys file stores for a plaintext key."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=32)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    scopes: list[str]

    @field_validator("sha256")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry]


@dataclass(frozen=True, slots=True)
class ApiClient:
    """An outside client (e.g. `his-dev`, kind `his`) and the scopes its key grants."""

    name: str
    kind: str
    scopes: frozenset[str]
    tokens: TokenSource = field(compare=False, repr=False)


class KeyRing:
    """Known keys by hash; answers which client a presented key belongs to."""

    def __init__(self, clients_by_hash: dict[str, ApiClient]) -> None:
        self._clients_by_hash = clients_by_hash

    def __len__(self) -> int:
        return len(self._clients_by_hash)

    @classmethod
    def from_file(cls, path: Path, internal_secret: str) -> "KeyRing":
        """Load and validate a keys file; ValueError on anything malformed or duplicated."""
        try:
            key_file = KeyFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, ValidationError) as exc:
            raise ValueError(f"Cannot load API keys from {path}: {exc}") from exc
        clients: dict[str, ApiClient] = {}
        for entry in key_file.keys:
            if entry.sha256 in clients:
                raise ValueError(f"API keys file {path}: the same key hash appears twice")
            unknown = set(entry.scopes) - SCOPES
            if unknown:  # a typo here would silently deny; say so at start-up
                logger.warning("API client %s has scopes no route uses: %s", entry.client, sorted(unknown))
            scopes = frozenset(entry.scopes)
            tokens = TokenSource(internal_secret, entry.client, scopes)
            clients[entry.sha256] = ApiClient(entry.client, entry.kind, scopes, tokens)
        return cls(clients)

    def identify(self, key: str) -> ApiClient:
        """The client owning this key; InvalidApiKey otherwise."""
        client = self._clients_by_hash.get(hash_key(key)) if len(key) <= MAX_KEY_LENGTH else None
        if client is None:
            raise InvalidApiKey()
        return client


def presented_key(authorization: str | None, api_key: str | None) -> str:
    """The key from `Authorization: Bearer <key>`, else from `X-API-Key`; MissingApiKey if neither."""
    if authorization:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise MissingApiKey("Only `Authorization: Bearer <key>` is accepted.")
        return key.strip()
    if api_key and api_key.strip():
        return api_key.strip()
    raise MissingApiKey()
