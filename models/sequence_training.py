"""Everything around :class:`~models.sequence_model.SequenceModel`: data, training, evaluation,
checkpoints and the serving wrapper.

- Sequences: each user's interactions ordered by timestamp (ties keep input order), encoded
  as item rows ``1..n_items``, event codes and gaps in seconds.
- Training: next-item cross-entropy over all items at every position (full softmax, as
  RecBole's SASRec with ``loss_type=CE``), Adam, early stopping on validation NDCG@10.
- Evaluation: full ranking of every item, with and without the user's history removed.
- Checkpoints: safetensors weights + JSON, every file's sha256 in ``manifest.json``.
- Serving: :class:`SequenceScorer` scores many users in one forward pass and fine-tunes
  on recent data.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from models.events import EVENT_CODE
from models.precision import autocast
from models.sequence_model import (
    PAD,
    SAME_SECOND_BUCKET,
    SequenceModel,
    SequenceModelConfig,
    gap_buckets,
)
from models.streaming import Interaction

MODEL_NAME = "sasrec_transformer"
CHECKPOINT_FORMAT = "streamrec-sequence/1"
CHECKPOINT_FILES = ("model.safetensors", "config.json", "item_index.json", "version")
TOP_K = 10
METRICS = ("ndcg@10", "recall@10", "ndcg@10_exclude_history", "recall@10_exclude_history")

# Items a training target spreads over: itself and the rest of its tie run, at most this many.
MAX_TIED_TARGETS = 10

SequenceEvent = tuple[str, str, float]  # (item_id, event_type, timestamp), oldest first


class CheckpointError(Exception):
    """A checkpoint directory that is incomplete, corrupted or inconsistent."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the model's own live in :class:`SequenceModelConfig`).

    batch_size: training windows per step (each up to ``max_len`` targets). Small batches
    did best on ML-100K validation (16 > 32 > 64 > 256 windows at lr 1e-3).
    shift_windows: cut long histories into training windows at a random offset each epoch,
    so every target is sometimes seen with a full window of context.
    min_context: earlier actions every training target sees at least (windows overlap by
    this much; 0 = no overlap, cheapest; None = 70 % of ``max_len``). Serving always sees
    the last ``max_len``, so targets trained on short contexts teach the wrong case: ML-100K
    validation prefix, 0 -> 25 of 50: Transformer alone NDCG@10 0.1066 -> 0.1085, streamrec
    0.1129 -> 0.1148; with ties shuffled, 25 -> 35, seeds 2020 / 2021: streamrec 0.1211 /
    0.1209 -> 0.1221 / 0.1218 (15: 0.1182), for 1.1-1.6x the training time.
    lr: Adam's step size. ML-100K validation prefix, with the moving average below, 1e-3 ->
    2e-3: streamrec NDCG@10 0.1158 -> 0.1188 (seed 2020); 3e-3 barely trains.
    ema_decay: validate and keep an exponential moving average of the weights (decay per
    step, ramped up over the first steps; None or 0: the trained weights themselves). It
    smooths the noisy epoch-to-epoch validation curve of small batches. ML-100K validation
    prefix, seeds 2020 / 2021, at lr 1e-3, 0.999 (about the last 1,000 steps): Transformer
    alone NDCG@10 0.1085 / 0.1070 -> 0.1110 / 0.1111, streamrec 0.1149 / 0.1133 -> 0.1158 /
    0.1156 (0.998: 0.1154, 0.9995: 0.1152, seed 2020).
    shuffle_ties: each epoch, put each user's actions with equal timestamps in a new random
    order (:func:`shuffled_ties`). ML-100K validation prefix, seeds 2020 / 2021 (half its
    consecutive actions share a second): Transformer alone NDCG@10 0.1154 / 0.1164 ->
    0.1185 / 0.1186, streamrec 0.1188 / 0.1187 -> 0.1211 / 0.1209.
    tied_targets: a target stamped the same second as the actions after it could have been
    any of them: its loss is spread evenly over that rest of its tie run (at most
    :data:`MAX_TIED_TARGETS` items), the expectation over the orders shuffling draws.
    ML-100K validation prefix, seeds 2020 / 2021: streamrec 0.1221 / 0.1218 -> 0.1222 /
    0.1235 (Transformer alone 0.1207 / 0.1197 -> 0.1197 / 0.1216); whole file 0.1265 -> 0.1284.
    """

    epochs: int = 200
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 10
    seed: int = 2020
    shift_windows: bool = True
    min_context: int | None = None
    eval_batch_size: int = 1024
    device: str = "cpu"
    progress: bool = True
    ema_decay: float | None = 0.999
    shuffle_ties: bool = True
    tied_targets: bool = True


def resolve_device(name: str = "auto") -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``; others pass through."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- sequences


@dataclass(frozen=True)
class EncodedSequence:
    """One user's actions, oldest first: item rows, event codes (both 1-based, ``[n]``
    int64) and seconds since the previous action (``[n]`` float64, NaN for the first)."""

    items: np.ndarray
    types: np.ndarray
    gaps: np.ndarray

    def __len__(self) -> int:
        return len(self.items)

    def window(self, start: int, end: int) -> EncodedSequence:
        """Actions ``[start, end)``; gaps still refer to the action before ``start``."""
        return EncodedSequence(self.items[start:end], self.types[start:end], self.gaps[start:end])


@dataclass(frozen=True)
class RankingCase:
    """Predict ``sequence.items[end]`` from ``sequence`` up to (not including) ``end``."""

    sequence: EncodedSequence
    end: int


def event_code(event_type: str) -> int:
    try:
        return EVENT_CODE[event_type] + 1  # 0 is padding
    except KeyError:
        raise ValueError(f"unknown event_type {event_type!r}") from None


def encode_events(
    rows: Sequence[int], event_types: Sequence[str], timestamps: Sequence[float]
) -> EncodedSequence:
    """:class:`EncodedSequence` of time-ordered events already mapped to item rows."""
    types = np.fromiter((event_code(t) for t in event_types), dtype=np.int64, count=len(rows))
    ts = np.asarray(timestamps, dtype=np.float64)
    gaps = np.full(len(ts), np.nan)
    gaps[1:] = np.diff(ts)
    return EncodedSequence(np.asarray(rows, dtype=np.int64), types, gaps)


def group_by_user(interactions: Iterable[Interaction]) -> dict[str, list[Interaction]]:
    """Each user's interactions by timestamp; ties keep input order (the sort is stable)."""
    by_user: dict[str, list[Interaction]] = {}
    for it in sorted(interactions, key=lambda it: it.timestamp):
        by_user.setdefault(it.user_id, []).append(it)
    return by_user


