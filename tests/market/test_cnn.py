"""The market image CNN: training, ONNX export, ONNX Runtime scoring, persistence."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fraudlens.errors import DataError
from fraudlens.evaluation import recall_at_fpr
from fraudlens.market._cnn import CLASSES, CNNDetector, resize_images
from fraudlens.market.data import MarketData, window
from fraudlens.market.render import STYLES, panels, render_batch
from fraudlens.market.simulate import simulate


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    pos = y == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


@pytest.fixture(scope="module")
def test_data() -> MarketData:
    return window(simulate(400, seed=12))


@pytest.fixture(scope="module")
def fitted() -> CNNDetector:
    train = window(simulate(600, seed=11))
    det = CNNDetector(epochs=8, seed=0, num_threads=2)
    seen: list[int] = []
    det.fit(train, progress=lambda epoch, n, metrics: seen.append(epoch))
    assert seen == list(range(1, 9))
    return det


def _mirror(images: np.ndarray) -> np.ndarray:
    """The training flip of the fraudlens look: each panel upside down, red and green
    swapped."""
    out = images.copy()
    for r0, r1 in panels("fraudlens"):
        out[:, r0:r1] = images[:, r0:r1][:, ::-1]
    return np.ascontiguousarray(out[..., [1, 0, 2]])


def _trained_looking(torch, net):
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-1.0, 1.0)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    return net.eval()


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, fraudlens.market._cnn, fraudlens.market.render; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_training_reaches_a_quality_floor(fitted: CNNDetector, test_data: MarketData) -> None:
    y = test_data.y()
    s = fitted.decision_function(test_data)
    assert s.shape == (len(test_data.account_ids),)
    assert ((s >= 0) & (s <= 1)).all()
    # Small data and 8 short epochs: far from the full model, well above chance.
    # (the simulator's look-alikes make this small problem harder than it looks)
    assert _auc(y, s) > 0.9
    assert recall_at_fpr(y, s, 0.05) > 0.5
    assert fitted.history_ and {"train_loss", "val_loss", "val_ap"} <= set(fitted.history_[0])
    assert 1 <= fitted.best_epoch_ <= 8
    assert fitted.input_shape_ == (*STYLES["fraudlens"], 3)
    # the stored model is the blocked-layout rewrite of the export
    assert b"fl_temporal0" in fitted.onnx_bytes_


@pytest.mark.slow
def test_score_images_reply_shape_and_order(fitted: CNNDetector, test_data: MarketData) -> None:
    ids = test_data.account_ids[:16]
    imgs = render_batch(test_data, ids, style=fitted.style)
    reply = fitted.score_images(imgs)
    assert reply.shape == (16, 2)
    np.testing.assert_allclose(reply.sum(axis=1), 1.0, atol=1e-5)
    # Column 0 is P(takeover): the number decision_function returns, to which it adds
    # the counterparty evidence of the accounts in its data.
    sub = test_data.subset(ids)
    scores = fitted.decision_function(sub)
    lifted = fitted._with_evidence(sub, reply[:, 0].astype(np.float64))
    np.testing.assert_allclose(lifted, scores, atol=1e-6)
    assert CLASSES == ("takeover", "normal")
    # One image, and images of another size (resized to the model's input).
    assert fitted.score_images(imgs[0]).shape == (1, 2)
    big = resize_images(imgs[:3], (128, 384))
    assert big.shape == (3, 128, 384, 3)
    assert fitted.score_images(big).shape == (3, 2)


@pytest.mark.slow
def test_score_image_bytes(fitted: CNNDetector, test_data: MarketData) -> None:
    img = render_batch(test_data, test_data.account_ids[:1])[0]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    reply = fitted.score_image_bytes(buf.getvalue())
    assert isinstance(reply, list) and len(reply) == 2
    np.testing.assert_allclose(reply, fitted.score_images(img[None])[0], atol=1e-6)
    jpeg = io.BytesIO()
    Image.fromarray(img).save(jpeg, format="JPEG", quality=95)
    assert len(fitted.score_image_bytes(jpeg.getvalue())) == 2
    with pytest.raises(DataError, match="is not a JPEG or PNG image"):
        fitted.score_image_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(DataError):
        fitted.score_image_bytes(buf.getvalue()[:60])  # truncated


@pytest.mark.slow
def test_save_and_load_round_trip(
    fitted: CNNDetector, test_data: MarketData, tmp_path: Path
) -> None:
    before = fitted.decision_function(test_data)
    meta = fitted.save_files(tmp_path)
    assert (tmp_path / "model.onnx").is_file()
    assert (tmp_path / "model.safetensors").is_file()
    assert meta["classes"] == ["takeover", "normal"]
    assert meta["arch"] == "bars" and meta["style"] == "fraudlens-gap"
    assert meta["input_shape"] == [*STYLES["fraudlens"], 3]
    assert len(meta["history"]) == 8

    from safetensors.numpy import load_file

    weights = load_file(tmp_path / "model.safetensors")
    assert set(weights) == set(fitted.state_dict_)

    loaded = CNNDetector.load_files(
        tmp_path, {**meta, "params": fitted.get_params(), "threshold": 0.42}
    )
    np.testing.assert_allclose(loaded.decision_function(test_data), before, atol=1e-5)
    assert loaded.threshold_ == 0.42
    # A loaded model can be saved again, weights included.
    again = tmp_path / "again"
    loaded.save_files(again)
    assert (again / "model.safetensors").read_bytes() == (
        tmp_path / "model.safetensors"
    ).read_bytes()


def test_counterparty_evidence_lifts_mirrored_accounts_only(
    fitted: CNNDetector, test_data: MarketData, tmp_path: Path
) -> None:
    from fraudlens.errors import ConfigError
    from fraudlens.market.features import account_features

    # estimated on the training accounts, as the feature detector's (the simulator's
    # beneficiaries and their victims carry it, its normal accounts do not)
    assert fitted.counterparty_weight is None and fitted.counterparty_weight_ > 3
    X = account_features(test_data)
    ev = np.where(X["n_mirror_pair_strong"] >= 1, X["mirror_pair_share"], 0.0)
    assert (ev > 0).sum() >= 10 and (ev == 0).sum() >= 100
    images = fitted.score_images(render_batch(test_data, style=fitted.style))[:, 0]
    images = images.astype(np.float64)
    scores = fitted.decision_function(test_data)
    # no evidence: the image's score as it is; evidence: weight x evidence more log-odds
    np.testing.assert_array_equal(scores[ev == 0], images[ev == 0])

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return np.log(p) - np.log1p(-p)

    lifted = (ev > 0) & (scores < 1 - 1e-6)
    assert lifted.sum() >= 5
    np.testing.assert_allclose(
        logit(scores[lifted]) - logit(images[lifted]),
        fitted.counterparty_weight_ * ev[lifted],
        atol=1e-3,
    )
    # saved with the model; a model saved before the evidence existed scores its images
    meta = fitted.save_files(tmp_path)
    assert meta["counterparty_weight"] == pytest.approx(fitted.counterparty_weight_)
    old_meta = {k: v for k, v in meta.items() if k != "counterparty_weight"}
    old = CNNDetector.load_files(tmp_path, {**old_meta, "params": {}})
    assert old.counterparty_weight_ == 0.0
    np.testing.assert_allclose(old.decision_function(test_data), images, atol=1e-6)
    # a weight given is used as given; nonsense is refused
    y = test_data.y()
    assert CNNDetector(counterparty_weight=0)._fit_counterparty_weight(test_data, y, None) == (
        0.0,
        None,
    )
    given, ev_given = CNNDetector(counterparty_weight=2.5)._fit_counterparty_weight(
        test_data, y, None
    )
    assert given == 2.5
    np.testing.assert_array_equal(ev_given, ev)
    for bad in (-1.0, float("inf"), "much"):
        with pytest.raises(ConfigError, match="counterparty_weight"):
            CNNDetector(counterparty_weight=bad)._fit_counterparty_weight(test_data, y, None)  # type: ignore[arg-type]


@pytest.mark.slow
def test_registry_round_trip_scores_without_torch(
    fitted: CNNDetector, test_data: MarketData, tmp_path: Path
) -> None:
    from fraudlens.registry import Registry

    before = fitted.decision_function(test_data)
    mv = Registry(tmp_path).save(fitted, metrics={"note": "test"})
    assert {"model.onnx", "model.safetensors"} <= set(mv.metadata["files"])
    np.save(tmp_path / "trades_ids.npy", test_data.account_ids.astype(str))
    np.save(tmp_path / "expected.npy", before)
    # Score in a fresh interpreter where importing torch fails.
    code = f"""
