"""The monitoring plots, drawn as inline SVG on the server (no script, no outside asset,
every piece of text escaped)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

__all__ = ["alerts_per_day_svg", "drift_svg", "precision_svg", "score_histogram_svg"]

_W = 640
_PALETTE = ("#2457c5", "#c4572a", "#2e7d32", "#6a1b9a", "#00838f", "#8d6e63", "#ad1457")
_INK = "#1b1f24"
_MUTED = "#5d6673"
_GRID = "#e7eaee"
_LEVEL_COLOURS = {"none": "#6b86b8", "moderate": "#e0a030", "major": "#c43c32"}


def _t(value: object) -> str:
    return html.escape("".join(ch for ch in str(value) if ch >= " " or ch in "\t\n"), quote=True)


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(width: int, height: int, label: str, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_t(label)}" '
        f'font-family="system-ui, -apple-system, Segoe UI, DejaVu Sans, sans-serif">'
        f"<title>{_t(label)}</title>" + "".join(parts) + "</svg>"
    )


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * exp:
            return float(m * exp)
    return float(10 * exp)


def _y_axis(
    parts: list[str], left: int, top: int, width: int, height: int, vmax: float, fmt: Any
) -> None:
    for k in range(5):
        v = vmax * k / 4
        y = top + height - height * k / 4
        parts.append(
            f'<line x1="{left}" x2="{left + width}" y1="{_n(y)}" y2="{_n(y)}" stroke="{_GRID}"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{_n(y + 3.5)}" text-anchor="end" font-size="10" '
            f'fill="{_MUTED}">{_t(fmt(v))}</text>'
        )


def _legend(parts: list[str], items: Sequence[tuple[str, str]], x: int, y: int) -> None:
    for label, colour in items:
        parts.append(f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(
            f'<text x="{x + 14}" y="{y + 1}" font-size="11" fill="{_INK}">{_t(label)}</text>'
        )
        x += 24 + 7 * len(label)


def _colours(keys: Sequence[str]) -> dict[str, str]:
    return {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(keys)}


def alerts_per_day_svg(rows: Sequence[Mapping[str, Any]], *, days: int, today: date) -> str:
    """Risk events recorded per day, stacked by model version, over the last ``days``."""
    first = today - timedelta(days=days - 1)
    versions = sorted({str(r["model_version"]) for r in rows})
    colour = _colours(versions)
    per: dict[tuple[int, str], int] = {}
    for r in rows:
        i = (date.fromisoformat(str(r["day"])) - first).days
        if 0 <= i < days:
            per[(i, str(r["model_version"]))] = per.get((i, str(r["model_version"])), 0) + int(
                r["count"]
            )
    totals = [sum(n for (i, _v), n in per.items() if i == d) for d in range(days)]
    left, top, width, height = 48, 26, _W - 60, 150
    vmax = _nice_max(max(totals, default=0))
    parts: list[str] = []
    _y_axis(parts, left, top, width, height, vmax, lambda v: f"{v:,.0f}")
    bw = width / days
    for d in range(days):
        y: float = top + height
        for v in versions:
            n = per.get((d, v), 0)
            if not n:
                continue
            h = height * n / vmax
            y -= h
            parts.append(
                f'<rect class="bar" x="{_n(left + d * bw + 0.5)}" y="{_n(y)}" '
                f'width="{_n(max(bw - 1, 1))}" height="{_n(h)}" fill="{colour[v]}">'
                f"<title>{_t(f'{first + timedelta(days=d)}: {n:,} alerts of {v}')}</title></rect>"
            )
    step = max(1, days // 6)
    for d in range(0, days, step):
        x = left + d * bw + bw / 2
        parts.append(
            f'<text x="{_n(x)}" y="{top + height + 14}" text-anchor="middle" font-size="10" '
            f'fill="{_MUTED}">{_t((first + timedelta(days=d)).strftime("%m-%d"))}</text>'
        )
    _legend(parts, [(v, colour[v]) for v in versions] or [("no alerts", _GRID)], left, 12)
    return _svg(_W, top + height + 22, f"Alerts per day, last {days} days", parts)


def score_histogram_svg(scores: Mapping[str, Any], *, thresholds: Mapping[str, float]) -> str:
    """Histogram of the sample's scores, with threshold lines."""
    edges = [float(e) for e in scores["edges"]]
    counts = [int(c) for c in scores["counts"]]
    left, top, width, height = 48, 26, _W - 60, 150
    vmax = _nice_max(max(counts, default=0))
    parts: list[str] = []
    _y_axis(parts, left, top, width, height, vmax, lambda v: f"{v:,.0f}")
    lo, hi = edges[0], edges[-1]

    def x(v: float) -> float:
        return left + width * (v - lo) / (hi - lo)

    for i, n in enumerate(counts):
        h = height * n / vmax
        parts.append(
            f'<rect class="bar" x="{_n(x(edges[i]) + 0.5)}" y="{_n(top + height - h)}" '
            f'width="{_n(max(x(edges[i + 1]) - x(edges[i]) - 1, 1))}" height="{_n(h)}" '
            f'fill="#6b86b8"><title>{_t(f"{edges[i]:.2f}-{edges[i + 1]:.2f}: {n:,} accounts")}'
            "</title></rect>"
        )
    for k in range(6):
        v = lo + (hi - lo) * k / 5
        parts.append(
            f'<text x="{_n(x(v))}" y="{top + height + 14}" text-anchor="middle" font-size="10" '
            f'fill="{_MUTED}">{_t(f"{v:.1f}")}</text>'
        )
    legend = []
    for (label, value), colour in zip(thresholds.items(), ("#c43c32", "#1b1f24"), strict=False):
        parts.append(
            f'<line x1="{_n(x(value))}" x2="{_n(x(value))}" y1="{top}" y2="{top + height}" '
            f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
        legend.append((f"{label} {value:.2f}", colour))
    _legend(parts, legend, left, 12)
    return _svg(_W, top + height + 22, "Score distribution of recently active accounts", parts)


def precision_svg(weeks: Sequence[Mapping[str, Any]]) -> str:
    """Reviewed precision per ISO week, one line per model version."""
    labels = sorted({str(r["week"]) for r in weeks})
    versions = sorted({str(r["model_version"]) for r in weeks})
    colour = _colours(versions)
    left, top, width, height = 48, 26, _W - 60, 150
    parts: list[str] = []
    _y_axis(parts, left, top, width, height, 1.0, lambda v: f"{v:.0%}")
    n = max(len(labels), 1)

    def x(i: int) -> float:
        return left + width * (i + 0.5) / n

    for i, w in enumerate(labels):
        if n <= 12 or i % math.ceil(n / 12) == 0:
            parts.append(
                f'<text x="{_n(x(i))}" y="{top + height + 14}" text-anchor="middle" '
                f'font-size="10" fill="{_MUTED}">{_t(w)}</text>'
            )
    for v in versions:
        pts = [
            (labels.index(str(r["week"])), float(r["precision"]), int(r["reviewed"]))
            for r in weeks
            if str(r["model_version"]) == v and r["precision"] is not None
        ]
        pts.sort()
        if len(pts) > 1:
            path = " ".join(f"{_n(x(i))},{_n(top + height - height * p)}" for i, p, _ in pts)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour[v]}" stroke-width="2"/>'
            )
        for i, p, k in pts:
            parts.append(
                f'<circle class="point" cx="{_n(x(i))}" cy="{_n(top + height - height * p)}" '
                f'r="{_n(2.5 + min(k, 400) ** 0.5 / 4)}" fill="{colour[v]}">'
                f"<title>{_t(f'{v}, {labels[i]}: {p:.1%} of {k:,} reviewed')}</title></circle>"
            )
    _legend(parts, [(v, colour[v]) for v in versions] or [("no reviews yet", _GRID)], left, 12)
    return _svg(_W, top + height + 22, "Reviewed precision per week", parts)


