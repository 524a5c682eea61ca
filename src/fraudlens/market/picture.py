"""The account's picture for analysts: its trades over its bars, as a self-contained SVG.

The detectors reason on one picture: an account's fills drawn over the 5-minute bars of
what it traded (:mod:`fraudlens.market.render`). This module draws the same evidence for
a person to read, and embeds the detector's own image of the account beneath it:

- one panel per traded symbol (the most traded first; at most ``max_symbols``): each
  bar as a candle (the low-high line and the open-close body), over the span the
  detector's image covers: from 3 bars before the account's first trade to 3 bars after
  its last, at least 48 bars (4 h) and at most 288 (24 h, the newest kept);
- the account's fills at their time and price: buys as red triangles pointing up,
  sells as green triangles pointing down (the renderer's colours: red buys, green
  sells);
- its matched round trips (:func:`fraudlens.market.pairs.round_trips`: equal-quantity
  buy and sell in the same or the next bar) joined by a dashed line, the eight that moved
  most in each panel labelled with the value they moved (every one has a tooltip);
- the counterparty's mirrored trades (:func:`fraudlens.market.pairs.find_pairs`: the
  other side of the account's fills at equal price and quantity within a minute) as
  orange rings;
- below, the detector's image of the account (:func:`fraudlens.market.render.render_account`,
  in the style of the CNN that scored it when known, else the CNN's default style),
  scaled up without smoothing.

The SVG loads nothing from outside (the detector's image is an inline PNG), and every
piece of text in it is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudlens.market.data import MarketData

__all__ = ["account_picture_svg"]

# The span of the detector's image (fraudlens style): bars of margin either side of the
# trades, fewest and most bars drawn.
_MARGIN_BARS = 3
_MIN_BARS = 48
_MAX_BARS = 288

_WIDTH = 960
_LEFT = 78  # room for the price labels
_RIGHT = 14
_PANEL_H = 170
_PANEL_GAP = 34
_TOP = 46  # title and legend
_AXIS_H = 24

#: Round trips labelled with their value per panel (the largest); all have a tooltip.
_LABELLED_TRIPS = 8

_BUY = "#c62828"
_SELL = "#2e7d32"
_ROUND_TRIP = "#6a1b9a"
_MIRROR = "#ef6c00"
_WICK = "#8a93a0"
_UP_BODY = "#e3e7ec"
_DOWN_BODY = "#9aa5b1"
_GRID = "#eef1f4"
_INK = "#1b1f24"
_MUTED = "#5d6673"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _text(value: object) -> str:
    """Text for an SVG document: control characters dropped (XML cannot hold them), the
    rest escaped."""
    return html.escape(_CONTROL.sub("", str(value)), quote=True)


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _price(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    mag = abs(value)
    digits = 2 if mag >= 100 else 4 if mag >= 1 else 8
    return f"{value:,.{digits}f}".rstrip("0").rstrip(".")


def _money(value: float) -> str:
    return f"{value:,.2f}"


@dataclass(frozen=True)
class _Span:
    start_ns: int
    bars: int
    bar_ns: int

    def x(self, ts_ns: np.ndarray | int, left: float, width: float) -> np.ndarray:
        frac = (np.asarray(ts_ns, dtype=np.float64) - self.start_ns) / (self.bars * self.bar_ns)
        return left + frac * width


def _span(ts_ns: np.ndarray, bar_ns: int) -> _Span:
    """The detector image's span over the trades (see the module docstring)."""
    first = int(ts_ns.min()) // bar_ns - _MARGIN_BARS
    last = int(ts_ns.max()) // bar_ns + _MARGIN_BARS
    n = last - first + 1
    if n < _MIN_BARS:
        extra = _MIN_BARS - n
        first -= extra // 2
        n = _MIN_BARS
    if n > _MAX_BARS:
        first = last - _MAX_BARS + 1
        n = _MAX_BARS
    return _Span(first * bar_ns, n, bar_ns)


def _ns(ts: pd.Series) -> np.ndarray:
    return pd.to_datetime(ts, utc=True).to_numpy("datetime64[ns]").astype(np.int64)


