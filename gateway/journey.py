"""`GET /v1/visits/{visit_id}/journey`: one visit's timeline across the four services, with its waits.

The gateway asks the services concurrently, as the client (its internal token, its patient): the
visit from registration (required) and its inpatient stay (admission, transfers, discharge), then
assessments and tickets from triage, orders and reports from results, the account from billing, each
only when the client holds that service's read scope (else the part is `withheld`). Each part has its
own short timeout; a part whose service is down, slow or behind an open circuit is listed in `missing`
and the answer is still 200, with `partial: true`.
"""

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from gateway.config import GatewaySettings
from gateway.errors import RegistrationUnavailable, VisitNotFound
from gateway.keys import Caller
from gateway.proxy import Proxy
from gateway.schemas import JourneyPublic, MissingPart, StageWait, TimelineEntry, WithheldPart
from gateway.upstreams import Headers, Upstreams
from kit.clock import as_utc, utcnow
from kit.errors import ProblemError, problem_responses
from kit.requestid import current_request_id

VISIT_SCOPE = "registration:read"
ROUTE_KEY = "GET /visits/{id}/journey"
# Tie-break for entries at the same instant: the order things happen in a visit.
STAGE_ORDER = (
    "registered", "triaged", "queued", "called", "consultation_finished", "order_placed",
    "order_released", "report_preliminary", "report_final", "charge_posted", "charge_reversed", "payment",
    "settled",
    "admitted", "transferred", "discharged", "closed",
)  # fmt: skip
MOVEMENT_STAGES = {"admission": "admitted", "transfer": "transferred", "discharge": "discharged"}


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of the journey: a service-local GET for the visit, readable with `scope`."""

    name: str
    service: str
    scope: str
    path: str
    absent_is_empty: bool = False  # a 404 means "nothing yet" (billing opens accounts from events)

    @property
    def shape(self) -> type:
        return dict if self.name in ("account", "stay") else list


PARTS = (
    # A visit never admitted has no stay: 404, shown as none.
    Part("stay", "registration", "registration:read", "/visits/{id}/stay", absent_is_empty=True),
    Part("assessments", "triage", "triage:read", "/visits/{id}/assessments"),
    Part("tickets", "triage", "triage:read", "/visits/{id}/tickets"),
    Part("orders", "results", "results:read", "/visits/{id}/orders"),
    Part("reports", "results", "results:read", "/visits/{id}/reports"),
    Part("account", "billing", "billing:read", "/visits/{id}/account", absent_is_empty=True),
)


def journey_router(settings: GatewaySettings, proxy: Proxy, upstreams: Upstreams) -> APIRouter:
    """The journey route; include it before the `/v1/{path}` catch-all."""
    router = APIRouter(tags=["journey"])
    reader = JourneyReader(settings, upstreams)

    @router.get(
        "/v1/visits/{visit_id}/journey",
        summary="A visit's journey",
        responses=problem_responses(VisitNotFound, RegistrationUnavailable),
        openapi_extra={"x-required-scope": VISIT_SCOPE},
    )
    async def read_journey(
        request: Request, visit_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,36}$")]
    ) -> JourneyPublic:
        """One visit's timeline across registration, triage, results and billing, with each stage's wait.

        Needs `registration:read`; triage, results and billing parts appear only with their read scopes
        (otherwise they are listed in `withheld`). When a service is down the answer is still 200, with
        `partial: true` and the part in `missing`. An app or kiosk sees only its own patient's visits.
        """
        caller = await proxy.authenticate(request)
        caller.require(VISIT_SCOPE)
        proxy.limit_route(caller, ROUTE_KEY)
        # An app or kiosk: no service is asked about another patient's visit at all.
        await proxy.patients.check_visit(caller, visit_id)
        return await reader.read(caller, visit_id)

    return router


class JourneyReader:
    """Fans out to the services and assembles a `JourneyPublic`."""

    def __init__(self, settings: GatewaySettings, upstreams: Upstreams) -> None:
        self.settings = settings
        self.upstreams = upstreams

    async def read(self, caller: Caller, visit_id: str) -> JourneyPublic:
        def headers(service: str) -> Headers:  # each service gets a token minted for it alone
            return [
                (b"authorization", caller.tokens.header(service).encode("latin-1")),
                (b"x-request-id", (current_request_id() or "").encode("latin-1")),
                (b"accept", b"application/json"),
            ]

        allowed = [part for part in PARTS if part.scope in caller.scopes]
        visit, *answers = await asyncio.gather(
            self._get("registration", f"/visits/{visit_id}", headers("registration")),
            *(
                self._get(part.service, part.path.format(id=visit_id), headers(part.service))
                for part in allowed
            ),
        )
        record = self._visit(visit_id, visit, caller)
        parts: dict[str, Any] = {}
        missing: list[MissingPart] = []
        for part, (status, body) in zip(allowed, answers, strict=True):
            if status == 200 and isinstance(body, part.shape):
                parts[part.name] = body
            elif status == 200:
                detail = f"The {part.service} service answered an unexpected body."
                missing.append(MissingPart(service=part.service, part=part.name, status=502, detail=detail))
            elif status == 404 and part.absent_is_empty:
                parts[part.name] = None
            else:
                detail = body.get("detail", "") if isinstance(body, dict) else ""
                missing.append(
                    MissingPart(service=part.service, part=part.name, status=status, detail=detail)
                )
        withheld = [
            WithheldPart(service=p.service, part=p.name, scope=p.scope)
            for p in PARTS
            if p.scope not in caller.scopes
        ]
        target = self.settings.wait_target_minutes
        return JourneyPublic(
            visit_id=record["id"],
            patient_id=record["patient_id"],
            kind=record["kind"],
            department=record["department"],
            payment_mode=record["payment_mode"],
            status=record["status"],
            timeline=timeline(record, parts),
            waits=waits(record, parts, now=utcnow(), target_minutes=target),
            wait_target_minutes=target,
            partial=bool(missing),
            missing=missing,
            withheld=withheld,
        )

    def _visit(self, visit_id: str, answer: tuple[int, Any], caller: Caller) -> dict[str, Any]:
        status, body = answer
        if status == 404:
            raise VisitNotFound()
        if status != 200 or not isinstance(body, dict):
            raise RegistrationUnavailable(self.upstreams.circuit_retry_after)
        # Another patient's visit looks exactly like one that does not exist.
        if caller.patient is not None and body.get("patient_id") != caller.patient:
            raise VisitNotFound()
        return body

    async def _get(self, service: str, path: str, headers: Headers) -> tuple[int, Any]:
        """(status, JSON body) of a service GET; a call that got no answer gives the gateway's problem."""
        seconds = self.settings.journey_part_timeout
        try:
            response = await self.upstreams.send(
                service, "GET", path, headers=headers, deadline_seconds=seconds
            )
        except ProblemError as problem:
            return problem.status, problem.to_problem()
        try:
            return response.status_code, response.json()
        except ValueError:
            return 502, {"detail": f"The {service} service sent a body that is not JSON."}


