"""``streamrec evaluate``: the prequential protocol over streamrec, its ablations and baselines."""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from models.evaluation import MethodResult, RecommenderScorer, prequential, time_ordered
from models.streaming import Interaction
from stream_app.process_tuning import reuse_freed_memory
from stream_app.replay import load_dataset
from stream_app.settings import ConfigError, Settings

log = logging.getLogger(__name__)

BASELINES = ("most_popular", "recent_popular", "river_mf", "cooccurrence")
# streamrec and its ablations: which fusion signals each one keeps.
SYSTEMS: dict[str, tuple[str, ...]] = {
    "streamrec": ("sequence", "transitions", "short_term", "long_term", "popularity"),
    "short_term_only": ("sequence", "transitions", "short_term", "popularity"),
    "long_term_only": ("long_term", "popularity"),
    "no_transformer": ("transitions", "short_term", "long_term", "popularity"),
}


def load_interactions(path: Path) -> tuple[list[Interaction], list[dict[str, Any]]]:
    """A data set's events as validated, time-ordered Interactions, and its catalog."""
    events, catalog = load_dataset(path)
    return interactions_from_events(events), catalog


def interactions_from_events(events: Sequence[dict[str, Any]]) -> list[Interaction]:
    """Event documents as validated, time-ordered Interactions (ties in given order)."""
    from schemas.validation import InvalidInput, ValidationPolicy, event_from_doc

    # Replays of old data: no "future" cut-off relative to the wall clock.
    policy = ValidationPolicy(max_future_skew_s=float("inf"), max_bytes=1 << 20)
    out, refused = [], 0
    for event in events:
        try:
            e = event_from_doc(event, policy)
        except InvalidInput:
            refused += 1
            continue
        out.append(
            Interaction(e.user_id, e.item_id, e.timestamp, e.event_type, e.value, e.event_id)
        )
    if refused:
        log.warning("%d events refused by validation and left out", refused)
    return time_ordered(out)