def _detector_png(
    data: MarketData, account_id: str, style: str | None
) -> tuple[str, int, int] | None:
    """The detector's image of the account as base64 PNG, or None if it cannot be drawn."""
    from PIL import Image

    from fraudlens.market.render import CNN_STYLE, render_account

    try:
        image = render_account(data, account_id, style=style or CNN_STYLE)
    except Exception:  # the picture is still useful without it
        return None
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii"), image.shape[1], image.shape[0]


def account_picture_svg(
    data: MarketData,
    account_id: str,
    *,
    counterparty: str | None = None,
    title: str | None = None,
    max_symbols: int = 4,
    detector_image: bool = True,
    style: str | None = None,
) -> str:
    """Draw an account's trades over its bars (see the module docstring).

    Parameters
    ----------
    data
        Bars and trades: the account's trades (e.g. its scoring window) and, when
        ``counterparty`` is given, the counterparty's trades over the same time; other
        accounts' trades are ignored.
    account_id
        The account to draw.
    counterparty
        The suspected counterparty, whose trades mirroring the account's are marked.
    title
        First line of the picture (escaped); the account id by default.
    max_symbols
        Most symbol panels drawn (the account's most traded symbols).
    detector_image
        Embed the detector's image of the account beneath the chart.
    style
        The image style of that image (:data:`fraudlens.market.render.STYLES`): the
        style of the CNN that scored the account; None: the CNN's default
        (:data:`fraudlens.market.render.CNN_STYLE`).

    Returns
    -------
    str
        A standalone SVG document.
    """
    from fraudlens.market.pairs import find_pairs, round_trips

    trades = data.trades
    acc = trades["account_id"].astype(str)
    mine = trades[acc == str(account_id)].reset_index(drop=True)
    other = (
        trades[acc == str(counterparty)].reset_index(drop=True)
        if counterparty is not None and str(counterparty) != str(account_id)
        else trades.iloc[:0]
    )
    heading = title if title is not None else f"Account {account_id}"
    if mine.empty:
        return _empty_svg(heading, "No stored trades of this account in the event's window.")

    bar_ns = int(pd.Timedelta(data.bar).value)
    mine_ns = _ns(mine["ts"])
    span = _span(mine_ns, bar_ns)
    end_ns = span.start_ns + span.bars * bar_ns
    counts = mine["symbol"].astype(str).value_counts(sort=False)
    order = sorted(counts.index, key=lambda s: (-int(counts[s]), s))
    symbols = order[: max(1, int(max_symbols))]
    hidden_symbols = len(order) - len(symbols)

    rt = round_trips(mine, data.klines, bar=data.bar)
    mirrored = pd.DataFrame()
    if not other.empty:
        both = pd.concat([mine, other], ignore_index=True)
        matches = find_pairs(both)
        pair = {str(account_id), str(counterparty)}
        keep = [
            {str(b), str(s)} == pair
            for b, s in zip(matches["buy_account"], matches["sell_account"], strict=True)
        ]
        matches = matches[np.asarray(keep, dtype=bool)]
        other_rows = np.where(
            matches["buy_account"].astype(str) == str(counterparty),
            matches["buy_row"],
            matches["sell_row"],
        )
        mirrored = both.iloc[np.asarray(other_rows, dtype=np.int64)].reset_index(drop=True)

    klines = data.klines
    k_sym = klines["symbol"].astype(str)
    k_ns = _ns(klines["ts"]) if len(klines) else np.zeros(0, dtype=np.int64)

    plot_w = _WIDTH - _LEFT - _RIGHT
    parts: list[str] = []
    y0: float = _TOP
    outside = int(((mine_ns < span.start_ns) | (mine_ns >= end_ns)).sum())
    for sym in symbols:
        in_span = (k_sym == sym).to_numpy() & (k_ns >= span.start_ns) & (k_ns < end_ns)
        bars = klines[in_span]
        bars_ns = k_ns[in_span]
        m = mine[mine["symbol"].astype(str) == sym]
        m_ns = _ns(m["ts"])
        o = mirrored[mirrored["symbol"].astype(str) == sym] if len(mirrored) else mirrored
        prices = np.concatenate(
            [
                bars["low"].to_numpy(np.float64),
                bars["high"].to_numpy(np.float64),
                m["price"].to_numpy(np.float64),
            ]
        )
        prices = prices[np.isfinite(prices)]
        lo, hi = (float(prices.min()), float(prices.max())) if len(prices) else (0.0, 1.0)
        pad = (hi - lo) * 0.06 or max(abs(hi) * 0.001, 1e-9)
        lo, hi = lo - pad, hi + pad

        def y(p: np.ndarray | float, lo: float = lo, hi: float = hi, top: float = y0) -> np.ndarray:
            return top + (1.0 - (np.asarray(p, dtype=np.float64) - lo) / (hi - lo)) * _PANEL_H

        parts.append(f'<g class="panel" data-symbol="{_text(sym)}">')
        parts.append(
            f'<rect x="{_LEFT}" y="{y0}" width="{plot_w}" height="{_PANEL_H}" '
            f'fill="#ffffff" stroke="#dde1e6"/>'
        )
        for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
            price = hi - frac * (hi - lo)
            yy = y0 + frac * _PANEL_H
            parts.append(
                f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{_num(yy)}" y2="{_num(yy)}" '
                f'stroke="{_GRID}"/>'
            )
            parts.append(
                f'<text x="{_LEFT - 6}" y="{_num(yy + 3.5)}" text-anchor="end" '
                f'font-size="10" fill="{_MUTED}">{_text(_price(price))}</text>'
            )
        parts.append(
            # a white halo keeps the symbol readable over the candles behind it
            f'<text x="{_LEFT + 6}" y="{y0 + 14}" font-size="12" font-weight="600" '
            f'fill="{_INK}" stroke="#ffffff" stroke-width="3" paint-order="stroke">'
            f"{_text(sym)}</text>"
        )
        # candles
        bw = plot_w / span.bars
        body_w = max(1.0, bw * 0.6)
        xs = span.x(bars_ns, _LEFT, plot_w) + bw / 2
        opens = bars["open"].to_numpy(np.float64)
        closes = bars["close"].to_numpy(np.float64)
        y_low = y(bars["low"].to_numpy(np.float64))
        y_high = y(bars["high"].to_numpy(np.float64))
        y_open, y_close = y(opens), y(closes)
        for i in range(len(bars)):
            parts.append(
                f'<line x1="{_num(xs[i])}" x2="{_num(xs[i])}" y1="{_num(y_high[i])}" '
                f'y2="{_num(y_low[i])}" stroke="{_WICK}"/>'
            )
            top, bottom = min(y_open[i], y_close[i]), max(y_open[i], y_close[i])
            fill = _UP_BODY if closes[i] >= opens[i] else _DOWN_BODY
            parts.append(
                f'<rect x="{_num(xs[i] - body_w / 2)}" y="{_num(top)}" width="{_num(body_w)}" '
                f'height="{_num(max(bottom - top, 1.0))}" fill="{fill}" stroke="{_WICK}" '
                f'stroke-width="0.5"/>'
            )
        # round trips: a dashed line from buy to sell, with the value moved
        r = rt[rt["symbol"].astype(str) == sym]
        # labels only on the trips that moved most: many small ones would overprint
        labelled = set(r["value_lost"].abs().nlargest(_LABELLED_TRIPS).index)
        for idx, row in zip(r.index, r.itertuples(index=False), strict=True):
            bx = float(span.x(_ns(pd.Series([row.buy_ts]))[0], _LEFT, plot_w))
            sx = float(span.x(_ns(pd.Series([row.sell_ts]))[0], _LEFT, plot_w))
            by, sy = float(y(row.buy_price)), float(y(row.sell_price))
            parts.append(
                f'<line class="round-trip" x1="{_num(bx)}" y1="{_num(by)}" x2="{_num(sx)}" '
                f'y2="{_num(sy)}" stroke="{_ROUND_TRIP}" stroke-width="1.6" '
                f'stroke-dasharray="4 3"><title>{_text(_round_trip_title(row))}</title></line>'
            )
            if idx not in labelled:
                continue
            # beside the trip's later leg, clear of the marks on it
            lx, ly = max(bx, sx) + 10, (by + sy) / 2 + 3
            parts.append(
                f'<text x="{_num(lx)}" y="{_num(ly)}" font-size="9.5" fill="{_ROUND_TRIP}">'
                f"{_text(_money(abs(row.value_lost)))}</text>"
            )
        # the counterparty's mirrored trades: rings
        if len(o):
            ox = span.x(_ns(o["ts"]), _LEFT, plot_w)
            oy = y(o["price"].to_numpy(np.float64))
            for i, row in enumerate(o.itertuples(index=False)):
                parts.append(
                    f'<circle class="mirror" cx="{_num(ox[i])}" cy="{_num(oy[i])}" r="8" '
                    f'fill="none" stroke="{_MIRROR}" stroke-width="2">'
                    f"<title>{_text(_trade_title(row, 'counterparty'))}</title></circle>"
                )
        # the account's fills
        mx = span.x(m_ns, _LEFT, plot_w)
        my = y(m["price"].to_numpy(np.float64))
        for i, row in enumerate(m.itertuples(index=False)):
            if not (_LEFT <= mx[i] <= _LEFT + plot_w):
                continue
            buy = str(row.side).lower() == "buy"
            kind = "buy" if buy else "sell"
            parts.append(
                f'<polygon class="fill {kind}" points="{_triangle(mx[i], my[i], buy)}" '
                f'fill="{_BUY if buy else _SELL}" stroke="#ffffff" stroke-width="0.8">'
                f"<title>{_text(_trade_title(row, 'account'))}</title></polygon>"
            )
        parts.append("</g>")
        y0 += _PANEL_H + _PANEL_GAP
    axis_y = y0 - _PANEL_GAP + 4
    parts.extend(_time_axis(span, axis_y, plot_w))
    y0 = axis_y + _AXIS_H

    notes = []
    if hidden_symbols:
        notes.append(f"{hidden_symbols} more symbol(s) not drawn")
    if outside:
        notes.append(f"{outside} trade(s) outside the 24 h span not drawn")
    if notes:
        parts.append(
            f'<text x="{_LEFT}" y="{y0}" font-size="11" fill="{_MUTED}">'
            f"{_text('; '.join(notes))}</text>"
        )
        y0 += 16

    if detector_image:
        png = _detector_png(MarketData(data.klines, mine, None, data.bar), str(account_id), style)
        if png is not None:
            b64, w, h = png
            scale = min(2.0, plot_w / w)
            y0 += 8
            parts.append(
                f'<text x="{_LEFT}" y="{y0 + 4}" font-size="11" fill="{_MUTED}">'
                "The detector&#x27;s image of the account (buys red, sells green, bars blue; "
                "price panel above, position inside each bar below)</text>"
            )
            y0 += 12
            parts.append(
                f'<image class="detector" x="{_LEFT}" y="{y0}" width="{_num(w * scale)}" '
                f'height="{_num(h * scale)}" image-rendering="pixelated" '
                f'preserveAspectRatio="none" href="data:image/png;base64,{b64}"/>'
            )
            y0 += h * scale
    height = int(np.ceil(y0 + 12))
    head = _header(heading, str(account_id), counterparty, rt, mirrored)
    return _document(height, head + parts)


