"""API keys: which API client a request comes from, and the `Caller` it then acts as.

Only SHA-256 hashes of keys are ever stored (the database, the seed file), so a leaked table or memory
dump gives away no usable key. A presented key is hashed and looked up in an in-memory cache of the
clients table, never in the database on the request path.
"""

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from gateway.errors import ApiKeyExpired, ApiKeyRevoked, InvalidApiKey, MissingApiKey, ScopeMissing
from gateway.models import ApiClientRow
from gateway.routes import known_scopes
from gateway.schemas import KeyEntry, KeyFile
from kit.auth import TokenSource

logger = logging.getLogger("patientflow.gateway")
MAX_KEY_LENGTH = 256
PATIENT_TOKEN_SOURCES = 4096  # internal-token sources kept for (client, patient) pairs


def hash_key(key: str) -> str:
    """The hex SHA-256 stored for a plaintext key."""
    return hashlib.sha256(key.encode()).hexdigest()


def read_seed_file(path: Path) -> list[KeyEntry]:
    """The clients of a seed keys file; ValueError on anything malformed or a key hash given twice."""
    try:
        key_file = KeyFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise ValueError(f"Cannot load API keys from {path}: {exc}") from exc
    hashes = [entry.sha256 for entry in key_file.keys]
    if len(set(hashes)) != len(hashes):
        raise ValueError(f"API keys file {path}: the same key hash appears twice")
    names = [entry.client for entry in key_file.keys]
    if len(set(names)) != len(names):
        raise ValueError(f"API keys file {path}: the same client appears twice")
    for entry in key_file.keys:
        unknown = set(entry.scopes) - known_scopes()
        if unknown:  # a typo here would silently deny; say so at start-up
            logger.warning("API client %s has scopes no route uses: %s", entry.client, sorted(unknown))
    return key_file.keys


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request acts as once its key checked out: an API client (e.g. `his-dev`, kind `his`) with
    its scopes, as `kit.auth.Caller` names the same party inside a service.

    `patient` is the patient an app or kiosk acts for (from its patient token), else None; `tokens`
    mints the internal token to forward, carrying that patient.
    """

    name: str
    kind: str
    scopes: frozenset[str]
    tokens: TokenSource = field(compare=False, repr=False)
    patient: str | None = None

    def require(self, scope: str) -> None:
        """ScopeMissing (403) unless the key grants `scope`."""
        if scope not in self.scopes:
            raise ScopeMissing(scope)


@dataclass(frozen=True, slots=True)
class KnownKey:
    """A key hash the cache knows: its caller, until when it works, and the API client's own rate limit."""

    caller: Caller
    not_after: float | None  # epoch seconds; None: no expiry
    revoked: bool
    rate_per_second: float | None  # the client's own rate limit, else None (the gateway's default)
    rate_burst: int | None


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def _earliest(*moments: float | None) -> float | None:
    present = [m for m in moments if m is not None]
    return min(present) if present else None


class KeyCache:
    """Known key hashes -> callers, rebuilt from the clients table (`replace`) and read per request."""

    def __init__(self, internal_secret: str) -> None:
        self._secret = internal_secret
        self._by_hash: dict[str, KnownKey] = {}
        self._tokens: dict[tuple[str, frozenset[str], str], TokenSource] = {}
        self._patient_tokens: OrderedDict[tuple[str, frozenset[str], str, str], TokenSource] = OrderedDict()

    def __len__(self) -> int:
        """How many clients have a key that works now."""
        now = time.time()
        return len(
            {
                known.caller.name
                for known in self._by_hash.values()
                if not known.revoked and (known.not_after is None or known.not_after > now)
            }
        )

    def replace(self, rows: Iterable[ApiClientRow]) -> None:
        """Swap in the whole table at once, so a request never sees half a refresh."""
        by_hash: dict[str, KnownKey] = {}
        tokens: dict[tuple[str, frozenset[str], str], TokenSource] = {}
        for row in rows:
            scopes = frozenset(row.scopes)
            # Re-use a client's token source while its scopes and kind stay the same (it caches a token).
            held = (row.name, scopes, row.kind)
            source = self._tokens.get(held) or TokenSource(self._secret, row.name, scopes, kind=row.kind)
            tokens[held] = source
            caller = Caller(row.name, row.kind, scopes, source)
            limit = (row.rate_limit_per_second, row.rate_burst)
            revoked = row.revoked_at is not None
            expires = _epoch(row.expires_at)
            by_hash[row.key_hash] = KnownKey(caller, expires, revoked, *limit)
            if row.previous_key_hash and row.previous_key_expires_at is not None:
                grace = _earliest(expires, _epoch(row.previous_key_expires_at))
                by_hash[row.previous_key_hash] = KnownKey(caller, grace, revoked, *limit)
        self._by_hash, self._tokens = by_hash, tokens

    def identify(self, key: str) -> KnownKey:
        """The known key for a presented one; 401 (invalid, expired or revoked) otherwise."""
        # Keys are ASCII: anything else (a header's raw bytes, read as Latin-1) is simply not a key.
        if len(key) > MAX_KEY_LENGTH or not key.isascii():
            raise InvalidApiKey()
        return self.identify_hash(hash_key(key))

    def identify_hash(self, key_hash: str) -> KnownKey:
        """The known key for a key's hash (a board session holds the hash, never the key); 401 otherwise."""
        known = self._by_hash.get(key_hash)
        if known is None:
            raise InvalidApiKey()
        if known.revoked:
            raise ApiKeyRevoked()
        if known.not_after is not None and known.not_after <= time.time():
            raise ApiKeyExpired()
        return known

    def for_patient(self, caller: Caller, patient: str) -> Caller:
        """The same client acting for `patient`: its forwarded tokens carry the patient claim."""
        cache_key = (caller.name, caller.scopes, caller.kind, patient)
        source = self._patient_tokens.get(cache_key)
        if source is None:
            source = TokenSource(self._secret, caller.name, caller.scopes, patient=patient, kind=caller.kind)
            self._patient_tokens[cache_key] = source
            if len(self._patient_tokens) > PATIENT_TOKEN_SOURCES:
                self._patient_tokens.popitem(last=False)
        else:
            self._patient_tokens.move_to_end(cache_key)
        return Caller(caller.name, caller.kind, caller.scopes, source, patient)


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
