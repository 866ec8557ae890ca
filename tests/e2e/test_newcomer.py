"""What a newcomer meets first, with real processes: offline API docs, quiet logs, a live event stream,
and one name per catalogue code (issue 7, item 8)."""

import json
import re

import pytest

from patientflow.supervisor import System
from tests.e2e.clients import Gateway, charges_of_visit, eventually, ok, register_patient, unique_department
from tests.events.sse import sse_messages, take_events

CBC = "250101015"
ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("component", ["gateway", "registration", "events"])
def test_docs_load_swagger_ui_from_the_process_itself(
    system: System, gateway: Gateway, component: str
) -> None:
    base = system.url(component)
    page = gateway.anonymous.get(f"{base}/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert {url.rsplit(".", 1)[-1] for url in urls} == {"js", "css", "png"}
    for url in urls:
        asset = gateway.anonymous.get(f"{base}{url}")
        assert asset.status_code == 200, url
        assert ASSET_TYPES["." + url.rsplit(".", 1)[-1]] in asset.headers["content-type"]
        assert len(asset.content) > 1000
    document = gateway.anonymous.get(f"{base}/openapi.json")
    assert document.status_code == 200 and "paths" in document.json()


def test_feed_polls_leave_no_info_lines_in_a_services_log(system: System, gateway: Gateway) -> None:
    patient = register_patient(gateway.his)
    body = {"patient_id": patient["id"], "kind": "outpatient", "department": unique_department()}
    visit = ok(gateway.his.post("/v1/visits", json=body), 201)
    charges_of_visit(gateway, visit["id"], at_least=1)  # billing polled registration's feed to get it

    def access_lines() -> list[dict[str, object]] | None:
        text = (system.data_dir / "logs" / "registration.log").read_text(encoding="utf-8")
        lines = [json.loads(line) for line in text.splitlines() if '"patientflow.access"' in line]
        return lines if any(line["route"] == "/visits" for line in lines) else None

    lines = eventually(access_lines, what="the visit's access line in registration.log")
    # Answered polls stay at DEBUG; a refused one (other tests send feeds bad cursors) is worth an INFO line.
    polls = [
        line for line in lines if line["route"] in ("/events", "/readyz") and int(str(line["status"])) < 400
    ]
    assert polls == [], polls[:3]
    assert all(line["level"] == "INFO" for line in lines)


def logged(gateway: Gateway, patient_id: str) -> bool:
    """Whether the hub's log holds this patient's registration (read page by page)."""
    after = 0
    while True:
        params: dict[str, str | int] = {"after": after, "limit": 100, "type": "patient.registered"}
        page = ok(gateway.his.get("/v1/events", params=params))
        if any(event["patient_id"] == patient_id for event in page["events"]):
            return True
        if not page["events"] and page["next_after"] == after:
            return False
        after = page["next_after"]


def test_a_stream_through_the_gateway_starts_live_and_after_0_replays(gateway: Gateway) -> None:
    older = register_patient(gateway.his)
    eventually(lambda: logged(gateway, older["id"]), what="the older patient's event in the hub's log")
    with gateway.his.stream("GET", "/v1/events/stream", params={"type": "patient.registered"}) as response:
        lines = response.iter_lines()
        assert next(sse_messages(lines)).comment == "stream open"
        newer = register_patient(gateway.his)
        [first] = take_events(lines, 1)
    assert first.json()["patient_id"] == newer["id"]
    with gateway.his.stream("GET", "/v1/events/stream", params={"after": 0}) as response:
        [replayed] = take_events(response.iter_lines(), 1)
    assert int(replayed.json()["position"]) < int(first.json()["position"])


def test_an_order_and_its_charge_name_the_test_alike(gateway: Gateway) -> None:
    patient = register_patient(gateway.his)
    body = {"patient_id": patient["id"], "kind": "outpatient", "department": unique_department()}
    visit = ok(gateway.his.post("/v1/visits", json=body), 201)
    order = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
    charges = charges_of_visit(gateway, visit["id"], at_least=2)
    [charge] = [c for c in charges if c["item_code"] == CBC]
    assert order["test_name"] == charge["item_name"] == "血细胞分析(全血细胞计数+五分类)"
