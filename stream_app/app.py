"""Builds the Faust app from settings; ``run_worker`` runs one worker process."""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from stream_app.batching import BatchingStream
from stream_app.engine import Engine
from stream_app.logging_setup import worker_logging_config
from stream_app.pipeline import Pipeline, register_pipeline
from stream_app.process_tuning import limit_compute_threads, reuse_freed_memory
from stream_app.settings import KafkaSecurity, Settings


def broker_credentials(security: KafkaSecurity) -> faust.types.auth.CredentialsT | None:
    if security.protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password,
            mechanism=security.sasl_mechanism,
            ssl_context=security.ssl_context(),
        )
    if security.protocol == "SSL":
        return faust.SSLCredentials(security.ssl_context())
    return None


def prompt_fetch_consumer(fetch_max_wait_s: float) -> type:
    """Faust's aiokafka consumer with a configurable Fetch long-poll.

    Faust hard-codes ``fetch_max_wait_ms=1500``. A broker that answers a long-poll
    only when it times out, not when data arrives (Tansu does; see BROKER-NOTES),
    then adds up to 1.5 s to every event's latency (measured: p50 418 ms at 1.5 s,
    6 ms at 0.1 s). On Kafka a short wait only costs a few more empty fetches.
    """
    wait_ms = max(1, int(fetch_max_wait_s * 1000))

    class PromptFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = wait_ms  # read by the fetcher at start()
            return consumer

    class PromptFetchConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> PromptFetchConsumerThread:
            return PromptFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    return PromptFetchConsumer


def faust_app(settings: Settings, store: str = "rocksdb://") -> faust.App:
    """A Faust app configured from settings, with no agents yet."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
        broker_credentials=broker_credentials(settings.security),
        store=store,
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_port=settings.web_port,
        # Peers forward /users/... requests here when this worker owns the partition.
        canonical_url=settings.web_advertised_url
        or f"http://{settings.web_host}:{settings.web_port}",
        web_in_thread=False,
        autodiscover=False,
        Stream=BatchingStream,  # adds take_batches (see stream_app.batching)
        logging_config=worker_logging_config(settings),  # STREAMREC_LOG_FORMAT=json
    )
    app.transport.Consumer = prompt_fetch_consumer(settings.fetch_max_wait_s)
    return app


def build_app(settings: Settings, store: str = "rocksdb://") -> tuple[faust.App, Pipeline]:
    """A configured app with the pipeline registered. Nothing connects until it runs."""
    app = faust_app(settings, store)
    pipeline = register_pipeline(app, settings, Engine(settings))
    return app, pipeline


def faust_worker(app: faust.App, settings: Settings) -> faust.Worker:
    """A Faust worker without the terminal spinner: at log levels of WARNING and above,
    Faust's spinner sets the root logger to DEBUG so that it turns on every record, and
    every debug call in Faust and aiokafka (several per message sent) then builds a record."""
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.spinner = None
    return worker


def run_worker(settings: Settings) -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM."""
    limit_compute_threads(settings.compute_threads)
    reuse_freed_memory()
    app, _ = build_app(settings)
    faust_worker(app, settings).execute_from_commandline()
