"""A registry with every kind of model, trained for real on small data, for the service's
hostile-input and fuzz tests (built once per session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudlens.registry import Registry

#: The ULB table's feature columns: the card models here take these 30 values.
CARD_FEATURES = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount"]


def card_table(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Numeric card rows with a learnable fraud signal (about 3 % positives)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(CARD_FEATURES))), columns=CARD_FEATURES)
    X["Time"] = np.sort(rng.uniform(0, 86_400, n))
    X["Amount"] = rng.gamma(2.0, 40.0, n)
    logit = 2.5 * X["V1"] - 2.0 * X["V3"] + 0.01 * X["Amount"] - 7.0
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    return X, y


@pytest.fixture(scope="session")
def full_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cards-xgboost, cards-anomaly, market-cnn (one epoch) and market-features."""
    pytest.importorskip("torch")
    from fraudlens.cards.detectors import AnomalyDetector, XGBoostDetector
    from fraudlens.market.data import window
    from fraudlens.market.detectors import CNNDetector, FeatureDetector
    from fraudlens.market.simulate import simulate

    root = tmp_path_factory.mktemp("full-registry")
    reg = Registry(root)
    X, y = card_table()
    reg.save(AnomalyDetector(n_estimators=20, refit=False).fit(X, y))
    reg.save(XGBoostDetector(n_estimators=20, early_stopping_rounds=None, n_jobs=1).fit(X, y))
    train = window(simulate(200, seed=31, n_symbols=4, days=2))
    reg.save(CNNDetector(epochs=1, num_threads=2).fit(train.subset(train.account_ids[::4])))
    reg.save(FeatureDetector(n_estimators=30, n_jobs=1).fit(train, train.y()))
    return root


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium shared by a page-test module (see ``_live.chromium``)."""
    from _live import chromium  # type: ignore[import-not-found]

    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh 1500 x 950 page of :func:`browser` that fails the test on a JavaScript
    error (a module that needs another size defines its own ``page``)."""
    from _live import watched_page  # type: ignore[import-not-found]

    with watched_page(browser, 1500, 950) as pg:
        yield pg
