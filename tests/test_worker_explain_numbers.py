"""The worker's explanation numbers and texts (fraudlens.market.explain) computed by
numpy are, value for value, what the per-value Python it replaced gives (round, the NaN
check, the percentage, the ISO text)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fraudlens.market.explain import (
    _floats_or_none,
    _iso_utc,
    _pct,
    _pct_texts,
    _round4,
    _round4_where,
)


def _same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if math.isnan(x) != math.isnan(y):
                return False
            if not math.isnan(x) and (x != y or math.copysign(1, x) != math.copysign(1, y)):
                return False
        elif x != y:
            return False
    return True


def _hard_values() -> np.ndarray:
    rng = np.random.default_rng(11)
    # halves at the 5th decimal, as decimals and as their binary neighbours: where
    # rint(x * 1e4) and the exact decimal rounding could part
    k = rng.integers(-(10**9), 10**9, 20_000)
    halves = (k + 0.5) / 1e4
    near = np.concatenate([np.nextafter(halves, np.inf), np.nextafter(halves, -np.inf)])
    return np.concatenate(
        [
            rng.random(50_000),
            rng.normal(0, 50, 50_000),
            rng.random(20_000) * 10.0 ** rng.integers(-12, 18, 20_000),
            halves,
            near,
            np.array([0.0, -0.0, 0.5, 1.0, 0.00005, 0.00015, 0.00025, 1.00005, 2.675, 1e15]),
            np.array([2.0**52, 2.0**53, 1e300, -1e300, 5e-324, np.nan, np.inf, -np.inf]),
        ]
    )


def test_round4_is_pythons_round_for_every_value() -> None:
    values = _hard_values()
    assert _same(_round4(values), [round(float(v), 4) for v in values.tolist()])
    assert _round4(np.zeros(0)) == []
    # integer arrays are rounded as floats (round(float(v), 4)), not left as ints
    assert _same(_round4(np.array([1, 2, -3])), [1.0, 2.0, -3.0])


def test_round4_where_leaves_none_elsewhere() -> None:
    values = np.array([0.123456, np.nan, 2.00005, 7.0])
    when = np.array([True, False, True, False])
    assert _same(_round4_where(values, when)[::2], [0.1235, 2.0])
    assert _round4_where(values, when)[1::2] == [None, None]


def test_floats_or_none_and_percentages() -> None:
    values = np.array([1.5, np.nan, -0.0, 3, 1e308])
    out = _floats_or_none(values)
    assert out[1] is None
    assert _same([out[i] for i in (0, 2, 3, 4)], [1.5, -0.0, 3.0, 1e308])
    assert _floats_or_none(np.array([1, 2])) == [1.0, 2.0]
    pos = np.concatenate([_hard_values()[:50_000], np.arange(0, 1.0001, 0.005), [0.125, 0.375]])
    assert _pct_texts(pos) == [_pct(v) for v in pos.tolist()]


def test_iso_text_is_timestamps_isoformat() -> None:
    rng = np.random.default_rng(3)
    base = pd.Timestamp("2026-03-02T16:55:00", tz="UTC").value
    ns = np.concatenate(
        [
            base + rng.integers(0, 10**12, 200) * 10**9,  # whole seconds
            base + rng.integers(0, 10**15, 200) * 10**3,  # microseconds
            base + rng.integers(0, 10**18, 200),  # nanoseconds
            np.array([0, -(10**9) // 2, base]),
        ]
    ).astype(np.int64)
    missing = np.zeros(len(ns), dtype=bool)
    missing[[5, 250, 450]] = True
    expected = [
        None if m else pd.Timestamp(v, tz="UTC").isoformat()
        for v, m in zip(ns, missing, strict=True)
    ]
    assert _iso_utc(ns, missing) == expected
    whole = ns[:200]
    assert _iso_utc(whole, np.zeros(200, dtype=bool)) == [
        pd.Timestamp(v, tz="UTC").isoformat() for v in whole
    ]
