"""Component benchmarks for ``streamrec bench``: each hot model path by batch size.

- Transformer: forward passes over ``[B, 50]`` action sequences → user-updates/s;
- BERT: item texts embedded → items/s;
- ranking: the recommender's full multi-signal ranking of a batch of users against
  20k and 1M items → users/s.

Batch size 1 is the baseline every row is compared with (the per-event path).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

MIN_SECONDS = 1.0


def timed_rate(run: Callable[[], int], min_seconds: float = MIN_SECONDS) -> float:
    """Units/s of ``run`` (which returns the units it did), after one warm-up call."""
    run()
    done, started = 0, time.perf_counter()
    while True:
        done += run()
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return done / elapsed


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def transformer_rates(
    device: str, batch_sizes: list[int], n_items: int = 20_000, precision: str = "auto"
) -> list[dict]:
    """Served forward passes (``precision`` as ``STREAMREC_PRECISION``; ``float32``: the
    exact baseline)."""
    import torch

    from models.precision import autocast
    from models.sequence_model import SequenceModel, SequenceModelConfig

    torch.manual_seed(0)
    config = SequenceModelConfig(n_items=n_items)
    model = SequenceModel(config).to(device).eval()
    rows = []
    for batch in batch_sizes:
        generator = torch.Generator().manual_seed(batch)
        shape = (batch, config.max_len)
        items = torch.randint(1, n_items + 1, shape, generator=generator).to(device)
        kinds = torch.randint(1, config.n_event_types + 1, shape, generator=generator).to(device)
        gaps = torch.randint(1, config.n_gap_buckets, shape, generator=generator).to(device)

        def forward(items=items, kinds=kinds, gaps=gaps, batch=batch) -> int:
            with torch.inference_mode(), autocast(precision, device):
                model(items, kinds, gaps, last_only=True)[:, -1]  # [B H]: each user's state
            _synchronize(device)
            return batch

        rows.append({"batch": batch, "per_s": timed_rate(forward)})
    return rows


def bert_rates(device: str, batch_sizes: list[int], n_texts: int) -> list[dict]:
    from models.text_encoder import BertTextEncoder, packaged_minilm_path

    texts = [
        f"Item {n}: a {['red', 'quiet', 'bold'][n % 3]} {['lamp', 'novel', 'coat'][n % 7 % 3]} "
        f"(category {n % 50}, {['home', 'books', 'fashion'][n % 3]})"
        for n in range(n_texts)
    ]
    rows = []
    for batch in batch_sizes:
        encoder = BertTextEncoder(packaged_minilm_path(), device=device, batch_size=batch)
        sample = texts[: max(batch, min(n_texts, 4 * batch))]

        def embed(encoder=encoder, sample=sample) -> int:
            encoder.encode(sample)
            _synchronize(device)
            return len(sample)

        rows.append({"batch": batch, "per_s": timed_rate(embed)})
    return rows


def ranking_rates(
    n_items: int, batch_sizes: list[int], seed: int = 0, precision: str = "auto"
) -> list[dict]:
    """The served ranking (every signal but the Transformer, which is timed above);
    ``precision`` as ``STREAMREC_PRECISION`` (``float32``: the exact baseline)."""
    from models import ItemFeaturizer, Recommender, RecommenderConfig, UserProfile
    from models.item_index import ItemText
    from models.text_encoder import HashingTextEncoder
    from schemas import BehaviorEvent

    rng = np.random.default_rng(seed)
    featurizer = ItemFeaturizer(HashingTextEncoder(dim=384))  # MiniLM's width
    items = featurizer.new_index()
    texts = [ItemText(f"i{n}", f"item {n}", (f"cat-{n % 50}",), None) for n in range(n_items)]
    # Random unit vectors stand in for embeddings: ranking cost does not depend on values.
    vectors = rng.standard_normal((n_items, featurizer.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items.upsert(texts, vectors)
    config = RecommenderConfig(ranking_precision=precision)
    recommender = Recommender(items, config, content_name=featurizer.name)
    profiles = []
    now = time.time()
    for u in range(max(batch_sizes)):
        profile = UserProfile(f"u{u}")
        for n, item in enumerate(rng.integers(0, n_items, size=20)):
            event = BehaviorEvent(
                event_id=f"u{u}-{n}",
                user_id=profile.user_id,
                item_id=f"i{item}",
                event_type="view",
                timestamp=now - 3600 + n * 60,
            )
            recommender.learn_one(profile, event, None)
        profiles.append(profile)
    rows = []
    for batch in batch_sizes:

        def rank(batch=batch) -> int:
            recommender.recommend(profiles[:batch])
            return batch

        rows.append({"batch": batch, "per_s": timed_rate(rank)})
    return rows


def with_speedup(rows: list[dict]) -> list[dict]:
    base = rows[0]["per_s"] if rows else float("nan")
    return [{**row, "speedup_vs_batch_1": row["per_s"] / base} for row in rows]


def run_components(device: str, say: Callable[[str], None], quick: bool = False) -> dict[str, Any]:
    gpu = device.startswith("cuda")
    seq_batches = [1, 64, 256, 1024, 4096]
    bert_batches = [1, 16, 64, 256] if gpu or not quick else [1, 16]
    results: dict[str, Any] = {"device": device}
    say(f"components on {device}:")
    for key, precision in (
        ("transformer_user_updates_per_s", "auto"),
        ("transformer_float32_user_updates_per_s", "float32"),
    ):
        results[key] = with_speedup(
            transformer_rates(device, seq_batches if not quick else [1, 64], precision=precision)
        )
    results["bert_items_per_s"] = with_speedup(
        bert_rates(device, bert_batches, n_texts=4096 if gpu else 64 if quick else 512)
    )
    catalogs = {n: [1, 64, 256] if n <= 20_000 else [1, 64] for n in (20_000, 1_000_000)}
    if quick:
        catalogs = {2_000: [1, 64]}
    for key, precision in (
        ("ranking_users_per_s", "auto"),
        ("ranking_float32_users_per_s", "float32"),
    ):
        results[key] = {
            f"{n_items}_items": with_speedup(ranking_rates(n_items, batches, precision=precision))
            for n_items, batches in catalogs.items()
        }
    return results


def component_table(results: dict[str, Any]) -> list[str]:
    lines = [f"Components ({results['device']})", "| component | batch | per second | vs batch 1 |"]
    lines.append("|---|---:|---:|---:|")
    groups = [
        ("Transformer user-updates (len 50)", results["transformer_user_updates_per_s"]),
        (
            "Transformer user-updates (len 50, float32 only: baseline)",
            results.get("transformer_float32_user_updates_per_s", []),
        ),
        ("BERT item embeddings", results["bert_items_per_s"]),
    ] + [
        (f"ranking users vs {name.replace('_', ' ')}{label}", rows)
        for key, label in (
            ("ranking_users_per_s", ""),
            ("ranking_float32_users_per_s", " (float32 only: baseline)"),
        )
        for name, rows in results.get(key, {}).items()
    ]
    for label, rows in groups:
        for row in rows:
            lines.append(
                f"| {label} | {row['batch']} | {row['per_s']:,.0f} | "
                f"{row['speedup_vs_batch_1']:.1f}x |"
            )
    return lines
