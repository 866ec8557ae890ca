"""Visits close: at the desk, on billing's settlement, at discharge, and by the end-of-day rule (on an
injected clock), each once, with `visit.closed`."""

from datetime import UTC, datetime, time, timedelta
from typing import Any

from fastapi.testclient import TestClient

from kit.clock import HOSPITAL_TZ
from kit.testing import FakeFeed
from services.registration.closing import VisitCloser, latest_end_of_day
from services.registration.config import RegistrationSettings
from tests.registration.factories import create_patient, create_visit
from tests.registration.test_settled_visits import visit_settled, wait_for_status
from tests.registration.test_stays import assert_problem, create_ward, feed


def closed_events(client: TestClient, visit_id: str) -> list[dict[str, Any]]:
    return [e["data"] for e in feed(client, "visit.closed") if e["visit_id"] == visit_id]


def test_the_desk_closes_an_open_visit_once(client: TestClient) -> None:
    patient = create_patient(client)
    visit = create_visit(client, patient["id"])

    response = client.post(f"/visits/{visit['id']}/close")

    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["close_reason"]) == ("closed", "desk")
    shown = client.get(f"/visits/{visit['id']}").json()
    assert (shown["status"], shown["close_reason"]) == ("closed", "desk") and shown["closed_at"]
    refused = assert_problem(client.post(f"/visits/{visit['id']}/close"), 409, "visit-closed")
    assert visit["id"] in refused["detail"]
    assert closed_events(client, visit["id"]) == [{"reason": "desk", "kind": "outpatient"}]
    assert_problem(client.post("/visits/no-such-visit/close"), 404, "visit-not-found")


def test_an_admitted_visit_closes_by_discharge_not_at_the_desk(client: TestClient) -> None:
    patient = create_patient(client)
    visit = create_visit(client, patient["id"], kind="emergency", department="emergency")
    ward = create_ward(client)
    client.post(f"/visits/{visit['id']}/admission", json={"ward": ward["code"], "bed": "1"})
    assert_problem(client.post(f"/visits/{visit['id']}/close"), 409, "admitted")
    assert client.get(f"/visits/{visit['id']}").json()["status"] == "open"


def test_settlement_closes_an_outpatient_visit_and_waits_for_an_inpatients_discharge(
    client: TestClient, billing_feed: FakeFeed
) -> None:
    patient = create_patient(client)
    outpatient = create_visit(client, patient["id"], payment_mode="settle_later")
    inpatient = create_visit(client, patient["id"], kind="emergency", department="emergency")
    ward = create_ward(client)
    client.post(f"/visits/{inpatient['id']}/admission", json={"ward": ward["code"], "bed": "1"})

    billing_feed.publish(visit_settled(outpatient))
    billing_feed.publish(visit_settled(inpatient))  # a mid-stay settlement (中途结算)

    closed = wait_for_status(client, outpatient["id"], "closed")
    assert closed["close_reason"] == "settled" and closed["closed_at"] == closed["settled_at"]
    assert closed_events(client, outpatient["id"]) == [{"reason": "settled", "kind": "outpatient"}]
    settled = wait_for_status(client, inpatient["id"], "settled")
    assert settled["closed_at"] is None and closed_events(client, inpatient["id"]) == []
    assert client.post(f"/visits/{inpatient['id']}/discharge").status_code == 200
    discharged = client.get(f"/visits/{inpatient['id']}").json()
    assert (discharged["status"], discharged["close_reason"]) == ("closed", "discharged")
    assert discharged["settled_at"] == settled["settled_at"]


def test_a_settlement_of_a_closed_visit_records_the_time_and_closes_nothing_twice(
    client: TestClient, billing_feed: FakeFeed
) -> None:
    patient = create_patient(client)
    visit = create_visit(client, patient["id"])
    client.post(f"/visits/{visit['id']}/close")
    marker = create_visit(client, patient["id"], payment_mode="settle_later")

    billing_feed.publish(visit_settled(visit))
    billing_feed.publish(visit_settled(marker))

    wait_for_status(client, marker["id"], "closed")
    shown = client.get(f"/visits/{visit['id']}").json()
    assert (shown["close_reason"], shown["settled_at"] is not None) == ("desk", True)
    assert len(closed_events(client, visit["id"])) == 1


