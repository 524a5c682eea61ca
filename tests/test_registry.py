"""The model registry: versions, activation, metadata, no half-written versions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudlens.errors import DataError, ModelNotFoundError, UnavailableError
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.simulate import simulate
from fraudlens.registry import Registry


@pytest.fixture(scope="module")
def small_market():
    return simulate(200, seed=5)


def test_versions_activate_and_load(tmp_path: Path, small_market) -> None:
    reg = Registry(tmp_path)
    det = FeatureDetector(n_estimators=20).fit(small_market)
    v1 = reg.save(det, metrics={"auc": 0.9}, data_digest="abc")
    v2 = reg.save(det, metrics={"auc": 0.95})
    assert (v1.version, v2.version) == ("v0001", "v0002")
    assert reg.active_version("market-features") == "v0002"
    assert reg.defaults() == {"market": "market-features"}
    meta = json.loads((v1.path / "metadata.json").read_text())
    for key in ("version", "created_at", "data_hash", "metrics", "threshold", "libraries"):
        assert key in meta
    assert meta["libraries"]["xgboost"]
    reg.activate("market-features", "v0001")
    loaded = reg.load("market")
    assert loaded.model_version_ == "market-features:v0001"  # type: ignore[attr-defined]
    np.testing.assert_allclose(
        loaded.decision_function(small_market), det.decision_function(small_market), rtol=1e-6
    )
    assert [mv.version for mv in reg.list()] == ["v0001", "v0002"]


def test_missing_models_raise(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    with pytest.raises(ModelNotFoundError):
        reg.load("market")
    with pytest.raises(ModelNotFoundError):
        reg.get("market-features", "v0009")


def test_two_saves_at_once_get_two_versions(
    tmp_path: Path, small_market, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trainings that finish together both read v0001 as the newest version: the
    second rename met the first's v0002 folder (ENOTEMPTY), and its model was lost with
    an OSError. A folder without metadata (not a version) cannot hold the name either."""
    reg = Registry(tmp_path)
    det = FeatureDetector(n_estimators=5).fit(small_market)
    reg.save(det)
    (tmp_path / "market-features" / "v0003").mkdir()
    (tmp_path / "market-features" / "v0003" / "leftover").write_text("x")
    real_replace = os.replace
    raced = []

    def racing_replace(src: Any, dst: Any) -> None:
        if not raced and Path(src).name.startswith(".incoming"):
            raced.append(dst)
            reg.save(det)  # another process saves the same version meanwhile
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", racing_replace)
    mv = reg.save(det)
    monkeypatch.undo()
    assert raced == [tmp_path / "market-features" / "v0002"]
    assert mv.version == "v0004"
    assert reg.versions("market-features") == ["v0001", "v0002", "v0004"]
    assert reg.get("market-features", "v0004").metadata["version"] == "v0004"
    assert reg.active_version("market-features") == "v0004"
    assert not any(p.name.startswith(".incoming") for p in (tmp_path / "market-features").iterdir())


def test_failed_save_leaves_no_version(tmp_path: Path, small_market) -> None:
    class Exploding(FeatureDetector):
        def save_files(self, path: Path) -> dict[str, Any]:
            (path / "partial.bin").write_bytes(b"x")
            raise OSError("disk full")

    det = Exploding(n_estimators=5).fit(small_market)
    reg = Registry(tmp_path)
    with pytest.raises(OSError):
        reg.save(det)
    assert reg.versions("market-features") == []
    assert not any(p.name.startswith(".incoming") for p in (tmp_path / "market-features").iterdir())


