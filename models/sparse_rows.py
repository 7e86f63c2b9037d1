"""Growable sparse count rows, shared by the co-occurrence learners."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class SparseRows:
    """Sparse rows of float counts: per touched row a column array, a value array and a
    column -> slot dict, so an increment is O(1) and reading a row is two array slices
    (no rebuild from a dict). Rows never touched cost nothing.

    ``max_cols`` (0: unbounded) bounds memory: a row that reaches ``2 * max_cols`` columns
    keeps its ``max_cols`` largest counts (amortised O(1) per new column). Its heavy
    columns survive; a new column must outgrow the kept ones' smallest before the next
    pruning to stay.
    """

    _EMPTY = (np.empty(0, dtype=np.int64), np.empty(0))

    def __init__(self, max_cols: int = 0) -> None:
        if max_cols < 0:
            raise ValueError(f"max_cols must be >= 0, got {max_cols}")
        self.max_cols = max_cols
        self.pruned = 0  # columns dropped so far
        self._slots: dict[int, dict[int, int]] = {}
        self._cols: dict[int, np.ndarray] = {}
        self._vals: dict[int, np.ndarray] = {}

    def add(self, row: int, col: int, value: float) -> None:
        slots = self._slots.get(row)
        if slots is None:
            slots = self._slots[row] = {}
            self._cols[row] = np.empty(4, dtype=np.int64)
            self._vals[row] = np.empty(4)
        slot = slots.get(col)
        if slot is None:
            if self.max_cols and len(slots) >= 2 * self.max_cols:
                slots = self._prune(row)
            slot = slots[col] = len(slots)
            if slot == self._cols[row].shape[0]:
                self._cols[row] = np.resize(self._cols[row], 2 * slot)
                self._vals[row] = np.resize(self._vals[row], 2 * slot)
            self._cols[row][slot] = col
            self._vals[row][slot] = value
        else:
            self._vals[row][slot] += value

    def _prune(self, row: int) -> dict[int, int]:
        """Keep the row's ``max_cols`` largest counts (ties: the earlier column)."""
        n = len(self._slots[row])
        cols, vals = self._cols[row][:n], self._vals[row][:n]
        keep = np.sort(np.argsort(-vals, kind="stable")[: self.max_cols])
        self._cols[row][: len(keep)] = cols[keep]
        self._vals[row][: len(keep)] = vals[keep]
        self.pruned += n - len(keep)
        slots = self._slots[row] = {int(c): s for s, c in enumerate(self._cols[row][: len(keep)])}
        return slots

    def row(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns and counts of ``row`` (views: copy them to keep them past an ``add``)."""
        slots = self._slots.get(row)
        if slots is None:
            return self._EMPTY
        n = len(slots)
        return self._cols[row][:n], self._vals[row][:n]

    def block(self, rows: Sequence[int], cols: Sequence[int]) -> np.ndarray:
        """``[len(rows), len(cols)]`` counts, 0 where absent."""
        out = np.zeros((len(rows), len(cols)))
        for i, row in enumerate(rows):
            slots = self._slots.get(row)
            if slots:
                values = self._vals[row]
                for j, col in enumerate(cols):
                    slot = slots.get(col)
                    if slot is not None:
                        out[i, j] = values[slot]
        return out
