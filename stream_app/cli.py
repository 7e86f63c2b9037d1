"""``streamrec`` command line: broker, worker, produce, tail, demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from stream_app.cli_options import settings_options
from stream_app.settings import Settings, settings_to_env


@click.group()
def main() -> None:
    """streamrec: real-time recommendations from behaviour events on Kafka."""


@main.command()
@click.option("--port", type=int, default=9092, show_default=True)
def broker(port: int) -> None:
    """Run the embedded Tansu broker (memory only) on 127.0.0.1:PORT in the foreground."""
    from stream_app.broker import broker_command

    click.echo(f"embedded broker on 127.0.0.1:{port} (memory only; Ctrl-C stops it)", err=True)
    os.execv(broker_command(port)[0], broker_command(port))


@main.command()
@settings_options
def worker(settings: Settings) -> None:
    """Run a stream worker (joins the consumer group; scale out by starting more)."""
    from stream_app.app import run_worker
    from stream_app.kafka_io import ensure_topics

    ensure_topics(settings)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    run_worker(settings)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rate", type=float, default=None, help="Events per second (default: unthrottled)")
@click.option("--limit", type=int, default=None, help="Send at most this many events")
@click.option("--no-catalog", is_flag=True, help="Do not send the catalog found beside PATH")
@settings_options
def produce(
    path: Path, rate: float | None, limit: int | None, no_catalog: bool, settings: Settings
) -> None:
    """Replay a data set (.inter [+ .item], .item, or .jsonl) into the input topics."""
    from stream_app.kafka_io import ensure_topics, make_producer
    from stream_app.replay import load_dataset, replay

    events, catalog = load_dataset(path)
    ensure_topics(settings)
    producer = make_producer(settings)
    try:
        if catalog and not no_catalog:
            replay(producer, settings.topic_catalog, catalog, "item_id", desc="catalog")
        sent = replay(
            producer, settings.topic_events, events[:limit], "user_id", rate, desc="events"
        )
    finally:
        producer.close()
    click.echo(f"sent {len(catalog) if not no_catalog else 0} catalog items, {sent} events")


def format_recommendation(rec: dict[str, Any], titles: dict[str, str]) -> str:
    when = datetime.fromtimestamp(rec["generated_at"]).strftime("%H:%M:%S")
    lines = [
        click.style(f"[{when}] user {rec['user_id']}", bold=True)
        + f"  after event {rec['trigger_event_id']}  ({rec['model_version']})"
    ]
    for rank, item in enumerate(rec["items"], 1):
        name = titles.get(item["item_id"], item["item_id"])
        lines.append(f"  {rank:2d}. {name:<40.40} {item['score']:7.3f}  {item['reason']}")
    return "\n".join(lines)


def tail_recommendations(
    settings: Settings,
    stop: threading.Event | None = None,
    limit: int | None = None,
    from_beginning: bool = False,
    out: Callable[[str], None] = click.echo,
) -> int:
    from kafka import TopicPartition

    from stream_app.kafka_io import make_consumer

    titles: dict[str, str] = {}
    consumer = make_consumer(settings, [], consumer_timeout_ms=500)
    shown = 0
    try:
        rec_parts, cat_parts = [], []
        while not rec_parts and not (stop and stop.is_set()):
            rec_parts = consumer.partitions_for_topic(settings.topic_recommendations) or []
            cat_parts = consumer.partitions_for_topic(settings.topic_catalog) or []
            if not rec_parts:
                time.sleep(0.5)
        recs = [TopicPartition(settings.topic_recommendations, p) for p in rec_parts]
        cats = [TopicPartition(settings.topic_catalog, p) for p in cat_parts]
        consumer.assign(recs + cats)
        consumer.seek_to_beginning(*cats)
        if from_beginning:
            consumer.seek_to_beginning(*recs)
        while not (stop and stop.is_set()) and (limit is None or shown < limit):
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for message in messages:
                    try:
                        doc = json.loads(message.value)
                    except ValueError:
                        continue
                    if tp.topic == settings.topic_catalog:
                        if isinstance(doc, dict) and "item_id" in doc and "title" in doc:
                            titles[str(doc["item_id"])] = str(doc["title"])
                    elif limit is None or shown < limit:
                        out(format_recommendation(doc, titles))
                        shown += 1
    finally:
        consumer.close()
    return shown


@main.command()
@click.option("--from-beginning", is_flag=True, help="Replay recommendations already on the topic")
@click.option("--limit", type=int, default=None, help="Exit after this many recommendations")
@settings_options
def tail(from_beginning: bool, limit: int | None, settings: Settings) -> None:
    """Print recommendations as they arrive, with item titles and reasons."""
    try:
        tail_recommendations(settings, limit=limit, from_beginning=from_beginning)
    except KeyboardInterrupt:
        pass


def train_demo_sequence_model(
    events: list[dict[str, Any]], out: Path, epochs: int, settings: Settings
) -> str:
    """Train the Transformer on the first half of ``events`` (by time), as one trains on
    history before going live, and write its checkpoint to ``out``; returns its version."""
    from models.sequence_training import resolve_device, train_sequence_model
    from stream_app.evaluate_command import interactions_from_events

    interactions = interactions_from_events(events)
    history = interactions[: len(interactions) // 2]
    # One early-stopped run, no refit: a demo should start within a minute.
    scorer = train_sequence_model(
        history, epochs=epochs, device=resolve_device(settings.device), refit=False
    )
    return scorer.save_checkpoint(out)


@main.command()
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Replay this data set instead of the generated sample",
)
@click.option("--rate", type=float, default=50.0, show_default=True, help="Events per second")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds")
@click.option("--port", type=int, default=None, help="Broker port (default: a free one)")
@click.option(
    "--train-epochs",
    type=int,
    default=10,
    show_default=True,
    help="First train the sequence Transformer on the first half of the events, for at most "
    "this many epochs (0: serve without it; a STREAMREC_SEQUENCE_CHECKPOINT is used as given)",
)
@settings_options
def demo(
    data: Path | None,
    rate: float,
    duration: float | None,
    port: int | None,
    train_epochs: int,
    settings: Settings,
) -> None:
    """All in one: embedded broker, a worker, a replay, and live recommendations."""
    from stream_app.broker import EmbeddedBroker, free_port
    from stream_app.demo_data import demo_catalog, demo_events
    from stream_app.kafka_io import ensure_topics, make_producer
    from stream_app.replay import load_dataset, replay

    workdir = Path(tempfile.mkdtemp(prefix="streamrec-demo-"))
    stop = threading.Event()
    broker = EmbeddedBroker(port, log_path=workdir / "broker.log")
    worker_proc = None
    click.echo(f"starting embedded broker on {broker.bootstrap} (logs in {workdir}) ...", err=True)
    broker.start()
    try:
        settings = settings.with_overrides(
            kafka_bootstrap=broker.bootstrap,
            data_dir=str(workdir / "data"),
            web_port=free_port() if settings.web_port == 6066 else settings.web_port,
        )
        ensure_topics(settings)
        events, catalog = load_dataset(data) if data else (demo_events(), demo_catalog())
        if train_epochs > 0 and not settings.sequence_checkpoint:
            checkpoint = workdir / "sequence"
            click.echo(
                f"training the sequence Transformer on the first half of the events "
                f"({len(events) // 2:,}; at most {train_epochs} epochs) ...",
                err=True,
            )
            version = train_demo_sequence_model(events, checkpoint, train_epochs, settings)
            click.echo(f"sequence model {version} written to {checkpoint}", err=True)
            settings = settings.with_overrides(sequence_checkpoint=str(checkpoint))
        env = {**os.environ, **settings_to_env(settings)}
        worker_log = open(workdir / "worker.log", "ab")  # noqa: SIM115
        worker_proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "worker"],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        click.echo(
            f"worker started (pid {worker_proc.pid}); live dashboard: "
            f"http://127.0.0.1:{settings.web_port}/dashboard (metrics: /metrics); "
            f"replaying {len(catalog)} items and {len(events)} events at {rate:g}/s",
            err=True,
        )

        def produce_all() -> None:
            try:
                producer = make_producer(settings)
                try:
                    replay(producer, settings.topic_catalog, catalog, "item_id", progress=False)
                    replay(
                        producer,
                        settings.topic_events,
                        events,
                        "user_id",
                        rate,
                        progress=False,
                        stop=stop,
                    )
                finally:
                    producer.close()
            except Exception as exc:  # noqa: BLE001 - report and end the demo
                click.echo(f"replay failed: {exc!r}", err=True)
                stop.set()

        threading.Thread(target=produce_all, daemon=True).start()
        if duration:
            threading.Timer(duration, stop.set).start()
        # Ctrl-C and SIGTERM both end the demo cleanly (also when SIGINT was ignored,
        # as for background jobs of a non-interactive shell).
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        tail_recommendations(settings, stop=stop)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        click.echo("\nshutting down ...", err=True)
        if worker_proc is not None:
            worker_proc.send_signal(signal.SIGTERM)
            try:
                worker_proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker_proc.kill()
        broker.stop()


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the .npz cache (set STREAMREC_EMBEDDING_CACHE to it)",
)
@settings_options
def embed(path: Path, out: Path, settings: Settings) -> None:
    """Embed a catalog (.item, .inter with .item beside it, or .jsonl) with the text encoder."""
    from schemas import CatalogItem
    from stream_app.engine import Engine, save_embeddings, text_key
    from stream_app.replay import load_dataset

    _, catalog = load_dataset(path)
    if not catalog:
        raise click.UsageError(f"no catalog items found for {path}")
    engine = Engine(settings.with_overrides(embedding_cache=""))
    records = [CatalogItem(**c) for c in catalog]
    started = time.perf_counter()
    texts, vectors = engine.featurize(records)
    seconds = time.perf_counter() - started
    keys = [text_key(t, engine.featurizer.name) for t in texts]
    save_embeddings(out, keys, vectors)
    click.echo(
        f"embedded {len(texts)} items with {engine.featurizer.name} in {seconds:.1f}s "
        f"({len(texts) / seconds:.0f} items/s) -> {out}"
    )


def _register_subcommands() -> None:
    from stream_app.bench_command import bench
    from stream_app.evaluate_command import evaluate
    from stream_app.lag_command import lag
    from stream_app.train_command import train

    main.add_command(bench)
    main.add_command(evaluate)
    main.add_command(lag)
    main.add_command(train)


_register_subcommands()

if __name__ == "__main__":
    main()
