"""``/docs``: Swagger UI served from the ``fastapi-offline`` package's files, never a CDN.

FastAPI's documented way to self-host the docs' static files: turn off the default ``/docs``,
mount the files, and serve ``get_swagger_ui_html`` pointing at them.

Swagger UI renders OpenAPI 3.1 documents only from version 5 on (4.x shows "Unable to render
this definition"); the API refuses to start when the bundled UI cannot render the OpenAPI
version FastAPI writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/docs/static"
SWAGGER_UI_DIR = Path(fastapi_offline.__file__).parent / "static"
BUNDLE = "swagger-ui-bundle.js"

#: The first Swagger UI major version that renders each OpenAPI minor version.
UI_MAJOR_FOR_OPENAPI = {(2, 0): 3, (3, 0): 3, (3, 1): 5}


def swagger_ui_version() -> tuple[int, ...]:
    """Return the bundled Swagger UI's version, as its bundle states it (``PACKAGE_VERSION``)."""
    bundle = (SWAGGER_UI_DIR / BUNDLE).read_text(encoding="utf-8")
    found = re.search(r'PACKAGE_VERSION:"([0-9.]+)"', bundle)
    if found is None:
        raise RuntimeError(f"no PACKAGE_VERSION in {SWAGGER_UI_DIR / BUNDLE}")
    return version_tuple(found.group(1))


def version_tuple(text: str) -> tuple[int, ...]:
    """``"5.36.0"`` -> ``(5, 36, 0)``."""
    return tuple(int(part) for part in text.strip().split("."))


def can_render(ui_version: tuple[int, ...], openapi_version: str) -> bool:
    """True when a Swagger UI of ``ui_version`` renders an OpenAPI document of that version."""
    major_minor = version_tuple(openapi_version)[:2]
    needed = UI_MAJOR_FOR_OPENAPI.get((major_minor[0], major_minor[1]))
    return needed is not None and ui_version[0] >= needed


def install(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` and its files under ``/docs/static``.

    Raises:
        RuntimeError: the bundled Swagger UI cannot render the app's OpenAPI version.
    """
    ui = swagger_ui_version()
    if not can_render(ui, app.openapi_version):
        shown = ".".join(map(str, ui))
        raise RuntimeError(f"Swagger UI {shown} cannot render OpenAPI {app.openapi_version} (/docs)")
    app.mount(STATIC, StaticFiles(directory=str(SWAGGER_UI_DIR)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{STATIC}/{BUNDLE}",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/favicon.png",
        )
