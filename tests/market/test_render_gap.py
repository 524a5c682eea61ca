"""Style "fraudlens-gap": the adjacent-bar gap of an equal-size round trip in the range
panel; a model keeps rendering with the style its metadata names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudlens.market import render
from fraudlens.market.data import MarketData
from fraudlens.market.render import STYLES, panels, render_batch

T0 = pd.Timestamp("2026-03-02 00:00", tz="UTC")
BAR = pd.Timedelta(minutes=5)
N_BARS = 48
LEG = 20  # the takeover's first leg sits in bar LEG, its second in bar LEG + 1


def _data() -> MarketData:
    """Ordinary bars (about 1.0 wide, 0.01 ticks) with a jump of 5 between bars LEG and
    LEG + 1; three accounts."""
    rng = np.random.default_rng(3)
    low = 100.0 + np.round(rng.uniform(-0.5, 0.5, N_BARS), 2)
    low[LEG + 1 :] += 5.0
    high = low + np.round(rng.uniform(0.8, 1.2, N_BARS), 2)
    k = pd.DataFrame(
        {
            "symbol": "AAA",
            "ts": T0 + BAR * np.arange(N_BARS),
            "open": low,
            "high": high,
            "low": low,
            "close": high,
            "volume": 100.0,
        }
    )

    def trade(tid: str, acc: str, bar: int, side: str, price: float, qty: float = 2.0) -> dict:
        ts = T0 + BAR * bar + pd.Timedelta(seconds=60)
        return {"trade_id": tid, "account_id": acc, "symbol": "AAA", "ts": ts,
                "side": side, "price": price, "quantity": qty}  # fmt: skip

    t = pd.DataFrame(
        [
            # adj: sells at bar LEG's low, buys the same size back at bar LEG + 1's high
            trade("t1", "adj", LEG, "sell", low[LEG]),
            trade("t2", "adj", LEG + 1, "buy", high[LEG + 1]),
            # same: a round trip within one bar
            trade("t3", "same", LEG, "buy", high[LEG]),
            trade("t4", "same", LEG, "sell", low[LEG]),
            # sizes: legs across the same two bars, of different sizes (no round trip)
            trade("t5", "sizes", LEG, "sell", low[LEG], 1.0),
            trade("t6", "sizes", LEG + 1, "buy", high[LEG + 1], 3.0),
        ]
    )
    t["ts"] = t["ts"].astype("datetime64[ns, UTC]")
    return MarketData(k, t)


def _range_columns(img: np.ndarray, slot: int, n_slots: int) -> np.ndarray:
    """The range panel's blue channel over the line columns of ``slot`` (of ``n_slots``)."""
    width = img.shape[1]
    col0 = slot * width // n_slots
    col1 = (slot + 1) * width // n_slots - 1
    return img[panels("fraudlens")[1][0] :, col0:col1, 2]


def test_gap_style_marks_round_trip_across_neighbouring_bars() -> None:
    data = _data()
    ids = ["adj", "same", "sizes"]
    old = render_batch(data, ids, style="fraudlens")
    new = render_batch(data, ids, style="fraudlens-gap")
    assert STYLES["fraudlens-gap"] == STYLES["fraudlens"]
    assert panels("fraudlens-gap") == panels("fraudlens")
    # every account draws 48 slots (4 h) centred on its trades: bars -3 .. 44
    for slot in (LEG + 3, LEG + 4):
        was = _range_columns(old[0], slot, N_BARS)
        now = _range_columns(new[0], slot, N_BARS)
        # an ordinary bar (about the day's median range) is dim in the old look; the
        # gap of 5 median ranges draws both bars at full intensity in the new one
        assert int(was.max()) < 120
        assert (now == 255).all()
    # nothing else changes: the other bars, the price panel, the marks
    changed = (old[0] != new[0]).any(axis=(0, 2))
    cols = np.flatnonzero(changed)
    assert cols.min() >= (LEG + 3) * 288 // N_BARS and cols.max() < (LEG + 5) * 288 // N_BARS
    assert ((old[0] != new[0])[:, :, :2] == 0).all()
    # a round trip within one bar and legs of different sizes draw as before
    assert np.array_equal(old[1:], new[1:])
    # chunked rendering draws the same pixels
    got = np.concatenate(
        [imgs for _, imgs in render.render_chunks(data, ids, style="fraudlens-gap", chunk=2)]
    )
    assert np.array_equal(got, new)


