"""``GET /docs``: Swagger UI served from this process, with no internet.

The assets (script, stylesheet, icon) come from the ``swagger-ui-bundle-v2`` package and
are served under ``/docs/assets/``; the page references nothing on another host. Each
asset is its own route, so no client-chosen path ever reaches the file system.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from fraudlens.service.deps import ForEveryone

__all__ = ["ASSETS", "router"]

# Open to anyone: the API description holds no data.
router = APIRouter(include_in_schema=False, dependencies=[ForEveryone])

#: Files of the Swagger UI distribution that the page loads, and their media types.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_PREFIX = "/docs/assets"
# Swagger UI starts itself with an inline script; everything else must come from here.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


def _asset(name: str) -> bytes:
    from fraudlens._optional import require

    bundle = require("swagger_ui_bundle", extra="serve", feature="the offline /docs page")
    return bundle.swagger_ui_path.joinpath(name).read_bytes()  # type: ignore[no-any-return]


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for this service's OpenAPI document."""
    root = request.scope.get("root_path", "")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}{_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{root}{_PREFIX}/favicon-32x32.png",
        oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
        # No validator badge: Swagger UI would send the schema to an outside validator.
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers.update(_HEADERS)
    return page


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect page."""
    return get_swagger_ui_oauth2_redirect_html()


def _serve(name: str, media: str) -> Callable[[], Any]:
    async def serve() -> Response:
        content = await run_in_threadpool(_asset, name)
        return Response(
            content, media_type=media, headers={"Cache-Control": "public, max-age=86400"}
        )

    serve.__name__ = f"docs_{name.replace('.', '_').replace('-', '_')}"
    return serve


for _name, _media in ASSETS.items():
    router.add_api_route(f"{_PREFIX}/{_name}", _serve(_name, _media), methods=["GET"])
