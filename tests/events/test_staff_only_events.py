"""Clinical alerts (a preliminary report, a critical value and what clinicians did about it) are for
staff: a reader acting for the patient never gets them from the hub, whatever its scopes."""

from services.events.service import STAFF_ONLY_EVENT_TYPES, Audience, _LoggedRow

SOURCES = frozenset({"results"})


def test_a_patients_reader_sees_their_report_events_but_not_the_clinical_alerts() -> None:
    patient = Audience(SOURCES, patient_id="p")
    staff = Audience(SOURCES)
    for event_type in sorted(STAFF_ONLY_EVENT_TYPES):
        event = _LoggedRow("results", event_type, "p")
        assert not patient.sees(event) and staff.sees(event), event_type
    for event_type in ("report.final", "report.amended_notice", "order.placed"):
        assert patient.sees(_LoggedRow("results", event_type, "p")), event_type
    assert not patient.sees(_LoggedRow("results", "report.final", "someone-else"))
