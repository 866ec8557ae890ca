"""The admin API for API clients, served by the gateway itself (never forwarded): needs `admin:clients`."""

import logging
from typing import Annotated
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Body, Depends, Request, status

from gateway import repository
from gateway.api_clients import (
    ApiClientStore,
    create_client,
    get_client,
    revoke_client,
    rotate_key,
    to_public,
    with_key,
)
from gateway.errors import (
    ClientExists,
    ClientNotFound,
    ClientRevoked,
    InvalidApiKey,
    ScopeMissing,
    SubscriptionsNotDropped,
)
from gateway.keys import Caller
from gateway.routes import ADMIN_SCOPE
from gateway.schemas import ApiClientCreate, ApiClientPublic, ApiClientWithKey, KeyRotation
from gateway.upstreams import Upstreams
from kit.auth import mint_internal_token, service_subject
from kit.errors import ProblemError, problem_responses
from kit.requestid import current_request_id

logger = logging.getLogger("patientflow.gateway")


async def require_admin(request: Request) -> Caller:
    """The caller, if its key grants `admin:clients`."""
    caller: Caller = await request.app.state.proxy.authenticate(request)
    caller.require(ADMIN_SCOPE)
    return caller


def api_client_store(request: Request) -> ApiClientStore:
    store: ApiClientStore = request.app.state.api_clients
    return store


StoreDep = Annotated[ApiClientStore, Depends(api_client_store)]
AUTH_PROBLEMS = problem_responses(InvalidApiKey, ScopeMissing)
ADMIN_ACCESS = {"x-required-scope": ADMIN_SCOPE}  # for the OpenAPI document (gateway/openapi.py)
router = APIRouter(prefix="/v1/admin/clients", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=AUTH_PROBLEMS | problem_responses(ClientExists),
    openapi_extra=ADMIN_ACCESS,
)
async def create_api_client(data: ApiClientCreate, store: StoreDep) -> ApiClientWithKey:
    """Create a client and its API key. The key is in this answer only: store it now.

    The client can call the gateway as soon as this answer arrives.
    """

    def create() -> ApiClientWithKey:
        with store.database.session() as session:
            row, key = create_client(session, data=data)
        return with_key(row, key)

    created = await anyio.to_thread.run_sync(create)
    await anyio.to_thread.run_sync(store.reload)
    return created


@router.get("", responses=AUTH_PROBLEMS, openapi_extra=ADMIN_ACCESS)
async def list_api_clients(store: StoreDep) -> list[ApiClientPublic]:
    """Every client with its kind, scopes, key prefix and status (never a key or its hash)."""

    def read() -> list[ApiClientPublic]:
        with store.database.session(write=False) as session:
            return [to_public(row) for row in repository.list_api_clients(session)]

    return await anyio.to_thread.run_sync(read)


@router.get(
    "/{name}", responses=AUTH_PROBLEMS | problem_responses(ClientNotFound), openapi_extra=ADMIN_ACCESS
)
async def read_api_client(name: str, store: StoreDep) -> ApiClientPublic:
    """One client (never its key or the key's hash)."""

    def read() -> ApiClientPublic:
        with store.database.session(write=False) as session:
            return to_public(get_client(session, name=name))

    return await anyio.to_thread.run_sync(read)


@router.post(
    "/{name}/rotate",
    responses=AUTH_PROBLEMS | problem_responses(ClientNotFound, ClientRevoked),
    openapi_extra=ADMIN_ACCESS,
)
async def rotate_api_key(
    name: str, store: StoreDep, rotation: Annotated[KeyRotation | None, Body()] = None
) -> ApiClientWithKey:
    """Give the client a new key, shown in this answer only.

    With `grace_seconds`, the old key keeps working that long so the client can switch over;
    without, it stops at once.
    """
    grace = rotation.grace_seconds if rotation is not None else 0

    def rotate() -> ApiClientWithKey:
        with store.database.session() as session:
            row, key = rotate_key(session, name=name, grace_seconds=grace)
        return with_key(row, key)

    rotated = await anyio.to_thread.run_sync(rotate)
    await anyio.to_thread.run_sync(store.reload)
    return rotated


async def drop_subscriptions(request: Request, name: str) -> int:
    """Have the event hub delete the client's webhook subscriptions; SubscriptionsNotDropped (503) if it
    cannot. Fail-closed: a revoked client whose webhooks kept firing would still receive patient data."""
    upstreams: Upstreams = request.app.state.upstreams
    settings = request.app.state.settings
    token = mint_internal_token(
        settings.internal_secret, service_subject("gateway"), set(), audience="events"
    )
    headers = [
        (b"authorization", f"Bearer {token}".encode("latin-1")),
        (b"x-request-id", (current_request_id() or "").encode("latin-1")),
        (b"accept", b"application/json"),
    ]
    target = f"/owners/{quote(name, safe='')}/subscriptions"
    retry_after = settings.retry_after_seconds
    try:
        response = await upstreams.send("events", "DELETE", target, headers=headers)
    except ProblemError as exc:
        raise SubscriptionsNotDropped(name, retry_after=retry_after) from exc
    await response.aclose()
    try:
        if response.status_code != 200:
            raise ValueError(f"status {response.status_code}")
        return int(response.json()["deleted"])
    except (ValueError, KeyError, TypeError) as exc:  # anything but the hub's confirmation
        logger.warning("the event hub did not confirm %s: %s", target, exc)
        raise SubscriptionsNotDropped(name, retry_after=retry_after) from None


@router.post(
    "/{name}/revoke",
    responses=AUTH_PROBLEMS | problem_responses(ClientNotFound, ClientRevoked, SubscriptionsNotDropped),
    openapi_extra=ADMIN_ACCESS,
)
async def revoke_api_client(name: str, request: Request, store: StoreDep) -> ApiClientPublic:
    """Stop every key of the client at once, and its webhook subscriptions. A revoked client cannot be
    restored; create a new one.

    The subscriptions go first: if the event hub cannot be reached, the answer is 503, nothing is
    revoked, and you retry. Revoking an already revoked client drops any subscriptions left, then 409.
    """

    def check() -> None:
        with store.database.session(write=False) as session:
            get_client(session, name=name)  # 404 before touching the hub

    def revoke() -> ApiClientPublic:
        with store.database.session() as session:
            return to_public(revoke_client(session, name=name))

    await anyio.to_thread.run_sync(check)
    deleted = await drop_subscriptions(request, name)
    logger.info("dropped %d webhook subscription(s) of %s before revoking it", deleted, name)
    revoked = await anyio.to_thread.run_sync(revoke)
    await anyio.to_thread.run_sync(store.reload)
    return revoked
