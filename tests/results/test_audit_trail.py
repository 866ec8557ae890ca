"""The result-access audit is append-only on the service's own connection (SQLite and PostgreSQL alike:
on PostgreSQL the service's own role lacks the privilege, migration 0011), the test wipe alone may clear
it, and it exports as FHIR R4 AuditEvents."""

import pytest
from fastapi.testclient import TestClient
from httpx import Client
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kit.database import Database
from kit.testing import database_url_under_test, internal_headers, wipe
from services.results.models import ReportPrint, ResultsTable
from tests.results.factories import post_report, released_order

MISSING = "00000000-0000-4000-8000-000000000000"


def one_audited_look(client: TestClient) -> None:
    response = client.get(f"/reports/{MISSING}")
    assert response.status_code == 404
    assert len(client.get("/audit/result-access").json()) == 1


def service_database(client: TestClient) -> Database:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    return database


def refusal(database: Database) -> str:
    """What refuses a change: PostgreSQL's privilege check (the runtime role), SQLite's trigger."""
    return "permission denied" if database.writer.dialect.name == "postgresql" else "append-only"


postgresql_only = pytest.mark.skipif(database_url_under_test() is None, reason="roles are PostgreSQL's")


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
    database = service_database(client)
    with pytest.raises(DBAPIError, match=refusal(database)), database.session() as session:
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
    with pytest.raises(DBAPIError, match=refusal(database)), database.session() as session:
        session.execute(text(statement))
    assert len(client.get("/audit/result-access").json()) == 1


def privileges(database: Database, table: str) -> dict[str, bool]:
    with database.session() as session:
        return {
            privilege: session.execute(
                text("SELECT has_table_privilege(:table, :privilege)"),
                {"table": table, "privilege": privilege},
            ).scalar_one()
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
        }


@postgresql_only
def test_the_services_own_connections_act_as_a_role_that_only_appends_to_the_audit(
    client: TestClient,
) -> None:
    one_audited_look(client)  # inserted through the service's own connection
    database = service_database(client)
    with database.session() as session:
        assert session.execute(text("SELECT current_user")).scalar_one() == "patientflow_results"
    appending = {"SELECT": True, "INSERT": True, "UPDATE": False, "DELETE": False, "TRUNCATE": False}
    assert privileges(database, "result_access") == appending
    assert privileges(database, "report_print") == appending  # UPDATE of patient_id alone: merges
    assert privileges(database, "report") == appending | {"UPDATE": True, "DELETE": True}


def one_print(client: TestClient, registration: Client) -> str:
    order = released_order(client, registration)
    report = post_report(client, order["id"])
    patient = order["patient_id"]
    headers = internal_headers("kiosk-1", {"results:read"}, audience="results", patient=patient, kind="kiosk")
    printed = client.post(f"/reports/{report['id']}/prints", headers=headers)
    assert printed.status_code == 201, printed.text
    return str(printed.json()["id"])


@postgresql_only
@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM result_access",
        "UPDATE result_access SET outcome = 'found'",
        "DELETE FROM report_print",
        "UPDATE report_print SET copy_number = 9",
    ],
)
def test_the_wipes_flag_gets_the_services_own_connection_nowhere(
    client: TestClient, registration: Client, statement: str
) -> None:
    """The trigger lets a connection that says it is the test wipe delete; the service's own role has
    no DELETE (nor UPDATE) to begin with, so saying so changes nothing."""
    print_id = one_print(client, registration)
    database = service_database(client)
    with pytest.raises(DBAPIError, match="permission denied"), database.session() as session:
        session.execute(text("SET LOCAL patientflow.wipe = 'on'"))
        session.execute(text(statement))
    with database.session() as session:
        printed = session.get(ReportPrint, print_id)
        assert printed is not None and printed.copy_number == 1
    assert [row["outcome"] for row in client.get("/audit/result-access").json()] == ["printed"]


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
