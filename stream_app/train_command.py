"""``streamrec train``: train the sequence Transformer offline, evaluate it, save a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value in ("auto", "cpu", "cuda") or value.startswith("cuda:"):
        return value
    raise click.BadParameter("must be auto, cpu, cuda or cuda:N")


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Checkpoint directory to write (model.safetensors, config, item index, manifest)",
)
@click.option(
    "--eval",
    "eval_mode",
    type=click.Choice(["loo", "temporal"]),
    default="loo",
    show_default=True,
    help="loo: last item per user is test; temporal: last 20% of interactions by time",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--epochs", type=int, default=200, show_default=True, help="Most epochs")
@click.option("--patience", type=int, default=10, show_default=True, help="Early stopping")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Windows per step")
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=2020, show_default=True)
@click.option("--max-len", type=int, default=50, show_default=True)
@click.option("--hidden", type=int, default=64, show_default=True)
@click.option("--layers", type=int, default=2, show_default=True)
@click.option("--heads", type=int, default=2, show_default=True)
@click.option("--dropout", type=float, default=0.5, show_default=True)
@click.option(
    "--ema-decay",
    type=float,
    default=0.999,
    show_default=True,
    help="Validate and keep a moving average of the weights, decayed by this per step (0: "
    "the trained weights themselves)",
)
@click.option(
    "--shuffle-ties/--keep-tie-order",
    default=True,
    show_default=True,
    help="Each epoch, put a user's actions with equal timestamps in a new random order "
    "(their order in the input is arbitrary), and spread each target over its tied actions",
)
@click.option(
    "--exclude-history/--include-history",
    default=True,
    show_default=True,
    help="Train to rank only items the user has not had (as served with consumed items "
    "excluded); --include-history: a softmax over every item, as RecBole's SASRec",
)
@click.option(
    "--refit-all",
    is_flag=True,
    help="Then train the checkpoint afresh on every interaction (the evaluated ones too) for "
    "the number of epochs early stopping chose: the model to deploy. Metrics stay the "
    "held-out model's",
)
@click.option("--device", default="auto", show_default=True, callback=_device)
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
@click.option("--quiet", is_flag=True, help="No progress bar")
def train(
    path: Path,
    out: Path,
    eval_mode: str,
    json_path: Path | None,
    epochs: int,
    patience: int,
    batch_size: int,
    lr: float,
    seed: int,
    max_len: int,
    hidden: int,
    layers: int,
    heads: int,
    dropout: float,
    ema_decay: float,
    shuffle_ties: bool,
    exclude_history: bool,
    refit_all: bool,
    device: str,
    threads: int | None,
    quiet: bool,
) -> None:
    """Train the sequence Transformer on PATH (.inter or .jsonl) and evaluate it.

    Early stopping uses the validation split; the table shows test metrics.
    """
    import torch

    from models.sequence_training import MODEL_NAME, resolve_device, run_train
    from stream_app.evaluate_command import load_interactions

    if threads:
        torch.set_num_threads(threads)
    try:
        report = run_train(
            load_interactions(Path(path))[0],
            Path(path).stem,
            out=out,
            eval_mode=eval_mode,
            json_path=json_path,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            max_len=max_len,
            hidden=hidden,
            layers=layers,
            heads=heads,
            dropout=dropout,
            ema_decay=ema_decay,
            shuffle_ties=shuffle_ties,
            exclude_history=exclude_history,
            refit_all=refit_all,
            patience=patience,
            device=resolve_device(device),
            progress=not quiet,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    results = report["results"][MODEL_NAME]
    click.echo(f"{report['dataset']} — {report['protocol']}")
    for name, value in results.items():
        shown = f"{value:.4f}" if isinstance(value, float) and name != "train_seconds" else value
        click.echo(f"  {name:<28} {shown}")
    click.echo(
        f"checkpoint {report['checkpoint']} ({report['version']}), trained on "
        f"{report['checkpoint_trained_on']}"
    )
    if json_path:
        click.echo(f"results written to {json_path}")


if __name__ == "__main__":
    train()
