"""Market benchmark: the reference pipeline and fraudlens side by side, in one run.

Run:  python bench/market.py [--train 8000] [--test 2000] [--ref-n 40]

Measures, on the same simulated accounts:
- rendering: the reference's matplotlib recipe vs fraudlens's numpy rasteriser;
- scoring per account: matplotlib + ResNet-18 at 512x512 in PyTorch eager (the reference
  endpoint's path) vs numpy rendering + the default CNN (or ``--arch``) on ONNX Runtime,
  and the feature detector;
- pair linkage (counterparty and value moved, ``market/pairs.py``) on a generated one-day
  book of ``--pairs-n`` accounts (``bench/pairs.py`` has the details);
- quality on fraudlens's hard test set (every simulated kind) for: the reference way of
  training (the reference generator, whose normal accounts hold one buy and one sell, then
  an image CNN), fraudlens's CNN and fraudlens's feature detector.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _timed(fn, *args, repeat: int = 1, before=None, **kwargs):
    """``fn(*args, **kwargs)``'s last result and its best time of ``repeat`` calls;
    ``before()``, if given, runs ahead of each call, untimed."""
    best = float("inf")
    out = None
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return out, best


def _quality(y, s):
    from sklearn.metrics import roc_auc_score

    from fraudlens.evaluation import recall_at_fpr

    return {"roc_auc": float(roc_auc_score(y, s)), "recall_at_1pct_fpr": recall_at_fpr(y, s, 0.01)}


def _reference_inputs(data, ids):
    """Per account: the bars of its first symbol and its buy/sell (time, price) arrays."""
    from fraudlens.market.data import attach_bars

    t = attach_bars(data.trades[data.trades["account_id"].isin(ids)], data.klines)
    out = []
    k_by_sym = {s: g for s, g in data.klines.groupby("symbol", sort=False)}
    for acct, g in t.groupby("account_id", sort=True):
        sym = g["symbol"].iloc[0]
        g = g[g["symbol"] == sym]
        day = g["ts"].dt.floor("D").iloc[0]
        k = k_by_sym[sym]
        k = k[(k["ts"] >= day) & (k["ts"] < day + np.timedelta64(1, "D"))]
        buys = g[g["side"] == "buy"][["ts", "price"]]
        sells = g[g["side"] == "sell"][["ts", "price"]]
        out.append((acct, k, buys, sells))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=8000, help="fraudlens training accounts")
    ap.add_argument("--test", type=int, default=2000, help="hard test accounts (every kind)")
    ap.add_argument("--ref-train", type=int, default=4000, help="reference-generator accounts")
    ap.add_argument("--ref-n", type=int, default=40, help="accounts timed on the reference path")
    ap.add_argument(
        "--throughput-n", type=int, default=20000, help="accounts for feature throughput"
    )
    ap.add_argument("--epochs", type=int, default=None, help="CNN epochs [detector default]")
    ap.add_argument("--arch", default=None, help="CNN architecture [detector default]")
    ap.add_argument(
        "--pairs-n", type=int, default=100_000, help="accounts in the pair-linkage book"
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from _reference import render_matplotlib, resnet18_eager_scorer
    from fraudlens.market._bars import clear_day_cache
    from fraudlens.market.data import window
    from fraudlens.market.detectors import CNNDetector, FeatureDetector
    from fraudlens.market.render import CNN_STYLE, render_batch
    from fraudlens.market.simulate import simulate, simulate_reference

    fig: dict = {
        "cnn_style": CNN_STYLE,
        "machine": {"cores": os.cpu_count(), "threads": args.threads, "load": os.getloadavg()},
        "cnn_arch": args.arch or "default",
    }
    print(
        f"simulating: train {args.train}, test {args.test}, reference train {args.ref_train}",
        flush=True,
    )
    train = window(simulate(args.train, seed=101))
    test = window(simulate(args.test, seed=202))
    ref_train = simulate_reference(args.ref_train, seed=303)
    y_test = test.y()
    ids = test.account_ids

    # -- rendering -----------------------------------------------------------------------
    ref_ids = ids[: args.ref_n]
    ref_inputs = _reference_inputs(test, ref_ids)
    t0 = time.perf_counter()
    ref_imgs = [render_matplotlib(k, b, s) for _, k, b, s in ref_inputs]
    mpl_ms = (time.perf_counter() - t0) / len(ref_inputs) * 1e3
    # The CNN look is the style a new CNN trains on (CNN_STYLE), not render_batch's default.
    render_batch(test, ids[:64], style=CNN_STYLE)  # warm up
    _, t_np = _timed(render_batch, test, ids, style=CNN_STYLE, repeat=3)
    _, t_np_ref = _timed(render_batch, test, ids, style="reference", repeat=3)
    np_ms = t_np / len(ids) * 1e3
    np_ref_ms = t_np_ref / len(ids) * 1e3
    fig["render_ms_per_image"] = {
        "reference_matplotlib": mpl_ms,
        "fraudlens_numpy": np_ms,
        "fraudlens_numpy_reference_look": np_ref_ms,
        "speedup": mpl_ms / np_ms,
        "speedup_reference_look": mpl_ms / np_ref_ms,
    }

    # -- training ------------------------------------------------------------------------
    print("training the feature detector", flush=True)
    (feat, t_feat) = _timed(lambda: FeatureDetector().fit(train))
    print("training the CNN", flush=True)
    cnn_kw: dict = {} if args.epochs is None else {"epochs": args.epochs}
    if args.arch is not None:
        cnn_kw["arch"] = args.arch
    (cnn, t_cnn) = _timed(lambda: CNNDetector(**cnn_kw).fit(train))
    print("training the CNN the reference way (reference generator, reference look)", flush=True)
    (ref_cnn, t_ref) = _timed(lambda: CNNDetector(style="reference", **cnn_kw).fit(ref_train))
    fig["train_seconds"] = {"features": t_feat, "cnn": t_cnn, "reference_way_cnn": t_ref}

    # -- scoring speed ------------------------------------------------------------------
    scorer = resnet18_eager_scorer(size=512)
    scorer(ref_imgs[:2])  # warm up
    t0 = time.perf_counter()
    for _acct, k, b, s in ref_inputs:
        scorer([render_matplotlib(k, b, s)])  # the reference scores one account per call
    ref_ms = (time.perf_counter() - t0) / len(ref_inputs) * 1e3
    cnn.decision_function(test.subset(ids[:64]))  # warm up the ORT session
    s_cnn, t_c = _timed(cnn.decision_function, test, repeat=3)
    s_feat, t_f = _timed(feat.decision_function, test, repeat=3)
    # the same calls with the bar context's day cache emptied before each (bars no
    # call has read before)
    _, t_f_cold = _timed(feat.decision_function, test, repeat=3, before=clear_day_cache)
    s_ref = ref_cnn.decision_function(test)
    big = window(simulate(args.throughput_n, seed=404))
    _, t_big = _timed(feat.decision_function, big, repeat=3)
    _, t_big_cold = _timed(feat.decision_function, big, repeat=3, before=clear_day_cache)
    fig["score_ms_per_account"] = {
        "reference_matplotlib_resnet18_512_eager": ref_ms,
        "fraudlens_cnn_onnx": t_c / len(ids) * 1e3,
        "fraudlens_features": t_f / len(ids) * 1e3,
        "cnn_speedup": ref_ms / (t_c / len(ids) * 1e3),
        "features_speedup": ref_ms / (t_f / len(ids) * 1e3),
    }
    fig["accounts_per_second"] = {
        "reference": 1e3 / ref_ms,
        "fraudlens_cnn_onnx": len(ids) / t_c,
        "fraudlens_features": len(ids) / t_f,
        "fraudlens_features_large_batch": args.throughput_n / t_big,
        # the same calls with the day cache emptied first (bars never read before)
        "fraudlens_features_cold": len(ids) / t_f_cold,
        "fraudlens_features_large_batch_cold": args.throughput_n / t_big_cold,
    }

    # -- pair linkage: counterparty and value moved on a one-day book --------------------
    from fraudlens.market.pairs import account_evidence
    from pairs import make_book

    p_klines, p_trades, _ = make_book(args.pairs_n)
    _, t_pairs = _timed(account_evidence, p_trades, p_klines, repeat=3)
    fig["pair_linkage"] = {
        "accounts": int(p_trades["account_id"].nunique()),
        "trades": len(p_trades),
        "seconds": t_pairs,
        "accounts_per_second": p_trades["account_id"].nunique() / t_pairs,
        "trades_per_second": len(p_trades) / t_pairs,
    }

    # -- quality on the hard test set -----------------------------------------------
    fig["quality_hard_test"] = {
        "reference_way_cnn": _quality(y_test, s_ref),
        "fraudlens_cnn": _quality(y_test, s_cnn),
        "fraudlens_features": _quality(y_test, s_feat),
    }
    _print_table(fig)
    print(json.dumps(fig, sort_keys=True))
    return fig


def _print_table(f: dict) -> None:
    r = f["render_ms_per_image"]
    s = f["score_ms_per_account"]
    a = f["accounts_per_second"]
    q = f["quality_hard_test"]
    rows = [
        ("render ms/image: reference matplotlib", f"{r['reference_matplotlib']:.3f}", ""),
        ("render ms/image: fraudlens numpy", f"{r['fraudlens_numpy']:.4f}", f"{r['speedup']:.0f}x"),
        (
            "render ms/image: numpy, reference look",
            f"{r['fraudlens_numpy_reference_look']:.4f}",
            f"{r['speedup_reference_look']:.0f}x",
        ),
        (
            "score ms/account: reference (mpl + ResNet-18 512 eager)",
            f"{s['reference_matplotlib_resnet18_512_eager']:.2f}",
            "",
        ),
        (
            "score ms/account: fraudlens CNN (numpy + ORT)",
            f"{s['fraudlens_cnn_onnx']:.4f}",
            f"{s['cnn_speedup']:.0f}x",
        ),
        (
            "score ms/account: fraudlens features",
            f"{s['fraudlens_features']:.4f}",
            f"{s['features_speedup']:.0f}x",
        ),
        ("accounts/s: reference", f"{a['reference']:.1f}", ""),
        ("accounts/s: fraudlens CNN", f"{a['fraudlens_cnn_onnx']:.0f}", ""),
        ("accounts/s: fraudlens features", f"{a['fraudlens_features']:.0f}", ""),
        ("accounts/s: features, large batch", f"{a['fraudlens_features_large_batch']:.0f}", ""),
        ("accounts/s: features, bars not seen before", f"{a['fraudlens_features_cold']:.0f}", ""),
        (
            "accounts/s: features, large batch, bars not seen before",
            f"{a['fraudlens_features_large_batch_cold']:.0f}",
            "",
        ),
    ]
    pl = f["pair_linkage"]
    rows.append(
        (
            f"pair linkage accounts/s ({pl['accounts']:,} accounts, {pl['trades']:,} trades)",
            f"{pl['accounts_per_second']:.0f}",
            f"{pl['seconds']:.2f} s",
        )
    )
    for name, qq in q.items():
        rows.append(
            (
                f"hard test AUC / recall@1%FPR: {name}",
                f"{qq['roc_auc']:.4f} / {qq['recall_at_1pct_fpr']:.4f}",
                "",
            )
        )
    for name, secs in f["train_seconds"].items():
        rows.append((f"train seconds: {name}", f"{secs:.1f}", ""))
    w = max(len(n) for n, _, _ in rows)
    print(f"{'figure':<{w}}  {'value':>16}  ratio")
    for n, v, ratio in rows:
        print(f"{n:<{w}}  {v:>16}  {ratio}")


if __name__ == "__main__":
    main()