import sys
sys.modules["torch"] = None
import numpy as np
from fraudlens.market.data import window
from fraudlens.market.simulate import simulate
from fraudlens.registry import Registry
det = Registry({str(tmp_path)!r}).load("market")
data = window(simulate(400, seed=12))
s = det.decision_function(data)
assert np.allclose(s, np.load({str(tmp_path / "expected.npy")!r}), atol=1e-5), "scores differ"
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fit_rejects_bad_labels() -> None:
    data = window(simulate(40, seed=3))
    with pytest.raises(DataError, match="labels"):
        CNNDetector(epochs=1).fit(data, np.zeros(3))
    with pytest.raises(DataError, match="both"):
        CNNDetector(epochs=1).fit(data, np.zeros(len(data.account_ids)))


def test_unfitted_detector_refuses_to_score() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        CNNDetector().score_images(np.zeros((1, 64, 192, 3), dtype=np.uint8))


def test_resnet18_accepts_any_input_size() -> None:
    torch = pytest.importorskip("torch")
    from fraudlens.market._cnn_torch import build_network

    net = build_network("resnet18").eval()
    assert sum(p.numel() for p in net.parameters()) > 11_000_000  # ResNet-18 size
    with torch.no_grad():
        for h, w in ((64, 192), (150, 250)):
            out = net(torch.zeros((2, h, w, 3), dtype=torch.uint8))
            assert tuple(out.shape) == (2, 2)
    with pytest.raises(ValueError, match="unknown CNN architecture"):
        build_network("vgg")


