"""The journey view: how the timeline and waits are built, and how the fan-out degrades."""

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from gateway.app import create_app as create_gateway
from gateway.config import GatewaySettings
from gateway.errors import CircuitOpen, RegistrationUnavailable, UpstreamTimeout, VisitNotFound
from gateway.journey import JourneyReader, timeline, waits
from gateway.keys import Caller
from kit.auth import TokenSource
from kit.errors import ProblemError
from kit.testing import TEST_SECRET
from tests.gateway.factories import bearer, gateway_settings
from tests.gateway.servers import serve

VISIT_ID = "v-1"
ALL_READS = frozenset({"registration:read", "triage:read", "results:read", "billing:read"})
NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def at(minute: int, second: int = 0) -> str:
    """An instant on the morning of the visit, as the services write them."""
    return f"2025-03-01T09:{minute:02d}:{second:02d}Z"


VISIT = {
    "id": VISIT_ID, "patient_id": "p-1", "kind": "emergency", "department": "emergency",
    "payment_mode": "prepay", "status": "open", "opened_at": at(0),
}  # fmt: skip
ASSESSMENT = {"id": "a-1", "level": "III", "zone": "yellow", "response_minutes": 30, "assessed_at": at(4)}
TICKET: dict[str, str | None] = {
    "id": "t-1", "display_number": "E003", "department": "emergency", "priority": "normal",
    "enqueued_at": at(5), "called_at": at(17), "finished_at": at(25), "counter": "2",
}  # fmt: skip
WAITING_TICKET = TICKET | {"id": "t-2", "display_number": "X001", "department": "xray"}
WAITING_TICKET |= {"enqueued_at": at(26), "called_at": None, "finished_at": None, "counter": None}
ORDER = {
    "id": "o-1", "test_code": "250101015", "test_name": "血常规", "status": "reported",
    "ordered_at": at(10), "released_at": at(12),
}  # fmt: skip
PENDING_ORDER = ORDER | {"id": "o-2", "test_code": "210300001", "status": "released", "ordered_at": at(11)}
REPORTS = [
    {
        "id": "r-0",
        "order_id": "o-1",
        "test_code": "250101015",
        "status": "preliminary",
        "reported_at": at(15),
    },
    {"id": "r-1", "order_id": "o-1", "test_code": "250101015", "status": "final", "reported_at": at(18)},
]
CHARGE = {
    "id": "c-1", "item_code": "250101015", "item_name": "血常规", "amount_fen": 2000,
    "status": "paid", "payment_id": "pay-1", "charged_at": at(10, 30),
}  # fmt: skip
UNPAID = CHARGE | {
    "id": "c-2",
    "amount_fen": 16000,
    "status": "unpaid",
    "payment_id": None,
    "charged_at": at(11),
}
ACCOUNT = {"status": "open", "paid_fen": 2000, "charges": [CHARGE, UNPAID]}
PARTS = {
    "assessments": [ASSESSMENT],
    "tickets": [TICKET, WAITING_TICKET],
    "orders": [ORDER, PENDING_ORDER],
    "reports": REPORTS,
    "account": ACCOUNT,
}


# --- building the timeline and the waits ---------------------------------------------------------


def test_timeline_lists_every_dated_step_oldest_first() -> None:
    entries = timeline(VISIT, PARTS)
    assert [(e.at.minute, e.stage) for e in entries] == [
        (0, "registered"),
        (4, "triaged"),
        (5, "queued"),
        (10, "order_placed"),
        (10, "charge_posted"),
        (11, "order_placed"),
        (11, "charge_posted"),
        (12, "order_released"),
        (12, "order_released"),
        (15, "report_preliminary"),
        (17, "called"),
        (18, "report_final"),
        (25, "consultation_finished"),
        (26, "queued"),
    ]
    called = next(e for e in entries if e.stage == "called")
    assert (
        called.service == "triage" and called.details["ticket"] == "E003" and called.details["counter"] == "2"
    )
    charge = next(e for e in entries if e.stage == "charge_posted")
    assert charge.details["amount_fen"] == 2000 and charge.details["item_code"] == "250101015"


def movement(kind: str, minute: int, ward: str, bed: str, **extra: Any) -> dict[str, Any]:
    found = {"from_department": None, "from_ward": None, "from_bed": None, "note": None} | extra
    return found | {
        "kind": kind,
        "at": at(minute),
        "department": ward,
        "ward": ward,
        "bed": bed,
        "bed_class": "icu",
    }