def _triangle(cx: float, cy: float, up: bool) -> str:
    """Points of a fill's mark: a triangle pointing up (buy) or down (sell)."""
    tip, base = (cy - 6, cy + 4) if up else (cy + 6, cy - 4)
    return f"{_num(cx)},{_num(tip)} {_num(cx - 5)},{_num(base)} {_num(cx + 5)},{_num(base)}"


def _round_trip_title(row: object) -> str:
    r = row
    return (
        f"round trip {getattr(r, 'buy_trade_id', '')} / {getattr(r, 'sell_trade_id', '')}: "
        f"buy {_price(float(getattr(r, 'buy_price', np.nan)))}, "
        f"sell {_price(float(getattr(r, 'sell_price', np.nan)))}, "
        f"quantity {_num(float(getattr(r, 'quantity', np.nan)))}, "
        f"value moved {_money(abs(float(getattr(r, 'value_lost', 0.0))))}"
    )


def _trade_title(row: object, whose: str) -> str:
    ts = pd.Timestamp(row.ts)  # type: ignore[attr-defined]
    ts = ts.tz_convert("UTC") if ts.tzinfo is not None else ts
    return (
        f"{whose} {getattr(row, 'account_id', '')}: {getattr(row, 'side', '')} "
        f"{_num(float(getattr(row, 'quantity', np.nan)))} {getattr(row, 'symbol', '')} at "
        f"{_price(float(getattr(row, 'price', np.nan)))}, {ts.strftime('%Y-%m-%d %H:%M:%S')} "
        f"UTC (trade {getattr(row, 'trade_id', '')})"
    )


