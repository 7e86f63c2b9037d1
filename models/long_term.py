"""Long-term interest: the user's whole kept history, as text and as pooled vectors.

The history's strongest actions are rendered as a sentence list ("purchased Alien
(Horror, Sci-Fi); rated Heat (Action); …", newest first) and embedded by the same BERT
that embeds items, so it lands in the item text space. It is recomputed
periodically (the "periodic merge"), not on every event: BERT is the costly part.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

from models.events import PAST_TENSE
from models.item_index import ItemIndex
from models.profile import UserProfile
from models.text_encoder import TextEncoder


def render_history(profile: UserProfile, items: ItemIndex, max_events: int = 8) -> str:
    """The user's ``max_events`` strongest actions over the whole kept history (largest
    weight first, the later of equal ones), as text, newest first; skips are left out.

    BERT reads only the first few dozen tokens, so the text names the actions that say most
    about lasting taste (a purchase, a 5-star rating), not merely the latest ones, which the
    short-term signals already have."""
    kept = []  # (weight, position, item row) of every action that can be rendered
    for position, item_id in enumerate(profile.items):
        row = items.row_of.get(item_id)
        if row is None or items.titles[row] is None or profile.kind_name(position) == "skip":
            continue
        kept.append((profile.weights[position], position, row))
    strongest = sorted(kept, key=lambda action: (-action[0], -action[1]))[:max_events]
    parts = []
    for _, position, row in sorted(strongest, key=lambda action: -action[1]):
        text = f"{PAST_TENSE[profile.kind_name(position)]} {items.titles[row]}"
        if items.categories[row]:
            text += f" ({', '.join(items.categories[row])})"
        parts.append(text)
    return "; ".join(parts)


def pack_vector(vector: np.ndarray) -> str:
    """int8 with one float32 scale, base64: a 384-d vector costs 520 bytes in the state
    store (float32 JSON would be ~3 KiB); cosine to the original stays above 0.999."""
    vector = np.asarray(vector, dtype=np.float32)
    scale = float(np.abs(vector).max()) / 127.0 or 1.0
    quantized = np.clip(np.round(vector / scale), -127, 127).astype(np.int8)
    return "q8:" + base64.b64encode(np.float32(scale).tobytes() + quantized.tobytes()).decode()


def unpack_vector(text: str) -> np.ndarray:
    if text.startswith("q8:"):
        raw = base64.b64decode(text[3:])
        scale = np.frombuffer(raw[:4], dtype=np.float32)[0]
        return np.frombuffer(raw[4:], dtype=np.int8).astype(np.float32) * scale
    # Format 1: float16.
    return np.frombuffer(base64.b64decode(text), dtype=np.float16).astype(np.float32)


class LongTermInterest:
    """Embeds rendered histories in batches; a profile keeps its latest vector."""

    def __init__(
        self,
        encoder: TextEncoder,
        items: ItemIndex,
        max_events: int = 8,
        refresh_every: int = 10,
        max_tokens: int = 64,
    ) -> None:
        self.encoder = encoder
        self.items = items
        self.max_events = max_events
        self.refresh_every = refresh_every
        # BERT's cost grows with the tokens it reads: 64 (about four rendered actions) took
        # half the time of 128 and scored the same (ML-100K validation prefix, README).
        self.max_tokens = max_tokens

    def is_stale(self, profile: UserProfile) -> bool:
        """True when the user has done ``refresh_every`` events since the last merge, the
        first merge included: a shorter history's text adds little to the pooled vectors of
        its items, which the long-term signal has from the first event. (Validation prefix:
        the same NDCG@10; new users cost no BERT pass until they have a history.)"""
        return profile.events_applied - profile.long_term_at >= self.refresh_every

    def refresh(self, profiles: Sequence[UserProfile]) -> int:
        """Re-embed the given profiles' histories in one batch. Returns how many changed."""
        texts, targets = [], []
        for profile in profiles:
            text = render_history(profile, self.items, self.max_events)
            if text:
                texts.append(text)
                targets.append(profile)
        if not texts:
            return 0
        vectors = self.encoder.encode(texts, max_tokens=self.max_tokens)
        for profile, vector in zip(targets, vectors, strict=True):
            profile.long_term = pack_vector(vector)
            profile.long_term_at = profile.events_applied
        return len(targets)
