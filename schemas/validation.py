"""Turn raw message bytes into records, or say precisely why not.

Every refusal is an :class:`InvalidInput` with a stable ``kind`` (used as the
dead-letter reason and as a metric label) and a human-readable message.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from schemas.records import EVENT_TYPES, USER_DELETION, BehaviorEvent, CatalogItem, UserDeletion

ERROR_KINDS = (
    "oversized",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "unknown_event_type",
    "bad_timestamp",
    "unknown_field",
)

EVENT_FIELDS = ("event_id", "user_id", "item_id", "event_type", "timestamp", "value", "context")
CATALOG_FIELDS = ("item_id", "title", "description", "categories", "attributes")


class InvalidInput(ValueError):
    """A message that cannot be admitted; ``kind`` is one of ``ERROR_KINDS``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class ValidationPolicy:
    """Limits for admitting input.

    ``unknown_fields``: ``"ignore"`` drops fields the schema does not know (the
    default, so producers can add fields before consumers upgrade); ``"reject"``
    dead-letters the message.
    """

    max_bytes: int = 64 * 1024
    max_id_chars: int = 256
    max_text_chars: int = 4096
    max_categories: int = 64
    # MovieLens-era data must replay, so the floor is 1980, not "recent".
    min_timestamp: float = 315_532_800.0  # 1980-01-01T00:00:00Z
    max_future_skew_s: float = 86_400.0
    unknown_fields: str = "ignore"

    def __post_init__(self) -> None:
        if self.unknown_fields not in ("ignore", "reject"):
            raise ValueError("unknown_fields must be 'ignore' or 'reject'")


DEFAULT_POLICY = ValidationPolicy()


def _reject_constant(name: str) -> Any:
    raise InvalidInput("invalid_value", f"non-finite number {name} is not allowed")


