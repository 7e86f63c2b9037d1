import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import EVENT_TYPES, InvalidInput, ValidationPolicy, parse_catalog_item, parse_event
from schemas.validation import ERROR_KINDS

NOW = 1_700_000_000.0
GOOD = {
    "event_id": "e1",
    "user_id": "u1",
    "item_id": "i1",
    "event_type": "click",
    "timestamp": 1_690_000_000,
}


def raw(doc) -> bytes:
    return json.dumps(doc).encode()


def kind_of(payload, policy=ValidationPolicy()) -> str:
    with pytest.raises(InvalidInput) as info:
        parse_event(payload, policy, now=NOW)
    assert info.value.kind in ERROR_KINDS
    return info.value.kind


def test_valid_event_with_integer_ids_and_iso_time():
    doc = {
        **GOOD,
        "user_id": 42,
        "item_id": 7,
        "timestamp": "2023-07-22T04:26:40Z",
        "value": 4,
        "context": {"device": "ios"},
    }
    event = parse_event(raw(doc), now=NOW)
    assert (event.user_id, event.item_id) == ("42", "7")
    assert event.timestamp == 1_690_000_000.0
    assert event.value == 4.0 and event.context == {"device": "ios"}


def test_naive_iso_time_is_utc():
    event = parse_event(raw({**GOOD, "timestamp": "2023-07-22T04:26:40"}), now=NOW)
    assert event.timestamp == 1_690_000_000.0


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_is_accepted(event_type):
    assert parse_event(raw({**GOOD, "event_type": event_type}), now=NOW).event_type == event_type


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe\x00", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (None, "invalid_json"),
        (b'"text"', "not_an_object"),
        (raw({k: v for k, v in GOOD.items() if k != "user_id"}), "missing_field"),
        (raw({**GOOD, "item_id": None}), "missing_field"),
        (raw({**GOOD, "user_id": True}), "wrong_type"),
        (raw({**GOOD, "user_id": {"a": 1}}), "wrong_type"),
        (raw({**GOOD, "user_id": ""}), "invalid_value"),
        (raw({**GOOD, "user_id": "a\nb"}), "invalid_value"),
        (raw({**GOOD, "event_type": "teleport"}), "unknown_event_type"),
        (raw({**GOOD, "event_type": 3}), "wrong_type"),
        (raw({**GOOD, "timestamp": -5}), "bad_timestamp"),
        (raw({**GOOD, "timestamp": NOW + 10 * 86400}), "bad_timestamp"),
        (raw({**GOOD, "timestamp": "yesterday"}), "bad_timestamp"),
        (raw({**GOOD, "timestamp": [1]}), "wrong_type"),
        (
            b'{"event_id":"e","user_id":"u","item_id":"i","event_type":"view","timestamp":NaN}',
            "invalid_value",
        ),
        (raw({**GOOD, "value": 1e300}), "invalid_value"),
        (raw({**GOOD, "value": "5"}), "wrong_type"),
        (raw({**GOOD, "context": [1]}), "wrong_type"),
        (b"[" * 50_000 + b"]" * 50_000, "oversized"),
        (b"[" * 20_000 + b"]" * 20_000, "invalid_json"),
        (raw({**GOOD, "pad": "x" * 70_000}), "oversized"),
    ],
)
def test_bad_events_are_refused_with_their_kind(payload, kind):
    assert kind_of(payload) == kind


def test_unknown_fields_follow_the_policy():
    doc = raw({**GOOD, "campaign": "x"})
    assert parse_event(doc, now=NOW).user_id == "u1"  # default: ignored
    assert kind_of(doc, ValidationPolicy(unknown_fields="reject")) == "unknown_field"


def test_catalog_item_parsing():
    item = parse_catalog_item(raw({"item_id": 5, "title": "Alien", "categories": ["Horror "]}))
    assert item.item_id == "5" and item.categories == ["Horror"]
    for bad in (
        {"item_id": "x"},
        {"item_id": "x", "title": 3},
        {"item_id": "x", "title": "t", "categories": "Horror"},
    ):
        with pytest.raises(InvalidInput):
            parse_catalog_item(raw(bad))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_input_is_either_an_event_or_a_classified_refusal(payload):
    try:
        event = parse_event(payload, now=NOW)
    except InvalidInput as exc:
        assert exc.kind in ERROR_KINDS
    else:
        assert event.event_type in EVENT_TYPES and math.isfinite(event.timestamp)


@settings(max_examples=200, deadline=None)
@given(overrides=st.dictionaries(st.sampled_from(list(GOOD)), json_values, max_size=3))
def test_mutated_events_never_raise_anything_else(overrides):
    try:
        parse_event(raw({**GOOD, **overrides}), now=NOW)
    except InvalidInput:
        pass
