"""A real Tansu broker, a real ``streamrec worker`` process, Kafka clients in the test."""

import json
import time

import pytest

from stream_app.kafka_io import ensure_topics
from tests.conftest import TopicReader, event, produce, wait_ready

pytestmark = pytest.mark.integration
NOW = time.time() - 3600


def _items(rec):
    return [item["item_id"] for item in rec["items"]]


@pytest.fixture
def running(make_settings, start_worker, catalog):
    """Catalog published, worker started and ready (BERT encoder, the default)."""
    settings = make_settings(top_k=5)
    ensure_topics(settings)
    produce(settings, settings.topic_catalog, catalog, "item_id")
    worker = start_worker(settings)
    wait_ready(settings, worker)
    recs = TopicReader(settings, settings.topic_recommendations)
    yield settings, worker, recs
    recs.close()


def test_user_with_one_genre_gets_that_genre(running):
    settings, worker, recs = running
    crowd = [event(f"c{n}", f"crowd{n % 7}", f"c{n % 4}", NOW + n, "purchase") for n in range(40)]
    fan = [event(f"f{n}", "fan", f"h{n}", NOW + 100 + n, "like") for n in range(5)]
    produce(settings, settings.topic_events, crowd + fan, "user_id")
    rec = recs.wait_for(lambda m: m["user_id"] == "fan" and m["trigger_event_id"] == "f4")
    assert len(rec["items"]) == 5
    assert all(item.startswith("h") for item in _items(rec)), rec
    assert not set(_items(rec)) & {f"h{n}" for n in range(5)}
    assert all("you liked" in item["reason"] for item in rec["items"])
    assert rec["model_version"].startswith("streamrec-interest/2+bert")
    crowd_rec = recs.wait_for(lambda m: m["user_id"] == "crowd0")
    assert crowd_rec["items"]


def test_bad_messages_go_to_dead_letters_and_valid_ones_around_them_are_processed(running):
    settings, worker, recs = running
    bad = [
        (b"u1", b"{not json"),
        (b"u1", json.dumps(event("x1", "u1", "h1", NOW, "teleport")).encode()),
        (b"u1", json.dumps({"event_id": "x2", "user_id": "u1"}).encode()),
        (b"u1", json.dumps(event("x3", "u1", "h1", 4102444800.0 * 10)).encode()),
        (b"u1", b"\xff" * 70_000),
    ]
    good = [
        (f"u{n}".encode(), json.dumps(event(f"g{n}", f"u{n}", "h1", NOW)).encode())
        for n in range(1, 6)
    ]
    interleaved = [msg for pair in zip(good, bad, strict=False) for msg in pair]
    produce(settings, settings.topic_events, interleaved)
    dlq = TopicReader(settings, settings.topic_dead_letters)
    try:
        deadline = time.monotonic() + 60
        while len(dlq.messages) < len(bad) and time.monotonic() < deadline:
            dlq.poll()
        kinds = sorted(m["error_kind"] for m in dlq.messages)
        assert kinds == sorted(
            ["invalid_json", "unknown_event_type", "missing_field", "bad_timestamp", "oversized"]
        )
        letter = next(m for m in dlq.messages if m["error_kind"] == "invalid_json")
        assert letter["payload"] == "{not json"
        assert letter["source_topic"] == settings.topic_events and letter["source_offset"] >= 0
        assert (
            next(m for m in dlq.messages if m["error_kind"] == "oversized")["payload_truncated"]
            is False
        )
    finally:
        dlq.close()
    for n in range(1, 6):
        recs.wait_for(lambda m, n=n: m["trigger_event_id"] == f"g{n}")
    assert worker.proc.poll() is None


def test_catalog_item_published_at_run_time_becomes_recommendable(running):
    settings, worker, recs = running
    horror = [f"h{n}" for n in range(12)]
    produce(
        settings,
        settings.topic_events,
        [event(f"a{n}", "binger", item, NOW + n, "purchase") for n, item in enumerate(horror)],
        "user_id",
    )
    recs.wait_for(lambda m: m["trigger_event_id"] == "a11")
    new_item = {"item_id": "h-new", "title": "Haunted Crypt Nightmare", "categories": ["Horror"]}
    produce(settings, settings.topic_catalog, [new_item], "item_id")
    counter = iter(range(1000))

    def nudge():
        n = next(counter)
        produce(
            settings,
            settings.topic_events,
            [event(f"n{n}", "binger", "h0", NOW + 100 + n)],
            "user_id",
        )
        time.sleep(0.5)

    rec = recs.wait_for(
        lambda m: m["user_id"] == "binger" and _items(m)[:1] == ["h-new"], timeout=60, tick=nudge
    )
    assert "similar to" in rec["items"][0]["reason"]


def _get(settings, path, token=None):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{settings.web_port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_user_endpoints_need_the_token_and_count_each_event_once(
    make_settings, start_worker, catalog
):
    settings = make_settings(top_k=5, api_token="s3cret")
    ensure_topics(settings)
    produce(settings, settings.topic_catalog, catalog, "item_id")
    worker = start_worker(settings)
    wait_ready(settings, worker)
    events = [event(f"s{n}", "audited", f"h{n}", NOW + n, "click") for n in range(4)]
    produce(settings, settings.topic_events, events + events[:2], "user_id")  # 2 replays
    recs = TopicReader(settings, settings.topic_recommendations)
    recs.wait_for(lambda m: m["user_id"] == "audited" and m["trigger_event_id"] == "s3")
    recs.close()
    assert _get(settings, "/users/audited/state")[0] == 401
    assert _get(settings, "/users/audited/state", token="wrong")[0] == 401
    deadline = time.monotonic() + 30
    while True:
        status, state = _get(settings, "/users/audited/state", token="s3cret")
        if status == 200 and state["events_applied"] == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200 and state["events_applied"] == 4, state
    assert state["last_event_time"] == NOW + 3
    status, rec = _get(settings, "/users/audited/recommendations", token="s3cret")
    assert status == 200 and rec["user_id"] == "audited" and len(rec["items"]) == 5
    assert _get(settings, "/users/audited/recommendations")[0] == 401
