"""Patient tokens: an app or kiosk acts for one patient at a time and reaches only that patient's records.

`POST /v1/patient-sessions` (gateway/sessions.py) gives the client a short-lived token, signed by the
gateway and bound to the client's name; the client sends it as `X-Patient-Token` beside its API key.
Each route says how a request is tied to the patient (`GatewayRoute.owner`); a record of another
patient answers 404 exactly as a missing one does, so a client cannot probe which ids exist.
"""

import json
import re
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from gateway.errors import (
    PatientNotFound,
    PatientRouteForbidden,
    PatientTokenExpired,
    PatientTokenInvalid,
    RecordNotFound,
    VisitNotFound,
)
from gateway.keys import Caller
from gateway.routes import GatewayRoute
from gateway.signed import TokenForged, TokenMalformed, seal, unseal

PATIENT_TOKEN_HEADER = "x-patient-token"
TOKEN_PREFIX = "pt1"
# A purpose of its own, so no other token signed with the internal secret can pass as a patient token.
TOKEN_PURPOSE = b"patientflow gateway patient-token v1"
_PATH_VALUE = re.compile(r"\{([a-z_]+)\}")
RegistrationLookup = Callable[[str], Awaitable[dict[str, Any] | None]]  # GET path -> body, None on 404


def mint_patient_token(
    secret: str, *, client: str, patient: str, lifetime: int, now: float | None = None
) -> tuple[str, int]:
    """A token letting `client` act for `patient`, and when it expires (epoch seconds)."""
    expires = int(time.time() if now is None else now) + lifetime
    claims = {"cli": client, "pat": patient, "exp": expires}
    return seal(secret, purpose=TOKEN_PURPOSE, prefix=TOKEN_PREFIX, claims=claims), expires


def verify_patient_token(secret: str, token: str, *, client: str, now: float | None = None) -> str:
    """The patient a valid token names; 403 if forged, malformed, another client's, or expired."""
    try:
        claims = unseal(secret, token, purpose=TOKEN_PURPOSE, prefix=TOKEN_PREFIX)
    except TokenMalformed:
        raise PatientTokenInvalid("The patient token is malformed.") from None
    except TokenForged:
        raise PatientTokenInvalid() from None
    # Signed, yet not what mint_patient_token writes (a bug, or a leaked secret): refuse, never a 500.
    if not isinstance(claims, dict) or type(claims.get("exp")) is not int:
        raise PatientTokenInvalid("The patient token is malformed.")
    patient = claims.get("pat")
    if claims.get("cli") != client or not isinstance(patient, str) or not patient:  # not another app's
        raise PatientTokenInvalid()
    if claims["exp"] <= (time.time() if now is None else now):
        raise PatientTokenExpired()
    return patient


@lru_cache(maxsize=256)
def _path_regex(template: str) -> re.Pattern[str]:
    literals = _PATH_VALUE.split(template)[::2]
    names = _PATH_VALUE.findall(template)
    parts = [re.escape(literals[0])]
    for name, literal in zip(names, literals[1:], strict=True):
        parts += [f"(?P<{name}>[^/]+)", re.escape(literal)]
    return re.compile("".join(parts))


def path_value(route: GatewayRoute, path: str, name: str = "id") -> str:
    """The value of `{name}` in a (decoded, prefix-less) path that matched `route`."""
    found = _path_regex(route.path).fullmatch(path)
    if found is None:  # cannot happen for a path the table matched; refuse rather than guess
        raise PatientRouteForbidden()
    return found.group(name)


class PatientBinding:
    """Ties a patient-bound client's requests to its patient, asking registration about visits."""

    def __init__(self, lookup: RegistrationLookup, *, visit_cache_seconds: float) -> None:
        self._lookup = lookup
        self._ttl = visit_cache_seconds
        self._visit_patients: dict[str, tuple[str, float]] = {}

    async def visit_patient(self, visit_id: str) -> str:
        """The patient a visit belongs to (briefly cached); VisitNotFound (404) if there is no such visit."""
        cached = self._visit_patients.get(visit_id)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        visit = await self._lookup(f"/visits/{quote(visit_id, safe='')}")
        if visit is None:
            raise VisitNotFound()
        patient_id = str(visit["patient_id"])
        if len(self._visit_patients) > 10_000:  # stale entries are dropped wholesale, rarely
            self._visit_patients.clear()
        self._visit_patients[visit_id] = (patient_id, now + self._ttl)
        return patient_id

    async def check_visit(self, caller: Caller, visit_id: str) -> None:
        """404 unless the visit is the acting patient's (for the journey view and visit routes)."""
        if caller.patient is not None and await self.visit_patient(visit_id) != caller.patient:
            raise VisitNotFound()

    async def check_request(self, caller: Caller, route: GatewayRoute, path: str) -> None:
        """Before forwarding: may this patient-bound client use this route for this path?"""
        if route.owner is None:
            raise PatientRouteForbidden()
        if route.owner == "patient" and path_value(route, path) != caller.patient:
            raise PatientNotFound()
        if route.owner == "visit":
            await self.check_visit(caller, path_value(route, path))
        if route.owner == "appointment":
            await self.check_appointment(caller, path_value(route, path))

    async def check_appointment(self, caller: Caller, appointment_id: str) -> None:
        """404 unless the appointment is the acting patient's (never cached: it is one look-up per write)."""
        appointment = await self._lookup(f"/appointments/{quote(appointment_id, safe='')}")
        if appointment is None or appointment.get("patient_id") != caller.patient:
            raise RecordNotFound()

    @staticmethod
    def check_body(caller: Caller, route: GatewayRoute, body: bytes | None) -> None:
        """Before forwarding a `body`-bound route: the JSON body's `patient_id` must be the acting patient
        (anything else, a malformed body included, is the 404 of another patient's record)."""
        if route.owner != "body":
            return
        try:
            record = json.loads(body or b"")
        except ValueError:
            raise PatientNotFound() from None
        if not isinstance(record, dict) or record.get("patient_id") != caller.patient:
            raise PatientNotFound()

    @staticmethod
    def check_response(caller: Caller, route: GatewayRoute, status_code: int, body: bytes) -> None:
        """After forwarding a `response`-bound route: a record of another patient is a 404."""
        if route.owner != "response" or not 200 <= status_code < 300:
            return
        try:
            record = json.loads(body)
        except ValueError:
            raise RecordNotFound() from None
        if not isinstance(record, dict) or record.get("patient_id") != caller.patient:
            raise RecordNotFound()
