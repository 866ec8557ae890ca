"""Inpatient stays: wards and beds, admission (in place, payment mode carried over, the emergency window),
transfers kept as history, discharge that frees the bed and closes the visit, and their events."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kit.clock import as_utc
from kit.testing import feed_headers
from services.registration import stays
from services.registration.errors import AdmissionRefused
from services.registration.schemas import AdmissionCreate
from tests.registration.factories import create_patient, create_visit


def create_ward(
    client: TestClient, department: str = "cardiology", beds: int = 2, **overrides: Any
) -> dict[str, Any]:
    body = {
        "code": f"w-{uuid.uuid4().hex[:8]}",
        "department": department,
        "name": "心内科三病区",
        "beds": [{"code": str(n + 1), "bed_class": "general"} for n in range(beds)],
    } | overrides
    response = client.post("/wards", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def feed(client: TestClient, event_type: str | None = None) -> list[dict[str, Any]]:
    """Registration's own feed, read as a sibling service would."""
    params: dict[str, Any] = {"limit": 500} | ({"type": event_type} if event_type else {})
    events: list[dict[str, Any]] = client.get(
        "/events", params=params, headers=feed_headers("registration")
    ).json()["events"]
    return events


def feed_types(client: TestClient, visit_id: str) -> list[str]:
    return [e["type"] for e in feed(client) if e["visit_id"] == visit_id]


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + slug), body
    return body


def test_wards_list_their_beds_and_refuse_duplicates(client: TestClient) -> None:
    ward = create_ward(client, beds=2)
    assert ward["free_beds"] == 2 and [b["code"] for b in ward["beds"]] == ["1", "2"]
    assert_problem(
        client.post("/wards", json={**ward, "beds": []} | {"free_beds": None}), 422, "validation-error"
    )
    again = {"code": ward["code"], "department": "cardiology", "name": "x"}
    assert_problem(client.post("/wards", json=again), 409, "duplicate-ward")
    twice = {
        "code": "w-twice",
        "department": "cardiology",
        "name": "x",
        "beds": [{"code": "1"}, {"code": "1"}],
    }
    assert_problem(client.post("/wards", json=twice), 409, "duplicate-ward")
    added = client.post(f"/wards/{ward['code']}/beds", json={"code": "3", "bed_class": "icu"})
    assert added.status_code == 201 and added.json()["free_beds"] == 3
    assert_problem(client.post(f"/wards/{ward['code']}/beds", json={"code": "3"}), 409, "duplicate-ward")
    assert_problem(client.post("/wards/nowhere/beds", json={"code": "3"}), 404, "ward-not-found")
    assert_problem(
        client.post(f"/wards/{ward['code']}/beds", json={"code": "3", "bed_class": "suite"}),
        422,
        "validation-error",
    )
    listed = client.get("/wards", params={"department": "cardiology"}).json()
    assert [w["code"] for w in listed] == [ward["code"]]


def test_an_emergency_visit_is_admitted_in_place_with_its_green_channel(client: TestClient) -> None:
    patient = create_patient(client)
    visit = create_visit(
        client, patient["id"], kind="emergency", department="emergency", payment_mode="green_channel"
    )
    ward = create_ward(client)

    response = client.post(
        f"/visits/{visit['id']}/admission", json={"ward": ward["code"], "bed": "1", "note": "胸痛"}
    )

    assert response.status_code == 201, response.text
    stay = response.json()
    assert (stay["admitted_from"], stay["department"], stay["ward"], stay["bed"]) == (
        "emergency", "cardiology", ward["code"], "1",
    )  # fmt: skip
    admitted = client.get(f"/visits/{visit['id']}").json()
    assert (admitted["id"], admitted["kind"], admitted["payment_mode"], admitted["department"]) == (
        visit["id"], "inpatient", "green_channel", "cardiology",
    )  # fmt: skip
    assert client.get(f"/wards/{ward['code']}").json()["beds"][0]["occupied_by_visit_id"] == visit["id"]
    [event] = feed(client, "visit.admitted")
    assert event["data"] | {} == {
        "admitted_from": "emergency", "department": "cardiology", "ward": ward["code"], "bed": "1",
        "bed_class": "general", "payment_mode": "green_channel",
    }  # fmt: skip
    assert_problem(
        client.post(f"/visits/{visit['id']}/admission", json={"ward": ward["code"], "bed": "2"}),
        409,
        "already-admitted",
    )