def _at(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))


def _entry(at: str | None, stage: str, service: str, **details: Any) -> TimelineEntry | None:
    return TimelineEntry(at=_at(at), stage=stage, service=service, details=details) if at else None


def _ticket_entries(ticket: dict[str, Any]) -> Iterable[TimelineEntry | None]:
    number = {"ticket": ticket["display_number"], "department": ticket["department"]}
    yield _entry(ticket["enqueued_at"], "queued", "triage", **number, priority=ticket["priority"])
    yield _entry(ticket["called_at"], "called", "triage", **number, counter=ticket["counter"])
    yield _entry(ticket["finished_at"], "consultation_finished", "triage", **number)


def timeline(visit: dict[str, Any], parts: dict[str, Any]) -> list[TimelineEntry]:
    """Every dated step of the visit the parts show, oldest first."""
    found: list[TimelineEntry | None] = [
        _entry(
            visit["opened_at"], "registered", "registration",
            kind=visit["kind"], department=visit["department"], payment_mode=visit["payment_mode"],
        ),
    ]  # fmt: skip
    for assessment in parts.get("assessments") or []:
        found.append(
            _entry(
                assessment["assessed_at"], "triaged", "triage",
                level=assessment["level"], zone=assessment["zone"],
                response_minutes=assessment["response_minutes"],
            )
        )  # fmt: skip
    for ticket in parts.get("tickets") or []:
        found.extend(_ticket_entries(ticket))
    for order in parts.get("orders") or []:
        test = {"order_id": order["id"], "test_code": order["test_code"], "test_name": order["test_name"]}
        found.append(_entry(order["ordered_at"], "order_placed", "results", **test))
        found.append(_entry(order["released_at"], "order_released", "results", **test))
    for report in parts.get("reports") or []:
        found.append(
            _entry(
                report["reported_at"], f"report_{report['status']}", "results",
                report_id=report["id"], order_id=report["order_id"], test_code=report["test_code"],
                critical=report.get("critical", False),
            )
        )  # fmt: skip
    found.extend(_billing_entries(parts.get("account")))
    found.extend(_stay_entries(parts.get("stay")))
    found.append(_entry(visit.get("closed_at"), "closed", "registration", reason=visit.get("close_reason")))
    entries = [entry for entry in found if entry is not None]
    rank = {stage: index for index, stage in enumerate(STAGE_ORDER)}
    return sorted(entries, key=lambda e: (e.at, rank.get(e.stage, len(rank))))


def _stay_entries(stay: dict[str, Any] | None) -> Iterable[TimelineEntry | None]:
    """Admission, each transfer (with its handover note) and discharge, from registration's stay."""
    for movement in (stay or {}).get("movements") or []:
        moved_from = {"from_department": movement["from_department"], "from_ward": movement["from_ward"]}
        yield _entry(
            movement["at"], MOVEMENT_STAGES.get(movement["kind"], movement["kind"]), "registration",
            department=movement["department"], ward=movement["ward"], bed=movement["bed"],
            bed_class=movement["bed_class"], note=movement["note"],
            **(moved_from | {"from_bed": movement["from_bed"]} if movement["kind"] == "transfer" else {}),
        )  # fmt: skip


