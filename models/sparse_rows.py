"""Growable sparse count rows, shared by the co-occurrence learners."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence

import numpy as np


class SparseRows:
    """Sparse rows of float counts, each a pair of packed arrays (``array.array``: int32
    columns kept sorted, float64 counts): 12 bytes a count where a column -> slot dict cost
    ~217. An increment is a binary search, plus a memmove for a new column; reading a row
    copies two small arrays. Rows never touched cost nothing.

    ``max_cols`` (0: unbounded) bounds memory: a row that reaches ``2 * max_cols`` columns
    keeps its ``max_cols`` largest counts (amortised O(1) per new column). Its heavy
    columns survive; a new column must outgrow the kept ones' smallest before the next
    pruning to stay.
    """

    def __init__(self, max_cols: int = 0) -> None:
        if max_cols < 0:
            raise ValueError(f"max_cols must be >= 0, got {max_cols}")
        self.max_cols = max_cols
        self.pruned = 0  # columns dropped so far
        self._cols: dict[int, array] = {}
        self._vals: dict[int, array] = {}

    def add(self, row: int, col: int, value: float) -> None:
        cols = self._cols.get(row)
        if cols is None:
            self._cols[row], self._vals[row] = array("i", (col,)), array("d", (value,))
            return
        at = bisect_left(cols, col)
        if at < len(cols) and cols[at] == col:
            self._vals[row][at] += value
            return
        if self.max_cols and len(cols) >= 2 * self.max_cols:
            self._prune(row)
            cols = self._cols[row]
            at = bisect_left(cols, col)
        cols.insert(at, col)
        self._vals[row].insert(at, value)

    def _prune(self, row: int) -> None:
        """Keep the row's ``max_cols`` largest counts (ties: the lower column)."""
        cols, vals = self.row(row)
        keep = np.sort(np.argsort(-vals, kind="stable")[: self.max_cols])
        self.pruned += len(cols) - len(keep)
        self._cols[row] = array("i", cols[keep].astype(np.int32).tobytes())
        self._vals[row] = array("d", vals[keep].tobytes())

    def row(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns (ascending, int64) and counts (float64) of ``row``: copies."""
        cols = self._cols.get(row)
        if cols is None:
            return np.empty(0, dtype=np.int64), np.empty(0)
        return (
            np.frombuffer(cols, dtype=np.int32).astype(np.int64),
            np.frombuffer(self._vals[row], dtype=np.float64).copy(),
        )

    def size(self) -> int:
        """Counts held, over all rows."""
        return sum(len(c) for c in self._cols.values())

    def nbytes(self) -> int:
        """Bytes the counts take (their arrays; not the per-row object headers)."""
        return 12 * self.size()

    def block(self, rows: Sequence[int], cols: Sequence[int]) -> np.ndarray:
        """``[len(rows), len(cols)]`` counts, 0 where absent."""
        out = np.zeros((len(rows), len(cols)))
        wanted = np.asarray(cols, dtype=np.int64)
        for i, row in enumerate(rows):
            held = self._cols.get(row)
            if held is None or not len(wanted):
                continue
            have = np.frombuffer(held, dtype=np.int32)
            at = np.minimum(np.searchsorted(have, wanted), len(have) - 1)
            found = have[at] == wanted
            out[i, found] = np.frombuffer(self._vals[row], dtype=np.float64)[at[found]]
        return out
