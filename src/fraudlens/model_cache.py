"""A process-wide cache of loaded detectors that follows the registry.

Detectors (with their ONNX Runtime sessions or boosters) are loaded once, on first use,
and kept. At most once per ``check_seconds`` per model, the cache re-reads the registry's
``defaults.json`` and ``<name>/ACTIVE`` markers; when they point to another model or
version, the next request loads it. So activating a new version takes effect without a
restart. This module has no web dependency: workers and the event processor use it too.

A version that exists but cannot be loaded raises
:class:`~fraudlens.errors.UnavailableError` (see :meth:`Registry.load
<fraudlens.registry.Registry.load>`); the failure is remembered for ``check_seconds``, so
a broken model is not re-read from disk on every request.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fraudlens.errors import ModelNotFoundError, UnavailableError
from fraudlens.registry import Registry

if TYPE_CHECKING:
    from fraudlens._detector import Detector

__all__ = ["CARD_CLASSIFIERS", "ModelCache", "serving_threads", "version_of"]

#: Supervised card models, most preferred first, when the domain default is not one.
CARD_CLASSIFIERS = ("cards-xgboost", "cards-logistic")


def version_of(detector: Detector) -> str:
    """``name:version`` of a detector loaded from a registry (its name if unknown)."""
    from fraudlens.scoring import model_id

    return model_id(detector)


def serving_threads(det: Detector) -> None:
    """One scoring thread per call.

    The service and the queue worker score a few rows per call; concurrency comes from
    concurrent requests and processes. XGBoost's default (all cores) makes a one-row
    prediction wait for a thread team: about 10x slower on a busy 2-core machine.
    """
    booster = getattr(det, "booster_", None)
    if booster is not None and hasattr(booster, "set_param"):
        booster.set_param({"nthread": 1})


@dataclass
class _Resolved:
    name: str
    version: str
    checked_at: float


class ModelCache:
    """Loaded detectors by name, refreshed from the registry.

    Parameters
    ----------
    models_dir
        Registry folder.
    check_seconds
        How often, at most, a key is resolved again against the registry markers.
    on_load
        Called as ``on_load(name, old_version, new_version)`` after a (re)load.
    prepare
        Called with each freshly loaded detector before it is used (e.g. to set threads).
    """

    def __init__(
        self,
        models_dir: str | os.PathLike[str],
        *,
        check_seconds: float = 1.0,
        on_load: Callable[[str, str | None, str], None] | None = None,
        prepare: Callable[[Detector], None] | None = None,
    ) -> None:
        self.registry = Registry(models_dir)
        self.check_seconds = check_seconds
        self.on_load = on_load
        self.prepare = prepare
        self._lock = threading.RLock()
        self._resolved: dict[str, _Resolved] = {}
        self._models: dict[str, tuple[str, Detector]] = {}
        # name -> (version, reason, when): versions that failed to load, not retried
        # before check_seconds have passed.
        self._failed: dict[str, tuple[str, str, float]] = {}

    @property
    def root(self) -> Path:
        """The registry folder."""
        return self.registry.root

    def _resolve(self, key: str) -> str:
        if key == "cards-classifier":
            return self._classifier_name()
        return self.registry.resolve(key)

    def _classifier_name(self) -> str:
        # Training the anomaly model makes it the "cards" default; the classifier endpoints
        # still want a supervised model.
        default = self.registry.defaults().get("cards")
        if default in CARD_CLASSIFIERS:
            return default
        names = set(self.registry.names())
        for name in CARD_CLASSIFIERS:
            if name in names:
                return name
        raise ModelNotFoundError(
            f"no supervised card model in registry {self.root}; "
            f"train one with `fraudlens cards train --data FILE -m {self.root}`"
        )

    def get(self, key: str) -> Detector:
        """The detector for a model name, a domain (``cards``, ``market``), a short name
        (``xgboost``, ``anomaly``, ``cnn``) or ``cards-classifier``.

        Raises
        ------
        ModelNotFoundError
            No such model in the registry.
        UnavailableError
            The active version cannot be loaded (corrupt, or it breaks the registry's
            rules); the reason is in the message.
        """
        now = time.monotonic()
        with self._lock:
            res = self._resolved.get(key)
            if res is None or now - res.checked_at >= self.check_seconds:
                name = self._resolve(key)
                res = _Resolved(name, self.registry.active_version(name), now)
                self._resolved[key] = res
            held = self._models.get(res.name)
            if held is not None and held[0] == res.version:
                return held[1]
            failed = self._failed.get(res.name)
            if (
                failed is not None
                and failed[0] == res.version
                and now - failed[2] < self.check_seconds
            ):
                raise UnavailableError(failed[1], what="model")
            try:
                detector = self.registry.load(res.name, res.version)
            except UnavailableError as exc:
                self._failed[res.name] = (res.version, str(exc), now)
                raise
            self._failed.pop(res.name, None)
            if self.prepare is not None:
                self.prepare(detector)
            self._models[res.name] = (res.version, detector)
            if self.on_load is not None:
                self.on_load(res.name, held[0] if held else None, res.version)
            return detector

    def peek(self, key: str) -> Detector | None:
        """The detector for ``key`` if it is loaded and was resolved within
        ``check_seconds``; None when :meth:`get` would have to touch the disk."""
        res = self._resolved.get(key)
        if res is None or time.monotonic() - res.checked_at >= self.check_seconds:
            return None
        held = self._models.get(res.name)
        return held[1] if held is not None and held[0] == res.version else None

    def find(self, key: str) -> Detector | None:
        """Like :meth:`get`, but None when the registry has no such model."""
        try:
            return self.get(key)
        except ModelNotFoundError:
            return None

    def names(self) -> list[str]:
        """Model names stored in the registry."""
        return self.registry.names()

    def loaded(self) -> dict[str, str]:
        """Loaded model name -> version."""
        with self._lock:
            return {name: version for name, (version, _) in sorted(self._models.items())}