def test_an_admission_each_transfer_the_discharge_and_the_close_are_on_the_timeline() -> None:
    stay = {
        "movements": [
            movement("admission", 30, "icu", "1"),
            movement(
                "transfer",
                40,
                "surgery",
                "7",
                from_department="icu",
                from_ward="icu",
                from_bed="1",
                note="交接",
            ),
            movement("discharge", 50, "surgery", "7"),
        ]
    }
    closed = VISIT | {
        "kind": "inpatient",
        "status": "closed",
        "closed_at": at(50),
        "close_reason": "discharged",
    }
    entries = timeline(closed, {"stay": stay})
    assert [(e.at.minute, e.stage) for e in entries] == [
        (0, "registered"), (30, "admitted"), (40, "transferred"), (50, "discharged"), (50, "closed"),
    ]  # fmt: skip
    transferred = entries[2]
    assert (transferred.service, transferred.details["from_ward"], transferred.details["note"]) == (
        "registration", "icu", "交接",
    )  # fmt: skip
    assert "from_ward" not in entries[1].details and entries[4].details == {"reason": "discharged"}


def test_waits_per_stage_against_the_target() -> None:
    found = waits(VISIT, PARTS, now=NOW, target_minutes=10)
    summary = [(w.stage, w.minutes, w.waiting, w.exceeded) for w in found]
    assert summary == [
        ("registration_to_triage", 4.0, False, False),
        ("queue", 12.0, False, True),  # E003: queued 09:05, called 09:17
        ("queue", 4.0, True, False),  # X001: still waiting, 09:26 until now (09:30)
        ("order_to_report", 8.0, False, False),  # the final report, not the preliminary one
        ("order_to_report", 19.0, True, True),  # no report yet
        ("charge_to_payment", 19.0, True, True),  # the unpaid charge; the paid one's time is unknown
    ]
    assert found[1].details == {"ticket": "E003", "department": "emergency"}
    assert found[3].ended_at is not None and found[4].ended_at is None


def test_payments_and_settlement_appear_when_billing_lists_them() -> None:
    payment = {"id": "pay-1", "amount_fen": 2000, "method": "wechat", "paid_at": at(13)}
    account = ACCOUNT | {"payments": [payment], "settled_at": at(29)}
    entries = timeline(VISIT, {"account": account})
    assert [e.stage for e in entries] == [
        "registered",
        "charge_posted",
        "charge_posted",
        "payment",
        "settled",
    ]
    paid = [w for w in waits(VISIT, {"account": account}, now=NOW, target_minutes=10) if w.ended_at]
    assert [(w.details["charge_id"], w.minutes) for w in paid] == [("c-1", 2.5)]


def test_charges_paid_at_the_end_by_design_are_not_waits() -> None:
    green = VISIT | {"payment_mode": "green_channel"}
    assert [w.stage for w in waits(green, {"account": ACCOUNT}, now=NOW, target_minutes=10)] == []


def test_an_emergency_not_yet_triaged_is_waiting_for_triage() -> None:
    (wait,) = waits(VISIT, {"assessments": []}, now=NOW, target_minutes=10)
    assert (wait.stage, wait.minutes, wait.waiting, wait.exceeded) == (
        "registration_to_triage",
        30.0,
        True,
        True,
    )
    outpatient = VISIT | {"kind": "outpatient"}  # outpatients need no triage
    assert waits(outpatient, {"assessments": []}, now=NOW, target_minutes=10) == []


# --- the fan-out -----------------------------------------------------------------------------------


