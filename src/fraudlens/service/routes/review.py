"""The analysts' review page: ``GET /review`` (``/`` redirects there) and its own script
and stylesheet. Self-contained: a strict Content-Security-Policy lets it load only these
files and call only this API."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from fraudlens.service.deps import ForAnalysts, ForEveryone

__all__ = ["PAGE_HEADERS", "router"]

router = APIRouter(include_in_schema=False)

_STATIC = "static"
_PAGE_FILES = {
    "review.js": "text/javascript; charset=utf-8",
    "review.css": "text/css; charset=utf-8",
}
#: The page loads only its own script and stylesheet and talks only to this API.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _page_file(name: str) -> bytes:
    return resources.files("fraudlens.service").joinpath(_STATIC, name).read_bytes()


@router.get("/", dependencies=[ForEveryone])
async def root() -> Response:
    """Redirect to the review page."""
    return RedirectResponse("/review", status_code=307)


@router.get("/review", dependencies=[ForAnalysts])
async def review_page() -> Response:
    """The review page."""
    html = await run_in_threadpool(_page_file, "review.html")
    return Response(html, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def _static(name: str, media: str) -> Callable[[], Any]:
    async def serve() -> Response:
        content = await run_in_threadpool(_page_file, name)
        return Response(content, media_type=media, headers=PAGE_HEADERS)

    serve.__name__ = f"review_{name.replace('.', '_')}"
    return serve


for _name, _media in _PAGE_FILES.items():
    router.add_api_route(
        f"/review/{_name}", _static(_name, _media), methods=["GET"], dependencies=[ForAnalysts]
    )


#: The service's icon: browsers ask for /favicon.ico on every page.
_ICON_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=86400"}


@router.get("/favicon.ico", dependencies=[ForEveryone])
@router.get("/favicon.svg", dependencies=[ForEveryone])
async def favicon() -> Response:
    """The service's icon (SVG, also at ``/favicon.ico``: browsers read it by its type)."""
    content = await run_in_threadpool(_page_file, "favicon.svg")
    return Response(content, media_type="image/svg+xml", headers=_ICON_HEADERS)
