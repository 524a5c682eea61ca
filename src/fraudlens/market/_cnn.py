"""The market image CNN: trained in PyTorch, scored with ONNX Runtime.

:class:`CNNDetector` renders each account's trades over its bars
(:mod:`fraudlens.market.render`), trains a small CNN from scratch on those images and
exports it to ONNX. Scoring runs the ONNX graph in ONNX Runtime, so the service and the
workers need neither torch nor a GPU. Importing this module does not import torch:
training pulls in :mod:`fraudlens.market._cnn_torch` on demand.

The exported graph takes the rendered images as they are (uint8, ``(batch, H, W, 3)``)
and replies with class probabilities in the order ``["takeover", "normal"]``: the
reference endpoint's ``["hacker", "normal"]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd

from fraudlens._cores import free_cores, scoring_workers
from fraudlens._detector import Detector
from fraudlens._images import DEFAULT_MAX_PIXELS, decode_image
from fraudlens.errors import DataError
from fraudlens.market import _evidence
from fraudlens.market.render import CNN_STYLE, STYLES, panels, render_batch, render_chunks

if TYPE_CHECKING:
    from fraudlens.market._cnn_torch import ImageChoice
    from fraudlens.market.data import MarketData

__all__ = [
    "CLASSES",
    "CNNDetector",
    "FillDropout",
    "default_epochs",
    "free_cores",
    "resize_images",
    "scoring_workers",
]

#: Class order of :meth:`CNNDetector.score_images` replies.
CLASSES = ("takeover", "normal")

_ONNX_FILE = "model.onnx"
_WEIGHTS_FILE = "model.safetensors"
# Images per ONNX Runtime call. Small batches keep each layer's activations in the
# core's cache (a batch of 512 images is 113 MB of float pixels alone): on 3,000
# rendered images of simulate(3000, seed=909), one thread, 16 images per call took
# about 20 % less CPU per image than 512.
_SCORE_BATCH = 16
# Accounts rendered per chunk while other threads score the previous chunks.
_RENDER_CHUNK = 128
# Probabilities are read as log-odds within [_EPS, 1 - _EPS] (float32 scores reach 1.0).
_EPS = 1e-7


#: Default CNN training: 40 epochs, and past 8,000 accounts as many as this many account
#: images allow (at least 20), so training time stops growing with the data.
DEFAULT_EPOCHS = 40
EPOCH_BUDGET = 320_000
MIN_EPOCHS = 20


def default_epochs(n_accounts: int) -> int:
    """Epochs of a CNN trained with the default on ``n_accounts`` accounts: 40 up to
    8,000 accounts, then ``320,000 / n_accounts`` rounded (32 for 10,000), at least 20."""
    if n_accounts <= 0:
        return DEFAULT_EPOCHS
    return int(min(DEFAULT_EPOCHS, max(MIN_EPOCHS, round(EPOCH_BUDGET / n_accounts))))


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 ``(n, H, W, 3)`` images to ``size = (height, width)`` with Pillow."""
    from PIL import Image

    height, width = size
    if images.shape[1:3] == (height, width):
        return images
    out = np.empty((len(images), height, width, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        out[i] = np.asarray(Image.fromarray(im).resize((width, height), Image.Resampling.BILINEAR))
    return out


class FillDropout:
    """Training images of the same accounts with some of their ordinary legs left out.

    Called with an epoch number, it renders every account of ``data`` again (in
    ``data.account_ids`` order, ``style``, resized to ``size``) from a random part of
    its trades, so the network sees busy and sparse versions of the same day. The unit
    left out is a whole leg (:func:`fraudlens.market.render.fill_legs`: an account's
    fills on one side in one third of a bar's range), and only a leg without an
    equal-size opposite partner, in every account alike: the round trips (a takeover's
    evidence, and a market maker's or scalper's look-alikes) stay as they are and as
    bright, dropping whole legs never pairs two legs that were not pairs, and fills
    without a bar are always kept. So no account's label changes, and the two classes
    are thinned by the same rule. Half of the accounts (drawn anew each call) are drawn
    whole; the others lose each of their droppable legs with a probability drawn
    uniformly from ``[0, rate]`` for that account. An account that would keep no fill
    keeps all of them. The same ``seed`` and epoch give the same images.
    """

    def __init__(
        self,
        data: MarketData,
        *,
        style: str,
        size: tuple[int, int],
        rate: float,
        seed: int = 0,
    ) -> None:
        from fraudlens.market.render import fill_legs

        if not (0.0 <= rate <= 1.0):
            raise DataError(f"fill dropout rate must be within [0, 1], got {rate}")
        self.data = data
        self.style = style
        self.size = size
        self.rate = float(rate)
        self.seed = int(seed)
        self.ids = data.account_ids
        acc = np.searchsorted(self.ids, data.trades["account_id"].astype(str).to_numpy())
        self.acc = acc.astype(np.int64)
        legs, matched = fill_legs(data)
        self.leg = legs
        n_legs = int(legs.max()) + 1 if len(legs) else 0
        droppable = np.zeros(n_legs, dtype=bool)
        droppable[legs[(legs >= 0) & ~matched]] = True
        self.droppable = droppable
        leg_acc = np.zeros(n_legs, dtype=np.int64)
        leg_acc[legs[legs >= 0]] = self.acc[legs >= 0]
        self.leg_acc = leg_acc

    def keep(self, epoch: int) -> np.ndarray:
        """Which rows of ``data.trades`` the images of ``epoch`` draw (bool)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        n_acc = len(self.ids)
        thinned = rng.random(n_acc) < 0.5
        rate = np.where(thinned, rng.uniform(0.0, self.rate, n_acc), 0.0)
        drop_leg = self.droppable & (rng.random(len(self.droppable)) < rate[self.leg_acc])
        has_leg = self.leg >= 0
        keep = np.ones(len(self.leg), dtype=bool)
        keep[has_leg] = ~drop_leg[self.leg[has_leg]]
        kept = np.bincount(self.acc, weights=keep, minlength=n_acc)
        keep |= kept[self.acc] == 0
        return keep

    def __call__(self, epoch: int) -> np.ndarray:
        from fraudlens.market.data import MarketData

        d = self.data
        keep = self.keep(epoch)
        trades = d.trades if bool(keep.all()) else d.trades.loc[keep].reset_index(drop=True)
        sub = MarketData(d.klines, trades, d.labels, d.bar, d.book)
        return resize_images(render_batch(sub, self.ids, style=self.style), self.size)


class ExtremeSnap:
    """Training images in which some accounts' fills near an extreme are drawn at it.

    Each call (one per epoch) draws, in every account alike, a share ``rate`` of the
    accounts whose images come from a second rendering where a fill within ``near`` of
    its bar's range of the high or low is drawn at it in the range panel
    (:func:`fraudlens.market.render.render_batch`'s ``extreme_snap``); the others keep
    their images. A round trip exactly at a bar's extremes and one just inside them then
    look alike in some epochs for takeovers and normal accounts alike, so the CNN cannot
    lean on the difference (the simulator's market makers sit exactly on quiet bars'
    edges more often than its thieves sit exactly on volatile bars' ones). No label is
    read. The same ``seed`` and epoch give the same images.

    A call returns the choice (:class:`fraudlens.market._cnn_torch.ImageChoice`), not
    the images: training gathers each batch from the two renderings, so no third array
    of every training image is built (442 MB for 8,000 accounts, rewritten each epoch).
    """

    def __init__(
        self,
        images: np.ndarray,
        data: MarketData,
        *,
        style: str,
        size: tuple[int, int],
        rate: float,
        near: float = 0.1,
        seed: int = 0,
    ) -> None:
        if not (0.0 <= rate <= 1.0):
            raise DataError(f"extreme snap rate must be within [0, 1], got {rate}")
        self.images = images
        self.snapped = resize_images(render_batch(data, style=style, extreme_snap=near), size)
        self.rate = float(rate)
        self.seed = int(seed)

    def pick(self, epoch: int) -> np.ndarray:
        """Which accounts' images are the snapped ones in ``epoch`` (booleans)."""
        rng = np.random.default_rng([self.seed, int(epoch), 1])
        return rng.random(len(self.images)) < self.rate

    def __call__(self, epoch: int) -> ImageChoice:
        from fraudlens.market._cnn_torch import ImageChoice

        return ImageChoice(self.snapped, self.pick(epoch))

    def images_of(self, epoch: int) -> np.ndarray:
        """Every training image of ``epoch`` in one array (what the choice gathers)."""
        return np.where(self.pick(epoch)[:, None, None, None], self.snapped, self.images)


_BARS_HEAD = (
    "Cast", "Reshape", "MatMul", "BatchNormalization", "Relu", "Reshape", "Transpose",
    "Reshape", "Conv", "Relu", "Conv", "Relu", "Conv", "Relu", "MaxPool",
)  # fmt: skip


def _blocked_layout(onnx_bytes: bytes) -> bytes:
    """The default CNN's exported graph rewritten so ONNX Runtime runs it in its blocked
    (NCHWc) layout; any other graph is returned as it is.

    :class:`fraudlens.market._cnn_torch.BarEnsemble` exports as a row projection
    (a matrix product over the image's height), a transpose, and 1-D convolutions over
    time. ONNX Runtime runs 1-D convolutions by unfolding them into matrix products;
    its fast direct convolutions on blocks of 16 channels are for 2-D ones. Here the
    same layers become 2-D with the time on the width axis and no transpose:

    - the uint8 image ``(n, H, W, 3)`` is read as ``(n, H, 1, W * 3)``, the height as
      channels (the same memory), and the row projection is a 1 x 1 convolution;
    - the colour mix, a grouped 1 x 1 convolution over ``rows * 3`` channels after the
      transpose, is a grouped ``(1, 3)`` convolution with stride 3 along ``W * 3``;
    - the temporal convolutions are ``(1, k)``, the first window max-pool ``(1, w)``.

    The function is the same (sums taken in another order: probabilities within about
    1e-5). Checked on random images before it is used; on any mismatch, or without the
    ``onnx`` package (scoring-only installs), the graph stays as it was. The CPU per
    image falls by about a quarter (0.35 -> 0.26 ms, one thread, batches of 16).
    """
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        return onnx_bytes
    try:
        model = onnx.load_from_string(onnx_bytes)
        graph = model.graph
        nodes = list(graph.node)
        if tuple(n.op_type for n in nodes[: len(_BARS_HEAD)]) != _BARS_HEAD:
            return onnx_bytes
        cast, _, matmul, bn, _, _, transpose, _, mix, _, t0, _, t1, relu3, pool = nodes[:15]
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

        def attr(node: Any, name: str, default: Any = None) -> Any:
            for a in node.attribute:
                if a.name == name:
                    return helper.get_attribute_value(a)
            return default

        rows = inits[matmul.input[0]]
        w_mix = inits[mix.input[1]]
        groups = int(attr(mix, "group", 1))
        if (
            rows.ndim != 2
            or list(attr(transpose, "perm")) != [0, 1, 3, 2]
            or w_mix.ndim != 3
            or w_mix.shape[2] != 1
            or w_mix.shape[1] % 3
            or list(attr(pool, "kernel_shape")) != list(attr(pool, "strides"))
        ):
            return onnx_bytes
        out_ch = w_mix.shape[0]
        new_inits = {
            "fl_rows": rows.reshape(*rows.shape, 1, 1),
            "fl_mix": w_mix.reshape(out_ch, w_mix.shape[1] // 3, 1, 3),
            "fl_shape4": np.array([0, 0, 1, -1], np.int64),
            "fl_shape3": np.array([0, out_ch, -1], np.int64),
        }
        new = [
            cast,
            helper.make_node("Reshape", [cast.output[0], "fl_shape4"], ["fl_image"]),
            helper.make_node("Conv", ["fl_image", "fl_rows"], ["fl_proj"], kernel_shape=[1, 1]),
            helper.make_node(
                "BatchNormalization",
                ["fl_proj", *bn.input[1:]],
                ["fl_proj_bn"],
                epsilon=float(attr(bn, "epsilon", 1e-5)),
            ),
            helper.make_node("Relu", ["fl_proj_bn"], ["fl_proj_relu"]),
            helper.make_node(
                "Conv",
                ["fl_proj_relu", "fl_mix", *mix.input[2:]],
                ["fl_mix_out"],
                kernel_shape=[1, 3],
                strides=[1, 3],
                group=groups,
            ),
            helper.make_node("Relu", ["fl_mix_out"], ["fl_t"]),
        ]
        prev = "fl_t"
        for j, conv in enumerate((t0, t1)):
            w = inits[conv.input[1]]
            k = int(w.shape[2])
            pads = list(attr(conv, "pads", [0, 0]))
            new_inits[f"fl_temporal{j}"] = w[:, :, None, :]
            new += [
                helper.make_node(
                    "Conv",
                    [prev, f"fl_temporal{j}", *conv.input[2:]],
                    [f"fl_temporal{j}_out"],
                    kernel_shape=[1, k],
                    pads=[0, pads[0], 0, pads[1]],
                    group=int(attr(conv, "group", 1)),
                ),
                helper.make_node("Relu", [f"fl_temporal{j}_out"], [f"fl_temporal{j}_relu"]),
            ]
            prev = f"fl_temporal{j}_relu"
        window = int(attr(pool, "kernel_shape")[0])
        new += [
            helper.make_node("Reshape", [prev, "fl_shape3"], [relu3.output[0]]),
            helper.make_node(
                "MaxPool",
                [prev],
                ["fl_pool"],
                kernel_shape=[1, window],
                strides=[1, window],
                ceil_mode=int(attr(pool, "ceil_mode", 0)),
            ),
            helper.make_node("Reshape", ["fl_pool", "fl_shape3"], [pool.output[0]]),
        ]
        del graph.node[:]
        graph.node.extend(new + nodes[15:])
        used = {name for n in graph.node for name in n.input}
        kept = [i for i in graph.initializer if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in new_inits.items())
        produced = {name for n in graph.node for name in n.output}
        kept_info = [v for v in graph.value_info if v.name in produced]
        del graph.value_info[:]
        graph.value_info.extend(kept_info)
        onnx.checker.check_model(model)
        rewritten = model.SerializeToString()
        if not _same_function(onnx_bytes, rewritten):
            return onnx_bytes
        return rewritten
    except Exception:  # an unexpected graph: keep it as exported
        return onnx_bytes


#: Most values (height x width x 3) of one random image :func:`_same_function` draws. The
#: shape comes from the model file itself, which may be anything (a registry's file):
#: a larger one is not checked, and its graph is left as it is. The default styles' images
#: hold 55,296 and 112,500 values.
_CHECK_MAX_VALUES = 1 << 20


def _same_function(a: bytes, b: bytes, n: int = 6, atol: float = 1e-4) -> bool:
    """Whether two image models give the same probabilities on random sparse images
    (False for an input shape that is not positive or holds more than
    ``_CHECK_MAX_VALUES`` values per image)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sa = ort.InferenceSession(a, sess_options=opts, providers=["CPUExecutionProvider"])
    shape = [int(d) if isinstance(d, int) else n for d in sa.get_inputs()[0].shape]
    if not shape or min(shape) <= 0 or int(np.prod(shape[1:], dtype=object)) > _CHECK_MAX_VALUES:
        return False
    sb = ort.InferenceSession(b, sess_options=opts, providers=["CPUExecutionProvider"])
    shape[0] = n
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    images[rng.random(shape) < 0.6] = 0
    pa = sa.run(None, {sa.get_inputs()[0].name: images})[0]
    pb = sb.run(None, {sb.get_inputs()[0].name: images})[0]
    return pa.shape == pb.shape and bool(np.allclose(pa, pb, rtol=0, atol=atol))


#: Extra weight, in the CNN's training loss, of simulated account kinds (the ``kind``
#: label column), an option (``CNNDetector(kind_weights=CNN_KIND_WEIGHTS)``), not the
#: default: the takeover hidden in a busy owner's day, whose own many fills crowd the
#: image, and the other takeover kinds the CNN misses most. Figures:
#: :class:`CNNDetector`'s ``kind_weights``.
CNN_KIND_WEIGHTS: dict[str, float] = {
    "takeover_mixed": 2.5,
    "takeover_adjacent": 1.5,
    "takeover_rough": 1.5,
    "takeover_two": 1.5,
}


class CNNDetector(Detector):
    """Account takeover detector: trade images classified by a CNN.

    Parameters
    ----------
    arch
        ``"bars"`` (default: reads the image a column, that is a bar, at a time, then
        looks along time and counts peaks over windows of bars; the most accurate on
        validation data and several times cheaper to train and score than
        ``"compact"``), ``"compact"`` (the earlier default: 2-D convolutions over the
        image), ``"columns"`` (the column network with per-column peak pooling) or
        ``"resnet18"`` (the reference's architecture, much slower).
    style
        Image style of :mod:`fraudlens.market.render`: ``"fraudlens-gap"`` (default),
        ``"fraudlens"`` (the default before it: no adjacent-bar gap mark) or
        ``"reference"``. Saved in the model's metadata; a loaded model renders with the
        style it was trained on.
    epochs, batch_size, lr, weight_decay
        Training: AdamW with a one-cycle schedule, from scratch. ``epochs`` None (the
        default) is :func:`default_epochs`: 40 up to 8,000 accounts, fewer past them so
        that training time stops growing. 8,000 training accounts instead of 4,000 (40
        epochs both; ``simulate(n, seed=101)``, judged on ``simulate(3000, seed=909)``,
        training seed 0): ROC AUC 0.9892 -> 0.9933, recall at 1 % FPR 0.883 -> 0.911
        (8,000 with 20 epochs, the same training time as 4,000 with 40: 0.9915 / 0.907;
        with 30, seeds 0 / 1: 0.9929 / 0.900 and 0.9924 / 0.911 against 4,000's 0.9889 /
        0.883 for seed 1). 40 epochs by default:
        on validation data (trained on ``simulate(4000, seed=101)``, judged on
        ``simulate(3000, seed=909)``) the default ensemble gave ROC AUC 0.9917 / 0.9933
        and recall 0.921 / 0.916 at 1 % FPR for training seeds 0 / 1, against 0.9894 /
        0.9911 and 0.891 / 0.904 with 20 epochs, for twice the training time. The
        training flip of the fraudlens look is the price mirror (panels upside down,
        buys and sells swapped), which keeps a round trip's profit or loss: 0.9944 /
        0.9949 and 0.939 / 0.938 on the same data, against the plain flip's figures
        above.
    seed
        Seeds the split, the initialisation and the augmentation.
    val_share
        Stratified share of the accounts held out to pick the best epoch.
    threshold
        P(takeover) above which an account is flagged; ``None`` picks it on the
        validation split for a 1 % false-positive rate.
    num_threads
        CPU threads for training (torch) and scoring (batches of images scored side by
        side, one ONNX Runtime thread each); ``None`` (default) sizes them to the free
        cores: :func:`free_cores` for training, re-read after every epoch, and
        :func:`scoring_workers` at every scoring call.
    input_size
        ``(height, width)`` the images are resized to before the network; default the
        style's own size.
    mirror_tta
        Test-time mirror (off by default): the exported default ensemble also scores
        each image's price mirror, the training flip, and returns the mean of the two
        probabilities (:func:`fraudlens.market._cnn_torch.with_mirrored_members`: each
        member's twin with permuted first-layer weights, so the graph takes the same
        images). Only for ``"bars"`` in the fraudlens look at its own size. On
        validation data (trained on ``simulate(4000, seed=101)``, judged on
        ``simulate(3000, seed=909)``, training seeds 0 / 1 / 2) ROC AUC 0.9939 /
        0.9947 / 0.9939 -> 0.9943 / 0.9950 / 0.9948, recall at 1 % FPR 0.930 / 0.925 /
        0.925 -> 0.933 / 0.935 / 0.933 (paired bootstrap intervals of each recall gain
        include 0), for about two thirds more CPU per scored account (rendering
        included).
    kind_weights
        Extra weight in the training loss of each simulated account kind (the training
        data's ``kind`` label column; accounts of other kinds, or data without the
        column, weigh 1), multiplied into :meth:`fit`'s ``sample_weight``; ``None``
        (default): none. :data:`CNN_KIND_WEIGHTS` against none, on validation data (trained on
        ``simulate(4000, seed=101)``, judged on ``simulate(3000, seed=909)``,
        training seeds 0 / 1): busy-owner
        takeovers (``takeover_mixed``) flagged at 0.9 0.400 / 0.462 -> 0.559 / 0.549
        (paired bootstrap 95 % intervals of the gain +0.09..+0.21 / +0.04..+0.13),
        ROC AUC 0.9863 / 0.9884 -> 0.9874 / 0.9876, recall at 1 % FPR 0.863 / 0.886
        -> 0.871 / 0.893, normal accounts flagged at 0.9 0.0067 / 0.0053 -> 0.0093 /
        0.0067 (intervals of these three changes include 0); the three other kinds
        weighted 1.5 moved within noise. ``takeover_mixed`` alone at 3 (seed 0)
        gained as much on it but lost recall at 1 % FPR (0.849). Hard test
        (``simulate(2000, seed=202)``, measured once after the choice): ROC AUC
        0.9883 / 0.9911 -> 0.9896 / 0.9903, recall at 1 % FPR 0.869 / 0.880 -> 0.893 /
        0.878, ``takeover_mixed`` at 0.9 0.397 / 0.504 -> 0.550 / 0.550. Not the
        default because on the held-out real bars (``bench/market_real.py``, the
        CLI-trained CNN, blind sets seeds 4242 / 9001, one training) it lost: ROC AUC
        0.9973 / 0.9976 -> 0.9968 / 0.9965, recall at 1 % FPR 0.985 / 0.974 -> 0.974 /
        0.962, adjacent-leg takeovers at 1 % FPR 0.964 / 0.935 -> 0.905 / 0.858, its
        busy-owner takeovers unchanged (0.935 / 0.941 -> 0.941 / 0.935).
    fill_dropout, rerender_every
        Training-data augmentation (off by default, ``0.0``): every ``rerender_every``
        epochs each training account is rendered again with some of its unpaired legs
        left out, half of the accounts each losing each such leg with a probability
        drawn from ``[0, fill_dropout]`` (:class:`FillDropout`; the validation split
        keeps the images as they are). Not the default: on validation data (trained on
        ``simulate(4000, seed=101)``, judged on ``simulate(3000, seed=909)``, one torch
        thread, ``bench/_cnn_valid.py fit``), ``fill_dropout=0.8`` against none: 20
        epochs, training seeds 0 / 1, ROC AUC 0.9834 / 0.9865 -> 0.9822 / 0.9869, recall
        at 1 % FPR 0.836 / 0.858 -> 0.847 / 0.871, busy-owner takeovers
        (``takeover_mixed``) at 1 % FPR 0.405 / 0.477 -> 0.410 / 0.503, normal accounts
        above 0.9 0.0100 / 0.0047 -> 0.0060 / 0.0013 (paired bootstrap 95 % intervals of
        every gain include 0), busy owners above 0.9 0.395 / 0.400 -> 0.344 / 0.349; at
        the default 40 epochs, seeds 0 / 1: ROC AUC 0.9863 / 0.9884 -> 0.9844 / 0.9886
        (seed 0's interval -0.0035..-0.0003), recall 0.863 / 0.886 -> 0.845 / 0.897,
        busy owners at 1 % FPR 0.472 / 0.528 -> 0.421 / 0.574 and above 0.9 0.400 /
        0.462 -> 0.364 / 0.472, normals above 0.9 0.0067 / 0.0053 -> 0.0047 / 0.0033
        (the other intervals include 0): no gain beyond the seeds' spread, so neither
        the real-bar check nor the hard test was run. Re-rendering costs about 2 s per
        epoch on 4,000 accounts (an epoch's training 12-25 s on one thread).
    extreme_snap
        Training-data augmentation of the two-panel looks (default ``0.5``; ``0`` turns
        it off): each epoch, this share of the training accounts, drawn anew and
        without reading labels, is drawn with every fill within a tenth of its bar's
        range of the high or low at it in the range panel (:class:`ExtremeSnap`; the
        validation split and scoring draw fills where they are). The simulator's
        market makers sit exactly on quiet bars' edges more often than its thieves sit
        exactly on volatile bars' ones, and a CNN trained without it flagged takeovers
        whose round trips are exactly at the extremes less often (README, market on
        real bars). A ``fill_dropout`` above 0 replaces it.
    counterparty_weight
        Log-odds added to an account's score per unit of counterparty evidence, as in
        :class:`~fraudlens.market.detectors.FeatureDetector` (:mod:`fraudlens.market.
        _evidence`): an image shows one account, so the other side of its round trips
        is read from the trades of the other accounts in the data. None (the default)
        estimates it on the training data when fitting; 0 turns it off. Images scored
        on their own (:meth:`score_images`) have no such evidence. Models saved before
        it existed load with 0 and score as before.
    precision
        Training arithmetic: ``"auto"`` (default) trains in bfloat16 where the CPU
        multiplies it natively (AVX-512 BF16 or AMX) and in float32 elsewhere;
        ``"fp32"`` or ``"bf16"`` force one. Only the forward products of the training
        steps are bfloat16 (``torch.autocast``): the weights, the optimiser, the
        validation scores that pick the epoch and set the threshold, and the exported
        model are float32. The one used is ``precision_`` and the metadata's
        ``train_precision``. Trained on ``simulate(8000, seed=101)``, judged on
        ``simulate(3000, seed=909)`` (``bench/_cnn_valid.py fit``, one torch thread,
        40 epochs), seeds 0 / 1, float32 -> bfloat16: ROC AUC 0.9936 / 0.9931 ->
        0.9944 / 0.9934, recall at 1 % FPR 0.926 / 0.927 -> 0.930 / 0.921 (paired
        bootstrap intervals include 0), training 805 / 702 s -> 718 / 599 s.

    Attributes
    ----------
    onnx_bytes_ : bytes
        The exported model (uint8 images in, ``[p_takeover, p_normal]`` out).
    input_shape_ : tuple[int, int, int]
        ``(height, width, 3)`` the model takes.
    history_ : list[dict]
        Per-epoch training metrics.
    best_epoch_ : int
        The epoch kept (lowest validation loss).
    validation_ : dict
        Validation metrics of the kept epoch.
    train_seconds_ : float
        Wall time of :meth:`fit`.
    """

    name = "market-cnn"
    domain = "market"

    def __init__(
        self,
        arch: str = "bars",
        style: str = CNN_STYLE,
        epochs: int | None = None,
        batch_size: int = 64,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        seed: int = 0,
        val_share: float = 0.15,
        threshold: float | None = 0.5,
        num_threads: int | None = None,
        input_size: tuple[int, int] | None = None,
        mirror_tta: bool = False,
        kind_weights: dict[str, float] | None = None,
        fill_dropout: float = 0.0,
        rerender_every: int = 1,
        extreme_snap: float = 0.5,
        counterparty_weight: float | None = None,
        precision: str = "auto",
    ) -> None:
        self.arch = arch
        self.style = style
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.val_share = val_share
        self.threshold = threshold
        self.num_threads = num_threads
        self.input_size = input_size
        self.mirror_tta = mirror_tta
        self.kind_weights = kind_weights
        self.fill_dropout = fill_dropout
        self.rerender_every = rerender_every
        self.extreme_snap = extreme_snap
        self.counterparty_weight = counterparty_weight
        self.precision = precision
        self._session: Any = None

    # -- training ------------------------------------------------------------------------
    def epochs_for(self, n_accounts: int) -> int:
        """Epochs :meth:`fit` runs on ``n_accounts`` accounts: ``epochs`` when given, else
        :func:`default_epochs`."""
        return int(self.epochs) if self.epochs is not None else default_epochs(n_accounts)

    def _size(self) -> tuple[int, int]:
        if self.input_size is not None:
            return int(self.input_size[0]), int(self.input_size[1])
        return STYLES[self.style]

    def _augmentation(
        self, data: MarketData, images: np.ndarray, size: tuple[int, int]
    ) -> FillDropout | ExtremeSnap | None:
        """What draws each epoch's training images anew: fill dropout when it is set,
        else the extreme snap of the two-panel looks, else nothing."""
        if self.fill_dropout > 0:
            return FillDropout(
                data, style=self.style, size=size, rate=self.fill_dropout, seed=self.seed
            )
        if self.extreme_snap > 0 and len(panels(self.style)) > 1:  # a range panel to snap
            return ExtremeSnap(
                images, data, style=self.style, size=size, rate=self.extreme_snap, seed=self.seed
            )
        return None

    def _kind_factors(self, data: MarketData) -> np.ndarray | None:
        """Each account's ``kind_weights`` factor, or None when all would be 1."""
        table = dict(self.kind_weights or {})
        kinds = data.label_column("kind") if table else None
        if kinds is None:
            return None
        for kind, w in table.items():
            if not (np.isfinite(w) and w >= 0):
                raise DataError(f"kind weight of {kind!r} must be finite and >= 0, got {w}")
        factors = np.array([table.get(str(k), 1.0) for k in kinds], dtype=np.float64)
        return None if bool((factors == 1.0).all()) else factors

    def fit(
        self,
        data: MarketData,
        y: np.ndarray | None = None,
        *,
        sample_weight: np.ndarray | None = None,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
    ) -> Self:
        """Render every account of ``data`` and train the CNN from scratch.

        Parameters
        ----------
        data
            Trades (already windowed) and k-lines.
        y
            Labels aligned to ``data.account_ids``; default ``data.y()``.
        sample_weight
            Non-negative weight of each account (aligned like ``y``) in the training
            loss, e.g. analysts' reviewed cases counted as several simulated ones; all 1
            when None. Multiplied by ``kind_weights`` where the data has a ``kind``
            label column.
        progress
            Called after each epoch with ``(epoch, epochs, metrics)``.
        """
        from fraudlens.market import _cnn_torch

        t0 = time.perf_counter()
        labels = data.y() if y is None else np.asarray(y)
        if len(labels) != len(data.account_ids):
            raise DataError(
                f"got {len(labels)} labels for {len(data.account_ids)} accounts", column="label"
            )
        if len(np.unique(labels)) < 2:
            raise DataError("training needs both takeover (1) and normal (0) accounts")
        weight = None
        if sample_weight is not None:
            weight = np.asarray(sample_weight, dtype=np.float64).ravel()
            if len(weight) != len(labels):
                raise DataError(f"{len(labels)} labels but {len(weight)} sample weights")
            if not np.all(np.isfinite(weight)) or bool((weight < 0).any()) or weight.sum() <= 0:
                raise DataError("sample weights must be finite, >= 0 and not all 0")
        by_kind = self._kind_factors(data)
        if by_kind is not None:
            weight = by_kind if weight is None else weight * by_kind
            if weight.sum() <= 0:
                raise DataError("sample weights times kind weights are all 0")
        weight_cp, evidence = self._fit_counterparty_weight(data, labels, weight)
        size = self._size()
        images = resize_images(render_batch(data, style=self.style), size)
        flip_bands = panels(self.style) if self.input_size is None else None
        rerender = self._augmentation(data, images, size)
        result = _cnn_torch.train_network(
            images,
            labels,
            arch=self.arch,
            epochs=self.epochs_for(len(labels)),
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
            val_share=self.val_share,
            num_threads=self.num_threads,
            flip_bands=flip_bands,
            sample_weight=weight,
            progress=progress,
            rerender=rerender,
            rerender_every=self.rerender_every,
            precision=self.precision,
        )
        self.state_dict_ = {
            k: v.detach().cpu().numpy().copy() for k, v in result.net.state_dict().items()
        }
        net = result.net
        swap = _cnn_torch._mirror_channels(images, flip_bands)
        val_scores = result.val_scores
        if (
            self.mirror_tta
            and swap is not None
            and flip_bands is not None
            and isinstance(net, _cnn_torch.BarEnsemble)
        ):
            net = _cnn_torch.with_mirrored_members(net, flip_bands, swap)
            if len(result.val_index):
                import torch

                x_val = torch.from_numpy(images[result.val_index])
                val_scores = _cnn_torch._predict(net, x_val, 256)
        self.onnx_bytes_ = _blocked_layout(_cnn_torch.export_onnx(net, *size))
        self.input_shape_ = (size[0], size[1], 3)
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.precision_ = str(result.extra.get("precision", "fp32"))
        y_val = labels[result.val_index]
        if weight_cp > 0 and evidence is not None and len(result.val_index):
            # validation scores as scoring gives them: with the counterparty evidence
            val_scores = self._lifted(
                np.asarray(val_scores, dtype=np.float64), evidence[result.val_index], weight_cp
            )
        if self.threshold is not None:
            self.threshold_ = float(self.threshold)
        elif len(np.unique(y_val)) == 2:
            from fraudlens.evaluation import threshold_for

            self.threshold_ = threshold_for(y_val, val_scores, target_fpr=0.01)
        else:
            self.threshold_ = 0.5
        self.validation_ = self._validation_metrics(y_val, val_scores)
        self.counterparty_weight_ = weight_cp
        self._session = None
        self._weights_path: Path | None = None
        self.train_seconds_ = time.perf_counter() - t0
        return self

    def _fit_counterparty_weight(
        self, data: MarketData, labels: np.ndarray, weight: np.ndarray | None
    ) -> tuple[float, np.ndarray | None]:
        """The counterparty weight, given or estimated on the training accounts, and the
        training accounts' evidence (None when a weight of 0 is given)."""
        from fraudlens.market.features import account_features

        given = self.counterparty_weight
        if given is not None:
            value = _evidence.fit_weight(given, pd.DataFrame(), labels)
            if value == 0:
                return value, None
            return value, _evidence.evidence_of(account_features(data))
        feats = account_features(data)
        return _evidence.fit_weight(None, feats, labels, weight), _evidence.evidence_of(feats)

    @staticmethod
    def _lifted(scores: np.ndarray, ev: np.ndarray, weight: float) -> np.ndarray:
        """``scores`` (in place) with ``weight x ev`` added to the log-odds of the rows
        with evidence."""
        rows = np.flatnonzero(ev > 0)
        if len(rows):
            p = np.clip(scores[rows], _EPS, 1.0 - _EPS)
            scores[rows] = _evidence.lift(np.log(p) - np.log1p(-p), ev[rows], weight)
        return scores

    def _with_evidence(self, data: MarketData, scores: np.ndarray) -> np.ndarray:
        """``scores`` with the counterparty evidence of ``data``'s accounts added to their
        log-odds (in place; accounts without evidence keep their score)."""
        weight = float(getattr(self, "counterparty_weight_", 0.0))
        if weight <= 0 or len(scores) == 0 or len(data.trades) == 0:
            return scores
        from fraudlens.market.features import account_features

        ev = _evidence.evidence_of(account_features(data))
        return scores if ev is None else self._lifted(scores, ev, weight)

    def _validation_metrics(self, y: np.ndarray, s: np.ndarray) -> dict[str, float]:
        if len(y) == 0 or len(np.unique(y)) < 2:
            return {}
        from fraudlens.evaluation import recall_at_fpr
        from fraudlens.scoring import flag

        order = np.argsort(s)
        ranks = np.empty(len(s))
        ranks[order] = np.arange(1, len(s) + 1)
        pos = y == 1
        auc = (ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum())
        return {
            "n": len(y),
            "roc_auc": float(auc),
            "recall_at_1pct_fpr": recall_at_fpr(y, s, 0.01),
            "threshold": float(self.threshold_),
            "accuracy": float(np.mean(flag(s, self.threshold_) == pos)),
        }

    # -- scoring -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "onnx_bytes_"):
            raise RuntimeError("this CNNDetector is not fitted; call fit() or load it first")

    def _ort(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

            self._check_fitted()
            opts = ort.SessionOptions()
            # One thread per run: score_images runs batches side by side instead, on as
            # many threads as there are free cores at each call (scoring_workers).
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # A model saved before the blocked layout (fraudlens <= 5dc9e99's export) is
            # rewritten in memory here when the onnx package is at hand; the file stays.
            self._session = ort.InferenceSession(
                _blocked_layout(self.onnx_bytes_),
                sess_options=opts,
                providers=["CPUExecutionProvider"],
            )
        return self._session

    def score_images(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, 2)`` as ``[p_takeover, p_normal]`` for RGB images.

        ``images``: uint8 ``(n, H, W, 3)`` (or one ``(H, W, 3)`` image); images of
        another size are resized to the model's input size first.
        """
        self._check_fitted()
        arr = np.asarray(images)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise DataError(f"expected RGB images (n, height, width, 3), got shape {arr.shape}")
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        arr = resize_images(arr, self.input_shape_[:2])
        out = np.empty((len(arr), 2), dtype=np.float32)
        sess = self._ort()  # built here, once, not by each thread
        threads = self._threads(-(-len(arr) // _SCORE_BATCH))
        if threads == 1:
            self._score_into(sess, arr, out)
        else:
            # ONNX Runtime releases the GIL inside run(), and one session serves
            # concurrent runs: each thread scores whole batches of its own.
            from concurrent.futures import ThreadPoolExecutor

            starts = range(0, len(arr), _SCORE_BATCH)
            with ThreadPoolExecutor(threads) as pool:
                for _ in pool.map(
                    lambda i: self._score_into(
                        sess, arr[i : i + _SCORE_BATCH], out[i : i + _SCORE_BATCH]
                    ),
                    starts,
                ):
                    pass
        return out

    def _threads(self, batches: int) -> int:
        """Scoring threads for ``batches`` batches: ``num_threads`` or the free cores."""
        if batches <= 1:
            return 1
        threads = scoring_workers() if self.num_threads is None else int(self.num_threads)
        return max(1, min(threads, batches))

    @staticmethod
    def _score_into(sess: Any, images: np.ndarray, out: np.ndarray) -> None:
        """Probabilities of uint8 images of the model's size into ``out``, batch by batch."""
        for i in range(0, len(images), _SCORE_BATCH):
            batch = np.ascontiguousarray(images[i : i + _SCORE_BATCH])
            out[i : i + len(batch)] = sess.run(None, {"images": batch})[0]

    def score_image_bytes(
        self, payload: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> list[float]:
        """Score one encoded PNG or JPEG image: ``[p_takeover, p_normal]``.

        Raises
        ------
        ImageTooLargeError
            If the image header declares more than ``max_pixels`` pixels (checked before
            anything is decoded).
        DataError
            If the bytes are not a PNG or JPEG image that can be decoded.
        """
        rgb = decode_image(payload, max_pixels=max_pixels)
        return [float(v) for v in self.score_images(rgb[None])[0]]

    def decision_function(self, data: MarketData) -> np.ndarray:
        """P(takeover) for each account, in ``data.account_ids`` order, with the
        counterparty evidence (``counterparty_weight``) of the accounts in ``data``.

        The accounts are rendered a chunk at a time, so memory is bounded by the chunk
        (about 65 KB of pixels an account), not by the number of accounts. With more
        than one free core other threads score the chunks already drawn while the next
        is drawn (rendering and scoring overlap); the scores are the same either way.
        """
        self._check_fitted()
        n = len(data.account_ids)
        threads = self._threads(-(-n // _SCORE_BATCH))
        if threads == 1 or self.input_shape_[:2] != STYLES[self.style]:
            # A chunk at a time, so memory stays bounded by the chunk, not the accounts.
            scores = np.empty(n, dtype=np.float64)
            for start, imgs in render_chunks(data, style=self.style, chunk=_RENDER_CHUNK):
                scores[start : start + len(imgs)] = self.score_images(imgs)[:, 0]
            return self._with_evidence(data, scores)
        from concurrent.futures import ThreadPoolExecutor

        sess = self._ort()
        out = np.empty((n, 2), dtype=np.float32)
        with ThreadPoolExecutor(threads) as pool:
            jobs = [
                pool.submit(self._score_into, sess, imgs[i : i + _SCORE_BATCH], out[start + i :])
                for start, imgs in render_chunks(data, style=self.style, chunk=_RENDER_CHUNK)
                for i in range(0, len(imgs), _SCORE_BATCH)
            ]
            for job in jobs:
                job.result()
        return self._with_evidence(data, out[:, 0].astype(np.float64))

    # -- persistence ---------------------------------------------------------------------
    def save_files(self, path: Path) -> dict[str, Any]:
        """Write ``model.onnx`` and ``model.safetensors`` into ``path``; return metadata."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / _ONNX_FILE).write_bytes(self.onnx_bytes_)
        state = getattr(self, "state_dict_", None)
        if state is not None:
            from safetensors.numpy import save

            # Serialized here and written by Python: safetensors' own file writer reports a
            # full disk as a SafetensorError, not as the OSError the CLI reports in a line.
            weights_bytes = save({k: np.ascontiguousarray(v) for k, v in state.items()})
            (path / _WEIGHTS_FILE).write_bytes(weights_bytes)
        else:
            weights = getattr(self, "_weights_path", None)
            if weights is not None and weights.is_file():
                (path / _WEIGHTS_FILE).write_bytes(weights.read_bytes())
        return {
            "arch": self.arch,
            "style": self.style,
            "input_shape": list(self.input_shape_),
            "input_dtype": "uint8",
            "classes": list(CLASSES),
            "onnx_input": "images",
            "onnx_output": "probs",
            "best_epoch": getattr(self, "best_epoch_", None),
            "history": getattr(self, "history_", []),
            "validation": getattr(self, "validation_", {}),
            "train_seconds": getattr(self, "train_seconds_", None),
            "train_precision": getattr(self, "precision_", None),
            "counterparty_weight": float(getattr(self, "counterparty_weight_", 0.0)),
        }

    @staticmethod
    def recorded_style(metadata: dict[str, Any]) -> str:
        """The image style a saved model was trained on, from its ``metadata.json``: the
        look it is scored with. A model that recorded none predates the other two-panel
        look, ``"fraudlens"``."""
        params = metadata.get("params")
        style = metadata.get("style", params.get("style") if isinstance(params, dict) else None)
        return str(style) if style is not None else "fraudlens"

    @classmethod
    def load_files(cls, path: Path, metadata: dict[str, Any]) -> Self:
        """Load a detector for scoring from ``model.onnx`` (torch is not needed)."""
        import inspect

        path = Path(path)
        onnx_path = path / _ONNX_FILE
        if not onnx_path.is_file():
            raise FileNotFoundError(f"no {_ONNX_FILE} in {path}")
        params = dict(metadata.get("params", {}))
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        if "arch" in metadata:
            params["arch"] = metadata["arch"]
        params["style"] = cls.recorded_style(metadata)
        if params.get("input_size") is not None:
            params["input_size"] = tuple(params["input_size"])
        det = cls(**{k: v for k, v in params.items() if k in allowed})
        det.onnx_bytes_ = onnx_path.read_bytes()
        # Build the inference session now: a truncated or corrupt ONNX file then fails
        # here, where the registry reports the model as unloadable, not on first use.
        session = det._ort()
        shape = metadata.get("input_shape")
        if shape is None:
            dims = session.get_inputs()[0].shape
            shape = [int(dims[1]), int(dims[2]), 3]
        det.input_shape_ = (int(shape[0]), int(shape[1]), 3)
        default = 0.5 if det.threshold is None else det.threshold
        det.threshold_ = float(metadata.get("threshold", default))
        det.history_ = list(metadata.get("history", []))
        best = metadata.get("best_epoch")
        det.best_epoch_ = int(best) if best is not None else 0
        det.validation_ = dict(metadata.get("validation", {}))
        # absent from models saved before the evidence existed: they score as before
        det.counterparty_weight_ = float(metadata.get("counterparty_weight") or 0.0)
        # models saved before the choice existed were trained in float32
        det.precision_ = str(metadata.get("train_precision") or "fp32")
        det._weights_path = path / _WEIGHTS_FILE
        return det