def _load_object(raw: bytes | str | None, policy: ValidationPolicy) -> dict[str, Any]:
    if raw is None:
        raise InvalidInput("invalid_json", "empty message (null value)")
    size = len(raw)
    if size > policy.max_bytes:
        raise InvalidInput("oversized", f"{size} bytes exceeds the limit of {policy.max_bytes}")
    try:
        # Strict UTF-8 (a BOM is allowed): json.loads would decode bytes with
        # "surrogatepass" and admit encoded surrogates such as b"\xed\xa0\x80".
        text = raw.decode("utf-8-sig") if isinstance(raw, (bytes, bytearray)) else raw
        doc = json.loads(text, parse_constant=_reject_constant)
    except InvalidInput:
        raise
    except RecursionError:
        raise InvalidInput("invalid_json", "JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("invalid_json", f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("not_an_object", f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _check_unknown(doc: dict[str, Any], known: tuple[str, ...], policy: ValidationPolicy) -> None:
    if policy.unknown_fields == "reject":
        extra = sorted(set(doc) - set(known))
        if extra:
            raise InvalidInput("unknown_field", f"unknown fields {extra[:5]}")


def _require(doc: dict[str, Any], name: str) -> Any:
    if name not in doc or doc[name] is None:
        raise InvalidInput("missing_field", f"required field {name!r} is missing")
    return doc[name]


def _identifier(doc: dict[str, Any], name: str, policy: ValidationPolicy) -> str:
    value = _require(doc, name)
    # bool is an int subclass; an id of `true` is a producer bug, not an id.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput("wrong_type", f"{name} must be a string or integer")
    text = str(value)
    if not text or not text.strip():
        raise InvalidInput("invalid_value", f"{name} is empty")
    if len(text) > policy.max_id_chars:
        raise InvalidInput("invalid_value", f"{name} longer than {policy.max_id_chars} chars")
    if any(ord(ch) < 32 or ch in "\x7f\ufffe\uffff" for ch in text) or _has_surrogate(text):
        raise InvalidInput("invalid_value", f"{name} contains control or invalid characters")
    return text


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def _text(doc: dict[str, Any], name: str, policy: ValidationPolicy, required: bool) -> str | None:
    value = _require(doc, name) if required else doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("wrong_type", f"{name} must be a string")
    if len(value) > policy.max_text_chars:
        raise InvalidInput("invalid_value", f"{name} longer than {policy.max_text_chars} chars")
    if _has_surrogate(value):
        raise InvalidInput("invalid_value", f"{name} contains unpaired surrogates")
    return value


def parse_timestamp(value: Any, policy: ValidationPolicy, now: float) -> float:
    """Epoch seconds from a number or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, bool):
        raise InvalidInput("wrong_type", "timestamp must be a number or ISO-8601 string")
    if isinstance(value, (int, float)):
        ts = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput("bad_timestamp", f"not an ISO-8601 time: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        ts = parsed.timestamp()
    else:
        raise InvalidInput("wrong_type", "timestamp must be a number or ISO-8601 string")
    if not math.isfinite(ts):
        raise InvalidInput("bad_timestamp", "timestamp is not finite")
    if ts < policy.min_timestamp:
        raise InvalidInput("bad_timestamp", f"timestamp {ts} is before {policy.min_timestamp}")
    if ts > now + policy.max_future_skew_s:
        raise InvalidInput("bad_timestamp", f"timestamp {ts} is in the future")
    return ts


def parse_event(
    raw: bytes | str, policy: ValidationPolicy = DEFAULT_POLICY, now: float | None = None
) -> BehaviorEvent:
    """Validate one behaviour-event message; raise :class:`InvalidInput` if refused."""
    return event_from_doc(_load_object(raw, policy), policy, now)


def parse_input(
    raw: bytes | str, policy: ValidationPolicy = DEFAULT_POLICY, now: float | None = None
) -> BehaviorEvent | UserDeletion:
    """Validate one message of the events topic: a behaviour event or a user deletion."""
    doc = _load_object(raw, policy)
    if doc.get("event_type") == USER_DELETION:
        return deletion_from_doc(doc, policy, now)
    return event_from_doc(doc, policy, now)


def deletion_from_doc(
    doc: dict[str, Any], policy: ValidationPolicy = DEFAULT_POLICY, now: float | None = None
) -> UserDeletion:
    """A ``delete_user`` request: an event id, the user and a time; any item is ignored."""
    _check_unknown(doc, EVENT_FIELDS, policy)
    return UserDeletion(
        event_id=_identifier(doc, "event_id", policy),
        user_id=_identifier(doc, "user_id", policy),
        timestamp=parse_timestamp(
            _require(doc, "timestamp"), policy, time.time() if now is None else now
        ),
    )


def event_from_doc(
    doc: dict[str, Any], policy: ValidationPolicy = DEFAULT_POLICY, now: float | None = None
) -> BehaviorEvent:
    """Validate an already-decoded event object (e.g. a dataset row)."""
    _check_unknown(doc, EVENT_FIELDS, policy)
    event_type = _require(doc, "event_type")
    if not isinstance(event_type, str):
        raise InvalidInput("wrong_type", "event_type must be a string")
    if event_type not in EVENT_TYPES:
        raise InvalidInput("unknown_event_type", f"unknown event_type {event_type[:40]!r}")
    value = doc.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput("wrong_type", "value must be a number")
        if not math.isfinite(value) or abs(value) > 1e9:
            raise InvalidInput("invalid_value", "value must be finite and |value| <= 1e9")
        value = float(value)
    context = doc.get("context")
    if context is not None and not isinstance(context, dict):
        raise InvalidInput("wrong_type", "context must be an object")
    return BehaviorEvent(
        event_id=_identifier(doc, "event_id", policy),
        user_id=_identifier(doc, "user_id", policy),
        item_id=_identifier(doc, "item_id", policy),
        event_type=event_type,
        timestamp=parse_timestamp(
            _require(doc, "timestamp"), policy, time.time() if now is None else now
        ),
        value=value,
        context=context,
    )


def parse_catalog_item(raw: bytes | str, policy: ValidationPolicy = DEFAULT_POLICY) -> CatalogItem:
    """Validate one catalog message; raise :class:`InvalidInput` if refused."""
    doc = _load_object(raw, policy)
    _check_unknown(doc, CATALOG_FIELDS, policy)
    categories = doc.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise InvalidInput("wrong_type", "categories must be a list of strings")
    if len(categories) > policy.max_categories:
        raise InvalidInput("invalid_value", f"more than {policy.max_categories} categories")
    attributes = doc.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise InvalidInput("wrong_type", "attributes must be an object")
    title = _text(doc, "title", policy, required=True)
    return CatalogItem(
        item_id=_identifier(doc, "item_id", policy),
        title=title,
        description=_text(doc, "description", policy, required=False),
        categories=[c.strip() for c in categories if c.strip()],
        attributes=attributes,
    )
