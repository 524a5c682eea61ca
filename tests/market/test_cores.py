"""The cores training and scoring size their threads to: CPU affinity capped by a cgroup
CPU quota, less what other jobs use."""

from __future__ import annotations

from pathlib import Path

import pytest

import fraudlens._cores as cores


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_along_the_path(tmp_path: Path) -> None:
    root, own = tmp_path / "cg", tmp_path / "self_cgroup"
    _write(own, "0::/system.slice/fraudlens.service\n")
    assert cores._cpu_quota(root, own) is None  # nothing readable
    _write(root / "system.slice" / "fraudlens.service" / "cpu.max", "max 100000\n")
    assert cores._cpu_quota(root, own) is None  # no quota set
    _write(root / "system.slice" / "cpu.max", "250000 100000\n")  # a parent's quota
    assert cores._cpu_quota(root, own) == 2.5
    _write(root / "system.slice" / "fraudlens.service" / "cpu.max", "150000 100000\n")
    assert cores._cpu_quota(root, own) == 1.5  # the least along the path
    # a container's cgroup namespace: its own cgroup at the mount's root
    _write(own, "0::/\n")
    _write(root / "cpu.max", "200000 100000\n")
    assert cores._cpu_quota(root, own) == 2.0


def test_cgroup_v1_quota_and_other_controllers(tmp_path: Path) -> None:
    root, own = tmp_path / "cg", tmp_path / "self_cgroup"
    _write(own, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    base = root / "cpu,cpuacct"
    _write(base / "cpu.cfs_quota_us", "-1\n")
    _write(base / "cpu.cfs_period_us", "100000\n")
    assert cores._cpu_quota(root, own) is None
    # the container sees its own cgroup at the mount (no /docker/abc below it)
    _write(base / "cpu.cfs_quota_us", "300000\n")
    assert cores._cpu_quota(root, own) == 3.0
    _write(root / "memory" / "docker" / "abc" / "cpu.max", "100000 100000\n")  # not cpu
    assert cores._cpu_quota(root, own) == 3.0
    _write(base / "cpu.cfs_period_us", "garbage\n")
    assert cores._cpu_quota(root, own) is None
    assert cores._cpu_quota(root, tmp_path / "no_such_file") is None  # not Linux


def test_threads_never_exceed_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(cores.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(cores, "_runnable_now", lambda: 1)
    monkeypatch.setattr(cores, "_quota_read", (-float("inf"), None))  # read again now
    monkeypatch.setattr(cores, "_cpu_quota", lambda: 2.0)
    assert cores._usable_cores() == 2
    assert cores.free_cores() == 2 and cores.scoring_workers() == 2
    monkeypatch.setattr(cores, "_quota_read", (-float("inf"), None))
    monkeypatch.setattr(cores, "_cpu_quota", lambda: 0.5)  # half a CPU: still one thread
    assert cores.free_cores() == 1 and cores.scoring_workers() == 1
    monkeypatch.setattr(cores, "_quota_read", (-float("inf"), None))
    monkeypatch.setattr(cores, "_cpu_quota", lambda: None)
    assert cores.free_cores() == 64 and cores.scoring_workers() == 64


def test_default_epochs_hold_training_time_past_8000_accounts():
    from fraudlens.market._cnn import CNNDetector, default_epochs

    assert [default_epochs(n) for n in (0, 200, 4000, 8000)] == [40, 40, 40, 40]
    assert default_epochs(10_000) == 32  # 320,000 account images
    assert default_epochs(12_000) == 27
    assert default_epochs(16_000) == 20
    assert default_epochs(100_000) == 20  # never fewer than 20
    assert CNNDetector().epochs_for(10_000) == 32
    assert CNNDetector(epochs=7).epochs_for(10_000) == 7  # an explicit choice is kept


def test_xgboost_training_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(cores, "_quota_read", (float("inf"), None))  # no CPU quota here
    monkeypatch.setattr(cores.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    # a few thousand rows: one thread even on an idle machine
    assert cores.training_threads(8_000) == 1
    assert cores.training_threads(8_000, most=2) == 1
    # a large table: the free cores, at most `most`
    assert cores.training_threads(cores.THREADS_FROM_ROWS) == 2
    assert cores.training_threads(500_000, most=1) == 1
    assert cores.training_threads(500_000, most=0) == 2  # 0: no cap
    # one CPU-bound job beside us: one thread
    monkeypatch.setattr(cores.os, "getloadavg", lambda: (1.2, 1.0, 0.5))
    assert cores.training_threads(500_000) == 1


def test_feature_detector_scores_on_n_jobs_after_training_on_one() -> None:
    import json

    from fraudlens.market.detectors import FeatureDetector
    from fraudlens.market.simulate import simulate

    det = FeatureDetector(n_estimators=5, n_jobs=2).fit(simulate(60, seed=3))
    config = json.loads(det.booster_.save_config())
    assert config["learner"]["generic_param"]["nthread"] == "2"
