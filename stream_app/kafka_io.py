"""Plain Kafka clients (kafka-python) for the CLI: topic setup, producing, tailing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream_app.settings import Settings


def client_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        **settings.security.kafka_python_kwargs(),
    }


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create the four topics with the configured partitions if they are missing."""
    names = [
        settings.topic_events,
        settings.topic_catalog,
        settings.topic_recommendations,
        settings.topic_dead_letters,
    ]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(client_id="streamrec-admin", **client_kwargs(settings))
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, settings.partitions, settings.replication_factor)
            for name in names
            if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    options: dict[str, Any] = {
        "linger_ms": 5,
        "acks": "all",
        "retries": 10,
        "retry_backoff_ms": 200,
        "max_in_flight_requests_per_connection": 1,  # keeps a user's events in order on retry
        "key_serializer": lambda k: k.encode("utf-8") if isinstance(k, str) else k,
        "value_serializer": lambda v: (
            json.dumps(v, separators=(",", ":")).encode("utf-8") if isinstance(v, dict) else v
        ),
    }
    options.update(overrides)
    return KafkaProducer(**client_kwargs(settings), **options)


def make_consumer(
    settings: Settings, topics: Iterable[str], group_id: str | None = None, **overrides: Any
) -> KafkaConsumer:
    options: dict[str, Any] = {
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": group_id is not None,
        "consumer_timeout_ms": 1000,
    }
    options.update(overrides)
    return KafkaConsumer(*topics, **client_kwargs(settings), **options)
