"""XGBoost booster saving and loading shared by the card and market detectors.

``xgboost`` is imported inside the functions so that ``import fraudlens`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import xgboost as xgb


def load_booster(model_file: Path, *, nthread: int | None = None) -> xgb.Booster:
    """Read a booster from an XGBoost JSON model file.

    Parameters
    ----------
    model_file
        File written by :func:`save_booster` (or ``Booster.save_model``).
    nthread
        Threads to score with; ``None`` leaves XGBoost's setting alone.
    """
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(model_file))
    if nthread is not None:
        booster.set_param({"nthread": int(nthread)})
    return booster


def save_booster(booster: xgb.Booster, model_file: Path) -> None:
    """Write ``booster`` to ``model_file`` as XGBoost JSON (the bytes ``save_model``
    writes), through Python: XGBoost's own file writer reports a full disk as an
    XGBoostError ("FileStream.Write incomplete") with a C++ stack trace, while a
    Python write raises the OSError (ENOSPC, EROFS, ...) that the CLI reports in one
    line."""
    Path(model_file).write_bytes(booster.save_raw(raw_format="json"))
