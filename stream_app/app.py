"""Builds the Faust app from settings; ``run_worker`` runs one worker process."""

from __future__ import annotations

import faust

from stream_app.engine import Engine
from stream_app.logging_setup import worker_logging_config
from stream_app.pipeline import Pipeline, register_pipeline
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


def faust_app(settings: Settings, store: str = "rocksdb://") -> faust.App:
    """A Faust app configured from settings, with no agents yet."""
    return faust.App(
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
        logging_config=worker_logging_config(settings),  # STREAMREC_LOG_FORMAT=json
    )


def build_app(settings: Settings, store: str = "rocksdb://") -> tuple[faust.App, Pipeline]:
    """A configured app with the pipeline registered. Nothing connects until it runs."""
    app = faust_app(settings, store)
    pipeline = register_pipeline(app, settings, Engine(settings))
    return app, pipeline


def limit_compute_threads(threads: int) -> None:
    """Cap torch and BLAS thread pools (0 leaves their defaults).

    A worker shares its cores with the event loop, the Kafka client thread and often
    the broker: one compute thread per worker beats oversubscribed pools (measured in
    ``streamrec bench``); scale out with more workers instead.
    """
    if threads <= 0:
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def run_worker(settings: Settings) -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM."""
    limit_compute_threads(settings.compute_threads)
    app, _ = build_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
