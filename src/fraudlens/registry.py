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

Nothing a user names escapes the registry folder: model names and versions must match
strict patterns (:data:`NAME_PATTERN`, :data:`VERSION_PATTERN`) wherever they come from
(arguments, ``ACTIVE`` markers, ``defaults.json``), version folders must be real folders
inside their model's folder, and the files a ``metadata.json`` names are plain file names
inside the version folder. A stored version that breaks these rules, or that its
detector cannot load (a truncated ONNX file, say), raises
:class:`~fraudlens.errors.UnavailableError` from :meth:`Registry.load` with the reason, so
the service answers 503 and a worker pauses instead of failing message after message.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import math
import os
import platform
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudlens._echo import cut
from fraudlens._io import atomic_write, fsync_dir, fsync_files, new_folder_mode, resolve
from fraudlens._time import utcnow
from fraudlens.errors import DataError, FraudlensError, ModelNotFoundError, UnavailableError

if TYPE_CHECKING:
    from fraudlens._detector import Detector

__all__ = [
    "DETECTORS",
    "FILE_PATTERN",
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "ModelVersion",
    "Registry",
    "check_file_name",
    "check_name",
    "check_version",
    "data_hash",
    "library_versions",
]

#: Model names: lower-case letters, digits and dashes (``market-features``).
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$"
#: Versions: ``v`` and at least four digits (``v0001``).
VERSION_PATTERN = r"^v[0-9]{4,9}$"
#: Model files named in metadata: a plain file name, no folder part.
FILE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)
_FILE = re.compile(FILE_PATTERN)
# Metadata keys that name a file of the version folder.
_FILE_KEYS = ("model_file", "weights_file", "onnx_file")

#: Largest ``metadata.json`` or ``defaults.json`` read (a version's metadata, training
#: profile included, is a few hundred kilobytes).
MAX_JSON_BYTES = 32 << 20


def _read_json(path: Path, what: str) -> Any:
    """The JSON value of a registry file, or UnavailableError naming ``what`` and the file
    when it is larger than :data:`MAX_JSON_BYTES`, not UTF-8, not JSON, or nested too
    deeply for the parser."""
    with open(path, "rb") as f:
        data = f.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise UnavailableError(
            f"{what}: {path} is larger than {MAX_JSON_BYTES:,} bytes", what="model"
        )
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise UnavailableError(
            f"{what}: {path} is not valid JSON ({reason})", what="model"
        ) from None


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


def _quoted(value: object) -> str:
    """A name or version as an error quotes it: its repr, cut to 60 characters (a name
    given on the command line can be any length)."""
    return cut(repr(value), 60)


def check_name(name: str) -> str:
    """Return ``name`` if it is a well-formed model name, else raise DataError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DataError(
            f"invalid model name {_quoted(name)}: lower-case letters, digits and dashes "
            "(e.g. market-features)",
            column="name",
        )
    return name


def check_version(version: str) -> str:
    """Return ``version`` if it is a well-formed version (``v0001``), else raise DataError."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise DataError(
            f"invalid model version {_quoted(version)}: versions look like v0001", column="version"
        )
    return version


def check_file_name(name: Any) -> str:
    """Return ``name`` if it is a plain file name (no folder part, not hidden), else raise
    DataError."""
    if not isinstance(name, str) or not _FILE.fullmatch(name) or name in (".", ".."):
        raise DataError(
            f"invalid model file name {_quoted(name)}: model files are plain names inside "
            "their version folder",
            column="files",
        )
    return name


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


#: prefix of the temporary folder a version is written into before it is renamed
_INCOMING = ".incoming-"
#: a temporary folder untouched this long is a killed save's leftover (a save writes
#: its files in seconds to minutes; the CNN's ONNX file is the largest)
_STALE_INCOMING_SECONDS = 3600.0


