"""`/docs` with no network: Swagger UI (5.x, which reads OpenAPI 3.1) served from the assets
the `fastapi-offline` package ships, not from a public CDN (FastAPI's default), so the page works
on a machine that cannot reach the internet. ReDoc, which would load from a CDN too, is not
served."""

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def serve_docs(app: FastAPI) -> None:
    """Swagger UI at /docs, its assets at /docs/assets (the app is made with docs_url=None)."""
    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(ASSETS, StaticFiles(directory=assets), "docs")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} · API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )
