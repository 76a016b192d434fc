"""Fast, exact scoring of a two-feature IsolationForest.

``IsolationForest.score_samples`` costs about 15 ms per call whatever the size (input checks, joblib,
one Python step per tree) and ~70 ms for 10,000 rows: too slow for a service. With two features,
each tree cuts the plane into a grid of at most (a+1) x (b+1) cells, where a and b are its distinct
thresholds on each feature, and every cell falls in one leaf. So the forest compiles once into

* per feature, the sorted union of all trees' thresholds (a row's position there is one
  ``searchsorted``), and per tree, that position mapped to the tree's own cell index;
* per tree, the path length of each cell (leaf depth + c(leaf size), as scikit-learn computes it).

Scoring is then two binary searches and one gather per (row, tree): ~1 ms per 1,000 rows, and the
same numbers as scikit-learn, to the last bit or two (the sum over trees runs in another order).
The context forest's general walk (``streaming_detector.FlatForest``) scores this forest too, but five times
slower per batch (docs/tuning.md): the two-feature point model keeps this grid.
"""

from bisect import bisect_left
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

N_FEATURES: Final = 2
_CHUNK_ROWS: Final = 1024  # rows per gather: keeps the (rows x trees) blocks in cache
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)


class CompiledForest:
    """A fitted two-feature ``IsolationForest`` turned into lookup tables; ``score`` = ``-score_samples``."""

    def __init__(self, forest: IsolationForest) -> None:
        if forest.n_features_in_ != N_FEATURES:
            raise ValueError(f"CompiledForest needs {N_FEATURES} features, the forest has {forest.n_features_in_}")
        trees = [estimator.tree_ for estimator in forest.estimators_]
        local = [[np.unique(tree.threshold[tree.feature == f]) for f in range(N_FEATURES)] for tree in trees]
        self._thresholds = [np.unique(np.concatenate([t[f] for t in local])) for f in range(N_FEATURES)]
        self._threshold_lists = [t.tolist() for t in self._thresholds]  # bisect on a list beats numpy for one row

        tables: list[NDArray[np.float64]] = []
        offsets = np.zeros(len(trees), dtype=np.int64)
        widths = np.zeros(len(trees), dtype=np.int64)
        position = 0
        for i, (tree, (cuts0, cuts1)) in enumerate(zip(trees, local, strict=True)):
            table = _cell_path_lengths(tree, cuts0, cuts1)
            tables.append(table.ravel())
            offsets[i], widths[i] = position, table.shape[1]
            position += table.size
        self._path_lengths = np.concatenate(tables)

        # Global position g (count of union thresholds < x) -> the tree's cell index along that feature.
        # Folding width and offset into feature 0's map makes the flat table index a single addition.
        cells = [
            np.stack([_local_cells(t[f], self._thresholds[f]) for t in local]).astype(np.int64)
            for f in range(N_FEATURES)
        ]
        index_type = np.int32 if self._path_lengths.size < 2**31 else np.int64
        self._row_index0: NDArray[np.signedinteger[Any]] = np.ascontiguousarray(
            (cells[0] * widths[:, None] + offsets[:, None]).T.astype(index_type)
        )
        self._row_index1: NDArray[np.signedinteger[Any]] = np.ascontiguousarray(cells[1].T.astype(index_type))
        self._trees = len(trees)
        self._denominator = float(len(trees) * _average_path_length([forest._max_samples])[0])

    def score(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """Anomaly score in (0, 1] per row of ``features`` (n x 2): higher is more anomalous."""
        # scikit-learn's trees compare float32 inputs: round the same way to land in the same leaves.
        # Beyond float32's range (~3.4e38) a value becomes inf: still above every threshold, as there.
        with np.errstate(over="ignore"):
            x = np.asarray(features, dtype=np.float32).astype(np.float64)
        g0 = np.searchsorted(self._thresholds[0], x[:, 0], side="left")
        g1 = np.searchsorted(self._thresholds[1], x[:, 1], side="left")
        count = len(x)
        depths = np.empty(count, dtype=np.float64)
        # ``take`` into reused blocks, not fancy indexing: no temporaries, and mode="wrap" skips the bounds
        # checks (every index is in range by construction). Same per-row sums, so the same bits.
        rows = min(count, _CHUNK_ROWS)
        index: NDArray[np.signedinteger[Any]] = np.empty((rows, self._trees), dtype=self._row_index0.dtype)
        index1 = np.empty_like(index)
        lengths = np.empty((rows, self._trees), dtype=np.float64)
        for start in range(0, count, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, count)
            block = stop - start
            np.take(self._row_index0, g0[start:stop], axis=0, out=index[:block], mode="wrap")
            np.take(self._row_index1, g1[start:stop], axis=0, out=index1[:block], mode="wrap")
            np.add(index[:block], index1[:block], out=index[:block])
            np.take(self._path_lengths, index[:block], out=lengths[:block], mode="wrap")
            np.sum(lengths[:block], axis=1, out=depths[start:stop])
        return self._scores(depths)

    def score_one(self, latency_ms: float, error_rate: float) -> float:
        """``score`` of one row, the same number to the last bit, without the per-call cost of batch numpy."""
        if not (abs(latency_ms) <= _FLOAT32_MAX and abs(error_rate) <= _FLOAT32_MAX):
            return float(self.score(np.array([[latency_ms, error_rate]]))[0])  # float32 overflow: the batch path
        g0 = bisect_left(self._threshold_lists[0], float(np.float32(latency_ms)))
        g1 = bisect_left(self._threshold_lists[1], float(np.float32(error_rate)))
        depth = self._path_lengths[self._row_index0[g0] + self._row_index1[g1]].sum()
        return float(self._scores(np.array([depth]))[0])

    def _scores(self, depths: NDArray[np.float64]) -> NDArray[np.float64]:
        if self._denominator == 0:  # a forest fitted on one sample: scikit-learn scores everything 1
            return np.ones(len(depths))
        result: NDArray[np.float64] = 2.0 ** (-depths / self._denominator)
        return result


def _local_cells(tree_cuts: NDArray[np.float64], all_cuts: NDArray[np.float64]) -> NDArray[np.int64]:
    """For g = 0..len(all_cuts): the number of ``tree_cuts`` below any x whose global position is g."""
    # x at position g satisfies all_cuts[g-1] < x <= all_cuts[g]; tree_cuts is a subset of all_cuts.
    return np.concatenate([[0], np.searchsorted(tree_cuts, all_cuts, side="right")])


def _cell_path_lengths(tree: object, cuts0: NDArray[np.float64], cuts1: NDArray[np.float64]) -> NDArray[np.float64]:
    """Path length of every grid cell of one tree, walking a representative point of each cell."""
    # Cell i along a feature holds cuts[i-1] < x <= cuts[i]: cuts[i] itself represents it, and the
    # last (open) cell is represented by a point above the largest cut.
    rep0 = np.append(cuts0, cuts0[-1] + 1.0 if len(cuts0) else 0.0)
    rep1 = np.append(cuts1, cuts1[-1] + 1.0 if len(cuts1) else 0.0)
    grid0, grid1 = np.meshgrid(rep0, rep1, indexing="ij")
    points = np.column_stack([grid0.ravel(), grid1.ravel()])

    left = tree.children_left  # type: ignore[attr-defined]
    right = tree.children_right  # type: ignore[attr-defined]
    feature = tree.feature  # type: ignore[attr-defined]
    threshold = tree.threshold  # type: ignore[attr-defined]
    node = np.zeros(len(points), dtype=np.int64)
    depth = np.zeros(len(points), dtype=np.float64)
    while True:
        inner = left[node] != -1
        if not inner.any():
            break
        at = node[inner]
        go_left = points[inner, feature[at]] <= threshold[at]
        node[inner] = np.where(go_left, left[at], right[at])
        depth[inner] += 1.0
    leaf_size = tree.n_node_samples[node]  # type: ignore[attr-defined]
    lengths: NDArray[np.float64] = (depth + _average_path_length(leaf_size)).reshape(len(rep0), len(rep1))
    return lengths
