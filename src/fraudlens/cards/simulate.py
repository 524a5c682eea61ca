"""Card-transaction simulator after the Fraud Detection Handbook (Le Borgne et al.).

The model (facts from the handbook; the code is fraudlens's own, vectorised with numpy):

- Customers sit at a uniform random location on a 100 x 100 grid and have a spending
  profile: mean amount uniform in [5, 100], standard deviation half the mean, and a mean
  number of transactions per day uniform in [0, 4].
- Terminals sit at a uniform random location. A customer uses the terminals that are
  closer than ``radius`` to them, chosen uniformly; a customer with none makes no
  transactions.
- Each day a customer makes a Poisson number of transactions. A transaction's time of day
  is normal around noon (std 20,000 s); draws that fall outside the day are dropped, as in
  the handbook. Its amount is normal(mean, std); a negative draw is replaced by a uniform
  draw in [0, 2 x mean]. Amounts are rounded to cents and are always > 0.
- Fraud, applied in this order (a later scenario overrides the label of an earlier one):
  1. every amount above 220 is fraud;
  2. each day, 2 random terminals are compromised for 28 days: all their transactions in
     that period are fraud;
  3. each day, 3 random customers are compromised for 14 days: a third of their
     transactions in that period get their amount multiplied by 5 and are fraud.

At the handbook size (5,000 customers, 10,000 terminals, 183 days) this gives about
1.75 million transactions with about 0.8 % fraud.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from fraudlens._io import write_binary, write_csv
from fraudlens._time import utc
from fraudlens.cards.data import RAW_COLUMNS

__all__ = ["SIM_COLUMNS", "simulate", "write_transactions"]

#: Columns of :func:`simulate`'s output, in order.
SIM_COLUMNS = (*RAW_COLUMNS, "scenario", "tx_time_seconds", "tx_time_days")

_DAY = 86_400
_GRID = 100.0
_AMOUNT_THRESHOLD = 220.0
_TERMINAL_DAYS = 28
_CUSTOMER_DAYS = 14
# Days generated per block: bounds peak memory and gives the progress callback a pace.
_BLOCK_DAYS = 16


def _terminals_within(
    cx: np.ndarray, cy: np.ndarray, tx: np.ndarray, ty: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists of the terminals closer than ``radius`` to each customer.

    Returns ``(indptr, indices)``: customer ``c`` uses ``indices[indptr[c]:indptr[c + 1]]``.
    Distances are computed in chunks of customers so memory stays near 40 MB.
    """
    n_c = len(cx)
    chunk = max(1, 4_000_000 // max(len(tx), 1))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    r2 = radius * radius
    for lo in range(0, n_c, chunk):
        hi = min(lo + chunk, n_c)
        d2 = (cx[lo:hi, None] - tx[None, :]) ** 2 + (cy[lo:hi, None] - ty[None, :]) ** 2
        r, c = np.nonzero(d2 < r2)
        rows.append(r + lo)
        cols.append(c)
    row = np.concatenate(rows) if rows else np.empty(0, np.int64)
    indices = np.concatenate(cols).astype(np.int64) if cols else np.empty(0, np.int64)
    indptr = np.zeros(n_c + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n_c), out=indptr[1:])
    return indptr, indices