def at_hospital(day: datetime, hour: int, minute: int = 0) -> datetime:
    return (
        day.astimezone(HOSPITAL_TZ).replace(hour=hour, minute=minute, second=0, microsecond=0).astimezone(UTC)
    )


def test_the_latest_end_of_day_is_today_once_passed_else_yesterday() -> None:
    settings = RegistrationSettings(end_of_day=time(2, 30))
    morning = datetime(2026, 12, 1, 3, 0, tzinfo=HOSPITAL_TZ)
    assert latest_end_of_day(morning, settings) == datetime(2026, 12, 1, 2, 30, tzinfo=HOSPITAL_TZ)
    night = datetime(2026, 12, 1, 1, 0, tzinfo=HOSPITAL_TZ)
    assert latest_end_of_day(night, settings) == datetime(2026, 11, 30, 2, 30, tzinfo=HOSPITAL_TZ)
    exactly = datetime(2026, 12, 1, 2, 30, tzinfo=HOSPITAL_TZ)
    assert latest_end_of_day(exactly, settings) == exactly


def test_the_end_of_day_rule_closes_prepaid_visits_whose_day_or_window_is_over(client: TestClient) -> None:
    app: Any = client.app
    patient = create_patient(client)
    prepaid = create_visit(client, patient["id"])
    settle_later = create_visit(client, patient["id"], payment_mode="settle_later")
    emergency = create_visit(client, patient["id"], kind="emergency", department="emergency")
    green = create_visit(
        client, patient["id"], kind="emergency", department="emergency", payment_mode="green_channel"
    )
    admitted = create_visit(client, patient["id"])
    ward = create_ward(client)
    client.post(f"/visits/{admitted['id']}/admission", json={"ward": ward["code"], "bed": "1"})
    opened = datetime.fromisoformat(prepaid["opened_at"])
    settings: RegistrationSettings = app.state.settings
    midnight = at_hospital(opened, 0) + timedelta(days=1)  # the day's end by default (end_of_day 00:00)

    def closer_at(now: datetime) -> VisitCloser:
        return VisitCloser(app.state.database, settings, clock=lambda: now)

    assert closer_at(midnight - timedelta(seconds=1)).run_once() == []  # the day is not over yet
    assert closer_at(midnight).run_once() == [prepaid["id"]]  # the emergency window (24 h) is still open
    window_over = datetime.fromisoformat(emergency["opened_at"]) + timedelta(hours=24, seconds=1)
    assert closer_at(window_over).run_once() == [emergency["id"]]
    assert closer_at(window_over + timedelta(days=3)).run_once() == []  # nothing else, ever

    statuses = {
        v["id"]: (v["status"], v["close_reason"])
        for v in client.get(f"/patients/{patient['id']}/visits").json()
    }
    assert statuses == {
        prepaid["id"]: ("closed", "end-of-day"),
        settle_later["id"]: ("open", None),  # closes at its settlement
        emergency["id"]: ("closed", "end-of-day"),
        green["id"]: ("open", None),
        admitted["id"]: ("open", None),  # closes at discharge
    }
    assert closed_events(client, prepaid["id"]) == [{"reason": "end-of-day", "kind": "outpatient"}]


def test_the_end_of_day_hour_is_configurable(client: TestClient) -> None:
    app: Any = client.app
    patient = create_patient(client)
    visit = create_visit(client, patient["id"])
    opened = datetime.fromisoformat(visit["opened_at"])
    end = (opened + timedelta(minutes=1)).astimezone(HOSPITAL_TZ).time().replace(microsecond=0)
    settings = app.state.settings.model_copy(update={"end_of_day": end})
    after = opened + timedelta(minutes=2)
    assert VisitCloser(app.state.database, settings, clock=lambda: after).run_once() == [visit["id"]]
