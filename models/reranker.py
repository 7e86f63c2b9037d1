"""Learned online re-ranking of a short candidate list (the last stage of ranking).

The fusion gate (``models.fusion``) blends z-scored signals over the whole catalog with
weights learned against uniformly sampled negatives: good at telling plausible items from
implausible ones, blind to what separates the top few. Here each user's candidates — the
union of every signal's top ``per_signal`` items — are scored by a linear model over
per-(user, candidate) features and learned online, listwise: the item the user chose next
should win a softmax over the candidates served to them (their other candidates are the
negatives). Only the model's weights are state; nothing is kept per user.

:class:`SoftmaxRanker` is the learner (River's ``learn_one``/``predict_one`` API plus
vectorised ``learn_many``/``predict_many``); with two candidates it is exactly River's
``LogisticRegression`` on the feature difference (checked in the tests).
:class:`CandidateReranker` builds candidates and features from the signals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.fusion import ACTIVITY_BUCKETS, Signals

N_BUCKETS = len(ACTIVITY_BUCKETS) + 1


class SoftmaxRanker:
    """Linear scores ``x·w``; loss ``-log softmax(positive)`` over a candidate list.

    AdaGrad steps, as River's ``optim.AdaGrad``: ``g2 += g²; w -= lr · g / sqrt(g2 + eps)``,
    with an L2 term ``l2 · w`` added to the gradient (River's ``l2``).
    """

    def __init__(
        self,
        n_features: int,
        learning_rate: float = 0.05,
        l2: float = 0.0,
        eps: float = 1e-8,
        init: np.ndarray | None = None,
    ) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        self.eps = eps
        self.weights = np.zeros(n_features) if init is None else np.array(init, dtype=np.float64)
        self.g2 = np.zeros(n_features)
        self.updates = 0

    def predict_one(self, x: np.ndarray) -> np.ndarray:
        """``x``: ``[C, F]`` features of one list; returns ``[C]`` scores."""
        return np.asarray(x, dtype=np.float64) @ self.weights

    def predict_many(self, x: np.ndarray) -> np.ndarray:
        """``x``: ``[B, C, F]``; returns ``[B, C]`` float32 scores.

        An elementwise product and a sum, not BLAS: a user's scores must not depend on
        which other users share the batch (BLAS blocking changes the rounding)."""
        return (x * self.weights.astype(x.dtype)).sum(axis=-1).astype(np.float32)

    def learn_one(self, x: np.ndarray, positive: int, valid: np.ndarray | None = None) -> None:
        """One step on one list: ``x`` ``[C, F]``, the chosen row ``positive``."""
        valid_rows = None if valid is None else np.asarray(valid)[None]
        self.learn_many(np.asarray(x)[None], np.array([positive]), valid_rows)

    def learn_many(
        self, x: np.ndarray, positives: np.ndarray, valid: np.ndarray | None = None
    ) -> None:
        """One step on the mean gradient of ``B`` lists (River's ``learn_many``: a mini-batch).

        ``x``: ``[B, C, F]``; ``positives``: ``[B]`` row of the chosen item in each list
        (-1: not in the list, skipped); ``valid``: ``[B, C]`` False for padding.
        """
        keep = positives >= 0
        if not keep.any():
            return
        x, positives = x[keep].astype(np.float64), positives[keep]
        logits = x @ self.weights  # [B C]
        if valid is not None:
            logits = np.where(valid[keep], logits, -np.inf)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        chosen = x[np.arange(len(x)), positives]  # [B F]
        gradient = (np.einsum("bc,bcf->bf", p, x) - chosen).mean(axis=0)
        if self.l2:
            gradient += self.l2 * self.weights
        self.g2 += gradient**2
        self.weights -= self.learning_rate / np.sqrt(self.g2 + self.eps) * gradient
        self.updates += 1


@dataclass
class RankingContext:
    """What the features need beyond the signals, prepared by the recommender.

    Item arrays are over all rows; user arrays over the batch.
    """

    buckets: np.ndarray  # [B] activity bucket
    fused: np.ndarray  # [B, N] the gate's blend
    item_trend: np.ndarray  # [N] log1p of short-half-life decayed popularity
    item_idle: np.ndarray  # [N] log1p(hours since the item's last event anywhere)
    user_idle: np.ndarray  # [B] log1p(hours since the user's last event)
    follows_last: np.ndarray | None = None  # [B, C] transitions from the user's last item only
    like_last: np.ndarray | None = None  # [B, C] content similarity to the user's last item


class CandidateReranker:
    """Candidates from every signal's top items, features, and the online ranker."""

    def __init__(
        self,
        signals: Sequence[str],
        per_signal: int = 30,
        learning_rate: float = 0.05,
        l2: float = 1e-4,
        events_per_step: int = 16,
    ) -> None:
        self.signals = tuple(signals)
        self.per_signal = per_signal
        self.events_per_step = events_per_step
        self.feature_names = self._names()
        init = np.zeros(len(self.feature_names))
        init[self.feature_names.index("fused")] = 1.0  # start as the gate's ranking
        self.ranker = SoftmaxRanker(len(init), learning_rate=learning_rate, l2=l2, init=init)

    def _names(self) -> list[str]:
        names = ["fused"]
        for s in self.signals:
            names += [f"{s}:z@{b}" for b in range(N_BUCKETS)]
            names += [f"{s}:top", f"{s}:z_x_idle"]
        names += ["trend", "item_idle", "item_idle_x_user_idle"]
        if "transitions" in self.signals:
            names += ["follows_last", "follows_last_x_idle"]
        if "short_term" in self.signals:
            names += ["like_last", "like_last_x_idle"]
        return names

    def candidates(
        self, raw: Sequence[np.ndarray], fused: np.ndarray, excluded: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``[B, C]`` candidate rows (padding repeats a valid row) and their validity mask.

        ``excluded``: ``[B, N]`` True for items that may not be served.
        """
        n_items = fused.shape[1]
        m = min(self.per_signal, n_items)
        chosen = np.zeros(fused.shape, dtype=bool)
        rows = np.arange(fused.shape[0])[:, None]
        for matrix in (*raw, fused):
            scores = np.where(excluded, -np.inf, matrix)
            top = np.argpartition(-scores, m - 1, axis=1)[:, :m]
            chosen[rows, top] = True
        chosen &= ~excluded
        counts = chosen.sum(axis=1)
        width = max(int(counts.max(initial=0)), 1)
        # Chosen columns first (stable: by row index), then padding.
        order = np.argsort(~chosen, axis=1, kind="stable")[:, :width]
        valid = np.arange(width)[None, :] < counts[:, None]
        order = np.where(valid, order, order[:, :1])
        return order, valid

    def features(
        self,
        signals: Signals,
        context: RankingContext,
        cand: np.ndarray,
        valid: np.ndarray,
    ) -> np.ndarray:
        """``[B, C, F]`` float32 features of each user's candidates (padding ranks last)."""
        b_idx = np.arange(cand.shape[0])[:, None]
        width = cand.shape[1]
        user_idle = context.user_idle[:, None].astype(np.float32)  # [B 1]
        onehot = np.eye(N_BUCKETS, dtype=np.float32)[context.buckets]  # [B K]
        cols = [_z_rows(context.fused, cand)]
        for s, _name in enumerate(self.signals):
            raw = signals.raw[s]
            values = raw[b_idx, cand] if raw.strides[0] else raw[0][cand]
            z = ((values - signals.mean[s][:, None]) * signals.scale[s][:, None]).astype(np.float32)
            cols.extend((z[:, :, None] * onehot[:, None, :]).transpose(2, 0, 1))
            key = np.where(valid, -z, np.inf)
            rank = np.argsort(np.argsort(key, axis=1, kind="stable"), axis=1)
            cols.append((1.0 / np.log2(rank + 2.0)).astype(np.float32))
            cols.append(z * user_idle / 5.0)
        item_idle = context.item_idle[cand].astype(np.float32)
        cols += [context.item_trend[cand].astype(np.float32), item_idle / 5.0]
        cols.append(item_idle * user_idle / 25.0)
        if context.follows_last is not None:
            follows = context.follows_last.astype(np.float32)
            cols += [follows, follows * user_idle / 5.0]
        if context.like_last is not None:
            like = context.like_last.astype(np.float32)
            cols += [like, like * user_idle / 5.0]
        out = np.stack(cols, axis=-1)
        assert out.shape == (cand.shape[0], width, len(self.feature_names))
        return out

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.ranker.predict_many(x)

    def learn(
        self, x: np.ndarray, valid: np.ndarray, cand: np.ndarray, positives: np.ndarray
    ) -> int:
        """Learn from each user's chosen item (``positives``: rows, -1 unknown), in
        mini-batches of ``events_per_step``; returns how many lists had it as a candidate."""
        where = (cand == positives[:, None]) & valid & (positives[:, None] >= 0)
        position = np.where(where.any(axis=1), where.argmax(axis=1), -1)
        for start in range(0, len(position), self.events_per_step):
            part = slice(start, start + self.events_per_step)
            self.ranker.learn_many(x[part], position[part], valid[part])
        return int((position >= 0).sum())


def _z_rows(matrix: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``matrix`` standardised per row over all columns, read at ``cand``."""
    mean = matrix.mean(axis=1, keepdims=True, dtype=np.float64)
    std = matrix.std(axis=1, keepdims=True, dtype=np.float64)
    values = np.take_along_axis(matrix, cand, axis=1)
    return ((values - mean) / np.maximum(std, 1e-9)).astype(np.float32)
