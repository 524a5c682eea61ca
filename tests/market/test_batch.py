"""Batch scoring: chunking gives the same scores as one call, locally and on Ray, and an
account scores the same alone as in a chunk or in the whole file (its mirror evidence is
read against the whole input)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.market.batch import score_accounts, score_accounts_ray
from fraudlens.market.data import MarketData, window
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.features import account_features
from fraudlens.market.simulate import simulate
from fraudlens.registry import Registry
from fraudlens.scoring import EVIDENCE_COLUMNS, market_evidence, score_market


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    train = simulate(600, seed=11)
    det = FeatureDetector(n_estimators=60).fit(window(train))
    Registry(root).save(det)
    return root, det


def test_chunked_scores_equal_one_batch(trained) -> None:
    _, det = trained
    data = window(simulate(300, seed=12))
    whole = det.decision_function(data)
    frame = score_accounts(data, det, chunk_size=37)
    base = ["account_id", "score", "flagged", "model", "threshold"]
    assert list(frame.columns) == [*base, *EVIDENCE_COLUMNS]
    # evidence is computed on the whole data, not per chunk
    whole_ev = market_evidence(data)
    np.testing.assert_allclose(frame["value_moved"], whole_ev["value_moved"])
    got = frame["counterparty"].fillna("").tolist()
    assert got == whole_ev["counterparty"].fillna("").tolist()
    assert set(frame["threshold"]) == {det.threshold_}
    assert frame["account_id"].tolist() == data.account_ids.tolist()
    np.testing.assert_allclose(frame["score"].to_numpy(), whole, rtol=1e-6)
    assert (frame["flagged"] == (whole > det.threshold_)).all()
    y = data.y()
    # (a 60-tree model on 600 simulated accounts; the simulator's look-alikes are hard)
    assert np.mean(frame["flagged"].to_numpy() == y) > 0.9


@pytest.mark.slow
def test_ray_scores_equal_local(trained, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    import ray

    root, det = trained
    data = window(simulate(300, seed=13))
    local = score_accounts(data, det, threshold=0.9)
    try:
        remote = score_accounts_ray(
            data, str(root), "market", threshold=0.9, chunk_size=64, num_actors=1
        )
    finally:
        ray.shutdown()
    assert remote["account_id"].tolist() == local["account_id"].tolist()
    np.testing.assert_allclose(remote["score"].to_numpy(), local["score"].to_numpy(), rtol=1e-6)
    assert remote["flagged"].tolist() == local["flagged"].tolist()
    assert set(remote["threshold"]) == {0.9}
    np.testing.assert_allclose(remote["value_moved"], local["value_moved"])
    got = remote["counterparty"].fillna("").tolist()
    assert got == local["counterparty"].fillna("").tolist()


def _paired(data: MarketData) -> np.ndarray:
    """Accounts with mirror evidence: a round trip both of whose legs one other account
    mirrors (beneficiaries and their victims)."""
    f = account_features(data)
    return f.index[f["mirror_pair_share"].to_numpy() > 0].to_numpy()


def test_score_alone_in_a_chunk_and_in_the_whole_file_are_equal(trained) -> None:
    _, det = trained
    raw = simulate(300, seed=12, days=2)
    data = window(raw)
    paired = _paired(data)
    kinds = dict(zip(data.account_ids, data.label_column("kind"), strict=True))
    # the check has teeth: beneficiaries and victims carry pair evidence, read against
    # other accounts' trades
    assert {kinds[a] for a in paired} >= {"beneficiary"} and len(paired) >= 10
    whole = pd.Series(det.decision_function(data), index=data.account_ids)
    # alone: one account's trades, read against the same book (every trade of the file)
    for a in [*paired[:12], *data.account_ids[:5]]:
        alone = det.decision_function(data.subset([a]))
        assert alone[0] == whole[a], a
    # without the book, an account scored alone has no counterparty in sight
    lone = account_features(
        MarketData(data.klines, data.trades[data.trades["account_id"] == paired[0]])
    )
    assert lone["mirror_pair_share"].iloc[0] == 0.0
    # chunks of several sizes, including one account per chunk
    for size in (1, 7, 64):
        got = score_market(det, data, chunk_size=size, evidence=False).scores
        np.testing.assert_array_equal(got, whole.to_numpy())
    # the whole input is the book, not the windows: score_accounts windows after
    frame = score_accounts(raw, det, chunk_size=50)
    np.testing.assert_array_equal(frame["score"].to_numpy(), whole.to_numpy())


def test_a_ray_client_address_without_ray_client_names_the_extra(
    trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `ray://` address needs Ray Client (grpcio); where it was missing, ray.init had
    raised a ValueError, a traceback from `market score --engine ray`."""
    pytest.importorskip("ray")
    from fraudlens.errors import MissingDependencyError

    root, _ = trained
    monkeypatch.setitem(sys.modules, "grpc", None)  # as if grpcio were not installed
    with pytest.raises(MissingDependencyError) as err:
        score_accounts_ray(simulate(20, seed=14), str(root), address="ray://127.0.0.1:1")
    said = str(err.value)
    assert "the Ray address 'ray://127.0.0.1:1' (Ray Client) needs grpcio" in said, said
    assert "add the 'ray' extra" in said, said
