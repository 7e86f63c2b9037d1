"""Growable sparse count rows, shared by the co-occurrence learners."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class SparseRows:
    """Sparse rows of float counts: per touched row a column array, a value array and a
    column -> slot dict, so an increment is O(1) and reading a row is two array slices
    (no rebuild from a dict). Rows never touched cost nothing."""

    _EMPTY = (np.empty(0, dtype=np.int64), np.empty(0))

    def __init__(self) -> None:
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
            slot = slots[col] = len(slots)
            if slot == self._cols[row].shape[0]:
                self._cols[row] = np.resize(self._cols[row], 2 * slot)
                self._vals[row] = np.resize(self._vals[row], 2 * slot)
            self._cols[row][slot] = col
            self._vals[row][slot] = value
        else:
            self._vals[row][slot] += value

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
