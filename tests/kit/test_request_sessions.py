"""Request sessions under more concurrency than there are connections: every request is answered.

Requests used to wait for a pooled connection inside worker threads; once the thread pool was full of
waiters, the requests holding connections could not get a thread to finish, and the service hung.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import aiohttp
from fastapi import Depends, FastAPI, Request

from kit.database import Database, SessionDep
from kit.errors import NotFound, install_error_handlers
from kit.testing import serve
from tests.kit.sample import Thing, fresh_database

CONCURRENCY = 120  # well past the 40 worker threads and the pool sizes


def _caller(request: Request) -> str:
    """Like the services' credential check: a plain `def` dependency, so one more worker thread."""
    return request.headers.get("authorization", "")


CallerDep = Annotated[str, Depends(_caller)]


def sample_app(database: Database) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.database = database
        yield

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)

    @app.post("/things", status_code=201)
    def create(session: SessionDep, _caller: CallerDep) -> dict[str, str]:
        thing = Thing(name="made")
        session.add(thing)
        return {"id": thing.id}

    @app.get("/things/{thing_id}")
    def read(thing_id: str, session: SessionDep, _caller: CallerDep) -> dict[str, str]:
        thing = session.get(Thing, thing_id)
        if thing is None:
            raise NotFound("no such thing")
        return {"id": thing.id, "name": thing.name}

    return app


async def burst(url: str) -> tuple[list[int], list[int]]:
    """All requests at once, on as many connections (aiohttp: httpx's own pool would queue them)."""
    timeout = aiohttp.ClientTimeout(total=45)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(url, timeout=timeout, connector=connector) as client:

        async def call(method: str, path: str) -> tuple[int, dict[str, str]]:
            async with client.request(method, path) as response:
                return response.status, await response.json()

        posts = await asyncio.gather(*(call("POST", "/things") for _ in range(CONCURRENCY)))
        ids = [body["id"] for status, body in posts if status == 201]
        reads = await asyncio.gather(
            *(call("GET", f"/things/{ids[i % len(ids)]}") for i in range(CONCURRENCY))
        )
    return [status for status, _ in posts], [status for status, _ in reads]


def test_more_concurrent_requests_than_threads_and_connections_all_complete(tmp_path: Path) -> None:
    database = fresh_database(tmp_path, "burst")
    with serve(sample_app(database)) as url:
        writes, reads = asyncio.run(burst(url))
    assert writes == [201] * CONCURRENCY
    assert reads == [200] * CONCURRENCY
    database.dispose()
