"""``/docs``: the bundled Swagger UI's version is checked against the OpenAPI version served."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI

from api import docs


def test_the_version_is_read_from_the_bundle_itself() -> None:
    bundle = (docs.SWAGGER_UI_DIR / docs.BUNDLE).read_text(encoding="utf-8")
    found = re.search(r'PACKAGE_VERSION:"([0-9.]+)"', bundle)
    assert found is not None
    assert docs.version_tuple(found.group(1)) == docs.swagger_ui_version()


def test_the_bundled_ui_renders_the_openapi_version_fastapi_serves() -> None:
    app = FastAPI(docs_url=None)
    docs.install(app)
    assert app.openapi()["openapi"] == app.openapi_version
    assert docs.can_render(docs.swagger_ui_version(), app.openapi_version)
    assert docs.swagger_ui_version() >= (5,)


@pytest.mark.parametrize(
    ("ui", "openapi", "ok"),
    [
        ((4, 15, 5), "3.1.0", False),  # "Unable to render this definition"
        ((5, 0, 0), "3.1.0", True),
        ((5, 36, 0), "3.1.1", True),
        ((4, 15, 5), "3.0.3", True),
        ((5, 36, 0), "3.2.0", False),  # unknown to this table: not assumed to work
        ((5, 36, 0), "4.0.0", False),
    ],
)
def test_can_render_table(ui: tuple[int, ...], openapi: str, ok: bool) -> None:
    assert docs.can_render(ui, openapi) is ok


def test_an_app_refuses_a_ui_that_cannot_render_its_openapi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docs, "swagger_ui_version", lambda: (4, 15, 5))
    with pytest.raises(RuntimeError, match=r"Swagger UI 4\.15\.5 cannot render OpenAPI 3\.1"):
        docs.install(FastAPI(docs_url=None))