def _time_axis(span: _Span, y: float, plot_w: float) -> list[str]:
    out = []
    step_bars = max(1, int(np.ceil(span.bars / 8 / 6)) * 6)  # a label every n half-hours
    first_bar = span.start_ns // span.bar_ns
    k0 = (-first_bar) % step_bars
    for k in range(k0, span.bars + 1, step_bars):
        ts_ns = span.start_ns + k * span.bar_ns
        x = span.x(np.asarray([ts_ns]), _LEFT, plot_w)[0]
        ts = pd.Timestamp(ts_ns, tz="UTC")
        label = ts.strftime("%H:%M") if (ts.hour or ts.minute) else ts.strftime("%m-%d")
        out.append(
            f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{_num(y - 6)}" y2="{_num(y - 1)}" '
            f'stroke="{_WICK}"/>'
        )
        out.append(
            f'<text x="{_num(x)}" y="{_num(y + 10)}" text-anchor="middle" font-size="10" '
            f'fill="{_MUTED}">{_text(label)}</text>'
        )
    start = pd.Timestamp(span.start_ns, tz="UTC").strftime("%Y-%m-%d %H:%M")
    out.append(
        f'<text x="{_LEFT + plot_w}" y="{_num(y + 22)}" text-anchor="end" font-size="10" '
        f'fill="{_MUTED}">{_text(f"UTC; {span.bars} bars from {start}")}</text>'
    )
    return out