class FakeUpstreams:
    """Answers by path from `answers` (status, body) or raises the ProblemError given; records calls."""

    circuit_retry_after = 1

    def __init__(self, answers: dict[str, tuple[int, Any] | ProblemError]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, float | None]] = []

    async def send(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.calls.append((service, path, kwargs.get("deadline_seconds")))
        answer = self.answers.get(path, (404, {"detail": "no such route"}))
        if isinstance(answer, ProblemError):
            raise answer
        status, body = answer
        return httpx.Response(status, json=body)


def answers(**overrides: tuple[int, Any] | ProblemError) -> dict[str, tuple[int, Any] | ProblemError]:
    paths = {
        "registration": f"/visits/{VISIT_ID}",
        "stay": f"/visits/{VISIT_ID}/stay",
        "assessments": f"/visits/{VISIT_ID}/assessments",
        "tickets": f"/visits/{VISIT_ID}/tickets",
        "orders": f"/visits/{VISIT_ID}/orders",
        "reports": f"/visits/{VISIT_ID}/reports",
        "account": f"/visits/{VISIT_ID}/account",
    }
    found: dict[str, tuple[int, Any] | ProblemError] = {
        paths["registration"]: (200, VISIT),
        paths["stay"]: (404, {"detail": "This visit has no inpatient stay."}),  # never admitted
    }
    found |= {paths[name]: (200, body) for name, body in PARTS.items()}
    return found | {paths[name]: answer for name, answer in overrides.items()}


def caller(scopes: frozenset[str] = ALL_READS, patient: str | None = None) -> Caller:
    tokens = TokenSource(TEST_SECRET, "his-dev", scopes, patient=patient)
    return Caller("his-dev", "his", scopes, tokens, patient=patient)


def read(upstreams: FakeUpstreams, who: Caller | None = None) -> Any:
    settings = GatewaySettings(environment="test", internal_secret=TEST_SECRET, journey_part_timeout=0.7)
    return asyncio.run(JourneyReader(settings, upstreams).read(who or caller(), VISIT_ID))  # type: ignore[arg-type]


def test_every_part_within_its_own_timeout_and_as_the_client() -> None:
    upstreams = FakeUpstreams(answers())
    journey = read(upstreams)
    assert journey.partial is False and journey.missing == [] and journey.withheld == []
    assert len(upstreams.calls) == 7  # the visit, its stay, and five parts of the other services
    assert {deadline for _service, _path, deadline in upstreams.calls} == {0.7}


def test_a_failing_part_is_missing_and_the_rest_still_answers() -> None:
    timeout = UpstreamTimeout("The results service did not answer in time.", service="results")
    journey = read(FakeUpstreams(answers(orders=timeout, reports=CircuitOpen("results", retry_after=1))))
    assert journey.partial is True
    assert [(m.service, m.part, m.status) for m in journey.missing] == [
        ("results", "orders", 504),
        ("results", "reports", 503),
    ]
    assert journey.missing[0].detail == "The results service did not answer in time."
    assert {e.stage for e in journey.timeline} >= {"registered", "triaged", "queued", "charge_posted"}
    assert not any(e.service == "results" for e in journey.timeline)


def test_no_account_yet_is_not_a_missing_part() -> None:
    journey = read(FakeUpstreams(answers(account=(404, {"detail": "no account"}))))
    assert journey.partial is False
    assert not any(e.service == "billing" for e in journey.timeline)


def test_a_body_of_the_wrong_shape_is_a_missing_part() -> None:
    journey = read(FakeUpstreams(answers(tickets=(200, {"not": "a list"}))))
    assert [(m.part, m.status) for m in journey.missing] == [("tickets", 502)]


def test_parts_the_client_may_not_read_are_withheld_and_never_fetched() -> None:
    upstreams = FakeUpstreams(answers())
    journey = read(upstreams, caller(frozenset({"registration:read", "triage:read"})))
    assert [(w.service, w.part, w.scope) for w in journey.withheld] == [
        ("results", "orders", "results:read"),
        ("results", "reports", "results:read"),
        ("billing", "account", "billing:read"),
    ]
    assert {service for service, _path, _deadline in upstreams.calls} == {"registration", "triage"}
    assert journey.partial is False


def test_unknown_visit_is_404_and_registration_down_is_503() -> None:
    with pytest.raises(VisitNotFound):
        read(FakeUpstreams(answers(registration=(404, {"detail": "No visit."}))))
    with pytest.raises(RegistrationUnavailable) as raised:
        read(FakeUpstreams(answers(registration=CircuitOpen("registration", retry_after=1))))
    assert raised.value.status == 503 and raised.value.headers["Retry-After"] == "1"


def test_a_patient_bound_client_sees_only_its_own_patients_visits() -> None:
    assert read(FakeUpstreams(answers()), caller(patient="p-1")).patient_id == "p-1"
    with pytest.raises(VisitNotFound):  # the same answer as for a visit that does not exist
        read(FakeUpstreams(answers()), caller(patient="p-2"))


# --- over HTTP: a part slower than its timeout ---------------------------------------------------


class VisitService:
    """Answers GETs from `bodies` by path; paths in `slow` only after the test releases them."""

    def __init__(self, bodies: dict[str, Any], slow: frozenset[str] = frozenset()) -> None:
        self.bodies, self.slow = bodies, slow
        self.released = threading.Event()  # set by the test, from its own thread

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] in self.slow:  # answers only once the test has seen the gateway give up on it
            await asyncio.to_thread(self.released.wait, 30)
        status, payload = (200, self.bodies[scope["path"]]) if scope["path"] in self.bodies else (404, {})
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def journey_gateway(keys_file: Path) -> Iterator[str]:
    visits = f"/visits/{VISIT_ID}"
    registration = VisitService({visits: VISIT})
    triage = VisitService({f"{visits}/assessments": [ASSESSMENT], f"{visits}/tickets": [TICKET]})
    results = VisitService(
        {f"{visits}/orders": [ORDER], f"{visits}/reports": REPORTS}, slow=frozenset({f"{visits}/orders"})
    )
    billing = VisitService({f"{visits}/account": ACCOUNT})
    with (
        serve(registration) as registration_url,
        serve(triage) as triage_url,
        serve(results) as results_url,
        serve(billing) as billing_url,
    ):
        settings = gateway_settings(
            keys_file,
            registration_url=registration_url,
            triage_url=triage_url,
            results_url=results_url,
            billing_url=billing_url,
            journey_part_timeout=0.3,
        )
        try:
            with serve(create_gateway(settings)) as url:
                yield url
        finally:
            results.released.set()  # the held answer goes out (to nobody) and the servers can stop


