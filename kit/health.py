"""Liveness and readiness: `/healthz` says the process runs, `/readyz` that it can serve."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from kit.errors import problem, problem_response

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz(request: Request) -> dict[str, Any]:
    """200 while the process is up."""
    return {"status": "ok", "service": request.app.state.settings.service_name}


@router.get("/readyz", summary="Readiness", response_model=None)
def readyz(request: Request) -> dict[str, Any] | JSONResponse:
    """200 when the database answers; 503 problem+json when it does not."""
    try:
        request.app.state.database.check()
    except Exception as exc:
        body = problem(503, "Not ready", f"Database unavailable: {type(exc).__name__}", slug="not-ready")
        return problem_response(body, {"Retry-After": "5"})
    return {"status": "ready", "service": request.app.state.settings.service_name}