def test_a_killed_saves_leftover_is_removed_by_the_next_save(tmp_path: Path, small_market) -> None:
    """A save killed before its rename (SIGKILL, power loss) left its ``.incoming-*``
    folder in the model's folder for ever, each the size of a model. The next save removes
    those untouched for over an hour; a recent one (perhaps another process's save in
    progress) stays, and a link named like one is neither followed nor removed."""
    reg = Registry(tmp_path)
    det = FeatureDetector(n_estimators=5).fit(small_market)
    reg.save(det)
    base = tmp_path / "market-features"
    old = base / ".incoming-killed"
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "model.json").write_text("x" * 1000)
    stale = os.path.getmtime(old) - 2 * 3600
    os.utime(old, (stale, stale))
    recent = base / ".incoming-busy"
    recent.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    link = base / ".incoming-link"
    link.symlink_to(outside, target_is_directory=True)
    os.utime(link, (0, 0), follow_symlinks=False)
    reg.save(det)
    assert not old.exists()
    assert recent.is_dir()
    assert link.is_symlink() and (outside / "keep.txt").read_text() == "keep"
    assert reg.versions("market-features") == ["v0001", "v0002"]


def test_a_full_disk_names_the_model_folder_and_keeps_the_active_version(
    full_disk_folder: Path, small_market
) -> None:
    """On a full disk ``fraudlens market train`` / ``cards train`` said only "error:
    cannot write: No space left on device": the write's error names no file. The save's
    error now names the model's folder (the ACTIVE marker's, when that is what could not
    be written); no version becomes visible and the active one stays."""
    from _disk import fill  # type: ignore[import-not-found]

    reg = Registry(full_disk_folder / "models")
    det = FeatureDetector(n_estimators=5).fit(small_market)
    reg.save(det)
    filler = fill(full_disk_folder)
    with pytest.raises(OSError) as info:
        reg.save(det)
    assert info.value.errno == 28
    assert info.value.filename == str(full_disk_folder / "models" / "market-features")
    assert reg.versions("market-features") == ["v0001"]
    assert reg.active_version("market-features") == "v0001"
    assert not list((full_disk_folder / "models" / "market-features").glob(".*"))
    # an ACTIVE marker that does not fit names itself
    filler.unlink()
    reg.save(det, activate=False)
    filler = fill(full_disk_folder)
    with pytest.raises(OSError) as info:
        reg.activate("market-features", "v0002")
    assert info.value.filename == str(full_disk_folder / "models" / "market-features" / "ACTIVE")
    assert reg.active_version("market-features") == "v0001"
    filler.unlink()
    reg.activate("market-features", "v0002")
    assert reg.load("market").model_version_ == "market-features:v0002"  # type: ignore[attr-defined]


def test_a_version_is_on_disk_before_its_name(
    tmp_path: Path, small_market, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version folder was renamed into place with its files never fsynced: after a
    crash of the machine the version could be visible (and active) with empty model
    files. Every file and the folder are now fsynced before the rename, the registry
    folder after it."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to name the fsynced files")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    mv = Registry(tmp_path).save(FeatureDetector(n_estimators=5).fit(small_market))
    monkeypatch.undo()
    base = tmp_path / "market-features"
    at = events.index(("replace", str(mv.path)))
    synced = {Path(p).name for kind, p in events[:at] if kind == "fsync"}
    assert {p.name for p in mv.path.iterdir()} == {"metadata.json", "model.json"}
    assert {"metadata.json", "model.json"} <= synced
    assert any(p.startswith(str(base / ".incoming-")) for k, p in events[:at] if k == "fsync")
    assert ("fsync", str(base)) in events[at:]


def test_a_registry_is_readable_as_the_umask_allows(tmp_path: Path, small_market) -> None:
    """A version's folder came from mkdtemp (0700) and ACTIVE, defaults.json and
    metadata.json from mkstemp (0600): a service running as another user than the
    training job could not read the registry. They get the modes mkdir and open give
    (here umask 027), and a rewritten file keeps the mode it had."""
    old = os.umask(0o027)
    try:
        reg = Registry(tmp_path)
        mv = reg.save(FeatureDetector(n_estimators=5).fit(small_market))
        reg.activate(mv.name, mv.version)
    finally:
        os.umask(old)

    def mode(p: Path) -> int:
        return p.stat().st_mode & 0o777

    base = tmp_path / "market-features"
    assert mode(mv.path) == 0o750
    assert mode(mv.path / "metadata.json") == 0o640
    assert mode(base / "ACTIVE") == 0o640
    assert mode(tmp_path / "defaults.json") == 0o640
    (base / "ACTIVE").chmod(0o644)
    reg.activate(mv.name, mv.version)
    assert mode(base / "ACTIVE") == 0o644