def _remove_stale_incoming(base: Path, *, older_than: float = _STALE_INCOMING_SECONDS) -> None:
    """Remove the temporary folders of saves killed before they finished (SIGKILL, power
    loss) from the model folder ``base``: those last modified over ``older_than`` seconds
    ago. A link is never followed nor removed (it is not a folder this code made), and a
    folder that cannot be removed is left for the next save."""
    now = time.time()
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_INCOMING):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime <= older_than:
                continue  # perhaps another process's save in progress
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)


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
            raise ModelNotFoundError(
                f"unknown detector name {_quoted(name)}; known: {sorted(DETECTORS)}"
            )
        base = self.root / name
        # Never write a version through a model folder that links out of the registry.
        self._check_inside(base, name, "new version")
        base.mkdir(parents=True, exist_ok=True)
        _remove_stale_incoming(base)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=_INCOMING))
        try:
            # readable as a folder made by mkdir is (mkdtemp's is 0700): a service running
            # as another user than the training job reads the registry too
            os.chmod(tmp, new_folder_mode())
            file_meta = detector.save_files(tmp) or {}
            files = sorted(p.name for p in tmp.iterdir())
            version = self._next_version(name)
            meta: dict[str, Any] = {
                "name": name,
                "domain": detector.domain,
                "version": version,
                "detector": DETECTORS[name],
                "created_at": utcnow().isoformat(timespec="seconds"),
                "threshold": float(detector.threshold_),
                "params": _jsonable(detector.get_params()),
                "data_hash": data_digest,
                "metrics": _jsonable(metrics or {}),
                "libraries": library_versions(),
                "files": files,
                **_jsonable(file_meta),
                **_jsonable(extra or {}),
            }
            while True:
                (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
                fsync_files(tmp)  # the files are on disk before the name is
                try:
                    os.replace(tmp, base / version)
                    fsync_dir(base)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                # Another process saved this version first (both read the same newest
                # version), or a folder without metadata holds the name: take a later one.
                version = meta["version"] = self._next_version(name, after=version)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            # (a full disk's error names no file; the temporary folder's name is gone)
            raise OSError(exc.errno, exc.strerror or str(exc), str(base)) from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if activate:
            self.activate(name, version)
        return self.get(name, version)

    def _next_version(self, name: str, after: str = "v0000") -> str:
        """The version after the newest stored one of ``name`` (and after ``after``)."""
        number = 1 + max(int(v[1:]) for v in [after, *self.versions(name)])
        return f"v{number:04d}"

    def activate(self, name: str, version: str) -> None:
        """Make ``version`` the active version of ``name`` and ``name`` its domain's default.

        Raises
        ------
        DataError
            If ``name`` or ``version`` is not well formed (``../x`` is refused).
        ModelNotFoundError
            If there is no such model or version.
        """
        path = self._version_path(name, version)
        if name not in DETECTORS:
            raise ModelNotFoundError(
                f"unknown model name {_quoted(name)}; known: {sorted(DETECTORS)}"
            )
        if not (path / "metadata.json").is_file():
            raise ModelNotFoundError(
                f"no version {_quoted(version)} of model {_quoted(name)} in {self.root}"
            )
        # A version folder that leads out of the registry, or metadata that is not a JSON
        # object, may not become the active version (the current ACTIVE marker is not
        # read: activating a version is how a broken one is repaired).
        self._check_inside(path, name, version)
        domain = self._metadata(path / "metadata.json", name, version).get("domain")
        if domain not in ("market", "cards"):
            raise DataError(f"metadata of {name} {version} names an unknown domain {domain!r}")
        atomic_write(self.root / name / "ACTIVE", version + "\n")
        defaults = self.defaults()
        defaults[domain] = name
        atomic_write(self.root / "defaults.json", json.dumps(defaults, indent=2, sort_keys=True))

    def update_metadata(self, name: str, version: str, **fields: Any) -> None:
        """Merge ``fields`` into a stored version's metadata (e.g. evaluation metrics)."""
        folder = self._version_path(name, version)
        # Never write through a link to a folder outside the registry.
        self._check_inside(folder, name, version)
        path = folder / "metadata.json"
        meta = _read_json(path, f"model {name}:{version}")
        if not isinstance(meta, dict):
            raise UnavailableError(
                f"model {name}:{version}: {path} does not hold a JSON object", what="model"
            )
        meta.update(_jsonable(fields))
        atomic_write(path, json.dumps(meta, indent=2, sort_keys=True))

    # -- paths -------------------------------------------------------------------------
    def _version_path(self, name: str, version: str) -> Path:
        """The folder of one version, after checking both names (raises DataError)."""
        return self.root / check_name(name) / check_version(version)

    def _check_inside(self, path: Path, name: str, version: str) -> None:
        # A version folder that is a link to somewhere else would load a model from
        # outside the registry, and so would a model's folder that is one (the version
        # folders inside it are then real folders, outside): the path must lead into the
        # registry's own folder of the model. (A link that loops leads nowhere.)
        try:
            inside = resolve(path).is_relative_to(resolve(self.root) / name)
        except OSError:
            inside = False
        if path.is_symlink() or not inside:
            raise UnavailableError(
                f"model {name}:{version} is not a folder inside the registry ({path})",
                what="model",
            )

    # -- reading -----------------------------------------------------------------------
    def defaults(self) -> dict[str, str]:
        """Domain -> default model name (entries that are not model names, or that name a
        model of another domain, are left out)."""
        p = self.root / "defaults.json"
        if not p.is_file():
            return {}
        raw = _read_json(p, "the registry's defaults")
        if not isinstance(raw, dict):
            raise UnavailableError(f"{p} does not hold a JSON object", what="model")
        # (a card model as the market default had been handed market data: a TypeError, a
        # 500 from the service and a traceback from `market score`)
        return {
            str(k): v
            for k, v in raw.items()
            if isinstance(v, str) and _NAME.fullmatch(v) and v.startswith(f"{k}-")
        }

    def names(self) -> list[str]:
        """Model names that have at least one version. Only the detectors' names
        (:data:`DETECTORS`) are models: a folder with another name (a copy, a link a
        user put there) is none of the registry's, and is not listed."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.name in DETECTORS and p.is_dir() and self.versions(p.name)
        )

    def versions(self, name: str) -> list[str]:
        """Stored versions of ``name``, oldest first (folders with other names are not
        versions: temporary folders of a save in progress, say)."""
        base = self.root / check_name(name)
        if not base.is_dir():
            return []
        return sorted(
            p.name
            for p in base.iterdir()
            if _VERSION.fullmatch(p.name) and p.is_dir() and (p / "metadata.json").is_file()
        )

    def active_version(self, name: str) -> str:
        """The active version of ``name`` (the newest if none was marked).

        Raises
        ------
        UnavailableError
            If the ``ACTIVE`` marker names something that is not a version.
        """
        marker = self.root / check_name(name) / "ACTIVE"
        if marker.is_file():
            with open(marker, "rb") as f:
                # A marker holds one version name; more (or bytes that are not UTF-8)
                # is named in the error below, cut short.
                v = f.read(256).decode("utf-8", "replace").strip()
            if not _VERSION.fullmatch(v):
                raise UnavailableError(
                    f"{marker} names {v[:80]!r}, which is not a version (v0001, ...)",
                    what="model",
                )
            if (self.root / name / v / "metadata.json").is_file():
                return v
        versions = self.versions(name)
        if not versions:
            raise ModelNotFoundError(
                self.root_problem() or f"no model named {_quoted(name)} in registry {self.root}"
            )
        return versions[-1]

    def root_problem(self) -> str | None:
        """Why :attr:`root` is not a registry folder, or ``None`` when it can be one.

        Names the usual slips: a folder that does not exist, a file, a model's folder
        (``models/market-features``) or a version folder (``models/market-features/v0001``)
        given where the registry folder (``models``) was meant.
        """
        root = self.root
        if not root.exists():
            return f"no model registry at {root}: the folder does not exist"
        if not root.is_dir():
            return f"{root} is a file, not a model registry folder"
        if _VERSION.fullmatch(root.name) and (root / "metadata.json").is_file():
            return (
                f"{root} is version {root.name} of model {root.parent.name}, not a registry: "
                f"the registry folder is {root.parent.parent}"
            )
        if (root / "ACTIVE").is_file() or any(
            _VERSION.fullmatch(p.name) and (p / "metadata.json").is_file() for p in root.iterdir()
        ):
            return (
                f"{root} is the folder of model {root.name}, not a registry: "
                f"the registry folder is {root.parent}"
            )
        return None

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
            self.root_problem()
            or f"no model for {_quoted(name_or_domain)} in registry {self.root}; train one first"
        )

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """Describe one version (the active one by default)."""
        name = self.resolve(name)
        version = version or self.active_version(name)
        path = self._version_path(name, version)
        meta_path = path / "metadata.json"
        if not meta_path.is_file():
            raise ModelNotFoundError(
                f"no version {_quoted(version)} of model {_quoted(name)} in {self.root}"
            )
        self._check_inside(path, name, version)
        meta = self._metadata(meta_path, name, version)
        active = version == self.active_version(name)
        return ModelVersion(name, version, path, meta, active)

    @staticmethod
    def _metadata(meta_path: Path, name: str, version: str) -> dict[str, Any]:
        """A version's metadata (UnavailableError when it is not a JSON object)."""
        meta = _read_json(meta_path, f"model {name}:{version}")
        if not isinstance(meta, dict):
            raise UnavailableError(
                f"model {name}:{version}: {meta_path} does not hold a JSON object", what="model"
            )
        return meta

    def list(self) -> list[ModelVersion]:
        """Every stored version of every model."""
        return [self.get(n, v) for n in self.names() for v in self.versions(n)]

    def load(self, name: str, version: str | None = None) -> Detector:
        """Load a fitted detector (the active version of ``name`` by default).

        Raises
        ------
        ModelNotFoundError
            No such model or version.
        DataError
            ``name`` or ``version`` is not well formed.
        UnavailableError
            The version exists but cannot be loaded: its metadata names a file outside
            its folder, a file is missing or corrupt, the threshold is not a number.
        """
        mv = self.get(name, version)
        if mv.name not in DETECTORS:
            raise ModelNotFoundError(
                f"unknown model name {_quoted(mv.name)}; known: {sorted(DETECTORS)}"
            )
        where = f"model {mv.name}:{mv.version}"
        try:
            _check_files(mv)
            module_name, cls_name = DETECTORS[mv.name].split(":")
            cls = getattr(importlib.import_module(module_name), cls_name)
            det: Detector = cls.load_files(mv.path, mv.metadata)
            det.threshold_ = float(mv.metadata.get("threshold", det.threshold_))
            if not math.isfinite(det.threshold_):
                raise ValueError(f"threshold {det.threshold_} is not a finite number")
        except ImportError:
            raise  # a missing optional dependency says so itself
        except UnavailableError:
            raise
        except Exception as exc:
            text = str(exc).strip().splitlines()
            reason = (text[0] if text else type(exc).__name__)[:300]
            raise UnavailableError(f"{where} cannot be loaded: {reason}", what="model") from exc
        det.model_version_ = f"{mv.name}:{mv.version}"  # type: ignore[attr-defined]
        return det


def _check_files(mv: ModelVersion) -> None:
    """Every file the metadata names is a plain name of a regular file in the version
    folder (raises UnavailableError otherwise)."""
    names: list[Any] = [mv.metadata.get(k) for k in _FILE_KEYS if k in mv.metadata]
    listed = mv.metadata.get("files", [])
    names += listed if isinstance(listed, list) else [listed]
    for raw in names:
        try:
            fname = check_file_name(raw)
        except FraudlensError as exc:
            raise UnavailableError(f"model {mv.name}:{mv.version}: {exc}", what="model") from None
        f = mv.path / fname
        if f.is_symlink() or (f.exists() and not f.is_file()):
            raise UnavailableError(
                f"model {mv.name}:{mv.version}: {fname} is not a regular file in {mv.path}",
                what="model",
            )


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
