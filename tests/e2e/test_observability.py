"""Observability with real processes: no personal data in any log, request ids in them, metrics scraped."""

import json
import random
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kit.requestid import is_safe_request_id
from kit.testing import HTTP_TIMEOUT_SECONDS
from patientflow.supervisor import System
from tests.e2e.clients import Gateway, assert_problem, eventually, ok, random_id_number

Samples = list[tuple[str, dict[str, str], float]]


def chinese_name() -> str:
    """A name no other test uses: a two-character surname and three random CJK characters."""
    return "欧阳" + "".join(chr(random.randint(0x4E00, 0x9FA5)) for _ in range(3))


def mobile_number() -> str:
    return f"139{random.randint(0, 99_999_999):08d}"


def scrape(response: httpx.Response) -> Samples:
    assert response.status_code == 200, response.text
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample with this name whose labels include `labels`, if any."""
    found = [v for n, have, v in samples if n == name and labels.items() <= have.items()]
    return found[0] if found else None


def log_text(system: System) -> str:
    return "\n".join(path.read_text(errors="replace") for path in Path(system.data_dir / "logs").glob("*"))


def test_canaries_never_reach_the_logs_but_request_ids_do(system: System, gateway: Gateway) -> None:
    name, id_number, phone = chinese_name(), random_id_number(), mobile_number()
    wrong_check = id_number[:17] + ("0" if id_number[17] != "0" else "1")
    trace = f"obs-{uuid.uuid4().hex[:12]}"
    body = {"id_number": id_number, "name": name, "phone": phone}

    created = ok(gateway.his.post("/v1/patients", json=body, headers={"x-request-id": trace}), 201)
    assert_problem(gateway.his.post("/v1/patients", json=body), 409)
    assert_problem(gateway.his.post("/v1/patients", json={**body, "id_number": wrong_check}), 422)
    assert_problem(gateway.his.post("/v1/patients", json={**body, "phone": f"{phone}x"}), 422)
    assert_problem(gateway.his.post("/v1/patients", json={**body, "surprise": name}), 422)
    # the canaries in a query string too: the access log must not copy it
    lookup = gateway.his.get(f"/v1/patients/{created['id']}", params={"id_number": id_number, "phone": phone})
    assert ok(lookup)["name"] == name
    ok(
        gateway.his.post(
            "/v1/visits", json={"patient_id": created["id"], "kind": "outpatient", "department": "obs"}
        ),
        201,
    )

    def access_lines() -> list[dict[str, object]] | None:
        lines = [json.loads(line) for line in log_text(system).splitlines() if trace in line]
        access = [line for line in lines if line["logger"] == "patientflow.access"]
        return access if len(access) >= 2 else None  # the gateway's line and registration's

    lines = eventually(access_lines, what=f"access log lines for request {trace}", deadline_seconds=10)
    services = {line["service"] for line in lines}
    assert {"gateway", "registration"} <= services
    gateway_line = next(line for line in lines if line["service"] == "gateway")
    assert (gateway_line["method"], gateway_line["route"], gateway_line["status"]) == (
        "POST",
        "/v1/patients",
        201,
    )
    assert {"ts", "level", "logger", "message", "duration_ms"} <= gateway_line.keys()

    logs = log_text(system)
    for line in filter(None, logs.splitlines()):
        assert isinstance(json.loads(line), dict), line  # every process writes JSON lines only
    for canary in (name, id_number, wrong_check, phone):
        assert canary not in logs, f"{canary!r} is in the logs"


def test_metrics_on_the_gateway_need_a_key_with_metrics_read(gateway: Gateway) -> None:
    assert_problem(gateway.anonymous.get("/metrics"), 401)
    assert_problem(gateway.lab.get("/metrics"), 403)
    ok(gateway.cashier.get("/v1/catalogue"))
    samples = scrape(gateway.admin.get("/metrics"))
    labels = {"service": "gateway", "route": "/v1/catalogue", "method": "GET", "status": "200"}
    assert (value(samples, "patientflow_http_requests_total", **labels) or 0) >= 1
    assert value(samples, "patientflow_http_request_duration_seconds_count", **labels)
    for upstream in ("registration", "triage", "results", "billing"):
        assert value(samples, "patientflow_circuit_state", upstream=upstream) == 0, upstream  # closed
    assert not any(s[1].get("route", "").count("-") >= 4 for s in samples)  # no uuids as labels


def test_services_expose_open_metrics_with_request_counts_feed_lag_and_outbox(
    system: System, gateway: Gateway
) -> None:
    gateway.his.get(f"/v1/visits/{uuid.uuid4()}")  # a 404 through to registration
    with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as client:
        registration = scrape(client.get(f"{system.url('registration')}/metrics"))
        labels = {"service": "registration", "route": "/visits/{visit_id}", "method": "GET", "status": "404"}
        assert (value(registration, "patientflow_http_requests_total", **labels) or 0) >= 1
        assert (value(registration, "patientflow_outbox_position", service="registration") or 0) >= 1

        def billing_caught_up() -> Samples | None:
            billing = scrape(client.get(f"{system.url('billing')}/metrics"))
            cursor = value(billing, "patientflow_feed_cursor", consumer="billing", source="registration")
            return billing if cursor else None

        billing = eventually(billing_caught_up, what="billing's feed cursor on registration")
        assert (
            value(billing, "patientflow_feed_lag_seconds", consumer="billing", source="registration")
            is not None
        )
        if "events" in system.ports:
            hub = scrape(client.get(f"{system.url('events')}/metrics"))
            names = {n for n, _, _ in hub}
            assert {"patientflow_webhook_backlog", "patientflow_events_ingest_lag_seconds"} <= names, names


def test_a_request_id_carrying_personal_data_is_replaced_at_every_hop(
    system: System, gateway: Gateway
) -> None:
    id_number = random_id_number()
    sent = [id_number.encode(), f"trace-{id_number}".encode(), "追踪-编号".encode(), b"r" * 10_240]
    # ... and the same numbers cut up by the separators an id may hold
    sent += [
        f"{id_number[:6]}-{id_number[6:14]}.{id_number[14:]}".encode(),
        b"138-0013-8000",
        b"t:13800138000",
    ]
    minted = []
    for value in sent:
        response = gateway.his.get(f"/v1/patients/{uuid.uuid4()}", headers=[(b"x-request-id", value)])
        problem = assert_problem(response, 404)  # answered by registration, behind the gateway
        request_id = response.headers["x-request-id"]
        assert request_id.encode() != value and is_safe_request_id(request_id)
        assert problem["instance"] == f"urn:request:{request_id}"
        minted.append(request_id)

    def access_lines() -> list[dict[str, object]] | None:
        lines = [json.loads(line) for line in log_text(system).splitlines() if minted[0] in line]
        access = [line for line in lines if line["logger"] == "patientflow.access"]
        return access if len(access) >= 2 else None

    # the minted id is the one every hop logs, so the request can still be followed
    lines = eventually(access_lines, what=f"access log lines for request {minted[0]}", deadline_seconds=10)
    assert {"gateway", "registration"} <= {line["service"] for line in lines}
    assert id_number not in log_text(system)
