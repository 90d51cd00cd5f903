"""``/docs``: Swagger UI served from the ``swagger-ui-bundle`` package's files, never a CDN.

FastAPI's documented way to self-host the docs' static files: turn off the default ``/docs``,
mount the files, and serve ``get_swagger_ui_html`` pointing at them.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

STATIC = "/docs/static"


def install(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` and its files under ``/docs/static``."""
    app.mount(STATIC, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/favicon-32x32.png",
        )