def test_an_emergency_visit_past_its_admission_window_is_refused(client: TestClient) -> None:
    """The window is from the emergency visit's opening (24 hours by default), on an injected clock."""
    patient = create_patient(client)
    visit = create_visit(client, patient["id"], kind="emergency", department="emergency")
    ward = create_ward(client)
    settings = client.app.state.settings  # type: ignore[attr-defined]
    opened = as_utc(datetime.fromisoformat(visit["opened_at"]))
    data = AdmissionCreate(ward=ward["code"], bed="1")

    def admit_at(now: datetime) -> None:
        with client.app.state.database.session() as session:  # type: ignore[attr-defined]
            stays.admit(session, visit_id=visit["id"], data=data, recorded_by="t", now=now, settings=settings)

    with pytest.raises(AdmissionRefused) as refused:
        admit_at(opened + timedelta(hours=24, seconds=1))
    assert refused.value.slug == "admission-window-passed" and "24 hours" in refused.value.detail
    admit_at(opened + timedelta(hours=23, minutes=59))
    assert client.get(f"/visits/{visit['id']}").json()["kind"] == "inpatient"


def test_an_outpatient_visit_is_admitted_and_a_closed_one_is_not(client: TestClient) -> None:
    patient = create_patient(client)
    visit = create_visit(client, patient["id"])
    closed = create_visit(client, patient["id"])
    ward = create_ward(client)
    assert client.post(f"/visits/{closed['id']}/close").status_code == 200

    body = client.post(f"/visits/{closed['id']}/admission", json={"ward": ward["code"], "bed": "1"})
    refused = assert_problem(body, 409, "visit-closed")
    assert closed["id"] in refused["detail"] and refused["visit_id"] == closed["id"]
    ok = client.post(f"/visits/{visit['id']}/admission", json={"ward": ward["code"], "bed": "1"})
    assert ok.status_code == 201 and ok.json()["admitted_from"] == "outpatient"


def test_a_taken_or_unknown_bed_is_refused(client: TestClient) -> None:
    patient = create_patient(client)
    first, second = create_visit(client, patient["id"]), create_visit(client, patient["id"])
    ward = create_ward(client)
    assert (
        client.post(f"/visits/{first['id']}/admission", json={"ward": ward["code"], "bed": "1"}).status_code
        == 201
    )

    assert_problem(
        client.post(f"/visits/{second['id']}/admission", json={"ward": ward["code"], "bed": "1"}),
        409,
        "bed-occupied",
    )
    assert_problem(
        client.post(f"/visits/{second['id']}/admission", json={"ward": ward["code"], "bed": "9"}),
        422,
        "unknown-bed",
    )
    assert_problem(
        client.post(f"/visits/{second['id']}/admission", json={"ward": "nowhere", "bed": "1"}),
        422,
        "unknown-bed",
    )
    assert_problem(
        client.post(f"/visits/{second['id']}/admission", json={"ward": ward["code"]}), 422, "validation-error"
    )
    assert_problem(
        client.post(f"/visits/{uuid.uuid4()}/admission", json={"ward": ward["code"], "bed": "2"}),
        404,
        "visit-not-found",
    )
    assert client.get(f"/visits/{second['id']}").json()["kind"] == "outpatient"  # nothing changed
    assert_problem(client.get(f"/visits/{second['id']}/stay"), 404, "stay-not-found")


