"""Catalogue and charging-rules endpoints: the published price list (价格公示), uploads of new versions
(`catalogue:write`), and every version kept for reading."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from kit.auth import CallerDep, require_scope
from kit.database import SessionDep
from kit.errors import problem_responses
from kit.params import page_size
from services.billing import catalogue
from services.billing.errors import (
    CatalogueInvalid,
    CatalogueVersionNotFound,
    ChargeRulesInvalid,
    ChargeRuleVersionNotFound,
    ItemNotFound,
    UploadTooLarge,
)
from services.billing.schemas import (
    CatalogueItemPublic,
    CatalogueVersionDetail,
    CatalogueVersionPublic,
    Category,
    ChargeRuleVersionDetail,
    ChargeRuleVersionPublic,
)
from services.billing.service import rules

router = APIRouter()
VersionIdPath = Annotated[int, Path(ge=1, le=2**53)]
DayQuery = Annotated[date | None, Query(alias="date", description="Prices in force that day; default today")]
CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


async def csv_upload(request: Request) -> bytes:
    """The request body (a CSV file), refused past the upload limit without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > catalogue.MAX_UPLOAD_BYTES:
        raise UploadTooLarge(f"A file of at most {catalogue.MAX_UPLOAD_BYTES} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > catalogue.MAX_UPLOAD_BYTES:
            raise UploadTooLarge(f"A file of at most {catalogue.MAX_UPLOAD_BYTES} bytes.")
    return bytes(body)


CsvUpload = Annotated[bytes, Depends(csv_upload)]


@router.get("/catalogue", dependencies=[require_scope("billing:read", patients=True)], tags=["catalogue"])
def read_catalogue(
    session: SessionDep,
    day: DayQuery = None,
    category: Category | None = None,
    include_inactive: Annotated[bool, Query(description="Also list items no longer charged")] = False,
) -> list[CatalogueItemPublic]:
    """The published price list (价格公示): every item of the catalogue in force with its price on the
    day (default today), national and hospital codes, unit, category and insurance class (甲/乙/丙);
    prices in integer fen. Patients' apps and kiosks may read it."""
    return catalogue.list_catalogue(session, day=day, category=category, include_inactive=include_inactive)


@router.get(
    "/catalogue/{code}",
    dependencies=[require_scope("billing:read", patients=True)],
    tags=["catalogue"],
    responses=problem_responses(ItemNotFound),
)
def read_catalogue_item(code: str, session: SessionDep, day: DayQuery = None) -> CatalogueItemPublic:
    """One catalogue item with its price on the day (default today); inactive ones too (old bills
    still name them)."""
    return catalogue.item_view(session, code=code, day=day)


@router.post(
    "/catalogue-versions",
    dependencies=[require_scope("catalogue:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["catalogue"],
    openapi_extra=CSV_BODY,
    responses=problem_responses(CatalogueInvalid, UploadTooLarge),
)
def upload_catalogue(content: CsvUpload, session: SessionDep, caller: CallerDep) -> CatalogueVersionPublic:
    """Load a new catalogue version from a CSV file (UTF-8; the columns of `catalogue.csv`).

    Every row is checked first: any bad row is 422 `catalogue-invalid` whose `errors` list every problem
    with its `line` (the header is line 1), and nothing is loaded. Otherwise the file becomes the
    catalogue in force: charges are priced by their service date from its periods; items it no longer
    lists can no longer be charged; earlier versions stay readable."""
    return catalogue.load_version(session, content=content, source="upload", loaded_by=caller.subject)


@router.get("/catalogue-versions", dependencies=[require_scope("billing:read")], tags=["catalogue"])
def read_catalogue_versions(
    session: SessionDep, limit: Annotated[int, page_size(500)] = 100
) -> list[CatalogueVersionPublic]:
    """Every load of the catalogue, newest (the one in force) first."""
    return catalogue.list_versions(session, limit=limit)


@router.get(
    "/catalogue-versions/{version_id}",
    dependencies=[require_scope("billing:read")],
    tags=["catalogue"],
    responses=problem_responses(CatalogueVersionNotFound),
)
def read_catalogue_version(version_id: VersionIdPath, session: SessionDep) -> CatalogueVersionDetail:
    """One catalogue version with every entry as loaded: which price applied when."""
    return catalogue.version_view(session, version_id=version_id)


@router.post(
    "/charge-rule-versions",
    dependencies=[require_scope("catalogue:write")],
    status_code=status.HTTP_201_CREATED,
    tags=["catalogue"],
    openapi_extra=CSV_BODY,
    responses=problem_responses(ChargeRulesInvalid, UploadTooLarge),
)
def upload_charge_rules(
    content: CsvUpload, session: SessionDep, caller: CallerDep
) -> ChargeRuleVersionDetail:
    """Load new charging rules from a CSV file (columns of `charge_rules.csv`: rule, item_code,
    other_item_code, max_quantity, visit_kinds, note), replacing the rules in force.

    Rules: `includes`, `excludes`, `max_per_day`, `max_per_stay`, `visit_kinds`. Every row is checked,
    its items against the catalogue in force: any bad row is 422 `charge-rules-invalid` listing every
    problem with its `line`, and nothing is loaded."""
    return rules.load_version(session, content=content, source="upload", loaded_by=caller.subject)


@router.get("/charge-rules", dependencies=[require_scope("billing:read")], tags=["catalogue"])
def read_charge_rules(session: SessionDep) -> ChargeRuleVersionDetail:
    """The charging rules in force, each with its id (a refusal's `rule_id`)."""
    return rules.version_view(session, version_id=None)


@router.get("/charge-rule-versions", dependencies=[require_scope("billing:read")], tags=["catalogue"])
def read_charge_rule_versions(
    session: SessionDep, limit: Annotated[int, page_size(500)] = 100
) -> list[ChargeRuleVersionPublic]:
    """Every load of the charging rules, newest (the rules in force) first."""
    return rules.list_versions(session, limit=limit)


@router.get(
    "/charge-rule-versions/{version_id}",
    dependencies=[require_scope("billing:read")],
    tags=["catalogue"],
    responses=problem_responses(ChargeRuleVersionNotFound),
)
def read_charge_rule_version(version_id: VersionIdPath, session: SessionDep) -> ChargeRuleVersionDetail:
    """One version of the charging rules with every rule as loaded."""
    return rules.version_view(session, version_id=version_id)
