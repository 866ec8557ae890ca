"""Swagger UI at `/docs`, its JavaScript and CSS served by the process itself.

FastAPI's own page loads Swagger UI from a CDN, so on a machine without the internet (a hospital's
network, often) it is blank. The assets come from the `fastapi-offline` package (Swagger UI 5, which
reads OpenAPI 3.1); only its files are used, not its app factory.
"""

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"


def install_docs(app: FastAPI, *, openapi_url: str = "/openapi.json") -> None:
    """Serve `/docs` and its assets under `/docs/assets` (create the app with `docs_url=None`)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    async def swagger_ui(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} – API docs",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )

    app.add_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
