"""API clients (the registered holders of API keys): create, rotate and revoke them (no FastAPI here).

Used by the admin API and by `patientflow keys`; both print a new key once, and only its hash and a
short prefix are stored. `ApiClientStore` also keeps the in-memory `KeyCache` in step with the table.
"""

import asyncio
import logging
import secrets
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import anyio
from sqlmodel import Session

from gateway import repository
from gateway.errors import ClientExists, ClientNotFound, ClientRevoked
from gateway.keys import KeyCache, hash_key, read_seed_file
from gateway.models import CLIENT_KINDS, ApiClientRow
from gateway.schemas import ApiClientCreate, ApiClientPublic, ApiClientStatus, ApiClientWithKey, KeyEntry
from kit.clock import utcnow
from kit.config import ServiceSettings
from kit.database import Database

logger = logging.getLogger("patientflow.gateway")
KEY_PREFIX_LENGTH = 10


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return f"pf_{secrets.token_urlsafe(32)}"


def to_public(row: ApiClientRow, *, now: datetime | None = None) -> ApiClientPublic:
    now = now or utcnow()
    status: ApiClientStatus = "active"
    if row.revoked_at is not None:
        status = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        status = "expired"
    previous = row.previous_key_expires_at
    return ApiClientPublic(
        name=row.name,
        kind=row.kind,
        scopes=list(row.scopes),
        status=status,
        key_prefix=row.key_prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        previous_key_expires_at=previous if previous is not None and previous > now else None,
        rate_limit_per_second=row.rate_limit_per_second,
        rate_burst=row.rate_burst,
    )


def with_key(row: ApiClientRow, key: str) -> ApiClientWithKey:
    return ApiClientWithKey(**to_public(row).model_dump(), key=key)


def get_client(session: Session, *, name: str) -> ApiClientRow:
    """The API client named `name`; ClientNotFound (404) if there is none."""
    row = repository.find_api_client(session, name=name)
    if row is None:
        raise ClientNotFound(f"No API client named {name!r}.", name=name)
    return row


def create_client(session: Session, *, data: ApiClientCreate) -> tuple[ApiClientRow, str]:
    """A new client and its plaintext key; ClientExists (409) if the name is taken."""
    if repository.api_client_exists(session, name=data.name):
        raise ClientExists(f"An API client named {data.name!r} already exists.", name=data.name)
    key = new_key()
    row = ApiClientRow(
        name=data.name,
        kind=data.kind,
        scopes=data.scopes,
        key_hash=hash_key(key),
        key_prefix=key[:KEY_PREFIX_LENGTH],
        expires_at=data.expires_at,
        rate_limit_per_second=data.rate_limit_per_second,
        rate_burst=data.rate_burst,
    )
    repository.save_api_client(session, row)
    return row, key


def rotate_key(session: Session, *, name: str, grace_seconds: int = 0) -> tuple[ApiClientRow, str]:
    """Give the client a new key; the old one keeps working for `grace_seconds` (0: stops now)."""
    row = get_client(session, name=name)
    if row.revoked_at is not None:
        raise ClientRevoked(f"The API client {name!r} is revoked; create a new one instead.", name=name)
    key = new_key()
    row.previous_key_hash = row.key_hash if grace_seconds > 0 else None
    row.previous_key_expires_at = utcnow() + timedelta(seconds=grace_seconds) if grace_seconds > 0 else None
    row.key_hash, row.key_prefix = hash_key(key), key[:KEY_PREFIX_LENGTH]
    repository.save_api_client(session, row)
    return row, key


def revoke_client(session: Session, *, name: str) -> ApiClientRow:
    """Stop every key of the client at once (the previous one in a rotation's grace too)."""
    row = get_client(session, name=name)
    if row.revoked_at is not None:
        raise ClientRevoked(f"The API client {name!r} is already revoked.", name=name)
    row.revoked_at = utcnow()
    repository.save_api_client(session, row)
    return row


def import_seed(session: Session, entries: Sequence[KeyEntry]) -> list[str]:
    """Add the seed file's clients the table does not know yet; returns their names.

    A seeded client whose key is still the file's follows the file's kind and scopes, so development
    keys pick up new scopes; once its key was rotated, the database alone decides.
    """
    for entry in entries:
        if entry.kind not in CLIENT_KINDS:
            raise ValueError(f"API client {entry.client}: unknown kind {entry.kind!r}")
    existing = {row.name: row for row in repository.list_api_clients(session)}
    imported = []
    for entry in entries:
        row = existing.get(entry.client)
        if row is None:
            row = ApiClientRow(name=entry.client, kind=entry.kind, scopes=entry.scopes, key_hash=entry.sha256)
            repository.save_api_client(session, row)
            imported.append(entry.client)
        elif row.key_hash == entry.sha256 and (row.kind, row.scopes) != (entry.kind, entry.scopes):
            row.kind, row.scopes = entry.kind, list(entry.scopes)
            repository.save_api_client(session, row)
    return imported


class ApiClientStore:
    """The clients table plus the key cache read on every request; keeps the two in step."""

    def __init__(self, database: Database, cache: KeyCache) -> None:
        self.database = database
        self.cache = cache
        # Reloads run in worker threads (the periodic refresh, each admin change): one at a time, so a
        # slow one that read the table before a revocation cannot swap its stale rows in after it.
        self._reload_lock = threading.Lock()

    def seed(self, keys_file: Path | None) -> None:
        if keys_file is None:
            return
        with self.database.session() as session:
            imported = import_seed(session, read_seed_file(keys_file))
        if imported:
            logger.info("Imported API clients from %s: %s", keys_file, ", ".join(imported))

    def reload(self) -> None:
        """Re-read the whole table into the cache (small: one row per client)."""
        with self._reload_lock:
            with self.database.session(write=False) as session:
                rows = repository.list_api_clients(session)
            self.cache.replace(rows)

    def close(self) -> None:
        """Dispose of the database once a reload in flight has finished: cancelling the refresher does
        not stop its worker thread, and a connection handed back after `dispose()` would land in the
        discarded pool, still open, until the garbage collector finds it."""
        with self._reload_lock:
            self.database.dispose()

    async def refresh_forever(self, interval: float) -> None:
        """Pick up changes made elsewhere (CLI, another gateway); a failed read keeps the old cache."""
        while True:
            await asyncio.sleep(interval)
            try:
                await anyio.to_thread.run_sync(self.reload)
            except Exception:
                logger.warning("Could not refresh the API clients; keeping the cached ones", exc_info=True)


def open_api_client_store(
    settings: ServiceSettings, keys_file: Path | None, cache: KeyCache
) -> ApiClientStore:
    """Open and migrate the database, import the seed file, fill the cache; refuse an empty production."""
    store = ApiClientStore(repository.open_database(settings), cache)
    try:
        store.seed(keys_file)
        store.reload()
        if not cache:
            if settings.environment == "production":
                raise ValueError("No usable API clients; production refuses to start")
            logger.warning("No usable API clients: every /v1 request will be refused")
    except BaseException:
        store.database.dispose()
        raise
    return store