def _mean_model(path: Path) -> None:
    """An ONNX model scoring an image by its mean pixel: P(takeover) = mean / 255."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    h, w = STYLES["fraudlens"]
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m", "shape"], ["m2"]),
        helper.make_node("Div", ["m2", "c255"], ["p"]),
        helper.make_node("Sub", ["one", "p"], ["q"]),
        helper.make_node("Concat", ["p", "q"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mean",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["n", h, w, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 2])],
        initializer=[
            helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1]),
            helper.make_tensor("c255", TensorProto.FLOAT, [], [255.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (path / "model.onnx").write_bytes(model.SerializeToString())


@pytest.mark.parametrize("style", ["fraudlens", "fraudlens-gap"])
def test_model_renders_with_the_style_its_metadata_names(tmp_path: Path, style: str) -> None:
    from fraudlens.market.detectors import CNNDetector

    _mean_model(tmp_path)
    data = _data()
    # params of a model saved by this version (whatever its default style); the
    # metadata's "style" is the look the model was trained on, and wins
    params = {**CNNDetector().get_params(), "style": "reference", "num_threads": 1}
    meta = {"style": style, "input_shape": [*STYLES[style], 3], "params": params}
    det = CNNDetector.load_files(tmp_path, meta)
    assert det.style == style
    got = det.decision_function(data)
    ids = data.account_ids
    want = render_batch(data, ids, style=style).mean(axis=(1, 2, 3)) / 255.0
    other = render_batch(data, ids, style=({"fraudlens", "fraudlens-gap"} - {style}).pop())
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not np.allclose(got, other.mean(axis=(1, 2, 3)) / 255.0, rtol=1e-5)


def test_model_without_a_recorded_style_renders_with_fraudlens(tmp_path: Path) -> None:
    from fraudlens.market.detectors import CNNDetector

    _mean_model(tmp_path)
    det = CNNDetector.load_files(tmp_path, {"input_shape": [*STYLES["fraudlens"], 3]})
    assert det.style == "fraudlens"


@pytest.mark.parametrize(
    ("args", "want"), [([], "fraudlens-gap"), (["--style", "fraudlens"], "fraudlens")]
)
def test_cli_train_trains_the_cnn_on_the_style_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], want: str
) -> None:
    from typer.testing import CliRunner

    from fraudlens.cli import app
    from fraudlens.market import detectors

    data = _data()
    folder = tmp_path / "data"
    folder.mkdir()
    data.klines.to_csv(folder / "klines.csv", index=False)
    data.trades.to_csv(folder / "trades.csv", index=False)
    ids = sorted(data.trades["account_id"].unique())
    labels = pd.DataFrame({"account_id": ids, "label": [1, 0, 0]})
    labels.to_csv(folder / "labels.csv", index=False)
    seen: list[str] = []

    class StopError(Exception):
        pass

    class Recording(detectors.CNNDetector):
        def fit(self, *a: object, **k: object) -> Recording:
            seen.append(self.style)
            raise StopError

    monkeypatch.setattr(detectors, "CNNDetector", Recording)
    cmd = ["market", "train", "--data", str(folder), "--model-dir", str(tmp_path / "m"),
           "--detector", "cnn", *args]  # fmt: skip
    with pytest.raises(StopError):
        CliRunner().invoke(app, cmd, catch_exceptions=False)
    assert seen == [want]


def _embedded_image(svg: str) -> np.ndarray:
    """The detector's image an analysts' picture embeds (its inline PNG), as pixels."""
    import base64
    import io
    import re

    from PIL import Image

    found = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", svg)
    assert found, "no detector image in the picture"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(found.group(1)))).convert("RGB"))


@pytest.mark.parametrize("style", [None, "fraudlens", "fraudlens-gap"])
def test_the_analysts_picture_embeds_the_image_in_the_style_asked(style: str | None) -> None:
    from fraudlens.market.picture import account_picture_svg
    from fraudlens.market.render import CNN_STYLE, render_account

    data = _data()
    got = _embedded_image(account_picture_svg(data, "adj", style=style))
    want = render_account(data, "adj", style=style or CNN_STYLE)
    other = render_account(data, "adj", style="fraudlens")
    assert np.array_equal(got, want)
    if (style or CNN_STYLE) == "fraudlens-gap":
        assert not np.array_equal(got, other)  # the two looks differ for this account


def _registry_with(tmp_path: Path, versions: dict[str, dict]) -> Path:
    """A registry folder holding market-cnn versions with the given metadata (the files
    a saved CNN writes beside it are not read to find its style)."""
    import json

    for version, meta in versions.items():
        folder = tmp_path / "market-cnn" / version
        folder.mkdir(parents=True)
        (folder / "metadata.json").write_text(json.dumps(meta))
    return tmp_path


def test_the_event_picture_uses_the_style_of_the_cnn_that_scored_it(tmp_path: Path) -> None:
    from fraudlens.registry import Registry
    from fraudlens.service.routes.risk_events import _cnn_style

    root = _registry_with(
        tmp_path,
        {
            "v0001": {"style": "fraudlens", "params": {"style": "fraudlens"}},
            "v0002": {"params": {"arch": "bars"}},  # saved before styles were recorded
            "v0003": {"style": "fraudlens-gap", "params": {"style": "fraudlens-gap"}},
        },
    )
    reg = Registry(root)
    assert _cnn_style(reg, "market-cnn:v0001") == "fraudlens"
    assert _cnn_style(reg, "market-cnn:v0002") == "fraudlens"
    assert _cnn_style(reg, "market-cnn:v0003") == "fraudlens-gap"
    # scored by the feature detector, or by a CNN version since deleted: the active CNN's
    assert _cnn_style(reg, "market-features:v0007") == "fraudlens-gap"
    assert _cnn_style(reg, "market-cnn:v0099") == "fraudlens-gap"
    (root / "market-cnn" / "ACTIVE").write_text("v0001\n")
    assert _cnn_style(reg, "market-features:v0007") == "fraudlens"
    assert _cnn_style(reg, None) == "fraudlens"
    # no CNN at all: the default look (None)
    assert _cnn_style(Registry(tmp_path / "empty"), "market-features:v0001") is None


def test_one_default_style_for_the_cli_the_detector_and_the_picture() -> None:
    """The command line writes the default out (it starts without pandas); it must stay
    the library's."""
    import inspect

    from fraudlens.cli.market import DEFAULT_CNN_STYLE
    from fraudlens.market.detectors import CNNDetector
    from fraudlens.market.picture import account_picture_svg
    from fraudlens.market.render import CNN_STYLE

    assert DEFAULT_CNN_STYLE.value == CNN_STYLE == CNNDetector().style
    assert inspect.signature(account_picture_svg).parameters["style"].default is None