def item_vocabulary(interactions: Iterable[Interaction]) -> list[str]:
    """Item ids in order of first appearance in time (the model's row order, from 1)."""
    seen: dict[str, None] = {}
    for it in sorted(interactions, key=lambda it: it.timestamp):
        seen.setdefault(it.item_id, None)
    return list(seen)


def tie_run_ids(sequence: EncodedSequence) -> np.ndarray:
    """``[n]`` ascending ids, from 1, of each action's run of equal timestamps."""
    return np.cumsum(sequence.gaps != 0)  # NaN (first action) starts a run too


def shuffled_ties(sequence: EncodedSequence, rng: np.random.Generator) -> EncodedSequence:
    """``sequence`` with the actions of each run of equal timestamps in random order.

    Events with equal timestamps (a page of ratings sent at once) have no order of their
    own; the input's order among them is arbitrary, so training sees a new one each
    epoch. Gaps are unchanged: within a run they are all zero.
    """
    run = tie_run_ids(sequence)
    if len(run) == 0 or run[-1] == len(run):
        return sequence
    order = np.lexsort((rng.random(len(run)), run))
    return EncodedSequence(sequence.items[order], sequence.types[order], sequence.gaps)


def tie_runs(sequence: EncodedSequence, width: int) -> np.ndarray:
    """``[n width]`` item rows: for each position, its own item, then the items after it
    in its run of equal timestamps, up to ``width`` in all (0 pads)."""
    if len(sequence) == 0:
        return np.zeros((0, width), dtype=np.int64)
    run = tie_run_ids(sequence)
    run_end = np.searchsorted(run, run, side="right")  # one past each position's run
    position = np.arange(len(run))[:, None] + np.arange(width)[None, :]  # [n width]
    inside = position < run_end[:, None]
    return np.where(inside, sequence.items[np.minimum(position, len(run) - 1)], PAD)


def _encode_user(events: Sequence[Interaction], row_of: Mapping[str, int]) -> EncodedSequence:
    return encode_events(
        [row_of[e.item_id] for e in events],
        [e.event_type for e in events],
        [e.timestamp for e in events],
    )


@dataclass(frozen=True)
class SequenceSplit:
    """Training sequences and validation/test cases over one item vocabulary."""

    item_ids: list[str]
    train: list[EncodedSequence]
    valid: list[RankingCase]
    test: list[RankingCase]
    protocol: str


def leave_one_out_split(interactions: Sequence[Interaction]) -> SequenceSplit:
    """Per user with ≥3 actions: last = test, second-last = validation, the rest = train.

    Shorter histories are all training. Test contexts include the validation item.
    """
    item_ids = item_vocabulary(interactions)
    row_of = {item: row for row, item in enumerate(item_ids, start=1)}
    train, valid, test = [], [], []
    for events in group_by_user(interactions).values():
        seq = _encode_user(events, row_of)
        if len(seq) >= 3:
            train.append(seq.window(0, len(seq) - 2))
            valid.append(RankingCase(seq, len(seq) - 2))
            test.append(RankingCase(seq, len(seq) - 1))
        else:
            train.append(seq)
    return SequenceSplit(item_ids, train, valid, test, "leave-one-out, full ranking")


def temporal_split(
    interactions: Sequence[Interaction], test_fraction: float = 0.2, valid_fraction: float = 0.1
) -> SequenceSplit:
    """First ``1 - test_fraction`` of interactions by time = train, the rest = test.

    Validation is the last ``valid_fraction`` of the training part (never test data).
    Every validation/test interaction with an earlier one by its user is a case; its
    context is everything the user did before it, as a streaming model would see it.
    """
    ordered = sorted(interactions, key=lambda it: it.timestamp)
    cut_test = int(len(ordered) * (1.0 - test_fraction))
    cut_valid = int(cut_test * (1.0 - valid_fraction))
    item_ids = item_vocabulary(ordered)
    row_of = {item: row for row, item in enumerate(item_ids, start=1)}
    positions: dict[str, list[int]] = {}
    for pos, it in enumerate(ordered):
        positions.setdefault(it.user_id, []).append(pos)
    train, valid, test = [], [], []
    for user_positions in positions.values():
        seq = _encode_user([ordered[p] for p in user_positions], row_of)
        n_train = sum(p < cut_valid for p in user_positions)  # a prefix: positions ascend
        if n_train:
            train.append(seq.window(0, n_train))
        for end, pos in enumerate(user_positions):
            if end and pos >= cut_valid:
                (valid if pos < cut_test else test).append(RankingCase(seq, end))
    protocol = (
        f"temporal: first {1 - test_fraction:.0%} of interactions by time train (its last "
        f"{valid_fraction:.0%} validation), last {test_fraction:.0%} test; full ranking"
    )
    return SequenceSplit(item_ids, train, valid, test, protocol)


# --------------------------------------------------------------------------- tensors


