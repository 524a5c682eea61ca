"""/docs works with no internet: Swagger UI's assets come from a package, served here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fraudlens.service import create_app

ATTR = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(models_dir=tmp_path_factory.mktemp("models"), preload=False)
    with TestClient(app) as c:
        yield c


def test_docs_page_references_only_local_assets(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    refs = ATTR.findall(html)
    assert refs, html
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
    assert "http://" not in html and "https://" not in html
    assert "validatorUrl" in html and "null" in html  # no outside validator badge
    # The browser may load nothing from another host.
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "'self'" in r.headers["content-security-policy"]
    # ReDoc would need a CDN, so it is not served.
    assert client.get("/redoc").status_code == 404


def test_docs_assets_load(client: TestClient) -> None:
    html = client.get("/docs").text
    kinds = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    seen = set()
    for ref in ATTR.findall(html):
        r = client.get(ref)
        assert r.status_code == 200, ref
        suffix = Path(ref).suffix
        assert kinds[suffix] in r.headers["content-type"], (ref, r.headers["content-type"])
        seen.add(suffix)
        if suffix == ".js":
            assert "SwaggerUIBundle" in r.text and len(r.content) > 500_000
    assert seen == {".js", ".css", ".png"}
    assert "url: '/openapi.json'" in html
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")
    assert client.get("/docs/oauth2-redirect").status_code == 200
    # Only the listed files are served: no path reaches the file system.
    for bad in ("/docs/assets/index.html", "/docs/assets/../__init__.py", "/docs/assets/x.js"):
        assert client.get(bad).status_code == 404, bad


@pytest.mark.slow
def test_docs_render_in_a_browser_without_network(tmp_path: Path) -> None:
    """Chromium renders the operations with every request to another host refused."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("uvicorn")
    from _live import chromium, serve_in_thread, watched_page  # type: ignore[import-not-found]

    app = create_app(models_dir=tmp_path / "models", preload=False)
    outside: list[str] = []
    with (
        serve_in_thread(app) as base,
        chromium() as browser,
        watched_page(browser, 1280, 720) as page,
    ):

        def route(r: Any) -> None:
            if r.request.url.startswith(base):
                r.continue_()
            else:
                outside.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.goto(f"{base}/docs")
        playwright_api.expect(page.locator(".opblock-summary-path").first).to_be_visible(
            timeout=30_000
        )
        paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert outside == []
    assert any("/invocations" in t for t in paths) and any("/v1/risk-events" in t for t in paths)
