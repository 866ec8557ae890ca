"""The result-access audit: where each look came from, and its export as FHIR R4 AuditEvent resources.

Every read, print and refusal of results writes one `ResultAccess` row in the request's own
transaction (`service._audit`): no row, no answer. The rows are append-only - a trigger refuses
UPDATE and DELETE (migration 0008_prints_audit) - and administrators read them as JSON or as a FHIR
`Bundle` of `AuditEvent`s (`GET /v1/audit/result-access?format=fhir`).
"""

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from services.results.models import ResultAccess

SOURCE_ADDRESS_MAX_LENGTH = 255
CLIENT_KIND_MAX_LENGTH = 16


@dataclass(frozen=True, slots=True)
class AccessOrigin:
    """Who-and-where facts of the current request that the audit row records beside the client name."""

    client_kind: str | None = None
    source_address: str | None = None


_origin: ContextVar[AccessOrigin | None] = ContextVar("results_access_origin", default=None)


def bounded_source(forwarded_for: str | None, peer: str | None) -> str | None:
    """The request's origin as stored: the gateway's X-Forwarded-For chain (the client's address last),
    else the direct peer; printable ASCII only, and the nearest hops kept when the chain is too long."""
    value = forwarded_for or peer
    if not value:
        return None
    cleaned = "".join(c for c in value if c.isascii() and c.isprintable()).strip()
    return cleaned[-SOURCE_ADDRESS_MAX_LENGTH:] or None


def note_origin(*, client_kind: str | None, forwarded_for: str | None, peer: str | None) -> None:
    """Remember the current request's origin for the audit rows it writes (router dependency)."""
    kind = client_kind[:CLIENT_KIND_MAX_LENGTH] if client_kind else None
    _origin.set(AccessOrigin(client_kind=kind, source_address=bounded_source(forwarded_for, peer)))


def current_origin() -> AccessOrigin:
    """The current request's origin (nothing known outside a request: a feed consumer, a test)."""
    return _origin.get() or AccessOrigin()


# --- FHIR R4 AuditEvent (https://hl7.org/fhir/R4/auditevent.html) ---

DCM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_TYPE = {"system": DCM, "code": "110110", "display": "Patient Record"}
RESTFUL = "http://hl7.org/fhir/restful-interaction"
# Our action -> (FHIR action code, restful interaction): every look is a Read or an Execute (a print).
ACTIONS: dict[str, tuple[str, str]] = {
    "read_report": ("R", "read"),
    "read_pdf": ("R", "read"),
    "visit_reports": ("R", "search-type"),
    "patient_reports": ("R", "search-type"),
    "released_reports": ("R", "search-type"),
    "print": ("E", "create"),
    "print_visit": ("E", "create"),
    "print_pdf": ("R", "read"),
}
# Our outcome -> FHIR outcome: 0 success, 4 minor failure (refused, not found, not released).
SUCCESS_OUTCOMES = frozenset({"found", "empty", "printed"})


def _outcome(outcome: str) -> str:
    return "0" if outcome in SUCCESS_OUTCOMES else "4"


def audit_event(row: ResultAccess) -> dict[str, Any]:
    """One audit row as a FHIR R4 AuditEvent: the requesting client (with its kind and network address),
    the patient concerned, and the reports it was shown."""
    action, interaction = ACTIONS.get(row.action, ("R", "read"))
    agent: dict[str, Any] = {
        "type": {"text": row.client_kind or "service"},
        "who": {"identifier": {"system": "urn:patientflow:client", "value": row.client}},
        "requestor": True,
    }
    if row.source_address:
        # The client's own address is the last of the forwarded chain; type 2 = IP address.
        agent["network"] = {"address": row.source_address.split(",")[-1].strip(), "type": "2"}
    if row.acting_for:
        agent["extension"] = [
            {
                "url": "urn:patientflow:acting-for",
                "valueReference": {"reference": f"Patient/{row.acting_for}"},
            }
        ]
    entities: list[dict[str, Any]] = []
    if row.patient_id:
        entities.append(
            {
                "what": {"reference": f"Patient/{row.patient_id}"},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
            }
        )
    shown = row.report_ids or ([row.report_id] if row.report_id and row.outcome in SUCCESS_OUTCOMES else [])
    entities += [
        {
            "what": {"reference": f"DiagnosticReport/{report_id}"},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4"},
        }
        for report_id in shown
    ]
    if row.visit_id:
        entities.append({"what": {"reference": f"Encounter/{row.visit_id}"}})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.id),
        "type": AUDIT_EVENT_TYPE,
        "subtype": [{"system": RESTFUL, "code": interaction}],
        "action": action,
        "recorded": row.at.isoformat(),
        "outcome": _outcome(row.outcome),
        "outcomeDesc": f"{row.action}: {row.outcome}",
        "agent": [agent],
        "source": {
            "observer": {"display": "patientflow results"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}],
        },
        "entity": entities,
    }
    if row.request_id:
        event["source"]["site"] = f"request {row.request_id}"
    return event


def audit_bundle(rows: Sequence[ResultAccess]) -> dict[str, Any]:
    """The rows as a FHIR R4 `searchset` Bundle of AuditEvents, newest first as they came."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(rows),
        "entry": [
            {"fullUrl": f"urn:patientflow:audit:{row.id}", "resource": audit_event(row)} for row in rows
        ],
    }
