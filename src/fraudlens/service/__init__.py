"""The HTTP scoring service (FastAPI): SageMaker-compatible ``/ping`` and ``/invocations``,
the ``/v1`` API and ``/metrics``.

``create_app`` is imported on first use, so importing this package does not pull in the
web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fraudlens.service.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from fraudlens.service.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