# ----------------------------------------------------------------- hostile registries


@pytest.fixture
def saved(tmp_path: Path, small_market) -> Registry:
    reg = Registry(tmp_path / "models")
    reg.save(FeatureDetector(n_estimators=5).fit(small_market))
    return reg


@pytest.mark.parametrize(
    "version", ["../../outside/x", "v0001/../../x", "/etc", "v1", "V0001", "v0001\x00", ""]
)
def test_activate_refuses_bad_versions(saved: Registry, tmp_path: Path, version: str) -> None:
    # A folder an attacker prepared outside the registry, with a plausible metadata.json.
    outside = tmp_path / "outside" / "x"
    outside.mkdir(parents=True)
    (outside / "metadata.json").write_text('{"domain": "market"}')
    with pytest.raises(DataError, match="invalid model version"):
        saved.activate("market-features", version)
    assert saved.active_version("market-features") == "v0001"
    assert (saved.root / "market-features" / "ACTIVE").read_text().strip() == "v0001"


@pytest.mark.parametrize("name", ["../outside", "Market", "market-features/..", "a b", "-x"])
def test_bad_names_refused(saved: Registry, name: str) -> None:
    for call in (
        lambda: saved.activate(name, "v0001"),
        lambda: saved.versions(name),
        lambda: saved.load(name, "v0001"),
    ):
        with pytest.raises((DataError, ModelNotFoundError)):
            call()


def test_cli_activate_refuses_escape(saved: Registry) -> None:
    from typer.testing import CliRunner

    from fraudlens.cli import app

    res = CliRunner().invoke(
        app, ["models", "activate", "market-features", "../../outside/x", "-m", str(saved.root)]
    )
    assert res.exit_code != 0
    assert "invalid model version" in res.output
    assert saved.active_version("market-features") == "v0001"


def test_active_marker_outside_is_unavailable(saved: Registry) -> None:
    (saved.root / "market-features" / "ACTIVE").write_text("../../outside/x\n")
    with pytest.raises(UnavailableError, match="not a version"):
        saved.load("market")


@pytest.mark.parametrize("model_file", ["/etc/passwd", "../v0002/model.json", "sub/model.json"])
def test_metadata_may_not_name_outside_files(saved: Registry, model_file: str) -> None:
    meta_path = saved.root / "market-features" / "v0001" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["model_file"] = model_file
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UnavailableError, match="plain names inside their version folder"):
        saved.load("market-features")


def test_linked_version_folder_is_refused(saved: Registry, tmp_path: Path) -> None:
    import shutil

    real = saved.root / "market-features" / "v0001"
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(real, elsewhere)
    (saved.root / "market-features" / "v0002").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnavailableError, match="not a folder inside the registry"):
        saved.load("market-features", "v0002")


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda p: (p / "model.json").write_text('{"learner": trunc'), "cannot be loaded"),
        (lambda p: (p / "model.json").unlink(), "cannot be loaded"),
        (lambda p: (p / "metadata.json").write_text("{not json"), "not valid JSON"),
    ],
)
def test_corrupt_version_is_unavailable(saved: Registry, damage: Any, words: str) -> None:
    damage(saved.root / "market-features" / "v0001")
    with pytest.raises(UnavailableError, match=words) as info:
        saved.load("market")
    assert info.value.what == "model"


def test_model_cache_remembers_a_failure(saved: Registry) -> None:
    from fraudlens.model_cache import ModelCache

    cache = ModelCache(saved.root, check_seconds=60)
    (saved.root / "market-features" / "v0001" / "model.json").write_text("garbage")
    with pytest.raises(UnavailableError):
        cache.get("market")
    calls = []
    original = saved.load
    cache.registry.load = lambda *a, **k: calls.append(a) or original(*a, **k)  # type: ignore[method-assign]
    with pytest.raises(UnavailableError, match="cannot be loaded"):
        cache.get("market")
    assert calls == []  # not re-read from disk within check_seconds
