"""Where to compute in bfloat16: only where this machine runs it faster.

Ranking shortlists with a bfloat16 blend (models/recommender.py), and BERT
(models/text_encoder.py) and the Transformer's serving pass (models/sequence_training.py)
run under bfloat16 :func:`autocast`, when ``precision`` is ``auto`` and
:func:`bfloat16_matmul_is_faster`; ``float32`` keeps all of them exact.
"""

from __future__ import annotations

import functools
import time

import torch

PRECISIONS = ("auto", "bfloat16", "float32")


@functools.cache
def bfloat16_matmul_is_faster() -> bool:
    """Whether this CPU multiplies bfloat16 matrices clearly faster than float32.

    Only CPUs with bfloat16 instructions do (elsewhere bfloat16 is emulated and slower),
    and torch offers no public test for them, so this times both once per process, at
    the blend's shape: a batch of queries against a block of 448-wide item rows.
    """
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(256, 448, generator=generator)
    items = torch.randn(4096, 448, generator=generator)

    def best_of_three(a: torch.Tensor, b: torch.Tensor) -> float:
        a @ b.T  # warm-up
        times = []
        for _ in range(3):
            started = time.perf_counter()
            a @ b.T
            times.append(time.perf_counter() - started)
        return min(times)

    full = best_of_three(queries, items)
    low = best_of_three(queries.bfloat16(), items.bfloat16())
    return low < 0.6 * full


def autocast(precision: str, device: str = "cpu") -> torch.autocast:
    """A context running ``device``'s matmuls in bfloat16 where ``precision`` resolves to
    it (see :func:`use_bfloat16`), and changing nothing otherwise."""
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    low = use_bfloat16(precision, device)
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=low)


def use_bfloat16(precision: str, device: str = "cpu") -> bool:
    """Resolve a ``precision`` setting for work on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision != "auto":
        return precision == "bfloat16"
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return bfloat16_matmul_is_faster()
