"""Isolation Forest as plain arrays: export from scikit-learn, score in numpy.

A fitted :class:`sklearn.ensemble.IsolationForest` is flattened into a handful of numeric
arrays (every tree's nodes stacked one after the other), so it can be written to an
``.npz`` file read with ``allow_pickle=False`` and scored without scikit-learn. The
scorer follows scikit-learn's arithmetic step by step (float32 inputs compared with
float64 thresholds, per-tree depths added in tree order), which makes its output equal to
``IsolationForest.score_samples`` up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FlatForest", "average_path_length"]

_LEAF = -1


def average_path_length(n: np.ndarray) -> np.ndarray:
    """Expected path length of an unsuccessful search in a binary tree of ``n`` points.

    This is ``c(n)`` of Liu et al. (2008): 0 for ``n <= 1``, 1 for ``n == 2`` and
    ``2 (ln(n - 1) + γ) - 2 (n - 1) / n`` otherwise.
    """
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _node_depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Depth of every node, the root counting as 1 (scikit-learn's convention)."""
    depth = np.zeros(len(left), dtype=np.float64)
    depth[0] = 1.0
    # Children always have larger indices than their parent in scikit-learn's trees,
    # so one forward pass fills every depth.
    for i in range(len(left)):
        if left[i] != _LEAF:
            depth[left[i]] = depth[i] + 1.0
            depth[right[i]] = depth[i] + 1.0
    return depth


