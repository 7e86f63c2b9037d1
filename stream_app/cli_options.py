"""Command-line flags shared by every ``streamrec`` command (kept apart from cli.py so
command modules can use them without importing the command group)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from stream_app.settings import ConfigError, Settings


def settings_options(func: Callable) -> Callable:
    """Flags shared by every command; each overrides its ``STREAMREC_*`` variable."""
    options = [
        click.option("--bootstrap", help="Kafka bootstrap servers [STREAMREC_KAFKA_BOOTSTRAP]"),
        click.option("--partitions", type=int, help="Partitions per topic [STREAMREC_PARTITIONS]"),
        click.option("--data-dir", help="Table store directory [STREAMREC_DATA_DIR]"),
        click.option("--web-port", type=int, help="Worker HTTP port [STREAMREC_WEB_PORT]"),
        click.option(
            "--text-encoder",
            help="bert | hashing | none | local HF model path [STREAMREC_TEXT_ENCODER]",
        ),
        click.option("--log-level", help="debug | info | warning [STREAMREC_LOG_LEVEL]"),
    ]
    for option in reversed(options):
        func = option(func)

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        flag_names = (
            "bootstrap",
            "partitions",
            "data_dir",
            "web_port",
            "text_encoder",
            "log_level",
        )
        flags = {name: kwargs.pop(name) for name in flag_names}
        flags["kafka_bootstrap"] = flags.pop("bootstrap")
        try:
            kwargs["settings"] = Settings.from_env(**flags)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        return func(**kwargs)

    return wrapper
