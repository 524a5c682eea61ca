"""A feature table with text columns, shaped like a mobile-money book (transaction type,
balances, account names), for the text-column tests of the card models and the service."""

from __future__ import annotations

import numpy as np
import pandas as pd

TYPES = ["PAYMENT", "TRANSFER", "CASH_OUT", "DEBIT", "CASH_IN"]


def book_table(n: int, seed: int) -> pd.DataFrame:
    """Transfers of a mobile-money book: fraud only in TRANSFER and CASH_OUT rows, and
    there only with large amounts that empty the origin's balance."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(TYPES, n, p=[0.35, 0.1, 0.3, 0.05, 0.2])
    amount = rng.lognormal(5.0, 1.0, n)
    balance = amount * rng.uniform(0.5, 4.0, n)
    risky = np.isin(kind, ["TRANSFER", "CASH_OUT"])
    empties = rng.random(n) < np.where(risky, 0.25, 0.15)
    balance = np.where(empties, amount, balance)
    fraud = risky & empties & (rng.random(n) < 0.8)
    return pd.DataFrame(
        {
            "step": np.sort(rng.integers(0, 400, n)),
            "type": kind,
            "amount": amount.round(2),
            "oldbalanceOrg": balance.round(2),
            "newbalanceOrig": (balance - amount).clip(0).round(2),
            "nameOrig": [f"C{int(v)}" for v in rng.integers(10**8, 10**9, n)],
            "network": np.where(rng.random(n) < 0.1, None, rng.choice(["visa", "mc"], n)),
            "isFraud": fraud.astype(int),
        }
    )
