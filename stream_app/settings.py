"""All worker and CLI settings in one place: defaults, then environment, then flags."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "STREAMREC_"
# The fusion's signals (models.fusion.SIGNALS; a test keeps the two equal), named here so
# that checking settings does not import the models and torch.
SIGNAL_NAMES = ("sequence", "transitions", "short_term", "long_term", "popularity")


class ConfigError(ValueError):
    """A setting is missing or inconsistent; the message says which and why."""


@dataclass(frozen=True)
class KafkaSecurity:
    """Connection security passed through to Faust, aiokafka and kafka-python."""

    protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def validate(self) -> None:
        protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        if self.protocol not in protocols:
            raise ConfigError(f"STREAMREC_KAFKA_SECURITY_PROTOCOL must be one of {protocols}")
        if self.protocol.startswith("SASL"):
            mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
            if self.sasl_mechanism not in mechanisms:
                raise ConfigError(f"STREAMREC_KAFKA_SASL_MECHANISM must be one of {mechanisms}")
            if not self.sasl_username or not self.sasl_password:
                raise ConfigError(
                    "SASL needs STREAMREC_KAFKA_SASL_USERNAME and STREAMREC_KAFKA_SASL_PASSWORD"
                )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"STREAMREC_KAFKA_{name.upper()}: no such file {path!r}")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_ssl:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python clients (and aiokafka, same names)."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.protocol.startswith("SASL"):
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.uses_ssl:
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs


@dataclass(frozen=True)
class Settings:
    """Every knob, each readable from ``STREAMREC_<NAME>`` (upper-cased field name)."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    app_id: str = "streamrec"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_advertised_url: str = ""  # how peers reach this worker; default http://host:port
    data_dir: str = "./data"
    api_token: str | None = None
    # topics
    topic_events: str = "behavior-events"
    topic_catalog: str = "item-catalog"
    topic_recommendations: str = "recommendations"
    topic_dead_letters: str = "dead-letters"
    partitions: int = 4
    replication_factor: int = 1
    # processing
    batch_size: int = 500
    batch_wait_s: float = 0.05  # longest a batch's first event waits for more
    batch_idle_s: float = 0.005  # a batch closes once no event came for this long
    # Per user, at most one recommendation per this many seconds (0: one per micro-batch in
    # which the user changed). A user changed sooner waits; their latest change is ranked then.
    recommend_debounce_s: float = 0.0
    commit_interval_s: float = 2.8  # how often consumed offsets are committed
    fetch_max_wait_s: float = 0.1  # Fetch long-poll; bounds added latency (see app.py)
    catalog_wait_s: float = 120.0  # at start, hold events until the catalog is read
    top_k: int = 10
    # models
    text_encoder: str = "bert"  # bert | hashing | none | /path/to/local/hf/model
    # The fusion signals the worker blends, comma-separated: leave one out to save its cost
    # where it does not pay (README: Configuration).
    signals: str = ",".join(SIGNAL_NAMES)
    device: str = "auto"  # auto | cpu | cuda
    compute_threads: int = 1  # torch/BLAS threads per worker; 0: library defaults
    history_len: int = 100
    interest_window: int = 50
    interest_half_life_s: float = 7 * 86_400.0
    popularity_half_life_s: float = 7 * 86_400.0
    exclude_consumed: bool = True
    sequence_checkpoint: str = ""  # directory written by `streamrec train`; empty: none
    sequence_finetune_interval_s: float = 0.0  # periodic fine-tuning in the worker; 0: off
    sequence_finetune_steps: int = 5
    # When a user's last actions share a timestamp, serve the Transformer's mean over them
    # as given and reversed; the reversed pass computes only that run (README: Evaluation).
    sequence_average_tie_orders: bool = True
    embedding_cache: str = ""  # .npz written by `streamrec embed`; reused when text matches
    # Embed a user's history text once they have this many events, and again after as many
    # more. On a validation prefix of ML-100K every 20 and 40 scored the same NDCG@10 (as 10
    # did earlier) and 40 ran 11-13 % faster: BERT is the evaluator's second-largest cost.
    long_term_refresh_events: int = 40
    long_term_events: int = 8  # strongest actions rendered into a history's text
    long_term_max_tokens: int = 64  # of that text, what BERT reads (its cost grows with it)
    long_term_interval_s: float = 5.0  # the periodic merge timer
    # Re-embedding histories (BERT) may use at most this share of the worker's wall time: under
    # load, long-term views refresh later instead of slowing event processing.
    long_term_time_share: float = 0.15
    gate_learning: bool = True  # learn the per-user blend online from the stream
    # Share of users' events the gate learns from: as in the evaluator (64 of every 500).
    gate_sample_rate: float = 0.125
    rerank: bool = False  # online learned re-ranker (models/reranker.py); see README: Evaluation
    # auto: bfloat16 where this machine runs it faster (models/precision.py): the ranking
    # shortlist (then scored exactly) and BERT inference; float32: exact everywhere
    precision: str = "auto"
    # input policy
    max_message_bytes: int = 64 * 1024
    unknown_fields: str = "ignore"  # ignore | reject
    max_future_skew_s: float = 86_400.0
    # Items named by events but absent from the catalog each take a row in every score
    # matrix: past this many, events naming yet another one are dead-lettered (0: no limit).
    max_uncataloged_items: int = 100_000
    # faust / group membership (short session: Tansu holds JoinGroup for half of it)
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 3.0
    log_level: str = "info"
    log_format: str = "text"  # text | json (one JSON object per line, for log shippers)
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults ← ``STREAMREC_*`` environment ← explicit ``overrides`` (flags)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "security":
                continue
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, raw, f.type)
        security_values = {}
        for f in fields(KafkaSecurity):
            raw = env.get(f"{ENV_PREFIX}KAFKA_{f.name.upper()}")
            if raw:
                security_values[f.name] = raw
        if "protocol" in security_values:
            security_values["protocol"] = security_values["protocol"].upper()
        values["security"] = KafkaSecurity(**security_values)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> None:
        if not self.kafka_bootstrap.strip():
            raise ConfigError("STREAMREC_KAFKA_BOOTSTRAP is empty")
        if self.partitions < 1 or self.batch_size < 1 or self.top_k < 1:
            raise ConfigError("partitions, batch_size and top_k must be >= 1")
        if self.batch_wait_s <= 0 or self.batch_idle_s <= 0:
            raise ConfigError("batch_wait_s and batch_idle_s must be > 0")
        if self.long_term_events < 1 or self.long_term_max_tokens < 8:
            raise ConfigError("long_term_events must be >= 1 and long_term_max_tokens >= 8")
        if not 0.0 < self.long_term_time_share <= 1.0:
            raise ConfigError("long_term_time_share must be in (0, 1]")
        if self.max_uncataloged_items < 0:
            raise ConfigError("STREAMREC_MAX_UNCATALOGED_ITEMS must be >= 0")
        if self.recommend_debounce_s < 0:
            raise ConfigError("recommend_debounce_s must be >= 0")
        if not 0.0 <= self.gate_sample_rate <= 1.0:
            raise ConfigError("STREAMREC_GATE_SAMPLE_RATE must be between 0 and 1")
        if self.unknown_fields not in ("ignore", "reject"):
            raise ConfigError("STREAMREC_UNKNOWN_FIELDS must be 'ignore' or 'reject'")
        if self.precision not in ("auto", "bfloat16", "float32"):
            raise ConfigError("STREAMREC_PRECISION must be auto, bfloat16 or float32")
        if self.log_format not in ("text", "json"):
            raise ConfigError("STREAMREC_LOG_FORMAT must be 'text' or 'json'")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError("STREAMREC_DEVICE must be auto, cpu or cuda[:N]")
        names = self.signal_names
        if not names or len(set(names)) != len(names) or not set(names) <= set(SIGNAL_NAMES):
            raise ConfigError(
                f"STREAMREC_SIGNALS must name each of {', '.join(SIGNAL_NAMES)} at most once "
                f"(at least one); got {', '.join(names) or 'none'}"
            )
        self.security.validate()

    @property
    def signal_names(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.signals.split(",") if s.strip())

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def _coerce(name: str, raw: str, annotation: Any) -> Any:
    text = str(annotation)
    try:
        if text.startswith("bool"):
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes", "on")
        if text.startswith("int"):
            return int(raw)
        if text.startswith("float"):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {text}") from None
    return raw


def settings_to_env(settings: Settings) -> dict[str, str]:
    """``STREAMREC_*`` variables that reproduce ``settings`` in a child process."""
    env = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if f.name == "security":
            for sf in fields(KafkaSecurity):
                sub = getattr(value, sf.name)
                if sub is not None:
                    env[f"{ENV_PREFIX}KAFKA_{sf.name.upper()}"] = str(sub)
        elif value is not None:
            env[ENV_PREFIX + f.name.upper()] = str(value)
    return env
