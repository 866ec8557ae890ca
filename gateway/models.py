"""The gateway's own tables: the API clients allowed in, with only hashes of their keys."""

from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from kit.models import BigIntId, Timestamp, UTCDateTime, new_registry

# `phone`: the telephone lookup line (电话查询), bound to one patient like an app.
ClientKind = Literal["his", "lis", "app", "kiosk", "phone", "nurse", "doctor", "cashier", "board", "admin"]
CLIENT_KINDS: frozenset[str] = frozenset(get_args(ClientKind))
# Kinds that act for one patient at a time and need a patient token on every proxied request.
PATIENT_BOUND_KINDS: frozenset[str] = frozenset({"app", "kiosk", "phone"})


class GatewayTable(SQLModel, registry=new_registry()):
    """Base of the gateway's tables: their own metadata, apart from every service's."""


class ApiClientRow(GatewayTable, table=True):
    """One API client and its key (SHA-256 only), plus the previous key while a rotation's grace runs."""

    __tablename__ = "api_client"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    name: str = Field(max_length=64, unique=True)
    kind: str = Field(max_length=16)
    scopes: list[str] = Field(default_factory=list, sa_type=JSON)
    key_hash: str = Field(max_length=64, unique=True)
    # The first characters of the key, never enough to use it: lets an operator tell keys apart.
    key_prefix: str | None = Field(default=None, max_length=16)
    created_at: datetime = Timestamp()
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    rate_limit_per_second: float | None = None
    rate_burst: int | None = None
    previous_key_hash: str | None = Field(default=None, max_length=64)
    previous_key_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
