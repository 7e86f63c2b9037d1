"""Interest fusion and ranking: the one entry point the stream agents call.

Signals (see ``models.fusion.SIGNALS``), all computed for a batch of users at once:
- ``sequence``: the Transformer over each user's recent actions (when attached);
- ``transitions``: online item-to-item followed-by counts from the user's last items;
- ``short_term``: time-decayed, action-weighted sum of recent items' content vectors;
- ``long_term``: pooled vectors of the whole kept history plus the BERT embedding of
  the history rendered as text (refreshed periodically);
- ``popularity``: decayed popularity, the prior that carries cold users.
They are standardised per user and blended by a per-user adaptive gate; each user's
candidates (every signal's top items) are then re-ranked by an online learned ranker
(``models.reranker``) that sees how the signals agree, the user's idle time and the item's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

import numpy as np
import torch
from scipy import sparse

from models.events import DEFAULT_EVENT_WEIGHTS, PAST_TENSE, event_weight
from models.fusion import (
    SIGNALS,
    FactoredSignals,
    FusionGate,
    LinearScores,
    SignalPart,
    activity_bucket,
)
from models.item_index import ItemIndex
from models.long_term import LongTermInterest, unpack_vector
from models.popularity import DecayedPopularity
from models.precision import use_bfloat16
from models.profile import UserProfile
from models.reranker import CandidateReranker, RankingContext
from models.transitions import ItemTransitions

MODEL_NAME = "streamrec-interest/2"


class EventLike(Protocol):
    event_id: str
    user_id: str
    item_id: str
    event_type: str
    timestamp: float
    value: float | None


class SequenceModel(Protocol):
    """What the recommender needs from a sequence model (``SequenceScorer``)."""

    version: str

    @property
    def item_ids(self) -> Sequence[str]: ...

    @property
    def max_len(self) -> int: ...

    def padded_inputs(
        self, histories: Sequence[tuple[Sequence[str], Sequence[int], Sequence[float]]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def padded_hidden_states(
        self, items: np.ndarray, types: np.ndarray, gaps: np.ndarray
    ) -> np.ndarray: ...

    def item_factors(self, columns: np.ndarray) -> tuple[np.ndarray, ...]: ...


class ScoredItem(NamedTuple):
    item_id: str
    score: float
    reason: str


@dataclass(frozen=True)
class RecommenderConfig:
    top_k: int = 10
    history_len: int = 100  # events kept per user (exclusion, long-term, sequence input)
    interest_window: int = 50  # most recent events that form short-term interest
    interest_half_life_s: float = 7 * 86_400.0
    popularity_half_life_s: float = 7 * 86_400.0
    transitions_window: int = 5
    transitions_neighbours: int = 200  # most-followed items scored per recent item
    # Counts kept per item (its most-followed ones; between this and twice this): memory
    # stays bounded by the catalog, not by the stream's length. 0: keep every pair.
    transitions_max_targets: int = 500
    exclude_consumed: bool = True
    dedup_window: int = 16  # recent event ids kept to spot producer retries
    # Distinct older items kept per user past ``history_len``, only to exclude them.
    consumed_len: int = 1000
    signals: tuple[str, ...] = SIGNALS
    learn_gate: bool = True
    gate_users_per_batch: int = 64  # users the gate learns from per micro-batch
    rerank: bool = False  # re-rank each user's candidates with the online learned ranker
    rerank_per_signal: int = 30  # candidates taken from each signal's (and the blend's) top
    rerank_learning_rate: float = 0.2
    trend_half_life_s: float = 86_400.0  # "trending now" popularity for the re-ranker
    # Serving ranks in two steps: a blend with bfloat16 dot products shortlists the best
    # ``shortlist_factor * top_k`` items, which are then scored exactly. "auto": bfloat16
    # where this CPU runs it faster; "float32": one exact pass.
    ranking_precision: str = "auto"  # auto | bfloat16 | float32
    shortlist_factor: int = 4


class Recommender:
    """Learns from events one at a time and ranks items for a batch of users."""

    def __init__(
        self,
        items: ItemIndex,
        config: RecommenderConfig | None = None,
        content_name: str = "",
        long_term: LongTermInterest | None = None,
        sequence: SequenceModel | None = None,
        gate: FusionGate | None = None,
    ) -> None:
        self.items = items
        self.config = config or RecommenderConfig()
        self.popularity = DecayedPopularity(self.config.popularity_half_life_s)
        self.transitions = ItemTransitions(
            self.config.transitions_window,
            max_neighbours=self.config.transitions_neighbours,
            max_targets=self.config.transitions_max_targets,
        )
        self.long_term = long_term
        self.gate = gate or FusionGate(signals=self.config.signals)
        self.trend = DecayedPopularity(self.config.trend_half_life_s)
        self.reranker = (
            CandidateReranker(
                self.gate.signals,
                per_signal=self.config.rerank_per_signal,
                learning_rate=self.config.rerank_learning_rate,
            )
            if self.config.rerank
            else None
        )
        self.content_name = content_name
        self.sequence: SequenceModel | None = None
        self._sequence_cols = np.zeros(0, dtype=np.int64)
        self._last_key: tuple | None = None
        self._last_signals: FactoredSignals | None = None
        self._last_ranked: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._rng = np.random.default_rng(0)
        self._coarse_items: dict[str, tuple[tuple, torch.Tensor]] = {}
        if sequence is not None:
            self.attach_sequence(sequence)

    @property
    def version(self) -> str:
        parts = [MODEL_NAME, self.content_name]
        if self.sequence is not None and "sequence" in self.config.signals:
            parts.append(self.sequence.version)
        return "+".join(p for p in parts if p)

    def attach_sequence(self, sequence: SequenceModel | None) -> None:
        """Use (or swap in) a sequence model; its items map onto our rows lazily."""
        self.sequence = sequence
        self._sequence_cols = np.zeros(0, dtype=np.int64)
        if sequence is not None:
            self._sequence_index = {item: col for col, item in enumerate(sequence.item_ids)}

    # -- learning --------------------------------------------------------------
    def learn_one(
        self, profile: UserProfile, event: EventLike, source: tuple[int, int] | None = None
    ) -> bool:
        """Apply one event to ``profile`` and the shared learners.

        Returns False (and changes nothing) for an event already applied.
        """
        if profile.is_duplicate(event.event_id, source):
            return False
        window = self.config.transitions_window
        previous = [self.items.ensure(i) for i in profile.items[-window:]]
        weight = self.observe(profile, event, source)
        row = self.items.row_of[event.item_id]
        self.transitions.learn_one(previous, row, weight)
        self.popularity.learn_one(row, event.timestamp, weight)
        self.trend.learn_one(row, event.timestamp, weight)
        return True

    def observe(
        self, profile: UserProfile, event: EventLike, source: tuple[int, int] | None = None
    ) -> float:
        """The per-user part of ``learn_one`` (no shared learners); returns the event weight."""
        weight = event_weight(event.event_type, event.value, DEFAULT_EVENT_WEIGHTS)
        self.items.ensure(event.item_id)
        profile.record(
            event.event_id,
            event.item_id,
            event.event_type,
            event.timestamp,
            weight,
            source,
            self.config.history_len,
            self.config.dedup_window,
            self.config.consumed_len if self.config.exclude_consumed else 0,
        )
        return weight

    def learn_gate(self, profiles: Sequence[UserProfile], item_ids: Sequence[str]) -> None:
        """Before applying events: teach the gate that each user's next item should win."""
        if not self.config.learn_gate or not profiles:
            return
        if self.reranker is not None:
            self._learn_reranker(profiles, item_ids)
        sample = np.arange(len(profiles))
        if len(profiles) > self.config.gate_users_per_batch:
            # An unbiased subset is enough for SGD and bounds the cost per batch.
            sample = np.sort(
                self._rng.choice(len(profiles), self.config.gate_users_per_batch, replace=False)
            )
        cached = self._cached_signals(profiles)
        if cached is not None:
            signals = cached.rows(sample)
        else:
            signals = self._standardized([profiles[b] for b in sample])
        positives = np.array([self.items.row_of.get(item_ids[b], -1) for b in sample])
        consumed = [[self.items.row_of[i] for i in profiles[b].consumed()] for b in sample]
        self.gate.learn(signals, positives, consumed)
        self._last_key = self._last_signals = self._last_ranked = None  # not kept longer

    def _learn_reranker(self, profiles: Sequence[UserProfile], item_ids: Sequence[str]) -> None:
        """Every example teaches the re-ranker: its chosen item should top its candidates."""
        ranked = self._last_ranked if self._cached_signals(profiles) is not None else None
        if ranked is None:
            self._final_scores(profiles, self._standardized(profiles, remember=True))
            ranked = self._last_ranked
        features, cand, valid = ranked
        positives = np.array([self.items.row_of.get(i, -1) for i in item_ids])
        self.reranker.learn(features, valid, cand, positives)

    def refresh_long_term(self, profiles: Sequence[UserProfile], force: bool = False) -> int:
        """The periodic merge: re-embed stale long-term histories in one batch."""
        if self.long_term is None or "long_term" not in self.config.signals:
            return 0
        stale = [p for p in profiles if force or self.long_term.is_stale(p)]
        return self.long_term.refresh(stale)

    # -- signals ---------------------------------------------------------------
    def _recent(self, profile: UserProfile, window: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and decayed weights of the last ``window`` events."""
        start = max(0, len(profile.items) - window)
        row_of, ensure = self.items.row_of, self.items.ensure
        rows = [row_of[i] if i in row_of else ensure(i) for i in profile.items[start:]]
        rows = np.array(rows, dtype=np.int64)
        age = profile.last_event_time - np.asarray(profile.times[start:], dtype=np.float64)
        weights = np.asarray(profile.weights[start:], dtype=np.float64) * self._decay(age)
        return rows, weights.astype(np.float32)

    def _decay(self, age_s: np.ndarray) -> np.ndarray:
        """Short-term interest's weight for events ``age_s`` seconds before the user's last."""
        return 0.5 ** (np.maximum(age_s, 0.0) / self.config.interest_half_life_s)

    def signals(self, profiles: Sequence[UserProfile]) -> dict[str, np.ndarray]:
        """Raw ``[B, N]`` score matrix of every enabled signal over all items."""
        parts = self._signal_parts(profiles)
        expanded = FactoredSignals(list(parts.values()), len(self.items), np.zeros(len(profiles)))
        return dict(zip(parts, expanded.raw, strict=True))

    def _signal_parts(self, profiles: Sequence[UserProfile]) -> dict[str, SignalPart]:
        """Every enabled signal in factored form (``models.fusion.FactoredSignals``)."""
        enabled = self.config.signals
        # Stored histories can name items this process has not seen yet (a worker that
        # restarted, or took over a partition): give them rows before sizing matrices.
        row_of = self.items.row_of
        for item_id in [i for p in profiles for i in p.items if i not in row_of]:
            self.items.ensure(item_id)
        n_items, features = len(self.items), self.items.features
        out: dict[str, SignalPart] = {}
        if "short_term" in enabled or "long_term" in enabled:
            short, pooled = self._content_queries(profiles)
            mean, covariance = self.items.feature_moments()
            if "short_term" in enabled:
                out["short_term"] = LinearScores(_unit(short), features, mean, covariance)
            if "long_term" in enabled:
                # The history-text vector scores the text columns: zero-padded, it adds to
                # the pooled vector (x·F + y·F_text = (x + [y, 0])·F).
                queries = _unit(pooled) + self._history_text_queries(profiles)
                out["long_term"] = LinearScores(queries, features, mean, covariance)
        if "transitions" in enabled:
            window = self.config.transitions_window
            recent_rows = [[self.items.row_of[i] for i in p.items[-window:]] for p in profiles]
            out["transitions"] = self.transitions.sparse_scores(recent_rows, n_items)
        if "sequence" in enabled:
            out["sequence"] = self._sequence_scores(profiles)
        if "popularity" in enabled:
            out["popularity"] = self.popularity.scores(n_items)
        return out

    def _content_queries(self, profiles: Sequence[UserProfile]) -> tuple[np.ndarray, np.ndarray]:
        """``[B, dim]`` content vectors of each user's recent events (decayed, action-weighted:
        short-term interest) and of the whole kept history (pooled, positive weights only),
        as two sparse user-by-item weight matrices times the item features."""
        kept = self.config.history_len
        histories = [(p.items[-kept:], p.times[-kept:], p.weights[-kept:]) for p in profiles]
        counts = np.array([len(items) for items, _, _ in histories], dtype=np.int64)
        row_of = self.items.row_of
        rows = np.array([row_of[i] for items, _, _ in histories for i in items], dtype=np.int64)
        times = np.array([t for _, ts, _ in histories for t in ts], dtype=np.float64)
        weights = np.array([w for _, _, ws in histories for w in ws], dtype=np.float64)
        users = np.repeat(np.arange(len(profiles)), counts)
        last = np.array([p.last_event_time for p in profiles], dtype=np.float64)
        decayed = weights * self._decay(last[users] - times)
        from_end = np.cumsum(counts)[users] - 1 - np.arange(len(users))  # 0: the latest
        recent = from_end < self.config.interest_window
        shape, features = (len(profiles), len(self.items)), self.items.features
        short_weights = sparse.csr_matrix(
            (decayed[recent].astype(np.float32), (users[recent], rows[recent])), shape=shape
        )
        pooled_weights = sparse.csr_matrix(
            (np.clip(weights, 0, None).astype(np.float32), (users, rows)), shape=shape
        )
        return short_weights @ features, pooled_weights @ features

    def _history_text_queries(self, profiles: Sequence[UserProfile]) -> np.ndarray:
        """``[B, dim]``: each user's history-text vector in the text columns, zeros elsewhere."""
        text_dim = self.items.text_dim
        vectors = np.zeros((len(profiles), self.items.dim), dtype=np.float32)
        for b, profile in enumerate(profiles):
            if text_dim and profile.long_term is not None:
                vector = unpack_vector(profile.long_term)
                if vector.shape[0] == text_dim:
                    vectors[b, :text_dim] = vector
        return vectors

    def _sequence_scores(self, profiles: Sequence[UserProfile]) -> SignalPart:
        n_items = len(self.items)
        if self.sequence is None:
            return np.zeros(n_items, dtype=np.float32)  # no model: constant, weighs nothing
        if self._sequence_cols.shape[0] < n_items:  # map rows added since last call
            new = [
                self._sequence_index.get(item_id, -1)
                for item_id in self.items.ids[self._sequence_cols.shape[0] :]
            ]
            self._sequence_cols = np.concatenate([self._sequence_cols, np.array(new, np.int64)])
        # One action more than the model sees: the first one it sees is timed from it.
        tail = slice(-self.sequence.max_len - 1, None)
        inputs = self.sequence.padded_inputs(
            [(p.items[tail], p.kinds[tail], p.times[tail]) for p in profiles]
        )
        # Items the model never saw (column -1) get the mean item vector: neutral, not last.
        factors, mean, covariance = self.sequence.item_factors(self._sequence_cols[:n_items])
        return LinearScores(self.sequence.padded_hidden_states(*inputs), factors, mean, covariance)

    @staticmethod
    def _state_key(profiles: Sequence[UserProfile], n_items: int) -> tuple:
        return (*((p.user_id, p.events_applied) for p in profiles), n_items)

    def _cached_signals(self, profiles: Sequence[UserProfile]) -> FactoredSignals | None:
        """The last signals computed, if for the same users in the same state (a batch is
        scored, then the gate learns from the same batch)."""
        if self._last_key == self._state_key(profiles, len(self.items)):
            return self._last_signals
        return None

    @property
    def ranks_coarse_first(self) -> bool:
        """Whether ``recommend`` shortlists with a bfloat16 blend (not with the re-ranker:
        it re-scores candidates from the exact blend)."""
        return self.reranker is None and use_bfloat16(self.config.ranking_precision)

    def _with_coarse_items(self, parts: dict[str, SignalPart]) -> dict[str, SignalPart]:
        """``parts`` with bfloat16 copies of their item matrices, kept while unchanged."""
        out = dict(parts)
        for name, part in parts.items():
            if not isinstance(part, LinearScores):
                continue
            content = name in ("short_term", "long_term")
            # Content rows change in place (upserts); the sequence model's are a new array.
            key = (len(part.items), self.items.content_version if content else id(part.items))
            slot = "content" if content else name
            cached = self._coarse_items.get(slot)
            if cached is None or cached[0] != key:
                cached = (key, torch.from_numpy(part.items).bfloat16())
                self._coarse_items[slot] = cached
            out[name] = replace(part, coarse_items=cached[1])
        return out

    def _standardized(
        self, profiles: Sequence[UserProfile], remember: bool = False, coarse: bool = False
    ) -> FactoredSignals:
        parts = self._signal_parts(profiles)
        if coarse:
            parts = self._with_coarse_items(parts)
        buckets = np.array([activity_bucket(p.events_applied) for p in profiles])
        signals = FactoredSignals([parts[s] for s in self.gate.signals], len(self.items), buckets)
        if remember:
            self._last_key = self._state_key(profiles, len(self.items))
            self._last_signals = signals
        return signals

    def scores(self, profiles: Sequence[UserProfile]) -> np.ndarray:
        """Fused ``[B, N]`` scores over all items (no exclusion).

        The signals are kept until the gate learns from the same batch (evaluator).
        """
        return self._final_scores(profiles, self._standardized(profiles, remember=True))

    def _excluded(self, profiles: Sequence[UserProfile], n_items: int) -> np.ndarray:
        """``[B, N]`` True where an item may not be served to the user."""
        excluded = np.zeros((len(profiles), n_items), dtype=bool)
        if self.items.retired:
            excluded[:, list(self.items.retired)] = True
        if self.config.exclude_consumed:
            for b, profile in enumerate(profiles):
                excluded[b, [self.items.row_of[i] for i in profile.consumed()]] = True
        return excluded

    def _final_scores(
        self, profiles: Sequence[UserProfile], signals: FactoredSignals, coarse: bool = False
    ) -> np.ndarray:
        """``[B, N]``: the gate's blend, or with the re-ranker, its scores on each user's
        candidates placed above every other item (kept in blend order below them)."""
        fused = self.gate.blend(signals, coarse=coarse)
        if self.reranker is None:
            return fused
        n_items = fused.shape[1]
        cand, valid = self.reranker.candidates(
            signals.raw, fused, self._excluded(profiles, n_items)
        )
        features = self.reranker.features(
            signals, self._context(profiles, fused, cand), cand, valid
        )
        if self._last_key == self._state_key(profiles, n_items):
            self._last_ranked = (features, cand, valid)
        spread = np.maximum(np.abs(fused).max(axis=1, keepdims=True), 1.0)
        out = fused - (4.0 * spread + 1e3)  # below any candidate (per user: batch-independent)
        rows = np.broadcast_to(np.arange(len(profiles))[:, None], cand.shape)
        out[rows[valid], cand[valid]] = self.reranker.score(features)[valid]  # padding: skipped
        return out

    def _context(
        self, profiles: Sequence[UserProfile], fused: np.ndarray, cand: np.ndarray
    ) -> RankingContext:
        n_items = fused.shape[1]
        now = self.popularity.now
        hours = 3600.0
        cap = np.log1p(24.0 * 365)  # idle times saturate at a year (and "never")
        item_idle = np.minimum(np.log1p(self.popularity.idle_seconds(n_items) / hours), cap)
        last_times = np.array([p.last_event_time if p.items else -np.inf for p in profiles])
        user_idle = np.minimum(np.log1p(np.maximum(now - last_times, 0.0) / hours), cap)
        user_idle = np.nan_to_num(user_idle, nan=cap)
        last_rows = [self.items.row_of[p.items[-1]] if p.items else -1 for p in profiles]
        follows = like = None
        if "transitions" in self.gate.signals:
            follows = np.zeros(cand.shape, dtype=np.float32)
            for b, last in enumerate(last_rows):
                if last >= 0:
                    follows[b] = self.transitions.row_scores(last, cand[b])
        if "short_term" in self.gate.signals:
            like = np.zeros(cand.shape, dtype=np.float32)
            features = self.items.features
            for b, last in enumerate(last_rows):
                if last >= 0:
                    like[b] = features[cand[b]] @ features[last]
        return RankingContext(
            buckets=np.array([activity_bucket(p.events_applied) for p in profiles]),
            fused=fused,
            item_trend=np.log1p(self.trend.counts(n_items)),
            item_idle=item_idle,
            user_idle=user_idle,
            follows_last=follows,
            like_last=like,
        )

    def predict_one(self, profile: UserProfile, item_id: str) -> float:
        """Fused score of one item for one user (same formula as ``recommend``)."""
        row = self.items.ensure(item_id)
        return float(self.scores([profile])[0, row])

    # -- ranking ---------------------------------------------------------------
    def recommend(
        self, profiles: Sequence[UserProfile], k: int | None = None
    ) -> list[list[ScoredItem]]:
        """Top-``k`` items with reasons for each profile, ranked in one batch."""
        k = k or self.config.top_k
        if not profiles or len(self.items) == 0:
            return [[] for _ in profiles]
        coarse = self.ranks_coarse_first
        signals = self._standardized(profiles, coarse=coarse)
        fused = self._final_scores(profiles, signals, coarse=coarse)
        if self.items.retired:
            fused[:, list(self.items.retired)] = -np.inf
        if self.config.exclude_consumed:
            for b, profile in enumerate(profiles):
                fused[b, [self.items.row_of[i] for i in profile.consumed()]] = -np.inf
        shortlist = min(k * self.config.shortlist_factor if coarse else k, fused.shape[1])
        top = torch.topk(torch.from_numpy(fused), shortlist, dim=1).indices.numpy()  # [B C]
        top_scores = np.take_along_axis(fused, top, axis=1)
        weights = self.gate.weights[signals.buckets].T  # [S B]
        contributions = weights[:, :, None] * signals.z_rows(top)  # [S B C]
        # The blend is the sum of the contributions: exact where the shortlist was coarse.
        exact = contributions.sum(axis=0) if coarse else top_scores
        exact = np.where(np.isfinite(top_scores), exact, -np.inf)  # excluded stay excluded
        keep = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        served, scores = np.take_along_axis(top, keep, 1), np.take_along_axis(exact, keep, 1)
        contributions = np.take_along_axis(contributions, keep[None], 2)  # [S B k]
        leading = contributions.argmax(axis=0)
        positive = contributions.max(axis=0) > 0
        results = []
        for b, profile in enumerate(profiles):
            n = int(np.isfinite(scores[b]).sum())
            led_by = [
                self.gate.signals[s] if pos else None
                for s, pos in zip(leading[b, :n], positive[b, :n], strict=True)
            ]
            rows = served[b, :n]
            reasons = self._reasons(profile, rows, led_by)
            results.append(
                [
                    ScoredItem(self.items.ids[row], round(float(score), 6), reason)
                    for row, score, reason in zip(rows, scores[b, :n], reasons, strict=True)
                ]
            )
        return results

    def _reasons(
        self, profile: UserProfile, rows: np.ndarray, led_by: Sequence[str | None]
    ) -> list[str]:
        """Explain each served row by the signal that contributed most to its score: the
        recent action it follows or resembles, the long-term theme, or "popular now"."""
        reasons = ["popular now"] * len(rows)
        if not profile.items:
            return reasons
        n_events = len(profile.items)
        by_signal: dict[str | None, list[int]] = {}
        for col, signal in enumerate(led_by):
            by_signal.setdefault(signal, []).append(col)
        named: dict[int, tuple[str, int]] = {}  # served column -> (prefix, past action)
        if cols := by_signal.get("transitions"):
            # The most recent of the items it most often followed (none: the theme below).
            positions = list(range(n_events - 1, -1, -1))[: self.config.transitions_window]
            sources = [self.items.row_of[profile.items[p]] for p in positions]
            counts = self.transitions.counts(sources, rows[cols])  # [W C]
            best, found = counts.argmax(axis=0), counts.max(axis=0) > 0
            for n, col in enumerate(cols):
                if found[n]:
                    named[col] = ("often chosen with", positions[best[n]])
        for col in by_signal.get("sequence", ()):
            named[col] = ("next in your sequence after", n_events - 1)
        if cols := by_signal.get("short_term"):
            recent, weights = self._recent(profile, self.config.interest_window)
            features = self.items.features
            similarity = (weights[:, None] * features[recent]) @ features[rows[cols]].T  # [R C]
            for col, best in zip(cols, similarity.argmax(axis=0), strict=True):
                named[col] = ("similar to", n_events - len(recent) + int(best))
        texts: dict[tuple[str, int], str] = {}  # items often share a reason: format it once
        theme = None
        for col, signal in enumerate(led_by):
            if col in named:
                if named[col] not in texts:
                    texts[named[col]] = self._action_reason(*named[col], profile)
                reasons[col] = texts[named[col]]
            elif signal not in (None, "popularity"):
                theme = theme or self._long_term_theme(profile)
                reasons[col] = theme
        return reasons

    def _long_term_theme(self, profile: UserProfile) -> str:
        themes = Counter(
            c for i in profile.items for c in self.items.categories[self.items.row_of[i]]
        ).most_common(2)
        if themes:
            return "matches your long-term taste for " + " & ".join(t for t, _ in themes)
        return "matches your long-term taste"

    def _action_reason(self, prefix: str, position: int, profile: UserProfile) -> str:
        verb = PAST_TENSE[profile.kind_name(position)]
        label = self.items.label(self.items.row_of[profile.items[position]])
        return f"{prefix} {label} you {verb}"


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
