"""SASRec-style causal Transformer over a user's recent actions.

Each position embeds what was touched (item), how (event type) and how long after the
previous action (log-bucketed gap), plus a learned position. The hidden state at the
last position scores every item through the same item embedding table (weight tying).

Inputs are left-padded ``[B L]`` integer tensors; 0 is padding everywhere. Item ids are
``1..n_items`` (the serving layer maps string ids to them), event codes are
``EVENT_CODE + 1`` and gap buckets come from :func:`gap_buckets`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.events import EVENT_TYPES

PAD = 0
FIRST_EVENT_BUCKET = 1  # gap bucket of an action with no earlier one in view
SAME_SECOND_BUCKET = 2  # gap bucket of an action under a second after the one before it
KeysValues = tuple[torch.Tensor, torch.Tensor]  # one block's [B heads L H/heads] each


@dataclass(frozen=True)
class SequenceModelConfig:
    """Hyperparameters. Defaults follow RecBole's SASRec (post-LN, dropout 0.5, GELU); the
    event-type and gap embeddings are additions (neutral on ML-100K validation, where every
    event is a rating; they can only matter where actions differ).

    n_items: vocabulary size (ids ``1..n_items``; 0 is padding).
    max_len: positions the model sees; longer histories keep their most recent actions.
    hidden / layers / heads / inner: width, depth, attention heads, feed-forward width.
    dropout: on embeddings, attention outputs and feed-forward outputs.
    attn_dropout: on attention probabilities.
    n_event_types: size of the event vocabulary (``models.events.EVENT_TYPES``).
    n_gap_buckets: log2 buckets of seconds since the previous action (0 turns gaps off).
    norm_first: pre-LN blocks (as SASRec.pytorch) instead of post-LN (as RecBole).
    exclude_history: trained to rank the items not yet in the sequence (each target's
        softmax leaves out the earlier ones), for serving that excludes consumed items.
        ML-100K validation prefix: Transformer alone NDCG@10 0.0896 -> 0.0987.
    """

    n_items: int
    max_len: int = 50
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    inner: int = 256
    dropout: float = 0.5
    attn_dropout: float = 0.5
    n_event_types: int = len(EVENT_TYPES)
    n_gap_buckets: int = 32
    norm_first: bool = False
    exclude_history: bool = False  # checkpoints from before this field: plain softmax

    def __post_init__(self) -> None:
        if self.n_items < 1 or self.max_len < 1 or self.layers < 1:
            raise ValueError("n_items, max_len and layers must be positive")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.n_gap_buckets != 0 and self.n_gap_buckets < 3:
            raise ValueError("n_gap_buckets must be 0 (off) or at least 3")


def gap_buckets(gaps_s: np.ndarray, n_buckets: int) -> np.ndarray:
    """Buckets of gaps in seconds: ``2 + floor(log2(1 + gap))``, clipped to the last bucket.

    NaN marks an action with no predecessor (bucket 1); bucket 0 is left for padding.
    With 32 buckets, gaps of 2**29 s (17 years) and more share the last. Negative gaps
    (clock skew) count as 0.
    """
    gaps = np.asarray(gaps_s, dtype=np.float64)
    first = np.isnan(gaps)
    logs = np.floor(np.log2(1.0 + np.clip(np.nan_to_num(gaps), 0.0, None)))
    buckets = np.minimum(2 + logs, n_buckets - 1).astype(np.int64)
    return np.where(first, FIRST_EVENT_BUCKET, buckets)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SequenceModelConfig) -> None:
        super().__init__()
        self.heads, self.attn_dropout = config.heads, config.attn_dropout
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.out = nn.Linear(config.hidden, config.hidden)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        last_only: bool = False,
        past: KeysValues | None = None,
        keep: list[KeysValues] | None = None,
    ) -> torch.Tensor:
        """``[B L H] -> [B L H]``, or ``[B 1 H]`` for the last position only.

        ``past``: keys and values of earlier positions; ``x`` then holds only the
        positions after them (``mask`` their rows). ``keep``: append this call's keys
        and values (all positions) to it."""
        B, L, H = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if keep is not None:
            keep.append((k, v))
        if last_only:
            q, mask = q[:, :, -1:], mask[..., -1:, :]  # q: [B heads 1 H/heads]
        dropout = self.attn_dropout if self.training else 0.0  # q k v: [B heads L H/heads]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.out(y.transpose(1, 2).reshape(B, q.shape[2], H))  # [B L|1 H]


class Block(nn.Module):
    """Attention then feed-forward, each with dropout, a residual and LayerNorm."""

    def __init__(self, config: SequenceModelConfig) -> None:
        super().__init__()
        self.norm_first = config.norm_first
        self.attn = CausalSelfAttention(config)
        self.ffn = nn.Sequential(
            nn.Linear(config.hidden, config.inner),
            nn.GELU(),
            nn.Linear(config.inner, config.hidden),
        )
        self.norm1, self.norm2 = nn.LayerNorm(config.hidden), nn.LayerNorm(config.hidden)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        last_only: bool = False,
        past: KeysValues | None = None,
        keep: list[KeysValues] | None = None,
    ) -> torch.Tensor:
        """``last_only``: keys and values from every position, output for the last one.
        ``past`` / ``keep``: as :class:`CausalSelfAttention`."""
        residual = x[:, -1:] if last_only else x
        if self.norm_first:
            x = residual + self.drop(self.attn(self.norm1(x), mask, last_only, past, keep))
            return x + self.drop(self.ffn(self.norm2(x)))
        x = self.norm1(residual + self.drop(self.attn(x, mask, last_only, past, keep)))
        return self.norm2(x + self.drop(self.ffn(x)))


class SequenceModel(nn.Module):
    """``forward`` gives hidden states ``[B L H]``; ``scores`` maps them to ``[.., n_items]``."""

    def __init__(self, config: SequenceModelConfig) -> None:
        super().__init__()
        self.config = config
        H = config.hidden
        self.item_emb = nn.Embedding(config.n_items + 1, H, padding_idx=PAD)
        self.type_emb = nn.Embedding(config.n_event_types + 1, H, padding_idx=PAD)
        self.gap_emb = (
            nn.Embedding(config.n_gap_buckets, H, padding_idx=PAD) if config.n_gap_buckets else None
        )
        self.pos_emb = nn.Embedding(config.max_len, H)
        self.emb_norm = nn.LayerNorm(H)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.final_norm = nn.LayerNorm(H) if config.norm_first else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # Small normal init as BERT/RecBole; the default (std 1) embeddings train slower.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])

    def forward(
        self,
        items: torch.Tensor,
        event_types: torch.Tensor,
        gap_buckets: torch.Tensor,
        last_only: bool = False,
        keep: list[KeysValues] | None = None,
    ) -> torch.Tensor:
        """Hidden states; ``last_only`` computes just the last position in the final block
        (all serving needs: a quarter of the work of a 2-layer model saved). ``keep``: a
        list that receives each block's keys and values, for :meth:`last_state_with_tail`."""
        x, mask = self._embedded(items, event_types, gap_buckets)
        for n, block in enumerate(self.blocks):
            x = block(x, mask, last_only=last_only and n == len(self.blocks) - 1, keep=keep)
        return self.final_norm(x)  # [B L H], or [B 1 H] with last_only

    def last_state_with_tail(
        self,
        items: torch.Tensor,
        event_types: torch.Tensor,
        gap_buckets: torch.Tensor,
        tail: int,
        kept: list[KeysValues],
    ) -> torch.Tensor:
        """``[B 1 H]``: the last hidden state of sequences that differ from those whose keys
        and values ``kept`` holds (``forward(keep=...)``) only in their last ``tail``
        positions. Causal attention leaves every earlier position as it was, so only the
        tail is computed: the same state as ``forward``, for a fraction of the work."""
        x, mask = self._embedded(items, event_types, gap_buckets)
        x, mask = x[:, -tail:], mask[..., -tail:, :]
        cut = items.shape[1] - tail
        for n, block in enumerate(self.blocks):
            past = (kept[n][0][:, :, :cut], kept[n][1][:, :, :cut])
            x = block(x, mask, last_only=n == len(self.blocks) - 1, past=past)
        return self.final_norm(x)

    def _embedded(
        self, items: torch.Tensor, event_types: torch.Tensor, gap_buckets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embeddings ``[B L H]`` and the attention mask ``[B 1 L L]``."""
        B, L = items.shape  # all inputs: [B L], left-padded
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len {self.config.max_len}")
        positions = torch.arange(self.config.max_len - L, self.config.max_len, device=items.device)
        x = self.item_emb(items) + self.type_emb(event_types) + self.pos_emb(positions)  # [B L H]
        if self.gap_emb is not None:
            x = x + self.gap_emb(gap_buckets)
        x = self.drop(self.emb_norm(x))
        # Attend to earlier real actions and to oneself (so padded rows never see an empty row).
        causal = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()  # [L L]
        real = (items != PAD)[:, None, None, :]  # [B 1 1 L]
        mask = (causal & real) | torch.eye(L, dtype=torch.bool, device=items.device)  # [B 1 L L]
        return x, mask

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[.., H] -> [.., n_items]`` scores; column j is item id j+1 (0 is padding)."""
        return hidden @ self.item_emb.weight[1:].T