def _header(
    title: str,
    account_id: str,
    counterparty: str | None,
    rt: pd.DataFrame,
    mirrored: pd.DataFrame,
) -> list[str]:
    value = float(rt["value_lost"].sum()) if len(rt) else 0.0
    summary = f"{len(rt)} round trip(s), value moved {_money(abs(value))}"
    if counterparty is not None:
        summary += f"; {len(mirrored)} trade(s) mirrored by {counterparty}"
    out = [
        f'<text x="{_LEFT}" y="17" font-size="14" font-weight="600" fill="{_INK}">'
        f"{_text(title)}</text>",
        f'<text x="{_WIDTH - _RIGHT}" y="17" text-anchor="end" font-size="11" '
        f'fill="{_MUTED}">{_text(summary)}</text>',
    ]
    x = _LEFT
    items = [
        (f"{account_id} buys", "buy"),
        (f"{account_id} sells", "sell"),
        ("round trip (value moved)", "rt"),
    ]
    if counterparty is not None:
        items.append((f"mirrored by {counterparty}", "mirror"))
    for label, kind in items:
        cy = 33
        if kind in ("buy", "sell"):
            colour = _BUY if kind == "buy" else _SELL
            out.append(f'<polygon points="{_triangle(x, cy, kind == "buy")}" fill="{colour}"/>')
        elif kind == "rt":
            out.append(
                f'<line x1="{x - 7}" x2="{x + 7}" y1="{cy}" y2="{cy}" stroke="{_ROUND_TRIP}" '
                f'stroke-width="1.6" stroke-dasharray="4 3"/>'
            )
        else:
            out.append(
                f'<circle cx="{x}" cy="{cy}" r="6" fill="none" stroke="{_MIRROR}" '
                'stroke-width="2"/>'
            )
        text = _text(label)
        out.append(f'<text x="{x + 10}" y="{cy + 4}" font-size="11" fill="{_INK}">{text}</text>')
        x += 22 + int(6.2 * len(label))
    return out


def _document(height: int, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'font-family="system-ui, -apple-system, Segoe UI, DejaVu Sans, sans-serif">\n'
        f'<rect width="100%" height="100%" fill="#fafbfc"/>\n{body}\n</svg>\n'
    )


def _empty_svg(title: str, message: str) -> str:
    return _document(
        80,
        [
            f'<text x="{_LEFT}" y="22" font-size="14" font-weight="600" fill="{_INK}">'
            f"{_text(title)}</text>",
            f'<text x="{_LEFT}" y="50" font-size="12" fill="{_MUTED}">{_text(message)}</text>',
        ],
    )
