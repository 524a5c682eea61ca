"""The detector API shared by every model family (market and cards).

Detectors follow the scikit-learn / PyOD shape: ``__init__`` stores hyperparameters
only, ``fit`` sets attributes whose names end in ``_``, and scores are higher for more
suspicious input. Persistence never uses pickle: each detector writes plain files
(JSON, safetensors, ONNX, XGBoost JSON) into a folder it is given.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

__all__ = ["Detector"]


class Detector(ABC):
    """Base class of all fraudlens detectors.

    Subclasses set ``name`` (registry name, e.g. ``"market-cnn"``) and ``domain``
    (``"market"`` or ``"cards"``), implement :meth:`fit`, :meth:`decision_function`,
    :meth:`save_files` and :meth:`load_files`.
    """

    name: ClassVar[str] = ""
    domain: ClassVar[str] = ""
    #: Score above which an input is flagged; ``fit`` may tune it.
    threshold_: float = 0.5

    # -- hyperparameters ---------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments as a dict (scikit-learn convention)."""
        sig = inspect.signature(type(self).__init__)
        return {
            p: getattr(self, p)
            for p in sig.parameters
            if p != "self" and sig.parameters[p].kind is not inspect.Parameter.VAR_KEYWORD
        }

    # -- learning and scoring ------------------------------------------------------------
    @abstractmethod
    def fit(self, X: Any, y: Any = None) -> Self:
        """Learn from ``X`` (and labels ``y`` for supervised detectors)."""

    @abstractmethod
    def decision_function(self, X: Any) -> np.ndarray:
        """Return one score per input, higher meaning more suspicious."""

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return ``(n, 2)`` class probabilities, columns ``[normal, fraud]``."""
        p = np.clip(np.asarray(self.decision_function(X), dtype=np.float64), 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """Return 1 where the score exceeds ``threshold_``, else 0 (the one flag rule)."""
        from fraudlens.scoring import flag

        return flag(self.decision_function(X), self.threshold_).astype(np.int8)

    # -- persistence -------------------------------------------------------------------
    @abstractmethod
    def save_files(self, path: Path) -> dict[str, Any]:
        """Write the fitted model into folder ``path``; return extra metadata to record."""

    @classmethod
    @abstractmethod
    def load_files(cls, path: Path, metadata: dict[str, Any]) -> Self:
        """Rebuild a fitted detector from a folder written by :meth:`save_files`."""
