"""Online item-to-item "followed-by" counts: the collaborative short-term learner.

When a user acts on item j, each of their previous ``window`` items p gets
``count[p][j] += weight * position_decay**distance``. A user's score for item j
is the recency-weighted sum of ``count[p][j]`` over their recent items p, each
row normalised by its total so that very popular antecedents do not drown the
rest. Per-user state (the recent items) lives with the caller, so the learner
is shared by all users a worker owns.

>>> t = ItemTransitions(window=2)
>>> t.learn_one([0], 1); t.learn_one([0, 1], 2)
>>> [round(float(x), 3) for x in t.score([[0]], n_items=3)[0]]
[0.0, 0.588, 0.412]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ItemTransitions:
    def __init__(self, window: int = 5, position_decay: float = 0.7) -> None:
        self.window = window
        self.position_decay = position_decay
        self._counts: dict[int, dict[int, float]] = {}
        self._totals: dict[int, float] = {}
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # cache per antecedent

    def learn_one(self, previous_rows: Sequence[int], row: int, weight: float = 1.0) -> None:
        """``previous_rows``: the user's items before this one, oldest first."""
        if weight <= 0.0:
            return
        recent = previous_rows[-self.window :]
        for distance, prev in enumerate(reversed(recent)):
            if prev == row:
                continue
            w = weight * self.position_decay**distance
            followers = self._counts.setdefault(prev, {})
            followers[row] = followers.get(row, 0.0) + w
            self._totals[prev] = self._totals.get(prev, 0.0) + w
            self._arrays.pop(prev, None)

    def _row(self, prev: int) -> tuple[np.ndarray, np.ndarray] | None:
        cached = self._arrays.get(prev)
        if cached is None:
            followers = self._counts.get(prev)
            if not followers:
                return None
            cols = np.fromiter(followers.keys(), dtype=np.int64, count=len(followers))
            vals = np.fromiter(followers.values(), dtype=np.float32, count=len(followers))
            cached = self._arrays[prev] = (cols, vals / self._totals[prev])
        return cached

    def score(self, recent_rows: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
        """``[B, n_items]`` scores from each user's recent rows (oldest first)."""
        out = np.zeros((len(recent_rows), n_items), dtype=np.float32)
        for b, rows in enumerate(recent_rows):
            for distance, prev in enumerate(reversed(rows[-self.window :])):
                arrays = self._row(prev)
                if arrays is not None:
                    cols, vals = arrays
                    keep = cols < n_items
                    out[b, cols[keep]] += self.position_decay**distance * vals[keep]
        return out

    @property
    def n_pairs(self) -> int:
        return sum(len(f) for f in self._counts.values())
