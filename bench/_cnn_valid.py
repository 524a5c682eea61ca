"""Validation harness for the market CNN: train on one simulated set, judge on another.

Validation data only (never the hard test set of ``bench/market.py``):
train on ``window(simulate(4000, seed=101))``, judge on ``window(simulate(3000,
seed=909))``. Busy-owner recall is the share of ``takeover_mixed`` accounts above the
threshold that lets 1 % of the judge set's normal accounts through.

Run:
  python bench/_cnn_valid.py prepare                    # simulate, render, cache images
  python bench/_cnn_valid.py train --seed 0             # train the default, keep snapshots
  python bench/_cnn_valid.py score --seeds 0 1 2        # the default and the variants
  python bench/_cnn_valid.py bootstrap --seeds 0 1 2    # paired bootstrap, TTA - default
  python bench/_cnn_valid.py fit --seed 0 --fill-dropout 0.8 --tag drop  # a CNNDetector
  python bench/_cnn_valid.py compare --seeds 0 1 --a base --b drop   # paired bootstrap

``train`` trains exactly as :class:`fraudlens.market.detectors.CNNDetector` does (the
same :func:`train_network` call) on one torch thread, and also keeps the weights of the
last ``--keep`` epochs, so scoring-time variants (test-time augmentation, weight
averages of the last epochs, snapshot ensembles) are judged without retraining.

``fit`` trains a whole :class:`~fraudlens.market.detectors.CNNDetector` (default style,
one torch thread) on the training accounts themselves, so training options that need the
trades, not the cached images (``--fill-dropout``: re-rendered training images), are
judged the same way; it writes the judge set's scores to ``{tag}fit_seed{seed}.npz``
and prints ROC AUC, recall at 1 % FPR, busy-owner recall at 1 % FPR and the share of
normal accounts above 0.9.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np

OUT = Path(os.environ.get("CNNVAL_DIR", "/tmp/cnnval"))


def _quality(y, s, kind):
    from sklearn.metrics import roc_auc_score

    from fraudlens.evaluation import recall_at_fpr, threshold_for

    thr = threshold_for(y, s, target_fpr=0.01)
    busy = kind == "takeover_mixed"
    return {
        "auc": float(roc_auc_score(y, s)),
        "recall": recall_at_fpr(y, s, 0.01),
        "busy": float(np.mean(s[busy] > thr)),
    }


def prepare() -> None:
    from fraudlens.market.data import window
    from fraudlens.market.render import render_batch
    from fraudlens.market.simulate import simulate

    OUT.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", 4000, 101), ("judge", 3000, 909)):
        data = window(simulate(n, seed=seed))
        np.save(OUT / f"{name}_x.npy", render_batch(data, style="fraudlens"))
        np.save(OUT / f"{name}_y.npy", data.y().astype(np.int8))
        kinds = data.label_column("kind")
        assert kinds is not None  # the simulator labels every account's kind
        np.save(OUT / f"{name}_kind.npy", kinds.astype(str))
        print(name, len(data.account_ids), flush=True)


def _data(name: str):
    """``window(simulate(...))`` of the training or judge set, cached as a pickle."""
    import pickle

    from fraudlens.market.data import window
    from fraudlens.market.simulate import simulate

    sizes = {"train": (4000, 101), "judge": (3000, 909)}
    if name.startswith("train") and name[5:].isdigit():  # train8000: more accounts, same seed
        sizes[name] = (int(name[5:]), 101)
    n, seed = sizes[name]
    path = OUT / f"{name}_data.pkl"
    if path.exists():
        with path.open("rb") as f:
            return pickle.load(f)
    OUT.mkdir(parents=True, exist_ok=True)
    data = window(simulate(n, seed=seed))
    with path.open("wb") as f:
        pickle.dump(data, f)
    return data


def fit(
    seed: int,
    epochs: int,
    tag: str,
    fill_dropout: float,
    every: int,
    train_n: int = 4000,
    precision: str | None = None,
) -> None:
    from fraudlens.market.detectors import CNNDetector

    train_data = _data("train" if train_n == 4000 else f"train{train_n}")
    judge = _data("judge")
    # the option only when used, so the harness also trains a code without it
    opts: dict = {}
    if fill_dropout > 0:
        opts = {"fill_dropout": fill_dropout, "rerender_every": every}
    if precision is not None:
        opts["precision"] = precision
    det = CNNDetector(seed=seed, epochs=epochs, num_threads=1, **opts)
    t0 = time.perf_counter()
    det.fit(
        train_data,
        progress=lambda e, total, m: print(
            f"epoch {e} {json.dumps({k: round(v, 4) for k, v in m.items()})}", flush=True
        ),
    )
    secs = time.perf_counter() - t0
    s = det.decision_function(judge)
    y = judge.y().astype(int)
    kind = judge.label_column("kind").astype(str)
    np.savez(OUT / f"{tag}fit_seed{seed}.npz", score=s, y=y, kind=kind)
    q = _quality(y, s, kind)
    normal09 = float(np.mean(s[y == 0] > 0.9))
    print(
        f"FIT tag={tag or 'default'} seed={seed} epochs={epochs} fill_dropout={fill_dropout}"
        f" every={every}: AUC {q['auc']:.4f}  recall@1% {q['recall']:.3f}"
        f"  busy@1% {q['busy']:.3f}  normals>0.9 {normal09:.4f}"
        f"  (best epoch {det.best_epoch_}, {secs:.0f} s)",
        flush=True,
    )


def train(seed: int, keep: int, tag: str) -> None:
    import torch

    from fraudlens.market import _cnn_torch
    from fraudlens.market.render import panels

    torch.set_num_threads(1)
    x = np.load(OUT / "train_x.npy")
    y = np.load(OUT / "train_y.npy")
    built: list = []
    orig = _cnn_torch._GroupedBars

    class Capture(orig):  # the ensemble trains in its grouped form: keep hold of it
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            built.append(self)

    _cnn_torch._GroupedBars = Capture
    snaps: dict[int, dict] = {}
    epochs = 40

    def progress(epoch, total, metrics):
        if epoch > total - keep:
            ens = built[0].write_to(_cnn_torch.BarEnsemble())
            snaps[epoch] = copy.deepcopy(ens.state_dict())
        print(
            f"epoch {epoch} {json.dumps({k: round(v, 4) for k, v in metrics.items()})}", flush=True
        )

    t0 = time.perf_counter()
    res = _cnn_torch.train_network(
        x, y, arch="bars", epochs=epochs, seed=seed, num_threads=1,
        flip_bands=panels("fraudlens"), progress=progress,
    )  # fmt: skip
    secs = time.perf_counter() - t0
    _cnn_torch._GroupedBars = orig
    torch.save(
        {
            "best": res.net.state_dict(),
            "best_epoch": res.best_epoch,
            "snaps": snaps,
            "train_idx": np.setdiff1d(np.arange(len(y)), res.val_index),
            "seconds": secs,
            "history": res.history,
        },
        OUT / f"{tag}seed{seed}.pt",
    )
    print(f"seed {seed}: best epoch {res.best_epoch}, {secs:.0f} s", flush=True)


def _mirror(x):
    """The training flip of the fraudlens look: each panel upside down, red/green swapped."""
    from fraudlens.market.render import panels

    out = x.copy()
    for r0, r1 in panels("fraudlens"):
        out[:, r0:r1] = x[:, r0:r1][:, ::-1]
    return np.ascontiguousarray(out[..., [1, 0, 2]])


def _shift(x, s):
    out = np.zeros_like(x)
    if s > 0:
        out[:, :, s:] = x[:, :, :-s]
    else:
        out[:, :, :s] = x[:, :, -s:]
    return out


def _member_logits(net, x, batch=256):
    """(members, n, 2) logits of a BarEnsemble on uint8 images."""
    import torch

    net.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))
            outs.append(torch.stack(net.member_logits(xb)))
    return torch.cat(outs, dim=1).numpy().astype(np.float64)


def _p_takeover(logits):
    """Mean over members of softmax P(takeover); logits (members, n, 2)."""
    z = logits[..., 0] - logits[..., 1]
    return np.mean(1.0 / (1.0 + np.exp(-z)), axis=0)


def _recompute_bn(net, x, batch=256):
    import torch

    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            net.member_logits(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])))
    net.eval()


def score(seeds: list[int], tag: str, variants: list[str] | None) -> None:
    import torch

    from fraudlens.market._cnn_torch import BarEnsemble

    torch.set_num_threads(1)
    xj = np.load(OUT / "judge_x.npy")
    yj = np.load(OUT / "judge_y.npy")
    kj = np.load(OUT / "judge_kind.npy")
    xm = _mirror(xj)
    rows: dict[str, list] = {}
    for seed in seeds:
        ck = torch.load(OUT / f"{tag}seed{seed}.pt", weights_only=False)
        net = BarEnsemble()
        net.load_state_dict(ck["best"])
        base = _member_logits(net, xj)
        mirr = _member_logits(net, xm)
        res = {
            "default": _p_takeover(base),
            "tta_mirror_prob": 0.5 * (_p_takeover(base) + _p_takeover(mirr)),
            "tta_mirror_logit": _p_takeover(0.5 * (base + mirr)),
            # cheaper: part of the networks mirrored (cost in networks run, default 3)
            "tta_3+1mirror": _p_takeover(np.concatenate([base, mirr[:1]])),
            "tta_2+2mirror": _p_takeover(np.concatenate([base[:2], mirr[:2]])),
            "two_members": _p_takeover(base[:2]),
        }
        if variants and "shift" in variants:
            sh = [_member_logits(net, _shift(xj, s)) for s in (-4, 4)]
            res["tta_shift"] = np.mean([_p_takeover(base)] + [_p_takeover(z) for z in sh], axis=0)
            shm = [_member_logits(net, _shift(xm, s)) for s in (-4, 4)]
            res["tta_mirror_shift"] = np.mean(
                [_p_takeover(z) for z in [base, mirr, *sh, *shm]], axis=0
            )
        snaps = ck["snaps"]
        if variants and "swa" in variants and snaps:
            xt = np.load(OUT / "train_x.npy")[ck["train_idx"]]
            last = max(snaps)
            for k in (5, 10):
                eps = [e for e in snaps if e > last - k]
                avg = {}
                for key in snaps[last]:
                    vs = [snaps[e][key] for e in eps]
                    avg[key] = vs[0].clone() if not vs[0].is_floating_point() else sum(vs) / len(vs)
                swa = BarEnsemble()
                swa.load_state_dict(avg)
                _recompute_bn(swa, xt)
                z = _member_logits(swa, xj)
                res[f"swa_last{k}"] = _p_takeover(z)
                res[f"swa_last{k}+tta"] = 0.5 * (
                    _p_takeover(z) + _p_takeover(_member_logits(swa, xm))
                )
                ens = []
                for e in eps:
                    m = BarEnsemble()
                    m.load_state_dict(snaps[e])
                    ens.append(_p_takeover(_member_logits(m, xj)))
                res[f"snap_ens_last{k}"] = np.mean(ens, axis=0)
        np.savez(OUT / f"{tag}scores_seed{seed}.npz", **res)
        for name, s in res.items():
            q = _quality(yj, s, kj)
            rows.setdefault(name, []).append((seed, q))
            print(
                f"seed {seed} {name:22s} AUC {q['auc']:.4f}  recall@1% {q['recall']:.3f}"
                f"  busy {q['busy']:.3f}  (best epoch {ck['best_epoch']}, {ck['seconds']:.0f} s)",
                flush=True,
            )
    print("\nmeans over seeds", seeds)
    for name, qs in rows.items():
        mean = {k: np.mean([q[k] for _, q in qs]) for k in ("auc", "recall", "busy")}
        print(
            f"{name:22s} AUC {mean['auc']:.4f}  recall@1% {mean['recall']:.3f}"
            f"  busy {mean['busy']:.3f}"
        )


def bootstrap(seeds: list[int], tag: str, a: str, b: str, n_boot: int = 1000) -> None:
    """Paired bootstrap over the judge accounts of variant ``b`` minus variant ``a``."""
    from sklearn.metrics import roc_auc_score

    from fraudlens.evaluation import recall_at_fpr

    y = np.load(OUT / "judge_y.npy")
    rng = np.random.default_rng(0)
    for seed in seeds:
        sc = np.load(OUT / f"{tag}scores_seed{seed}.npz")
        d_auc, d_rec = [], []
        for _ in range(n_boot):
            i = rng.integers(0, len(y), len(y))
            yy = y[i]
            d_auc.append(roc_auc_score(yy, sc[b][i]) - roc_auc_score(yy, sc[a][i]))
            d_rec.append(recall_at_fpr(yy, sc[b][i], 0.01) - recall_at_fpr(yy, sc[a][i], 0.01))
        for name, d in (("AUC", d_auc), ("recall@1%", d_rec)):
            lo, hi = np.percentile(d, [2.5, 97.5])
            print(
                f"seed {seed} {b} - {a} {name}: mean {np.mean(d):+.4f}, 95 % [{lo:+.4f}, {hi:+.4f}]"
            )


def compare(seeds: list[int], a: str, b: str, n_boot: int = 1000) -> None:
    """Paired bootstrap over the judge accounts of ``fit`` tag ``b`` minus tag ``a``."""
    rng = np.random.default_rng(0)
    for seed in seeds:
        sa = np.load(OUT / f"{a}fit_seed{seed}.npz")
        sb = np.load(OUT / f"{b}fit_seed{seed}.npz")
        y, kind = sa["y"], sa["kind"]
        base = {k: _quality(y, sb["score"], kind)[k] - _quality(y, sa["score"], kind)[k]
                for k in ("auc", "recall", "busy")}  # fmt: skip
        d: dict[str, list[float]] = {k: [] for k in base}
        for _ in range(n_boot):
            i = rng.integers(0, len(y), len(y))
            qa = _quality(y[i], sa["score"][i], kind[i])
            qb = _quality(y[i], sb["score"][i], kind[i])
            for k in d:
                d[k].append(qb[k] - qa[k])
        for k, v in d.items():
            lo, hi = np.percentile(v, [2.5, 97.5])
            print(f"seed {seed} {b} - {a} {k}: {base[k]:+.4f}, 95 % [{lo:+.4f}, {hi:+.4f}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare")
    t = sub.add_parser("train")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--keep", type=int, default=10, help="snapshots of the last epochs kept")
    t.add_argument("--tag", default="", help="file name prefix of the checkpoint")
    s = sub.add_parser("score")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--tag", default="")
    s.add_argument("--variants", nargs="*", default=["shift", "swa"])
    bs = sub.add_parser("bootstrap")
    bs.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    bs.add_argument("--tag", default="")
    bs.add_argument("--a", default="default")
    bs.add_argument("--b", default="tta_mirror_prob")
    c = sub.add_parser("compare")
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    c.add_argument("--a", required=True, help="tag of the baseline fit")
    c.add_argument("--b", required=True, help="tag of the variant fit")
    f = sub.add_parser("fit")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--epochs", type=int, default=40)
    f.add_argument("--tag", default="")
    f.add_argument("--fill-dropout", type=float, default=0.0)
    f.add_argument("--every", type=int, default=1, help="re-render every this many epochs")
    f.add_argument("--train-n", type=int, default=4000, help="training accounts (seed 101)")
    f.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="training arithmetic")
    a = ap.parse_args()
    if a.cmd == "bootstrap":
        bootstrap(a.seeds, a.tag, a.a, a.b)
        return
    if a.cmd == "compare":
        compare(a.seeds, a.a, a.b)
        return
    if a.cmd == "fit":
        fit(a.seed, a.epochs, a.tag, a.fill_dropout, a.every, a.train_n, a.precision)
        return
    if a.cmd == "prepare":
        prepare()
    elif a.cmd == "train":
        train(a.seed, a.keep, a.tag)
    else:
        score(a.seeds, a.tag, a.variants)


if __name__ == "__main__":
    main()