def _billing_entries(account: dict[str, Any] | None) -> Iterable[TimelineEntry | None]:
    if not account:
        return
    for charge in account["charges"]:
        stage = "charge_reversed" if charge.get("reversal_of") else "charge_posted"  # 冲销: a correction line
        yield _entry(
            charge["charged_at"], stage, "billing",
            charge_id=charge["id"], item_code=charge["item_code"], item_name=charge["item_name"],
            amount_fen=charge["amount_fen"],
        )  # fmt: skip
    # Payments and the settlement time appear when billing's account view lists them.
    for payment in account.get("payments") or []:
        yield _entry(
            payment["paid_at"], "payment", "billing",
            payment_id=payment["id"], amount_fen=payment["amount_fen"], method=payment["method"],
        )  # fmt: skip
    yield _entry(account.get("settled_at"), "settled", "billing", paid_fen=account["paid_fen"])


def waits(
    visit: dict[str, Any], parts: dict[str, Any], *, now: datetime, target_minutes: int
) -> list[StageWait]:
    """Each stage's wait: finished ones to their end, open ones until `now`; judged against
    `target_minutes` (the window target), except an order's wait for its report, judged against the
    order's own turnaround target (results' `target_minutes`: emergency 2 h, routine 24 h, or the item's)."""

    def wait(
        stage: str, service: str, start: str, end: str | None, target: int | None = None, **details: Any
    ) -> StageWait:
        started, ended = _at(start), _at(end) if end else None
        minutes = round(((ended or now) - started).total_seconds() / 60, 1)
        limit = target or target_minutes
        return StageWait(
            stage=stage, service=service, started_at=started, ended_at=ended, minutes=minutes,
            waiting=ended is None, exceeded=minutes > limit, target_minutes=limit, details=details,
        )  # fmt: skip

    found: list[StageWait] = []
    assessments = parts.get("assessments")
    if assessments:
        first = min(assessments, key=lambda a: _at(a["assessed_at"]))
        found.append(wait("registration_to_triage", "triage", visit["opened_at"], first["assessed_at"]))
    elif assessments is not None and visit["kind"] == "emergency":  # emergencies wait for triage
        found.append(wait("registration_to_triage", "triage", visit["opened_at"], None))
    for ticket in parts.get("tickets") or []:
        number = {"ticket": ticket["display_number"], "department": ticket["department"]}
        found.append(wait("queue", "triage", ticket["enqueued_at"], ticket["called_at"], **number))
    finals = _first_final_reports(parts.get("reports"))
    if parts.get("reports") is not None:
        for order in parts.get("orders") or []:
            test = {"order_id": order["id"], "test_code": order["test_code"]}
            reported = finals.get(order["id"])
            # An order placed before results kept targets has none: the window target judges it.
            target = order.get("target_minutes")
            found.append(wait("order_to_report", "results", order["ordered_at"], reported, target, **test))
    found.extend(_payment_waits(visit, parts.get("account"), wait))
    return found


FINAL_REPORT_STATUSES = frozenset({"final", "amended", "corrected"})


def _first_final_reports(reports: list[dict[str, Any]] | None) -> dict[str, str]:
    """Order id -> when its first final report came out (a report amended or corrected since was final)."""
    firsts: dict[str, str] = {}
    for report in sorted(reports or [], key=lambda r: _at(r["reported_at"])):
        if report["status"] in FINAL_REPORT_STATUSES:
            firsts.setdefault(report["order_id"], report["reported_at"])
    return firsts


def _payment_waits(
    visit: dict[str, Any], account: dict[str, Any] | None, wait: Callable[..., StageWait]
) -> Iterable[StageWait]:
    # Only a prepaying patient waits at the cashier before going on; settle-later and green-channel
    # charges are paid at the end by design, not a wait.
    if not account or visit["payment_mode"] != "prepay":
        return
    paid_at = {p["id"]: p["paid_at"] for p in account.get("payments") or []}
    # A reversed charge and its reversal line cancel out: neither is anything to pay.
    cancelled = {c["reversal_of"] for c in account["charges"] if c.get("reversal_of")}
    for charge in account["charges"]:
        if charge.get("reversal_of") or charge["id"] in cancelled:
            continue
        item = {"charge_id": charge["id"], "item_code": charge["item_code"]}
        if charge["status"] == "unpaid":
            yield wait("charge_to_payment", "billing", charge["charged_at"], None, **item)
        elif charge.get("payment_id") in paid_at:
            paid = paid_at[charge["payment_id"]]
            yield wait("charge_to_payment", "billing", charge["charged_at"], paid, **item)
