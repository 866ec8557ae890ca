"""Registration's statistics: appointments by channel, department, day and status, follow-ups, no-shows,
cancellations, the appointment ratio, and the inpatient movements with their length of stay."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from fastapi.testclient import TestClient
from sqlmodel import Session, col, update

from kit.clock import hospital_date, utcnow
from kit.database import Database
from kit.testing import internal_headers
from services.registration import appointments
from services.registration.config import RegistrationSettings
from services.registration.models import InpatientStay
from tests.registration.factories import (
    book,
    create_clinic_session,
    create_department,
    create_patient,
    create_visit,
)
from tests.registration.test_stays import create_ward

T = TypeVar("T")


def in_session(client: TestClient, work: Callable[[Session], T]) -> T:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    with database.session() as session:
        return work(session)


def unidentified(client: TestClient) -> str:
    response = client.post("/patients", json={"unidentified": True})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def days_around(*sessions: dict[str, Any]) -> dict[str, str]:
    """The sessions' days and the hospital's today (when the test's visits open), whatever the hour."""
    days = sorted([s["date"] for s in sessions] + [hospital_date(utcnow()).isoformat()])
    return {"from_date": days[0], "to_date": days[-1]}


def appointment_statistics(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/statistics/appointments", params=params)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_appointments_are_counted_by_channel_department_day_and_status(client: TestClient) -> None:
    department = create_department(client)["code"]
    start = utcnow().replace(microsecond=0)
    early = create_clinic_session(client, department=department, starts_at=start + timedelta(hours=3))
    late = create_clinic_session(client, department=department, starts_at=start + timedelta(hours=9))
    elsewhere = create_clinic_session(client, starts_at=start + timedelta(hours=3))

    missed = book(client, early["id"], unidentified(client))
    walk_in = book(client, early["id"], unidentified(client), channel="onsite", check_in=True)
    cancelled = book(client, early["id"], unidentified(client)).json()
    assert (
        client.post(f"/appointments/{cancelled['id']}/cancel", json={"reason": "patient"}).status_code == 200
    )
    referred = book(
        client, late["id"], unidentified(client), channel="referral", referring_clinic="社区卫生站"
    )
    followed = create_patient(client)
    first_visit = create_visit(client, followed["id"])  # of another department: outside the filter
    followup = book(
        client, late["id"], followed["id"], channel="followup", followup_of_visit_id=first_visit["id"]
    )
    held = book(client, late["id"], unidentified(client), hold=True)  # never booked: never counted
    other = book(client, elsewhere["id"], unidentified(client))
    for response in (missed, walk_in, referred, followup, held, other):
        assert response.status_code == 201, response.text
    create_visit(client, unidentified(client), department=department)  # a visit opened on the day
    settings: RegistrationSettings = client.app.state.settings  # type: ignore[attr-defined]
    after_early = datetime.fromisoformat(early["ends_at"]) + timedelta(minutes=settings.noshow_grace_minutes)
    assert in_session(client, lambda s: appointments.mark_noshows(s, settings=settings, now=after_early)) >= 1

    days = days_around(early, late, elsewhere)
    mine = appointment_statistics(client, department=department, **days)
    assert mine["appointments"] == 5
    assert mine["by_channel"] == {"followup": 1, "onsite": 1, "phone": 2, "referral": 1}
    assert mine["by_department"] == {department: 5}
    assert mine["by_status"] == {"arrived": 1, "booked": 2, "cancelled": 1, "noshow": 1}
    expected_days: dict[str, int] = {}
    for clinic, count in ((early, 3), (late, 2)):
        expected_days[clinic["date"]] = expected_days.get(clinic["date"], 0) + count
    assert {d["date"]: d["count"] for d in mine["by_day"]} == expected_days
    assert (mine["followup_bookings"], mine["cancellations_by_reason"]) == (1, {"patient": 1})
    assert (mine["noshows"], mine["noshow_rate"]) == (1, 0.5)  # one came, one did not
    assert (mine["outpatient_visits"], mine["appointment_visits"], mine["appointment_ratio"]) == (2, 1, 0.5)

    everyone = appointment_statistics(client, **days)
    assert everyone["appointments"] == 6 and everyone["by_department"][elsewhere["department"]] == 1
    assert everyone["outpatient_visits"] == 3  # the follow-up's first visit too
    day_after = hospital_date(start) + timedelta(days=5)
    nothing = appointment_statistics(client, from_date=day_after.isoformat(), to_date=day_after.isoformat())
    assert (nothing["appointments"], nothing["noshow_rate"], nothing["appointment_ratio"]) == (0, None, None)


def test_stays_count_admissions_transfers_discharges_and_their_length(client: TestClient) -> None:
    cardiology, surgery = create_ward(client, beds=3), create_ward(client, department="surgery")

    def admitted(bed: str) -> str:
        visit = create_visit(client, unidentified(client), kind="emergency", department="emergency")
        response = client.post(
            f"/visits/{visit['id']}/admission", json={"ward": cardiology["code"], "bed": bed}
        )
        assert response.status_code == 201, response.text
        return str(visit["id"])

    moved, long_stay, staying = admitted("1"), admitted("2"), admitted("3")
    transfer = {"ward": surgery["code"], "bed": "1", "note": "术前转外科"}
    assert client.post(f"/visits/{moved}/transfers", json=transfer).status_code == 201
    three_days_ago = utcnow() - timedelta(days=3)
    in_session(
        client,
        lambda s: s.execute(
            update(InpatientStay)
            .where(col(InpatientStay.visit_id) == long_stay)
            .values(admitted_at=three_days_ago)
        ),
    )
    for visit_id in (moved, long_stay):
        assert client.post(f"/visits/{visit_id}/discharge", json={}).status_code == 200
    assert staying

    today = hospital_date(utcnow()).isoformat()
    stays = client.get("/statistics/stays", params={"from_date": today, "to_date": today}).json()
    assert (stays["admissions"], stays["transfers"], stays["discharges"]) == (3, 1, 2)
    assert (stays["mean_length_of_stay_days"], stays["median_length_of_stay_days"]) == (2.0, 2.0)
    assert stays["longest_stay_days"] == 3
    into_surgery = client.get(
        "/statistics/stays", params={"from_date": today, "to_date": today, "department": "surgery"}
    ).json()
    assert (into_surgery["admissions"], into_surgery["transfers"], into_surgery["discharges"]) == (0, 1, 1)
    assert into_surgery["longest_stay_days"] == 1


def test_a_bad_range_is_a_problem_naming_it(client: TestClient) -> None:
    for params, status, slug in (
        ({"from_date": "2026-12-02", "to_date": "2026-12-01"}, 400, "invalid-range"),
        ({"from_date": "2025-01-01", "to_date": "2026-12-01"}, 400, "invalid-range"),
        ({"from_date": "0001-01-01", "to_date": "0001-01-02"}, 400, "invalid-range"),  # no hospital day
        ({"from_date": "9999-12-30", "to_date": "9999-12-31"}, 400, "invalid-range"),
        ({"from_date": "2026-13-01", "to_date": "2026-12-01"}, 400, "invalid-parameter"),
        ({"to_date": "2026-12-01"}, 400, "invalid-parameter"),
        (
            {"from_date": "2026-12-01", "to_date": "2026-12-01", "department": "X" * 40},
            400,
            "invalid-parameter",
        ),
    ):
        for path in ("/statistics/appointments", "/statistics/stays"):
            response = client.get(path, params=params)
            assert response.status_code == status, (path, params, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["type"].endswith(slug), response.text


def test_statistics_need_the_stats_scope(client: TestClient) -> None:
    headers = internal_headers(audience="registration", scopes={"registration:read"})
    params = {"from_date": "2026-12-01", "to_date": "2026-12-01"}
    for path in ("/statistics/appointments", "/statistics/stays"):
        assert client.get(path, params=params, headers=headers).status_code == 403
