"""The result-access audit is append-only on the service's own connection (SQLite and PostgreSQL alike),
the test wipe alone may clear it, and it exports as FHIR R4 AuditEvents."""

import pytest
from fastapi.testclient import TestClient
from httpx import Client
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kit.database import Database
from kit.testing import internal_headers, wipe
from services.results.models import ResultsTable
from tests.results.factories import post_report, released_order

MISSING = "00000000-0000-4000-8000-000000000000"


def one_audited_look(client: TestClient) -> None:
    response = client.get(f"/reports/{MISSING}")
    assert response.status_code == 404
    assert len(client.get("/audit/result-access").json()) == 1


def service_database(client: TestClient) -> Database:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    return database


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE result_access SET outcome = 'found'",
        "UPDATE result_access SET client = 'someone-else', patient_id = NULL",
        "DELETE FROM result_access",
    ],
)
def test_the_services_own_connection_cannot_change_or_delete_audit_rows(
    client: TestClient, statement: str
) -> None:
    one_audited_look(client)
    with pytest.raises(DBAPIError, match="append-only"), service_database(client).session() as session:
        session.execute(text(statement))
    rows = client.get("/audit/result-access").json()
    assert [(row["outcome"], row["client"]) for row in rows] == [("not_found", "test-client")]


def test_truncate_is_refused_too_on_postgresql(client: TestClient) -> None:
    one_audited_look(client)
    database = service_database(client)
    if database.writer.dialect.name != "postgresql":
        # SQLite has no TRUNCATE; its "DELETE FROM" without WHERE is covered above.
        statement = "DELETE FROM result_access WHERE id > 0"
    else:
        statement = "TRUNCATE result_access"
    with pytest.raises(DBAPIError, match="append-only"), database.session() as session:
        session.execute(text(statement))
    assert len(client.get("/audit/result-access").json()) == 1


def test_only_the_test_wipe_which_declares_itself_clears_the_audit(client: TestClient) -> None:
    one_audited_look(client)
    settings = client.app.state.settings  # type: ignore[attr-defined]
    wipe(settings.resolved_database_url, settings.resolved_schema, ResultsTable.metadata)
    assert client.get("/audit/result-access").json() == []


def test_the_audit_exports_as_a_fhir_bundle_of_audit_events(client: TestClient, registration: Client) -> None:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    me = order["patient_id"]
    kiosk = internal_headers("kiosk-hall-1", {"results:read"}, audience="results", patient=me, kind="kiosk")
    forwarded = {"x-forwarded-for": "203.0.113.50, 10.1.2.3"}
    client.get(f"/reports/{report['id']}/pdf", headers=kiosk | forwarded | {"x-request-id": "fhir-read"})
    client.get(f"/reports/{MISSING}/pdf", headers=kiosk | forwarded | {"x-request-id": "fhir-missing"})

    response = client.get("/audit/result-access", params={"format": "fhir", "patient_id": me})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    assert (bundle["resourceType"], bundle["type"], bundle["total"]) == ("Bundle", "searchset", 2)
    missing, read = (entry["resource"] for entry in bundle["entry"])  # newest first
    assert read["resourceType"] == "AuditEvent"
    assert read["type"]["code"] == "110110" and read["action"] == "R"
    assert (read["outcome"], missing["outcome"]) == ("0", "4")
    assert missing["outcomeDesc"] == "read_pdf: not_found"
    agent = read["agent"][0]
    assert agent["who"]["identifier"]["value"] == "kiosk-hall-1"
    assert agent["type"]["text"] == "kiosk" and agent["requestor"] is True
    assert agent["network"] == {"address": "10.1.2.3", "type": "2"}  # the hop the gateway itself saw
    references = [entity["what"]["reference"] for entity in read["entity"]]
    assert f"Patient/{me}" in references and f"DiagnosticReport/{report['id']}" in references
    assert read["recorded"].startswith("20")
    assert client.get("/audit/result-access", params={"format": "xml"}).status_code == 400
