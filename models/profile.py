"""Per-user state kept in the worker's table: small, JSON-serialisable, idempotent.

Delivery from Kafka is at-least-once, so applying an event must be idempotent:
an event is skipped when its id is among the user's recent event ids (a producer
retry written twice), or when its record is not past the last one applied for
this user (a replay after a crash): same partition, offset not greater, and a
record timestamp not newer.

The timestamp is what tells a replay from a new log. Offsets only order records
within one incarnation of a partition's log; a broker that lost its data (the
memory-only embedded broker after a restart) or a re-created topic starts again
at offset 0. Records of that new log carry timestamps newer than the last record
applied, so they are applied; replayed records of the old log are not newer, so
they are skipped. (A producer whose clock runs behind by more than the gap
between the two logs would see its first events after such a reset skipped.)
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import string
from dataclasses import dataclass, field, replace
from typing import Any

from models.events import EVENT_CODE, EVENT_TYPES

KIND_LETTERS = string.ascii_letters  # event code n is stored as letter n
assert len(EVENT_TYPES) <= len(KIND_LETTERS)


def event_fingerprint(event_id: str) -> str:
    """Short stable digest of an event id (8 bytes is ample within one user)."""
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).hexdigest()


@dataclass
class UserProfile:
    """A user's recent actions (oldest first) plus bookkeeping for idempotence."""

    user_id: str
    events_applied: int = 0
    last_event_time: float = 0.0
    items: list[str] = field(default_factory=list)
    kinds: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    recent_ids: list[str] = field(default_factory=list)
    # (partition, offset[, record timestamp ms]) of the last record applied
    last_source: tuple[int, ...] | None = None
    long_term: str | None = None  # packed BERT vector of the rendered history
    long_term_at: int = 0  # events_applied when long_term was computed
    # Distinct items that fell out of ``items`` (oldest first): still consumed, so still
    # excluded from recommendations; at most ``consumed_len`` of them.
    older_items: list[str] = field(default_factory=list)

    def consumed(self) -> list[str]:
        """Every item this user is known to have had (may repeat)."""
        return self.older_items + self.items if self.older_items else self.items

    def is_duplicate(self, event_id: str, source: tuple[int, ...] | None) -> bool:
        """Already applied: a recent event id, or a record not past the last one applied.

        ``source`` is ``(partition, offset)`` or ``(partition, offset, timestamp_ms)``.
        """
        if event_fingerprint(event_id) in self.recent_ids:
            return True
        last = self.last_source
        if source is None or last is None or source[0] != last[0] or source[1] > last[1]:
            return False
        if len(source) > 2 and len(last) > 2 and source[2] > last[2]:
            return False  # a newer record at an old offset: the log was reset, not replayed
        return True

    def record(
        self,
        event_id: str,
        item_id: str,
        event_type: str,
        timestamp: float,
        weight: float,
        source: tuple[int, ...] | None,
        history_len: int,
        dedup_window: int,
        consumed_len: int = 0,
    ) -> None:
        """Append one (already deduplicated) event, keeping the caps."""
        self.events_applied += 1
        self.last_event_time = max(self.last_event_time, timestamp)
        self.items.append(item_id)
        self.kinds.append(EVENT_CODE[event_type])
        self.times.append(timestamp)
        self.weights.append(round(weight, 3))
        if len(self.items) > history_len:
            drop = len(self.items) - history_len
            if consumed_len:
                self._remember_older(self.items[:drop], consumed_len)
            del self.items[:drop], self.kinds[:drop], self.times[:drop], self.weights[:drop]
        self.recent_ids.append(event_fingerprint(event_id))
        if len(self.recent_ids) > dedup_window:
            del self.recent_ids[: len(self.recent_ids) - dedup_window]
        if source is not None:
            self.last_source = source

    def _remember_older(self, dropped: list[str], consumed_len: int) -> None:
        for item in dropped:
            if item in self.older_items:  # had again later: it moves to the end
                self.older_items.remove(item)
            self.older_items.append(item)
        if len(self.older_items) > consumed_len:
            del self.older_items[: len(self.older_items) - consumed_len]

    def forgotten(self, event_id: str, source: tuple[int, ...] | None) -> None:
        """Remember only the deletion that emptied this profile, to recognise its replay."""
        self.recent_ids = [event_fingerprint(event_id)]
        self.last_source = source

    def copy(self) -> UserProfile:
        """An independent copy: no list is shared with this profile."""
        return replace(
            self,
            items=list(self.items),
            kinds=list(self.kinds),
            times=list(self.times),
            weights=list(self.weights),
            recent_ids=list(self.recent_ids),
            older_items=list(self.older_items),
        )

    def kind_name(self, position: int) -> str:
        return EVENT_TYPES[self.kinds[position]]

    @staticmethod
    def kind_name_of(code: int) -> str:
        return EVENT_TYPES[code]

    def to_dict(self) -> dict[str, Any]:
        """The stored form (format 2): what goes into the table, kept small.

        Times are whole seconds, as the first and then gaps; event kinds one letter
        each; the recent event fingerprints one base64 string. :meth:`from_dict` also
        reads format 1.
        """
        seconds = [round(t) for t in self.times]
        return {
            "v": 2,
            "u": self.user_id,
            "n": self.events_applied,
            "t": self.last_event_time,
            "i": self.items,
            "k": "".join(KIND_LETTERS[k] for k in self.kinds),
            "tg": [b - a for a, b in zip([0, *seconds], seconds, strict=False)],
            "w": self.weights,
            "r": base64.b64encode(b"".join(bytes.fromhex(r) for r in self.recent_ids)).decode(),
            "s": list(self.last_source) if self.last_source is not None else None,
            "lt": self.long_term,
            "la": self.long_term_at,
            **({"o": self.older_items} if self.older_items else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserProfile:
        source = data.get("s")
        if data.get("v", 1) >= 2:
            times = [float(t) for t in itertools.accumulate(data["tg"])]
            raw = base64.b64decode(data["r"])
            recent = [raw[n : n + 8].hex() for n in range(0, len(raw), 8)]
        else:
            times, recent = list(data["ts"]), list(data["r"])
        kinds = data["k"]
        kinds = [KIND_LETTERS.index(k) for k in kinds] if isinstance(kinds, str) else list(kinds)
        return cls(
            user_id=data["u"],
            events_applied=data["n"],
            last_event_time=data["t"],
            items=list(data["i"]),
            kinds=kinds,
            times=times,
            weights=list(data["w"]),
            recent_ids=recent,
            last_source=tuple(int(part) for part in source) if source else None,
            long_term=data.get("lt"),
            long_term_at=data.get("la", 0),
            older_items=list(data.get("o", [])),
        )
