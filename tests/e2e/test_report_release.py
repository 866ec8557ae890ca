"""Results in depth through the real gateway and services, as users meet it (issue 11): the one release
rule on every patient-facing route and channel (app, kiosk), critical values acknowledged by a clinician
only, a LIS posting the same report twice, and an amendment telling the kiosk that read the old one.

A second system, started for one test, runs a hospital that releases reports only once paid."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.clients import (
    Gateway,
    assert_problem,
    emergency_visit,
    eventually,
    ok,
    patient_session,
    register_patient,
)
from tests.e2e.conftest import PAYING_ENV, running_gateway

CBC = "250101015"  # 血细胞分析 (complete blood count)
TECHNICIAN = "李技师"
POTASSIUM = {"code": "K", "name": "钾", "value": "6.8", "unit": "mmol/L", "flag": "critical"}


def report(status: str = "final", **overrides: Any) -> dict[str, Any]:
    body = {
        "status": status,
        "conclusion": "正常",
        "observations": [{"code": "WBC", "name": "白细胞", "value": "6.1", "unit": "10^9/L"}],
    }
    return body | ({"verified_by": TECHNICIAN} if status == "final" else {}) | overrides


def order_for_new_patient(gateway: Gateway, payment_mode: str = "green_channel") -> dict[str, Any]:
    """A patient with a visit (green channel: the lab starts at once, nobody has paid) and one order."""
    patient = register_patient(gateway.his)
    visit = emergency_visit(gateway.his, patient["id"], payment_mode=payment_mode)
    order = ok(gateway.doctor.post("/v1/orders", json={"visit_id": visit["id"], "test_code": CBC}), 201)
    return {"person": patient, "visit": visit, "order": order}


class Device:
    """A kiosk or the app acting for one patient (a fresh patient token on every call)."""

    def __init__(self, gateway: Gateway, kind: str, person: dict[str, Any]) -> None:
        self.client = gateway.clients[kind]
        self.headers = {"x-patient-token": patient_session(gateway, person, kind)["token"]}

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path, headers=self.headers)

    def post(self, path: str, json: Any) -> httpx.Response:
        return self.client.post(path, json=json, headers=self.headers)

    def sees(self, case: dict[str, Any], report_id: str) -> dict[str, bool]:
        """Whether each patient-facing result route shows this device the report."""
        patient, visit = case["person"]["id"], case["visit"]["id"]
        by_patient = ok(self.get(f"/v1/patients/{patient}/reports"))
        by_visit = ok(self.get(f"/v1/visits/{visit}/reports"))
        one = self.get(f"/v1/reports/{report_id}")
        assert one.status_code in (200, 404), one.text
        return {
            "patient": report_id in [r["id"] for r in by_patient],
            "visit": report_id in [r["id"] for r in by_visit],
            "report": one.status_code == 200,
        }


NOWHERE = {"patient": False, "visit": False, "report": False}
EVERYWHERE = {"patient": True, "visit": True, "report": True}


@pytest.fixture(scope="module")
def a(gateway: Gateway) -> dict[str, Any]:
    """Patient A, whose final, verified report is out."""
    case = order_for_new_patient(gateway)
    case["report"] = ok(gateway.lab.post(f"/v1/orders/{case['order']['id']}/reports", json=report()), 201)
    return case


@pytest.fixture(scope="module")
def b_devices(gateway: Gateway) -> list[Device]:
    """Patient B, on the kiosk and in the app."""
    b = order_for_new_patient(gateway)
    return [Device(gateway, kind, b["person"]) for kind in ("kiosk", "app")]


def test_patient_b_never_reaches_patient_as_report_on_any_route_or_channel(
    gateway: Gateway, a: dict[str, Any], b_devices: list[Device]
) -> None:
    ids = {"patient": a["person"]["id"], "visit": a["visit"]["id"], "report": a["report"]["id"]}
    reads = [
        f"/v1/patients/{ids['patient']}/reports",
        f"/v1/visits/{ids['visit']}/reports",
        f"/v1/visits/{ids['visit']}/orders",
        f"/v1/visits/{ids['visit']}/journey",
        f"/v1/reports/{ids['report']}",
        f"/v1/orders/{a['order']['id']}",
    ]
    staff_only = [  # not bound to a patient: refused to an app or kiosk whoever's record it names
        ("get", "/v1/critical-values", None),
        ("post", f"/v1/reports/{ids['report']}/withhold", {"reason": "x"}),
        ("post", f"/v1/reports/{ids['report']}/amendments", report("amended", reason="x")),
        ("post", f"/v1/reports/{ids['report']}/verification", {"verified_by": "x"}),
        ("post", "/v1/lis/reports", report(external_id="X-1", order_id=a["order"]["id"])),
    ]
    for device in b_devices:
        for path in reads:
            response = device.get(path)
            if path.endswith("/reports"):  # a list: results answers it empty (and audits the refusal)
                assert (response.status_code, response.json()) == (200, []), path
            else:
                assert response.status_code in (403, 404), f"{path}: {response.status_code}"
            assert ids["report"] not in response.text, path
        for method, path, body in staff_only:
            response = device.get(path) if method == "get" else device.post(path, body)
            assert_problem(response, 403)
    # A's own kiosk does see it: the refusals above are about whose report it is.
    assert Device(gateway, "kiosk", a["person"]).sees(a, ids["report"]) == EVERYWHERE
    assert ok(gateway.doctor.get(f"/v1/reports/{ids['report']}"))["withheld"] is False


def test_a_preliminary_critical_report_never_reaches_the_patient_and_waits_for_a_clinician(
    gateway: Gateway,
) -> None:
    case = order_for_new_patient(gateway)
    department = case["visit"]["department"]
    preliminary = report("preliminary", observations=[POTASSIUM], conclusion="高钾血症")
    posted = ok(gateway.lab.post(f"/v1/orders/{case['order']['id']}/reports", json=preliminary), 201)
    for kind in ("kiosk", "app"):
        assert Device(gateway, kind, case["person"]).sees(case, posted["id"]) == NOWHERE, kind
    assert ok(gateway.doctor.get(f"/v1/reports/{posted['id']}"))["critical"] is True  # staff see it

    [value] = ok(gateway.doctor.get("/v1/critical-values", params={"department": department}))
    assert (value["report_id"], value["observation_code"], value["acknowledged_at"]) == (
        posted["id"],
        "K",
        None,
    )
    ack = {"acknowledged_by": "王医生"}
    for not_a_clinician in (gateway.nurse, gateway.lab, gateway.cashier):
        assert_problem(
            not_a_clinician.post(f"/v1/critical-values/{value['id']}/acknowledgement", json=ack), 403
        )
    acked = ok(gateway.doctor.post(f"/v1/critical-values/{value['id']}/acknowledgement", json=ack))
    assert acked["acknowledged_by"] == "王医生"
    assert ok(gateway.doctor.get("/v1/critical-values", params={"department": department})) == []
    assert_problem(gateway.doctor.post(f"/v1/critical-values/{value['id']}/acknowledgement", json=ack), 409)

    def acknowledged_in_the_log() -> bool:
        log = ok(
            gateway.his.get("/v1/events", params={"after": 0, "limit": 100, "type": "critical.acknowledged"})
        )
        return any(e["data"]["critical_value_id"] == value["id"] for e in log["events"])

    eventually(acknowledged_in_the_log, what="critical.acknowledged at the event hub")
    # Nor does the patient's app hear of it from the event log: clinical alerts are for staff.
    app = Device(gateway, "app", case["person"])
    hidden = "report.preliminary,report.critical,critical.acknowledged"
    seen = ok(app.get(f"/v1/events?after=0&limit=100&type={hidden},order.placed"))["events"]
    assert [e["type"] for e in seen] == ["order.placed"]


def test_a_withheld_report_is_hidden_from_kiosk_and_app_until_the_doctor_lifts_it(gateway: Gateway) -> None:
    case = order_for_new_patient(gateway)
    posted = ok(gateway.lab.post(f"/v1/orders/{case['order']['id']}/reports", json=report()), 201)
    devices = [Device(gateway, kind, case["person"]) for kind in ("kiosk", "app")]
    assert [d.sees(case, posted["id"]) for d in devices] == [EVERYWHERE] * 2

    ok(gateway.doctor.post(f"/v1/reports/{posted['id']}/withhold", json={"reason": "需当面告知病情"}))
    assert [d.sees(case, posted["id"]) for d in devices] == [NOWHERE] * 2
    assert_problem(gateway.lab.post(f"/v1/reports/{posted['id']}/unwithhold", json={"reason": "x"}), 403)
    ok(gateway.doctor.post(f"/v1/reports/{posted['id']}/unwithhold", json={"reason": "已当面告知"}))
    assert [d.sees(case, posted["id"]) for d in devices] == [EVERYWHERE] * 2


def test_an_unverified_final_report_reaches_the_patient_only_once_verified(gateway: Gateway) -> None:
    case = order_for_new_patient(gateway)
    unverified = report()
    unverified.pop("verified_by")
    posted = ok(gateway.lab.post(f"/v1/orders/{case['order']['id']}/reports", json=unverified), 201)
    kiosk = Device(gateway, "kiosk", case["person"])
    assert kiosk.sees(case, posted["id"]) == NOWHERE
    ok(gateway.lab.post(f"/v1/reports/{posted['id']}/verification", json={"verified_by": TECHNICIAN}))
    assert kiosk.sees(case, posted["id"]) == EVERYWHERE


def test_a_lis_posts_the_same_report_twice_and_a_kiosk_that_read_it_hears_of_the_correction(
    gateway: Gateway,
) -> None:
    case = order_for_new_patient(gateway)
    external_id = f"LIS-{case['order']['id'][:8]}"
    body = report(external_id=external_id, order_id=case["order"]["id"])
    first = gateway.lab.post("/v1/lis/reports", json=body)
    again = gateway.lab.post("/v1/lis/reports", json=body)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert first.json()["id"] == again.json()["id"]
    assert [r["id"] for r in ok(gateway.doctor.get(f"/v1/visits/{case['visit']['id']}/reports"))] == [
        first.json()["id"]
    ]
    assert_problem(gateway.his.post("/v1/lis/reports", json=body), 403)  # not a LIS

    kiosk = Device(gateway, "kiosk", case["person"])
    assert kiosk.sees(case, first.json()["id"]) == EVERYWHERE
    correction = body | {"status": "corrected", "conclusion": "更正：白细胞偏高", "reason": "复核"}
    corrected = ok(gateway.lab.post("/v1/lis/reports", json=correction))
    assert (corrected["status"], corrected["version"]) == ("corrected", 2)

    def notices() -> list[dict[str, Any]] | None:
        log = ok(
            gateway.his.get("/v1/events", params={"after": 0, "limit": 100, "type": "report.amended_notice"})
        )
        found = [e for e in log["events"] if e["data"]["report_id"] == first.json()["id"]]
        return found if len(found) >= 2 else None

    found = eventually(notices, what="report.amended_notice at the event hub")
    # Each reader of the old version once: the doctor who listed the visit's reports, and the kiosk.
    assert sorted((e["data"]["reader_client"], e["data"]["reader_patient_id"] or "") for e in found) == [
        ("doctor-dev", ""),
        ("kiosk-dev", case["person"]["id"]),
    ]


# --- a hospital that hands out reports only once they are paid -------------------------------------

PAID_SCHEMA_PREFIX = "e2e_paid_"


@pytest.fixture(scope="module")
def paying_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    data_dir = tmp_path_factory.mktemp("paying-system")
    with running_gateway(data_dir, PAYING_ENV, schema_prefix=PAID_SCHEMA_PREFIX) as clients:
        yield clients


def test_where_payment_is_required_an_unpaid_report_waits_for_the_cashier(paying_gateway: Gateway) -> None:
    gateway = paying_gateway
    case = order_for_new_patient(gateway, payment_mode="settle_later")  # the lab starts before payment
    posted = ok(gateway.lab.post(f"/v1/orders/{case['order']['id']}/reports", json=report()), 201)
    devices = [Device(gateway, kind, case["person"]) for kind in ("kiosk", "app")]
    assert [d.sees(case, posted["id"]) for d in devices] == [NOWHERE] * 2
    assert ok(gateway.doctor.get(f"/v1/reports/{posted['id']}"))["id"] == posted["id"]  # staff see it

    def charged() -> bool:
        account = gateway.cashier.get(f"/v1/visits/{case['visit']['id']}/account")
        return account.status_code == 200 and any(c["item_code"] == CBC for c in account.json()["charges"])

    eventually(charged, what="billing to charge the order")
    paid = gateway.cashier.post(
        "/v1/payments",
        json={"visit_id": case["visit"]["id"], "method": "wechat"},
        headers={"idempotency-key": f"pay-{case['visit']['id']}"},
    )
    ok(paid, 201)
    eventually(
        lambda: all(d.sees(case, posted["id"]) == EVERYWHERE for d in devices),
        what="results to read charge.paid and release the report",
    )
