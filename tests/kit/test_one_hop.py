"""A service request's unit of work costs one worker-thread hop: handler, commit and close run together.

Each hop is a hand-off between the event loop and a worker thread; a trivial GET used to make six (a
`def` credential check, a `def` scope check, the handler, validating its answer, commit, close).
"""

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import pytest
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlmodel import Session

from kit.app import build_service_app
from kit.auth import require_scope
from kit.config import ServiceSettings
from kit.database import Database, ReadAccess, ReadConnection, SessionDep, read_access
from kit.errors import NotFound
from kit.testing import internal_headers, make_test_settings
from tests.kit.sample import OutboxEvent, SampleTable, Thing

router = APIRouter()
threads: dict[str, int] = {}


def record_threads(session: Session) -> None:
    """Note the thread the handler, the commit and the close of `session` run on."""
    threads["handler"] = threading.get_ident()
    event.listen(
        session, "after_commit", lambda _session: threads.setdefault("commit", threading.get_ident())
    )
    close = session.close

    def recorded_close() -> None:
        threads.setdefault("close", threading.get_ident())
        close()

    session.close = recorded_close  # type: ignore[method-assign]


@router.get("/things/{thing_id}", dependencies=[require_scope("registration:read")])
def read_thing(thing_id: str, session: SessionDep) -> dict[str, str]:
    record_threads(session)
    thing = session.get(Thing, thing_id)
    if thing is None:
        raise NotFound("No such thing.")
    return {"id": thing.id, "name": thing.name}


@router.post("/things", status_code=201, dependencies=[require_scope("registration:write")])
def create_thing(session: SessionDep, thing_id: str | None = None) -> dict[str, str]:
    """With `thing_id` of a thing that exists, the commit fails (a duplicate primary key)."""
    thing = Thing(name="made") if thing_id is None else Thing(id=thing_id, name="again")
    session.add(thing)
    if thing_id is None:
        session.flush()  # what services do for early ids: it must keep working
    return {"id": thing.id}


def thing_name(reader: ReadConnection, *, thing_id: str) -> str | None:
    table = Thing.__table__  # type: ignore[attr-defined]
    return reader.execute(select(table.c.name).where(table.c.id == thing_id)).scalar()


@router.get("/things/{thing_id}/name")
async def read_thing_name(
    thing_id: str, access: Annotated[ReadAccess, read_access("registration:read")]
) -> Response:
    """A hot read as services write one: answered without FastAPI's handler (`kit.routing.lean_app`)."""
    return JSONResponse({"name": await access.reader.run(thing_name, thing_id=thing_id)})


class SampleSettings(ServiceSettings):
    service_name: str = "sample"


def create_tables(_app: FastAPI, database: Database) -> None:
    SampleTable.metadata.drop_all(database.writer)
    SampleTable.metadata.create_all(database.writer)


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    app = build_service_app(
        settings=make_test_settings(SampleSettings, data_dir, migrate_on_start=False),
        title="sample",
        description="a service of one table",
        routers=[router],
        outbox_model=OutboxEvent,
        migrations_dir=data_dir,
        on_startup=create_tables,
    )
    headers = internal_headers(audience="sample")
    with TestClient(app, headers=headers, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function handed to a worker thread (Starlette and kit both use anyio's)."""
    seen: list[str] = []
    run_sync: Callable[..., Any] = anyio.to_thread.run_sync

    async def counting_run_sync(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(function, "__name__", repr(function)))
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting_run_sync)
    return seen


def test_a_read_runs_its_handler_commit_and_close_in_one_worker_thread_hop(
    client: TestClient, hops: list[str]
) -> None:
    thing_id = client.post("/things").json()["id"]
    hops.clear()
    threads.clear()

    answer = client.get(f"/things/{thing_id}")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": thing_id, "name": "made"}
    assert len(hops) == 1, hops
    assert threads["commit"] == threads["handler"] == threads["close"] != threading.get_ident()


def test_a_commit_that_fails_answers_an_error_not_success(client: TestClient) -> None:
    thing_id = client.post("/things").json()["id"]

    answer = client.post("/things", params={"thing_id": thing_id})

    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert client.get(f"/things/{thing_id}").json()["name"] == "made"


def test_the_unit_of_work_is_rolled_back_when_the_handler_raises(client: TestClient) -> None:
    answer = client.get("/things/missing")

    assert answer.status_code == 404
    assert client.post("/things").status_code == 201  # the writer connection went back to the pool


def test_a_lean_read_hops_only_where_the_database_is_across_a_network(
    client: TestClient, hops: list[str]
) -> None:
    thing_id = client.post("/things").json()["id"]
    hops.clear()

    answer = client.get(f"/things/{thing_id}/name")

    assert answer.json() == {"name": "made"}
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    assert len(hops) == (0 if database.is_sqlite else 1), hops  # SQLite: on the event loop
    assert database.reader.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_lean_reads_on_sqlite_share_the_event_loops_own_connection(client: TestClient) -> None:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    if not database.is_sqlite:
        pytest.skip("PostgreSQL reads take a pooled connection in a worker thread")
    thing_id = client.post("/things").json()["id"]

    names = [client.get(f"/things/{thing_id}/name").json() for _ in range(3)]

    assert names == [{"name": "made"}] * 3
    assert database.reader.pool.checkedin() == 0  # type: ignore[attr-defined]  # none from the pool
    connection = database.loop_connection()
    assert not connection.in_transaction()  # no snapshot held between reads: the WAL can checkpoint
    assert client.get(f"/things/{thing_id}/name").json() == {"name": "made"}
    assert database.loop_connection() is connection


def test_a_read_connection_executes_only_inside_run(client: TestClient) -> None:
    reader = ReadConnection(client.app.state.database)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="run"):
        reader.execute(select(Thing.__table__))  # type: ignore[attr-defined]


def test_a_lean_read_checks_its_scope_and_refuses_a_patients_app(client: TestClient) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    [route] = [r for r in app.routes if isinstance(r, APIRoute) and r.path == "/things/{thing_id}/name"]
    assert getattr(route.app, "lean", False)  # this read is answered without FastAPI's handler
    thing_id = client.post("/things").json()["id"]

    without_scope = client.get(
        f"/things/{thing_id}/name", headers=internal_headers(scopes={"registration:write"}, audience="sample")
    )
    for_a_patient = client.get(
        f"/things/{thing_id}/name",
        headers=internal_headers(scopes={"registration:read"}, audience="sample", patient="P1"),
    )
    unsigned = client.get(f"/things/{thing_id}/name", headers={"authorization": "Bearer pf1.forged.x"})

    assert without_scope.status_code == 403
    assert without_scope.json()["type"].endswith("scope-missing")
    assert for_a_patient.status_code == 403
    assert for_a_patient.json()["type"].endswith("patient-route-forbidden")
    assert unsigned.status_code == 401
