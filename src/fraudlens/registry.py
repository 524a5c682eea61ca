"""Model registry: versioned model folders with metadata, on a local path.

Layout::

    <root>/
      defaults.json                 {"market": "market-features", "cards": "cards-xgboost"}
      <name>/
        ACTIVE                      the active version, e.g. "v0003"
        v0001/
          metadata.json             version, created_at, data hash, metrics, threshold, ...
          <model files>             safetensors / ONNX / XGBoost JSON / plain JSON

A version folder is written under a temporary name and renamed into place, so a crash
never leaves a half-written version visible. Detector classes are looked up in a fixed
table (:data:`DETECTORS`), never imported from a name stored on disk.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudlens._io import atomic_write
from fraudlens.errors import ModelNotFoundError

if TYPE_CHECKING:
    from fraudlens._detector import Detector

__all__ = ["DETECTORS", "ModelVersion", "Registry", "data_hash", "library_versions"]

#: Registry name -> "module:Class". Only these classes can be loaded from a registry.
DETECTORS: dict[str, str] = {
    "market-cnn": "fraudlens.market.detectors:CNNDetector",
    "market-features": "fraudlens.market.detectors:FeatureDetector",
    "cards-logistic": "fraudlens.cards.detectors:LogisticDetector",
    "cards-xgboost": "fraudlens.cards.detectors:XGBoostDetector",
    "cards-anomaly": "fraudlens.cards.detectors:AnomalyDetector",
}

#: Library -> distribution names that may provide it (first installed one wins).
_LIBS: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "pandas": ("pandas",),
    "scikit-learn": ("scikit-learn",),
    "xgboost": ("xgboost", "xgboost-cpu"),
    "torch": ("torch",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime",),
    "fraudlens": ("fraudlens",),
}


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model, for its metadata."""
    out = {"python": platform.python_version()}
    for lib, dists in _LIBS.items():
        for dist in dists:
            try:
                out[lib] = importlib_metadata.version(dist)
                break
            except importlib_metadata.PackageNotFoundError:
                continue
    return out


