"""Scale-out: two workers in one consumer group split the partitions and, together,
process every event of every user exactly once."""

import json
import re
import time
import urllib.request

import pytest

from stream_app.broker import free_port
from stream_app.kafka_io import ensure_topics
from tests.conftest import TopicReader, event, produce, wait_ready

pytestmark = pytest.mark.integration
NOW = time.time() - 3600
TOKEN = "scale-out-token"


def _get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _assigned_event_partitions(port: int, topic: str) -> set[int]:
    """Partitions of ``topic`` a worker reports lag for: exactly those assigned to it."""
    _, text = _get(port, "/metrics")
    pattern = rf'kafka_consumergroup_lag\{{[^}}]*partition="(\d+)"[^}}]*topic="{re.escape(topic)}"'
    found = {int(p) for p in re.findall(pattern, text)}
    if not found:  # label order is not fixed by the exposition format
        pattern = (
            rf'kafka_consumergroup_lag\{{[^}}]*topic="{re.escape(topic)}"[^}}]*partition="(\d+)"'
        )
        found = {int(p) for p in re.findall(pattern, text)}
    return found


def test_two_workers_split_partitions_and_process_every_event_once(
    make_settings, start_worker, catalog, tmp_path
):
    first = make_settings(partitions=4, api_token=TOKEN, text_encoder="hashing")
    second = first.with_overrides(web_port=free_port(), data_dir=str(tmp_path / "second"))
    ensure_topics(first)
    produce(first, first.topic_catalog, catalog, "item_id")
    workers = [start_worker(first, "first"), start_worker(second, "second")]
    for settings, worker in zip((first, second), workers, strict=True):
        wait_ready(settings, worker, timeout=180)

    # Both workers hold partitions of the events topic, and none is held twice.
    deadline = time.monotonic() + 60
    while True:
        split = [
            _assigned_event_partitions(s.web_port, first.topic_events) for s in (first, second)
        ]
        if all(split) and split[0] | split[1] == {0, 1, 2, 3}:
            break
        assert time.monotonic() < deadline, f"partitions not split: {split}"
        time.sleep(1)
    assert not split[0] & split[1], split

    users = [f"user{n}" for n in range(40)]
    items = [c["item_id"] for c in catalog]
    events = [
        event(f"{u}-{k}", u, items[(n * 7 + k) % len(items)], NOW + 10 * k + n)
        for k in range(5)
        for n, u in enumerate(users)
    ]
    produce(first, first.topic_events, events, "user_id")

    recs = TopicReader(first, first.topic_recommendations)
    try:
        pending = set(users)

        def all_caught_up(message: dict) -> bool:
            if message["trigger_event_id"].endswith("-4"):  # after the user's last event
                pending.discard(message["user_id"])
            return not pending

        recs.wait_for(all_caught_up, timeout=180)
    finally:
        recs.close()

    # Every user's state is reachable from either worker (routed to the owner) and
    # counts each of their events once.
    for n, user in enumerate(users):
        port = (first, second)[n % 2].web_port
        status, body = _get(port, f"/users/{user}/state", TOKEN)
        assert status == 200, (user, status, body)
        state = json.loads(body)
        assert state["events_applied"] == 5, state
        assert state["user_id"] == user
