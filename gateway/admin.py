"""The admin API for API clients, served by the gateway itself (never forwarded): needs `admin:clients`."""

from typing import Annotated

import anyio
from fastapi import APIRouter, Body, Depends, Request, status

from gateway.clients import (
    ClientCreate,
    ClientExists,
    ClientNotFound,
    ClientPublic,
    ClientRevoked,
    ClientStore,
    ClientWithKey,
    KeyRotation,
    create_client,
    get_client,
    list_clients,
    revoke_client,
    rotate_key,
    to_public,
    with_key,
)
from gateway.errors import InvalidApiKey, ScopeMissing
from gateway.keys import ADMIN_SCOPE, Principal
from kit.errors import problem_responses


async def require_admin(request: Request) -> Principal:
    """The calling client, if its key grants `admin:clients`."""
    principal: Principal = await request.app.state.proxy.authenticate(request)
    principal.require(ADMIN_SCOPE)
    return principal


def client_store(request: Request) -> ClientStore:
    store: ClientStore = request.app.state.clients
    return store


StoreDep = Annotated[ClientStore, Depends(client_store)]
AUTH_PROBLEMS = problem_responses(InvalidApiKey, ScopeMissing)
ADMIN_ACCESS = {"x-required-scope": ADMIN_SCOPE}  # for the OpenAPI document (gateway/openapi.py)
router = APIRouter(prefix="/v1/admin/clients", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=AUTH_PROBLEMS | problem_responses(ClientExists),
    openapi_extra=ADMIN_ACCESS,
)
async def create_api_client(data: ClientCreate, store: StoreDep) -> ClientWithKey:
    """Create a client and its API key. The key is in this answer only: store it now.

    The client can call the gateway as soon as this answer arrives.
    """

    def create() -> ClientWithKey:
        with store.database.session() as session:
            row, key = create_client(session, data=data)
        return with_key(row, key)

    created = await anyio.to_thread.run_sync(create)
    await anyio.to_thread.run_sync(store.reload)
    return created


@router.get("", responses=AUTH_PROBLEMS, openapi_extra=ADMIN_ACCESS)
async def list_api_clients(store: StoreDep) -> list[ClientPublic]:
    """Every client with its kind, scopes, key prefix and status (never a key or its hash)."""

    def read() -> list[ClientPublic]:
        with store.database.session(write=False) as session:
            return [to_public(row) for row in list_clients(session)]

    return await anyio.to_thread.run_sync(read)


@router.get(
    "/{name}", responses=AUTH_PROBLEMS | problem_responses(ClientNotFound), openapi_extra=ADMIN_ACCESS
)
async def read_api_client(name: str, store: StoreDep) -> ClientPublic:
    """One client (never its key or the key's hash)."""

    def read() -> ClientPublic:
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
) -> ClientWithKey:
    """Give the client a new key, shown in this answer only.

    With `grace_seconds`, the old key keeps working that long so the client can switch over;
    without, it stops at once.
    """
    grace = rotation.grace_seconds if rotation is not None else 0

    def rotate() -> ClientWithKey:
        with store.database.session() as session:
            row, key = rotate_key(session, name=name, grace_seconds=grace)
        return with_key(row, key)

    rotated = await anyio.to_thread.run_sync(rotate)
    await anyio.to_thread.run_sync(store.reload)
    return rotated


@router.post(
    "/{name}/revoke",
    responses=AUTH_PROBLEMS | problem_responses(ClientNotFound, ClientRevoked),
    openapi_extra=ADMIN_ACCESS,
)
async def revoke_api_client(name: str, store: StoreDep) -> ClientPublic:
    """Stop every key of the client at once. A revoked client cannot be restored; create a new one."""

    def revoke() -> ClientPublic:
        with store.database.session() as session:
            return to_public(revoke_client(session, name=name))

    revoked = await anyio.to_thread.run_sync(revoke)
    await anyio.to_thread.run_sync(store.reload)
    return revoked
