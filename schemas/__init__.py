"""Typed records on streamrec's topics and the validation that admits them."""

from schemas.records import (
    EVENT_TYPES,
    BehaviorEvent,
    CatalogItem,
    DeadLetter,
    Recommendation,
    RecommendedItem,
)
from schemas.validation import (
    InvalidInput,
    ValidationPolicy,
    parse_catalog_item,
    parse_event,
)

__all__ = [
    "EVENT_TYPES",
    "BehaviorEvent",
    "CatalogItem",
    "DeadLetter",
    "InvalidInput",
    "Recommendation",
    "RecommendedItem",
    "ValidationPolicy",
    "parse_catalog_item",
    "parse_event",
]
