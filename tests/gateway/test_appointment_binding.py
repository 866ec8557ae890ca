"""The gateway ties a patient-bound client's appointment calls to its patient before forwarding them:
a booking's body names the patient, an appointment's path names one of the patient's appointments."""

import asyncio
import json
from typing import Any

import pytest

from gateway.errors import PatientNotFound, RecordNotFound
from gateway.keys import Caller
from gateway.patients import PatientBinding
from gateway.routes import RouteTable
from kit.auth import TokenSource

ROUTES = RouteTable()
BOOK = ROUTES.match("POST", "/appointments")
CANCEL = ROUTES.match("POST", "/appointments/a-1/cancel")
APPOINTMENTS = {"a-1": {"id": "a-1", "patient_id": "p"}, "a-2": {"id": "a-2", "patient_id": "q"}}


def app_for(patient: str) -> Caller:
    tokens = TokenSource("secret", "app", frozenset({"appointments:write"}))
    return Caller(
        name="app", kind="app", scopes=frozenset({"appointments:write"}), tokens=tokens, patient=patient
    )


async def lookup(path: str) -> dict[str, Any] | None:
    return APPOINTMENTS.get(path.rsplit("/", 1)[1])


def test_the_routes_are_bound_as_the_table_says() -> None:
    assert BOOK is not None and BOOK.owner == "body"
    assert CANCEL is not None and CANCEL.owner == "appointment"


def test_a_booking_body_must_name_the_acting_patient() -> None:
    assert BOOK is not None
    PatientBinding.check_body(app_for("p"), BOOK, json.dumps({"patient_id": "p"}).encode())
    for body in (json.dumps({"patient_id": "q"}).encode(), b"not json", b"[]", None):
        with pytest.raises(PatientNotFound):
            PatientBinding.check_body(app_for("p"), BOOK, body)


def test_an_appointment_path_must_be_one_of_the_acting_patients() -> None:
    binding = PatientBinding(lookup, visit_cache_seconds=0)
    assert CANCEL is not None
    asyncio.run(binding.check_request(app_for("p"), CANCEL, "/appointments/a-1/cancel"))
    for path in ("/appointments/a-2/cancel", "/appointments/nobody/cancel"):
        with pytest.raises(RecordNotFound):
            asyncio.run(binding.check_request(app_for("p"), CANCEL, path))