def test_every_architecture_takes_the_rendered_images() -> None:
    torch = pytest.importorskip("torch")
    from fraudlens.market._cnn_torch import ARCHS, build_network

    imgs = render_batch(window(simulate(40, seed=3)))[:4]
    x = torch.from_numpy(imgs)
    for arch in ("bar", "bars", "columns", "compact"):
        assert arch in ARCHS
        net = build_network(arch, height=imgs.shape[1]).eval()
        with torch.no_grad():
            out = net(x)
        assert tuple(out.shape) == (4, 2) and bool(torch.isfinite(out).all())
    # the column networks are the smaller ones; the default averages three of the smallest
    sizes = {a: sum(p.numel() for p in build_network(a).parameters()) for a in ARCHS}
    assert sizes["bar"] < sizes["columns"] < sizes["compact"]
    assert sizes["bars"] == 3 * sizes["bar"]


def test_window_peak_pool_counts_an_event_once() -> None:
    torch = pytest.importorskip("torch")
    from fraudlens.market._cnn_torch import _window_peak_pool

    z = torch.zeros((1, 1, 32))
    z[0, 0, 7] = 3.0  # one event over two windows (columns 4-7 and 8-11)
    z[0, 0, 8] = 2.0
    z[0, 0, 21] = 1.0  # a second, weaker event
    out = _window_peak_pool(z, 4)[0].tolist()
    # the three largest window peaks, then the mean: the neighbour 2.0 is not a peak
    assert out[:3] == [3.0, 1.0, 0.0]
    assert out[3] == pytest.approx(6.0 / 32)


def test_default_network_exports_the_mean_of_its_members() -> None:
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from fraudlens.market._cnn_torch import BarEnsemble, build_network, export_onnx

    torch.manual_seed(0)
    # trained-looking batch norms, different per member: the export (one grouped network)
    # must keep each member's statistics and weights in its own channels
    net = _trained_looking(torch, build_network("bars"))
    assert isinstance(net, BarEnsemble) and len(net.members) == 3
    imgs = render_batch(window(simulate(40, seed=3)))[:6]
    x = torch.from_numpy(imgs)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(x), dim=1) for m in net.members]).mean(dim=0)
    session = ort.InferenceSession(export_onnx(net, *imgs.shape[1:3]))
    probs = session.run(None, {"images": imgs})[0]
    np.testing.assert_allclose(probs, mean.numpy(), atol=1e-5)


