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

    def blend(self, z: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """``z``: ``[S, B, N]`` standardised signals; returns ``[B, N]``."""
        w = self.weights[buckets]  # [B S]
        return np.einsum("sbn,bs->bn", z, w)

    def learn(
        self,
        z: np.ndarray,
        buckets: np.ndarray,
        positives: np.ndarray,
        consumed: Sequence[Sequence[int]],
    ) -> None:
        """One SGD step per user: the positive column vs sampled unconsumed columns."""
        n_items = z.shape[2]
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
            feats = z[:, b, columns].T  # [1+n S]
            logits = feats @ self.weights[buckets[b]]
            logits -= logits.max()
            p = np.exp(logits)
            p /= p.sum()
            grad = feats[0] - p @ feats  # ascent direction on log p(positive)
            w = self.weights[buckets[b]]
            w += self.learning_rate * (grad - self.l2 * w)
            self.updates += 1

    def describe(self) -> dict[str, dict[str, float]]:
        edges = ["0-2", "3-9", "10-29", "30-99", "100+"]
        return {
            edge: {s: round(float(v), 3) for s, v in zip(self.signals, row, strict=True)}
            for edge, row in zip(edges, self.weights, strict=True)
        }
