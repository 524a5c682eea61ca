"""XGBoost booster loading shared by the card and market detectors.

``xgboost`` is imported inside the functions so that ``import fraudlens`` stays fast.
"""

from __future__ import annotations

import ctypes
import functools
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xgboost as xgb


def load_booster(model_file: Path, *, nthread: int | None = None) -> xgb.Booster:
    """Read a booster from an XGBoost JSON model file.

    Parameters
    ----------
    model_file
        File written by ``Booster.save_model``.
    nthread
        Threads to score with; ``None`` leaves XGBoost's setting alone.
    """
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(model_file))
    if nthread is not None:
        booster.set_param({"nthread": int(nthread)})
    return booster


def dense_predict(booster: xgb.Booster, X: np.ndarray) -> np.ndarray:
    """``np.asarray(booster.inplace_predict(X, validate_features=False), np.float64)``
    for a C-contiguous float32 matrix ``X``: the same call into XGBoost's library
    (``XGBoosterPredictFromDense``, the arguments ``inplace_predict`` builds for these
    defaults, made once), without its Python set-up per call: about 100 us of a worker
    batch of one (a 66-feature row, 300 trees: 164 us -> 66 us in the library).

    A booster's first call takes both ways and compares the results (values and shape,
    bit for bit); the direct call serves that booster only if they are identical, and
    any XGBoost without the entry points used here takes ``inplace_predict`` always.
    """
    direct = _direct_api()
    if direct is None or X.dtype != np.float32 or not X.flags.c_contiguous or X.ndim != 2:
        return np.asarray(booster.inplace_predict(X, validate_features=False), dtype=np.float64)
    state = _CHECKED.get(booster)
    if state is False:
        return np.asarray(booster.inplace_predict(X, validate_features=False), dtype=np.float64)
    try:
        got = direct(booster, X)
    except Exception:  # an XGBoost whose library call differs: its own path from now on
        _CHECKED[booster] = False
        return np.asarray(booster.inplace_predict(X, validate_features=False), dtype=np.float64)
    if state is None:
        want = np.asarray(booster.inplace_predict(X, validate_features=False), dtype=np.float64)
        same = got.shape == want.shape and got.tobytes() == want.tobytes()
        _CHECKED[booster] = same
        if not same:
            return want
    return got


#: Boosters whose direct call was compared with ``inplace_predict``: True if identical.
_CHECKED: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


@functools.cache
def _direct_api() -> Callable[[Any, np.ndarray], np.ndarray] | None:
    """The direct dense prediction call, or None if this XGBoost lacks what it uses."""
    try:
        import xgboost.core as core
        from xgboost._data_utils import array_interface
    except ImportError:
        return None
    lib = getattr(core, "_LIB", None)
    check = getattr(core, "_check_call", None)
    ulong = getattr(core, "c_bst_ulong", None)
    make_args = getattr(core, "make_jcargs", None)
    if lib is None or check is None or ulong is None or make_args is None:
        return None
    if not hasattr(lib, "XGBoosterPredictFromDense"):
        return None
    # what inplace_predict passes for predict_type="value", iteration_range=(0, 0),
    # missing=NaN, strict_shape=False, no base margin
    args = make_args(
        type=0,
        training=False,
        iteration_begin=0,
        iteration_end=0,
        missing=np.nan,
        strict_shape=False,
        cache_id=0,
    )
    predict = lib.XGBoosterPredictFromDense

    def call(booster: Any, X: np.ndarray) -> np.ndarray:
        preds = ctypes.POINTER(ctypes.c_float)()
        shape = ctypes.POINTER(ulong)()
        dims = ulong()
        check(
            predict(
                booster.handle,
                array_interface(X),
                args,
                ctypes.c_void_p(),
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(preds),
            )
        )
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        size = int(np.prod(out_shape, dtype=np.int64))
        if size == 0:
            return np.zeros(out_shape, dtype=np.float64)
        # copied at once: the library reuses its buffer on the booster's next call
        return np.ctypeslib.as_array(preds, shape=(size,)).astype(np.float64).reshape(out_shape)

    return call
