"""Idempotency keys for money-moving POSTs (Stripe's model, IETF draft-ietf-httpapi-idempotency-key-header).

The key is claimed in the same transaction as the effect: the first request runs and its answer is
stored; a retry with the same key and body gets the stored answer; the same key with a different body
is 422; a twin racing the first is 409 (its transaction loses on the primary key). Keys are scoped by
the calling client, so one client can never replay another's answer.
"""

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Header
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import JSON
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from kit.errors import BadRequest, Conflict, UnprocessableContent
from kit.models import Timestamp

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        description="A retry with the same key and body gets the first answer back; never a second effect.",
    ),
]
"""Declare as `key: IdempotencyKeyHeader = None`; `idempotent()` answers 400 where a key is required."""


class IdempotencyRecordBase(SQLModel):
    """The stored answer to the first request made with a key."""

    client: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=MAX_KEY_LENGTH)
    fingerprint: str = Field(max_length=64)
    status_code: int
    response: Any = Field(sa_type=JSON)
    created_at: datetime = Timestamp()


def checked_key(key: str | None) -> str:
    """The key, or 400 when it is missing or malformed."""
    if key is None or not key.strip():
        raise BadRequest(
            f"This operation requires an {IDEMPOTENCY_HEADER} header.", slug="idempotency-key-missing"
        )
    key = key.strip().strip('"')  # accept the draft's structured-field quoting
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise BadRequest(
            f"{IDEMPOTENCY_HEADER} must be 1–{MAX_KEY_LENGTH} printable characters.",
            slug="idempotency-key-invalid",
        )
    return key


def fingerprint(payload: Any) -> str:
    canonical = json.dumps(jsonable_encoder(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent(
    session: Session,
    record_model: type[IdempotencyRecordBase],
    *,
    client: str,
    key: str | None,
    payload: Any,
    run: Callable[[], tuple[int, Any]],
) -> JSONResponse:
    """Run `run` once per (client, key); answer retries with the stored response."""
    key = checked_key(key)
    digest = fingerprint(payload)
    stored = session.get(record_model, (client, key))
    if stored is not None:
        if stored.fingerprint != digest:
            raise UnprocessableContent(
                f"This {IDEMPOTENCY_HEADER} was already used with a different request body.",
                slug="idempotency-key-reused",
            )
        return JSONResponse(stored.response, stored.status_code, headers={REPLAYED_HEADER: "true"})
    status_code, body = run()
    content = jsonable_encoder(body)
    record = record_model(
        client=client, key=key, fingerprint=digest, status_code=status_code, response=content
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        raise Conflict(
            f"A request with this {IDEMPOTENCY_HEADER} is still being processed; retry shortly.",
            slug="idempotency-key-in-flight",
        ) from None
    return JSONResponse(content, status_code)