def _pad_left(parts: Sequence[EncodedSequence], max_len: int, n_gap_buckets: int):
    """Left-padded ``[B max_len]`` item, type and gap-bucket arrays of (short) sequences."""
    B = len(parts)
    items = np.zeros((B, max_len), dtype=np.int64)
    types = np.zeros((B, max_len), dtype=np.int64)
    gaps = np.zeros((B, max_len), dtype=np.float64)
    for row, part in enumerate(parts):
        n = len(part)
        if n:
            items[row, max_len - n :] = part.items
            types[row, max_len - n :] = part.types
            gaps[row, max_len - n :] = part.gaps
    return items, types, _padded_gap_buckets(items, gaps, n_gap_buckets)


def _padded_gap_buckets(items: np.ndarray, seconds: np.ndarray, n_gap_buckets: int) -> np.ndarray:
    """Gap buckets of left-padded ``[B L]`` gaps in seconds; 0 on padding and with gaps off."""
    buckets = gap_buckets(seconds, n_gap_buckets) if n_gap_buckets else np.zeros_like(items)
    return np.where(items == PAD, PAD, buckets)


def _contexts(cases: Sequence[RankingCase], config: SequenceModelConfig):
    """Model inputs holding the last ``max_len`` actions before each case's target."""
    parts = [c.sequence.window(max(0, c.end - config.max_len), c.end) for c in cases]
    return _pad_left(parts, config.max_len, config.n_gap_buckets)


def default_min_context(config: SequenceModelConfig) -> int:
    """Default ``min_context``: training targets see at least 70 % of a window of earlier
    actions (served ones see a full window; ML-100K validation prefix: see ``TrainConfig``)."""
    return config.max_len * 7 // 10


def training_windows(
    sequences: Sequence[EncodedSequence],
    config: SequenceModelConfig,
    rng: np.random.Generator | None = None,
    min_context: int = 0,
    tied_targets: bool = False,
):
    """``(items, types, gaps, targets)`` ``[N max_len]`` arrays; targets 0 = no loss.
    With ``config.exclude_history`` a fifth, left-padded ``[N E]`` array holds the items
    before each window, which its targets' softmax leaves out too. With ``tied_targets``
    and ties in the data, the targets are ``[N max_len K]``: each target, then the rest of
    its tie run (:func:`tie_runs`, ``K`` at most :data:`MAX_TIED_TARGETS`).

    Position t's target is the action after it. Each target is in exactly one window;
    windows hold the ``max_len`` actions before their last target and overlap so that
    every target sees at least ``min_context`` earlier actions (or all there are). With
    ``rng`` the cut points move by a random offset, so a target's context varies by epoch.
    """
    L = config.max_len
    stride = L - min_context
    if not 0 < stride <= L:
        raise ValueError(f"min_context must be in [0, max_len), not {min_context}")
    parts, targets, earlier = [], [], []
    usable = [seq for seq in sequences if len(seq) >= 2]
    width = 1
    if tied_targets and usable:
        longest = max(int(np.bincount(tie_run_ids(s)).max()) for s in usable)
        width = min(longest, MAX_TIED_TARGETS)
    tied = width > 1  # without ties, plain targets: the same loss, computed as before
    for seq in usable:
        n = len(seq)
        wanted = tie_runs(seq, width) if tied else seq.items
        shift = int(rng.integers(stride)) if rng is not None else 0
        ends = sorted({n - 1, *range(n - 1 - shift, 0, -stride)}, reverse=True)
        for k, end in enumerate(ends):  # window: inputs [start, end), targets (lower, end]
            lower = ends[k + 1] if k + 1 < len(ends) else 0
            start = max(0, end - L)
            parts.append(seq.window(start, end))
            target = wanted[start + 1 : end + 1].copy()
            target[np.arange(start + 1, end + 1) <= lower] = PAD
            padded = np.zeros((L, *target.shape[1:]), dtype=np.int64)
            padded[L - len(target) :] = target
            targets.append(padded)
            earlier.append(seq.items[:start])
    items, types, gaps = _pad_left(parts, L, config.n_gap_buckets)
    target_shape = (-1, L, width) if tied else (-1, L)
    arrays = [items, types, gaps, np.asarray(targets, dtype=np.int64).reshape(target_shape)]
    if config.exclude_history:
        before = np.zeros((len(earlier), max((len(e) for e in earlier), default=0)), np.int64)
        for row, items_before in enumerate(earlier):
            before[row, before.shape[1] - len(items_before) :] = items_before
        arrays.append(before)
    return tuple(arrays)


def _trim_padding(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Drop leading columns that are padding in every row (positions are right-aligned).

    The first array's padding sets the width of the positional ones (at most four: items,
    types, gaps, targets); a fifth, the items before each window, is trimmed on its own.
    """
    width = max(int((arrays[0] != PAD).sum(axis=1).max(initial=1)), 1)
    trimmed = [a[:, a.shape[1] - width :] for a in arrays[:4]]
    for extra in arrays[4:]:
        own = int((extra != PAD).sum(axis=1).max(initial=0))
        trimmed.append(extra[:, extra.shape[1] - own :])
    return trimmed


def _batches_by_length(items: np.ndarray, batch_size: int, rng: np.random.Generator):
    """Batches of window rows with similar lengths, in random order (less padding work)."""
    lengths = (items != PAD).sum(axis=1)
    order = rng.permutation(len(items))
    order = order[np.argsort(-lengths[order], kind="stable")]
    batches = [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _tensors(arrays: Iterable[np.ndarray], device: str) -> list[torch.Tensor]:
    return [torch.as_tensor(a, device=device) for a in arrays]


def window_loss(model: SequenceModel, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean next-item cross-entropy over all items at every position with a target.

    With ``exclude_history`` in the model's config, each position's softmax leaves out the
    items the window holds up to it and, given the fifth array of :func:`training_windows`,
    the items before the window (the targets excepted), as serving leaves out consumed items.
    Tied targets (``[B L K]``) spread each position's target evenly over its K items.
    """
    items, types, gaps, targets = batch[:4]  # [B L] each; targets may be [B L K]
    tied = targets.dim() == 3
    hidden = model(items, types, gaps)  # [B L H]
    has_target = (targets[..., 0] if tied else targets) != PAD  # [B L]
    logits = model.scores(hidden[has_target])  # [M n_items]
    sets = targets[has_target] if tied else targets[has_target][:, None]  # [M K]
    columns = logits.shape[1] + 1  # column 0 is padding
    if model.config.exclude_history:
        L = items.shape[1]
        earlier = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()  # [t s]: s <= t
        seen = items[:, None, :].masked_fill(~earlier, PAD)  # [B L L]
        if len(batch) > 4:  # the items before the window, for every position in it
            before = batch[4][:, None, :].expand(-1, L, -1)  # [B L E]
            seen = torch.cat([seen, before], dim=2)
        seen = seen[has_target]  # [M L(+E)]
        mask = torch.zeros(len(seen), columns, dtype=torch.bool, device=items.device)
        mask = mask.scatter_(1, seen, True).scatter_(1, sets, False)[:, 1:]
        logits = logits.masked_fill(mask, -torch.inf)
    if not tied:
        return F.cross_entropy(logits, sets[:, 0] - 1)
    # Items stamped the same second came in no order: each is as likely to be next.
    spread = torch.zeros(len(sets), columns, device=items.device).scatter_(1, sets, 1.0)[:, 1:]
    wanted = spread / spread.sum(dim=1, keepdim=True)
    log_p = torch.log_softmax(logits, dim=1).masked_fill(wanted == 0, 0.0)  # no 0 * -inf
    return -(wanted * log_p).sum(dim=1).mean()