def build_baseline(name: str, seed: int):
    from models import baselines

    factories = {
        "most_popular": lambda: baselines.MostPopular(),
        "recent_popular": lambda: baselines.RecentPopular(),
        "river_mf": lambda: baselines.RiverMF(seed=seed),
        "cooccurrence": lambda: baselines.CoOccurrence(),
    }
    return factories[name]()


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--warmup", type=float, default=0.8, show_default=True, help="Warm-up share")
@click.option("--batch-size", type=int, default=None, help="Micro-batch (default: worker's)")
@click.option("--methods", default="all", show_default=True, help="Comma-separated names, or 'all'")
@click.option(
    "--sequence-checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Use this trained Transformer instead of training one on the warm-up",
)
@click.option(
    "--save-sequence",
    type=click.Path(path_type=Path),
    default=None,
    help="Save the Transformer trained on the warm-up here (reuse: --sequence-checkpoint)",
)
@click.option(
    "--epochs",
    type=int,
    default=200,
    show_default=True,
    help="Max Transformer epochs when training on the warm-up",
)
@click.option("--seed", type=int, default=2020, show_default=True)
@click.option(
    "--train-threads",
    type=int,
    default=1,
    show_default=True,
    help="CPU threads that train the Transformer (0: torch's default). Threads add floats in "
    "another order, so the same seed trains another model on another count",
)
@click.option("--text-encoder", default=None, help="bert | hashing | none | local model path")
@click.option("--device", default=None, help="auto | cpu | cuda")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None)
def evaluate(
    path: Path,
    warmup: float,
    batch_size: int | None,
    methods: str,
    sequence_checkpoint: Path | None,
    save_sequence: Path | None,
    epochs: int,
    seed: int,
    train_threads: int,
    text_encoder: str | None,
    device: str | None,
    json_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Prequential (test-then-train) evaluation on a RecBole .inter file or JSON-lines."""
    try:
        settings = Settings.from_env(text_encoder=text_encoder, device=device)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    batch_size = batch_size or settings.batch_size
    names = list(SYSTEMS) + list(BASELINES) if methods == "all" else methods.split(",")
    unknown = set(names) - set(SYSTEMS) - set(BASELINES)
    if unknown:
        raise click.UsageError(f"unknown methods {sorted(unknown)}")
    interactions, catalog = load_interactions(path)
    n_warm = int(len(interactions) * warmup)
    click.echo(
        f"{path.name}: {len(interactions)} interactions, {len(catalog)} catalog items; "
        f"warm-up {n_warm}, evaluated window {len(interactions) - n_warm}",
        err=True,
    )
    sequence = None
    if any("sequence" in SYSTEMS.get(n, ()) for n in names):
        sequence = _sequence_model(
            sequence_checkpoint, interactions[:n_warm], epochs, seed, train_threads, settings
        )
        if save_sequence and not sequence_checkpoint:
            sequence.save_checkpoint(save_sequence)
    catalog_vectors = None
    results: dict[str, MethodResult] = {}
    reuse_freed_memory()  # as a worker does: per-batch score arrays reuse heap memory
    for name in names:
        if name in SYSTEMS:
            engine, catalog_vectors = _system(name, settings, catalog, catalog_vectors, sequence)
            method = RecommenderScorer(name, engine.recommender)
        else:
            method = build_baseline(name, seed)
        # Per-batch matrices are small: threaded BLAS costs more than it gains here.
        with (
            threadpool_limits(1, user_api="blas"),
            tqdm(total=len(interactions) - n_warm, desc=name, unit="ev") as bar,
        ):
            results[name] = prequential(
                method, interactions, warmup=warmup, batch_size=batch_size, progress=bar.update
            )
    click.echo(format_table(results))
    protocol = {
        "warmup": warmup,
        "k": 10,
        "batch_size": batch_size,
        "order": "timestamp, ties in file order",
        "candidates": "items seen so far, minus the user's own items",
        "seed": seed,
        "train_threads": None if sequence_checkpoint else train_threads,
        "text_encoder": settings.text_encoder,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    document = {
        "dataset": str(path),
        "protocol": protocol,
        "results": {n: r.as_json(10) for n, r in results.items()},
    }
    if json_path:
        json_path.write_text(json.dumps(document, indent=2))
    if plot_path:
        plot_ndcg(results, plot_path, title=path.name)


def _sequence_model(checkpoint, warm, epochs, seed, train_threads, settings):
    import torch

    from models.sequence_training import SequenceScorer, train_sequence_model

    device = settings.resolved_device()
    if checkpoint:
        return SequenceScorer.load(
            checkpoint,
            device=device,
            precision=settings.precision,
            average_tie_orders=settings.sequence_average_tie_orders,
        )
    started, threads = time.perf_counter(), torch.get_num_threads()
    if train_threads > 0:
        torch.set_num_threads(train_threads)
    try:
        scorer = train_sequence_model(
            warm, epochs=epochs, seed=seed, device=device, exclude_history=settings.exclude_consumed
        )
    finally:
        torch.set_num_threads(threads)  # the evaluated window runs as before
    # Served as the worker serves it.
    scorer.precision = settings.precision
    scorer.average_tie_orders = settings.sequence_average_tie_orders
    click.echo(
        f"Transformer trained on the warm-up in {time.perf_counter() - started:.0f}s", err=True
    )
    return scorer


def _system(name, settings, catalog, catalog_vectors, sequence):
    """An Engine exactly as a worker builds it, with the catalog embedded once per run."""
    from schemas import CatalogItem
    from stream_app.engine import Engine

    engine = Engine(settings, signals=SYSTEMS[name])
    if catalog:
        if catalog_vectors is None:
            records = [CatalogItem(**c) for c in catalog]
            catalog_vectors = engine.featurize(records)
        engine.add_items(*catalog_vectors)
    if sequence is not None:
        engine.recommender.attach_sequence(sequence)
    return engine, catalog_vectors


def format_table(results: dict[str, MethodResult]) -> str:
    header = (
        f"{'method':<16} {'NDCG@10':>8} {'Recall@10':>9} {'evaluated':>9} {'skipped':>7} "
        f"{'events/s':>9}"
    )
    lines = [header, "-" * len(header)]
    for name, r in results.items():
        lines.append(
            f"{name:<16} {r.ndcg:8.4f} {r.recall:9.4f} {r.evaluated:9d} {r.skipped:7d} "
            f"{r.events_per_s:9.0f}"
        )
    baselines = [r.ndcg for n, r in results.items() if n in BASELINES]
    if "streamrec" in results and baselines and max(baselines) > 0:
        ratio = results["streamrec"].ndcg / max(baselines)
        lines.append(f"streamrec / best baseline NDCG@10: {ratio:.2f}x")
    return "\n".join(lines)


def plot_ndcg(results: dict[str, MethodResult], path: Path, title: str, window: int = 1000) -> None:
    """NDCG@10 over the evaluation window (moving average) for every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 5))
    for name, result in results.items():
        series = np.asarray(result.ndcg_series)
        if series.size == 0:
            continue
        w = min(window, series.size)
        smooth = np.convolve(series, np.ones(w) / w, mode="valid")
        ax.plot(
            np.arange(w, series.size + 1),
            smooth,
            label=f"{name} ({result.ndcg:.4f})",
            linewidth=2.2 if name == "streamrec" else 1.2,
        )
    ax.set_xlabel("evaluated events")
    ax.set_ylabel(f"NDCG@10 (moving mean of {window})")
    ax.set_title(f"Prequential NDCG@10 — {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
