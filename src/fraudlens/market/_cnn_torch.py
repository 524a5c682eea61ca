"""PyTorch side of the market image CNN: networks, training loop and ONNX export.

Only training (and the benchmark) imports this module; scoring runs the exported ONNX
graph in ONNX Runtime and never needs torch.

Every network here takes what the renderer produces, uint8 images ``(n, H, W, 3)``
(channels last), and returns two logits in the reply order ``[takeover, normal]``.
Scaling to 0..1 and the move to channels-first happen inside the network, so the
exported ONNX graph takes the rendered images as they are.
"""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

__all__ = [
    "ARCHS",
    "BarCNN",
    "BarEnsemble",
    "ColumnCNN",
    "CompactCNN",
    "ImageChoice",
    "ResNet18",
    "TrainResult",
    "build_network",
    "export_onnx",
    "train_network",
    "with_mirrored_members",
]

ARCHS = ("bar", "bars", "columns", "compact", "resnet18")


class _Input(nn.Module):
    """uint8 NHWC -> float NCHW in 0..1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2).float().mul(1.0 / 255.0)


def _conv_bn(
    c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int | tuple[int, int] = 1
) -> nn.Sequential:
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    pad = (k[0] // 2, k[1] // 2)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _peak_pool(z: torch.Tensor, peak: int, k: int = 3) -> torch.Tensor:
    """Per channel of ``(n, c, time)``: the ``k`` largest local peaks and the mean.

    A local peak is a column that is the largest within ``peak // 2`` on either side.
    One event (a round trip, whose two legs may sit in neighbouring bars) spreads over
    a few columns: keeping only each channel's local maxima before ranking makes the
    second largest a second event, not the first one's neighbour.
    """
    top_peak = F.max_pool1d(z, peak, stride=1, padding=peak // 2)
    top = (z * (z >= top_peak).to(z.dtype)).topk(k, dim=2).values
    return torch.cat([top[:, :, i] for i in range(k)] + [z.mean(dim=2)], dim=1)


def _window_peak_pool(z: torch.Tensor, window: int, k: int = 3) -> torch.Tensor:
    """Per channel of ``(n, c, time)``: the ``k`` largest window peaks and the mean.

    Time is cut into windows of ``window`` columns; a window's maximum counts when it is
    at least as large as both neighbouring windows' (a local peak among windows), so one
    event spread over a few columns, or over two windows, is counted once. Two cheap
    max-pools (one over the full time axis with stride ``window``, one over the few
    windows) replace :func:`_peak_pool`'s sliding max over every column, which cost more
    than a convolution layer in ONNX Runtime.
    """
    if torch.onnx.is_in_onnx_export() or window < 2 or z.shape[2] % window:
        zw = F.max_pool1d(z, window, stride=window, ceil_mode=True) if window > 1 else z
        top_peak = F.max_pool1d(zw, 3, stride=1, padding=1)
    else:
        # The same maxima as the pools above, in plain tensor operations that train
        # faster in torch (a max over whole windows, then over each window's neighbours);
        # the exported graph keeps the pools.
        n, c, t = z.shape
        zw = z.reshape(n, c, t // window, window).amax(dim=3)
        edge = F.pad(zw, (1, 1), value=float("-inf"))
        top_peak = torch.maximum(torch.maximum(edge[:, :, :-2], zw), edge[:, :, 2:])
    top = (zw * (zw >= top_peak).to(zw.dtype)).topk(k, dim=2).values
    return torch.cat([top[:, :, i] for i in range(k)] + [z.mean(dim=2)], dim=1)


def _project(rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``rows`` ``(r, h)`` times each image of the NHWC batch ``x``: ``(n, r, w * c)``.

    A batched product of ``rows`` (expanded, not copied) with each image as it lies in
    memory. ``torch.matmul`` of a matrix with a batch copies the whole float batch into
    a transposed layout first, forward and backward; that copy was about a fifth of a
    training step of the default ensemble. The exporter gets the plain ``matmul``
    (one broadcast ONNX ``MatMul``); the result is the same.
    """
    n, h, w, c = x.shape
    xf = x.float().reshape(n, h, w * c)
    if torch.onnx.is_in_onnx_export():
        return torch.matmul(rows, xf)
    return torch.bmm(rows.expand(n, *rows.shape), xf)


