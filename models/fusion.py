"""Per-user adaptive blending of interest signals (a small learned gate).

Each signal's scores are standardised per user over the candidate items, then
summed with weights that depend on how much evidence the user has (activity
bucket). The weights start from stated priors and are learned online with a
sampled softmax loss: for an observed event, the positive item should outscore
items drawn uniformly from those the user has not interacted with (uniform, not
hard negatives: hard ones bias the gate against whichever signal ranks first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SIGNALS: tuple[str, ...] = (
    "sequence",  # Transformer over the recent action sequence
    "transitions",  # online item-to-item followed-by counts
    "short_term",  # time-decayed content interest
    "long_term",  # pooled history vectors + BERT of the history text
    "popularity",  # decayed popularity
)
# Upper bounds of activity buckets (events applied so far).
ACTIVITY_BUCKETS: tuple[int, ...] = (2, 9, 29, 99)
# Starting weights per bucket (the gate learns from here): popularity carries
# the coldest users, the user's own signals take over as evidence grows.
PRIOR_WEIGHTS: dict[str, tuple[float, ...]] = {
    "sequence": (0.3, 0.6, 0.8, 1.0, 1.0),
    "transitions": (0.3, 0.6, 0.8, 1.0, 1.0),
    "short_term": (0.3, 1.0, 1.0, 0.8, 0.6),
    "long_term": (0.1, 0.3, 0.5, 0.6, 0.6),
    "popularity": (1.0, 0.3, 0.2, 0.15, 0.1),
}


def standardize(scores: np.ndarray) -> np.ndarray:
    """Row-wise z-scores; constant rows (no signal) become zero."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return np.where(std > 1e-9, (scores - mean) / np.maximum(std, 1e-9), 0.0).astype(np.float32)


class StandardizedSignals:
    """Raw ``[B, N]`` signal matrices with each row's mean and inverse std.

    The z-scores are never materialised as one ``[S, B, N]`` array: the blend is
    a weighted sum of the raw rows plus a per-user constant, and z-scores are
    computed only where needed (gate learning, reasons). Same numbers as
    :func:`standardize`, a fraction of the memory traffic.
    """

    def __init__(self, raw: Sequence[np.ndarray], buckets: np.ndarray) -> None:
        self.raw = list(raw)
        self.buckets = np.asarray(buckets)
        means, scales = [], []
        for matrix in self.raw:
            if matrix.ndim == 2 and matrix.shape[0] > 1 and matrix.strides[0] == 0:
                # One row broadcast to every user (popularity): its stats once.
                mean = np.full(matrix.shape[0], matrix[0].mean(), dtype=np.float64)
                std = np.full(matrix.shape[0], matrix[0].std(), dtype=np.float64)
            else:
                mean = matrix.mean(axis=1, dtype=np.float64)
                std = matrix.std(axis=1, dtype=np.float64)
            means.append(mean)
            scales.append(np.where(std > 1e-9, 1.0 / np.maximum(std, 1e-9), 0.0))
        self.mean = np.array(means).reshape(len(self.raw), -1)  # [S B]
        self.scale = np.array(scales).reshape(len(self.raw), -1)  # [S B]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.raw), *self.raw[0].shape)

    def z(self, b: int, columns: np.ndarray) -> np.ndarray:
        """``[S, C]`` z-scores of user ``b`` at ``columns``."""
        values = np.stack([matrix[b, columns] for matrix in self.raw]).astype(np.float64)
        return ((values - self.mean[:, b, None]) * self.scale[:, b, None]).astype(np.float32)

    def rows(self, index: np.ndarray) -> StandardizedSignals:
        subset = object.__new__(StandardizedSignals)
        subset.raw = [matrix[index] for matrix in self.raw]
        subset.buckets = self.buckets[index]
        subset.mean, subset.scale = self.mean[:, index], self.scale[:, index]
        return subset

    def blend(self, weights: np.ndarray) -> np.ndarray:
        """``weights``: ``[B, S]``; returns ``[B, N]`` = sum over signals of weight × z."""
        coef = (weights.T * self.scale).astype(np.float32)  # [S B]
        out = np.zeros(self.raw[0].shape, dtype=np.float32)
        scratch = np.empty_like(out)
        for s, matrix in enumerate(self.raw):
            if coef[s].any():
                np.multiply(matrix, coef[s][:, None], out=scratch)
                out += scratch
        out -= (coef * self.mean).sum(axis=0).astype(np.float32)[:, None]
        return out


def activity_bucket(events_applied: int) -> int:
    return int(np.searchsorted(ACTIVITY_BUCKETS, events_applied, side="left"))


class FusionGate:
    """Weights ``[n_buckets, n_signals]``, learned online by SGD."""

    def __init__(
        self,
        learning_rate: float = 0.01,
        negatives: int = 100,
        l2: float = 1e-4,
        seed: int = 0,
        signals: Sequence[str] = SIGNALS,
    ) -> None:
        self.signals = tuple(signals)
        self.learning_rate = learning_rate
        self.negatives = negatives
        self.l2 = l2
        self.weights = np.array(
            [PRIOR_WEIGHTS[s] for s in self.signals], dtype=np.float32
        ).T.copy()  # [buckets S]
        self.updates = 0
        self._rng = np.random.default_rng(seed)

    def blend(self, signals: StandardizedSignals) -> np.ndarray:
        """Fused ``[B, N]`` scores: each user's bucket weights over the z-scored signals."""
        return signals.blend(self.weights[signals.buckets])

    def learn(
        self,
        signals: StandardizedSignals,
        positives: np.ndarray,
        consumed: Sequence[Sequence[int]],
    ) -> None:
        """One SGD step per user: the positive column vs sampled unconsumed columns."""
        n_items = signals.shape[2]
        if n_items < 2:
            return
        for b, positive in enumerate(positives):
            if positive < 0:
                continue
            negatives = self._rng.integers(0, n_items, size=self.negatives)
            negatives = negatives[negatives != positive]
            negatives = negatives[~np.isin(negatives, consumed[b])]
            if negatives.size == 0:
                continue
            columns = np.concatenate(([positive], negatives))
            feats = signals.z(b, columns).T  # [1+n S]
            bucket = signals.buckets[b]
            logits = feats @ self.weights[bucket]
            logits -= logits.max()
            p = np.exp(logits)
            p /= p.sum()
            grad = feats[0] - p @ feats  # ascent direction on log p(positive)
            w = self.weights[bucket]
            w += self.learning_rate * (grad - self.l2 * w)
            self.updates += 1

    def describe(self) -> dict[str, dict[str, float]]:
        edges = ["0-2", "3-9", "10-29", "30-99", "100+"]
        return {
            edge: {s: round(float(v), 3) for s, v in zip(self.signals, row, strict=True)}
            for edge, row in zip(edges, self.weights, strict=True)
        }
