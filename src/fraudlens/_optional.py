"""Optional dependencies: import them by name, or say which extra installs them.

fraudlens keeps its core install small; training the CNN, the SQL store, the service,
Redis and SQS queues, S3 sinks and Ray batch scoring each need an extra
(``pip install 'fraudlens[ray]'``). :func:`require` imports a module of one of those
extras and, when it is missing, raises :class:`~fraudlens.errors.MissingDependencyError`
with one line that names the extra and the install command to run, instead of a
traceback. :func:`missing_dependency` turns a ``ModuleNotFoundError`` raised deeper
down (for example by SQLAlchemy loading a database driver) into the same error.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from fraudlens.errors import MissingDependencyError

__all__ = ["EXTRAS", "install_command", "missing_dependency", "require"]

#: Top-level module -> (extra that installs it, what it is, what fraudlens uses it for).
#: The extras are those of pyproject.toml's ``[project.optional-dependencies]``.
EXTRAS: dict[str, tuple[str, str, str]] = {
    "torch": ("train", "PyTorch", "CNN training"),
    "onnx": ("train", "onnx", "CNN export"),
    "onnxscript": ("train", "onnxscript", "CNN export"),
    "fastapi": ("serve", "FastAPI", "the HTTP service"),
    "starlette": ("serve", "Starlette", "the HTTP service"),
    "uvicorn": ("serve", "uvicorn", "the HTTP service"),
    "multipart": ("serve", "python-multipart", "the HTTP service"),
    "python_multipart": ("serve", "python-multipart", "the HTTP service"),
    "prometheus_client": ("serve", "prometheus-client", "metrics"),
    "httpx": ("serve", "httpx", "the HTTP client"),
    "argon2": ("store", "argon2-cffi", "password hashing"),
    "itsdangerous": ("store", "itsdangerous", "signed session cookies"),
    "sqlalchemy": ("store", "SQLAlchemy", "the SQL store"),
    "alembic": ("store", "Alembic", "store migrations"),
    "psycopg": ("store", "psycopg", "PostgreSQL"),
    "psycopg_binary": ("store", "psycopg", "PostgreSQL"),
    "pymysql": ("store", "PyMySQL", "MySQL/MariaDB"),
    "orjson": ("store", "orjson", "risk events' JSON details"),
    "redis": ("queues", "redis-py", "Redis Streams queues"),
    "boto3": ("queues", "boto3", "SQS queues"),
    "botocore": ("queues", "botocore", "SQS queues"),
    "s3fs": ("cloud", "s3fs", "s3:// storage"),
    "fsspec": ("cloud", "fsspec", "remote storage"),
    "imblearn": ("imbalance", "imbalanced-learn", "--oversample"),
    "ray": ("ray", "Ray", "--engine ray"),
    "grpc": ("ray", "grpcio", "Ray Client (ray:// addresses)"),
}


def _rel(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it, else absolute."""
    # abspath, not resolve(): a virtualenv's python is a symlink that must stay as named.
    absolute = Path(os.path.abspath(path))
    try:
        rel = absolute.relative_to(os.getcwd())
    except ValueError:
        return str(absolute)
    return str(rel)


@lru_cache(maxsize=1)
def _source_checkout() -> Path | None:
    """The project folder when fraudlens is an editable install of a source checkout."""
    from importlib import metadata

    try:
        text = metadata.distribution("fraudlens").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return None
    url = str(info.get("url", ""))
    if not info.get("dir_info", {}).get("editable") or not url.startswith("file://"):
        return None
    folder = Path(url[len("file://") :])
    return folder if (folder / "pyproject.toml").is_file() else None


def install_command(extra: str) -> str:
    """The command that adds ``extra`` to this installation of fraudlens.

    For an editable install of a source checkout (what ``scripts/install.sh`` makes) it
    is that checkout's pip install with the project's constraints, run by this
    interpreter; otherwise ``pip install 'fraudlens[extra]'`` for this interpreter.
    """
    python = _rel(Path(sys.executable or "python3"))
    if os.sep not in python:
        python = f".{os.sep}{python}"  # a bare name would be looked up on PATH instead
    checkout = _source_checkout()
    if checkout is None:
        return f"{shlex.quote(python)} -m pip install {shlex.quote(f'fraudlens[{extra}]')}"
    project = _rel(checkout)
    parts = [shlex.quote(python), "-m", "pip", "install"]
    constraints = checkout / "scripts" / "constraints.txt"
    if constraints.is_file():
        parts += ["-c", shlex.quote(_rel(constraints))]
    parts += ["-e", shlex.quote(f"{project}[{extra}]")]
    return " ".join(parts)


def _error(module: str, feature: str | None, extra: str | None = None) -> MissingDependencyError:
    known_extra, package, purpose = EXTRAS.get(module, (extra or module, module, ""))
    extra = extra or known_extra
    need = f"{feature} needs {package}" if feature else f"{purpose or module} needs {package}"
    return MissingDependencyError(
        f"{need}, which is not installed: add the '{extra}' extra with {install_command(extra)}",
        module=module,
        extra=extra,
    )


def require(module: str, *, extra: str | None = None, feature: str | None = None) -> ModuleType:
    """Import ``module``, or raise a one-line error naming the extra that provides it.

    Parameters
    ----------
    module
        Module to import, e.g. ``"ray"`` or ``"botocore.exceptions"``.
    extra
        The fraudlens extra that installs it [default: looked up in :data:`EXTRAS`].
    feature
        What the caller was doing, for the message (e.g. ``"market score --engine ray"``).

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    MissingDependencyError
        When the module (or its top-level package) is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = (exc.name or module).split(".")[0]
        known = EXTRAS.get(top)
        if known is None and top != module.split(".")[0]:
            # A dependency of the module is missing, not the module: report what is.
            raise
        if known is None and extra is None:
            raise
        raise _error(top, feature, extra) from None


def missing_dependency(
    exc: BaseException, feature: str | None = None
) -> MissingDependencyError | None:
    """The :class:`MissingDependencyError` behind ``exc``, or ``None``.

    ``exc`` is the error itself or one that was raised while handling it (a library that
    wraps the import error, say fsspec's "Install s3fs to access S3", or fraudlens's own
    ``ConfigError`` for a database whose driver is missing): the chain of causes is
    searched for a ``ModuleNotFoundError`` of a module an extra provides. A missing module
    no extra provides gives ``None``: that is a bug, to be shown as is.

    Parameters
    ----------
    exc
        The error caught.
    feature
        What the caller was doing, for the message.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MissingDependencyError):
            return current
        if isinstance(current, ModuleNotFoundError):
            top = (current.name or "").split(".")[0]
            if top in EXTRAS:
                return _error(top, feature)
        current = current.__cause__ or current.__context__
    return None
