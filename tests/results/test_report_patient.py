"""Whom a report is for, and when it was released: the printed report names the patient (Chinese name,
sex, age) from the names results keeps off registration's feed, with no call to registration; a merged
patient's reports name the survivor; the kiosk's JSON shows the name masked and no identity number.
`releasable_at` is the first moment the one release rule passed, kept through amendments and holds."""

import uuid
from datetime import datetime
from typing import Any

import httpx
from fastapi.testclient import TestClient

from kit.client import ServiceClient
from kit.database import Database
from kit.testing import FakeFeed, eventually
from services.results import repository
from services.results.consumers import PatientNames, apply_registration_event
from services.results.schemas import RegistrationPatient
from tests.registration.factories import VALID_ID_NUMBERS
from tests.results.factories import (
    charge_paid,
    create_emergency_visit,
    create_patient,
    create_unidentified_patient,
    create_visit,
    place_order,
    post_report,
    released_order,
)
from tests.results.test_printing import kiosk, pdf_text

NAME = "欧阳娜娜"  # VALID_ID_NUMBERS[0]: born 1949-12-31, female


def listed(client: TestClient, patient_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/patients/{patient_id}/released-reports", headers=kiosk(patient_id))
    assert response.status_code == 200, response.text
    return list(response.json())


def name_learned(client: TestClient, patient_id: str) -> bool:
    return all(r["patient_name_masked"] for r in listed(client, patient_id)) and bool(
        listed(client, patient_id)
    )


def test_the_printed_report_names_the_patient_and_the_kiosk_list_shows_the_name_masked(
    client: TestClient, registration: httpx.Client
) -> None:
    patient = create_patient(registration, name=NAME)
    order = place_order(client, create_visit(registration, patient["id"], payment_mode="settle_later")["id"])
    report = post_report(client, order["id"])
    me = patient["id"]
    eventually(lambda: name_learned(client, me), what="results to learn the name from registration's feed")

    [shown] = listed(client, me)
    assert shown["patient_name_masked"] == "欧***"
    printed = client.post(f"/reports/{report['id']}/prints", headers=kiosk(me))
    assert printed.status_code == 201, printed.text
    paper = pdf_text(client.get(printed.json()["pdf_url"].removeprefix("/v1"), headers=kiosk(me)))
    age = datetime.fromisoformat(report["reported_at"]).year - 1950  # born 31 December 1949
    for expected in (f"姓名 Name: {NAME}", "性别 Sex: 女", f"年龄 Age: {age} 岁"):
        assert expected in paper, (expected, paper)
    # The identity number is nowhere: not on the paper, not in any answer the kiosk got.
    answers = client.get(f"/patients/{me}/released-reports", headers=kiosk(me)).text + printed.text
    for number in (VALID_ID_NUMBERS[0], VALID_ID_NUMBERS[0][-4:] + "\n"):
        assert number not in paper + answers
    assert NAME not in answers  # JSON for a kiosk screen: masked only


def test_printing_calls_no_one_so_it_works_while_registration_is_down(
    client: TestClient, registration: httpx.Client, dead_url: str
) -> None:
    patient = create_patient(registration, name=NAME)
    order = place_order(client, create_visit(registration, patient["id"], payment_mode="settle_later")["id"])
    report = post_report(client, order["id"])
    me = patient["id"]
    eventually(lambda: name_learned(client, me), what="results to learn the name")
    # From now on any call the routes make to registration fails with 503.
    siblings: dict[str, ServiceClient] = client.app.state.siblings  # type: ignore[attr-defined]
    live = siblings["registration"]
    dead = ServiceClient("registration", dead_url, live.tokens)
    siblings["registration"] = dead
    try:
        another = {"visit_id": order["visit_id"], "test_code": "210102015"}
        assert client.post("/orders", json=another).status_code == 503

        printed = client.post(f"/reports/{report['id']}/prints", headers=kiosk(me))
        assert printed.status_code == 201, printed.text
        paper = client.get(printed.json()["pdf_url"].removeprefix("/v1"), headers=kiosk(me))
        assert f"姓名 Name: {NAME}" in pdf_text(paper)
        read = client.get(f"/reports/{report['id']}/pdf", headers=kiosk(me))
        assert f"姓名 Name: {NAME}" in pdf_text(read)
    finally:
        siblings["registration"] = live
        client.portal.call(dead.aclose)  # type: ignore[union-attr]


def test_a_merged_patients_reports_print_the_surviving_patients_name(
    client: TestClient, registration: httpx.Client
) -> None:
    unknown = create_unidentified_patient(registration)
    order = place_order(client, create_emergency_visit(registration, unknown["id"])["id"])
    report = post_report(client, order["id"])
    before = pdf_text(client.get(f"/reports/{report['id']}/pdf", headers=kiosk(unknown["id"])))
    assert "无名氏" in before

    known = create_patient(registration, 1, name="李四")
    merged = registration.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})
    assert merged.status_code == 200, merged.text
    eventually(lambda: name_learned(client, known["id"]), what="results to read the merge and the survivor")
    after = pdf_text(client.get(f"/reports/{report['id']}/pdf", headers=kiosk(known["id"])))
    assert "姓名 Name: 李四" in after and "无名氏" not in after
    assert listed(client, known["id"])[0]["patient_name_masked"] == "李**"