class ColumnCNN(nn.Module):
    """A market CNN that reads the image column by column (bar by bar), then counts.

    Every column of the image is one bar (or part of one) and holds all there is to
    know about it: where its fills sit in the day's price range and inside the bar,
    which side they are, whether they are legs of an equal-size round trip, and how
    volatile the bar is for its day. So the network first turns each column into a
    feature vector, and only then looks along time:

    1. ``rows`` learned projections of a column's height, applied to each colour on
       its own (one matrix product on the uint8 image as it comes, channels last:
       no transpose of the full image), then batch norm and ReLU;
    2. a 1 x 1 convolution mixing those projections of the three colours into
       ``width`` features per column;
    3. ``temporal`` 1-D convolutions over time (kernel ``kernel``) relating a bar to its
       neighbours (legs of one round trip in adjacent bars);
    4. pooling over time: per channel the three largest local peaks and the mean
       ("is there a second such bar?" is what tells a takeover from one stopped-out
       trade), then a linear head with two logits ``[takeover, normal]``.

    It costs a fraction of :class:`CompactCNN`'s multiply-adds (no 2-D convolutions
    over the whole image), which makes training and ONNX scoring several times faster.
    """

    def __init__(
        self,
        n_classes: int = 2,
        height: int = 64,
        rows: int = 16,
        width: int = 48,
        temporal: int = 2,
        kernel: int = 3,
        peak: int = 7,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.n_rows = rows
        self.peak = peak
        # The 1/255 scaling of the pixels is folded into the projection's initial scale
        # (batch norm follows, so only the start matters): one pass less over the image.
        self.rows = nn.Parameter(torch.randn(rows, height) * (1.0 / height) ** 0.5 / 255.0)
        self.rows_bn = nn.BatchNorm1d(rows)
        self.mix = nn.Sequential(
            nn.Conv1d(3 * rows, width, 1, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        for _ in range(temporal):
            layers += [
                nn.Conv1d(width, width, kernel, padding=kernel // 2, bias=False),
                nn.BatchNorm1d(width),
                nn.ReLU(inplace=True),
            ]
        self.temporal = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(4 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, c = x.shape[2], x.shape[3]
        return self.after_projection(_project(self.rows, x), w, c)

    def after_projection(self, z: torch.Tensor, w: int, c: int) -> torch.Tensor:
        """The network after its row projection ``z`` ``(n, rows, w * c)``."""
        n = z.shape[0]
        z = F.relu(self.rows_bn(z))
        # (n, rows, w, c) -> (n, rows * c, w): the small tensor is the one transposed.
        z = z.reshape(n, self.n_rows, w, c).permute(0, 1, 3, 2).reshape(n, self.n_rows * c, w)
        z = self.temporal(self.mix(z))
        return self.head(self.dropout(self._pool(z)))

    def _pool(self, z: torch.Tensor) -> torch.Tensor:
        return _peak_pool(z, self.peak)


class BarCNN(ColumnCNN):
    """:class:`ColumnCNN`, narrower, with window-peak pooling (one member of the default).

    The same column network (each image column, a bar, projected by one matrix product
    on the uint8 image, then 1-D convolutions over time) with ``width`` 32 features per
    column instead of 48, and pooling over windows of ``window`` columns
    (:func:`_window_peak_pool`): per channel the three largest window peaks and the
    mean. A window of 4 columns is one bar of a 72-bar (6 h) picture or a few bars of a
    longer one; a round trip whose legs sit in neighbouring bars stays one peak, and a
    second round trip elsewhere is a second peak. It needs about half of
    :class:`ColumnCNN`'s multiply-adds and of its time in ONNX Runtime, and is about as
    accurate on validation data.
    """

    def __init__(
        self,
        n_classes: int = 2,
        height: int = 64,
        rows: int = 16,
        width: int = 32,
        temporal: int = 2,
        kernel: int = 3,
        window: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(
            n_classes,
            height=height,
            rows=rows,
            width=width,
            temporal=temporal,
            kernel=kernel,
            dropout=dropout,
        )
        self.window = window

    def _pool(self, z: torch.Tensor) -> torch.Tensor:
        return _window_peak_pool(z, self.window)


class BarEnsemble(nn.Module):
    """The default market CNN: ``members`` :class:`BarCNN` networks, averaged.

    The members differ only in their initialisation (and dropout); they are trained
    side by side on the same batches, each on its own loss
    (:meth:`member_logits`), and the model's probability is their mean probability.
    One network's result swings with its initialisation (recall at 1 % FPR 0.865 to
    0.914 on one validation set for two seeds); the mean of three is steadier and
    better than any one, at three times one small network's cost, still well below
    :class:`CompactCNN`'s. The pixels are cast to float once for all members.
    """

    def __init__(self, n_classes: int = 2, height: int = 64, members: int = 3) -> None:
        super().__init__()
        self.members = nn.ModuleList(BarCNN(n_classes, height=height) for _ in range(members))

    def member_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        # One matrix product projects the image for every member (their rows stacked),
        # then each member goes on alone: the same function as each member's forward,
        # with the float image read once instead of once per member.
        w, c = x.shape[2], x.shape[3]
        members = [m for m in self.members if isinstance(m, BarCNN)]
        z = _project(torch.cat([m.rows for m in members]), x)
        parts = z.split([m.n_rows for m in members], dim=1)
        return [m.after_projection(p, w, c) for m, p in zip(members, parts, strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The log of the members' mean probability: its softmax is that mean.
        probs = torch.stack([torch.softmax(z, dim=1) for z in self.member_logits(x)])
        return torch.log(probs.mean(dim=0).clamp_min(1e-12))


def with_mirrored_members(
    ens: BarEnsemble, bands: tuple[tuple[int, int], ...], swap: tuple[int, int]
) -> BarEnsemble:
    """``ens`` plus, for each member, a copy that reads the price-mirrored image.

    Test-time augmentation folded into the weights: the mirror (each row band in
    ``bands`` upside down, channels ``swap`` exchanged; the training flip of
    :func:`_augment`) only reorders the rows a member's row projection reads and the
    colours its 1 x 1 mix reads, so a member applied to the mirrored image is the same
    member with its projection's columns and its mix's input channels permuted. The
    result, ``2 m`` members, scores an image as the mean of the ensemble's probability
    on it and on its mirror, in one pass and one graph (exported like any
    :class:`BarEnsemble`), without the mirrored copy of the image.
    """
    out = copy.deepcopy(ens)
    first = ens.members[0]
    assert isinstance(first, BarCNN)
    height = int(first.rows.shape[1])
    perm = torch.arange(height)
    for r0, r1 in bands:
        perm[r0:r1] = torch.arange(r1 - 1, r0 - 1, -1)
    colours = [0, 1, 2]
    colours[swap[0]], colours[swap[1]] = swap[1], swap[0]
    rows = first.n_rows
    mix_perm = torch.tensor([r * 3 + colours[c] for r in range(rows) for c in range(3)])
    for member in ens.members:
        assert isinstance(member, BarCNN)
        twin = copy.deepcopy(member)
        src_mix, twin_mix = member.mix[0], twin.mix[0]
        assert isinstance(src_mix, nn.Conv1d) and isinstance(twin_mix, nn.Conv1d)
        with torch.no_grad():
            twin.rows.copy_(member.rows[:, perm])
            twin_mix.weight.copy_(src_mix.weight[:, mix_perm])
        out.members.append(twin)
    return out.eval()


class _GroupedBars(nn.Module):
    """A :class:`BarEnsemble` as one network of grouped layers, for export and scoring.

    The members' row projections stacked into one matrix product, their 1 x 1 and
    temporal convolutions as convolutions with one group per member, their heads as one
    batched product: the same function as the ensemble (same weights, same mean of the
    members' probabilities) in about a third as many graph nodes, which ONNX Runtime
    runs faster than three separate chains.

    Training runs this form too (:func:`train_network`), then writes the weights back
    into the ensemble (:meth:`write_to`): one batch norm, pool and head for all members
    instead of one each, about a quarter less time a step under bfloat16. With
    ``grouped_convs`` False the convolutions run one per member outside an export
    (float32 grouped convolutions train slower in torch than separate ones); the weights
    and the function are the same either way.
    """

    def __init__(self, ens: BarEnsemble, *, grouped_convs: bool = True) -> None:
        super().__init__()
        self.grouped_convs = grouped_convs
        members = [b for b in ens.members if isinstance(b, BarCNN)]
        first = members[0]
        self.m = m = len(members)
        self.n_rows = rows = first.n_rows
        self.window = first.window
        self.width = width = first.head.in_features // 4
        states = [b.state_dict() for b in members]
        height = int(states[0]["rows"].shape[1])
        self.rows = nn.Parameter(torch.empty(m * rows, height))
        self.rows_bn = nn.BatchNorm1d(m * rows)
        self.mix = nn.Sequential(
            nn.Conv1d(3 * rows * m, width * m, 1, groups=m, bias=False),
            nn.BatchNorm1d(width * m),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for i in range(0, len(first.temporal), 3):
            k = int(states[0][f"temporal.{i}.weight"].shape[2])
            layers += [
                nn.Conv1d(width * m, width * m, k, padding=k // 2, groups=m, bias=False),
                nn.BatchNorm1d(width * m),
                nn.ReLU(),
            ]
        self.temporal = nn.Sequential(*layers)
        self.dropout = nn.Dropout(first.dropout.p)
        self.head_w = nn.Parameter(torch.stack([st["head.weight"] for st in states]))
        self.head_b = nn.Parameter(torch.stack([st["head.bias"] for st in states]))
        # The layers above are named like a member's: each tensor is the members' stacked
        # along the output channels (a grouped convolution's weight is laid out so).
        own = self.state_dict()
        for key in own:
            if key.startswith("head_"):
                continue
            if key.endswith("num_batches_tracked"):
                own[key] = states[0][key].clone()
            else:
                own[key] = torch.cat([st[key] for st in states]).detach().clone()
        self.load_state_dict(own)

    def _block(self, layers: nn.Sequential, at: int, z: torch.Tensor) -> torch.Tensor:
        """Convolution, batch norm and ReLU ``layers[at : at + 3]``, the convolution
        grouped or one per member."""
        conv, norm, act = layers[at], layers[at + 1], layers[at + 2]
        assert isinstance(conv, nn.Conv1d)
        if self.grouped_convs or torch.onnx.is_in_onnx_export():
            return act(norm(conv(z)))
        parts = zip(z.chunk(self.m, dim=1), conv.weight.chunk(self.m), strict=True)
        z = torch.cat([F.conv1d(zj, wj, padding=conv.padding) for zj, wj in parts], dim=1)
        return act(norm(z))

    def member_logits_stacked(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's two logits: ``(n, members, 2)``."""
        n, _, w, c = x.shape
        z = F.relu(self.rows_bn(_project(self.rows, x)))
        # (n, m * rows, w, c) -> (n, m * rows * c, w): member j's channels stay a block
        z = z.reshape(n, self.m * self.n_rows, w, c).permute(0, 1, 3, 2)
        z = self._block(self.mix, 0, z.reshape(n, self.m * self.n_rows * c, w))
        for at in range(0, len(self.temporal), 3):
            z = self._block(self.temporal, at, z)
        pooled = _window_peak_pool(z, self.window)  # (n, 4 * m * width), 4 blocks
        feats = pooled.reshape(n, 4, self.m, self.width).permute(0, 2, 1, 3)
        feats = self.dropout(feats.reshape(n, self.m, 4 * self.width))
        return torch.einsum("nmf,mcf->nmc", feats, self.head_w) + self.head_b

    def member_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Like :meth:`BarEnsemble.member_logits`: one ``(n, 2)`` tensor per member."""
        return list(self.member_logits_stacked(x).unbind(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.member_logits_stacked(x), dim=2).mean(dim=1)
        return torch.log(probs.clamp_min(1e-12))

    def write_to(self, ens: BarEnsemble) -> BarEnsemble:
        """Put these weights (and batch-norm statistics) into ``ens``, an ensemble of
        the shape this one was built from; returns ``ens``."""
        own = self.state_dict()
        members = [b for b in ens.members if isinstance(b, BarCNN)]
        if len(members) != self.m or len(ens.members) != self.m:
            raise ValueError(f"expected an ensemble of {self.m} members")
        for j, member in enumerate(members):
            state = member.state_dict()
            for key in state:
                if key in ("head.weight", "head.bias"):
                    value = own["head_w" if key == "head.weight" else "head_b"][j]
                elif key.endswith("num_batches_tracked"):
                    value = own[key]
                else:
                    value = own[key].chunk(self.m)[j]
                state[key] = value.detach().clone()
            member.load_state_dict(state)
        return ens


class CompactCNN(nn.Module):
    """A small CNN for trade images that reads them bar by bar and counts patterns.

    2-D convolutions (3 x 3) halve the height at each step and keep the full time
    resolution, so a bar one pixel wide and its neighbours stay apart; after them each
    column of the feature map describes one bar: where its fills sit in it, how
    volatile it is, and what the neighbouring bars hold. A convolution as tall as what
    is left collapses the height, and a 1-D convolution over time relates each bar to
    its neighbours (round trips split over adjacent bars).

    Pooling over time keeps, per channel, the largest, the second and the third largest
    local peak (a column that is the largest within three on either side) and the mean:
    "the second strongest round trip" is what tells a repeated pattern from one
    stopped-out trade, and top-k pooling makes that count readable to the linear head.
    Two logits come out, ``[takeover, normal]``.
    """

    def __init__(
        self,
        n_classes: int = 2,
        channels: tuple[int, ...] = (12, 16, 24, 32),
        width: int = 64,
        dropout: float = 0.1,
        height: int = 64,
        width_strides: tuple[int, ...] = (1, 1, 1, 1),
        peak: int = 7,
    ) -> None:
        super().__init__()
        self.input = _Input()
        self.peak = peak
        layers: list[nn.Module] = []
        c_in = 3
        h = height
        for c_out, ws in zip(channels, width_strides, strict=True):
            layers.append(_conv_bn(c_in, c_out, 3, stride=(2, ws)))
            c_in = c_out
            h = (h + 1) // 2
        self.features = nn.Sequential(*layers)
        self.collapse = nn.Sequential(
            nn.Conv2d(c_in, width, (h, 1), bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.temporal = nn.Sequential(
            nn.Conv1d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(4 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.collapse(self.features(self.input(x))).squeeze(2)  # (n, width, time)
        z = self.temporal(z)
        return self.head(self.dropout(_peak_pool(z, self.peak)))


class _BasicBlock(nn.Module):
    """Two 3 x 3 convolutions with a shortcut (ResNet v1 basic block)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNet18(nn.Module):
    """ResNet-18 (basic blocks, [2, 2, 2, 2]), the reference's architecture.

    Any input size works: the stem downsamples by 4, the stages by 8 more, and an
    adaptive average pool ends the feature extractor.
    """

    def __init__(self, n_classes: int = 2) -> None:
        super().__init__()
        self.input = _Input()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        layers: list[nn.Module] = []
        c_in = 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_float(self.input(x))

    def forward_float(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for float images ``(n, 3, H, W)`` scaled to 0..1."""
        z = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(z), 1))


def build_network(arch: str, n_classes: int = 2, height: int = 64) -> nn.Module:
    """A freshly initialised network: ``"bars"`` (three ``"bar"`` networks averaged),
    ``"bar"``, ``"columns"``, ``"compact"`` or ``"resnet18"``."""
    if arch == "bars":
        return BarEnsemble(n_classes, height=height)
    if arch == "bar":
        return BarCNN(n_classes, height=height)
    if arch == "columns":
        return ColumnCNN(n_classes, height=height)
    if arch == "compact":
        return CompactCNN(n_classes, height=height)
    if arch == "resnet18":
        return ResNet18(n_classes)
    raise ValueError(f"unknown CNN architecture {arch!r}; choose one of {ARCHS}")


class _WithSoftmax(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def export_onnx(net: nn.Module, height: int, width: int) -> bytes:
    """Export ``net`` plus a softmax to ONNX bytes.

    Input ``images``: uint8 ``(batch, height, width, 3)``; output ``probs``: float32
    ``(batch, 2)`` in the order ``[takeover, normal]``. The batch size is dynamic.
    Uses the ``torch.export`` based exporter, falling back to the TorchScript one. The
    default ensemble (:class:`BarEnsemble`) is exported as one grouped network
    (:class:`_GroupedBars`, the same function, faster in ONNX Runtime).
    """
    import logging
    import warnings

    net = _GroupedBars(net) if isinstance(net, BarEnsemble) else copy.deepcopy(net)
    model = _WithSoftmax(net).eval()
    example = torch.zeros((2, height, width, 3), dtype=torch.uint8)
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                program = torch.onnx.export(
                    model,
                    (example,),
                    input_names=["images"],
                    output_names=["probs"],
                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                    opset_version=18,
                    dynamo=True,
                    verbose=False,
                )
                if program is None:
                    raise RuntimeError("the exporter returned no program")
                return bytes(program.model_proto.SerializeToString())
            except Exception:  # the new exporter is young: fall back to TorchScript's
                buf = io.BytesIO()
                torch.onnx.export(
                    model,
                    (example,),
                    buf,  # type: ignore[arg-type]
                    input_names=["images"],
                    output_names=["probs"],
                    dynamic_axes={"images": {0: "batch"}, "probs": {0: "batch"}},
                    opset_version=17,
                    dynamo=False,
                )
                return buf.getvalue()
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


PRECISIONS = ("auto", "fp32", "bf16")


def training_precision(precision: str) -> str:
    """``"bf16"`` or ``"fp32"``: what ``precision`` means on this CPU.

    ``"auto"`` is bfloat16 where the CPU multiplies it natively (AVX-512 BF16 or AMX),
    float32 elsewhere (emulated bfloat16 would be slower than float32).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    cpu = torch.cpu
    native = any(
        bool(getattr(cpu, name, lambda: False)())
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )
    return "bf16" if native else "fp32"


@dataclass
class TrainResult:
    """What :func:`train_network` returns."""

    net: nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    val_index: np.ndarray
    val_scores: np.ndarray  # P(takeover) of the validation images at the best epoch
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _augment(
    x: torch.Tensor,
    gen: torch.Generator,
    max_shift: int,
    flip_bands: tuple[tuple[int, int], ...],
    swap: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random horizontal shifts (zero fill) and vertical flips of a uint8 NHWC batch.

    Each band of rows ``[r0, r1)`` in ``flip_bands`` (an image's panels) is flipped on
    its own. With ``swap``, a pair of channel indices, the flipped images also swap
    those two channels: for the fraudlens look (red buys, green sells) that is the
    price mirror, the same account with prices read upside down and every buy a sell
    (:func:`_mirror_channels`).
    """
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    if flip_bands and bool(flip.any()):
        x = x.clone()
        idx = torch.nonzero(flip).flatten()
        # gathered once, flipped, put back: cheaper than indexed writes per band
        sub = x.index_select(0, idx)
        for r0, r1 in flip_bands:
            sub[:, r0:r1] = sub[:, r0:r1].flip(1)
        if swap is not None:
            order = list(range(x.shape[3]))
            order[swap[0]], order[swap[1]] = swap[1], swap[0]
            sub = sub.index_select(3, torch.tensor(order))
        x.index_copy_(0, idx, sub)
    if max_shift > 0:
        shift = int(torch.randint(-max_shift, max_shift + 1, (1,), generator=gen))
        if shift:
            x = torch.roll(x, shift, dims=2)
            if shift > 0:
                x[:, :, :shift] = 0
            else:
                x[:, :, shift:] = 0
    return x


def _mirror_channels(
    images: np.ndarray, flip_bands: tuple[tuple[int, int], ...] | None
) -> tuple[int, int] | None:
    """The channels a flip swaps for ``images``: red and green for the fraudlens look.

    A flip of each panel alone turns "buy at the high, sell at the low" into "buy at
    the low, sell at the high": a losing round trip into a winning one, a stopped-out
    momentum trade into spread capture. Swapping the buy (red) and sell (green) colours
    as well gives the price mirror instead (prices read upside down, so each buy is a
    sell): a loss stays a loss, a long trade becomes a short one. Rendering the mirrored
    trades and bars gives the flipped, swapped image up to rounding (99.96 % of the
    pixels of ``simulate(3000, seed=909)``'s images alike; the others are bar ends and
    fill marks one row apart). The reference look's colours (red ``(255, 0, 0)`` buys, green
    ``(0, 128, 0)`` sells on white) are not a channel swap apart: it keeps the plain flip.
    """
    from fraudlens.market.render import STYLES, panels

    if tuple(images.shape[1:3]) != STYLES["fraudlens"] or flip_bands is None:
        return None
    return (0, 1) if tuple(map(tuple, flip_bands)) == panels("fraudlens") else None


def _average_precision(y: np.ndarray, s: np.ndarray) -> float:
    order = np.argsort(-s, kind="stable")
    yy = y[order]
    if yy.sum() == 0:
        return float("nan")
    tp = np.cumsum(yy)
    precision = tp / np.arange(1, len(yy) + 1)
    return float(np.sum(precision * yy) / yy.sum())


def _predict(net: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            out.append(torch.softmax(net(x[i : i + batch_size]), dim=1)[:, 0])
    return torch.cat(out).numpy() if out else np.empty(0, dtype=np.float32)


@dataclass(frozen=True)
class ImageChoice:
    """Training images as a choice between the images :func:`train_network` was given
    and a second set: image ``i`` is ``alt[i]`` where ``use_alt[i]``, else the given
    one. What a ``rerender`` that redraws only some accounts returns: each batch is
    gathered from the two, with no third array of every training image.
    """

    alt: np.ndarray
    use_alt: np.ndarray

    def checked(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(alt, use_alt)`` checked against ``images``: same shape and dtype, one
        boolean per image."""
        which = np.asarray(self.use_alt)
        if which.dtype != np.bool_ or which.shape != (len(images),):
            raise ValueError(
                f"rerender chose with {which.shape} {which.dtype}, expected ({len(images)},) bool"
            )
        return _same_as(np.asarray(self.alt), images), which


def _same_as(drawn: np.ndarray, images: np.ndarray) -> np.ndarray:
    """``drawn``, C-contiguous, after checking it has the shape and dtype of ``images``."""
    if drawn.shape != images.shape or drawn.dtype != images.dtype:
        raise ValueError(
            f"rerender gave images {drawn.shape} {drawn.dtype}, "
            f"expected {images.shape} {images.dtype}"
        )
    return np.ascontiguousarray(drawn)


def _batch_images(
    x: torch.Tensor, choice: tuple[torch.Tensor, torch.Tensor] | None, b: torch.Tensor
) -> torch.Tensor:
    """The images of batch ``b``: rows of ``x``, those ``choice`` picks from its alt."""
    xb = x[b]  # a copy: indexing with a tensor gathers
    if choice is not None:
        alt, which = choice
        pick = which[b]
        if bool(pick.any()):
            xb[pick] = alt[b[pick]]
    return xb


def train_network(
    images: np.ndarray,
    y: np.ndarray,
    *,
    arch: str = "bars",
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    val_share: float = 0.15,
    num_threads: int | None = None,
    max_shift: int = 8,
    flip_bands: tuple[tuple[int, int], ...] | None = None,
    sample_weight: np.ndarray | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    rerender: Callable[[int], np.ndarray | ImageChoice] | None = None,
    rerender_every: int = 1,
    precision: str = "fp32",
) -> TrainResult:
    """Train a network from scratch on rendered images.

    AdamW with a one-cycle learning-rate schedule, class-balanced cross-entropy, random
    shifts and flips (for the fraudlens look, the price mirror: panels flipped, buy and
    sell colours swapped; :func:`_mirror_channels`). A stratified ``val_share`` of the
    images is held out; the epoch with the lowest validation loss is kept.

    Parameters
    ----------
    images
        uint8 ``(n, H, W, 3)``.
    y
        1 = takeover, 0 = normal.
    num_threads
        Torch threads; ``None`` sizes them to the free cores before every epoch
        (:func:`fraudlens._cores.free_cores`), so training neither idles cores
        nor collapses beside other CPU-bound jobs.
    max_shift
        Largest random horizontal shift, in pixels.
    flip_bands
        Row bands flipped (each on its own) in half of the training images; default the
        whole image, ``()`` for no flips. When they are the fraudlens look's two panels
        (:func:`fraudlens.market.render.panels`) and the images have its size, the
        flipped images also swap red and green (the price mirror). On validation data
        (trained on ``simulate(4000, seed=101)``, judged on ``simulate(3000,
        seed=909)``, 40 epochs) the mirror gave ROC AUC 0.9944 / 0.9949 and recall
        0.939 / 0.938 at 1 % FPR for training seeds 0 / 1, against 0.9917 / 0.9933 and
        0.921 / 0.916 with the plain flip.
    sample_weight
        Per-image weight in the loss (normalised to mean 1 over the training part, so
        the learning rate means the same with or without it); all 1 when None.
    progress
        Called after each epoch with ``(epoch, epochs, metrics)``.
    rerender
        Training-data augmentation that needs the trades, not the pixels: called with
        the epoch number before epochs 1, ``1 + rerender_every``, ...; returns new images
        of all ``n`` accounts (same order, shape and dtype as ``images``), which the
        training batches read until the next call (shifts and flips still apply), or an
        :class:`ImageChoice` of ``images`` and a second set. The held-out validation
        images are always ``images`` as given. E.g. the detector's fill dropout
        (:class:`fraudlens.market._cnn.FillDropout`) and extreme snap
        (:class:`fraudlens.market._cnn.ExtremeSnap`, a choice).
    precision
        ``"fp32"``, ``"bf16"`` (the training steps' forward pass under bfloat16
        autocast; weights, optimiser and validation stay float32) or ``"auto"``
        (:func:`training_precision`). ``TrainResult.extra["precision"]`` says which ran.
    """
    from fraudlens._cores import free_cores

    t_start = time.perf_counter()
    bf16 = training_precision(precision) == "bf16"
    threads = free_cores() if num_threads is None else max(1, int(num_threads))
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    y = np.asarray(y).astype(np.int64)
    n = len(y)
    bands = ((0, images.shape[1]),) if flip_bands is None else tuple(flip_bands)
    swap = _mirror_channels(images, flip_bands)

    # Stratified hold-out.
    val_parts = []
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == label))
        val_parts.append(idx[: round(val_share * len(idx))])
    val_idx = np.sort(np.concatenate(val_parts)) if val_share > 0 else np.empty(0, np.int64)
    train_idx = np.setdiff1d(np.arange(n), val_idx)

    x_all = torch.from_numpy(np.ascontiguousarray(images))
    # Class order of the logits is [takeover, normal].
    target = torch.from_numpy(1 - y)
    counts = np.bincount(y[train_idx], minlength=2).astype(np.float64)
    weights = torch.tensor(
        [n / (2 * max(counts[1], 1)), n / (2 * max(counts[0], 1))], dtype=torch.float32
    )

    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    sw = sw / max(float(sw[train_idx].mean()), 1e-12)
    sw_t = torch.from_numpy(sw.astype(np.float32))
    net = build_network(arch, height=int(images.shape[1]))
    # The default ensemble trains in its grouped form (the same function and starting
    # weights), written back into ``net`` at the end.
    model: nn.Module = (
        _GroupedBars(net, grouped_convs=bf16) if isinstance(net, BarEnsemble) else net
    )
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_idx) / batch_size))
    total_steps = epochs * steps_per_epoch
    sched: torch.optim.lr_scheduler.LRScheduler
    if total_steps >= 8:
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=total_steps, pct_start=0.25
        )
    else:  # too few steps for the schedule's phases: a constant rate
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    gen = torch.Generator().manual_seed(seed)
    x_val = x_all[torch.from_numpy(val_idx)]
    y_val = y[val_idx]
    x_train = x_all
    choice: tuple[torch.Tensor, torch.Tensor] | None = None  # (alt images, which)
    every = max(1, int(rerender_every))

    history: list[dict[str, float]] = []
    best = (math.inf, -1)
    best_state: dict[str, torch.Tensor] | None = None
    best_scores = np.empty(0)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        if num_threads is None and epoch > 1:
            threads = free_cores(own_threads=threads)
            torch.set_num_threads(threads)
        if rerender is not None and (epoch - 1) % every == 0:
            drawn = rerender(epoch)
            if isinstance(drawn, ImageChoice):
                alt, which = drawn.checked(images)
                x_train, choice = x_all, (torch.from_numpy(alt), torch.from_numpy(which))
            else:
                x_train, choice = torch.from_numpy(_same_as(np.asarray(drawn), images)), None
        model.train()
        order = torch.from_numpy(rng.permutation(train_idx))
        total, seen = 0.0, 0
        for i in range(0, len(order), batch_size):
            b = order[i : i + batch_size]
            if len(b) < 2:  # batch norm needs two samples
                continue
            xb = _augment(_batch_images(x_train, choice, b), gen, max_shift, bands, swap)
            # an ensemble's members are trained each on its own loss
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                outs = model.member_logits(xb) if isinstance(model, _GroupedBars) else [model(xb)]
            outs = [z.float() for z in outs]
            per = torch.stack(
                [F.cross_entropy(z, target[b], weight=weights, reduction="none") for z in outs]
            ).mean(dim=0)
            w = sw_t[b]
            loss = (per * w).sum() / (weights[target[b]] * w).sum().clamp_min(1e-12)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
            seen += len(b)
        metrics: dict[str, float] = {
            "epoch": epoch,
            "train_loss": total / max(seen, 1),
            "threads": threads,
        }
        if len(val_idx):
            s = _predict(model, x_val, 256)
            p = np.clip(s.astype(np.float64), 1e-7, 1 - 1e-7)
            metrics["val_loss"] = float(-np.mean(y_val * np.log(p) + (1 - y_val) * np.log(1 - p)))
            metrics["val_ap"] = _average_precision(y_val, s)
            metrics["val_accuracy"] = float(np.mean((s > 0.5) == (y_val == 1)))
            key = metrics["val_loss"]
        else:
            key = metrics["train_loss"]
            s = np.empty(0)
        metrics["seconds"] = time.perf_counter() - t0
        history.append(metrics)
        if key < best[0]:
            best = (key, epoch)
            best_state = copy.deepcopy(model.state_dict())
            best_scores = s
        if progress is not None:
            progress(epoch, epochs, metrics)
    if best_state is not None:
        model.load_state_dict(best_state)
    if isinstance(model, _GroupedBars) and isinstance(net, BarEnsemble):
        model.write_to(net)
    net.eval()
    return TrainResult(
        net=net,
        history=history,
        best_epoch=best[1],
        val_index=val_idx,
        val_scores=best_scores,
        seconds=time.perf_counter() - t_start,
        extra={"precision": "bf16" if bf16 else "fp32"},
    )