# --------------------------------------------------------------------------- evaluation


def _ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target column (items scoring strictly higher)."""
    target_score = scores.gather(1, target[:, None])  # [B 1]
    return (scores > target_score).sum(dim=1)  # [B]


@torch.no_grad()
def evaluate_ranking(
    model: SequenceModel,
    cases: Sequence[RankingCase],
    device: str = "cpu",
    batch_size: int = 1024,
    k: int = TOP_K,
) -> dict[str, float]:
    """NDCG@k and Recall@k of each case's target among ALL items.

    ``*_exclude_history`` first removes the items in the case's context (its whole
    history, not only the last ``max_len``) from the ranking, except the target itself.
    """
    model.eval()
    sums = dict.fromkeys(METRICS, 0.0)
    for start in range(0, len(cases), batch_size):
        chunk = cases[start : start + batch_size]
        inputs = _tensors(_trim_padding(_contexts(chunk, model.config)), device)
        scores = model.scores(model(*inputs)[:, -1])  # [B n_items]
        target = torch.as_tensor([c.sequence.items[c.end] - 1 for c in chunk], device=device)
        rows = np.concatenate([np.full(c.end, i) for i, c in enumerate(chunk)])
        cols = np.concatenate([c.sequence.items[: c.end] - 1 for c in chunk])
        masked = scores.clone()
        history = torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)
        masked[history] = -torch.inf
        arange = torch.arange(len(chunk), device=device)
        masked[arange, target] = scores[arange, target]
        for suffix, ranked in (("", scores), ("_exclude_history", masked)):
            rank = _ranks(ranked, target).double()
            hit = rank < k
            sums[f"ndcg@{k}{suffix}"] += float((hit / torch.log2(rank + 2)).sum())
            sums[f"recall@{k}{suffix}"] += float(hit.sum())
    n = max(len(cases), 1)
    return {name: total / n for name, total in sums.items()}


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    model: SequenceModel
    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    train_seconds: float
    history: list[dict[str, float]]


def fit_sequence_model(
    train: Sequence[EncodedSequence],
    valid: Sequence[RankingCase],
    model_config: SequenceModelConfig,
    train_config: TrainConfig = TrainConfig(),
) -> TrainResult:
    """Train from scratch; keep the weights of the epoch with the best validation NDCG@10
    (their moving average, with ``ema_decay``: it is what is validated).

    Stops after ``patience`` epochs without improvement. Without validation cases it
    runs every epoch and keeps the last weights.
    """
    tc = train_config
    seed_everything(tc.seed)
    rng = np.random.default_rng(tc.seed)
    model = SequenceModel(model_config).to(tc.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    averaged = None
    if tc.ema_decay:
        averaged = AveragedModel(model, multi_avg_fn=_moving_average(tc.ema_decay))
    # The weights validated and kept: the trained ones, or their moving average.
    kept = model if averaged is None else averaged.module
    best_ndcg, best_epoch, best_valid, best_state = -1.0, 0, {}, None
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    bar = tqdm(range(1, tc.epochs + 1), desc="train", unit="epoch", disable=not tc.progress)
    epoch = 0
    min_context = default_min_context(model_config) if tc.min_context is None else tc.min_context
    for epoch in bar:
        shift_rng = rng if tc.shift_windows else None
        epoch_train = [shuffled_ties(s, rng) for s in train] if tc.shuffle_ties else train
        windows = training_windows(
            epoch_train, model_config, shift_rng, min_context, tc.tied_targets
        )
        model.train()
        total, batches = 0.0, 0
        for rows in _batches_by_length(windows[0], tc.batch_size, rng):
            batch = _tensors(_trim_padding([w[rows] for w in windows]), tc.device)
            loss = window_loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total, batches = total + loss.item(), batches + 1
        record = {"epoch": epoch, "loss": total / max(batches, 1)}
        if valid:
            metrics = evaluate_ranking(kept, valid, tc.device, tc.eval_batch_size)
            # Chosen on the ranking the model is trained for: with or without the history.
            ndcg = metrics["ndcg@10_exclude_history" if model_config.exclude_history else "ndcg@10"]
            record["valid_ndcg@10"] = ndcg
            if ndcg > best_ndcg:
                best_ndcg, best_epoch, best_valid = ndcg, epoch, metrics
                best_state = {k: v.detach().clone() for k, v in kept.state_dict().items()}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", valid=f"{best_ndcg:.4f}", best=best_epoch)
        if valid and epoch - best_epoch >= tc.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        model.load_state_dict(kept.state_dict())
        best_epoch = epoch
    model.eval()
    return TrainResult(model, best_epoch, best_valid, epoch, time.perf_counter() - started, history)


def _moving_average(decay: float):
    """An exponential moving average of the weights whose decay ramps up to ``decay`` as
    ``(1 + n) / (4 + n)`` after n updates: it spans at most the last third or so of the
    steps so far, so a short run is not pulled back to its random initial weights (as
    TensorFlow's ``num_updates``, which keeps a tenth: too short on ML-100K validation)."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor):
        done = int(n)
        keep = min(decay, (1 + done) / (4 + done))
        for old, new in zip(averaged, current, strict=True):
            old.lerp_(new, 1.0 - keep)

    return update


def train_and_evaluate(
    split: SequenceSplit,
    model_options: Mapping[str, Any] | None = None,
    train_config: TrainConfig = TrainConfig(),
) -> tuple[dict[str, float], TrainResult]:
    """Train on ``split.train``, stop early on ``split.valid``, report metrics on ``split.test``."""
    config = SequenceModelConfig(n_items=len(split.item_ids), **dict(model_options or {}))
    result = fit_sequence_model(split.train, split.valid, config, train_config)
    metrics = evaluate_ranking(
        result.model, split.test, train_config.device, train_config.eval_batch_size
    )
    metrics.update(
        best_epoch=result.best_epoch,
        train_seconds=round(result.train_seconds, 1),
        valid_ndcg_at_10=result.best_valid.get("ndcg@10", float("nan")),
        valid_ndcg_at_10_exclude_history=result.best_valid.get(
            "ndcg@10_exclude_history", float("nan")
        ),
        test_cases=len(split.test),
    )
    return metrics, result


def evaluate_leave_one_out(
    interactions: Sequence[Interaction],
    model_options: Mapping[str, Any] | None = None,
    train_config: TrainConfig = TrainConfig(),
) -> tuple[dict[str, float], TrainResult]:
    """Leave-one-out full-ranking evaluation (see :func:`leave_one_out_split`).

    Returns test NDCG@10 / Recall@10 with and without history removal, the best epoch
    (chosen on validation NDCG@10) and the training time, plus the trained model.
    """
    return train_and_evaluate(leave_one_out_split(interactions), model_options, train_config)


def train_sequence_model(
    interactions: Sequence[Interaction],
    epochs: int = 200,
    seed: int = 2020,
    device: str = "cpu",
    valid_fraction: float = 0.1,
    model_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    exclude_history: bool = True,
    refit: bool = True,
) -> SequenceScorer:
    """A serving model trained on interactions (e.g. a stream evaluator's warm-up).

    The last ``valid_fraction`` of them by time is held out to choose the number of epochs
    (early stopping). ``refit``: then train afresh on all of them for that many epochs, so
    the most recent interactions shape the weights too (ML-100K validation prefix:
    Transformer alone NDCG@10 0.1024 -> 0.1066, streamrec 0.1117 -> 0.1129; twice the
    training time). Without it the model never trains on the held-out tail.
    ``exclude_history``: train it to rank the items a user has not had yet (serving with
    consumed items excluded, the default) rather than every item.
    """
    split = temporal_split(interactions, test_fraction=0.0, valid_fraction=valid_fraction)
    options = {"exclude_history": exclude_history, **dict(model_options or {})}
    config = SequenceModelConfig(n_items=len(split.item_ids), **options)
    train_config = TrainConfig(
        epochs=epochs, seed=seed, device=resolve_device(device), progress=progress
    )
    result = fit_sequence_model(split.train, split.valid, config, train_config)
    model = result.model
    if refit and split.valid:
        model = refit_on_all(interactions, config, train_config, result.best_epoch)
    version = f"{MODEL_NAME}/{weights_digest(model)[:12]}"
    return SequenceScorer(model, split.item_ids, train_config.device, version, seed)


def refit_on_all(
    interactions: Sequence[Interaction],
    config: SequenceModelConfig,
    train_config: TrainConfig,
    epochs: int,
) -> SequenceModel:
    """A model trained afresh on every interaction for ``epochs`` (chosen beforehand by
    early stopping on a held-out split). Its item rows are those of any split of the same
    interactions: the vocabulary is theirs in order of first appearance."""
    whole = temporal_split(interactions, test_fraction=0.0, valid_fraction=0.0)
    return fit_sequence_model(whole.train, [], config, replace(train_config, epochs=epochs)).model


# --------------------------------------------------------------------------- checkpoints


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(model: SequenceModel) -> str:
    """sha256 over the parameters (names, shapes and bytes), independent of files."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    model: SequenceModel
    item_ids: list[str]
    version: str


def save_checkpoint(
    directory: str | Path,
    model: SequenceModel,
    item_ids: Sequence[str],
    version: str | None = None,
) -> str:
    """Write the checkpoint files and, last, ``manifest.json``; returns the version.

    The default version names the weights' digest, so equal weights get equal versions.
    """
    if len(item_ids) != model.config.n_items:
        raise ValueError(f"{len(item_ids)} item ids for a model of {model.config.n_items}")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, root / "model.safetensors", metadata={"format": CHECKPOINT_FORMAT})
    version = version or f"{MODEL_NAME}/{weights_digest(model)[:12]}"
    (root / "config.json").write_text(json.dumps(asdict(model.config), indent=2) + "\n")
    (root / "item_index.json").write_text(json.dumps(list(item_ids)) + "\n")
    (root / "version").write_text(version + "\n")
    manifest = {
        "format": CHECKPOINT_FORMAT,
        "sha256": {name: _sha256(root / name) for name in CHECKPOINT_FILES},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return version


def load_checkpoint(directory: str | Path, device: str = "cpu") -> Checkpoint:
    """Load a checkpoint after checking every file against ``manifest.json``.

    Raises :class:`CheckpointError` naming the problem (missing file, hash mismatch,
    unreadable or inconsistent contents). Weights are read with safetensors only.
    """
    root = Path(directory)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        hashes = manifest["sha256"]
        if manifest.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{root}: unsupported format {manifest.get('format')!r}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{root}: missing or unreadable manifest.json ({exc})") from exc
    for name in CHECKPOINT_FILES:
        path = root / name
        if not path.is_file():
            raise CheckpointError(f"{root}: missing {name}")
        if not isinstance(hashes, dict) or hashes.get(name) != _sha256(path):
            raise CheckpointError(f"{root}: {name} does not match its sha256 in manifest.json")
    try:
        raw_config = json.loads((root / "config.json").read_text())
        known = {f.name for f in fields(SequenceModelConfig)}
        if not isinstance(raw_config, dict) or set(raw_config) - known:
            raise ValueError(f"unexpected config keys {sorted(set(raw_config) - known)}")
        config = SequenceModelConfig(**raw_config)
        item_ids = json.loads((root / "item_index.json").read_text())
        if not isinstance(item_ids, list) or not all(isinstance(i, str) for i in item_ids):
            raise ValueError("item_index.json must be a list of strings")
        if len(item_ids) != config.n_items or len(set(item_ids)) != len(item_ids):
            raise ValueError("item_index.json does not match n_items or repeats an id")
        model = SequenceModel(config)
        model.load_state_dict(load_file(root / "model.safetensors"), strict=True)
        version = (root / "version").read_text().strip()
    except (OSError, ValueError, TypeError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"{root}: inconsistent checkpoint ({exc})") from exc
    return Checkpoint(model.to(device).eval(), item_ids, version)


# --------------------------------------------------------------------------- serving


class SequenceScorer:
    """A trained model and its item vocabulary on one device, for the stream worker.

    Sequences are lists of ``(item_id, event_type, timestamp)``, most recent last; ids the
    model does not know are dropped. ``fine_tune`` keeps one Adam state across calls so
    periodic small updates behave like one continued run.
    """

    def __init__(
        self,
        model: SequenceModel,
        item_ids: Sequence[str],
        device: str = "cpu",
        version: str = "",
        seed: int = 0,
        batch_size: int = 256,
        precision: str = "float32",
        average_tie_orders: bool = True,
    ) -> None:
        if len(item_ids) != model.config.n_items:
            raise ValueError(f"{len(item_ids)} item ids for a model of {model.config.n_items}")
        self.model = model.to(device).eval()
        self.device = device
        self.version = version
        self.batch_size = batch_size
        # Serving forwards under bfloat16 autocast where that is faster (models/precision.py):
        # 2.0x at 50 users of 50 actions on one thread of this CPU. Training stays float32.
        self.precision = precision
        # When a user's last actions share a timestamp (a page of ratings sent at once),
        # their order is arbitrary and training saw random ones: the query is the mean of
        # the model's over that last run as given and reversed. See ``hidden_states``.
        self.average_tie_orders = average_tie_orders
        self._item_ids = tuple(item_ids)
        self._row_of = {item: row for row, item in enumerate(self._item_ids, start=1)}
        self._rng = np.random.default_rng(seed)
        self._optimizer: torch.optim.Adam | None = None
        self._aligned: tuple[Any, tuple[np.ndarray, ...]] | None = None

    @classmethod
    def load_checkpoint(
        cls,
        directory: str | Path,
        device: str = "cpu",
        precision: str = "float32",
        average_tie_orders: bool = True,
    ) -> SequenceScorer:
        """A scorer from a verified checkpoint (raises :class:`CheckpointError`)."""
        checkpoint = load_checkpoint(directory, device)
        return cls(
            checkpoint.model,
            checkpoint.item_ids,
            device,
            checkpoint.version,
            precision=precision,
            average_tie_orders=average_tie_orders,
        )

    load = load_checkpoint  # the name the engine uses

    def save_checkpoint(self, directory: str | Path, version: str | None = None) -> str:
        self.version = save_checkpoint(directory, self.model, self._item_ids, version)
        return self.version

    @property
    def item_ids(self) -> tuple[str, ...]:
        """Item ids in score-column order."""
        return self._item_ids

    @property
    def max_len(self) -> int:
        """Most recent actions the model looks at; longer sequences may be cut to this."""
        return self.model.config.max_len

    def encode(self, sequence: Sequence[SequenceEvent]) -> EncodedSequence:
        kept = [event for event in sequence if event[0] in self._row_of]
        return encode_events(
            [self._row_of[item] for item, _, _ in kept],
            [kind for _, kind, _ in kept],
            [float(ts) for _, _, ts in kept],
        )

    def padded_inputs(
        self, histories: Sequence[tuple[Sequence[str], Sequence[int], Sequence[float]]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model inputs for many histories at once, in array operations (not one
        :meth:`encode` each): ``[B max_len]`` item rows, event codes and gap buckets,
        left-padded. A history is ``(item ids, kinds, timestamps)``, oldest first, kinds as
        ``models.events.EVENT_CODE`` codes (how a user profile keeps them). Items the model
        never saw are dropped; each history keeps its last ``max_len`` known actions, the
        first timed from the known one before it where there is one (as training windows)."""
        config, B = self.model.config, len(histories)
        counts = np.fromiter((len(h[0]) for h in histories), np.int64, B)
        total, row_of = int(counts.sum()), self._row_of
        rows = np.fromiter((row_of.get(i, PAD) for h in histories for i in h[0]), np.int64, total)
        kinds = np.fromiter((k for h in histories for k in h[1]), np.int64, total) + 1
        times = np.fromiter((t for h in histories for t in h[2]), np.float64, total)
        owners = np.repeat(np.arange(B), counts)
        known = rows != PAD
        rows, kinds, times, owners = rows[known], kinds[known], times[known], owners[known]
        gaps = np.full(len(times), np.nan)
        same_owner = owners[1:] == owners[:-1]
        gaps[1:][same_owner] = np.diff(times)[same_owner]  # NaN: a history's first action
        from_end = np.cumsum(np.bincount(owners, minlength=B))[owners] - 1 - np.arange(len(rows))
        kept = from_end < config.max_len
        at = (owners[kept], config.max_len - 1 - from_end[kept])
        items = np.zeros((B, config.max_len), dtype=np.int64)
        types, seconds = np.zeros_like(items), np.zeros(items.shape)
        items[at], types[at], seconds[at] = rows[kept], kinds[kept], gaps[kept]
        return items, types, _padded_gap_buckets(items, seconds, config.n_gap_buckets)

    @torch.no_grad()
    def score_sequences(
        self,
        sequences: Sequence[Sequence[SequenceEvent]],
        columns: np.ndarray | None = None,
    ) -> np.ndarray:
        """``[B, n_items]`` float32 scores (or ``[B, len(columns)]``).

        ``columns`` picks and orders the score columns (model item index; -1 gives the
        row's mean), so callers get scores in their own item order without a gather.
        A sequence with no known item gets a row of zeros (no evidence either way).
        """
        return self.hidden_states(sequences) @ self.item_factors(columns)[0].T

    @torch.no_grad()
    def hidden_states(
        self, sequences: Sequence[Sequence[SequenceEvent] | EncodedSequence]
    ) -> np.ndarray:
        """``[B, H]`` float32: each sequence's last hidden state, its query over the items
        (scores are its dot products with :meth:`item_factors`); zeros for a sequence
        with no known item. See :meth:`padded_hidden_states`."""
        encoded = [s if isinstance(s, EncodedSequence) else self.encode(s) for s in sequences]
        config = self.model.config
        windows = [seq.window(max(0, len(seq) - config.max_len), len(seq)) for seq in encoded]
        return self.padded_hidden_states(*_pad_left(windows, config.max_len, config.n_gap_buckets))

    @torch.no_grad()
    def padded_hidden_states(
        self, items: np.ndarray, types: np.ndarray, gaps: np.ndarray
    ) -> np.ndarray:
        """:meth:`hidden_states` of left-padded inputs (:meth:`padded_inputs`). Run in
        length-sorted chunks, each cut to its longest row: a stream of mostly short histories
        costs what they are, not max_len.

        With ``average_tie_orders``, a sequence whose last actions share a timestamp gets
        the mean of the states of its last ``max_len`` actions as given and with that last
        run reversed; the reversed pass reuses the given one's keys and values before the
        run. ML-100K validation prefix, streamrec NDCG@10, seeds 2020 / 2021: 0.1231 /
        0.1241 -> 0.1239 / 0.1257 (every run reversed, for every user with ties: 0.1236 /
        0.1253)."""
        self.model.eval()
        out = np.zeros((len(items), self.model.config.hidden), dtype=np.float32)
        lengths = (items != PAD).sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        order = order[lengths[order] > 0]
        with autocast(self.precision, self.device):
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                inputs = _trim_padding([items[chunk], types[chunk], gaps[chunk]])
                kept: list | None = [] if self.average_tie_orders else None
                tensors = _tensors(inputs, self.device)
                states = self.model(*tensors, last_only=True, keep=kept)[:, -1].float()
                if kept:
                    states = self._averaged_over_last_tie(inputs, states, kept)
                out[chunk] = states.cpu().numpy()
        return out

    def _averaged_over_last_tie(
        self, inputs: Sequence[np.ndarray], states: torch.Tensor, kept: list
    ) -> torch.Tensor:
        """``states`` where each row whose last actions share a timestamp is averaged with
        the state of the same row with that run reversed (padded ``[C W]`` inputs)."""
        items, types, gaps = inputs
        same = gaps == SAME_SECOND_BUCKET
        # Length of each row's last run: its trailing same-second actions and the one before.
        trailing = np.argmin(np.c_[same[:, ::-1], np.zeros(len(same), bool)], axis=1)
        run = np.minimum(trailing + 1, (items != PAD).sum(axis=1))
        rows = np.flatnonzero(run > 1)
        if not len(rows):
            return states
        width, tail = items.shape[1], int(run[rows].max())
        position, start = np.arange(width)[None, :], width - run[rows][:, None]
        columns = np.where(position < start, position, start + width - 1 - position)
        flipped = [np.take_along_axis(a[rows], columns, axis=1) for a in (items, types)]
        tensors = _tensors([*flipped, gaps[rows]], self.device)
        index = torch.as_tensor(rows, device=self.device)
        kept_rows = [(k[index], v[index]) for k, v in kept]
        other = self.model.last_state_with_tail(*tensors, tail, kept_rows)[:, -1].float()
        states = states.clone()
        states[index] = (states[index] + other) / 2
        return states

    def item_factors(self, columns: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """Item vectors in the caller's column order (-1: the mean known vector, so its
        score is the mean over known items), with their mean and covariance (float64);
        cached while the columns do not change."""
        key = None if columns is None else (columns.shape[0], hash(columns.tobytes()))
        if self._aligned is None or self._aligned[0] != key:
            table = self.model.item_emb.weight[1:].detach().float().cpu().numpy()
            factors = table
            if columns is not None:
                known = columns >= 0
                factors = np.empty((len(columns), table.shape[1]), dtype=np.float32)
                factors[known] = table[columns[known]]
                factors[~known] = table[columns[known]].mean(axis=0) if known.any() else 0.0
            wide = factors.astype(np.float64)
            mean = wide.mean(axis=0)
            covariance = wide.T @ wide / max(len(wide), 1) - np.outer(mean, mean)
            self._aligned = (key, (factors, mean, covariance))
        return self._aligned[1]

    def _sequences(
        self, data: Sequence[Interaction] | Sequence[Sequence[SequenceEvent]]
    ) -> list[EncodedSequence]:
        if data and isinstance(data[0], Interaction):
            users = group_by_user(data)  # type: ignore[arg-type]
            data = [[(e.item_id, e.event_type, e.timestamp) for e in evs] for evs in users.values()]
        return [self.encode(seq) for seq in data]  # type: ignore[arg-type]

    def _windows(
        self,
        data: Sequence[Interaction] | Sequence[Sequence[SequenceEvent]],
        shuffle_ties: bool = False,
    ):
        """Training windows of ``data``, cut as :func:`fit_sequence_model` cuts them (with
        ``shuffle_ties``, ties also shuffled and targets tied, as its defaults do)."""
        config = self.model.config
        sequences = self._sequences(data)
        if shuffle_ties:
            sequences = [shuffled_ties(s, self._rng) for s in sequences]
        return training_windows(
            sequences, config, min_context=default_min_context(config), tied_targets=shuffle_ties
        )

    @torch.no_grad()
    def loss(self, data: Sequence[Interaction] | Sequence[Sequence[SequenceEvent]]) -> float:
        """Mean next-item cross-entropy on ``data`` (dropout off)."""
        self.model.eval()
        windows = self._windows(data)
        if not len(windows[0]):
            return float("nan")
        return float(window_loss(self.model, _tensors(windows, self.device)))

    def fine_tune(
        self,
        data: Sequence[Interaction] | Sequence[Sequence[SequenceEvent]],
        steps: int = 10,
        lr: float = 1e-4,
    ) -> list[float]:
        """Continue training for ``steps`` Adam steps on recent data; returns each step's loss.

        ``data`` is interactions (grouped per user in time order) or ready sequences.
        Each step draws up to ``batch_size`` training windows at random; actions with
        equal timestamps are put in random order, as in :func:`fit_sequence_model`.
        """
        windows = self._windows(data, shuffle_ties=True)
        if not len(windows[0]) or steps <= 0:
            return []
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        for group in self._optimizer.param_groups:
            group["lr"] = lr
        losses = []
        self._aligned = None  # the embeddings are about to change
        self.model.train()
        try:
            for _ in range(steps):
                size = min(self.batch_size, len(windows[0]))
                pick = self._rng.choice(len(windows[0]), size=size, replace=False)
                loss = window_loss(self.model, _tensors((w[pick] for w in windows), self.device))
                self._optimizer.zero_grad()
                loss.backward()
                self._optimizer.step()
                losses.append(loss.item())
        finally:
            self.model.eval()
        return losses


# --------------------------------------------------------------------------- command


def run_train(
    interactions: Sequence[Interaction],
    dataset: str,
    out: str | Path | None = None,
    eval_mode: str = "loo",
    json_path: str | Path | None = None,
    epochs: int = 200,
    batch_size: int = 16,
    lr: float = TrainConfig.lr,
    seed: int = 2020,
    max_len: int = 50,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    dropout: float = 0.5,
    ema_decay: float | None = TrainConfig.ema_decay,
    shuffle_ties: bool = TrainConfig.shuffle_ties,
    patience: int = 10,
    device: str = "auto",
    progress: bool = True,
    exclude_history: bool = True,
    refit_all: bool = False,
) -> dict[str, Any]:
    """Train on a data set, evaluate with ``eval_mode``, write the checkpoint and JSON report.

    ``interactions`` come validated from the caller (``streamrec train`` loads them with the
    evaluator's loader); ``dataset`` names them in the report.
    ``eval_mode``: ``loo`` (leave-one-out) or ``temporal`` (see :func:`temporal_split`).
    The checkpoint holds the weights chosen on validation (trained without the held-out
    interactions); with ``refit_all``, a model trained afresh on every interaction for the
    number of epochs early stopping chose (the one to deploy: it has seen the most recent
    events). The reported metrics are the held-out model's either way.
    """
    if eval_mode not in ("loo", "temporal"):
        raise ValueError(f"eval_mode must be 'loo' or 'temporal', not {eval_mode!r}")
    if not interactions:
        raise ValueError(f"{dataset}: no usable interactions")
    split = (
        leave_one_out_split(interactions) if eval_mode == "loo" else temporal_split(interactions)
    )
    model_options = {
        "max_len": max_len,
        "hidden": hidden,
        "layers": layers,
        "heads": heads,
        "dropout": dropout,
        "attn_dropout": dropout,
        "exclude_history": exclude_history,
    }
    train_config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        seed=seed,
        device=resolve_device(device),
        progress=progress,
        ema_decay=ema_decay,
        shuffle_ties=shuffle_ties,
        tied_targets=shuffle_ties,
    )
    metrics, result = train_and_evaluate(split, model_options, train_config)
    report: dict[str, Any] = {
        "dataset": dataset,
        "protocol": split.protocol,
        "results": {MODEL_NAME: {name: metrics[name] for name in METRICS}},
    }
    report["results"][MODEL_NAME].update(
        best_epoch=metrics["best_epoch"],
        train_seconds=metrics["train_seconds"],
        valid_ndcg_at_10=metrics["valid_ndcg_at_10"],
        valid_ndcg_at_10_exclude_history=metrics["valid_ndcg_at_10_exclude_history"],
        exclude_history=result.model.config.exclude_history,
        test_cases=metrics["test_cases"],
    )
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    extra: dict[str, Any] = {"interactions": len(interactions)}
    model, trained_on = result.model, "the training split (held-out interactions excluded)"
    if refit_all:
        epochs = max(result.best_epoch, 1)
        model = refit_on_all(interactions, result.model.config, train_config, epochs)
        trained_on = f"every interaction, {epochs} epochs (chosen on validation)"
    extra["checkpoint_trained_on"] = trained_on
    if out is not None:
        extra["checkpoint"] = str(out)
        extra["version"] = save_checkpoint(out, model, split.item_ids)
    extra["config"] = asdict(result.model.config)
    return {**report, **extra}
