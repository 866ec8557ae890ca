"""Proof that a patient is present, for the gateway's patient sessions (no FastAPI here).

A kiosk offers the slip code printed at registration (凭条码) plus the birth date or the last four
digits of the registered phone; an app offers the identity number plus a one-time code sent to that
phone. Whatever fails — an unknown code or number, a wrong factor, an expired slip, a lock — the
verdict is the same bare "no", so a caller learns nothing about who is registered. Each patient and
each device (the calling client) may fail `session_max_failures` times within the lock period; then
both are locked for `session_lock_seconds`, the right proof included. Every try is audited.

Codes are random (`secrets`), never derived from an identity, and stored only as keyed digests.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlmodel import Session

from kit.clock import as_utc, utcnow
from services.registration import repository
from services.registration.config import RegistrationSettings
from services.registration.identity import id_number_problem, normalise_id_number
from services.registration.models import OneTimeCode, Patient, SessionAttempt, SessionLock, SlipCode, Visit
from services.registration.notifier import TextMessage

# No 0/O, 1/I/L: read off a paper slip and typed on a touch screen without doubt. 31**8 ≈ 8.5e11.
SLIP_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
SLIP_LENGTH = 8
ONE_TIME_CODE_DIGITS = 6
_PURPOSE = b"patientflow registration patient-proof v1"


def new_slip_code() -> str:
    return "".join(secrets.choice(SLIP_ALPHABET) for _ in range(SLIP_LENGTH))


def new_one_time_code() -> str:
    return f"{secrets.randbelow(10**ONE_TIME_CODE_DIGITS):0{ONE_TIME_CODE_DIGITS}d}"


def normalise_slip_code(raw: str) -> str:
    """Upper-case, without the spaces or dashes a slip may print for readability."""
    return raw.upper().replace("-", "").replace(" ", "")


def digest(secret: str, kind: str, value: str) -> str:
    """A keyed digest (HMAC-SHA256, hex): a stolen table alone cannot be searched for a 6-digit code."""
    key = hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


# --- lockout arithmetic (pure) -------------------------------------------------------------------


def is_locked(lock: SessionLock, now: datetime) -> bool:
    return lock.locked_until is not None and as_utc(lock.locked_until) > now


def count_failure(lock: SessionLock, now: datetime, *, max_failures: int, lock_seconds: int) -> None:
    """One more wrong try; the `max_failures`-th within `lock_seconds` of the previous locks the key."""
    last = lock.last_failure_at
    if last is None or now - as_utc(last) > timedelta(seconds=lock_seconds):
        lock.failures = 0  # older failures are forgotten, as a lock would have been by now
    lock.failures += 1
    lock.last_failure_at = now
    if lock.failures >= max_failures:
        lock.locked_until = now + timedelta(seconds=lock_seconds)
        lock.failures = 0


def clear_failures(lock: SessionLock) -> None:
    lock.failures, lock.last_failure_at = 0, None


def patient_key(patient_id: str) -> str:
    return f"patient:{patient_id}"


def device_key(client: str) -> str:
    return f"client:{client}"


# --- issuing -------------------------------------------------------------------------------------


def issue_slip(
    session: Session,
    *,
    visit: Visit,
    settings: RegistrationSettings,
    valid_seconds: int | None = None,
    now: datetime | None = None,
) -> tuple[str, SlipCode]:
    """A new slip code for the visit (returned once, in clear); the visit's earlier slips stop working."""
    now = now or utcnow()
    lifetime = min(valid_seconds or settings.slip_code_seconds, settings.slip_code_seconds)
    repository.revoke_slips(session, visit_id=visit.id, now=now)
    code = new_slip_code()
    slip = SlipCode(
        code_digest=digest(settings.internal_secret, "slip", code),
        visit_id=visit.id,
        issued_at=now,
        expires_at=now + timedelta(seconds=lifetime),
    )
    session.add(slip)
    return code, slip


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a try turned out to be before the locks are consulted."""

    method: str
    presented: str  # short digest of the slip code or identity number
    patient: Patient | None
    outcome: str  # ok, wrong-factor, unknown, expired


def _lock_keys(client: str, patient: Patient | None) -> list[str]:
    return [device_key(client)] + ([patient_key(patient.id)] if patient is not None else [])


def _decide(
    session: Session, *, client: str, attempt: Attempt, settings: RegistrationSettings, now: datetime
) -> str:
    """Apply the locks to a try, count it, audit it; the final outcome."""
    locks = repository.session_locks(session, _lock_keys(client, attempt.patient))
    outcome = attempt.outcome
    if any(is_locked(lock, now) for lock in locks):
        outcome = "locked"
    elif outcome == "ok":
        # The patient proved themselves; the device's count stands, so a device cannot clear its own
        # record with one good slip between guesses.
        for lock in locks[1:]:
            clear_failures(lock)
    else:
        for lock in locks:
            count_failure(
                lock,
                now,
                max_failures=settings.session_max_failures,
                lock_seconds=settings.session_lock_seconds,
            )
    for lock in locks:
        session.add(lock)
    session.add(
        SessionAttempt(
            at=now,
            client=client,
            method=attempt.method,
            patient_id=attempt.patient.id if attempt.patient else None,
            outcome=outcome,
            presented=attempt.presented,
        )
    )
    return outcome


def _presented(settings: RegistrationSettings, kind: str, value: str) -> str:
    return digest(settings.internal_secret, f"audit-{kind}", value)[:16]


def _matches(expected: str | None, given: str) -> bool:
    return expected is not None and hmac.compare_digest(expected.encode(), given.encode())


def check_slip(
    session: Session,
    *,
    client: str,
    slip_code: str,
    birth_date: date | None,
    phone_last4: str | None,
    settings: RegistrationSettings,
    now: datetime | None = None,
) -> str | None:
    """The patient a kiosk's slip code and second factor prove, or None."""
    now = now or utcnow()
    code = normalise_slip_code(slip_code)
    slip = repository.find_slip(session, digest(settings.internal_secret, "slip", code))
    visit = repository.get_visit(session, slip.visit_id) if slip else None
    patient = repository.get_patient(session, visit.patient_id) if visit else None
    if slip is None or patient is None:
        outcome = "unknown"
    elif slip.revoked_at is not None or as_utc(slip.expires_at) <= now:
        outcome = "expired"
    elif birth_date is not None:
        outcome = "ok" if patient.birth_date == birth_date else "wrong-factor"
    else:
        last4 = patient.phone[-4:] if patient.phone else None
        outcome = "ok" if _matches(last4, phone_last4 or "") else "wrong-factor"
    attempt = Attempt("slip", _presented(settings, "slip", code), patient, outcome)
    final = _decide(session, client=client, attempt=attempt, settings=settings, now=now)
    return patient.id if final == "ok" and patient is not None else None


