"""``streamrec bench``: throughput, latency, lag and memory against a no-op Faust worker."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import click

from stream_app.cli_options import settings_options
from stream_app.settings import Settings

# The targets of issue 4, checked on every workload.
MIN_RATIO_TO_NOOP = 0.8
MAX_P99_MS = 250.0
MAX_STATE_BYTES = 2048


def targets(result: dict[str, Any]) -> dict[str, bool]:
    return {
        f"throughput >= {MIN_RATIO_TO_NOOP} x no-op": result["ratio_to_noop"] >= MIN_RATIO_TO_NOOP,
        f"p99 <= {MAX_P99_MS:.0f} ms": result["latency_ms"]["p99"] <= MAX_P99_MS,
        f"state <= {MAX_STATE_BYTES} B/user": result["state_bytes_per_user"] <= MAX_STATE_BYTES,
    }


def workload_table(workloads: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| workload | no-op consume ev/s | no-op + output ev/s | pipeline ev/s | ratio | recs/s "
        "| p50 ms | p95 ms | p99 ms | state B/user | peak RSS MB | RSS growth MB "
        "| RSS MB per 100k events | worker CPU % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in workloads.values():
        lat = result["latency_ms"]
        lines.append(
            f"| {result['workload']} | {result['noop_events_per_s']:,.0f} "
            f"| {result['noop_output_events_per_s']:,.0f} | {result['pipeline_events_per_s']:,.0f} "
            f"| {result['ratio_to_noop']:.2f} | {result['recommendations_per_s']:,.0f} "
            f"| {lat['p50']:.0f} | {lat['p95']:.0f} | {lat['p99']:.0f} "
            f"| {result['state_bytes_per_user']:,.0f} | {result['peak_rss_mb']:,.0f} "
            f"| {result['rss_growth_after_warmup_mb']:,.1f} "
            f"| {result.get('rss_growth_mb_per_100k_events', float('nan')):,.1f} "
            f"| {result['worker_cpu_percent']:.0f} |"
        )
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = results["workloads"]
    fig, axes = plt.subplots(2, max(1, len(workloads)), figsize=(7 * len(workloads), 8))
    axes = axes.reshape(2, -1)
    for column, (key, result) in enumerate(workloads.items()):
        lag_ax, latency_ax = axes[0, column], axes[1, column]
        for name, series in result["series"]["lag"].items():
            if series:
                t, lag = zip(*series, strict=True)
                lag_ax.plot(t, lag, label=name)
        lag_ax.set(title=f"{result['workload']}: consumer lag", xlabel="s", ylabel="events")
        lag_ax.legend()
        if result["series"]["latency"]:
            t, p50, p99 = zip(*result["series"]["latency"], strict=True)
            latency_ax.plot(t, p50, label="p50")
            latency_ax.plot(t, p99, label="p99")
        rate = result["offered_load_events_per_s"]
        latency_ax.set(
            title=f"{key}: end-to-end latency at {rate:,.0f} events/s",
            xlabel="s",
            ylabel="ms",
        )
        latency_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _finite(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@click.command()
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also replay this data set (.inter [+ .item] or .jsonl), e.g. ml-100k.inter",
)
@click.option("--no-generated", is_flag=True, help="Skip the generated population")
@click.option("--users", type=int, default=100_000, show_default=True)
@click.option("--items", type=int, default=20_000, show_default=True)
@click.option("--events", type=int, default=150_000, show_default=True)
@click.option("--skew", type=float, default=1.1, show_default=True, help="Zipf exponent")
@click.option("--latency-seconds", type=float, default=60.0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda | auto")
@click.option("--sequence-checkpoint", default="", help="Trained model (default: untrained)")
@click.option("--no-components", is_flag=True, help="Skip the component benchmarks")
@click.option("--quick", is_flag=True, help="Small sizes: a smoke test of the tool")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path))
@settings_options
def bench(
    data: Path | None,
    no_generated: bool,
    users: int,
    items: int,
    events: int,
    skew: float,
    latency_seconds: float,
    device: str,
    sequence_checkpoint: str,
    no_components: bool,
    quick: bool,
    json_path: Path | None,
    plot_path: Path | None,
    workdir: Path | None,
    settings: Settings,
) -> None:
    """Start a broker and workers; measure the pipeline against a no-op Faust worker."""
    from stream_app.bench import Bench, BenchConfig
    from stream_app.bench_components import component_table

    if device == "auto":
        device = settings.with_overrides(device="auto").resolved_device()
    config = BenchConfig(
        data=data,
        generated=not no_generated,
        users=users,
        items=items,
        events=events,
        skew=skew,
        partitions=settings.partitions,
        latency_seconds=latency_seconds,
        text_encoder=settings.text_encoder,
        device=device,
        sequence_checkpoint=sequence_checkpoint,
        components=not no_components,
        quick=quick,
    )
    if quick:
        config.users, config.items, config.events = 2_000, 500, min(events, 6_000)
        config.latency_seconds = min(latency_seconds, 15.0)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    click.echo(f"bench work directory (logs): {workdir}", err=True)
    results = Bench(config, settings, workdir, lambda line: click.echo(line, err=True)).run()
    workloads = results["workloads"]
    headline = workloads.get("generated") or next(iter(workloads.values()), None)
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()},
    }
    if headline is not None:
        report.update(
            {
                key: headline[key]
                for key in (
                    "pipeline_events_per_s",
                    "noop_events_per_s",
                    "ratio_to_noop",
                    "latency_ms",
                    "state_bytes_per_user",
                    "peak_rss_mb",
                )
            }
        )
        report["targets"] = {key: targets(result) for key, result in workloads.items()}
    report["workloads"] = workloads
    if "components" in results:
        report["components"] = results["components"]

    click.echo("")
    for line in workload_table(workloads):
        click.echo(line)
    for key, checks in report.get("targets", {}).items():
        passed = ", ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks.items())
        click.echo(f"targets [{key}]: {passed}")
    if "components" in results:
        click.echo("")
        for line in component_table(results["components"]):
            click.echo(line)
    if json_path:
        json_path.write_text(json.dumps(_finite(report), indent=2) + "\n")
        click.echo(f"wrote {json_path}", err=True)
    if plot_path and workloads:
        plot(results, plot_path)
        click.echo(f"wrote {plot_path}", err=True)