# --- releasable_at


def report_of(client: TestClient, report_id: str) -> dict[str, Any]:
    return dict(client.get(f"/reports/{report_id}").json())


def test_a_verified_final_report_is_releasable_from_its_verification_and_an_amendment_keeps_it(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    assert report["releasable_at"] == report["verified_at"] is not None
    assert client.get(f"/orders/{order['id']}").json()["releasable_at"] == report["releasable_at"]

    amendment = post_amendment(client, report["id"])
    assert amendment["version"] == 2 and amendment["verified_at"] != report["verified_at"]
    assert amendment["releasable_at"] == report["releasable_at"]
    hold = {"reason": "需当面告知病情"}
    assert client.post(f"/reports/{report['id']}/withhold", json=hold).status_code == 200
    lifted = client.post(f"/reports/{report['id']}/unwithhold", json=hold).json()
    assert lifted["releasable_at"] == report["releasable_at"]  # released before: the first moment stays

    [figures] = client.get("/turnaround").json()
    assert (figures["reported"], figures["released"]) == (1, 1)
    assert figures["release_median_minutes"] == figures["median_minutes"]


def post_amendment(client: TestClient, report_id: str) -> dict[str, Any]:
    body = {"status": "amended", "conclusion": "复查: 正常", "verified_by": "王技师", "reason": "复核"}
    response = client.post(f"/reports/{report_id}/amendments", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_an_unverified_or_withheld_report_becomes_releasable_at_the_step_that_releases_it(
    client: TestClient, registration: httpx.Client
) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"], status="preliminary")
    assert report["releasable_at"] is None
    final = client.post(
        f"/orders/{order['id']}/reports", json={"status": "final", "conclusion": "正常"}
    )  # final, not verified yet
    assert final.status_code == 201 and final.json()["releasable_at"] is None
    hold = {"reason": "需当面告知病情"}
    assert client.post(f"/reports/{report['id']}/withhold", json=hold).status_code == 200
    verified = client.post(f"/reports/{report['id']}/verification", json={"verified_by": "李技师"}).json()
    assert verified["releasable_at"] is None  # verified, but withheld
    assert client.get(f"/orders/{order['id']}").json()["releasable_at"] is None
    lifted = client.post(f"/reports/{report['id']}/unwithhold", json=hold).json()
    assert lifted["releasable_at"] is not None and lifted["releasable_at"] > verified["verified_at"]
    assert client.get(f"/orders/{order['id']}").json()["releasable_at"] == lifted["releasable_at"]
    [figures] = client.get("/turnaround").json()
    assert figures["released"] == 1


def test_where_release_requires_payment_a_report_is_releasable_from_billings_charge_paid(
    paying_client: TestClient, registration: httpx.Client, billing: FakeFeed
) -> None:
    client = paying_client
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    assert report["releasable_at"] is None  # verified, but unpaid
    billing.publish(charge_paid(1, order))
    eventually(lambda: report_of(client, report["id"])["releasable_at"] is not None, what="charge.paid read")
    assert report_of(client, report["id"])["releasable_at"] > report["verified_at"]
    assert (
        client.get(f"/orders/{order['id']}").json()["releasable_at"]
        == report_of(client, report["id"])["releasable_at"]
    )


class CountingRegistration:
    """Stands in for registration's client in `PatientNames`: answers every patient, counts the asks."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_sync(
        self, model: type[RegistrationPatient], path: str, *, patient_id: str
    ) -> RegistrationPatient:
        self.asked.append(patient_id)
        return model(id=patient_id, name="王五", sex="male")


def test_a_patient_registered_before_results_kept_names_is_learned_when_a_visit_opens_and_only_then(
    client: TestClient, registration: httpx.Client
) -> None:
    me = create_patient(registration, name=NAME)["id"]
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    eventually(lambda: me in patient_names(database, [me]), what="results to learn the name")
    stand_in = CountingRegistration()
    names = PatientNames(stand_in, database)  # type: ignore[arg-type]
    before = str(uuid.uuid4())  # registered before 0012: no patient.registered will come again

    def opened(patient_id: str) -> dict[str, Any]:
        return {"type": "visit.opened", "patient_id": patient_id, "visit_id": str(uuid.uuid4()), "data": {}}

    names.resolve([opened(me)])
    assert stand_in.asked == []  # known: nobody is asked
    page = [opened(before), opened(before)]
    names.resolve(page)
    assert stand_in.asked == [before]
    with database.session() as session:
        for event in page:
            apply_registration_event(session, event, names=names)
    assert patient_names(database, [before])[before] == "王五"


def patient_names(database: Database, patient_ids: list[str]) -> dict[str, str | None]:
    with database.session(write=False) as session:
        return {p: row.name for p, row in repository.patient_names(session, patient_ids).items()}