def data_hash(*parts: Any) -> str:
    """A short SHA-256 over files (paths) or pandas/numpy objects, to tie a model to its data."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, str | os.PathLike) and Path(part).is_file():
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        elif hasattr(part, "to_numpy") and hasattr(part, "columns"):
            import pandas as pd

            h.update(",".join(map(str, part.columns)).encode())
            h.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
        elif hasattr(part, "tobytes"):
            h.update(part.tobytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class ModelVersion:
    """One stored model version."""

    name: str
    version: str
    path: Path
    metadata: dict[str, Any]
    active: bool


class Registry:
    """A folder of versioned models.

    Parameters
    ----------
    root
        The registry folder; created on first save.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- writing -----------------------------------------------------------------------
    def save(
        self,
        detector: Detector,
        *,
        metrics: dict[str, Any] | None = None,
        data_digest: str | None = None,
        extra: dict[str, Any] | None = None,
        activate: bool = True,
    ) -> ModelVersion:
        """Store a fitted detector as the next version of ``detector.name``.

        Returns the new :class:`ModelVersion`. With ``activate`` (the default) it becomes
        the active version of its name and the default model of its domain.
        """
        name = detector.name
        if name not in DETECTORS:
            raise ModelNotFoundError(f"unknown detector name {name!r}; known: {sorted(DETECTORS)}")
        base = self.root / name
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=".incoming-"))
        try:
            file_meta = detector.save_files(tmp) or {}
            existing = self.versions(name)
            number = 1 + max((int(v[1:]) for v in existing), default=0)
            version = f"v{number:04d}"
            meta: dict[str, Any] = {
                "name": name,
                "domain": detector.domain,
                "version": version,
                "detector": DETECTORS[name],
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "threshold": float(detector.threshold_),
                "params": _jsonable(detector.get_params()),
                "data_hash": data_digest,
                "metrics": _jsonable(metrics or {}),
                "libraries": library_versions(),
                "files": sorted(p.name for p in tmp.iterdir()),
                **_jsonable(file_meta),
                **_jsonable(extra or {}),
            }
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
            final = base / version
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if activate:
            self.activate(name, version)
        return self.get(name, version)

    def activate(self, name: str, version: str) -> None:
        """Make ``version`` the active version of ``name`` and ``name`` its domain's default."""
        path = self.root / name / version
        if not (path / "metadata.json").is_file():
            raise ModelNotFoundError(f"no version {version!r} of model {name!r} in {self.root}")
        atomic_write(self.root / name / "ACTIVE", version + "\n")
        domain = json.loads((path / "metadata.json").read_text())["domain"]
        defaults = self.defaults()
        defaults[domain] = name
        atomic_write(self.root / "defaults.json", json.dumps(defaults, indent=2, sort_keys=True))

    def update_metadata(self, name: str, version: str, **fields: Any) -> None:
        """Merge ``fields`` into a stored version's metadata (e.g. evaluation metrics)."""
        path = self.root / name / version / "metadata.json"
        meta = json.loads(path.read_text())
        meta.update(_jsonable(fields))
        atomic_write(path, json.dumps(meta, indent=2, sort_keys=True))

    # -- reading -----------------------------------------------------------------------
    def defaults(self) -> dict[str, str]:
        """Domain -> default model name."""
        p = self.root / "defaults.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    def names(self) -> list[str]:
        """Model names that have at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        """Stored versions of ``name``, oldest first."""
        base = self.root / name
        if not base.is_dir():
            return []
        return sorted(
            p.name
            for p in base.iterdir()
            if p.is_dir() and p.name.startswith("v") and (p / "metadata.json").is_file()
        )

    def active_version(self, name: str) -> str:
        """The active version of ``name`` (the newest if none was marked)."""
        marker = self.root / name / "ACTIVE"
        if marker.is_file():
            v = marker.read_text().strip()
            if (self.root / name / v / "metadata.json").is_file():
                return v
        versions = self.versions(name)
        if not versions:
            raise ModelNotFoundError(f"no model named {name!r} in registry {self.root}")
        return versions[-1]

    def resolve(self, name_or_domain: str) -> str:
        """Turn a domain (``market``/``cards``) or a model name into a model name."""
        if name_or_domain in DETECTORS:
            return name_or_domain
        defaults = self.defaults()
        if name_or_domain in defaults:
            return defaults[name_or_domain]
        for domain in ("market", "cards"):
            if f"{domain}-{name_or_domain}" in DETECTORS:
                return f"{domain}-{name_or_domain}"
        raise ModelNotFoundError(
            f"no model for {name_or_domain!r} in registry {self.root}; train one first"
        )

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """Describe one version (the active one by default)."""
        name = self.resolve(name)
        version = version or self.active_version(name)
        path = self.root / name / version
        meta_path = path / "metadata.json"
        if not meta_path.is_file():
            raise ModelNotFoundError(f"no version {version!r} of model {name!r} in {self.root}")
        active = version == self.active_version(name)
        return ModelVersion(name, version, path, json.loads(meta_path.read_text()), active)

    def list(self) -> list[ModelVersion]:
        """Every stored version of every model."""
        return [self.get(n, v) for n in self.names() for v in self.versions(n)]

    def load(self, name: str, version: str | None = None) -> Detector:
        """Load a fitted detector (the active version of ``name`` by default)."""
        mv = self.get(name, version)
        module_name, cls_name = DETECTORS[mv.name].split(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        det: Detector = cls.load_files(mv.path, mv.metadata)
        det.threshold_ = float(mv.metadata.get("threshold", det.threshold_))
        det.model_version_ = f"{mv.name}:{mv.version}"  # type: ignore[attr-defined]
        return det


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars, paths and tuples so ``json.dumps`` accepts them."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except (ValueError, TypeError):
            return str(obj)
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)
