"""Registration's statistics end to end: what the HIS reads through the gateway after real bookings and
stays, and who may not read them."""

from datetime import UTC, datetime, timedelta

from kit.clock import hospital_date
from tests.e2e.clients import Gateway, assert_problem, ok
from tests.e2e.test_appointments import book, clinic_session, patient
from tests.e2e.test_stays import new_ward, open_visit


def test_the_his_reads_appointment_and_stay_statistics_and_a_nurse_may_not(gateway: Gateway) -> None:
    session = clinic_session(gateway, starts_in=-timedelta(minutes=30), quota=4, slot_minutes=60, hours=2)
    department = session["department"]
    ok(book(gateway.his, session["id"], patient(gateway)), 201)
    ok(book(gateway.his, session["id"], patient(gateway), channel="referral", referring_clinic="社区站"), 201)
    ok(book(gateway.nurse, session["id"], patient(gateway), channel="onsite", check_in=True), 201)
    ok(
        gateway.nurse.post(
            "/v1/visits",
            json={"patient_id": patient(gateway), "kind": "outpatient", "department": department},
        ),
        201,
    )
    today = hospital_date(datetime.now(UTC))
    days = sorted([session["date"], today.isoformat()])
    params = {"from_date": days[0], "to_date": days[-1], "department": department}

    counted = ok(gateway.his.get("/v1/statistics/appointments", params=params))
    assert counted["appointments"] == 3
    assert counted["by_channel"] == {"onsite": 1, "phone": 1, "referral": 1}
    assert counted["by_status"] == {"arrived": 1, "booked": 2}
    assert (counted["outpatient_visits"], counted["appointment_visits"], counted["appointment_ratio"]) == (
        2,
        1,
        0.5,
    )

    ward = new_ward(gateway, department)
    visit = open_visit(gateway)
    ok(gateway.nurse.post(f"/v1/visits/{visit['id']}/admission", json={"ward": ward, "bed": "1"}), 201)
    ok(gateway.nurse.post(f"/v1/visits/{visit['id']}/discharge", json={}))
    stay_params = {"from_date": today.isoformat(), "to_date": today.isoformat(), "department": department}
    stays = ok(gateway.admin.get("/v1/statistics/stays", params=stay_params))
    assert (stays["admissions"], stays["transfers"], stays["discharges"]) == (1, 0, 1)
    assert stays["longest_stay_days"] == 1

    assert_problem(gateway.nurse.get("/v1/statistics/appointments", params=params), 403)
    inverted = {"from_date": "2026-12-02", "to_date": "2026-12-01"}
    assert_problem(gateway.his.get("/v1/statistics/stays", params=inverted), 400)
