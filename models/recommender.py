"""Interest fusion and ranking: the one entry point the stream agents call.

Short-term interest is a time-decayed, action-weighted sum of the content
vectors of the user's recent items; it is blended per user with decayed
popularity, trusting popularity more the less evidence a user has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from models.events import DEFAULT_EVENT_WEIGHTS, PAST_TENSE, event_weight
from models.item_index import ItemIndex
from models.popularity import DecayedPopularity
from models.profile import UserProfile

MODEL_NAME = "streamrec-interest/1"


class EventLike(Protocol):
    event_id: str
    user_id: str
    item_id: str
    event_type: str
    timestamp: float
    value: float | None


class ScoredItem(NamedTuple):
    item_id: str
    score: float
    reason: str


@dataclass(frozen=True)
class RecommenderConfig:
    top_k: int = 10
    history_len: int = 100  # events kept per user (exclusion + interest)
    interest_window: int = 50  # most recent events that form short-term interest
    interest_half_life_s: float = 7 * 86_400.0
    popularity_half_life_s: float = 7 * 86_400.0
    # Evidence (in decayed event weight) at which a user's own interest and
    # popularity count equally; cold users lean on popularity.
    popularity_prior: float = 2.0
    exclude_consumed: bool = True
    dedup_window: int = 32


class Recommender:
    """Learns from events one at a time and ranks items for a batch of users."""

    def __init__(
        self, items: ItemIndex, config: RecommenderConfig | None = None, content_name: str = ""
    ) -> None:
        self.items = items
        self.config = config or RecommenderConfig()
        self.popularity = DecayedPopularity(self.config.popularity_half_life_s)
        self.version = f"{MODEL_NAME}+{content_name}" if content_name else MODEL_NAME

    def learn_one(
        self, profile: UserProfile, event: EventLike, source: tuple[int, int] | None = None
    ) -> bool:
        """Apply one event to ``profile`` and the global learners.

        Returns False (and changes nothing) for an event already applied.
        """
        if profile.is_duplicate(event.event_id, source):
            return False
        weight = event_weight(event.event_type, event.value, DEFAULT_EVENT_WEIGHTS)
        row = self.items.ensure(event.item_id)
        profile.record(
            event.event_id,
            event.item_id,
            event.event_type,
            event.timestamp,
            weight,
            source,
            self.config.history_len,
            self.config.dedup_window,
        )
        self.popularity.learn_one(row, event.timestamp, weight)
        return True

    def _recent(self, profile: UserProfile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, decayed weights and history positions of the interest window."""
        start = max(0, len(profile.items) - self.config.interest_window)
        positions = np.arange(start, len(profile.items))
        rows = np.array([self.items.ensure(profile.items[p]) for p in positions], dtype=np.int64)
        age = profile.last_event_time - np.asarray(profile.times[start:], dtype=np.float64)
        decay = 0.5 ** (np.maximum(age, 0.0) / self.config.interest_half_life_s)
        weights = (np.asarray(profile.weights[start:], dtype=np.float64) * decay).astype(np.float32)
        return rows, weights, positions

    def user_vectors(self, profiles: Sequence[UserProfile]) -> tuple[np.ndarray, np.ndarray]:
        """Unit short-term interest vectors ``[B, D]`` and positive evidence ``[B]``."""
        features = self.items.features
        vectors = np.zeros((len(profiles), self.items.dim), dtype=np.float32)
        evidence = np.zeros(len(profiles), dtype=np.float32)
        for b, profile in enumerate(profiles):
            rows, weights, _ = self._recent(profile)
            if rows.size:
                vectors[b] = weights @ features[rows]
                evidence[b] = float(np.clip(weights, 0.0, None).sum())
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12), evidence

    def predict_one(self, profile: UserProfile, item_id: str) -> float:
        """Fused score of one item for one user (same formula as ``recommend``)."""
        row = self.items.ensure(item_id)
        fused, _ = self._scores([profile])
        return float(fused[0, row])

    def _scores(self, profiles: Sequence[UserProfile]) -> tuple[np.ndarray, np.ndarray]:
        n_items = len(self.items)
        vectors, evidence = self.user_vectors(profiles)
        content = vectors @ self.items.features.T  # [B N]
        alpha = self.config.popularity_prior / (self.config.popularity_prior + evidence)  # [B]
        popularity = self.popularity.scores(n_items)  # [N]
        fused = (1.0 - alpha)[:, None] * content + alpha[:, None] * popularity[None, :]
        return fused, alpha

    def recommend(
        self, profiles: Sequence[UserProfile], k: int | None = None
    ) -> list[list[ScoredItem]]:
        """Top-``k`` items with reasons for each profile, ranked in one batch."""
        k = k or self.config.top_k
        if not profiles or len(self.items) == 0:
            return [[] for _ in profiles]
        fused, alpha = self._scores(profiles)
        if self.config.exclude_consumed:
            for b, profile in enumerate(profiles):
                consumed = [self.items.row_of[i] for i in profile.items if i in self.items.row_of]
                fused[b, consumed] = -np.inf
        k_eff = min(k, fused.shape[1])
        top = np.argpartition(-fused, k_eff - 1, axis=1)[:, :k_eff]
        results = []
        for b, profile in enumerate(profiles):
            order = top[b][np.argsort(-fused[b, top[b]], kind="stable")]
            order = order[np.isfinite(fused[b, order])]
            results.append(self._explain(profile, order, fused[b], float(alpha[b])))
        return results

    def _explain(
        self, profile: UserProfile, rows: np.ndarray, fused: np.ndarray, alpha: float
    ) -> list[ScoredItem]:
        """Attach a reason: the recent item that contributed most, or popularity."""
        features = self.items.features
        recent_rows, weights, positions = self._recent(profile)
        popularity = self.popularity.scores(len(self.items))
        if recent_rows.size and rows.size:
            contributions = (weights[:, None] * features[recent_rows]) @ features[rows].T  # [L K]
            best = contributions.argmax(axis=0)
        out = []
        for col, row in enumerate(rows):
            reason = "popular now"
            if recent_rows.size:
                j = int(best[col])
                content_part = (1.0 - alpha) * float(contributions[j, col])
                if content_part > 0.0 and content_part >= alpha * float(popularity[row]) * 0.5:
                    verb = PAST_TENSE[profile.kind_name(int(positions[j]))]
                    reason = f"similar to {self.items.label(int(recent_rows[j]))} you {verb}"
            out.append(ScoredItem(self.items.ids[row], round(float(fused[row]), 6), reason))
        return out