def _patient_by_id_number(session: Session, raw: str) -> tuple[str, Patient | None]:
    """The normalised number and its patient; a malformed number is simply nobody's."""
    id_number = normalise_id_number(raw)
    if id_number_problem(id_number) is not None:
        return id_number, None
    patient = repository.find_patient_by_id_number(session, id_number)
    return id_number, patient if patient is not None and patient.merged_into_id is None else None


def check_one_time_code(
    session: Session,
    *,
    client: str,
    id_number: str,
    code: str,
    settings: RegistrationSettings,
    now: datetime | None = None,
) -> str | None:
    """The patient an app's identity number and one-time code prove, or None. A code works once."""
    now = now or utcnow()
    number, patient = _patient_by_id_number(session, id_number)
    # Hold the lock rows before reading the code: two requests with one code at once then run one
    # after the other, and the second finds the code spent (PostgreSQL reads are not serialised).
    repository.session_locks(session, _lock_keys(client, patient))
    sent = repository.latest_one_time_code(session, patient.id) if patient else None
    if patient is None:
        outcome = "unknown"
    elif sent is None or sent.spent_at is not None or as_utc(sent.expires_at) <= now:
        outcome = "expired"
    elif _matches(sent.code_digest, digest(settings.internal_secret, f"otp:{patient.id}", code)):
        outcome = "ok"
    else:
        outcome = "wrong-factor"
    attempt = Attempt("otp", _presented(settings, "id", number), patient, outcome)
    final = _decide(session, client=client, attempt=attempt, settings=settings, now=now)
    if final != "ok" or patient is None:
        return None
    repository.spend_one_time_codes(session, patient_id=patient.id, now=now)
    return patient.id


def send_challenge(
    session: Session,
    *,
    client: str,
    id_number: str,
    settings: RegistrationSettings,
    now: datetime | None = None,
) -> TextMessage | None:
    """A one-time code for the patient with this identity number, as the message to send once the
    transaction has committed; None (and nothing sent) when there is no such patient, no phone on
    file, or the patient or device is locked. Asking is audited but never counted as a wrong try."""
    now = now or utcnow()
    number, patient = _patient_by_id_number(session, id_number)
    locked = any(
        is_locked(lock, now) for lock in repository.session_locks(session, _lock_keys(client, patient))
    )
    if patient is None:
        outcome = "unknown"
    elif locked:
        outcome = "locked"
    elif not patient.phone:
        outcome = "no-phone"
    else:
        outcome = "sent"
    session.add(
        SessionAttempt(
            at=now,
            client=client,
            method="challenge",
            patient_id=patient.id if patient else None,
            outcome=outcome,
            presented=_presented(settings, "id", number),
        )
    )
    if outcome != "sent" or patient is None or patient.phone is None:
        return None
    repository.spend_one_time_codes(session, patient_id=patient.id, now=now)
    code = new_one_time_code()
    session.add(
        OneTimeCode(
            patient_id=patient.id,
            code_digest=digest(settings.internal_secret, f"otp:{patient.id}", code),
            issued_at=now,
            expires_at=now + timedelta(seconds=settings.one_time_code_seconds),
        )
    )
    minutes = max(1, settings.one_time_code_seconds // 60)
    text = f"【patientflow】验证码 {code}，{minutes} 分钟内有效。Your code: {code} ({minutes} min)."
    return TextMessage(phone=patient.phone, patient_id=patient.id, text=text)
