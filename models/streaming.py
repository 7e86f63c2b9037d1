"""The contract between the prequential evaluator and anything it evaluates.

A scorer learns from interactions in stream order and scores candidate items
for a batch of users. The evaluator owns candidate sets and exclusions, so
every method is ranked under exactly the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Interaction:
    """One event as the models see it (ids are strings; time in epoch seconds)."""

    user_id: str
    item_id: str
    timestamp: float
    event_type: str = "view"
    value: float | None = None
    event_id: str = ""


class StreamingScorer(Protocol):
    """What the evaluator drives. ``name`` is the label in the results table."""

    name: str

    def warm_up(self, interactions: Sequence[Interaction]) -> None:
        """Train on the warm-up prefix (time-ordered). Online methods learn each in order."""
        ...

    def score(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        """``[len(user_ids), len(item_ids)]`` float scores; higher ranks first.

        ``item_ids`` is the evaluator's candidate vocabulary (every item seen so
        far, in order of first appearance; it only grows). The evaluator masks
        each user's own items itself.
        """
        ...

    def learn(self, interactions: Sequence[Interaction]) -> None:
        """Learn from interactions, in order (at most one per user per call)."""
        ...
