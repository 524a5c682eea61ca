"""Registry entries that lead outside it, or hold no domain, never become active and never
end a CLI command with a traceback; writing metadata never follows a link out."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fraudlens.cli import app
from fraudlens.errors import DataError, UnavailableError
from fraudlens.market.detectors import FeatureDetector
from fraudlens.market.simulate import simulate
from fraudlens.registry import Registry

runner = CliRunner()


@pytest.fixture
def saved(tmp_path: Path) -> Registry:
    data = simulate(40, seed=2, n_symbols=1, days=1)
    reg = Registry(tmp_path / "models")
    reg.save(FeatureDetector(n_estimators=5, n_jobs=1).fit(data))
    return reg


def _linked_version(reg: Registry, tmp_path: Path, version: str) -> Path:
    """A version folder of market-features that is a link to a folder outside the
    registry (its metadata a valid market model's); the outside folder."""
    outside = tmp_path / "outside" / version
    outside.mkdir(parents=True)
    (outside / "metadata.json").write_text('{"domain": "market"}')
    (reg.root / "market-features" / version).symlink_to(outside, target_is_directory=True)
    return outside


def test_linked_version_cannot_be_activated(saved: Registry, tmp_path: Path) -> None:
    _linked_version(saved, tmp_path, "v0009")
    with pytest.raises(UnavailableError, match="not a folder inside the registry"):
        saved.activate("market-features", "v0009")
    assert saved.active_version("market-features") == "v0001"
    res = runner.invoke(
        app, ["models", "activate", "market-features", "v0009", "-m", str(saved.root)]
    )
    assert res.exit_code == 2, res.output
    assert "not a folder inside the registry" in " ".join(res.output.split())


def test_a_linked_model_folder_is_neither_read_nor_written(saved: Registry, tmp_path: Path) -> None:
    """A model's folder that is a link out of the registry (its version folders real
    folders there) passed the check, which resolved the link first: the model was loaded
    from outside, `models activate` wrote its ACTIVE marker there and a save its version."""
    import shutil

    outside = tmp_path / "outside" / "market-features"
    shutil.move(saved.root / "market-features", outside)
    (saved.root / "market-features").symlink_to(outside, target_is_directory=True)
    before = sorted(p.name for p in outside.iterdir())
    with pytest.raises(UnavailableError, match="not a folder inside the registry"):
        saved.load("market")
    with pytest.raises(UnavailableError, match="not a folder inside the registry"):
        saved.activate("market-features", "v0001")
    data = simulate(40, seed=2, n_symbols=1, days=1)
    with pytest.raises(UnavailableError, match="not a folder inside the registry"):
        saved.save(FeatureDetector(n_estimators=5, n_jobs=1).fit(data))
    assert sorted(p.name for p in outside.iterdir()) == before
    res = runner.invoke(app, ["models", "list", "-m", str(saved.root)])
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert "not a folder inside the registry" in " ".join(res.output.split())


def test_a_default_of_another_domain_is_left_out(saved: Registry) -> None:
    """defaults.json naming a market model as the cards default (or a card model as the
    market one) had that model loaded for the other domain's data: a TypeError, a 500
    from the service and a traceback from `cards score` / `market score`."""
    from fraudlens.errors import ModelNotFoundError

    (saved.root / "defaults.json").write_text('{"cards": "market-features", "market": "x-y"}')
    assert saved.defaults() == {}
    with pytest.raises(ModelNotFoundError, match="no model for 'cards'"):
        saved.load("cards")
    saved.activate("market-features", "v0001")  # activating still repairs the file
    assert saved.defaults() == {"market": "market-features"}


@pytest.mark.parametrize("meta", ["{}", "[1]", '{"domain": "x"}'])
def test_metadata_without_a_domain_is_an_error_not_a_crash(saved: Registry, meta: str) -> None:
    folder = saved.root / "market-features" / "v0002"
    folder.mkdir()
    (folder / "metadata.json").write_text(meta)
    with pytest.raises((DataError, UnavailableError)):
        saved.activate("market-features", "v0002")
    res = runner.invoke(
        app, ["models", "activate", "market-features", "v0002", "-m", str(saved.root)]
    )
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert "Traceback" not in res.output
    assert saved.active_version("market-features") == "v0001"


def test_activate_repairs_a_broken_active_marker(saved: Registry) -> None:
    (saved.root / "market-features" / "ACTIVE").write_text("../../etc\n")
    saved.activate("market-features", "v0001")
    assert saved.active_version("market-features") == "v0001"


def test_update_metadata_does_not_write_through_a_link(saved: Registry, tmp_path: Path) -> None:
    outside = _linked_version(saved, tmp_path, "v0003")
    with pytest.raises(UnavailableError, match="not a folder inside the registry"):
        saved.update_metadata("market-features", "v0003", evaluation={"auc": 1.0})
    assert (outside / "metadata.json").read_text() == '{"domain": "market"}'


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("where", "content", "words"),
    [
        ("market-features/v0001/metadata.json", DEEP, "nested too deeply"),
        ("market-features/v0001/metadata.json", "\xff{}", "not valid JSON"),
        ("defaults.json", '{"a":' * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
        ("market-features/ACTIVE", "\xff\xfe", "which is not a version"),
        ("market-features/ACTIVE", "\0" * 100_000, "which is not a version"),
    ],
)
def test_registry_files_nested_too_deeply_or_not_text_are_one_line_errors(
    saved: Registry, where: str, content: str, words: str
) -> None:
    """A metadata.json of 100,000 nested lists ended `models list` with a RecursionError
    traceback, an ACTIVE marker that is not UTF-8 with a UnicodeDecodeError."""
    (saved.root / where).write_bytes(content.encode("latin-1"))
    for args in (["models", "list"], ["models", "activate", "market-features", "v0001"]):
        res = runner.invoke(app, [*args, "-m", str(saved.root)])
        text = " ".join(res.output.split())
        if args[1] == "activate" and where.endswith("ACTIVE"):
            assert res.exit_code == 0, text  # activating rewrites the broken marker
            continue
        assert res.exit_code == 2, text + repr(res.exception)
        assert words in text and "Traceback" not in text, text
        assert len(text) < 1000


def test_a_huge_metadata_file_is_not_read_whole(saved: Registry) -> None:
    from fraudlens import registry

    meta = saved.root / "market-features" / "v0001" / "metadata.json"
    with open(meta, "r+b") as f:
        f.truncate(registry.MAX_JSON_BYTES + 1)  # sparse: no disk space taken
    with pytest.raises(UnavailableError, match="larger than 33,554,432 bytes"):
        saved.get("market-features")


@pytest.mark.parametrize("link", [True, False])
def test_a_folder_that_is_no_model_does_not_stop_the_listing(
    saved: Registry, tmp_path: Path, link: bool
) -> None:
    """A folder under a name no detector has (a copy, or a link to one outside) made
    `models list` stop at it ("no model for 'linked' ... train one first") and list
    nothing; it is now none of the registry's models, and is neither listed nor read."""
    import shutil

    other = tmp_path / "outside" / "evil"
    shutil.copytree(saved.root / "market-features", other)
    if link:
        (saved.root / "linked").symlink_to(other, target_is_directory=True)
    else:
        shutil.copytree(other, saved.root / "linked")
    assert saved.names() == ["market-features"]
    assert [(mv.name, mv.version) for mv in saved.list()] == [("market-features", "v0001")]
    res = runner.invoke(app, ["models", "list", "-m", str(saved.root)])
    assert res.exit_code == 0, res.output
    assert "market-features" in res.output and "linked" not in res.output


@pytest.mark.parametrize(
    "args",
    [["n" * 100_000, "v0001"], ["market-features", "v" * 5_000], ["../" * 2_000 + "x", "v0001"]],
)
def test_a_long_name_or_version_is_cut_short_in_the_error(saved: Registry, args: list[str]) -> None:
    """`models activate` repeated a 100,000-character name whole in its error line."""
    res = runner.invoke(app, ["models", "activate", *args, "-m", str(saved.root)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert len(res.output) < 600, len(res.output)
    assert "..." in res.output


@pytest.mark.parametrize(
    "args",
    [
        ["activate", "market-features", "v99x"],
        # compare would open a database next: the version is refused before that
        ["compare", "market-features", "latest", "--db", "sqlite:///"],
        ["compare", "market-features", "v0001", "--against", "1", "--db", "sqlite:///"],
    ],
)
def test_a_version_argument_is_no_column(saved: Registry, args: list[str]) -> None:
    """A malformed VERSION on the command line was reported as "column 'version'", the
    registry's name for the field in the service's error bodies; the CLI has no columns
    there, only arguments."""
    res = runner.invoke(app, ["models", *args, "-m", str(saved.root)])
    assert res.exit_code == 2, res.output
    line = " ".join(res.output.split())
    assert "invalid model version" in line and "versions look like v0001" in line, line
    assert "column" not in line, line
