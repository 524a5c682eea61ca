"""Monitoring: ``GET /monitor`` (the page) and ``GET /v1/monitor`` (the same figures as
JSON). Prometheus gets them from ``/metrics`` (:mod:`fraudlens.service._monitor`).

The page is HTML built on the server with its plots as inline SVG: no script, no outside
asset, every piece of text escaped; it shares the review page's strict
Content-Security-Policy and style.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fraudlens.service._responses import error_docs
from fraudlens.service.deps import ForAnalysts, ForAnyRole
from fraudlens.service.routes.review import PAGE_HEADERS, _page_file

__all__ = ["monitor_of", "router"]

router = APIRouter(tags=["monitoring"])

_MaxAge = Annotated[
    float | None,
    Query(
        ge=0,
        le=86_400,
        allow_inf_nan=False,
        description="Reuse a snapshot at most this old (seconds; at least 10).",
    ),
]


def monitor_of(request: Request) -> Any:
    """The app's :class:`~fraudlens.service._monitor.Monitor`."""
    return request.app.state.fraudlens_monitor


@router.get(
    "/v1/monitor",
    dependencies=[ForAnyRole],
    responses=error_docs(503, _503="The store cannot be reached"),
)
async def monitor_json(request: Request, max_age: _MaxAge = None) -> Any:
    """Alerts per day, reviewed precision per model version and week, the active market
    model's score distribution over recently active accounts and its features' drift
    against its training data (PSI, Wasserstein)."""
    monitor = monitor_of(request)
    snap = await run_in_threadpool(monitor.get, max_age)
    return snap.to_dict()


@router.get("/monitor", dependencies=[ForAnalysts], include_in_schema=False)
async def monitor_page(request: Request, max_age: _MaxAge = None) -> Response:
    """The monitoring page."""
    monitor = monitor_of(request)
    snap = await run_in_threadpool(monitor.get, max_age)
    return Response(
        _page(snap.to_dict()), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS
    )


@router.get("/monitor/monitor.css", dependencies=[ForAnalysts], include_in_schema=False)
async def monitor_css() -> Response:
    """The monitoring page's stylesheet."""
    css = await run_in_threadpool(_page_file, "monitor.css")
    return Response(css, media_type="text/css; charset=utf-8", headers=PAGE_HEADERS)


# ---------------------------------------------------------------------------- the page


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "—" if value is None else format(value, fmt)


