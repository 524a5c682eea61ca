"""The market CNN's test-time mirror: the ensemble plus its members' price-mirrored twins."""

from __future__ import annotations

import numpy as np
import pytest

from fraudlens.market.data import window
from fraudlens.market.render import panels, render_batch
from fraudlens.market.simulate import simulate


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
