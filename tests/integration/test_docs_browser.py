"""``/docs`` in a real headless Chromium: Swagger UI renders the API's OpenAPI document.

Swagger UI 4 loads an OpenAPI 3.1 document and shows "Unable to render this definition"; a test
that only checks that the files are served cannot see that.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.api_fixtures import ApiServer
from tests.support.browser import dump_dom

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)

PATH = re.compile(r'class="opblock-summary-path"[^>]*data-path="([^"]+)"')
#: Each operation's block: ``id="operations-<tag>-<operationId>"`` (once per tag it carries).
BLOCK_ID = re.compile(r'id="(operations-[^"]+)"')


def test_docs_page_lists_every_operation_in_a_real_browser(api: ApiServer) -> None:
    with api.client() as http:
        spec = http.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    blocks = {
        f"operations-{tag.replace(' ', '_')}-{op['operationId']}"
        for methods in spec["paths"].values()
        for op in methods.values()
        for tag in op.get("tags", ["default"])
    }
    dom = dump_dom(f"{api.base_url}/docs")
    assert "Unable to render this definition" not in dom
    assert "Failed to load API definition" not in dom
    paths = set(PATH.findall(dom))
    assert paths == set(spec["paths"]), sorted(paths ^ set(spec["paths"]))
    shown = {b for b in BLOCK_ID.findall(dom) if not b.startswith("operations-tag-")}
    assert shown == blocks, sorted(shown ^ blocks)
    assert "/api/v1/hosts/{host_id}/activate" in paths