def test_transfers_are_kept_as_history_and_discharge_frees_the_bed_and_closes(client: TestClient) -> None:
    patient = create_patient(client)
    visit = create_visit(
        client, patient["id"], kind="emergency", department="emergency", payment_mode="settle_later"
    )
    cardiology, surgery = create_ward(client), create_ward(client, department="surgery")
    path = f"/visits/{visit['id']}"
    client.post(f"{path}/admission", json={"ward": cardiology["code"], "bed": "1"})

    assert_problem(
        client.post(f"{path}/transfers", json={"ward": surgery["code"], "bed": "1"}), 422, "validation-error"
    )
    assert_problem(
        client.post(f"{path}/transfers", json={"ward": cardiology["code"], "bed": "1", "note": "x"}),
        409,
        "same-bed",
    )
    moved = client.post(
        f"{path}/transfers", json={"ward": surgery["code"], "bed": "2", "note": "术前转外科，交接病历"}
    )
    assert moved.status_code == 201, moved.text
    assert (moved.json()["department"], moved.json()["bed"]) == ("surgery", "2")
    assert client.get(path).json()["department"] == "surgery"
    assert client.get(f"/wards/{cardiology['code']}").json()["free_beds"] == 2

    discharged = client.post(f"{path}/discharge", json={"note": "好转出院"})
    assert discharged.status_code == 200, discharged.text
    stay = discharged.json()
    assert (stay["bed"], stay["length_of_stay_days"]) == (None, 1)
    assert [(m["kind"], m["department"], m["bed"], m["from_department"]) for m in stay["movements"]] == [
        ("admission", "cardiology", "1", None),
        ("transfer", "surgery", "2", "cardiology"),
        ("discharge", "surgery", "2", None),
    ]
    assert stay["movements"][1]["note"] == "术前转外科，交接病历"
    closed = client.get(path).json()
    assert (closed["status"], closed["close_reason"]) == ("closed", "discharged") and closed["closed_at"]
    assert client.get(f"/wards/{surgery['code']}").json()["free_beds"] == 2
    assert feed_types(client, visit["id"]) == [
        "visit.opened", "visit.admitted", "visit.transferred", "visit.discharged", "visit.closed",
    ]  # fmt: skip
    [event] = feed(client, "visit.discharged")
    assert (event["data"]["length_of_stay_days"], event["data"]["payment_mode"]) == (1, "settle_later")

    assert_problem(client.post(f"{path}/discharge"), 409, "visit-closed")
    assert_problem(
        client.post(f"{path}/transfers", json={"ward": surgery["code"], "bed": "1", "note": "x"}),
        409,
        "visit-closed",
    )
    # The freed bed takes the next patient.
    other = create_visit(client, patient["id"])
    assert (
        client.post(
            f"/visits/{other['id']}/admission", json={"ward": surgery["code"], "bed": "2"}
        ).status_code
        == 201
    )


def test_a_visit_not_admitted_cannot_be_transferred_or_discharged(client: TestClient) -> None:
    patient = create_patient(client)
    visit = create_visit(client, patient["id"])
    ward = create_ward(client)
    assert_problem(
        client.post(f"/visits/{visit['id']}/transfers", json={"ward": ward["code"], "bed": "1", "note": "x"}),
        409,
        "not-admitted",
    )
    assert_problem(client.post(f"/visits/{visit['id']}/discharge"), 409, "not-admitted")


def test_a_merge_carries_the_stay_to_the_identified_patient(client: TestClient) -> None:
    unknown = create_patient(client, unidentified=True, id_number=None, name=None, alias="男，约40岁")
    visit = create_visit(client, unknown["id"], kind="emergency", department="emergency")
    ward = create_ward(client)
    client.post(f"/visits/{visit['id']}/admission", json={"ward": ward["code"], "bed": "1"})
    known = create_patient(client)

    merged = client.post(f"/patients/{known['id']}/merge", json={"source_patient_id": unknown["id"]})

    assert merged.status_code == 200, merged.text
    assert client.get(f"/visits/{visit['id']}/stay").json()["patient_id"] == known["id"]


def test_a_retried_admission_or_transfer_with_its_key_gets_the_first_answer_and_happens_once(
    client: TestClient,
) -> None:
    patient = create_patient(client)
    visit = create_visit(client, patient["id"])
    ward = create_ward(client, beds=3)
    path = f"/visits/{visit['id']}"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"ward": ward["code"], "bed": "1"}

    first = client.post(f"{path}/admission", json=body, headers=key)
    again = client.post(f"{path}/admission", json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert_problem(
        client.post(f"{path}/admission", json=body | {"bed": "2"}, headers=key), 422, "idempotency-key-reused"
    )

    move_key = {"Idempotency-Key": str(uuid.uuid4())}
    move = {"ward": ward["code"], "bed": "2", "note": "换床"}
    assert client.post(f"{path}/transfers", json=move, headers=move_key).status_code == 201
    assert client.post(f"{path}/transfers", json=move, headers=move_key).status_code == 201
    close_key = {"Idempotency-Key": str(uuid.uuid4())}
    assert client.post(f"{path}/discharge", headers=close_key).status_code == 200
    assert client.post(f"{path}/discharge", headers=close_key).status_code == 200
    assert feed_types(client, visit["id"]) == [
        "visit.opened", "visit.admitted", "visit.transferred", "visit.discharged", "visit.closed",
    ]  # fmt: skip
