"""Online item-to-item co-occurrence in action order: the collaborative short-term learner.

When a user acts on item j (with interest weight w), each of their previous
``window`` items p gets ``count[p][j] += w`` ("followed by") and
``count[j][p] += reverse_weight * w`` ("preceded by"). A user whose recent items
are p_1 (latest), p_2, … scores item j as

    sum_d score_decay**(d-1) * count[p_d][j] / rowsum[p_d]**row_norm  /  received[j]**pop_exponent

Per-user state (the recent items) lives with the caller, so one learner serves
every user a worker owns.

>>> t = ItemTransitions(window=2, reverse_weight=0.0, pop_exponent=0.0, row_norm=1.0)
>>> t.learn_one([0], 1); t.learn_one([0, 1], 2)
>>> [round(float(x), 3) for x in t.score([[0]], n_items=3)[0]]
[0.0, 0.5, 0.5]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from models.sparse_rows import SparseRows

# Largest users x items batch whose scores are summed in one dense array (32 MiB).
DENSE_SUM_LIMIT = 1 << 22


class ItemTransitions:
    def __init__(
        self,
        window: int = 5,
        score_decay: float = 0.8,
        reverse_weight: float = 0.5,
        row_norm: float = 0.5,
        pop_exponent: float = 0.1,
        max_neighbours: int = 200,
        max_targets: int = 0,
    ) -> None:
        self.window = window
        # Items scored from one source: its most-followed ones (0: all). A popular item is
        # followed by thousands; the tail changes no top-k but was 9k entries per user.
        self.max_neighbours = max_neighbours
        self.score_decay = score_decay
        self.reverse_weight = reverse_weight
        self.row_norm = row_norm
        self.pop_exponent = pop_exponent
        # Counts kept per source (0: all): bounds memory by the catalog, not the stream.
        # Row sums stay exact, so a pruned row's scores keep their scale.
        self._counts = SparseRows(max_targets)
        self._row_sums: dict[int, float] = {}
        self._received = np.zeros(1024, dtype=np.float64)
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # normalised rows, cached

    def _add(self, source: int, target: int, weight: float) -> None:
        self._counts.add(source, target, weight)
        self._row_sums[source] = self._row_sums.get(source, 0.0) + weight
        self._arrays.pop(source, None)

    def learn_one(self, previous_rows: Sequence[int], row: int, weight: float = 1.0) -> None:
        """``previous_rows``: the user's items before this one, oldest first."""
        if weight <= 0.0:
            return
        if row >= self._received.shape[0]:
            grown = np.zeros(max(row + 1, 2 * self._received.shape[0]))
            grown[: self._received.shape[0]] = self._received
            self._received = grown
        self._received[row] += weight
        for prev in previous_rows[-self.window :]:
            if prev == row:
                continue
            self._add(prev, row, weight)
            if self.reverse_weight:
                self._add(row, prev, self.reverse_weight * weight)

    def _row(self, prev: int) -> tuple[np.ndarray, np.ndarray] | None:
        cached = self._arrays.get(prev)
        if cached is None:
            cols, vals = self._counts.row(prev)
            if not cols.size:
                return None
            if 0 < self.max_neighbours < len(cols):
                top = np.argpartition(-vals, self.max_neighbours - 1)[: self.max_neighbours]
                cols, vals = cols[top], vals[top]
            scaled = (vals / self._row_sums[prev] ** self.row_norm).astype(np.float32)
            cached = self._arrays[prev] = (cols, scaled)
        return cached

    def score(self, recent_rows: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
        """``[B, n_items]`` scores from each user's recent rows (oldest first)."""
        return self.sparse_scores(recent_rows, n_items).toarray()

    def sparse_scores(
        self, recent_rows: Sequence[Sequence[int]], n_items: int
    ) -> sparse.csr_matrix:
        """:meth:`score` as a CSR matrix: a user's few followed items, not every item."""
        users, weights, cols, vals = [], [], [], []  # one entry per (user, recent item) row
        for b, rows in enumerate(recent_rows):
            weight = 1.0
            for prev in reversed(rows[-self.window :]):
                arrays = self._row(prev)
                if arrays is not None:
                    users.append(b)
                    weights.append(weight)
                    cols.append(arrays[0])
                    vals.append(arrays[1])
                weight *= self.score_decay
        shape = (len(recent_rows), n_items)
        if not cols:
            return sparse.csr_matrix(shape, dtype=np.float32)
        lengths = [len(c) for c in cols]
        columns = np.concatenate(cols)
        values = np.concatenate(vals) * np.repeat(np.array(weights, dtype=np.float32), lengths)
        owners = np.repeat(np.array(users, dtype=np.int64), lengths)
        keep = columns < n_items  # a caller may score fewer items than have been seen
        columns, values, owners = columns[keep], values[keep], owners[keep]
        m = min(n_items, self._received.shape[0])
        damping = np.ones(n_items)
        damping[:m] = np.maximum(self._received[:m], 1.0) ** -self.pop_exponent
        values = values * damping[columns].astype(np.float32)
        if shape[0] * n_items > DENSE_SUM_LIMIT:
            matrix = sparse.csr_matrix((values, (owners, columns)), shape=shape)
            matrix.sum_duplicates()  # canonical: one entry per (user, item), sorted
            return matrix
        # Small enough to add up in a flat [B * N] array: half the time of sorting entries.
        sums = np.bincount(owners * n_items + columns, weights=values, minlength=shape[0] * n_items)
        flat = np.flatnonzero(sums)  # ascending: canonical CSR order
        indptr = np.searchsorted(flat, np.arange(shape[0] + 1) * n_items)
        return sparse.csr_matrix((sums[flat].astype(np.float32), flat % n_items, indptr), shape)

    def memory(self) -> dict[str, int]:
        """Counts held, bytes they take, and counts pruned so far (see ``max_targets``)."""
        counts = self._counts
        return {"counts": counts.size(), "bytes": counts.nbytes(), "pruned": counts.pruned}

    def row_scores(self, prev: int, columns: np.ndarray) -> np.ndarray:
        """Normalised followed-by counts from ``prev`` to each of ``columns`` (no damping)."""
        arrays = self._row(prev)
        if arrays is None or not len(columns):
            return np.zeros(len(columns), dtype=np.float32)
        cols, vals = arrays
        dense = np.zeros(max(int(cols.max()), int(columns.max())) + 1, dtype=np.float32)
        dense[cols] = vals
        return dense[columns]

    def counts(self, sources: Sequence[int], targets: Sequence[int]) -> np.ndarray:
        """``[len(sources), len(targets)]`` raw followed-by counts."""
        return self._counts.block(sources, targets)
