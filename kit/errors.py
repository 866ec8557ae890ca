"""The error tree: each error carries its status; one handler renders RFC 9457 problem+json."""

import json
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from kit.requestid import REQUEST_ID_SCOPE_KEY, current_request_id

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://patientflow.dev/problems/"
logger = logging.getLogger("patientflow.errors")
PARAMETER_LOCATIONS = frozenset({"query", "path", "header", "cookie"})
INVALID_PARAMETER = "Invalid parameter"
INVALID_REQUEST = "Invalid request"
_FASTAPI_422_REF = "#/components/schemas/HTTPValidationError"
_FASTAPI_422_SCHEMAS = ("HTTPValidationError", "ValidationError")
# PostgreSQL SQLSTATE classes of a server that cannot serve now, whatever the request: connection
# exceptions, transaction rollback (serialisation, deadlock), insufficient resources (too many
# connections), operator intervention (shutting down).
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")
DATABASE_RETRY_AFTER_SECONDS = 2


class ProblemError(Exception):
    """Base of every error a client may see; subclasses fix the status and the default title."""

    status = 500
    title = "Internal server error"
    slug = "internal-error"

    def __init__(
        self, detail: str, *, slug: str | None = None, title: str | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.slug = slug or self.slug
        self.title = title or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}

    def to_problem(self) -> dict[str, Any]:
        return problem(self.status, self.title, self.detail, slug=self.slug, **self.extra)


class BadRequest(ProblemError):
    status, title, slug = 400, "Bad request", "bad-request"


class Unauthorized(ProblemError):
    status, title, slug = 401, "Authentication required", "unauthorized"


class PaymentRequired(ProblemError):
    status, title, slug = 402, "Payment required", "payment-required"


class Forbidden(ProblemError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ProblemError):
    """Its detail never repeats the key looked up: a client may have typed an identity number or a name."""

    status, title, slug = 404, "Not found", "not-found"


class Conflict(ProblemError):
    status, title, slug = 409, "Conflict", "conflict"


class UnprocessableContent(ProblemError):
    status, title, slug = 422, "Unprocessable content", "unprocessable-content"


class BadGateway(ProblemError):
    status, title, slug = 502, "Bad gateway", "bad-gateway"


class ServiceUnavailable(ProblemError):
    status, title, slug = 503, "Service unavailable", "service-unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers["Retry-After"] = str(retry_after)


# Registration's status of a visit that takes no new work (settled, discharged, closed at the desk or at
# the end of the day). The services that take work for a visit (triage, results, billing) refuse it alike.
VISIT_CLOSED_STATUS = "closed"


class VisitClosed(Conflict):
    """Registration closed the visit (settled, discharged, closed at the desk or at the end of the day):
    it takes no new work here; what was done before still lands. The problem names the `visit_id`."""

    slug, title = "visit-closed", "Visit closed"


def ensure_visit_open(visit_id: str, status: str, *, detail: str | None = None) -> None:
    """Refuse new work for a visit registration has closed: 409 `visit-closed` with its `visit_id`.

    Call it on the visit a sibling lookup returned, before the unit of work opens (`kit.client`).
    """
    if status == VISIT_CLOSED_STATUS:
        raise VisitClosed(detail or f"Visit {visit_id} is closed; it takes no new work.", visit_id=visit_id)


