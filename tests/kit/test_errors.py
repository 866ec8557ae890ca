"""Every error a client can meet is RFC 9457 problem+json."""

import random
import re
import sqlite3
import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import BaseModel
from sqlalchemy import Engine, create_engine, make_url, text

from kit import requestid
from kit.errors import NotFound, install_error_handlers
from kit.requestid import RequestIdMiddleware, is_safe_request_id, new_request_id
from kit.testing import database_url_under_test


class Body(BaseModel):
    name: str
    age: int


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/missing")
    def missing() -> None:
        raise NotFound("No such thing.", slug="thing-not-found")

    @app.post("/things")
    def create(body: Body, after: int = 0) -> Body:
        return body

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("secret internals")

    return app


client = TestClient(make_app(), raise_server_exceptions=False)


def test_domain_error_is_problem_json_with_request_id() -> None:
    response = client.get("/missing", headers={"x-request-id": "req-123"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "req-123"
    assert response.json() == {
        "type": "https://patientflow.dev/problems/thing-not-found",
        "title": "Not found",
        "status": 404,
        "detail": "No such thing.",
        "instance": "urn:request:req-123",
    }


def test_validation_error_is_422_problem_without_the_submitted_values() -> None:
    response = client.post("/things", json={"name": "患者姓名", "age": "not-a-number"})
    assert response.status_code == 422
    body = response.json()
    assert body["type"].endswith("/validation-error") and body["errors"][0]["loc"] == ["body", "age"]
    assert "患者姓名" not in response.text and "not-a-number" not in response.text


def test_a_bad_query_value_is_400_invalid_parameter_without_the_value() -> None:
    response = client.post("/things", params={"after": "9223372036854775808x"}, json={"name": "a", "age": 1})
    assert response.status_code == 400
    body = response.json()
    assert body["type"].endswith("/invalid-parameter") and body["errors"][0]["loc"] == ["query", "after"]
    assert "9223372036854775808x" not in response.text


def test_a_bad_body_beside_a_bad_parameter_is_still_422() -> None:
    response = client.post("/things", params={"after": "x"}, json={"name": "a", "age": "x"})
    assert response.status_code == 422
    assert response.json()["type"].endswith("/validation-error")


def test_unknown_route_and_wrong_method_are_problems() -> None:
    assert client.get("/nowhere").headers["content-type"] == "application/problem+json"
    assert client.delete("/missing").status_code == 405


def test_unexpected_error_is_500_problem_without_internals() -> None:
    response = client.get("/crash")
    assert response.status_code == 500
    assert response.json()["title"] == "Internal server error"
    assert "secret internals" not in response.text


def test_unexpected_error_carries_the_request_id_for_support() -> None:
    response = client.get("/crash", headers={"x-request-id": "req-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["instance"] == "urn:request:req-500"
    assert response.headers["x-request-id"] == "req-500"


@pytest.mark.parametrize(
    "sent",
    [
        b"110105199003071234",  # an identity number
        b"11010519900307123X",
        b"110105900307123",  # the old 15-digit kind
        b"req-110105199003071234-1",  # inside a longer id
        b"13912345678",  # a mobile number
        "请求-1".encode(),  # not ASCII
        b"a" * 10_240,  # far too long
        b"",
    ],
)
def test_an_unsafe_request_id_is_replaced_everywhere_it_would_appear(sent: bytes) -> None:
    response = client.get("/missing", headers=[(b"x-request-id", sent)])
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id) and request_id.encode() != sent
    assert response.json()["instance"] == f"urn:request:{request_id}"


@pytest.mark.parametrize(
    "sent", ["req-123", str(uuid.UUID(int=0x12345678901234567890123456789012)), "a.b:c_d"]
)
def test_a_safe_request_id_is_kept(sent: str) -> None:
    assert client.get("/missing", headers={"x-request-id": sent}).headers["x-request-id"] == sent


def test_a_minted_request_id_passes_the_next_hops_check() -> None:
    """A service re-checks the gateway's id: one that failed there would lose the request's trail."""
    assert all(is_safe_request_id(new_request_id()) for _ in range(2_000))


def test_a_closed_visit_is_one_409_visit_closed_for_every_service() -> None:
    """triage, results and billing refuse new work for a closed visit with kit's one check."""
    from kit.errors import VisitClosed, ensure_visit_open

    ensure_visit_open("v-1", "open")
    ensure_visit_open("v-1", "settled")  # an inpatient visit billing settled before discharge still works
    with pytest.raises(VisitClosed) as refused:
        ensure_visit_open("v-1", "closed")
    problem = refused.value.to_problem()
    assert (problem["status"], problem["type"].rsplit("/", 1)[1]) == (409, "visit-closed")
    assert problem["visit_id"] == "v-1" and problem["detail"] == "Visit v-1 is closed; it takes no new work."
    with pytest.raises(VisitClosed) as charged:
        ensure_visit_open("v-1", "closed", detail="no new charge")
    assert charged.value.detail == "no new charge"


def test_a_hex_id_without_eleven_digits_in_a_row_passes_the_full_check() -> None:
    """`new_request_id` checks only for a run of 11 digits: every hex id it would keep must pass the
    full check too (ids drawn mostly from digits, so runs of 10 and numbers' shapes come up often)."""
    draw = random.Random(8)
    for _ in range(20_000):
        candidate = "".join(draw.choice("0123456789" * 4 + "abcdef") for _ in range(32))
        if not requestid.UNSAFE_MINTED_ID.search(candidate):
            assert is_safe_request_id(candidate), candidate


# --- A database that cannot serve now is a 503 to retry, not a 500


def _database_app(engine: Engine, statement: str) -> TestClient:
    """An app whose one route runs `statement` on `engine`, as a service's unit of work would."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    @app.post("/write")
    def write() -> None:
        with engine.begin() as connection:
            connection.execute(text(statement))

    return TestClient(app, raise_server_exceptions=False)


def _assert_database_unavailable(response: Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/database-unavailable")
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["instance"] == f"urn:request:{response.headers['x-request-id']}"
    assert "127.0.0.1" not in response.text and "locked" not in response.text  # no driver internals


def test_an_unreachable_postgresql_is_a_503_to_retry() -> None:
    # Port 1: nothing listens, the connection is refused at once.
    engine = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/test", connect_args={"connect_timeout": 2}
    )
    _assert_database_unavailable(_database_app(engine, "SELECT 1").post("/write"))


def test_sqlite_locked_by_another_writer_is_a_503_to_retry(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE thing (name TEXT)"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's writer, past our busy timeout
    try:
        client = _database_app(engine, "INSERT INTO thing VALUES ('x')")
        _assert_database_unavailable(client.post("/write"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM thing")).scalar() == 0


def test_a_pool_with_no_free_connection_is_a_503_to_retry(tmp_path: Path) -> None:
    engine = create_engine(
        f"sqlite:///{tmp_path / 'pool.db'}", pool_size=1, max_overflow=0, pool_timeout=0.01
    )
    with engine.connect():  # the pool's only connection, busy elsewhere
        _assert_database_unavailable(_database_app(engine, "SELECT 1").post("/write"))


@pytest.mark.skipif(
    not (database_url_under_test() or "").startswith("postgresql"), reason="PostgreSQL's own connection limit"
)
def test_postgresql_refusing_connections_is_a_503_to_retry() -> None:
    url = make_url(database_url_under_test() or "")
    admin = create_engine(url)
    with admin.begin() as connection:  # a login role the server admits no connection for (53300)
        connection.execute(
            text(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pf_no_connections') THEN "
                "CREATE ROLE pf_no_connections LOGIN CONNECTION LIMIT 0; END IF; END $$"
            )
        )
    admin.dispose()
    engine = create_engine(url.set(username="pf_no_connections"))
    _assert_database_unavailable(_database_app(engine, "SELECT 1").post("/write"))


def test_a_database_error_that_is_a_bug_stays_a_500(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'bug.db'}")
    response = _database_app(engine, "INSERT INTO no_such_table VALUES (1)").post("/write")
    assert response.status_code == 500
    assert response.json()["type"].endswith("/internal-error")
    assert "no_such_table" not in response.text
