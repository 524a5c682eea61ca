"""Helpers of ``bench/_cards_bagging.py``: a bag of boosters merged into one booster, and
the replicates of a bag of K seeds."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from _services import bench_module  # type: ignore[import-not-found]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return bench_module("_cards_bagging")


def test_merged_booster_scores_the_mean_margin_of_its_members(bench: ModuleType) -> None:
    import xgboost as xgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5))
    y = (X[:, 0] + 0.5 * rng.normal(size=2000) > 1.5).astype(float)
    members = [
        xgb.train(
            {"objective": "binary:logistic", "max_depth": 3, "subsample": 0.8, "seed": s},
            xgb.DMatrix(X, label=y),
            num_boost_round=10 + 5 * s,
        )
        for s in range(3)
    ]
    merged = bench.merged_booster(members)
    assert merged.num_boosted_rounds() == 10 + 15 + 20
    want = np.mean([m.predict(xgb.DMatrix(X), output_margin=True) for m in members], axis=0)
    got = merged.predict(xgb.DMatrix(X), output_margin=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Tree SHAP of the merged booster still adds up to its margin.
    contribs = merged.predict(xgb.DMatrix(X[:50]), pred_contribs=True)
    np.testing.assert_allclose(contribs.sum(axis=1), got[:50], atol=1e-5)


def test_bags_average_consecutive_seeds(bench: ModuleType) -> None:
    by_seed = {s: {"w": np.full(3, float(s))} for s in range(5)}
    bags = bench._bags(by_seed, 2)
    assert len(bags) == 2  # seeds (0, 1) and (2, 3); seed 4 is left over
    np.testing.assert_allclose(bags[0]["w"], 0.5)
    np.testing.assert_allclose(bags[1]["w"], 2.5)