@pytest.mark.parametrize("grouped", [True, False])
def test_the_grouped_training_form_is_the_ensemble(grouped: bool) -> None:
    """Training runs the ensemble as one grouped network: the same logits, the same
    gradients for every member's weights, and the weights written back exactly."""
    torch = pytest.importorskip("torch")
    from torch.nn import functional as F  # noqa: N812

    from fraudlens.market._cnn_torch import BarEnsemble, _GroupedBars

    torch.manual_seed(2)
    ens = _trained_looking(torch, BarEnsemble())
    for member in ens.members:
        member.dropout.p = 0.0  # dropout draws its masks differently in the two forms
    form = _GroupedBars(ens, grouped_convs=grouped)
    form.dropout.p = 0.0
    x = torch.from_numpy(render_batch(window(simulate(40, seed=3)))[:8])
    target = torch.tensor([0, 1] * 4)
    for mode in ("eval", "train"):  # stored statistics, then the batch's own
        ens.train(mode == "train")
        form.train(mode == "train")
        a, b = ens.member_logits(x), form.member_logits(x)
        for za, zb in zip(a, b, strict=True):
            torch.testing.assert_close(zb, za, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(form(x), ens(x), rtol=1e-4, atol=1e-5)
    # one training step's loss gives each member's weights the same gradient
    for net, outs in ((ens, ens.member_logits(x)), (form, form.member_logits(x))):
        net.zero_grad()
        torch.stack([F.cross_entropy(z, target) for z in outs]).sum().backward()
    grads = {k: p.grad for k, p in form.named_parameters()}

    def same(a, b):  # up to the order of float32 sums
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()))

    for j, member in enumerate(ens.members):
        same(grads["rows"].chunk(3)[j], member.rows.grad)
        same(grads["mix.0.weight"].chunk(3)[j], member.mix[0].weight.grad)
        same(grads["temporal.3.weight"].chunk(3)[j], member.temporal[3].weight.grad)
        same(grads["head_w"][j], member.head.weight.grad)
    # trained weights and batch-norm statistics go back member by member
    with torch.no_grad():
        for t in [*form.parameters(), *form.buffers()]:
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.1).abs_()
    form.eval()
    back = form.write_to(BarEnsemble()).eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x), form(x), rtol=1e-4, atol=1e-5)
        var = form.rows_bn.running_var
        torch.testing.assert_close(back.members[2].rows_bn.running_var, var[32:])


def test_window_peak_pool_is_the_same_in_the_export_and_in_training() -> None:
    torch = pytest.importorskip("torch")
    from fraudlens.market import _cnn_torch

    torch.manual_seed(3)
    z = torch.relu(torch.randn(4, 6, 72))
    z[:, :, 10:14] = 0.5  # ties inside and across windows
    fast = _cnn_torch._window_peak_pool(z, 4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
        pools = _cnn_torch._window_peak_pool(z, 4)
    torch.testing.assert_close(fast, pools, rtol=0, atol=0)


def test_the_shared_projection_is_each_members_own() -> None:
    torch = pytest.importorskip("torch")
    from fraudlens.market._cnn_torch import _project, build_network

    torch.manual_seed(1)
    net = _trained_looking(torch, build_network("bars"))
    imgs = render_batch(window(simulate(40, seed=3)))[:5]
    x = torch.from_numpy(imgs)
    rows = net.members[0].rows
    n, h, w, c = x.shape
    with torch.no_grad():
        plain = torch.matmul(rows, x.float().reshape(n, h, w * c))
        assert torch.equal(_project(rows, x), plain)
        # the members' logits from one stacked product equal each member's own forward
        joint = net.member_logits(x)
        for member, z in zip(net.members, joint, strict=True):
            torch.testing.assert_close(z, member(x), rtol=0, atol=1e-5)
    # and so do the gradients that reach each member's projection
    net.train()
    torch.manual_seed(2)
    sum(z.square().sum() for z in net.member_logits(x)).backward()
    joint_grads = [m.rows.grad.clone() for m in net.members]
    net.zero_grad()
    torch.manual_seed(2)  # the same dropout draws, member after member
    sum(m(x).square().sum() for m in net.members).backward()
    for member, g in zip(net.members, joint_grads, strict=True):
        assert member.rows.grad is not None
        # sums over every pixel taken in another order: equal up to float rounding
        scale = float(g.abs().max())
        assert scale > 0
        torch.testing.assert_close(g, member.rows.grad, rtol=1e-3, atol=1e-5 * scale)


def test_training_precision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from fraudlens.market import _cnn_torch

    assert _cnn_torch.training_precision("fp32") == "fp32"
    assert _cnn_torch.training_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        _cnn_torch.training_precision("fp16")
    # auto: bfloat16 only where the CPU multiplies it natively
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    assert _cnn_torch.training_precision("auto") == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert _cnn_torch.training_precision("auto") == "bf16"
    # both arithmetics train and record which one ran
    train = window(simulate(120, seed=5))
    for precision in ("fp32", "bf16"):
        det = CNNDetector(epochs=2, seed=0, num_threads=1, precision=precision).fit(train)
        assert det.precision_ == precision
        assert det.save_files(tmp_path / precision)["train_precision"] == precision
        # validation figures of the kept epoch are recorded in either arithmetic
        y_val = det.validation_
        assert y_val and all(np.isfinite(v) for v in y_val.values() if isinstance(v, float))
    with pytest.raises(ValueError, match="precision must be one of"):
        CNNDetector(epochs=1, num_threads=1, precision="half").fit(train)


def test_blocked_layout_is_the_same_function() -> None:
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    from fraudlens.market._cnn import _blocked_layout
    from fraudlens.market._cnn_torch import build_network, export_onnx

    torch.manual_seed(1)
    net = build_network("bars").eval()
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-1.0, 1.0)
                mod.running_var.uniform_(0.5, 2.0)
                mod.bias.uniform_(-0.5, 0.5)
    imgs = render_batch(window(simulate(60, seed=4)))[:20]
    exported = export_onnx(net, *imgs.shape[1:3])
    fast = _blocked_layout(exported)
    ops = [n.op_type for n in onnx.load_from_string(fast).graph.node]
    # four 2-D convolutions; no matrix product, no transpose of the image-sized tensor
    # (the one left reorders the three members' pooled features for their heads)
    assert ops.count("Conv") == 4 and "MatMul" not in ops and ops.count("Transpose") == 1
    assert _blocked_layout(fast) == fast  # already rewritten: left alone

    def probs(model: bytes) -> np.ndarray:
        return ort.InferenceSession(model).run(None, {"images": imgs})[0]

    np.testing.assert_allclose(probs(fast), probs(exported), rtol=0, atol=1e-5)
    # Other graphs, and bytes that are no model, pass through untouched.
    compact = export_onnx(build_network("compact").eval(), *imgs.shape[1:3])
    assert _blocked_layout(compact) == compact
    assert _blocked_layout(b"not a model") == b"not a model"
    # A model file saved as exported before the rewrite still loads and scores the same.
    det = CNNDetector()
    det.onnx_bytes_, det.input_shape_ = exported, (*imgs.shape[1:3], 3)
    np.testing.assert_allclose(det.score_images(imgs), probs(exported), rtol=0, atol=1e-5)
    assert det.onnx_bytes_ == exported


