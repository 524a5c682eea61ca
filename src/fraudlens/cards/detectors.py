"""Card-fraud detectors: logistic regression, XGBoost and an Isolation Forest.

All three share :class:`~fraudlens.cards._tabular._TabularDetector`: they take a
DataFrame (or array) of numeric features, hold out the latest rows of the training data
as a validation tail to choose the decision threshold, and store themselves as plain
files (JSON, XGBoost JSON, ``.npz``), never pickle.

- :class:`LogisticDetector` mirrors the first version of the reference system
  (SageMaker Linear Learner, a linear binary classifier);
- :class:`XGBoostDetector` mirrors its later version (XGBoost), with a better-tuned
  default;
- :class:`AnomalyDetector` is the unsupervised model (the reference uses a Random Cut
  Forest; here an Isolation Forest, the closest algorithm in scikit-learn).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from fraudlens._cores import THREADS_FROM_ROWS, scoring_workers, training_threads
from fraudlens._xgb import load_booster, save_booster
from fraudlens.cards._iforest import FlatForest
from fraudlens.cards._tabular import ThresholdStrategy, _TabularDetector, parse_threshold_strategy
from fraudlens.errors import ConfigError

__all__ = [
    "AnomalyDetector",
    "LogisticDetector",
    "ThresholdStrategy",
    "XGBoostDetector",
    "parse_threshold_strategy",
]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp(-log(1 + exp(-z))) never overflows, unlike 1 / (1 + exp(-z)) for very negative z.
    return np.exp(-np.logaddexp(0.0, -z))


class LogisticDetector(_TabularDetector):
    """Standardised features + logistic regression (the Linear Learner analogue).

    Parameters
    ----------
    C
        Inverse L2 regularisation strength (``solver="lbfgs"``).
    solver
        ``"lbfgs"``: full-batch :class:`sklearn.linear_model.LogisticRegression`.
        ``"sgd"``: :class:`sklearn.linear_model.SGDClassifier` with the log loss, trained
        for ``epochs`` passes over shuffled rows, with averaged weights.
    alpha
        L2 penalty of the SGD solver.
    epochs
        Passes over the data for the SGD solver.
    max_iter
        Iteration cap of the lbfgs solver.
    class_weight
        ``"sqrt"`` (default) weighs each fraud by ``sqrt(#normal / #fraud)``,
        ``"balanced"`` by ``#normal / #fraud``, a number by that factor, ``None`` not at
        all; weights are then rescaled to average 1, as scikit-learn's ``"balanced"``
        does. Full balancing flattens the top of the ranking: on later, unseen weeks of
        simulated data and on ULB's last 8 hours it cost 0.02-0.04 average precision
        against ``"sqrt"``.
    oversample, threshold_strategy, validation_fraction, refit, time_of_day, random_state
        See :class:`~fraudlens.cards._tabular._TabularDetector`.

    Notes
    -----
    The fitted model is four vectors (scaler mean and scale, coefficients, intercept),
    stored as JSON and scored in numpy, so scoring needs no scikit-learn.
    """

    name: ClassVar[str] = "cards-logistic"

    def __init__(
        self,
        *,
        C: float = 1.0,
        solver: str = "lbfgs",
        alpha: float = 1e-4,
        epochs: int = 15,
        max_iter: int = 2000,
        class_weight: Any = "sqrt",
        oversample: str | None = None,
        threshold_strategy: ThresholdStrategy = "f1",
        validation_fraction: float = 0.2,
        refit: bool = True,
        time_of_day: str | None = "auto",
        random_state: int = 0,
    ) -> None:
        super().__init__(
            class_weight=class_weight,
            oversample=oversample,
            threshold_strategy=threshold_strategy,
            validation_fraction=validation_fraction,
            refit=refit,
            time_of_day=time_of_day,
            random_state=random_state,
        )
        self.C = C
        self.solver = solver
        self.alpha = alpha
        self.epochs = epochs
        self.max_iter = max_iter

    @classmethod
    def reference(cls) -> LogisticDetector:
        """The reference system's first model: Linear Learner ``binary_classifier``.

        Linear Learner trains by mini-batch SGD (``mini_batch_size`` 200, 15 epochs by
        default) on normalised features, with no class weighting, and flags at 0.5.
        scikit-learn has no mini-batch SGD for this loss, so this preset uses
        per-row SGD (``SGDClassifier(loss="log_loss")``) over 15 shuffled epochs with
        weight averaging, which smooths updates much like averaging over a mini-batch.
        """
        return cls(solver="sgd", epochs=15, alpha=1e-4, class_weight=None, threshold_strategy=None)

    def _fit_model(
        self,
        X: np.ndarray,
        y: np.ndarray | None,
        pos_weight: float,
        X_val: np.ndarray | None,
        y_val: np.ndarray | None,
    ) -> None:
        from sklearn.preprocessing import StandardScaler

        assert y is not None
        scaler = StandardScaler().fit(X)
        Xs = scaler.transform(X)
        weight = np.where(y == 1, pos_weight, 1.0)
        weight = weight / weight.mean()
        if self.solver == "lbfgs":
            from sklearn.linear_model import LogisticRegression

            model: Any = LogisticRegression(C=self.C, max_iter=self.max_iter)
        elif self.solver == "sgd":
            from sklearn.linear_model import SGDClassifier

            model = SGDClassifier(
                loss="log_loss",
                alpha=self.alpha,
                max_iter=self.epochs,
                tol=None,
                shuffle=True,
                average=True,
                random_state=self.random_state,
            )
        else:
            raise ConfigError(f"solver must be 'lbfgs' or 'sgd', not {self.solver!r}")
        model.fit(Xs, y, sample_weight=weight)
        self.mean_ = np.asarray(scaler.mean_, dtype=np.float64)
        # A constant column has scale 0; scikit-learn divides by 1 there, so do we.
        self.scale_ = np.asarray(scaler.scale_, dtype=np.float64)
        self.coef_ = np.asarray(model.coef_, dtype=np.float64).ravel()
        self.intercept_ = float(np.ravel(model.intercept_)[0])

    def _score(self, X: np.ndarray) -> np.ndarray:
        return _sigmoid(((X - self.mean_) / self.scale_) @ self.coef_ + self.intercept_)

    def _save_model(self, path: Path) -> dict[str, Any]:
        model = {
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
        }
        (path / "logistic.json").write_text(json.dumps(model, indent=1))
        return {"model_file": "logistic.json"}

    def _load_model(self, path: Path, metadata: dict[str, Any]) -> None:
        model = json.loads((path / "logistic.json").read_text())
        self.mean_ = np.asarray(model["mean"], dtype=np.float64)
        self.scale_ = np.asarray(model["scale"], dtype=np.float64)
        self.coef_ = np.asarray(model["coef"], dtype=np.float64)
        self.intercept_ = float(model["intercept"])


class XGBoostDetector(_TabularDetector):
    """Gradient-boosted trees (XGBoost ``binary:logistic``).

    Parameters
    ----------
    n_estimators
        Boosting rounds trained before the number to keep is chosen (the most kept).
    learning_rate, max_depth, gamma, min_child_weight, subsample, colsample_bytree, max_bin
        XGBoost's ``eta``, ``max_depth``, ``gamma``, ``min_child_weight``, ``subsample``,
        ``colsample_bytree``, ``max_bin`` (histogram bins per feature).
    early_stopping_rounds
        Choose the number of rounds on the validation rows, on their average-precision
        curve averaged over this many rounds (see Notes); ``None`` keeps all
        ``n_estimators`` rounds.
    eval_metric
        XGBoost's evaluation metric (recorded; the rounds are chosen on average precision).
    class_weight
        Sets XGBoost's ``scale_pos_weight``: ``None`` (default, 1),
        ``"sqrt"`` = ``sqrt(#normal / #fraud)`` (the reference), ``"balanced"`` =
        ``#normal / #fraud``, or a number.
    n_jobs
        Threads for training and scoring. ``None``: one thread below 100,000 rows, all
        cores from there on.
    oversample, threshold_strategy, validation_fraction, refit, time_of_day, random_state
        See :class:`~fraudlens.cards._tabular._TabularDetector`.

    Notes
    -----
    The number of rounds is chosen on the validation rows (the latest 30 % of the
    training rows, or an ``eval_set``): every 10 rounds up to ``n_estimators`` the
    validation rows' average precision is measured; the curve is averaged over
    ``early_stopping_rounds`` (50: 5 such points) and its maximum picked (at least 20
    rounds). Refits keep that
    number. Plain early stopping on XGBoost's own ``aucpr`` stopped within a few dozen
    rounds on small validation sets (a few dozen frauds) and cost ULB's day-1 expanding-
    window validation 0.015 average precision; the smoothed curve did not.

    The default (depth 4, eta 0.05, up to 600 rounds, 4,096 histogram bins, no class
    weighting) was chosen on validation data only: the handbook data's weeks before
    2018-07-25 and ULB's first day (expanding windows). 1,024 bins instead of XGBoost's
    256 let a split land near the handbook simulator's 220 amount rule (+0.009 average
    precision there, no change on ULB); 4,096 instead of 1,024 bring it closer (on the
    week from 2018-06-13 the split moved from 212.8 to 217.5 and 222.4): +0.0025
    average precision over the 8 weeks from 2018-05-16 to 07-04 (+0.0010 over the last
    4), higher with each of 3 seeds; ULB's day-1 figures within their noise (expanding
    windows -0.001, last 8 hours +0.000). Bins cost training time, not scoring time.
    Weighting frauds up (``scale_pos_weight``) lowered average precision on both. The
    model is stored in XGBoost's JSON format and scored with ``Booster.inplace_predict``.
    """

    name: ClassVar[str] = "cards-xgboost"

    #: Rounds between two points of the validation curve, and the fewest rounds kept.
    _CURVE_STEP = 10
    _MIN_ROUNDS = 20

    def __init__(
        self,
        *,
        n_estimators: int = 600,
        learning_rate: float = 0.05,
        max_depth: int = 4,
        gamma: float = 0.0,
        min_child_weight: float = 1.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        max_bin: int = 4096,
        early_stopping_rounds: int | None = 50,
        eval_metric: str = "aucpr",
        class_weight: Any = None,
        oversample: str | None = None,
        threshold_strategy: ThresholdStrategy = "f1",
        validation_fraction: float = 0.3,
        refit: bool = True,
        time_of_day: str | None = "auto",
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            class_weight=class_weight,
            oversample=oversample,
            threshold_strategy=threshold_strategy,
            validation_fraction=validation_fraction,
            refit=refit,
            time_of_day=time_of_day,
            random_state=random_state,
        )
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.gamma = gamma
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.max_bin = max_bin
        self.early_stopping_rounds = early_stopping_rounds
        self.eval_metric = eval_metric
        self.n_jobs = n_jobs

    @classmethod
    def reference(cls) -> XGBoostDetector:
        """The reference system's XGBoost: depth 5, eta 0.2, 100 rounds, gamma 4,
        min_child_weight 6, subsample 0.8, ``scale_pos_weight = sqrt(#neg / #pos)``,
        eval AUC, threshold 0.5, XGBoost's 256 bins, all rounds kept, no validation."""
        return cls(
            n_estimators=100,
            learning_rate=0.2,
            max_depth=5,
            gamma=4.0,
            min_child_weight=6.0,
            subsample=0.8,
            colsample_bytree=1.0,
            max_bin=256,
            early_stopping_rounds=None,
            eval_metric="auc",
            class_weight="sqrt",
            threshold_strategy=None,
            refit=False,
        )

    def _needs_validation(self) -> bool:
        return super()._needs_validation() or self.early_stopping_rounds is not None

    def _params(self, pos_weight: float, n_rows: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": "binary:logistic",
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "gamma": self.gamma,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "max_bin": int(self.max_bin),
            "scale_pos_weight": pos_weight,
            "eval_metric": self.eval_metric,
            "tree_method": "hist",
            "seed": self.random_state,
            "verbosity": 0,
        }
        # training: one thread for small tables, else the cores other jobs leave free
        # (a thread that loses its core stalls every round of the others)
        params["nthread"] = training_threads(n_rows) if self.n_jobs is None else int(self.n_jobs)
        return params

    def _threads(self, n_rows: int) -> int:
        """Threads to score (or explain) ``n_rows`` rows with."""
        if self.n_jobs is not None:
            return int(self.n_jobs)
        # Below ~100k rows a second thread costs more in synchronisation than it saves;
        # above, the cores free now (each thread sums its own rows' trees, so one that
        # loses its core delays only its rows).
        return 1 if n_rows < THREADS_FROM_ROWS else scoring_workers()

    def _fit_model(
        self,
        X: np.ndarray,
        y: np.ndarray | None,
        pos_weight: float,
        X_val: np.ndarray | None,
        y_val: np.ndarray | None,
    ) -> None:
        import xgboost as xgb

        assert y is not None
        rounds = int(getattr(self, "_refit_rounds", self.n_estimators))
        booster = xgb.train(
            self._params(pos_weight, len(X)),
            xgb.DMatrix(X, label=y),
            num_boost_round=rounds,
            verbose_eval=False,
        )
        usable = X_val is not None and y_val is not None and 0 < y_val.sum() < len(y_val)
        if usable and self.early_stopping_rounds is not None:
            assert X_val is not None and y_val is not None
            best, curve = self._choose_rounds(booster, X_val, y_val)
            booster = booster[:best]
            self.fit_info_["best_rounds"] = best
            self.fit_info_["rounds_curve"] = {
                "step": self._CURVE_STEP,
                "average_precision": [round(float(v), 5) for v in curve],
            }
        self.fit_info_["rounds"] = int(booster.num_boosted_rounds())
        self.booster_ = booster
        self.__dict__.pop("_predict_threads", None)

    def _choose_rounds(
        self, booster: Any, X_val: np.ndarray, y_val: np.ndarray
    ) -> tuple[int, np.ndarray]:
        """Rounds to keep: the peak of the smoothed validation average-precision curve."""
        import xgboost as xgb
        from sklearn.metrics import average_precision_score

        total = int(booster.num_boosted_rounds())
        step = self._CURVE_STEP
        stops = list(range(step, total + 1, step)) or [total]
        dval = xgb.DMatrix(X_val)
        margin = np.zeros(len(X_val))
        curve = []
        lo = 0
        for hi in stops:
            # Margins of disjoint round ranges add up; each carries the same base score,
            # which shifts every row alike and leaves the ranking (and so AP) unchanged.
            margin += booster.predict(dval, iteration_range=(lo, hi), output_margin=True)
            curve.append(average_precision_score(y_val, margin))
            lo = hi
        ap = np.asarray(curve)
        width = int(self.early_stopping_rounds or step) // step
        k = max(1, min(width, len(ap)))
        padded = np.pad(ap, (k // 2, k - 1 - k // 2), mode="edge")
        smooth = np.convolve(padded, np.ones(k) / k, mode="valid")
        best = stops[int(np.argmax(smooth))]
        return max(best, min(self._MIN_ROUNDS, total)), ap

    def _prepare_refit(self) -> None:
        # Refitting on every row keeps the number of rounds chosen on validation.
        self._refit_rounds = int(self.fit_info_.get("best_rounds", self.n_estimators))

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        time_order: Any = None,
        eval_set: tuple[Any, Any] | None = None,
    ) -> Self:
        """Fit; see :meth:`_TabularDetector.fit`."""
        self.__dict__.pop("_refit_rounds", None)
        try:
            return super().fit(X, y, time_order=time_order, eval_set=eval_set)
        finally:
            self.__dict__.pop("_refit_rounds", None)

    def refit_on(self, X: Any, y: Any = None, *, time_order: Any = None) -> Self:
        """Refit; see :meth:`_TabularDetector.refit_on`."""
        try:
            return super().refit_on(X, y, time_order=time_order)
        finally:
            self.__dict__.pop("_refit_rounds", None)

    def _score(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        threads = self._threads(len(X))
        if threads != getattr(self, "_predict_threads", None):
            self.booster_.set_param({"nthread": threads})
            self._predict_threads = threads
        return np.asarray(self.booster_.inplace_predict(X), dtype=np.float64)

    def _save_model(self, path: Path) -> dict[str, Any]:
        save_booster(self.booster_, path / "xgboost.json")
        return {"model_file": "xgboost.json"}

    def _load_model(self, path: Path, metadata: dict[str, Any]) -> None:
        self.booster_ = load_booster(path / "xgboost.json")

    @property
    def feature_importances_(self) -> dict[str, float]:
        """Total gain per feature name, normalised to sum to 1."""
        gain = self.booster_.get_score(importance_type="total_gain")
        names = self._matrix_names()
        by_name = {names[int(k[1:])]: float(v) for k, v in gain.items()}  # type: ignore[arg-type]
        total = sum(by_name.values()) or 1.0
        return {k: v / total for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])}


class AnomalyDetector(_TabularDetector):
    """Unsupervised Isolation Forest (the Random Cut Forest analogue).

    Parameters
    ----------
    n_estimators
        Number of trees.
    max_samples
        Rows drawn for each tree.
    max_features
        Share of columns each tree sees (default 0.5: a little higher AUC than 1.0 on
        both simulated and ULB data).
    contamination
        Share of rows flagged when no labels are available to choose the threshold.
    threshold_strategy
        Default ``("fpr", 0.01)``: flag at a 1 % false-positive rate on the validation
        tail (with labels), or the top 1 % of rows (without).
    validation_fraction, refit, time_of_day, random_state
        See :class:`~fraudlens.cards._tabular._TabularDetector`.

    Notes
    -----
    :meth:`decision_function` returns the anomaly score of Liu et al. (2008),
    ``s(x) = 2 ** (-E[h(x)] / c(max_samples))``, where ``E[h(x)]`` is the mean path length
    that isolates ``x`` and ``c(n)`` the mean path length of an unsuccessful search in a
    binary tree of ``n`` points. It lies in ``(0, 1]`` by construction: near 1 for points
    isolated at once, about 0.5 when the path is as long as for a typical point, lower
    for dense regions. No rescaling is applied, so a score means the same across models
    and data sets. :meth:`raw_score` is scikit-learn's ``score_samples`` (``-s(x)``).

    The fitted trees are stored as numeric arrays in ``iforest.npz`` and scored in numpy
    with the same arithmetic as scikit-learn.
    """

    name: ClassVar[str] = "cards-anomaly"
    _supervised: ClassVar[bool] = False

    def __init__(
        self,
        *,
        n_estimators: int = 200,
        max_samples: int = 512,
        max_features: float = 0.5,
        contamination: float = 0.01,
        threshold_strategy: ThresholdStrategy = ("fpr", 0.01),
        validation_fraction: float = 0.2,
        refit: bool = True,
        time_of_day: str | None = "auto",
        random_state: int = 0,
    ) -> None:
        super().__init__(
            class_weight=None,
            oversample=None,
            threshold_strategy=threshold_strategy,
            validation_fraction=validation_fraction,
            refit=refit,
            time_of_day=time_of_day,
            random_state=random_state,
        )
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.contamination = contamination

    @classmethod
    def reference(cls) -> AnomalyDetector:
        """Shaped like the reference Random Cut Forest: 50 trees of 512 rows each."""
        return cls(n_estimators=50, max_samples=512, max_features=1.0)

    def _fit_model(
        self,
        X: np.ndarray,
        y: np.ndarray | None,
        pos_weight: float,
        X_val: np.ndarray | None,
        y_val: np.ndarray | None,
    ) -> None:
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(X)),
            max_features=self.max_features,
            random_state=self.random_state,
        ).fit(X)
        self.forest_ = FlatForest.from_sklearn(forest)

    def _unlabelled_share(self, strategy: tuple[str, float | None]) -> float:
        kind, target = strategy
        return float(target) if kind == "fpr" and target is not None else self.contamination

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.forest_.score_samples(X)

    def raw_score(self, X: Any) -> np.ndarray:
        """scikit-learn's ``IsolationForest.score_samples``: lower is more anomalous."""
        self._check_fitted()
        return self.forest_.score_samples(self._matrix(X))

    def _save_model(self, path: Path) -> dict[str, Any]:
        self.forest_.save(path / "iforest.npz")
        return {"model_file": "iforest.npz"}

    def _load_model(self, path: Path, metadata: dict[str, Any]) -> None:
        self.forest_ = FlatForest.load(path / "iforest.npz")
