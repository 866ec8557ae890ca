"""API clients: create, rotate and revoke keys in the gateway's database (no FastAPI here).

Used by the admin API and by `patientflow keys`; both print a new key once, and only its hash and a
short prefix are stored. `ClientStore` also keeps the in-memory `KeyCache` in step with the table.
"""

import asyncio
import logging
import secrets
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import anyio
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlmodel import Session, col, select

from gateway.keys import KeyCache, KeyEntry, hash_key, known_scopes, read_seed_file
from gateway.models import CLIENT_KINDS, ApiClientRow, ClientKind
from kit.clock import utcnow
from kit.config import ServiceSettings
from kit.database import Database
from kit.errors import Conflict, NotFound
from kit.migrations import upgrade

logger = logging.getLogger("patientflow.gateway")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
KEY_PREFIX_LENGTH = 10
MAX_GRACE_SECONDS = 7 * 24 * 3600
ClientStatus = Literal["active", "expired", "revoked"]


class ClientNotFound(NotFound):
    slug = "client-not-found"


class ClientExists(Conflict):
    slug = "client-exists"


class ClientRevoked(Conflict):
    slug = "client-revoked"


class ClientCreate(BaseModel):
    """A new API client. Scopes must be ones some route or gateway feature uses."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", examples=["his-east-wing"])
    kind: ClientKind
    scopes: list[str] = Field(default_factory=list, max_length=64, examples=[["registration:read"]])
    expires_at: AwareDatetime | None = None
    rate_limit_per_second: float | None = Field(default=None, gt=0, le=100_000)
    rate_burst: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - known_scopes())
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}")
        return sorted(set(scopes))

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, expires_at: datetime | None) -> datetime | None:
        if expires_at is not None and expires_at <= utcnow():
            raise ValueError("must be in the future")
        # In UTC, as the database hands it back: the create answer says what rotate and list say.
        return expires_at.astimezone(UTC) if expires_at is not None else None


class KeyRotation(BaseModel):
    """How long the old key keeps working beside the new one (0: it stops at once)."""

    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(default=0, ge=0, le=MAX_GRACE_SECONDS)


class ClientPublic(BaseModel):
    """An API client as operators see it: never its key or the key's hash."""

    name: str
    kind: str
    scopes: list[str]
    status: ClientStatus
    key_prefix: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    previous_key_expires_at: datetime | None
    rate_limit_per_second: float | None
    rate_burst: int | None


class ClientWithKey(ClientPublic):
    """A client with its new plaintext key: shown this once, never retrievable again."""

    key: str


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return f"pf_{secrets.token_urlsafe(32)}"


def to_public(row: ApiClientRow, *, now: datetime | None = None) -> ClientPublic:
    now = now or utcnow()
    status: ClientStatus = "active"
    if row.revoked_at is not None:
        status = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        status = "expired"
    previous = row.previous_key_expires_at
    return ClientPublic(
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


def with_key(row: ApiClientRow, key: str) -> ClientWithKey:
    return ClientWithKey(**to_public(row).model_dump(), key=key)


def list_clients(session: Session) -> Sequence[ApiClientRow]:
    return session.exec(select(ApiClientRow).order_by(col(ApiClientRow.name))).all()


def get_client(session: Session, *, name: str) -> ApiClientRow:
    row = session.exec(select(ApiClientRow).where(ApiClientRow.name == name)).first()
    if row is None:
        raise ClientNotFound(f"No API client named {name!r}.", name=name)
    return row


def create_client(session: Session, *, data: ClientCreate) -> tuple[ApiClientRow, str]:
    """A new client and its plaintext key; ClientExists (409) if the name is taken."""
    if session.exec(select(ApiClientRow.id).where(ApiClientRow.name == data.name)).first() is not None:
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
    session.add(row)
    session.flush()
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
    session.add(row)
    session.flush()
    return row, key


def revoke_client(session: Session, *, name: str) -> ApiClientRow:
    """Stop every key of the client at once (the previous one in a rotation's grace too)."""
    row = get_client(session, name=name)
    if row.revoked_at is not None:
        raise ClientRevoked(f"The API client {name!r} is already revoked.", name=name)
    row.revoked_at = utcnow()
    session.add(row)
    session.flush()
    return row


def import_seed(session: Session, entries: Sequence[KeyEntry]) -> list[str]:
    """Add the seed file's clients the table does not know yet; returns their names.

    A seeded client whose key is still the file's follows the file's kind and scopes, so development
    keys pick up new scopes; once its key was rotated, the database alone decides.
    """
    for entry in entries:
        if entry.kind not in CLIENT_KINDS:
            raise ValueError(f"API client {entry.client}: unknown kind {entry.kind!r}")
    existing = {row.name: row for row in list_clients(session)}
    imported = []
    for entry in entries:
        row = existing.get(entry.client)
        if row is None:
            session.add(
                ApiClientRow(name=entry.client, kind=entry.kind, scopes=entry.scopes, key_hash=entry.sha256)
            )
            imported.append(entry.client)
        elif row.key_hash == entry.sha256 and (row.kind, row.scopes) != (entry.kind, entry.scopes):
            row.kind, row.scopes = entry.kind, list(entry.scopes)
            session.add(row)
    session.flush()
    return imported


def open_database(settings: ServiceSettings) -> Database:
    """The gateway's database, migrated to the newest revision."""
    database = Database(settings.resolved_database_url, settings.resolved_schema)
    if settings.migrate_on_start:
        try:
            upgrade(database, MIGRATIONS_DIR)
        except BaseException:
            database.dispose()
            raise
    return database


class ClientStore:
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
                rows = list_clients(session)
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


def open_client_store(settings: ServiceSettings, keys_file: Path | None, cache: KeyCache) -> ClientStore:
    """Open and migrate the database, import the seed file, fill the cache; refuse an empty production."""
    store = ClientStore(open_database(settings), cache)
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
