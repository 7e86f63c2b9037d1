import json

import pytest

from stream_app.replay import load_dataset
from stream_app.settings import ConfigError, Settings, settings_to_env


def test_environment_then_flags():
    env = {
        "STREAMREC_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
        "STREAMREC_PARTITIONS": "12",
        "STREAMREC_EXCLUDE_CONSUMED": "false",
        "STREAMREC_TOPIC_EVENTS": "ev",
    }
    settings = Settings.from_env(env=env, partitions=3)
    assert settings.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert settings.partitions == 3 and settings.exclude_consumed is False
    assert settings.topic_events == "ev" and settings.topic_recommendations == "recommendations"
    assert Settings.from_env(env=settings_to_env(settings)) == settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMREC_PARTITIONS": "many"}, "STREAMREC_PARTITIONS"),
        ({"STREAMREC_KAFKA_PROTOCOL": "SASL_SSL"}, "SASL_MECHANISM"),
        (
            {
                "STREAMREC_KAFKA_PROTOCOL": "SASL_PLAINTEXT",
                "STREAMREC_KAFKA_SASL_MECHANISM": "PLAIN",
            },
            "SASL_USERNAME",
        ),
        (
            {"STREAMREC_KAFKA_PROTOCOL": "SSL", "STREAMREC_KAFKA_SSL_CAFILE": "/nope.pem"},
            "no such file",
        ),
        ({"STREAMREC_KAFKA_PROTOCOL": "TLS"}, "SECURITY_PROTOCOL"),
        ({"STREAMREC_UNKNOWN_FIELDS": "keep"}, "UNKNOWN_FIELDS"),
        ({"STREAMREC_PRECISION": "half"}, "STREAMREC_PRECISION"),
    ],
)
def test_bad_settings_fail_with_a_clear_message(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env=env)


def test_sasl_settings_reach_the_clients():
    settings = Settings.from_env(
        env={
            "STREAMREC_KAFKA_PROTOCOL": "SASL_PLAINTEXT",
            "STREAMREC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "STREAMREC_KAFKA_SASL_USERNAME": "svc",
            "STREAMREC_KAFKA_SASL_PASSWORD": "pw",
        }
    )
    kwargs = settings.security.kafka_python_kwargs()
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256" and kwargs["sasl_plain_username"] == "svc"
    from stream_app.app import broker_credentials

    credentials = broker_credentials(settings.security)
    assert credentials.username == "svc" and credentials.mechanism.value == "SCRAM-SHA-256"


def test_recbole_atomic_files_replay_in_time_order(tmp_path):
    (tmp_path / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t4\t300\n2\t11\t5\t100\n1\t11\t3\t100\n"
    )
    (tmp_path / "toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "10\tAlien\t1979\tHorror Sci-Fi\n11\tClueless\t1995\tComedy\n"
    )
    events, catalog = load_dataset(tmp_path / "toy.inter")
    assert [e["event_id"] for e in events] == ["toy:1", "toy:2", "toy:0"]  # ties keep file order
    assert events[0] == {
        "event_id": "toy:1",
        "user_id": "2",
        "item_id": "11",
        "event_type": "rating",
        "timestamp": 100.0,
        "value": 5.0,
    }
    assert catalog[0]["categories"] == ["Horror", "Sci-Fi"] and catalog[1]["title"] == "Clueless"


def test_jsonl_mixes_events_and_catalog(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(d)
            for d in [
                {"item_id": "a", "title": "A"},
                {
                    "event_id": "1",
                    "user_id": "u",
                    "item_id": "a",
                    "event_type": "view",
                    "timestamp": 1e9,
                },
            ]
        )
    )
    events, catalog = load_dataset(path)
    assert len(events) == 1 and catalog == [{"item_id": "a", "title": "A"}]


def test_a_quiet_worker_builds_no_debug_records():
    """At WARNING, Faust's spinner would set the root logger to DEBUG (a record per
    debug call in Faust and aiokafka, several per message sent)."""
    import logging

    from stream_app.app import faust_app, faust_worker

    settings = Settings(log_level="warning")
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        worker = faust_worker(faust_app(settings), settings)
        worker._setup_logging()  # what the worker does on start
        assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
        assert root.level == logging.WARNING
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
