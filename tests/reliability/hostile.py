"""Hostile input, generated with hypothesis: payloads that must be refused, and valid ones
that look adversarial but must be processed.

Every refused payload is built to be wrong in a way the input policy names (see README,
"Input policy"): random bytes, invalid UTF-8, JSON nested deeper than the parser allows,
non-objects, missing fields, wrong types, oversized messages and over-long strings, NaN and
Infinity, timestamps before 1980 or far in the future, unknown event types, and ids with
control characters or unpaired surrogates. ``PII`` markers are planted in payloads so a test
can check that no payload content reaches the worker's log.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from models.events import EVENT_TYPES, USER_DELETION

PII = "pii-marker-7f3a@example.com"  # must never appear in a worker log
MAX_BYTES = 64 * 1024  # STREAMREC_MAX_MESSAGE_BYTES default
NOW = time.time()
FAR_FUTURE = NOW + 30 * 86_400  # far beyond the 1-day skew allowed

IDS = ("event_id", "user_id", "item_id")


def base_event(n: int) -> dict[str, Any]:
    return {
        "event_id": f"hostile-{n}",
        "user_id": f"victim-{n % 7}",
        "item_id": "h1",
        "event_type": "view",
        "timestamp": 1_700_000_000.0 + n,
        "context": {"email": PII},
    }


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", errors="surrogatepass")


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)
not_an_id = (
    st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(json_scalars, max_size=3)
    | st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)
)


@st.composite
def random_bytes(draw) -> bytes:
    raw = draw(st.binary(max_size=3000))
    return raw if not raw.lstrip().startswith(b"{") else b"\xff" + raw  # never an object


@st.composite
def invalid_utf8(draw) -> bytes:
    text = _dump(base_event(draw(st.integers(0, 10**6))))
    cut = draw(st.integers(1, len(text) - 1))
    return text[:cut] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + text[cut:]


@st.composite
def deep_json(draw) -> bytes:
    depth = draw(st.integers(1_100, 20_000))  # deeper than the JSON parser recurses
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    inner = opener * depth + "1" + closer * depth
    if draw(st.booleans()):
        event = _dump(base_event(draw(st.integers(0, 10**6))))
        return event[:-1] + b',"context":' + inner.encode() + b"}"
    return inner.encode()


@st.composite
def not_an_object(draw) -> bytes:
    value = draw(json_scalars | st.lists(json_values, max_size=4) | st.just([base_event(1)]))
    return _dump(value)


@st.composite
def missing_field(draw) -> bytes:
    doc = base_event(draw(st.integers(0, 10**6)))
    name = draw(st.sampled_from(["event_id", "user_id", "item_id", "event_type", "timestamp"]))
    if draw(st.booleans()):
        del doc[name]
    else:
        doc[name] = None
    return _dump(doc)


@st.composite
def wrong_type(draw) -> bytes:
    doc = base_event(draw(st.integers(0, 10**6)))
    name = draw(st.sampled_from([*IDS, "event_type", "timestamp", "value", "context"]))
    if name in IDS:
        doc[name] = draw(not_an_id)
    elif name == "event_type":
        doc[name] = draw(not_an_id | st.integers())
    elif name == "timestamp":
        doc[name] = draw(st.booleans() | st.lists(json_scalars, max_size=2) | st.just({}))
    elif name == "value":
        doc[name] = draw(st.text() | st.booleans() | st.lists(json_scalars, max_size=2))
    else:
        doc[name] = draw(st.text() | st.integers() | st.booleans() | st.lists(json_scalars))
    return _dump(doc)


@st.composite
def huge(draw) -> bytes:
    doc = base_event(draw(st.integers(0, 10**6)))
    if draw(st.booleans()):  # the whole message is over the limit
        doc["context"] = {"blob": "y" * draw(st.integers(MAX_BYTES, MAX_BYTES + 20_000))}
    else:  # an id longer than 256 characters
        doc[draw(st.sampled_from(IDS))] = draw(st.sampled_from("z\u00e9\u4e2d")) * draw(
            st.integers(257, 20_000)
        )
    return _dump(doc)


@st.composite
def non_finite(draw) -> bytes:
    doc = base_event(draw(st.integers(0, 10**6)))
    name = draw(st.sampled_from(["timestamp", "value"]))
    literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]))
    doc[name] = "__LITERAL__"
    return _dump(doc).replace(b'"__LITERAL__"', literal.encode())


@st.composite
def bad_timestamp(draw) -> bytes:
    doc = base_event(draw(st.integers(0, 10**6)))
    doc["timestamp"] = draw(
        st.floats(min_value=-1e12, max_value=315_532_799.0)  # before 1980, or negative
        | st.floats(min_value=FAR_FUTURE, max_value=1e15)
        | st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59", "1969-07-20", "soon"])
        | st.text(min_size=1, max_size=30).filter(_not_iso)
    )
    return _dump(doc)


def _not_iso(text: str) -> bool:
    from datetime import datetime

    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        return True
    return False


@st.composite
def unknown_event_type(draw) -> bytes:
    doc = base_event(draw(st.integers(0, 10**6)))
    doc["event_type"] = draw(
        st.text(max_size=50).filter(lambda t: t not in EVENT_TYPES and t != USER_DELETION)
    )
    return _dump(doc)


@st.composite
def bad_unicode_id(draw) -> bytes:
    doc = base_event(draw(st.integers(0, 10**6)))
    bad = draw(
        st.sampled_from(
            ["\x00", "\x1f", "\n", "\x7f", "\ufffe", "\uffff", "\ud800", "\udfff", " ", ""]
        )
    )
    prefix, suffix = draw(st.text(max_size=8)), draw(st.text(max_size=8))
    value = prefix + bad + suffix if bad.strip() else bad
    doc[draw(st.sampled_from(IDS))] = value
    return _dump(doc)


@st.composite
def bad_deletion(draw) -> bytes:
    doc = {"event_type": USER_DELETION, "event_id": "d", "user_id": "u", "timestamp": NOW}
    del doc[draw(st.sampled_from(["event_id", "user_id", "timestamp"]))]
    return _dump(doc)


KINDS = {
    "random_bytes": random_bytes(),
    "invalid_utf8": invalid_utf8(),
    "deep_json": deep_json(),
    "not_an_object": not_an_object(),
    "missing_field": missing_field(),
    "wrong_type": wrong_type(),
    "huge": huge(),
    "non_finite": non_finite(),
    "bad_timestamp": bad_timestamp(),
    "unknown_event_type": unknown_event_type(),
    "bad_unicode_id": bad_unicode_id(),
    "bad_deletion": bad_deletion(),
}
hostile_payloads = st.sampled_from(sorted(KINDS)).flatmap(
    lambda kind: st.tuples(st.just(kind), KINDS[kind])
)


def generate_hostile(count: int, seed_value: int) -> list[tuple[str, bytes]]:
    """``count`` (kind, payload) pairs from hypothesis (seeded: the same run every time)."""
    collected: list[tuple[str, bytes]] = []

    @seed(seed_value)
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_payloads)
    def collect(example: tuple[str, bytes]) -> None:
        collected.append(example)

    while len(collected) < count:
        before = len(collected)
        collect()
        if len(collected) == before:
            break
        seed_value += 1
        collect = seed(seed_value)(collect)  # a fresh seed if hypothesis stopped early
    return collected[:count]


# Valid but adversarial: these must be processed like any other event.
ADVERSARIAL_USERS = (
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",  # a ZWJ emoji sequence
    "\u0645\u0633\u062a\u062e\u062f\u0645",  # right-to-left script
    "e\u0301le\u0300ve",  # combining accents
    "\u4e2d\u6587\u7528\u6237",
    "a" * 256,  # the longest id allowed
    "42",  # sent as the JSON integer 42
    "user with spaces",
    "\u00a0nbsp-led",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
)


def valid_event(n: int, rng: Any) -> tuple[dict[str, Any], float]:
    """A valid, adversarial-looking event and its timestamp as epoch seconds."""
    user = rng.choice(ADVERSARIAL_USERS)
    ts = 1_700_000_000.0 + n
    doc: dict[str, Any] = {
        "event_id": f"valid-{n}",
        "user_id": 42 if user == "42" else user,
        "item_id": rng.choice(["h1", "h2", "c3", "\u00e9l\u00e9ment-\U0001f3ac"]),
        "event_type": rng.choice(EVENT_TYPES),
        "timestamp": ts,
        "context": {"email": PII, "nested": _nest(rng.randrange(1, 40))},
        "unknown_extra_field": [1, 2, 3],  # ignored under the default policy
    }
    if doc["event_type"] == "rating":
        doc["value"] = rng.choice([1, 5, 4.5, 1e9, -1e9])
    if n % 3 == 0:  # ISO-8601 with an offset: the same instant
        from datetime import datetime, timezone

        doc["timestamp"] = datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()
    if n % 11 == 0:
        doc["context"]["big"] = "w" * 30_000  # large, under the 64 KiB limit
    return doc, ts


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"d": value}
    return value