def test_layout_check_refuses_huge_declared_inputs() -> None:
    # A model file declares its own input shape; a hostile or odd one must not make the
    # check before the rewrite draw images of that size (here 6 x 180 GB).
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from fraudlens.market._cnn import _same_function

    def model(height: int, width: int) -> bytes:
        graph = helper.make_graph(
            [helper.make_node("Cast", ["images"], ["probs"], to=TensorProto.FLOAT)],
            "g",
            [helper.make_tensor_value_info("images", TensorProto.UINT8, ["n", height, width, 3])],
            [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", height, width, 3])],
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return bytes(m.SerializeToString())

    small = model(4, 5)
    assert _same_function(small, small)
    huge = model(100_000, 100_000)
    assert not _same_function(huge, huge)
    assert onnx.load_from_string(huge).graph.input[0].name == "images"


def test_threads_follow_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import fraudlens._cores as cores

    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(cores, "_quota_read", (float("inf"), None))  # no CPU quota here
    monkeypatch.setattr(cores.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert cores.free_cores() == 2
    # one CPU-bound job beside us: one core left
    monkeypatch.setattr(cores.os, "getloadavg", lambda: (1.2, 1.0, 0.5))
    assert cores.free_cores() == 1
    # our own two busy threads are not "other jobs"
    monkeypatch.setattr(cores.os, "getloadavg", lambda: (2.1, 2.0, 1.0))
    assert cores.free_cores(own_threads=2) == 2
    # a crowded machine still gets one thread
    monkeypatch.setattr(cores.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert cores.free_cores() == 1


def test_scoring_threads_follow_the_cores_free_now(monkeypatch: pytest.MonkeyPatch) -> None:
    import fraudlens._cores as cores

    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(cores, "_quota_read", (float("inf"), None))  # no CPU quota here
    # The load average still counts our own training of the last minute; nothing but
    # this thread is runnable now: both cores are free.
    monkeypatch.setattr(cores.os, "getloadavg", lambda: (1.9, 1.5, 0.8))
    monkeypatch.setattr(cores, "_runnable_now", lambda: 1)
    assert cores.scoring_workers() == 2
    # another job is running now and has been for a while: one core left
    monkeypatch.setattr(cores, "_runnable_now", lambda: 2)
    assert cores.scoring_workers() == 1
    # a crowded machine still gets one thread
    monkeypatch.setattr(cores, "_runnable_now", lambda: 7)
    monkeypatch.setattr(cores.os, "getloadavg", lambda: (6.0, 6.0, 6.0))
    assert cores.scoring_workers() == 1
    # no instant count (not Linux): the load average alone
    monkeypatch.setattr(cores, "_runnable_now", lambda: None)
    monkeypatch.setattr(cores.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert cores.scoring_workers() == 2


@pytest.mark.slow
def test_threads_do_not_change_the_scores(fitted: CNNDetector, test_data: MarketData) -> None:
    import copy

    one, two = copy.copy(fitted), copy.copy(fitted)
    one.num_threads, two.num_threads = 1, 2
    single = one.decision_function(test_data)
    # two threads: rendering a chunk while scoring the previous ones
    np.testing.assert_array_equal(two.decision_function(test_data), single)
    imgs = render_batch(test_data, style=fitted.style)
    np.testing.assert_array_equal(two.score_images(imgs), one.score_images(imgs))
    # the images' own scores, with the counterparty evidence of the accounts added
    plain = one.score_images(imgs)[:, 0].astype(np.float64)
    np.testing.assert_array_equal(one._with_evidence(test_data, plain), single)


@pytest.mark.slow
def test_one_thread_renders_a_chunk_at_a_time(
    fitted: CNNDetector, test_data: MarketData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory follows the chunk, not the accounts: no path draws every account at once."""
    import copy

    from fraudlens.market import _cnn

    sizes: list[int] = []
    real = _cnn.render_chunks

    def spy(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        for start, imgs in real(*args, **kwargs):  # type: ignore[arg-type]
            sizes.append(len(imgs))
            yield start, imgs

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("every account drawn at once")

    one = copy.copy(fitted)
    one.num_threads = 1
    images = one.score_images(render_batch(test_data, style=one.style))[:, 0]
    expected = one._with_evidence(test_data, images.astype(np.float64))
    monkeypatch.setattr(_cnn, "render_chunks", spy)
    monkeypatch.setattr(_cnn, "render_batch", refuse)
    np.testing.assert_array_equal(one.decision_function(test_data), expected)
    assert sum(sizes) == len(test_data.account_ids)
    assert max(sizes) <= _cnn._RENDER_CHUNK < len(test_data.account_ids)


def test_sample_weights() -> None:
    data = window(simulate(120, seed=3, n_symbols=6, days=2))
    n = len(data.account_ids)
    with pytest.raises(DataError, match="sample weights"):
        CNNDetector(epochs=1).fit(data, sample_weight=np.ones(n - 1))
    with pytest.raises(DataError, match="not all 0"):
        CNNDetector(epochs=1).fit(data, sample_weight=np.zeros(n))
    # weights of 1 train exactly as no weights
    kw = {"epochs": 1, "seed": 0, "num_threads": 1}
    a = CNNDetector(**kw).fit(data)
    b = CNNDetector(**kw).fit(data, sample_weight=np.ones(n))
    for key in a.state_dict_:
        np.testing.assert_allclose(a.state_dict_[key], b.state_dict_[key], rtol=1e-5, atol=1e-6)


def test_the_cli_offers_every_architecture_and_refuses_others(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from fraudlens.cli import app
    from fraudlens.cli.market import ArchChoice
    from fraudlens.market._cnn_torch import ARCHS

    assert sorted(a.value for a in ArchChoice) == sorted(ARCHS)
    res = CliRunner().invoke(
        app, ["market", "train", "--data", str(tmp_path), "--detector", "cnn", "--arch", "vgg"]
    )
    assert res.exit_code == 2 and "vgg" in res.output


def test_the_cli_passes_the_training_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from fraudlens.cli import app
    from fraudlens.cli.market import PrecisionChoice
    from fraudlens.market import detectors
    from fraudlens.market._cnn_torch import PRECISIONS
    from fraudlens.market.data import write_market

    assert sorted(p.value for p in PrecisionChoice) == sorted(PRECISIONS)
    write_market(simulate(40, seed=3), tmp_path / "d")
    seen: list[str] = []

    class StopError(Exception):
        pass

    class Recording(detectors.CNNDetector):
        def fit(self, *a: object, **k: object) -> Recording:
            seen.append(self.precision)
            raise StopError

    monkeypatch.setattr(detectors, "CNNDetector", Recording)
    base = ["market", "train", "--data", str(tmp_path / "d"), "--model-dir", str(tmp_path / "m"),
            "--detector", "cnn"]  # fmt: skip
    for extra, want in (([], "auto"), (["--precision", "fp32"], "fp32")):
        with pytest.raises(StopError):
            CliRunner().invoke(app, [*base, *extra], catch_exceptions=False)
        assert seen[-1] == want
    res = CliRunner().invoke(app, [*base, "--precision", "fp16"])
    assert res.exit_code == 2 and "fp16" in res.output


def _price_mirror(data: MarketData) -> MarketData:
    """The same accounts with every price read upside down and every buy a sell."""
    k, t = data.klines.copy(), data.trades.copy()
    top = {s: 2.0 * float(g["high"].max()) for s, g in k.groupby("symbol")}
    ck, ct = k["symbol"].map(top).astype(float), t["symbol"].map(top).astype(float)
    high, low = k["high"].copy(), k["low"].copy()
    k["high"], k["low"] = ck - low, ck - high
    k["open"], k["close"] = ck - k["open"], ck - k["close"]
    t["price"] = ct - t["price"]
    t["side"] = t["side"].map({"buy": "sell", "sell": "buy"})
    return MarketData(k, t, data.labels)


def test_the_training_flip_is_the_price_mirror() -> None:
    torch = pytest.importorskip("torch")
    from fraudlens.market._cnn_torch import _augment, _mirror_channels
    from fraudlens.market.render import panels

    data = window(simulate(150, seed=5))
    images = render_batch(data)
    mirrored = render_batch(_price_mirror(data))
    swap = _mirror_channels(images, panels("fraudlens"))
    assert swap == (0, 1)
    # the reference look's colours are not a channel swap apart; resized images neither
    assert _mirror_channels(render_batch(data, style="reference")[:2], panels("reference")) is None
    assert _mirror_channels(images[:, :, :200], panels("fraudlens")) is None

    def flipped(swap: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
        gen = torch.Generator().manual_seed(0)
        out = _augment(torch.from_numpy(images), gen, 0, panels("fraudlens"), swap).numpy()
        changed = ~(out == images).all(axis=(1, 2, 3))
        return out[changed], mirrored[changed]

    out, want = flipped(swap)
    assert 40 < len(out) < 110
    fills = (want[..., :2] > 0).any(axis=3)  # the pixels of buy and sell marks
    same = (out == want).all(axis=3)
    # the mirror renders as the flipped, swapped image, up to a row of rounding
    assert same.mean() > 0.999
    assert same[fills].mean() > 0.95
    out, want = flipped(None)  # the plain flip turns the buys of one into the sells of the other
    assert (out == want).all(axis=3)[fills].mean() < 0.2


# -- the test-time mirror: the ensemble plus its members' price-mirrored twins ----------


def test_mirrored_members_score_the_image_and_its_mirror() -> None:
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from fraudlens.market._cnn import _blocked_layout
    from fraudlens.market._cnn_torch import build_network, export_onnx, with_mirrored_members

    torch.manual_seed(0)
    net = _trained_looking(torch, build_network("bars"))
    tta = with_mirrored_members(net, panels("fraudlens"), (0, 1))
    assert len(tta.members) == 2 * len(net.members)
    imgs = render_batch(window(simulate(40, seed=3)))[:8]
    with torch.no_grad():
        p = torch.softmax(net(torch.from_numpy(imgs)), dim=1).numpy()
        pm = torch.softmax(net(torch.from_numpy(_mirror(imgs))), dim=1).numpy()
        got = torch.softmax(tta(torch.from_numpy(imgs)), dim=1).numpy()
    assert np.abs(p - pm).max() > 1e-4  # the mirror is not a no-op for this network
    np.testing.assert_allclose(got, (p + pm) / 2, atol=1e-6)
    # exported (and rewritten to the blocked layout) it is the same function
    graph = _blocked_layout(export_onnx(tta, *imgs.shape[1:3]))
    probs = ort.InferenceSession(graph).run(None, {"images": imgs})[0]
    np.testing.assert_allclose(probs, (p + pm) / 2, atol=1e-5)
    # the mirror of the mirror is the image: the twins' twins are the members
    twice = with_mirrored_members(tta, panels("fraudlens"), (0, 1))
    for a, b in zip(twice.members[9:12], net.members, strict=True):
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(va, vb), k


@pytest.mark.slow
def test_fitted_detector_scores_with_the_mirror() -> None:
    torch = pytest.importorskip("torch")
    from fraudlens.market._cnn import CNNDetector
    from fraudlens.market._cnn_torch import BarEnsemble

    det = CNNDetector(epochs=2, seed=0, num_threads=1, mirror_tta=True)
    det.fit(window(simulate(200, seed=11)))
    net = BarEnsemble()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in det.state_dict_.items()})
    net.eval()
    imgs = render_batch(window(simulate(40, seed=3)))
    with torch.no_grad():
        p = torch.softmax(net(torch.from_numpy(imgs)), dim=1).numpy()
        pm = torch.softmax(net(torch.from_numpy(_mirror(imgs))), dim=1).numpy()
    np.testing.assert_allclose(det.score_images(imgs), (p + pm) / 2, atol=1e-5)
    plain = CNNDetector(epochs=2, seed=0, num_threads=1).fit(window(simulate(200, seed=11)))
    assert not plain.mirror_tta  # off by default
    np.testing.assert_allclose(plain.score_images(imgs), p, atol=1e-5)


def test_kind_weights_multiply_the_sample_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    from fraudlens.market import _cnn_torch
    from fraudlens.market._cnn import CNN_KIND_WEIGHTS

    data = window(simulate(120, seed=3, n_symbols=6, days=2))
    kinds = data.label_column("kind")
    assert kinds is not None and "takeover_mixed" in set(kinds)
    n = len(data.account_ids)
    seen: list[np.ndarray | None] = []

    class StopError(Exception):
        pass

    def spy(*args: object, sample_weight: np.ndarray | None = None, **kwargs: object) -> None:
        seen.append(sample_weight)
        raise StopError

    monkeypatch.setattr(_cnn_torch, "train_network", spy)
    given = np.full(n, 2.0)
    for kw, sw in (
        ({"kind_weights": CNN_KIND_WEIGHTS}, None),
        ({"kind_weights": CNN_KIND_WEIGHTS}, given),
        ({}, None),
        ({"kind_weights": {"takeover_mixed": 3.0}}, None),
    ):
        with pytest.raises(StopError):
            CNNDetector(epochs=1, **kw).fit(data, sample_weight=sw)  # type: ignore[arg-type]
    default = np.array([CNN_KIND_WEIGHTS.get(str(k), 1.0) for k in kinds])
    assert CNN_KIND_WEIGHTS["takeover_mixed"] > 1 and (default > 1).any()
    np.testing.assert_allclose(seen[0], default)  # type: ignore[arg-type]
    np.testing.assert_allclose(seen[1], 2.0 * default)  # type: ignore[arg-type]
    assert seen[2] is None
    np.testing.assert_allclose(seen[3], np.where(kinds == "takeover_mixed", 3.0, 1.0))  # type: ignore[arg-type]
    # data without a kind column trains unweighted
    assert data.labels is not None
    no_kind = dataclasses.replace(data, labels=data.labels.drop(columns="kind"))
    with pytest.raises(StopError):
        CNNDetector(epochs=1, kind_weights=CNN_KIND_WEIGHTS).fit(no_kind)
    assert seen[4] is None
    with pytest.raises(DataError, match="kind weight"):
        CNNDetector(epochs=1, kind_weights={"takeover_mixed": -1.0}).fit(data)


def test_saving_onto_a_full_disk_is_an_os_error(full_disk_folder: Path) -> None:
    """safetensors' own file writer reported a full disk as a SafetensorError, so
    ``market train --detector cnn`` onto a full registry disk ended in a traceback; the
    weights are now written by Python (an OSError: one line naming the model folder)."""
    from _disk import fill  # type: ignore[import-not-found]
    from fraudlens.registry import Registry

    det = CNNDetector()
    det.onnx_bytes_ = b"\0" * 1024
    det.state_dict_ = {"w": np.zeros(256 << 10, dtype=np.float32)}  # 1 MiB of weights
    det.input_shape_ = (1, 8, 8)
    det.threshold_ = 0.5
    fill(full_disk_folder, leave=512 << 10)
    with pytest.raises(OSError) as info:
        Registry(full_disk_folder / "models").save(det)
    assert info.value.errno == 28
    assert info.value.filename == str(full_disk_folder / "models" / "market-cnn")