@dataclass
class FlatForest:
    """An Isolation Forest stored as stacked node arrays.

    Node ``j`` of tree ``t`` sits at index ``offsets[t] + j``; child indices are local to
    their tree. ``leaf_value`` holds, for leaves, the depth plus ``c(n_node_samples) - 1``,
    i.e. what one tree adds to the path length of a point that ends in that leaf.
    """

    children_left: np.ndarray  # int32, local indices, -1 for leaves
    children_right: np.ndarray  # int32
    feature: np.ndarray  # int32, index into the tree's own feature subset
    threshold: np.ndarray  # float64
    n_node_samples: np.ndarray  # int64
    offsets: np.ndarray  # int64, len n_trees + 1
    tree_features: np.ndarray  # int32, (n_trees, n_sub) feature subset of each tree
    subsample_features: bool
    max_samples: int
    offset: float

    @classmethod
    def from_sklearn(cls, forest: Any) -> FlatForest:
        """Flatten a fitted ``sklearn.ensemble.IsolationForest``."""
        trees = [est.tree_ for est in forest.estimators_]
        sizes = [t.node_count for t in trees]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        features = np.asarray([np.asarray(f) for f in forest.estimators_features_], dtype=np.int32)
        return cls(
            children_left=np.concatenate([t.children_left for t in trees]).astype(np.int32),
            children_right=np.concatenate([t.children_right for t in trees]).astype(np.int32),
            feature=np.concatenate([t.feature for t in trees]).astype(np.int32),
            threshold=np.concatenate([t.threshold for t in trees]).astype(np.float64),
            n_node_samples=np.concatenate([t.n_node_samples for t in trees]).astype(np.int64),
            offsets=offsets,
            tree_features=features,
            subsample_features=bool(forest._max_features != forest.n_features_in_),
            max_samples=int(forest.max_samples_),
            offset=float(forest.offset_),
        )

    # -- persistence -------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the arrays to an ``.npz`` file (numeric arrays only, no pickle)."""
        np.savez(
            path,
            children_left=self.children_left,
            children_right=self.children_right,
            feature=self.feature,
            threshold=self.threshold,
            n_node_samples=self.n_node_samples,
            offsets=self.offsets,
            tree_features=self.tree_features,
            scalars=np.asarray(
                [float(self.subsample_features), float(self.max_samples), self.offset]
            ),
        )

    @classmethod
    def load(cls, path: Path) -> FlatForest:
        """Read a forest written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            scalars = z["scalars"]
            return cls(
                children_left=z["children_left"],
                children_right=z["children_right"],
                feature=z["feature"],
                threshold=z["threshold"],
                n_node_samples=z["n_node_samples"],
                offsets=z["offsets"],
                tree_features=z["tree_features"],
                subsample_features=bool(scalars[0]),
                max_samples=int(scalars[1]),
                offset=float(scalars[2]),
            )

    # -- scoring -----------------------------------------------------------------------
    @property
    def n_trees(self) -> int:
        """Number of trees."""
        return len(self.offsets) - 1

    def _node_depths(self) -> np.ndarray:
        # Computed once per forest; the root has depth 1.
        cached: np.ndarray | None = getattr(self, "_depth_cache", None)
        if cached is None:
            parts = [
                _node_depths(
                    self.children_left[self.offsets[t] : self.offsets[t + 1]],
                    self.children_right[self.offsets[t] : self.offsets[t + 1]],
                )
                for t in range(self.n_trees)
            ]
            cached = np.concatenate(parts) if parts else np.zeros(0)
            self._depth_cache = cached
        return cached

    def _leaf_values(self) -> np.ndarray:
        # What a tree adds to a point's path length when the point ends in each node.
        return self._node_depths() + average_path_length(self.n_node_samples) - 1.0

    def _layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """Nodes renumbered breadth-first so that every right child follows its left one.

        Returns global arrays ``first_child`` (a leaf points to itself), ``threshold``
        (``+inf`` at leaves), ``feature`` (column of ``X``), the leaf ``values`` and the
        number of steps that reaches every leaf. Computed once per forest.
        """
        cached = getattr(self, "_layout_cache", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        values_old = self._leaf_values()
        total = len(self.children_left)
        first_child = np.empty(total, dtype=np.intp)
        thr = np.empty(total, dtype=np.float64)
        feat = np.empty(total, dtype=np.intp)
        values = np.empty(total, dtype=np.float64)
        steps = 0
        for t in range(self.n_trees):
            lo = int(self.offsets[t])
            left = self.children_left[lo : int(self.offsets[t + 1])]
            right = self.children_right[lo : int(self.offsets[t + 1])]
            cols = self.tree_features[t] if self.subsample_features else None
            order = [0]  # old local ids in breadth-first order
            new_id = {0: 0}
            depth = {0: 0}
            i = 0
            while i < len(order):
                old = order[i]
                if left[old] != _LEAF:
                    for child in (int(left[old]), int(right[old])):
                        new_id[child] = len(order)
                        depth[child] = depth[old] + 1
                        order.append(child)
                i += 1
            for old in order:
                g = lo + new_id[old]
                values[g] = values_old[lo + old]
                if left[old] == _LEAF:
                    first_child[g], thr[g], feat[g] = g, np.inf, 0
                    steps = max(steps, depth[old])
                else:
                    f = int(self.feature[lo + old])
                    first_child[g] = lo + new_id[int(left[old])]
                    thr[g] = self.threshold[lo + old]
                    feat[g] = int(cols[f]) if cols is not None else f
        self._layout_cache = (first_child, thr, feat, values, steps)
        return self._layout_cache

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Same values as ``IsolationForest.score_samples``: minus the anomaly score.

        Parameters
        ----------
        X
            ``(n, n_features)`` array of finite numbers (NaN is not routed as scikit-learn
            routes it; callers reject it first).

        Returns
        -------
        numpy.ndarray
            ``-2 ** (-E[h(x)] / c(max_samples))``; lower means more anomalous.
        """
        # scikit-learn casts inputs to float32 before walking the trees; the thresholds
        # stay float64, so compare the float32 values promoted to float64.
        Xf = np.asarray(X, dtype=np.float32).astype(np.float64)
        n = Xf.shape[0]
        denom = self.n_trees * float(average_path_length(np.asarray([self.max_samples]))[0])
        if denom == 0:
            # One-point trees: scikit-learn defines the ratio as 1, so the score is 2**-1.
            return np.full(n, -0.5)
        first_child, thr, feat, values, steps = self._layout()
        starts = self.offsets[:-1].astype(np.intp)
        n_feat = Xf.shape[1]
        out = np.empty(n, dtype=np.float64)
        # All trees advance one level per step, on row chunks that keep memory bounded.
        chunk = max(1, 500_000 // max(self.n_trees, 1))
        for lo in range(0, n, chunk):
            xc = np.ascontiguousarray(Xf[lo : lo + chunk]).ravel()
            m = len(xc) // n_feat if n_feat else 0
            node = np.tile(starts, m)
            base = np.repeat(np.arange(m, dtype=np.intp) * n_feat, self.n_trees)
            for _ in range(steps):
                # Children are adjacent (left, right), so one comparison picks the child;
                # a leaf points to itself with an infinite threshold and stays put.
                go_right = xc.take(base + feat.take(node)) > thr.take(node)
                node = first_child.take(node) + go_right
            # Add tree by tree, in order, like scikit-learn does.
            leaf_vals = values.take(node).reshape(m, self.n_trees)
            depths = np.zeros(m, dtype=np.float64)
            for t in range(self.n_trees):
                depths += leaf_vals[:, t]
            out[lo : lo + chunk] = depths
        return -(2.0 ** (-out / denom))