def problem(status: int, title: str, detail: str, *, slug: str, **extra: Any) -> dict[str, Any]:
    """A problem+json body; `instance` is the request id so support can find the logs."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    request_id = current_request_id()
    if request_id:
        body["instance"] = f"urn:request:{request_id}"
    body.update(extra)
    return body


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def _on_problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.to_problem(), exc.headers)


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Never echo `input`: it may hold an identity number or a name (reliability.md, requirement 15).
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    if all(e["loc"] and e["loc"][0] in PARAMETER_LOCATIONS for e in errors):
        # A bad query, path or header value is a bad request (400); 422 is for a body we understood.
        body = problem(400, INVALID_PARAMETER, detail, slug="invalid-parameter", errors=errors)
    else:
        body = problem(422, INVALID_REQUEST, detail, slug="validation-error", errors=errors)
    return problem_response(body)


async def _on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    title = titles.get(exc.status_code, "HTTP error")
    slug = title.lower().replace(" ", "-")
    body = problem(exc.status_code, title, str(exc.detail), slug=slug)
    return problem_response(body, dict(exc.headers or {}))


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not serve this request now: unreachable, refusing or out
    of connections, the pool empty past its timeout, busy past SQLite's timeout, a serialisation or
    deadlock rollback. Transient, so a 503 with `Retry-After` (a write retried with its Idempotency-Key
    is safe even if the connection broke during COMMIT); every other database error (a missing table, a
    violated constraint) is still a bug, a 500."""
    if isinstance(exc, sa_exc.TimeoutError):
        return True  # no pooled connection came free in time
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    cause = exc.orig
    if isinstance(cause, psycopg.OperationalError):
        # No SQLSTATE: libpq's own failures (refused, reset, timed out), before or between answers.
        return cause.sqlstate is None or cause.sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    if isinstance(cause, sqlite3.OperationalError):
        return str(cause).startswith(_SQLITE_BUSY)
    return False


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_unavailable(exc):
        return await _on_unexpected(request, exc)
    # The error's type only: a driver's message may quote the statement's parameters.
    logger.warning("database unavailable (request %s): %s", current_request_id(), type(exc).__name__)
    body = problem(
        503, "Service unavailable", "The database cannot serve this request now; try again shortly.",
        slug="database-unavailable",
    )  # fmt: skip
    return problem_response(body, {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette calls this outside every middleware, so the request id comes from the scope.
    request_id: str | None = request.scope.get(REQUEST_ID_SCOPE_KEY)
    logger.exception("unhandled error (request %s)", request_id, exc_info=exc)
    body = problem(500, "Internal server error", "An unexpected error occurred.", slug="internal-error")
    headers = {}
    if request_id:
        body["instance"] = f"urn:request:{request_id}"
        headers["x-request-id"] = request_id
    return problem_response(body, headers)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error, 400/422 and unexpected 500 included, as problem+json; `app.openapi()` says so."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(sa_exc.DBAPIError, _on_database_error)
    app.add_exception_handler(sa_exc.TimeoutError, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        return document_validation_errors(build())  # idempotent: FastAPI caches what `build` returns

    app.openapi = openapi  # type: ignore[method-assign]


def document_validation_errors(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with FastAPI's generated 422 made true to `_on_validation`, changed in place.

    FastAPI lists a JSON 422 "Validation Error" on every route with a parameter or a body. A bad
    parameter is 400 here, so a route with a query, path, header or cookie parameter lists a 400
    problem; the 422 problem stays only where there is a body to be malformed.
    """
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and isinstance(operation.get("responses"), dict):
                _document_operation(operation)
    if _FASTAPI_422_REF not in json.dumps(document.get("paths", {})):
        schemas = document.get("components", {}).get("schemas", {})
        for name in _FASTAPI_422_SCHEMAS:
            schemas.pop(name, None)
    return document


def _document_operation(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    generated = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if generated.get("$ref") == _FASTAPI_422_REF:  # FastAPI's own, not a route's `responses=`
        if "requestBody" in operation:
            responses["422"] = _problem_doc(INVALID_REQUEST)
        else:
            del responses["422"]
    if any(p.get("in") in PARAMETER_LOCATIONS for p in operation.get("parameters", [])):
        responses.setdefault("400", _problem_doc(INVALID_PARAMETER))


def _problem_doc(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: {}}}


def problem_responses(*errors: type[ProblemError]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route, so OpenAPI lists the problems it can return."""
    return {err.status: _problem_doc(err.title) for err in errors}