def drift_svg(drift: Sequence[Mapping[str, Any]], *, top_n: int = 15) -> str:
    """PSI of the most drifted features, with the moderate and major thresholds."""
    from fraudlens.monitoring._drift import PSI_MAJOR, PSI_MODERATE

    rows = [r for r in drift if r.get("psi") is not None][:top_n]
    left, top, bar_h = 190, 26, 16
    width = _W - left - 60
    height = max(len(rows), 1) * (bar_h + 4)
    vmax = _nice_max(max([float(r["psi"]) for r in rows] + [PSI_MAJOR * 1.2]))
    parts: list[str] = []
    for limit, colour in ((PSI_MODERATE, "#e0a030"), (PSI_MAJOR, "#c43c32")):
        xv = left + width * limit / vmax
        parts.append(
            f'<line x1="{_n(xv)}" x2="{_n(xv)}" y1="{top - 4}" y2="{top + height}" '
            f'stroke="{colour}" stroke-dasharray="4 3"/>'
        )
    for i, r in enumerate(rows):
        y = top + i * (bar_h + 4)
        value = float(r["psi"])
        colour = _LEVEL_COLOURS.get(str(r.get("level")), "#6b86b8")
        parts.append(
            f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" font-size="11" '
            f'fill="{_INK}">{_t(r["feature"])}</text>'
        )
        parts.append(
            f'<rect class="bar" x="{left}" y="{y}" width="{_n(max(width * value / vmax, 1))}" '
            f'height="{bar_h}" fill="{colour}"><title>{_t(_drift_title(r))}</title></rect>'
        )
        parts.append(
            f'<text x="{_n(left + width * value / vmax + 4)}" y="{y + 12}" font-size="10" '
            f'fill="{_MUTED}">{_t(f"{value:.3f}")}</text>'
        )
    if not rows:
        parts.append(
            f'<text x="{left}" y="{top + 12}" font-size="11" fill="{_MUTED}">'
            "no features to compare</text>"
        )
    _legend(
        parts,
        [
            ("PSI < 0.1", _LEVEL_COLOURS["none"]),
            ("0.1-0.25", _LEVEL_COLOURS["moderate"]),
            ("> 0.25", _LEVEL_COLOURS["major"]),
        ],
        left,
        12,
    )
    return _svg(_W, top + height + 8, "Feature drift against the training data (PSI)", parts)


def _drift_title(r: Mapping[str, Any]) -> str:
    w = r.get("wasserstein")
    wi = r.get("wasserstein_iqr")
    text = f"{r['feature']}: PSI {float(r['psi']):.3f} ({r.get('level')})"
    if w is not None:
        text += f", Wasserstein {float(w):.4g}"
    if wi is not None:
        text += f" ({float(wi):.2f} x the training IQR)"
    return text + f", {int(r.get('n') or 0):,} accounts"
