"""Gradient-boosted trees (XGBoost) on per-account trade features."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import pandas as pd

from fraudlens._cores import training_threads
from fraudlens._detector import Detector
from fraudlens._xgb import load_booster, save_booster
from fraudlens.errors import ConfigError, DataError, FraudlensError, ModelNotFoundError
from fraudlens.market import _evidence
from fraudlens.market.data import MarketData
from fraudlens.market.features import FEATURE_NAMES, account_features

if TYPE_CHECKING:
    import xgboost as xgb

__all__ = ["FeatureDetector"]

_MODEL_FILE = "model.json"
#: Rows of a prediction per scoring thread: below this, a call scores on one thread. A
#: thread team costs little on idle cores but, when other processes hold them, a small
#: call waits tens of milliseconds for its team (measured: 1 to 2,000 rows took about
#: 40 ms on 2 threads and 0.2 to 10 ms on one, load 5 on 2 cores; the same scores).
_ROWS_PER_THREAD = 5000


class FeatureDetector(Detector):
    """Account-takeover detector: XGBoost on :func:`~fraudlens.market.features.account_features`.

    Parameters
    ----------
    n_estimators
        Boosting rounds.
    max_depth
        Depth of each tree.
    learning_rate
        Shrinkage (XGBoost ``eta``).
    seed
        Random seed of row and column subsampling.
    threshold
        Probability above which :meth:`predict` flags an account.
    n_jobs
        Threads used by XGBoost for prediction, and the most training uses (one thread
        below 100,000 accounts, else the cores other jobs leave free).
    subsample, colsample_bytree, min_child_weight
        Usual XGBoost regularisation knobs.
    ignore_features
        Columns of :func:`~fraudlens.market.features.account_features` the model is not
        trained on (they are still computed). Default ``("n_symbols",)``: in
        fraudlens's simulator normal accounts trade two or more symbols more often than
        takeover victims (30 % against 14 %), so a model trained on it learns "one
        symbol is suspicious", which is the simulator's habit, not the threat. Chosen on
        the real-bar check's development seeds (4242 / 9001) over three training
        samples (``market simulate --seed`` 7, 8, 9): the fifth set's market makers above
        0.9 about halved on each (0.17-0.51 -> 0.10-0.31) and its ROC AUC rose 0.0002
        to 0.006, recall at 1 % FPR on the other sets moving -0.008 to +0.006; held-out
        seed 17320: market makers 0.177 -> 0.093, recall 0.002 to 0.018 lower.
    counterparty_weight
        Log-odds added to an account's score per unit of counterparty evidence: the
        share of its round-trip value that one other account in the data mirrors
        (``mirror_pair_share``), counted only when that account mirrors both legs of at
        least one of its strong round trips (``n_mirror_pair_strong >= 1``), else 0.
        That is the threat itself (value moved to an account the thief controls), but
        the trees weigh it little: in training, mirrored takeovers are caught by their
        look anyway, so among the most suspicious-looking accounts of a real book a
        mirrored victim or beneficiary ranked below market makers and stopped-out
        momentum traders that no one mirrors. None (the default) estimates the weight
        when fitting, as the log of how much more often full evidence (0.5 or more)
        occurs among the training takeovers than among the normal accounts, each rate
        with one case added to each side (about 6.5 on ``market simulate``'s data, where
        no normal account has such evidence); 0 turns it off. Models saved before it
        existed load with 0 and score as before.

    Attributes
    ----------
    booster_ : xgboost.Booster
        The fitted model.
    feature_names_ : list[str]
        Columns the model was trained on, in order.
    feature_importances_ : dict[str, float]
        Total gain per feature, normalised to sum to 1 (0 for unused features).
    counterparty_weight_ : float
        The counterparty weight in use (estimated or given).
    """

    name: ClassVar[str] = "market-features"
    domain: ClassVar[str] = "market"

    def __init__(
        self,
        n_estimators: int = 300,
        max_depth: int = 5,
        learning_rate: float = 0.1,
        seed: int = 0,
        threshold: float = 0.5,
        n_jobs: int = 2,
        subsample: float = 0.9,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 1.0,
        ignore_features: tuple[str, ...] = ("n_symbols",),
        counterparty_weight: float | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.seed = seed
        self.threshold = threshold
        self.n_jobs = n_jobs
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.ignore_features = ignore_features
        self.counterparty_weight = counterparty_weight

    # -- training ------------------------------------------------------------------------
    def _xgb_params(self, rows: int) -> dict[str, Any]:
        """Training parameters for ``rows`` accounts; the threads are
        :func:`~fraudlens._cores.training_threads` (one for a few thousand accounts, else
        the cores other jobs leave free), at most ``n_jobs``."""
        return {
            "objective": "binary:logistic",
            "eval_metric": "auc",
            "tree_method": "hist",
            "max_depth": int(self.max_depth),
            "eta": float(self.learning_rate),
            "subsample": float(self.subsample),
            "colsample_bytree": float(self.colsample_bytree),
            "min_child_weight": float(self.min_child_weight),
            "seed": int(self.seed),
            "nthread": training_threads(rows, self.n_jobs),
        }

    def fit(
        self,
        X: MarketData,
        y: np.ndarray | None = None,
        *,
        sample_weight: np.ndarray | None = None,
    ) -> Self:
        """Train on the accounts of ``X``.

        Parameters
        ----------
        X
            Trades, k-lines and (unless ``y`` is given) labels.
        y
            Labels in ``X.account_ids`` order; defaults to ``X.y()``.
        sample_weight
            Non-negative weight of each account in ``X.account_ids`` order (e.g. analysts'
            reviewed cases counted as several simulated ones); all 1 when None.
        """
        labels = X.y() if y is None else np.asarray(y)
        return self.fit_features(account_features(X), labels, sample_weight=sample_weight)

    def fit_features(
        self, X: pd.DataFrame, y: np.ndarray, *, sample_weight: np.ndarray | None = None
    ) -> Self:
        """Train on precomputed :func:`~fraudlens.market.features.account_features`
        (``sample_weight`` as in :meth:`fit`)."""
        import xgboost as xgb

        y = np.asarray(y).astype(np.float32).ravel()
        if len(y) != len(X):
            raise DataError(f"{len(X)} feature rows but {len(y)} labels")
        if len(np.unique(y)) < 2:
            raise DataError("training needs both takeover (1) and normal (0) accounts")
        weight = None
        if sample_weight is not None:
            weight = np.asarray(sample_weight, dtype=np.float32).ravel()
            if len(weight) != len(y):
                raise DataError(f"{len(y)} labels but {len(weight)} sample weights")
            if not np.all(np.isfinite(weight)) or bool((weight < 0).any()) or weight.sum() <= 0:
                raise DataError("sample weights must be finite, >= 0 and not all 0")
        weight_cp = _evidence.fit_weight(self.counterparty_weight, X, y, weight)
        ignored = self._ignored()
        names = [c for c in X.columns if c not in ignored]
        if not names:
            raise DataError("every feature column is in ignore_features")
        X = X[names] if len(names) < X.shape[1] else X
        dtrain = xgb.DMatrix(
            X.to_numpy(dtype=np.float32), label=y, weight=weight, feature_names=names
        )
        self.booster_ = xgb.train(
            self._xgb_params(len(y)), dtrain, num_boost_round=int(self.n_estimators)
        )
        self.booster_.set_param({"nthread": int(self.n_jobs)})  # scoring: n_jobs
        self.feature_names_ = names
        self.threshold_ = float(self.threshold)
        self.counterparty_weight_ = weight_cp
        return self

    def _ignored(self) -> set[str]:
        """``ignore_features`` as a set of names (one name given alone counts as one)."""
        value = self.ignore_features
        if value is None:
            return set()
        if isinstance(value, str):
            return {value}
        try:
            return {str(n) for n in value}
        except TypeError:
            raise ConfigError(
                f"ignore_features must be a list of feature names, not {type(value).__name__}"
            ) from None

    # -- scoring -------------------------------------------------------------------------
    def _check_fitted(self) -> xgb.Booster:
        booster = getattr(self, "booster_", None)
        if booster is None:
            raise FraudlensError("FeatureDetector is not fitted; call fit() or load a model")
        return booster

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        cols = X.columns.tolist()
        if cols == self.feature_names_:  # the usual case: no lookup per column
            return np.ascontiguousarray(X.to_numpy(dtype=np.float32))
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise DataError(f"feature columns missing: {missing[:5]}")
        return np.ascontiguousarray(X[self.feature_names_].to_numpy(dtype=np.float32))

    def decision_function(self, X: MarketData) -> np.ndarray:
        """P(takeover) per account, in ``X.account_ids`` order."""
        self._check_fitted()
        return self.decision_function_features(account_features(X))

    def decision_function_features(self, X: pd.DataFrame) -> np.ndarray:
        """P(takeover) per row of precomputed features."""
        booster = self._scoring_booster(len(X))
        if len(X) == 0:
            return np.zeros(0, dtype=np.float64)
        matrix = self._matrix(X)
        pred = np.asarray(booster.inplace_predict(matrix, validate_features=False), np.float64)
        ev = _evidence.evidence_of(X) if self._weight() > 0 else None
        if ev is not None:
            self._add_evidence(booster, matrix, pred, ev)
        return pred

    def _weight(self) -> float:
        """The fitted counterparty weight (0 for a model saved before it existed)."""
        return float(getattr(self, "counterparty_weight_", 0.0))

    def _add_evidence(
        self, booster: xgb.Booster, matrix: np.ndarray, pred: np.ndarray, ev: np.ndarray
    ) -> None:
        """Rescore in place the rows with counterparty evidence: sigmoid(log-odds +
        weight x evidence). Rows without it keep the booster's probability as it is."""
        rows = np.flatnonzero(ev > 0)
        if len(rows) == 0:
            return
        margin = booster.inplace_predict(
            np.ascontiguousarray(matrix[rows]), predict_type="margin", validate_features=False
        )
        pred[rows] = _evidence.lift(margin, ev[rows], self._weight())

    def _decision_block(self, block: np.ndarray) -> np.ndarray:
        """:meth:`decision_function_features` of ``pd.DataFrame(block, columns=
        FEATURE_NAMES)``, without the frame: the worker scores a few accounts a call, for
        which building the frame cost more than the prediction."""
        self._check_fitted()
        names = self.feature_names_
        cached = getattr(self, "_block_columns", None)
        if cached is None or cached[0] is not names:
            at = {n: i for i, n in enumerate(FEATURE_NAMES)}
            cols: Any = None  # the block's own order
            if list(names) != list(FEATURE_NAMES):
                known = all(n in at for n in names)
                # unknown names (False): the frame's path says which
                cols = np.asarray([at[n] for n in names], dtype=np.intp) if known else False
            cached = (names, cols)
            self._block_columns = cached
        cols = cached[1]
        if cols is False:
            return self.decision_function_features(pd.DataFrame(block, columns=list(FEATURE_NAMES)))
        booster = self._scoring_booster(len(block))
        if len(block) == 0:
            return np.zeros(0, dtype=np.float64)
        X = np.ascontiguousarray(block if cols is None else block[:, cols], dtype=np.float32)
        pred = np.asarray(booster.inplace_predict(X, validate_features=False), np.float64)
        if self._weight() > 0:
            ev = _evidence.evidence(block[:, _BLOCK_SHARE], block[:, _BLOCK_STRONG])
            self._add_evidence(booster, X, pred, ev)
        return pred

    def _scoring_booster(self, rows: int) -> xgb.Booster:
        """The booster to score ``rows`` rows with: the model itself, or a copy of it on
        fewer threads (``n_jobs`` at most, one per :data:`_ROWS_PER_THREAD` rows). Each
        row's trees are summed by one thread either way, so the scores are the same."""
        booster = self._check_fitted()
        jobs = int(self.n_jobs) if int(self.n_jobs) > 0 else (os.cpu_count() or 1)
        threads = min(jobs, max(1, rows // _ROWS_PER_THREAD))
        if threads >= jobs:
            return booster
        cache: tuple[xgb.Booster, dict[int, xgb.Booster]] | None
        cache = getattr(self, "_fewer_threads", None)
        if cache is None or cache[0] is not booster:
            cache = (booster, {})
            self._fewer_threads = cache
        copy = cache[1].get(threads)
        if copy is None:
            copy = booster.copy()
            copy.set_param({"nthread": threads})
            cache[1][threads] = copy
        return copy

    def feature_contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-row SHAP contributions (log-odds) of each feature, plus a ``bias`` column.

        Rows and index follow ``X``; each row sums to the model's log-odds for that row.
        """
        import xgboost as xgb

        booster = self._check_fitted()
        dm = xgb.DMatrix(self._matrix(X), feature_names=self.feature_names_)
        contrib = booster.predict(dm, pred_contribs=True)
        out = pd.DataFrame(contrib, index=X.index, columns=[*self.feature_names_, "bias"])
        ev = _evidence.evidence_of(X) if self._weight() > 0 else None
        if ev is not None:
            # the counterparty evidence's log-odds go to the share it reads
            col = _evidence.PAIR_SHARE if _evidence.PAIR_SHARE in out.columns else "bias"
            out[col] = out[col].to_numpy(dtype=np.float64) + self._weight() * ev
        return out

    @property
    def feature_importances_(self) -> dict[str, float]:
        """Total gain per feature, normalised to sum to 1."""
        booster = self._check_fitted()
        raw = booster.get_score(importance_type="total_gain")
        # one value per feature for tree boosters (lists only appear for linear models)
        gain = {k: float(np.sum(v)) for k, v in raw.items()}
        total = sum(gain.values()) or 1.0
        return {n: gain.get(n, 0.0) / total for n in self.feature_names_}

    # -- persistence ---------------------------------------------------------------------
    def save_files(self, path: Path) -> dict[str, Any]:
        """Write ``model.json`` (XGBoost JSON); return the feature names for the metadata."""
        booster = self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_booster(booster, path / _MODEL_FILE)
        return {
            "feature_names": list(self.feature_names_),
            "model_file": _MODEL_FILE,
            "counterparty_weight": self._weight(),
        }

    @classmethod
    def load_files(cls, path: Path, metadata: dict[str, Any]) -> Self:
        """Rebuild a detector from ``model.json`` and its metadata (no pickle involved)."""
        model_file = Path(path) / str(metadata.get("model_file", _MODEL_FILE))
        if not model_file.is_file():
            raise ModelNotFoundError(f"no XGBoost model file at {model_file}")
        known = set(cls().get_params())
        params = {k: v for k, v in dict(metadata.get("params") or {}).items() if k in known}
        det = cls(**params)
        booster = load_booster(model_file, nthread=det.n_jobs)
        names = metadata.get("feature_names") or booster.feature_names or list(FEATURE_NAMES)
        unknown = sorted(set(names) - set(FEATURE_NAMES))
        if unknown:
            raise ModelNotFoundError(
                f"model at {path} uses features this version does not compute: {unknown[:5]} "
                "(a model trained by an earlier version; train it again with "
                "`fraudlens market train`)"
            )
        det.booster_ = booster
        det.feature_names_ = list(names)
        det.threshold_ = float(metadata.get("threshold", det.threshold))
        # absent from models saved before the evidence existed: they score as before
        det.counterparty_weight_ = float(metadata.get("counterparty_weight") or 0.0)
        return det

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"FeatureDetector({params})"


_BLOCK_SHARE = FEATURE_NAMES.index(_evidence.PAIR_SHARE)
_BLOCK_STRONG = FEATURE_NAMES.index(_evidence.PAIR_STRONG)
