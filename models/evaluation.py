"""Prequential (test-then-train) evaluation of streaming recommenders.

Protocol, exactly as ``streamrec evaluate`` documents it:

1. All interactions are ordered by timestamp (ties keep file order); each is an
   implicit positive.
2. The first ``warmup`` share trains the methods (``warm_up``).
3. Each later event (u, i) is first ranked — top-k over every item seen so far
   in the stream, minus the items u already interacted with — then learned.
   Recall@k is 1 if i is in the list; NDCG@k is 1/log2(rank+2). Events whose
   item never appeared before are skipped and counted.

Events are processed in micro-batches of the worker's size. A micro-batched
system (``score_batch``/``learn_batch``) ranks each event from its user's own
state exactly up to that event and the shared learners as of the batch start,
as the worker does; other methods get the micro-batch split into waves holding
at most one event per user, so each is ranked with everything before it learned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.streaming import Interaction, StreamingScorer


@dataclass
class MethodResult:
    recall: float
    ndcg: float
    evaluated: int
    skipped: int
    events_per_s: float
    seconds: float
    ndcg_series: list[float] = field(default_factory=list, repr=False)

    def as_json(self, k: int) -> dict:
        return {
            f"recall@{k}": round(self.recall, 6),
            f"ndcg@{k}": round(self.ndcg, 6),
            "evaluated": self.evaluated,
            "skipped": self.skipped,
            "events_per_s": round(self.events_per_s, 1),
            "seconds": round(self.seconds, 2),
        }


def time_ordered(interactions: Sequence[Interaction]) -> list[Interaction]:
    return sorted(interactions, key=lambda x: x.timestamp)  # stable: ties keep file order


def waves(batch: Sequence[Interaction]) -> Iterator[list[Interaction]]:
    """Split a micro-batch so each wave holds a user at most once, order kept."""
    seen: dict[str, int] = {}
    buckets: list[list[Interaction]] = []
    for event in batch:
        n = seen.get(event.user_id, 0)
        seen[event.user_id] = n + 1
        if n == len(buckets):
            buckets.append([])
        buckets[n].append(event)
    yield from buckets


class _Vocabulary:
    """Items seen so far (first-appearance order) and each user's items."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.user_items: dict[str, list[int]] = {}

    def add(self, event: Interaction) -> None:
        column = self.index.get(event.item_id)
        if column is None:
            column = self.index[event.item_id] = len(self.ids)
            self.ids.append(event.item_id)
        self.user_items.setdefault(event.user_id, []).append(column)


def prequential(
    method: StreamingScorer,
    interactions: Sequence[Interaction],
    warmup: float = 0.8,
    batch_size: int = 500,
    k: int = 10,
    progress: Callable[[int], None] | None = None,
) -> MethodResult:
    """Run the protocol for one method over time-ordered ``interactions``.

    A method with ``score_batch``/``learn_batch`` (a micro-batched system, like
    the worker) is scored once per micro-batch: each event sees its user's own
    state exactly up to that event, and shared model state as of the start of
    the micro-batch. Other methods are driven wave by wave.
    """
    n_warm = int(len(interactions) * warmup)
    vocab = _Vocabulary()
    for event in interactions[:n_warm]:
        vocab.add(event)
    method.warm_up(interactions[:n_warm])

    batched = hasattr(method, "score_batch") and hasattr(method, "learn_batch")
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    hits, gains, skipped = 0, [], 0
    started = time.perf_counter()
    tail = interactions[n_warm:]
    for start in range(0, len(tail), batch_size):
        batch = tail[start : start + batch_size]
        units = [batch] if batched else list(waves(batch))
        for unit in units:
            ranked, consumed = [], []
            earlier: dict[str, list[int]] = {}
            known_before = len(vocab.ids)
            for event in unit:
                column = vocab.index.get(event.item_id)
                if column is not None and column < known_before:
                    ranked.append(event)
                    consumed.append(
                        vocab.user_items.get(event.user_id, []) + earlier.get(event.user_id, [])
                    )
                else:
                    skipped += 1
                # Later events of this user in the unit must not see it as new.
                vocab_column = vocab.index.get(event.item_id)
                if vocab_column is None:
                    vocab_column = vocab.index[event.item_id] = len(vocab.ids)
                    vocab.ids.append(event.item_id)
                earlier.setdefault(event.user_id, []).append(vocab_column)
            if ranked:
                candidates = vocab.ids[:known_before]
                if batched:
                    scores = method.score_batch(ranked, candidates)
                else:
                    scores = method.score([e.user_id for e in ranked], candidates)
                scores = np.array(scores, dtype=np.float64)
                for row, items in enumerate(consumed):
                    if items:
                        scores[row, [c for c in items if c < known_before]] = -np.inf
                top = _top_k(scores, k)
                for row, event in enumerate(ranked):
                    where = np.flatnonzero(top[row] == vocab.index[event.item_id])
                    hits += bool(where.size)
                    gains.append(float(discounts[where[0]]) if where.size else 0.0)
            for user_id, columns in earlier.items():
                vocab.user_items.setdefault(user_id, []).extend(columns)
            if batched:
                method.learn_batch(unit)
            else:
                method.learn(unit)
        if progress:
            progress(len(batch))
    seconds = time.perf_counter() - started
    evaluated = len(gains)
    return MethodResult(
        recall=hits / evaluated if evaluated else 0.0,
        ndcg=float(np.mean(gains)) if gains else 0.0,
        evaluated=evaluated,
        skipped=skipped,
        events_per_s=len(tail) / seconds if seconds > 0 else 0.0,
        seconds=seconds,
        ndcg_series=gains,
    )


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best columns per row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)


