"""Every error a client can meet is RFC 9457 problem+json."""

import random
import re
import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from kit import requestid
from kit.errors import NotFound, install_error_handlers
from kit.requestid import RequestIdMiddleware, is_safe_request_id, new_request_id


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
