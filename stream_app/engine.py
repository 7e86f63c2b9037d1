"""The worker's model state and the records it produces, free of Kafka plumbing.

Agents hand validated records to an :class:`Engine`; the evaluator drives the
same object, so what is measured is what is served.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models import (
    ItemFeaturizer,
    ItemText,
    Recommender,
    RecommenderConfig,
    UserProfile,
    build_text_encoder,
)
from models.long_term import LongTermInterest
from schemas import BehaviorEvent, CatalogItem, DeadLetter
from schemas.records import MAX_DEAD_LETTER_PAYLOAD
from stream_app.settings import Settings

log = logging.getLogger(__name__)


class Engine:
    """Item index + recommender built from settings; one per worker process."""

    def __init__(self, settings: Settings, signals: Sequence[str] | None = None) -> None:
        """``signals``: the blend's signals; default: the settings' (``STREAMREC_SIGNALS``)."""
        self.settings = settings
        signals = settings.signal_names if signals is None else tuple(signals)
        self.device = settings.resolved_device()
        encoder = build_text_encoder(settings.text_encoder, self.device, settings.precision)
        self.featurizer = ItemFeaturizer(encoder)
        self.items = self.featurizer.new_index()
        long_term = (
            LongTermInterest(
                encoder,
                self.items,
                max_events=settings.long_term_events,
                refresh_every=settings.long_term_refresh_events,
                max_tokens=settings.long_term_max_tokens,
            )
            if encoder is not None
            else None
        )
        self.recommender = Recommender(
            self.items,
            RecommenderConfig(
                top_k=settings.top_k,
                history_len=settings.history_len,
                interest_window=settings.interest_window,
                interest_half_life_s=settings.interest_half_life_s,
                popularity_half_life_s=settings.popularity_half_life_s,
                exclude_consumed=settings.exclude_consumed,
                signals=signals,
                learn_gate=settings.gate_learning,
                rerank=settings.rerank,
                ranking_precision=settings.precision,
            ),
            content_name=self.featurizer.name,
            long_term=long_term,
        )
        self._embedding_cache = (
            load_embeddings(Path(settings.embedding_cache)) if settings.embedding_cache else {}
        )
        self._recent_sequences: deque = deque(maxlen=4096)
        self._gate_rng = random.Random(0)
        self._gate_pending: tuple[list[UserProfile], list[str]] = ([], [])
        self._finetunes = 0
        self._stale: set[str] = set()
        self._pending: dict[str, tuple[str, int]] = {}
        self._forgotten_at: dict[str, float] = {}  # user -> when forget() ran (monotonic)
        self._stale_taken_at = 0.0
        if settings.sequence_checkpoint:
            self.load_sequence_model(Path(settings.sequence_checkpoint))

    def _load_scorer(self, checkpoint: Path):
        """A verified scorer on this engine's device, serving at its precision."""
        from models.sequence_training import SequenceScorer

        return SequenceScorer.load(
            checkpoint,
            device=self.device,
            precision=self.settings.precision,
            average_tie_orders=self.settings.sequence_average_tie_orders,
        )

    def load_sequence_model(self, checkpoint: Path) -> None:
        """Load (integrity-checked) and attach a sequence model checkpoint."""
        scorer = self._load_scorer(checkpoint)
        self.recommender.attach_sequence(scorer)
        log.info("sequence model %s loaded on %s", scorer.version, self.device)

    def candidate_sequence_model(self, checkpoint: Path):
        """A verified scorer from ``checkpoint`` to swap in, or ``None`` if it is refused.

        Thread-safe (run it off the event loop); the caller attaches the result. Refused,
        with an ERROR naming the reason, while the current model keeps serving: a missing
        or unreadable checkpoint, a file whose sha256 differs from ``manifest.json``,
        weights that do not fit the config, or a model whose scores are not finite.
        Weights are read with safetensors and everything else as JSON: nothing is
        unpickled.
        """
        from models.sequence_training import CheckpointError

        current = self.recommender.sequence
        serving = current.version if current is not None else "no sequence model"
        try:
            scorer = self._load_scorer(checkpoint)
            probe = scorer.score_sequences([[(scorer.item_ids[0], "view", 0.0)]])
            if probe.shape != (1, len(scorer.item_ids)) or not np.isfinite(probe).all():
                raise CheckpointError(f"{checkpoint}: the model's scores are not finite")
        except CheckpointError as exc:
            log.error("sequence checkpoint refused, still serving %s: %s", serving, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - nothing a checkpoint holds may stop serving
            log.error(
                "sequence checkpoint %s refused, still serving %s: %r", checkpoint, serving, exc
            )
            return None
        return scorer

    # -- catalog ---------------------------------------------------------------
    def featurize(self, catalog: Sequence[CatalogItem]) -> tuple[list[ItemText], np.ndarray]:
        """Embed catalog items; thread-safe, so it can run off the event loop.

        Items whose text is unchanged since ``streamrec embed`` wrote the cache
        reuse their stored vectors instead of running BERT again.
        """
        texts = [
            ItemText(c.item_id, c.title, tuple(c.categories or ()), c.description) for c in catalog
        ]
        vectors = np.zeros((len(texts), self.featurizer.dim), dtype=np.float32)
        missing = []
        for n, text in enumerate(texts):
            cached = self._embedding_cache.get(text_key(text, self.featurizer.name))
            if cached is not None and cached.shape[0] == self.featurizer.dim:
                vectors[n] = cached
            else:
                missing.append(n)
        if missing:
            vectors[missing] = self.featurizer.featurize([texts[n] for n in missing])
        return texts, vectors

    def add_items(self, texts: list[ItemText], vectors: np.ndarray) -> None:
        self.items.upsert(texts, vectors)

    # -- long-term merge and gate ------------------------------------------------
    def note_activity(self, profile: UserProfile) -> None:
        """Queue a user for the periodic long-term merge once their history moved on,
        and keep their recent sequence for the Transformer's periodic fine-tuning."""
        long_term = self.recommender.long_term
        if long_term is not None and long_term.is_stale(profile):
            self._stale.add(profile.user_id)
        if self.recommender.sequence is not None and self.settings.sequence_finetune_interval_s:
            tail = slice(-self.recommender.sequence.max_len, None)
            kinds = [profile.kind_name_of(k) for k in profile.kinds[tail]]
            self._recent_sequences.append(
                (
                    profile.user_id,  # so that forget() can drop it
                    list(zip(profile.items[tail], kinds, profile.times[tail], strict=True)),
                )
            )

    def fine_tuned_sequence_model(self):
        """A fine-tuned copy of the sequence model (worker thread), or None.

        The serving model is never trained in place: the copy is swapped in by
        the caller on the event loop, so ranking never sees half-updated weights.
        """
        current = self.recommender.sequence
        sequences = [sequence for _, sequence in self._recent_sequences]
        if current is None or len(sequences) < 8:
            return None
        self._recent_sequences.clear()
        candidate = copy.deepcopy(current)
        losses = candidate.fine_tune(sequences, steps=self.settings.sequence_finetune_steps)
        if not losses or not all(np.isfinite(losses)):
            return None
        self._finetunes += 1
        candidate.version = f"{current.version.split('+ft')[0]}+ft{self._finetunes}"
        return candidate

    def forget(self, user_id: str) -> UserProfile:
        """Drop what this worker holds in memory about a user; returns a fresh profile.

        The caller deletes the stored profile. What stays is what is not the user's:
        the shared learners (popularity, transitions, the gate, the Transformer) hold
        aggregates over all users, not per-user records.
        """
        self._stale.discard(user_id)
        self._pending.pop(user_id, None)
        now = time.monotonic()
        self._forgotten_at[user_id] = now
        if len(self._forgotten_at) > 10_000:  # only refreshes in flight need to know
            self._forgotten_at = {u: t for u, t in self._forgotten_at.items() if now - t < 600}
        kept = [entry for entry in self._recent_sequences if entry[0] != user_id]
        if len(kept) != len(self._recent_sequences):
            self._recent_sequences = deque(kept, maxlen=self._recent_sequences.maxlen)
        return UserProfile(user_id)

    def take_stale_users(self, limit: int = 256) -> list[str]:
        self._stale_taken_at = time.monotonic()
        users = []
        while self._stale and len(users) < limit:
            users.append(self._stale.pop())
        return users

    def refresh_long_term(self, snapshots: Sequence[UserProfile]) -> int:
        """Embed histories (worker thread); results wait in ``_pending`` for the agent.

        A user deleted since :meth:`take_stale_users` handed them out gets no result: it
        would carry the deleted history into their new profile.
        """
        taken_at = self._stale_taken_at
        merged = self.recommender.refresh_long_term(snapshots, force=True)
        for profile in snapshots:
            if self._forgotten_at.get(profile.user_id, float("-inf")) >= taken_at:
                continue
            if profile.long_term is not None:
                self._pending[profile.user_id] = (profile.long_term, profile.long_term_at)
        return merged

    def merge_long_term(self, profile: UserProfile) -> None:
        pending = self._pending.pop(profile.user_id, None)
        if pending is not None and pending[1] >= profile.long_term_at:
            profile.long_term, profile.long_term_at = pending

    def gate_examples(
        self, profiles: Sequence[UserProfile], next_items: Sequence[str]
    ) -> tuple[list[UserProfile], list[str]]:
        """A random share (``gate_sample_rate``) of (user before this batch, their next
        item) for :meth:`learn_gate`, copied so that applying the batch leaves them be."""
        if not self.settings.gate_learning or not profiles or not len(self.items):
            return [], []
        rate = self.settings.gate_sample_rate
        picks = [n for n in range(len(profiles)) if self._gate_rng.random() < rate]
        return [profiles[n].copy() for n in picks], [next_items[n] for n in picks]

    def learn_gate(self, profiles: Sequence[UserProfile], next_items: Sequence[str]) -> None:
        """Collect examples; learn once a full gate batch is there.

        Scoring the examples costs a ranking pass: pooled, it is one pass per
        ``gate_users_per_batch`` examples, whatever the micro-batch size.
        """
        self._gate_pending[0].extend(profiles)
        self._gate_pending[1].extend(next_items)
        size = self.recommender.config.gate_users_per_batch
        while len(self._gate_pending[0]) >= size and len(self.items):
            users, items = self._gate_pending
            self._gate_pending = (users[size:], items[size:])
            self.recommender.learn_gate(users[:size], items[:size])

    # -- events ----------------------------------------------------------------
    @staticmethod
    def stored_form(profile: UserProfile) -> bytes:
        """What the table holds for a user: compact JSON (no spaces; see ``load_profile``)."""
        return json.dumps(profile.to_dict(), separators=(",", ":")).encode()

    @staticmethod
    def load_profile(user_id: str, stored: bytes | dict | None) -> UserProfile:
        if not stored:
            return UserProfile(user_id)
        try:
            data = json.loads(stored) if isinstance(stored, bytes) else stored
            return UserProfile.from_dict(data)
        except (KeyError, TypeError, ValueError, IndexError):
            log.warning("unreadable stored profile for user %s; starting afresh", user_id)
            return UserProfile(user_id)

    def admits_item(self, item_id: str, new_in_batch: set[str]) -> bool:
        """Whether an event naming ``item_id`` may be applied: a known item, or a new one
        while fewer than ``max_uncataloged_items`` event-only items are held. A new one
        admitted joins ``new_in_batch`` (the micro-batch's, not yet applied), which counts
        towards the limit."""
        if item_id in self.items or item_id in new_in_batch:
            return True
        limit = self.settings.max_uncataloged_items
        if limit and self.items.id_only + len(new_in_batch) >= limit:
            return False
        new_in_batch.add(item_id)
        return True

    def apply(
        self, profile: UserProfile, event: BehaviorEvent, source: tuple[int, ...] | None
    ) -> bool:
        return self.recommender.learn_one(profile, event, source)

    def recommend(
        self, profiles: Sequence[UserProfile], triggers: Sequence[str]
    ) -> list[dict[str, Any]]:
        """One recommendation per profile, as plain documents in the
        :class:`~schemas.Recommendation` shape; ``triggers`` are the causing event ids.

        Plain dicts, not Records: the worker publishes hundreds per micro-batch, and
        building nested Faust Records costs more than ranking on small batches.
        """
        now = time.time()
        ranked = self.recommender.recommend(profiles)
        version = self.recommender.version
        return [
            {
                "user_id": profile.user_id,
                "items": [
                    {"item_id": s.item_id, "score": s.score, "reason": s.reason} for s in scored
                ],
                "trigger_event_id": trigger,
                "generated_at": now,
                "model_version": version,
            }
            for profile, trigger, scored in zip(profiles, triggers, ranked, strict=True)
        ]


def checkpoint_fingerprint(directory: Path) -> tuple:
    """Names, sizes and modification times of a checkpoint's files: changes when any does."""
    entries = []
    for path in sorted(directory.glob("*")) if directory.is_dir() else []:
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


def text_key(text: ItemText, encoder_name: str) -> str:
    """Cache key: the encoder and exactly the text it would see."""
    digest = hashlib.blake2b(f"{encoder_name}\x00{text.render()}".encode(), digest_size=16)
    return digest.hexdigest()


def save_embeddings(path: Path, keys: Sequence[str], vectors: np.ndarray) -> None:
    np.savez(path, keys=np.array(keys), vectors=vectors.astype(np.float32))


def load_embeddings(path: Path) -> dict[str, np.ndarray]:
    """Vectors by text key; plain arrays only (``allow_pickle=False``)."""
    if not path.exists():
        log.warning("embedding cache %s not found; embedding from scratch", path)
        return {}
    with np.load(path, allow_pickle=False) as data:
        return dict(zip(data["keys"].tolist(), data["vectors"], strict=True))


def dead_letter(
    payload: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    kind: str,
    message: str,
) -> DeadLetter:
    raw = payload or b""
    truncated = len(raw) > MAX_DEAD_LETTER_PAYLOAD
    raw = raw[:MAX_DEAD_LETTER_PAYLOAD]
    return DeadLetter(
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        error_kind=kind,
        error_message=message[:1000],
        payload=raw.decode("utf-8", errors="replace"),
        payload_b64=base64.b64encode(raw).decode("ascii"),
        payload_truncated=truncated,
        failed_at=time.time(),
    )
