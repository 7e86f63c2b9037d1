"""Exponentially time-decayed item popularity (event time, not wall time)."""

from __future__ import annotations

import math

import numpy as np


class DecayedPopularity:
    """Counts that halve every ``half_life_s`` seconds of event time.

    Stored scaled by ``2**((t - t_ref) / half_life)`` so an update touches one
    cell; the reference time moves forward before the scale can overflow.

    >>> pop = DecayedPopularity(half_life_s=10.0)
    >>> pop.learn_one(0, timestamp=0.0); pop.learn_one(1, timestamp=10.0)
    >>> [round(float(x), 3) for x in pop.counts(2)]
    [0.5, 1.0]
    """

    def __init__(self, half_life_s: float = 7 * 86_400.0) -> None:
        self.half_life_s = half_life_s
        self._scaled = np.zeros(1024, dtype=np.float64)
        self._t_ref: float | None = None
        self._t_max = -math.inf
        self._last_seen = np.full(1024, -np.inf)  # event time of each row's latest event

    def learn_one(self, row: int, timestamp: float, weight: float = 1.0) -> None:
        if weight <= 0.0:
            return
        if self._t_ref is None:
            self._t_ref = timestamp
        if row >= self._scaled.shape[0]:
            grown = np.zeros(max(row + 1, 2 * self._scaled.shape[0]))
            grown[: self._scaled.shape[0]] = self._scaled
            self._scaled = grown
            last_seen = np.full(self._scaled.shape[0], -np.inf)
            last_seen[: self._last_seen.shape[0]] = self._last_seen
            self._last_seen = last_seen
        exponent = (timestamp - self._t_ref) / self.half_life_s
        if exponent > 60.0:  # rebase before 2**exponent loses precision
            self._scaled *= 2.0 ** (-exponent)
            self._t_ref, exponent = timestamp, 0.0
        self._scaled[row] += weight * 2.0**exponent
        self._t_max = max(self._t_max, timestamp)
        self._last_seen[row] = max(self._last_seen[row], timestamp)

    @property
    def now(self) -> float:
        """The newest event time learned (the stream's clock); -inf before any."""
        return self._t_max

    def idle_seconds(self, n_items: int) -> np.ndarray:
        """Seconds from each row's latest event to the newest one (inf: never seen)."""
        out = np.full(n_items, np.inf)
        m = min(n_items, self._last_seen.shape[0])
        seen = np.isfinite(self._last_seen[:m])
        out[:m][seen] = self._t_max - self._last_seen[:m][seen]
        return out

    def counts(self, n_items: int) -> np.ndarray:
        """Decayed counts as of the newest event seen, for rows ``[0, n_items)``."""
        out = np.zeros(n_items, dtype=np.float64)
        m = min(n_items, self._scaled.shape[0])
        if self._t_ref is not None:
            out[:m] = self._scaled[:m] * 2.0 ** (-(self._t_max - self._t_ref) / self.half_life_s)
        return out

    def scores(self, n_items: int) -> np.ndarray:
        """Popularity in [0, 1]: log-damped counts over the most popular item's."""
        damped = np.log1p(self.counts(n_items))
        top = damped.max() if n_items else 0.0
        return (damped / top if top > 0 else damped).astype(np.float32)

    def predict_one(self, row: int, n_items: int) -> float:
        return float(self.scores(n_items)[row])