def simulate(
    n_customers: int = 5000,
    n_terminals: int = 10000,
    days: int = 183,
    *,
    start: str | pd.Timestamp = "2026-04-01",
    seed: int = 0,
    radius: float = 5.0,
    progress: Callable[[int], None] | None = None,
    compromised_terminals_per_day: int = 2,
    compromised_customers_per_day: int = 3,
) -> pd.DataFrame:
    """Simulate card transactions with the handbook's three fraud scenarios.

    Parameters
    ----------
    n_customers, n_terminals, days
        Size of the simulation. The handbook uses 5,000 customers, 10,000 terminals and
        183 days.
    start
        Date of day 0 (midnight, UTC unless the value carries a zone).
    seed
        Random seed; the output is a deterministic function of all arguments.
    radius
        A customer uses the terminals closer than this (grid is 100 x 100).
    progress
        Called with a number of simulated days each time a block of days is done; the
        calls add up to ``days``.
    compromised_terminals_per_day, compromised_customers_per_day
        Fraud scenarios 2 and 3: how many terminals (for 28 days) and customers (for 14
        days) are compromised each day. The defaults are the handbook's; they are fixed
        counts, so smaller simulations get a higher fraud rate unless these are lowered.

    Returns
    -------
    pandas.DataFrame
        One row per transaction, sorted by time, columns :data:`SIM_COLUMNS`:
        ``transaction_id`` (0..n-1 in time order), ``ts`` (``datetime64[ns, UTC]``),
        ``customer_id``, ``terminal_id``, ``amount``, ``label`` (1 = fraud), ``scenario``
        (0 genuine, 1 amount over 220, 2 compromised terminal, 3 compromised card),
        ``tx_time_seconds`` (since day 0 midnight) and ``tx_time_days``.
    """
    if n_customers < 1 or n_terminals < 1 or days < 1:
        raise ValueError("n_customers, n_terminals and days must be positive")
    rng = np.random.default_rng(seed)

    # Profiles.
    cx, cy = rng.uniform(0.0, _GRID, size=(2, n_customers))
    mean_amount = rng.uniform(5.0, 100.0, size=n_customers)
    std_amount = mean_amount / 2.0
    mean_nb_tx = rng.uniform(0.0, 4.0, size=n_customers)
    tx, ty = rng.uniform(0.0, _GRID, size=(2, n_terminals))
    indptr, indices = _terminals_within(cx, cy, tx, ty, radius)
    n_avail = np.diff(indptr)

    # Transactions, block of days by block of days.
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for d0 in range(0, days, _BLOCK_DAYS):
        nd = min(_BLOCK_DAYS, days - d0)
        counts = rng.poisson(np.repeat(mean_nb_tx[:, None], nd, axis=1))
        cell = np.repeat(np.arange(n_customers * nd, dtype=np.int64), counts.ravel())
        cust = cell // nd
        day = cell % nd + d0
        n = len(cell)
        secs = np.trunc(rng.normal(_DAY / 2, 20_000.0, size=n)).astype(np.int64)
        amount = rng.normal(mean_amount[cust], std_amount[cust])
        neg = amount < 0
        amount[neg] = rng.uniform(0.0, 2.0 * mean_amount[cust[neg]])
        amount = np.maximum(np.round(amount, 2), 0.01)
        pick = np.floor(rng.random(n) * n_avail[cust]).astype(np.int64)
        keep = (secs > 0) & (secs < _DAY) & (n_avail[cust] > 0)
        term = indices[np.minimum(indptr[cust] + pick, max(len(indices) - 1, 0))[keep]]
        parts.append((cust[keep], day[keep] * _DAY + secs[keep], term, amount[keep]))
        if progress is not None:
            progress(nd)

    cust = np.concatenate([p[0] for p in parts])
    t_sec = np.concatenate([p[1] for p in parts])
    term = np.concatenate([p[2] for p in parts]).astype(np.int64)
    amount = np.concatenate([p[3] for p in parts])
    order = np.argsort(t_sec, kind="stable")
    cust, t_sec, term, amount = cust[order], t_sec[order], term[order], amount[order]
    day = t_sec // _DAY
    n = len(t_sec)

    label = np.zeros(n, dtype=np.int8)
    scenario = np.zeros(n, dtype=np.int8)

    # Scenario 1: large amounts.
    big = amount > _AMOUNT_THRESHOLD
    label[big] = 1
    scenario[big] = 1

    # Scenario 2: a terminal x day table of compromise, then one lookup per transaction.
    k_term = min(compromised_terminals_per_day, n_terminals)
    compromised = np.zeros((n_terminals, days), dtype=bool)
    for d in range(days):
        chosen = rng.choice(n_terminals, size=k_term, replace=False)
        compromised[chosen, d : d + _TERMINAL_DAYS] = True
    hit = compromised[term, day]
    label[hit] = 1
    scenario[hit] = 2

    # Scenario 3: transactions grouped by (customer, day), so a customer's 14 days are
    # one contiguous slice of ``by_cust``.
    k_cust = min(compromised_customers_per_day, n_customers)
    by_cust = np.argsort(cust * days + day, kind="stable")
    ptr = np.zeros(n_customers * days + 1, dtype=np.int64)
    np.cumsum(np.bincount(cust * days + day, minlength=n_customers * days), out=ptr[1:])
    for d in range(days):
        end = min(d + _CUSTOMER_DAYS, days)
        for c in rng.choice(n_customers, size=k_cust, replace=False):
            rows = by_cust[ptr[c * days + d] : ptr[c * days + end]]
            k = len(rows) // 3
            if k == 0:
                continue
            sel = rng.choice(rows, size=k, replace=False)
            amount[sel] = np.round(amount[sel] * 5.0, 2)
            label[sel] = 1
            scenario[sel] = 3

    origin = utc(pd.Timestamp(start)).normalize()
    ts = pd.DatetimeIndex(origin.as_unit("ns") + pd.to_timedelta(t_sec, unit="s"))
    return pd.DataFrame(
        {
            "transaction_id": np.arange(n, dtype=np.int64),
            "ts": ts,
            "customer_id": cust.astype(np.int64),
            "terminal_id": term,
            "amount": amount,
            "label": label,
            "scenario": scenario,
            "tx_time_seconds": t_sec.astype(np.int64),
            "tx_time_days": day.astype(np.int64),
        },
        columns=list(SIM_COLUMNS),
    )


#: CSV compressions written whole through a temporary file (by suffix).
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}


def write_transactions(df: pd.DataFrame, path: str | PathLike[str]) -> Path:
    """Write transactions to CSV or Parquet (chosen by the suffix ``.parquet`` / ``.pq``).

    Timestamps are written as ISO-8601 with their zone (``2026-04-01 12:00:05+00:00``), so
    :func:`fraudlens.cards.data.load_table` reads them back unchanged.

    Parameters
    ----------
    df
        Transactions, e.g. from :func:`simulate`.
    path
        Output file; parent folders are created.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: a crash or a full disk keeps the old file, never a part.
    suffix = out.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        write_binary(out, lambda f: df.to_parquet(f, index=False))
    elif suffix in _COMPRESSION:
        # (the name in a gzip header is the file's, not its temporary name)
        how = {
            "method": _COMPRESSION[suffix],
            **({"filename": out.name} if suffix == ".gz" else {}),
        }
        write_binary(out, lambda f: df.to_csv(f, index=False, compression=how))
    elif suffix in {".zip", ".zst", ".tar"}:
        df.to_csv(out, index=False)  # compression inferred from the name, as before
    else:
        write_csv(df, out)
    return out
