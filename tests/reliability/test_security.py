"""Security: Kafka SASL/TLS settings are validated when a command starts (clear errors, no
connection attempted) and reach every client; user-data endpoints need the bearer token,
compared in constant time."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app import web
from stream_app.app import broker_credentials
from stream_app.kafka_io import client_kwargs
from stream_app.settings import Settings
from tests.reliability.harness import TOKEN, Scenario, http_json

# A self-signed test CA (openssl req -x509 -newkey ec -days 36500).
CA = """-----BEGIN CERTIFICATE-----
MIIBijCCAS+gAwIBAgIUMHOV6ghgq4kpPXRF8Tm9w2yGLEowCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOc3RyZWFtcmVjLXRlc3QwIBcNMjYxMTIzMDIyODIwWhgPMjEy
NjEwMzAwMjI4MjBaMBkxFzAVBgNVBAMMDnN0cmVhbXJlYy10ZXN0MFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEtLvWTjfxsVDqxB+UtkJxvg1Ugt2Ij2u5fwHbRfJf
UMqHl5280KK6zh8x3L4XQdivfQ6BiPzdv2eEmdTv5+WJ2aNTMFEwHQYDVR0OBBYE
FIWkcjJhiXH/Uy+27ljCV1tjtW4yMB8GA1UdIwQYMBaAFIWkcjJhiXH/Uy+27ljC
V1tjtW4yMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAP0OkD0e
7EB1NKv4n8j65mbnpviWqveWD4QOBMQJSS9YAiEAgtc6dqgU6txv9G4fWXorQW/u
dt099PBJRjERjOlIRTc=
-----END CERTIFICATE-----
"""


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("streamrec")
    command = [str(script), *args] if script.exists() else [sys.executable, "-m", "stream_app.cli"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    return subprocess.run(
        command if script.exists() else [*command, *args],
        env={**clean, "STREAMREC_KAFKA_BOOTSTRAP": "127.0.0.1:1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STREAMREC_KAFKA_PROTOCOL": "SASL_SSL"}, "STREAMREC_KAFKA_SASL_MECHANISM"),
        (
            {"STREAMREC_KAFKA_PROTOCOL": "SASL_PLAINTEXT", "STREAMREC_KAFKA_SASL_MECHANISM": "MD5"},
            "STREAMREC_KAFKA_SASL_MECHANISM",
        ),
        (
            {
                "STREAMREC_KAFKA_PROTOCOL": "SASL_SSL",
                "STREAMREC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "STREAMREC_KAFKA_SASL_USERNAME": "svc",
            },
            "STREAMREC_KAFKA_SASL_PASSWORD",
        ),
        (
            {
                "STREAMREC_KAFKA_PROTOCOL": "SSL",
                "STREAMREC_KAFKA_SSL_CAFILE": "/nope/ca.pem",
            },
            "no such file '/nope/ca.pem'",
        ),
        ({"STREAMREC_KAFKA_PROTOCOL": "KERBEROS"}, "must be one of"),
    ],
)
@pytest.mark.parametrize("command", ["worker", "tail"])
def test_bad_kafka_security_settings_stop_a_command_at_start_with_a_clear_error(
    env, named, command
):
    done = run_cli(command, env=env)
    assert done.returncode == 2, done.stderr[-2000:]  # a usage error, before any connection
    assert named in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_sasl_and_tls_settings_reach_every_client(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(CA)
    settings = Settings.from_env(
        env={
            "STREAMREC_KAFKA_PROTOCOL": "SASL_SSL",
            "STREAMREC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "STREAMREC_KAFKA_SASL_USERNAME": "svc",
            "STREAMREC_KAFKA_SASL_PASSWORD": "pw",
            "STREAMREC_KAFKA_SSL_CAFILE": str(ca),
        }
    )
    # kafka-python (CLI, topic setup, recovery's topic ids) and aiokafka (catalog follower,
    # recovery's log ends) take the same keyword arguments.
    kwargs = client_kwargs(settings)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512" and kwargs["sasl_plain_password"] == "pw"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    credentials = broker_credentials(settings.security)  # Faust's own consumer and producer
    assert credentials.username == "svc" and credentials.ssl_context is not None


def test_token_check_is_constant_time(monkeypatch):
    calls = []

    def compare(a, b):
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(web.hmac, "compare_digest", compare)

    class Request:
        def __init__(self, header):
            self.headers = {"Authorization": header} if header is not None else {}

    assert web.authorized(Request(f"Bearer {TOKEN}"), TOKEN)
    assert not web.authorized(Request("Bearer nope"), TOKEN)
    assert calls == [(TOKEN.encode(), TOKEN.encode()), (b"nope", TOKEN.encode())]
    assert not web.authorized(Request(f"Bearer {TOKEN}"), None)  # no token set: no access
    assert not web.authorized(Request(None), TOKEN)


@pytest.mark.integration
def test_user_data_endpoints_answer_401_without_the_right_token(tmp_path):
    scenario = Scenario(tmp_path / "auth", partitions=2)
    try:
        scenario.start("w1")
        scenario.wait_ready("w1")
        for path in ("/users/u1/state", "/users/u1/recommendations"):
            url = scenario.url("w1", path)
            for token in (None, "wrong", TOKEN[:-1], TOKEN + "x", " "):
                assert http_json(url, token=token)[0] == 401, (path, token)
            assert http_json(url, token=TOKEN)[0] in (200, 404)
        assert http_json(scenario.url("w1", "/health"), token=None)[0] == 200
    finally:
        scenario.stop_all()
