"""The reference pipeline, rebuilt for timing comparisons only (not part of the package).

The reference system draws one account's trades over one symbol's 5-minute bars with
matplotlib and scores the JPEG with a ResNet-18 at 512 x 512. This module repeats that
recipe so the benchmark can time it next to fraudlens' numpy rasteriser and its ONNX
Runtime CNN:

- :func:`render_matplotlib`: a 2.5 x 1.5 in figure at dpi 100, the bars drawn fully
  transparent (they only fix the axes' scale), axes off, buys as red and sells as green
  scatter discs (``s=80``), saved as JPEG into memory and decoded again, as the reference
  Lambda does before it calls the endpoint.
- :func:`resnet18_eager_scorer`: resize each image to ``size x size`` and run the
  project's ResNet-18 in PyTorch eager mode (weights may be untrained: only the cost is
  measured).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["render_matplotlib", "resnet18_eager_scorer"]


def _as_points(points: Any) -> tuple[np.ndarray, np.ndarray]:
    """Trade points as (matplotlib date numbers, prices).

    Accepts a DataFrame with a time column (``ts``, ``bar_ts`` or ``time``) and ``price``,
    or a sequence of ``(time, price)`` pairs.
    """
    import matplotlib.dates as mdates

    if points is None:
        return np.empty(0), np.empty(0)
    if isinstance(points, pd.DataFrame):
        tcol = next(c for c in ("bar_ts", "ts", "time") if c in points.columns)
        times = pd.to_datetime(points[tcol], utc=True)
        prices = points["price"].to_numpy(dtype=np.float64)
    else:
        pairs = list(points)
        if not pairs:
            return np.empty(0), np.empty(0)
        times = pd.to_datetime([p[0] for p in pairs], utc=True)
        prices = np.asarray([p[1] for p in pairs], dtype=np.float64)
    x = mdates.date2num(pd.DatetimeIndex(times).tz_convert(None).to_pydatetime())
    return np.asarray(x, dtype=np.float64), prices


def render_matplotlib(
    klines: pd.DataFrame, buys: Any, sells: Any, *, image_format: str = "jpeg"
) -> np.ndarray:
    """Draw one account's trades over one symbol's bars the way the reference does.

    Parameters
    ----------
    klines
        The bars of one symbol: ``ts``, ``high``, ``low`` (other columns are ignored).
    buys, sells
        The account's buys and sells: DataFrames with a time column (``bar_ts``, ``ts``
        or ``time``) and ``price``, or sequences of ``(time, price)``.
    image_format
        ``"jpeg"`` (the reference) or ``"png"`` (lossless, for pixel comparisons; the
        transparent figure is blended over white as matplotlib does for JPEG).

    Returns
    -------
    numpy.ndarray
        The decoded image, uint8 ``(150, 250, 3)`` RGB.
    """
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    # The reference opens a large transparent figure and shrinks it before saving.
    fig = Figure(facecolor="#FF000000", figsize=(32, 24))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title("", fontsize=16)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(labelsize=0)
    ax.axis("off")
    locator = mdates.MinuteLocator(interval=5)
    locator.MAXTICKS = 3000
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %Y %H:%M"))
    ax.xaxis.set_minor_locator(mdates.DayLocator())

    ts = pd.DatetimeIndex(pd.to_datetime(klines["ts"], utc=True)).tz_convert(None)
    dates = mdates.date2num(ts.to_pydatetime())
    high = klines["high"].to_numpy(dtype=np.float64)
    low = klines["low"].to_numpy(dtype=np.float64)
    # Invisible bars: they only set the data limits.
    ax.bar(dates, high - low, 0.001, low, color="#FF000000", edgecolor="#FF000000", zorder=0)

    bx, by = _as_points(buys)
    sx, sy = _as_points(sells)
    ax.scatter(bx, by, s=20 * 4, color="red", marker="o")
    ax.scatter(sx, sy, s=20 * 4, color="green", marker="o")

    fig.set_size_inches(2.5, 1.5)
    buf = io.BytesIO()
    fig.savefig(buf, format=image_format, dpi=100)
    buf.seek(0)
    with Image.open(buf) as im:
        if im.mode != "RGBA":
            return np.asarray(im.convert("RGB"))
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, im).convert("RGB"))


def resnet18_eager_scorer(
    size: int = 512, num_threads: int | None = None
) -> Callable[[Sequence[np.ndarray] | np.ndarray], np.ndarray]:
    """A scorer that resizes images to ``size x size`` and runs ResNet-18 in PyTorch eager.

    The network is the project's own ResNet-18 (BasicBlock, [2, 2, 2, 2]) with freshly
    initialised weights, in eval mode: enough to time the reference's scoring cost.
    ``num_threads`` sets torch's intra-op threads (default: leave torch's setting).

    Returns
    -------
    callable
        ``scorer(images) -> (n, 2)`` softmax probabilities for a batch of uint8
        ``(H, W, 3)`` images.
    """
    import torch
    from torch.nn import functional as F  # noqa: N812

    from fraudlens.market._cnn_torch import ResNet18

    if num_threads is not None:
        torch.set_num_threads(num_threads)
    net = ResNet18(n_classes=2).eval()

    def scorer(images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        batch = (
            np.stack([np.asarray(im) for im in images])
            if not isinstance(images, np.ndarray)
            else images
        )
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.inference_mode():
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            out = torch.softmax(net.forward_float(x), dim=1)
        return out.numpy()

    return scorer
