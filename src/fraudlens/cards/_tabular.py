"""Shared plumbing of the card detectors: inputs, validation data, imbalance, threshold.

Every card detector trains the same way:

1. the input (DataFrame or array) is checked and turned into a float64 matrix, and the
   feature names are remembered; with ``time_of_day`` naming a column (seconds, as ULB's
   ``Time``), it is folded to the hour of the day, so a model trained on one day reads
   the next day's rows at the same hours instead of past the end of its training data;
   with ``"auto"``, the default, ULB's ``Time`` is ignored (read as 0 by the model, kept
   in the input) when the features are the ULB table's: on day 1's hours held out in
   turn, the hour of the day cost XGBoost 0.014 average precision (see
   :meth:`_TabularDetector._resolve_time_of_day`);
2. validation data: the rows given as ``eval_set`` (e.g. a later time window), or else
   the most recent ``validation_fraction`` of the training rows (rows are taken in time
   order), held out as a validation tail;
3. the training rows are optionally oversampled (SMOTE or random copies of frauds) and
   weighted so frauds count more;
4. the model is fitted on them, the validation rows are scored and a decision threshold
   is chosen on them (best F1, a target recall or a target false-positive rate);
   XGBoost also chooses its number of boosting rounds there;
5. with ``refit`` and a validation tail, the model is fitted once more on all rows (with
   the number of boosting rounds found in step 4), keeping the threshold of step 4.
   :meth:`_TabularDetector.refit_on` does the same on any rows, e.g. all labelled rows
   after validating on a held-out window.

Subclasses only say how to fit, score and store their model.
"""

from __future__ import annotations

import json
import time
import warnings
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from fraudlens._detector import Detector
from fraudlens.errors import ConfigError, DataError

__all__ = ["ThresholdStrategy", "parse_threshold_strategy"]

#: ``"f1"``, ``("recall", 0.8)``, ``("fpr", 0.01)``, the strings ``"recall:0.8"`` /
#: ``"fpr:0.01"``, or ``None`` to keep a fixed threshold.
ThresholdStrategy = str | tuple[str, float] | list[Any] | None

_META_FILE = "detector.json"
# Scores of the validation rows by the model before a refit (see ``validation_``).
_VALIDATION_FILE = "validation.npz"
_DAY_S = 86_400.0