def test_a_part_slower_than_its_timeout_is_missing_over_http(
    journey_gateway: str, api_keys: dict[str, str]
) -> None:
    response = httpx.get(
        f"{journey_gateway}/v1/visits/{VISIT_ID}/journey", headers=bearer(api_keys["his-dev"]), timeout=5
    )
    assert response.status_code == 200, response.text
    journey = response.json()
    assert journey["partial"] is True
    assert [(m["service"], m["part"], m["status"]) for m in journey["missing"]] == [
        ("results", "orders", 504)
    ]
    assert {"registered", "triaged", "queued", "report_final", "charge_posted"} <= {
        e["stage"] for e in journey["timeline"]
    }


def test_journey_needs_a_key_and_registration_read(journey_gateway: str, api_keys: dict[str, str]) -> None:
    url = f"{journey_gateway}/v1/visits/{VISIT_ID}/journey"
    assert httpx.get(url, timeout=5).status_code == 401
    no_scope = httpx.get(url, headers=bearer(api_keys["admin"]), timeout=5)
    assert no_scope.status_code == 403
    malformed = httpx.get(f"{journey_gateway}/v1/visits/bad.id/journey", headers=bearer(api_keys["his-dev"]))
    assert malformed.status_code == 400  # never pasted into a service's URL


def test_a_reversed_charge_is_a_correction_on_the_timeline_and_no_wait() -> None:
    line = UNPAID | {"id": "c-rev", "amount_fen": -16000, "reversal_of": "c-2", "charged_at": at(25)}
    account = ACCOUNT | {"charges": [CHARGE, UNPAID, line]}
    assert [e.stage for e in timeline(VISIT, {"account": account})][-1] == "charge_reversed"
    open_waits = [w for w in waits(VISIT, {"account": account}, now=NOW, target_minutes=10) if w.waiting]
    assert [w.details["charge_id"] for w in open_waits] == []


def test_an_order_waits_for_its_report_against_its_own_turnaround_target() -> None:
    """Results gives each order its target (emergency 2 h, routine 24 h): 19 minutes without a report
    is within an emergency order's 120, while an order without a target keeps the window's 10."""
    emergency = PENDING_ORDER | {"target_minutes": 120}
    parts = {"orders": [emergency, PENDING_ORDER | {"id": "o-3"}], "reports": []}
    judged = [
        (w.minutes, w.exceeded, w.target_minutes) for w in waits(VISIT, parts, now=NOW, target_minutes=10)
    ]
    assert judged == [(19.0, False, 120), (19.0, True, 10)]
    late = waits(
        VISIT,
        parts | {"orders": [emergency]},
        now=datetime(2025, 3, 1, 11, 30, tzinfo=UTC),
        target_minutes=10,
    )
    assert [(w.minutes, w.exceeded) for w in late] == [(139.0, True)]
