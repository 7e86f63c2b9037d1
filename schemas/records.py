"""Records exchanged on streamrec's topics.

Every record is plain JSON on the wire, so producers outside Faust publish the
same shape (``include_metadata=False``: no Faust ``__faust`` blob is required).
"""

from __future__ import annotations

from typing import Any

import faust

from models.events import EVENT_TYPES, USER_DELETION  # one list for wire and models

__all__ = [
    "EVENT_TYPES",
    "USER_DELETION",
    "BehaviorEvent",
    "CatalogItem",
    "DeadLetter",
    "Recommendation",
    "RecommendedItem",
    "UserDeletion",
]


class _JsonRecord(
    faust.Record,
    abstract=True,
    serializer="json",
    include_metadata=False,
    coerce=True,
):
    """Base: JSON, no Faust metadata on the wire."""


class BehaviorEvent(_JsonRecord):
    """One user action on one item. ``timestamp`` is epoch seconds (event time)."""

    event_id: str
    user_id: str
    item_id: str
    event_type: str
    timestamp: float
    value: float | None = None
    context: dict[str, Any] | None = None


class UserDeletion(_JsonRecord):
    """``{"event_type": "delete_user"}`` on the events topic, keyed by ``user_id``.

    Everything streamrec holds about the user is deleted: the table key (a tombstone on the
    changelog), and a tombstone (null value) is published on the recommendations topic.
    Later events for the user start from nothing.
    """

    event_id: str
    user_id: str
    timestamp: float


class CatalogItem(_JsonRecord):
    """An item that can be recommended; its text feeds the content embedding."""

    item_id: str
    title: str
    description: str | None = None
    categories: list[str] = []  # noqa: RUF012 - faust copies field defaults
    attributes: dict[str, Any] | None = None


class RecommendedItem(_JsonRecord):
    item_id: str
    score: float
    reason: str


class Recommendation(_JsonRecord):
    """Top-K list for one user, keyed by ``user_id`` on the output topic."""

    user_id: str
    items: list[RecommendedItem]
    trigger_event_id: str
    generated_at: float
    model_version: str


class DeadLetter(_JsonRecord):
    """An input message we refused, with where it came from and why.

    ``payload`` is the original message as text (UTF-8, undecodable bytes
    replaced); ``payload_b64`` keeps the exact bytes. Payloads beyond
    ``MAX_DEAD_LETTER_PAYLOAD`` bytes are cut and flagged ``payload_truncated``.
    """

    source_topic: str
    source_partition: int
    source_offset: int
    error_kind: str
    error_message: str
    payload: str
    payload_b64: str
    payload_truncated: bool
    failed_at: float


MAX_DEAD_LETTER_PAYLOAD = 256 * 1024