def parse_threshold_strategy(value: Any) -> tuple[str, float | None] | None:
    """Normalise a threshold strategy to ``(kind, target)`` or ``None``.

    Parameters
    ----------
    value
        ``"f1"``, ``"recall:0.8"``, ``"fpr:0.01"``, ``("recall", 0.8)``,
        ``("fpr", 0.01)``, ``"fixed"`` / ``"none"`` / ``None`` (keep the fixed threshold),
        or a number (a fixed threshold, returned as ``("fixed", value)``).

    Raises
    ------
    ConfigError
        For anything else.
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ("fixed", float(value))
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "fixed"):
            return None
        if text == "f1":
            return ("f1", None)
        try:
            return ("fixed", float(text))
        except ValueError:
            pass
        name, sep, number = text.partition(":")
        if not sep:
            name, sep, number = text.partition("=")
        if sep:
            value = (name.strip(), number.strip())
        else:
            raise ConfigError(
                f"unknown threshold strategy {value!r}; use f1, recall:0.8, fpr:0.01 or none"
            )
    if isinstance(value, tuple | list) and len(value) == 2:
        kind = str(value[0]).lower()
        shown = f"{value[0]}:{value[1]}"
        try:
            goal = float(value[1])
        except (TypeError, ValueError):
            raise ConfigError(
                f"threshold strategy {shown!r}: the target {value[1]!r} is not a number"
            ) from None
        if kind in ("recall", "fpr"):
            if not 0.0 <= goal <= 1.0:
                example = "recall:0.8" if kind == "recall" else "fpr:0.01"
                raise ConfigError(
                    f"threshold strategy {shown!r}: the {kind} target {goal:g} is out of "
                    f"range; it must be between 0 and 1 (e.g. {example})"
                )
            return (kind, goal)
        if kind == "fixed":
            return (kind, goal)
        raise ConfigError(
            f"unknown threshold strategy {shown!r}; use f1, recall:0.8, fpr:0.01 or none"
        )
    raise ConfigError(f"unknown threshold strategy {value!r}; use f1, recall:0.8, fpr:0.01 or none")


def _positive_weight(class_weight: Any, y: np.ndarray) -> float:
    """Weight of one fraud relative to one normal row."""
    if class_weight is None:
        return 1.0
    n_pos = int(y.sum())
    n_neg = int(len(y) - n_pos)
    ratio = n_neg / n_pos if n_pos else 1.0
    if class_weight == "balanced":
        return ratio
    if class_weight == "sqrt":
        return float(np.sqrt(ratio))
    if isinstance(class_weight, int | float) and not isinstance(class_weight, bool):
        return float(class_weight)
    raise ConfigError(
        f"class_weight must be None, 'balanced', 'sqrt' or a number, not {class_weight!r}"
    )


class _TabularDetector(Detector):
    """Base class of the card detectors (logistic, XGBoost, Isolation Forest).

    Subclasses implement :meth:`_fit_model`, :meth:`_score`, :meth:`_save_model` and
    :meth:`_load_model`; this class handles everything else.
    """

    domain: ClassVar[str] = "cards"
    #: Whether fitting needs labels.
    _supervised: ClassVar[bool] = True

    feature_names_: list[str]
    fit_info_: dict[str, Any]
    #: Optional: the held-out validation rows (``rows``: positions in the training data,
    #: ``scores``, ``labels``) as scored by the model *before* it was refitted on them,
    #: stored beside the model so an honest report can be drawn later.
    validation_: dict[str, np.ndarray]
    #: The column folded to the hour of the day (``time_of_day`` resolved at fit), or None.
    time_of_day_: str | None
    #: Columns the model reads as 0 (``time_of_day="auto"`` on a ULB table: ``Time``).
    ignored_: list[str]
    #: Text columns of ISO-8601 dates, read as days since 1970-01-01
    #: (:func:`fraudlens.cards._categories.is_dates`).
    dates_: list[str]
    #: The time column whose hour of the day the model reads as the feature ``COL (hour
    #: of day)`` (``cards train --time-of-day``): ``{"column": COL, "unit": seconds per
    #: unit of a numeric column}``, or None. Set by the caller that built the feature, so
    #: every file-scoring path builds it the same way (:func:`fraudlens.cards.data.
    #: validate_frame`'s ``time_of_day``).
    clock_: dict[str, Any] | None = None

    def __init__(
        self,
        *,
        class_weight: Any = None,
        oversample: str | None = None,
        threshold_strategy: ThresholdStrategy = "f1",
        validation_fraction: float = 0.2,
        refit: bool = False,
        time_of_day: str | None = "auto",
        random_state: int = 0,
    ) -> None:
        self.class_weight = class_weight
        self.oversample = oversample
        self.threshold_strategy = threshold_strategy
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.time_of_day = time_of_day
        self.random_state = random_state

    # -- hooks -------------------------------------------------------------------------
    @abstractmethod
    def _fit_model(
        self,
        X: np.ndarray,
        y: np.ndarray | None,
        pos_weight: float,
        X_val: np.ndarray | None,
        y_val: np.ndarray | None,
    ) -> None:
        """Fit the underlying model (``X_val`` is the validation tail, or ``None``)."""

    @abstractmethod
    def _score(self, X: np.ndarray) -> np.ndarray:
        """Scores of a checked float64 matrix; higher means more suspicious."""

    @abstractmethod
    def _save_model(self, path: Path) -> dict[str, Any]:
        """Write the model's own files into ``path``; return extra metadata."""

    @abstractmethod
    def _load_model(self, path: Path, metadata: dict[str, Any]) -> None:
        """Read the files written by :meth:`_save_model`."""

    def _unlabelled_share(self, strategy: tuple[str, float | None]) -> float:
        """Share of rows to flag when the threshold must be chosen without labels."""
        kind, target = strategy
        return float(target) if kind == "fpr" and target is not None else 0.01

    def _prepare_refit(self) -> None:
        """Adjust settings before refitting on all rows (e.g. fix the number of rounds)."""

    # -- input checks ------------------------------------------------------------------
    def _matrix(self, X: Any, *, fitting: bool = False, also: Any = None) -> np.ndarray:
        """Check ``X`` and return it as a float64 matrix in ``feature_names_`` order, each
        text column encoded as the model learned at fit (:mod:`fraudlens.cards._categories`)."""
        import pandas as pd

        from fraudlens.cards import _categories

        if isinstance(X, pd.DataFrame):
            names = [str(c) for c in X.columns]
            if fitting:
                frame = X.set_axis(names, axis=1)
                # Text (mostly not numbers) and True/False columns, as validate_frame
                # reads them; an object column of numbers stays numbers.
                text = [
                    c
                    for c in names
                    if _categories.is_flags(frame[c])
                    or (_categories.is_text(frame[c]) and _categories.mostly_text(frame[c]))
                ]
                # Dates are numbers, not identifiers, however many distinct ones.
                self.dates_ = [c for c in text if _categories.is_dates(frame[c])]
                text = [c for c in text if c not in self.dates_]
                self.set_aside_ = _categories.identifiers(frame, text)
                self.feature_names_ = [c for c in names if c not in self.set_aside_]
                if not self.feature_names_:
                    raise DataError(
                        f"no feature columns: {', '.join(self.set_aside_)} hold a distinct "
                        "value in most rows (identifiers, no features)"
                    )
                frame = frame[self.feature_names_] if self.set_aside_ else frame
                self.categories_ = {
                    c: _categories.learn(frame[c]) for c in text if c not in self.set_aside_
                }
                self.fill_ = {}  # learned below, once the numbers are read
                encoded = self._matrix_names()
                width = len(encoded)
                if len(set(encoded)) < width:
                    twice = next(n for n in encoded if encoded.count(n) > 1)
                    raise DataError(
                        f"the encoded column {twice!r} would be made twice (a column of "
                        "that name and a text column's level): rename the column",
                        column=twice.split("=", 1)[0].split(" (", 1)[0],
                    )
                if width > _categories.MAX_ENCODED_COLUMNS:
                    raise DataError(
                        f"{len(self.categories_)} text columns encode to {width:,} feature "
                        f"columns (at most {_categories.MAX_ENCODED_COLUMNS:,}): drop text "
                        "columns or encode them as numbers"
                    )
            else:
                missing = [n for n in self.feature_names_ if n not in set(names)]
                if missing:
                    from fraudlens.cards.data import row_id_column

                    ids = [n for n in missing if row_id_column(n)]
                    if ids:
                        # Trained before row ids were set aside: the id is no feature.
                        raise DataError(
                            f"model {self.name} was trained with the row id {ids[0]!r} as a "
                            "feature; row ids are now set aside (a row number ranks only "
                            "the order of its file): train the model again",
                            column=ids[0],
                        )
                    raise DataError(
                        f"{len(missing)} feature column(s) missing; model {self.name} needs "
                        f"{len(self.feature_names_)} columns, first missing: {missing[:5]}",
                        column=missing[0],
                    )
                frame = X.loc[:, self.feature_names_] if names != self.feature_names_ else X
            categories = getattr(self, "categories_", {})
            frame = self._read_dates(frame)
            for col in frame.columns:
                if str(col) in categories or pd.api.types.is_numeric_dtype(frame[col]):
                    continue
                if pd.api.types.is_bool_dtype(frame[col]):
                    continue
                frame = self._numbers(frame, str(col))
            if fitting:
                self.fill_ = self._learn_fill(frame, also)
            frame = self._expand(frame)  # (its dates were read above)
            arr = frame.to_numpy(dtype=np.float64)
        else:
            if getattr(self, "categories_", None) or getattr(self, "dates_", None):
                text = [*getattr(self, "categories_", {}), *getattr(self, "dates_", [])]
                raise DataError(
                    f"model {self.name} reads text columns ({', '.join(text)}): "
                    "give its rows as a table with column names, not as bare numbers"
                )
            arr = np.asarray(X, dtype=np.float64)
            if arr.ndim == 1 and not fitting:
                arr = arr.reshape(1, -1)
            if arr.ndim != 2:
                raise DataError(f"features must be a 2-D table, got shape {arr.shape}")
            if fitting:
                self.feature_names_ = [f"x{i}" for i in range(arr.shape[1])]
                self.categories_ = {}
                self.set_aside_ = []
                self.dates_ = []
                self.fill_ = {}
            elif arr.shape[1] != len(self.feature_names_):
                raise DataError(
                    f"expected {len(self.feature_names_)} feature columns "
                    f"({', '.join(self.feature_names_[:3])}, ...), got {arr.shape[1]}"
                )
        finite = np.isfinite(arr)
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            value = arr[row, col]
            raise DataError(
                "missing value (the model's training rows had no blank in this column)"
                if np.isnan(value)
                else f"value {value} is not a finite number",
                row=int(row) + 1,
                column=self._sources()[int(col)],
            )
        if fitting:
            self.time_of_day_, self.ignored_ = self._resolve_time_of_day()
        if getattr(self, "time_of_day_", None) is not None:
            arr = self._fold_time_of_day(arr, X)
        ignored = getattr(self, "ignored_", [])
        if ignored:
            arr = self._writable(arr, X)
            arr[:, [self._sources().index(c) for c in ignored]] = 0.0
        return arr

    def encode_features(self, frame: Any) -> Any:
        """Feature columns (a DataFrame in ``feature_names_`` order, numbers as numbers) as
        the model reads them: text columns encoded and blank indicators added (see
        :mod:`fraudlens.cards._categories`); time of day and ignored columns as given."""
        return self._expand(self._read_dates(frame))

    def _expand(self, frame: Any) -> Any:
        """``frame`` (dates read) with text columns encoded and blank indicators added."""
        from fraudlens.cards import _categories

        return _categories.expand(
            frame, getattr(self, "categories_", {}), getattr(self, "fill_", {})
        )

    def _read_dates(self, frame: Any) -> Any:
        """``frame`` with each of the model's date columns as days since 1970-01-01."""
        from fraudlens.cards import _categories

        dates = [c for c in getattr(self, "dates_", []) if c in frame.columns]
        if not dates:
            return frame
        return frame.assign(**{c: _categories.as_days(frame[c], c) for c in dates})

    @staticmethod
    def _learn_fill(frame: Any, also: Any) -> dict[str, float]:
        """The numeric columns with blank cells in the training rows (or in ``also``, the
        validation rows), each with the median of its training values (0 if none)."""
        import pandas as pd

        fill: dict[str, float] = {}
        for col in frame.columns:
            s = frame[col]
            if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
                continue
            more = also[col] if isinstance(also, pd.DataFrame) and col in also else None
            # (``also`` as given: a date column is still text there, blanks are None)
            blank = bool(s.isna().any()) or (more is not None and bool(more.isna().any()))
            if blank:
                median = s.median()
                fill[str(col)] = 0.0 if pd.isna(median) else float(median)
        return fill

    def _matrix_names(self) -> list[str]:
        """The columns of the model's matrix: ``feature_names_``, text columns encoded."""
        return [name for name, _ in self._columns()]

    def _sources(self) -> list[str]:
        """The feature column each column of the model's matrix comes from."""
        return [source for _, source in self._columns()]

    def _columns(self) -> list[tuple[str, str]]:
        """(name, feature column it comes from) of each column of the model's matrix."""
        from fraudlens.cards import _categories

        categories = getattr(self, "categories_", {})
        fill = getattr(self, "fill_", {})
        out: list[tuple[str, str]] = []
        for name in self.feature_names_:
            spec = categories.get(name)
            if spec:
                out.extend((n, name) for n in _categories.names(name, spec))
            elif name in fill:
                out.extend((n, name) for n in _categories.blank_names(name))
            else:
                out.append((name, name))
        return out

    @staticmethod
    def _numbers(frame: Any, col: str) -> Any:
        """``frame`` with text column ``col`` read as numbers (the model reads numbers
        there); DataError naming the first cell that is none."""
        import pandas as pd

        s = frame[col]
        if (
            isinstance(s.dtype, pd.CategoricalDtype)
            or pd.api.types.is_object_dtype(s.dtype)
            or (pd.api.types.is_string_dtype(s.dtype))
        ):
            num = pd.to_numeric(s.astype(object), errors="coerce")
            # A blank stays blank (the model fills it, or names it as missing).
            wrong = (num.isna() & s.notna()) | s.map(lambda v: isinstance(v, bool))
            bad = np.flatnonzero(wrong.to_numpy())
            if not len(bad):
                return frame.assign(**{col: num.astype(np.float64)})
            i = int(bad[0])
            raise DataError(f"not a number: {s.iloc[i]!r}", row=i + 1, column=col)
        raise DataError(f"feature column is not numeric (dtype {s.dtype})", column=col)

    def _resolve_time_of_day(self) -> tuple[str | None, list[str]]:
        """``time_of_day`` for the fitted feature names: (the column folded to the hour
        of the day or None, the columns ignored).

        ``"auto"`` ignores ULB's ``Time`` when the features are the ULB table's. Chosen on
        ULB's first day only, every block of hours held out in turn and scored by a model
        fitted on all the other hours (the second day's model has seen every hour of the
        day, bursts of fraud excepted): pooled average precision of the default XGBoost
        with ``Time`` as the hour of the day / ignored (``bench/_cards_time_of_day.py``),
        2-hour blocks: 0.863 / 0.877 over seeds 0-5, ignored higher with 5 of the 6 (paired
        bootstrap of the gain +0.009, s.d. 0.003, seeds 0-2; +0.020, s.d. 0.006, seeds
        3-5); 1-hour blocks 0.880 / 0.889 (seeds 0-1, the column dropped rather than read
        as 0); logistic regression 0.806 / 0.808 (seed 0). The hour mostly told the model
        when day 1's bursts of fraud came. ``Time`` as given
        (seconds since the first row) reads every later day as past the end of training.
        """
        from fraudlens.cards.data import ULB_FEATURES

        name = self.time_of_day
        if name == "auto":
            ulb = set(ULB_FEATURES) <= set(self.feature_names_)
            return None, ["Time"] if ulb else []
        if name is not None and name in getattr(self, "categories_", {}):
            raise DataError(
                f"time_of_day names {name!r}, a text column; it must hold seconds",
                column=str(name),
            )
        if name is not None and name not in self.feature_names_:
            raise DataError(
                f"time_of_day names {name!r}, which is not a feature column "
                f"({', '.join(self.feature_names_[:3])}, ...)",
                column=str(name),
            )
        return name, []

    def _fold_time_of_day(self, arr: np.ndarray, source: Any) -> np.ndarray:
        """The ``time_of_day_`` column (seconds) as the hour of the day, in a copy if needed."""
        j = self._sources().index(str(self.time_of_day_))
        arr = self._writable(arr, source)
        arr[:, j] = np.mod(arr[:, j], _DAY_S) / 3600.0
        return arr

    @staticmethod
    def _writable(arr: np.ndarray, source: Any) -> np.ndarray:
        """``arr``, or a copy of it where writing would change the caller's data."""
        # Never write into the caller's data: an array may be the input itself, and a
        # DataFrame may hand out a view of its own block.
        if isinstance(source, np.ndarray):
            shared = bool(np.may_share_memory(arr, source))
        else:
            shared = not arr.flags.owndata
        if shared or not arr.flags.writeable:
            arr = arr.copy()
        return arr

    @property
    def model_feature_names_(self) -> list[str]:
        """What the model sees: ``feature_names_``, the time-of-day column and the ignored
        columns renamed."""
        self._check_fitted()
        names = self._matrix_names()
        tod = getattr(self, "time_of_day_", None)
        if tod in names:
            names[names.index(str(tod))] = f"{tod} (hour of day)"
        for col in getattr(self, "ignored_", []):
            names[names.index(col)] = f"{col} (ignored)"
        return names

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise ConfigError(f"{type(self).__name__} is not fitted; call fit() or load a model")

    @staticmethod
    def _labels(y: Any, n: int) -> np.ndarray:
        labels = np.asarray(y)
        if labels.shape != (n,):
            raise DataError(f"expected {n} labels, got shape {labels.shape}")
        bad = ~np.isin(labels, (0, 1))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"label {labels[row]!r} is not 0 or 1", row=row + 1, column="label")
        return labels.astype(np.int8)

    # -- imbalance ---------------------------------------------------------------------
    def _resample(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.oversample is None or y.sum() == 0:
            return X, y
        try:
            from imblearn.over_sampling import SMOTE, RandomOverSampler
        except ImportError:  # pragma: no cover - depends on the install
            raise ConfigError(
                "oversampling needs imbalanced-learn: pip install 'fraudlens[imbalance]'"
            ) from None
        if self.oversample == "smote":
            k = int(min(5, max(1, y.sum() - 1)))
            sampler: Any = SMOTE(random_state=self.random_state, k_neighbors=k)
        elif self.oversample == "random":
            sampler = RandomOverSampler(random_state=self.random_state)
        else:
            raise ConfigError(
                f"oversample must be None, 'smote' or 'random', not {self.oversample!r}"
            )
        Xr, yr = sampler.fit_resample(X, y)
        return np.asarray(Xr, dtype=np.float64), np.asarray(yr, dtype=np.int8)

    # -- fitting -----------------------------------------------------------------------
    def _needs_validation(self) -> bool:
        strategy = parse_threshold_strategy(self.threshold_strategy)
        return strategy is not None and strategy[0] != "fixed"

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        time_order: Any = None,
        eval_set: tuple[Any, Any] | None = None,
    ) -> Self:
        """Fit on ``X`` (rows in time order, or ordered by ``time_order``) and labels ``y``.

        Parameters
        ----------
        X
            DataFrame of numeric features (column names are remembered) or a 2-D array.
        y
            0/1 labels, one per row. Required for supervised detectors.
        time_order
            Optional timestamps or sortable values, one per row; the validation tail is
            taken from the latest rows. Without it, rows are taken to be in time order.
        eval_set
            ``(X_val, y_val)``: validation rows (e.g. a later time window) that choose the
            threshold (and XGBoost's number of rounds) instead of a tail of ``X``. The
            model is then fitted on every row of ``X`` and not refitted; call
            :meth:`refit_on` for that.

        Returns
        -------
        Self
            The fitted detector.
        """
        t0 = time.perf_counter()
        Xa = self._matrix(X, fitting=True, also=None if eval_set is None else eval_set[0])
        n = len(Xa)
        if n < 2:
            raise DataError(f"need at least 2 training rows, got {n}")
        labels = None if y is None else self._labels(y, n)
        if labels is None and self._supervised:
            raise DataError(f"{self.name} is supervised: labels are required to fit it")
        if self._supervised and labels is not None and labels.sum() == 0:
            raise DataError("the training rows contain no fraud (label 1); cannot fit")
        if time_order is not None:
            order = np.argsort(np.asarray(time_order), kind="stable")
            Xa = Xa[order]
            labels = None if labels is None else labels[order]
        strategy = parse_threshold_strategy(self.threshold_strategy)
        X_val: np.ndarray | None
        y_val: np.ndarray | None
        if eval_set is not None:
            X_val = self._matrix(eval_set[0])
            y_val = None if eval_set[1] is None else self._labels(eval_set[1], len(X_val))
            X_fit, y_fit = Xa, labels
            n_val = 0
        else:
            n_val = round(self.validation_fraction * n) if self._needs_validation() else 0
            n_val = min(max(n_val, 0), n - 1)
            X_fit = Xa[: n - n_val]
            y_fit = None if labels is None else labels[: n - n_val]
            X_val = Xa[n - n_val :] if n_val else None
            y_val = None if labels is None or not n_val else labels[n - n_val :]
        if y_fit is not None and self._supervised:
            if y_fit.sum() == 0:
                raise DataError(
                    "no fraud in the training rows before the validation tail; "
                    "lower validation_fraction or use more data"
                )
            X_fit, y_fit = self._resample(X_fit, y_fit)
        pos_weight = 1.0 if y_fit is None else _positive_weight(self.class_weight, y_fit)
        self.fit_info_ = {
            "n_train": int(n),
            "n_fit": len(X_fit),
            "n_validation": int(n_val) if X_val is None or eval_set is None else len(X_val),
            "validation": "tail" if eval_set is None else "eval_set",
            "train_positives": None if labels is None else int(labels.sum()),
            "positive_weight": float(pos_weight),
        }
        self._fit_model(X_fit, y_fit, pos_weight, X_val, y_val)
        self.threshold_ = self._choose_threshold(strategy, X_val, y_val, X_fit)
        if self.refit and n_val:
            self._refit_matrix(Xa, labels)
        self.fit_info_["fit_seconds"] = round(time.perf_counter() - t0, 3)
        return self

    def refit_on(self, X: Any, y: Any = None, *, time_order: Any = None) -> Self:
        """Fit the model again on ``X`` (e.g. every labelled row), keeping what validation chose.

        The threshold and, for XGBoost, the number of boosting rounds stay those chosen
        by :meth:`fit` on its validation rows. Feature columns must be the same.

        Parameters
        ----------
        X, y
            Rows and 0/1 labels (labels required for supervised detectors).
        time_order
            Ignored for the fit itself (no rows are held out); accepted for symmetry.

        Returns
        -------
        Self
        """
        self._check_fitted()
        t0 = time.perf_counter()
        Xa = self._matrix(X)
        labels = None if y is None else self._labels(y, len(Xa))
        if labels is None and self._supervised:
            raise DataError(f"{self.name} is supervised: labels are required to refit it")
        if self._supervised and labels is not None and labels.sum() == 0:
            raise DataError("the rows to refit on contain no fraud (label 1); cannot refit")
        del time_order
        self._refit_matrix(Xa, labels)
        self.fit_info_["refit_seconds"] = round(time.perf_counter() - t0, 3)
        return self

    def _refit_matrix(self, Xa: np.ndarray, labels: np.ndarray | None) -> None:
        self._prepare_refit()
        X_all, y_all = Xa, labels
        if y_all is not None and self._supervised:
            X_all, y_all = self._resample(X_all, y_all)
        pos_all = 1.0 if y_all is None else _positive_weight(self.class_weight, y_all)
        self._fit_model(X_all, y_all, pos_all, None, None)
        self.fit_info_["refit_rows"] = len(X_all)
        if labels is not None:
            self.fit_info_["refit_positives"] = int(labels.sum())

    def _choose_threshold(
        self,
        strategy: tuple[str, float | None] | None,
        X_val: np.ndarray | None,
        y_val: np.ndarray | None,
        X_fit: np.ndarray,
    ) -> float:
        from fraudlens.evaluation import threshold_for

        if strategy is None:
            self.fit_info_["threshold_source"] = "fixed"
            return float(self.threshold_)
        kind, target = strategy
        if kind == "fixed":
            self.fit_info_["threshold_source"] = "fixed"
            return float(target if target is not None else self.threshold_)
        if y_val is None or X_val is None:
            # No labels (unsupervised fit): treat every row as normal, so a target FPR
            # becomes the share of rows flagged.
            rows = X_val if X_val is not None else X_fit
            score = self._score(rows)
            share = self._unlabelled_share(strategy)
            self.fit_info_["threshold_source"] = f"top {share:.2%} of unlabelled validation rows"
            return threshold_for(np.zeros(len(score), dtype=np.int8), score, target_fpr=share)
        score = self._score(X_val)
        n_pos = int(y_val.sum())
        if n_pos == 0 and kind != "fpr":
            warnings.warn(
                "no fraud in the validation tail; keeping the default threshold",
                RuntimeWarning,
                stacklevel=3,
            )
            self.fit_info_["threshold_source"] = "default (no fraud in validation tail)"
            return float(self.threshold_)
        self.fit_info_["threshold_source"] = f"{kind} on validation tail ({n_pos} frauds)"
        if kind == "recall":
            return threshold_for(y_val, score, target_recall=target)
        if kind == "fpr":
            return threshold_for(y_val, score, target_fpr=target)
        return threshold_for(y_val, score)

    # -- scoring -----------------------------------------------------------------------
    def decision_function(self, X: Any) -> np.ndarray:
        """Score each row; higher means more suspicious.

        Parameters
        ----------
        X
            DataFrame with (at least) the training feature columns, in any order, or an
            array with exactly as many columns as were used in training.

        Raises
        ------
        DataError
            When a feature column is missing, the width is wrong or a value is not finite.
        """
        self._check_fitted()
        return self._score(self._matrix(X))

    # -- persistence -------------------------------------------------------------------
    def save_files(self, path: Path) -> dict[str, Any]:
        """Write the model files and ``detector.json`` into ``path``; return the metadata."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "feature_names": list(self.feature_names_),
            "fit_info": getattr(self, "fit_info_", {}),
            **self._save_model(path),
        }
        own = {
            "name": self.name,
            "params": self.get_params(),
            "threshold": float(self.threshold_),
            "time_of_day": getattr(self, "time_of_day_", None),
            "ignored": list(getattr(self, "ignored_", [])),
            "categories": getattr(self, "categories_", {}),
            "fill": getattr(self, "fill_", {}),
            "set_aside": list(getattr(self, "set_aside_", [])),
            "dates": list(getattr(self, "dates_", [])),
            "clock": getattr(self, "clock_", None),
            **meta,
        }
        (path / _META_FILE).write_text(json.dumps(_plain(own), indent=2, sort_keys=True))
        if getattr(self, "validation_", None):
            arrays: dict[str, Any] = dict(self.validation_)
            np.savez(path / _VALIDATION_FILE, **arrays)
        return meta

    @classmethod
    def load_files(cls, path: Path, metadata: dict[str, Any] | None = None) -> Self:
        """Rebuild a detector from a folder written by :meth:`save_files`."""
        path = Path(path)
        own_file = path / _META_FILE
        own = json.loads(own_file.read_text()) if own_file.is_file() else {}
        meta = {**own, **(metadata or {})}
        if meta.get("name", cls.name) != cls.name:
            raise ConfigError(f"folder {path} holds a {meta['name']} model, not {cls.name}")
        params = dict(meta.get("params", {}))
        strategy = params.get("threshold_strategy")
        if isinstance(strategy, list):
            params["threshold_strategy"] = tuple(strategy)
        known = set(cls().get_params())
        det = cls(**{k: v for k, v in params.items() if k in known})
        det.feature_names_ = list(meta["feature_names"])
        det.fit_info_ = dict(meta.get("fit_info", {}))
        det.threshold_ = float(meta.get("threshold", det.threshold_))
        # Resolved at fit; models saved before "auto" existed had the column itself or None.
        param = params.get("time_of_day")
        det.time_of_day_ = meta.get("time_of_day", None if param == "auto" else param)
        # Models saved before ignored columns existed ignore none.
        det.ignored_ = [str(c) for c in meta.get("ignored", [])]
        # Models saved before text columns were encoded read numbers only.
        det.categories_ = {str(k): dict(v) for k, v in dict(meta.get("categories", {})).items()}
        det.set_aside_ = [str(c) for c in meta.get("set_aside", [])]
        # ... and no dates (columns of dates had been read as levels).
        det.dates_ = [str(c) for c in meta.get("dates", [])]
        # ... and no hour of the day of a time column (cards train --time-of-day).
        clock = meta.get("clock")
        det.clock_ = (
            None if not clock else {"column": str(clock["column"]), "unit": float(clock["unit"])}
        )
        # ... and no blanks.
        det.fill_ = {str(k): float(v) for k, v in dict(meta.get("fill", {})).items()}
        det._load_model(path, meta)
        if (path / _VALIDATION_FILE).is_file():
            with np.load(path / _VALIDATION_FILE, allow_pickle=False) as arrays:
                det.validation_ = {k: arrays[k] for k in arrays.files}
        return det


def _plain(obj: Any) -> Any:
    """Make numpy scalars and tuples JSON-friendly."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
