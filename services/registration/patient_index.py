"""The patient index (患者主索引): medical-card numbers, search by identity number, card, phone or name,
and what each kind of client sees of the patients it finds.

Search is for staff desks only (no patient-bound app or kiosk reaches it): identity number, card number
and phone match exactly; a name matches by prefix (`张` finds 张三 and 张三丰; a whole name is its own
prefix). What a search is given is never repeated in an error or a log line: the detail says which key
was wrong, never its value.
"""

import secrets
from dataclasses import dataclass

from sqlmodel import Session

from kit.logging import mask_name, mask_phone
from services.registration import repository
from services.registration.errors import InvalidSearch
from services.registration.identity import id_number_problem, mask_id_number, normalise_id_number
from services.registration.models import Patient
from services.registration.schemas import InsuranceScheme, PatientSearchHit

# Issued card numbers: 12 digits, never starting with 0 (so no reader or spreadsheet drops a digit).
ISSUED_CARD_DIGITS = 12


@dataclass(frozen=True, slots=True)
class SearchView:
    """Which personal fields a kind of client sees in full in search answers (the rest masked)."""

    name: bool
    phone: bool


# What each gateway client kind sees of a patient it finds; the identity number is masked for all.
# Registration desks (his) and administrators call patients back, so they see the phone; clinical and
# cashier desks need the name to call the patient, not the number. Anything else sees both masked.
SEARCH_VIEWS: dict[str, SearchView] = {
    "his": SearchView(name=True, phone=True),
    "admin": SearchView(name=True, phone=True),
    "nurse": SearchView(name=True, phone=False),
    "doctor": SearchView(name=True, phone=False),
    "cashier": SearchView(name=True, phone=False),
}
MASKED_VIEW = SearchView(name=False, phone=False)


def search_view(kind: str | None) -> SearchView:
    return SEARCH_VIEWS.get(kind or "", MASKED_VIEW)


def issue_card_number() -> str:
    """A fresh random card number; the unique index catches the rare clash (the caller draws again)."""
    return str(10 ** (ISSUED_CARD_DIGITS - 1) + secrets.randbelow(9 * 10 ** (ISSUED_CARD_DIGITS - 1)))


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientQuery:
    """What a search asked for (at least one key; several keys must all match)."""

    id_number: str | None = None
    card_number: str | None = None
    phone: str | None = None
    name: str | None = None


def checked_query(query: PatientQuery) -> PatientQuery:
    """The query with the identity number normalised and validated (400 naming the key, never its value)."""
    name = query.name.strip() if query.name is not None else None
    if not any((query.id_number, query.card_number, query.phone, name)):
        raise InvalidSearch("Search by id_number, card_number, phone or name (at least one).")
    id_number = normalise_id_number(query.id_number) if query.id_number else None
    if id_number is not None:
        problem = id_number_problem(id_number)
        if problem:
            raise InvalidSearch(problem, slug="invalid-id-number", field="id_number")
    return PatientQuery(id_number=id_number, card_number=query.card_number, phone=query.phone, name=name)


def search(
    session: Session, *, query: PatientQuery, after: str | None, limit: int
) -> tuple[list[Patient], str | None]:
    """One page of patients matching every key given, in id order, and the cursor of the next page."""
    checked = checked_query(query)
    rows = repository.search_patients(
        session,
        id_number=checked.id_number,
        card_number=checked.card_number,
        phone=checked.phone,
        name_prefix=checked.name or None,
        after=after,
        limit=limit + 1,
    )
    page = rows[:limit]
    return page, page[-1].id if len(rows) > limit else None


def to_hit(patient: Patient, *, kind: str | None) -> PatientSearchHit:
    """A patient as a client of `kind` may see it (SEARCH_VIEWS)."""
    view = search_view(kind)
    # An unidentified patient's alias may describe them (车祸伤者): it goes where the name goes.
    masked = ([] if view.name else ["name", "alias"]) + ([] if view.phone else ["phone"])
    return PatientSearchHit(
        id=patient.id,
        identified=patient.identified,
        id_number_masked=mask_id_number(patient.id_number),
        card_number=patient.card_number,
        insurance_scheme=InsuranceScheme(patient.insurance_scheme),
        name=patient.name if view.name or patient.name is None else mask_name(patient.name),
        phone=patient.phone if view.phone or not patient.phone else mask_phone(patient.phone),
        sex=patient.sex,
        birth_date=patient.birth_date,
        alias=patient.alias if view.name else None,
        merged_into_id=patient.merged_into_id,
        created_at=patient.created_at,
        masked=masked,
    )