def _page(s: dict[str, Any]) -> str:
    from fraudlens.monitoring._plots import (
        alerts_per_day_svg,
        drift_svg,
        precision_svg,
        score_histogram_svg,
    )

    computed = datetime.fromisoformat(s["computed_at"])
    today = computed.astimezone(UTC).date()
    counts = s["status_counts"]
    model = s["model"]
    scores = s["scores"]
    cards = [
        ("Open alerts", _num(counts.get("open", 0)), "to review"),
        ("Confirmed", _num(counts.get("confirmed", 0)), "fraud"),
        ("Dismissed", _num(counts.get("dismissed", 0)), "not fraud"),
    ]
    if model is not None:
        cards.append(("Active model", model["id"], f"trained {model.get('trained_at') or '?'}"))
    if scores is not None:
        cards.append(
            (
                "Flagged",
                _pct(scores["flagged_share"]),
                f"of {scores['accounts']:,} recently active accounts, over the model threshold",
            )
        )
    card_html = "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div>'
        f'<div class="s">{_e(sub)}</div></div>'
        for k, v, sub in cards
    )

    sections = []
    sections.append(
        _section(
            "alerts",
            "Alerts per day",
            f"Risk events recorded per UTC day and model version, the last {s['days']} days.",
            alerts_per_day_svg(s["events_per_day"], days=s["days"], today=today),
        )
    )
    rows = (
        "".join(
            f'<tr><td class="mono">{_e(r["model_version"])}</td>'
            f'<td class="num">{r["confirmed"]:,}</td><td class="num">{r["dismissed"]:,}</td>'
            f'<td class="num">{_pct(r["precision"])}</td></tr>'
            for r in s["precision_by_version"]
        )
        or '<tr><td colspan="4" class="muted">No decisions yet.</td></tr>'
    )
    table = (
        '<table class="grid" id="precision-table"><thead><tr><th>Model version</th>'
        '<th class="num">Confirmed</th><th class="num">Dismissed</th>'
        f'<th class="num">Precision</th></tr></thead><tbody>{rows}</tbody></table>'
    )
    sections.append(
        _section(
            "precision",
            "Reviewed precision",
            "Confirmed / (confirmed + dismissed) alerts, per model version and per ISO week the "
            "alerts were recorded in (open alerts do not count).",
            table + precision_svg(s["precision_by_week"]),
        )
    )
    if scores is not None and model is not None:
        q = scores["quantiles"]
        body = (
            f'<p class="muted">{scores["accounts"]:,} of the {scores["active_accounts"]:,} '
            f"accounts that traded in the {scores['hours']:g} h before the newest trade "
            f"({_e(scores['latest_trade'])}), each scored on its own window. Median "
            f"{_num(q.get('0.5'), '.3f')}, 90th percentile {_num(q.get('0.9'), '.3f')}, 99th "
            f"{_num(q.get('0.99'), '.3f')}.</p>"
            + score_histogram_svg(scores, thresholds={"model threshold": model["threshold"]})
        )
        sections.append(_section("scores", f"Scores of {model['id']}", "", body))
    if s["drift"]:
        rows = "".join(
            f'<tr class="level-{_e(r["level"])}"><td class="mono">{_e(r["feature"])}</td>'
            f'<td class="num">{_num(r["psi"], ".3f")}</td><td>{_e(r["level"])}</td>'
            f'<td class="num">{_num(r["wasserstein"], ".4g")}</td>'
            f'<td class="num">{_num(r["wasserstein_iqr"], ".2f")}</td></tr>'
            for r in s["drift"]
        )
        table = (
            '<div class="scroll"><table class="grid compact" id="drift-table"><thead><tr>'
            '<th>Feature</th><th class="num">PSI</th><th>Drift</th><th class="num">Wasserstein</th>'
            f'<th class="num">÷ training IQR</th></tr></thead><tbody>{rows}</tbody></table></div>'
        )
        sections.append(
            _section(
                "drift",
                "Feature drift against the training data",
                "The sample's account features against the quantile profile saved with the "
                "model at train time. PSI below 0.1: stable; 0.1-0.25: moderate; above 0.25: "
                "major.",
                drift_svg(s["drift"]) + table,
            )
        )
    notes = "".join(f"<li>{_e(n)}</li>" for n in s["notes"])
    notes_html = f'<ul class="notes">{notes}</ul>' if notes else ""
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Monitoring · fraudlens</title>
  <link rel="icon" href="/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/monitor/monitor.css">
</head>
<body>
  <header class="topbar">
    <div class="brand">
      <span class="logo" aria-hidden="true">◆</span>
      <span class="name">fraudlens</span>
      <span class="sep">/</span>
      <span class="section">Monitoring</span>
    </div>
    <nav class="topbar-right">
      <a class="toplink" href="/review">Review</a>
      <a class="toplink" href="/metrics">Metrics</a>
      <a class="toplink" href="/docs">API docs</a>
    </nav>
  </header>
  <main class="monitor">
    <p class="stamp">Computed {_e(s["computed_at"])} in {s["seconds"]:.2f} s ·
      <a href="/monitor?max_age=0">recompute</a></p>
    <div class="cards">{card_html}</div>
    {notes_html}
    {"".join(sections)}
  </main>
</body>
</html>
"""


def _section(ident: str, title: str, lead: str, body: str) -> str:
    lead_html = f'<p class="muted">{_e(lead)}</p>' if lead else ""
    return (
        f'<section class="panel" id="{_e(ident)}"><h2>{_e(title)}</h2>{lead_html}'
        f'<div class="plot-wrap">{body}</div></section>'
    )
