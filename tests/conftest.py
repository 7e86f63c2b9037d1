"""Shared fixtures: small generated data, settings, and real broker/worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.broker import EmbeddedBroker, free_port
from stream_app.settings import Settings, settings_to_env

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def genre_catalog(per_genre: int = 12) -> list[dict]:
    """Two clearly separated genres with distinct title vocabularies."""
    horror = [
        "Haunted",
        "Cursed",
        "Bleeding",
        "Hollow",
        "Grim",
        "Shadow",
        "Ghost",
        "Crypt",
        "Demon",
        "Zombie",
        "Witch",
        "Skull",
    ]
    comedy = [
        "Wacky",
        "Goofy",
        "Silly",
        "Lucky",
        "Cheerful",
        "Clumsy",
        "Funny",
        "Jolly",
        "Quirky",
        "Sunny",
        "Zany",
        "Bubbly",
    ]
    items = []
    for genre, words in (("Horror", horror), ("Comedy", comedy)):
        for n, word in enumerate(words[:per_genre]):
            items.append(
                {
                    "item_id": f"{genre[0].lower()}{n}",
                    "title": f"{word} {'Nightmare' if genre == 'Horror' else 'Party'}",
                    "categories": [genre],
                }
            )
    return items


def event(event_id: str, user: str, item: str, ts: float, kind: str = "view", **extra) -> dict:
    return {
        "event_id": event_id,
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "timestamp": ts,
        **extra,
    }


@pytest.fixture
def catalog() -> list[dict]:
    return genre_catalog()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


class WorkerProcess:
    """A real ``streamrec worker`` child process with its own data dir and port."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **settings_to_env(self.settings)}
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "worker"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def make_settings(broker: EmbeddedBroker, tmp_path: Path):
    """Settings on the session broker with topic names unique to the test."""
    counter = iter(range(1000))

    def build(**overrides) -> Settings:
        tag = f"{os.getpid()}-{int(time.time() * 1000)}-{next(counter)}"
        values = dict(
            kafka_bootstrap=broker.bootstrap,
            app_id=f"streamrec-test-{tag}",
            data_dir=str(tmp_path / f"data-{tag}"),
            web_port=free_port(),
            topic_events=f"events-{tag}",
            topic_catalog=f"catalog-{tag}",
            topic_recommendations=f"recs-{tag}",
            topic_dead_letters=f"dlq-{tag}",
            partitions=2,
            batch_wait_s=0.05,
        )
        values.update(overrides)
        return Settings.from_env(env={}, **values)

    return build


@pytest.fixture
def start_worker(tmp_path: Path):
    workers: list[WorkerProcess] = []

    def start(settings: Settings, name: str = "worker") -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"{name}-{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def produce(settings: Settings, topic: str, records: list, key_field: str | None = None) -> None:
    """Send dicts (as JSON) or raw bytes with kafka-python; dict keys from ``key_field``."""
    from stream_app.kafka_io import make_producer

    producer = make_producer(settings)
    try:
        for record in records:
            if isinstance(record, tuple):  # (key, raw bytes)
                producer.send(topic, key=record[0], value=record[1])
            else:
                producer.send(topic, key=str(record[key_field]), value=record)
        producer.flush()
    finally:
        producer.close()


def wait_ready(settings: Settings, worker: WorkerProcess, timeout: float = 120.0) -> None:
    import json as _json
    import urllib.request

    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{settings.web_port}/ready"
    last = None
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, f"worker exited:\n{worker.log()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if _json.loads(response.read()).get("ready"):
                    return
        except OSError as exc:  # 503 (HTTPError) or not listening yet
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"worker not ready after {timeout}s ({last}):\n{worker.log()[-3000:]}")


class TopicReader:
    """Reads a topic from the beginning with kafka-python; JSON-decodes values."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from kafka import TopicPartition

        from stream_app.kafka_io import make_consumer

        self.consumer = make_consumer(settings, [])
        deadline = time.monotonic() + 30
        while not (parts := self.consumer.partitions_for_topic(topic)):
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in parts]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.messages: list[dict] = []

    def poll(self) -> list[dict]:
        import json as _json

        fresh = []
        for records in self.consumer.poll(timeout_ms=300).values():
            fresh.extend(_json.loads(r.value) for r in records)
        self.messages.extend(fresh)
        return fresh

    def wait_for(self, predicate, timeout: float = 60.0, tick=None):
        """First message satisfying ``predicate``; ``tick()`` runs between polls."""
        deadline = time.monotonic() + timeout
        for message in self.messages:
            if predicate(message):
                return message
        while time.monotonic() < deadline:
            for message in self.poll():
                if predicate(message):
                    return message
            if tick:
                tick()
        raise TimeoutError(f"no matching message in {timeout}s; saw {len(self.messages)}")

    def close(self) -> None:
        self.consumer.close()


def memory_pipeline(tmp_path: Path, **overrides):
    """(settings, app, pipeline) for ``agent.test_context()`` tests: memory store, no broker,
    outgoing sends replaced by ``AsyncMock``s the test can inspect."""
    from unittest.mock import AsyncMock

    from stream_app.app import build_app

    values = dict(
        text_encoder="hashing",
        data_dir=str(tmp_path),
        batch_wait_s=0.01,
        catalog_wait_s=0.0,  # no catalog follower runs in test_context
    )
    values.update(overrides)
    settings = Settings.from_env(env={}, **values)
    app, pipeline = build_app(settings, store="memory://")
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    pipeline.recommendations_topic.send = AsyncMock()
    pipeline.dead_letters_topic.send = AsyncMock()
    pipeline.events_topic.send = AsyncMock()
    return settings, app, pipeline