class RecommenderScorer:
    """Drives a :class:`~models.recommender.Recommender` under the evaluator's contract.

    Mirrors the worker: per-user profiles, ``learn_one`` per event, the gate
    learning from each event before it is applied, and the long-term merge
    re-embedding stale histories once per micro-batch.
    """

    def __init__(self, name: str, recommender, gate_warmup_share: float = 0.2) -> None:
        from models.profile import UserProfile

        self.name = name
        self.recommender = recommender
        self.gate_warmup_share = gate_warmup_share
        self._new_profile = UserProfile
        self.profiles: dict = {}
        self._cols = np.zeros(0, dtype=np.int64)
        self._last: tuple[list[str], np.ndarray] | None = None
        self._touched: dict = {}
        self._snapshots: tuple[list, list[str]] | None = None
        self._counter = 0

    def _profile(self, user_id: str):
        profile = self.profiles.get(user_id)
        if profile is None:
            profile = self.profiles[user_id] = self._new_profile(user_id)
        return profile

    def _apply(self, event: Interaction) -> None:
        self._counter += 1
        profile = self._profile(event.user_id)
        self.recommender.learn_one(profile, _with_id(event, self._counter), None)
        self._touched[event.user_id] = profile

    def warm_up(self, interactions: Sequence[Interaction]) -> None:
        n_gate = int(len(interactions) * self.gate_warmup_share)
        for event in interactions[: len(interactions) - n_gate]:
            self._apply(event)
        self.recommender.refresh_long_term(list(self._touched.values()), force=True)
        self._touched.clear()
        # The gate needs the other signals trained first: it learns on the tail,
        # micro-batch by micro-batch, exactly as in the evaluated window.
        tail = interactions[len(interactions) - n_gate :]
        for start in range(0, len(tail), 500):
            batch = tail[start : start + 500]
            self.recommender.learn_gate(*self._snapshots_before(batch))
            for event in batch:
                self._apply(event)
            self._merge()

    def _snapshots_before(self, events: Sequence[Interaction]) -> tuple[list, list[str]]:
        """Each event's user profile as it was just before that event."""
        snapshots, current = [], {}
        for n, event in enumerate(events):
            profile = current.get(event.user_id) or self._profile(event.user_id)
            snapshots.append(profile)
            following = profile.copy()
            self.recommender.observe(following, _with_id(event, -n - 1))
            current[event.user_id] = following
        return snapshots, [e.item_id for e in events]

    def _merge(self) -> None:
        self.recommender.refresh_long_term(list(self._touched.values()))
        self._touched.clear()

    def _map_columns(self, item_ids: Sequence[str]) -> None:
        if self._cols.shape[0] < len(item_ids):
            extra = [self.recommender.items.ensure(i) for i in item_ids[self._cols.shape[0] :]]
            self._cols = np.concatenate([self._cols, np.array(extra, dtype=np.int64)])

    def score(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        self._map_columns(item_ids)
        profiles = [self._profile(u) for u in user_ids]
        return self.recommender.scores(profiles)[:, self._cols[: len(item_ids)]]

    def learn(self, interactions: Sequence[Interaction]) -> None:
        self.learn_batch(interactions)

    def score_batch(self, events: Sequence[Interaction], item_ids: Sequence[str]) -> np.ndarray:
        """Scores for each event's user as of just before that event (see ``prequential``)."""
        self._map_columns(item_ids)
        self._snapshots = self._snapshots_before(events)
        return self.recommender.scores(self._snapshots[0])[:, self._cols[: len(item_ids)]]

    def learn_batch(self, events: Sequence[Interaction]) -> None:
        if self._snapshots is not None:
            # Teach the gate from the signals just scored, before applying the events.
            self.recommender.learn_gate(*self._snapshots)
            self._snapshots = None
        for event in events:
            self._apply(event)
        self._merge()


def _with_id(event: Interaction, counter: int) -> Interaction:
    if event.event_id:
        return event
    from dataclasses import replace

    return replace(event, event_id=f"eval-{counter}")
