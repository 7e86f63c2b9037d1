"""Baseline recommenders for the prequential evaluator (see ``models.streaming``).

Each class implements :class:`models.streaming.StreamingScorer`. They keep their own state
and share no model code with the product (a generic container aside), so improving
streamrec cannot move them.

Items a baseline has never learned from score 0 (biased ``RiverMF``: global mean plus the
user's bias). An unknown user gets the item-only part of the score: popularity for the
popularity baselines, the popularity prior for ``CoOccurrence``, 0 for ``RiverMF`` (biased:
global mean plus the item's bias). Only ``RiverMF`` is random, and it takes a ``seed``.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence

import numpy as np
from river import optim, reco

from models.sparse_rows import SparseRows
from models.streaming import Interaction

__all__ = ["CoOccurrence", "MostPopular", "RecentPopular", "RiverMF"]


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with at least ``size`` rows (zeros appended, capacity doubled)."""
    if size <= array.shape[0]:
        return array
    out = np.zeros((max(size, 2 * array.shape[0], 64), *array.shape[1:]), dtype=array.dtype)
    out[: array.shape[0]] = array
    return out


class _Vocabulary:
    """Item id -> dense row, and a cached map from the evaluator's candidate list to rows.

    The candidate list only grows, so a call that extends the previous list maps only the new
    tail. Unknown candidates map to row ``-1``, which every scorer keeps as a trailing slot
    holding the unknown-item score.
    """

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.ids: list[str] = []
        self._candidates: list[str] = []
        self._candidate_rows = np.empty(0, dtype=np.int64)
        self._mapped_at = 0  # vocabulary size when candidate rows were last filled

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, item_id: str) -> int:
        row = self.rows.get(item_id)
        if row is None:
            row = self.rows[item_id] = len(self.ids)
            self.ids.append(item_id)
        return row

    def candidate_rows(self, item_ids: Sequence[str]) -> np.ndarray:
        ids = list(item_ids)
        n = len(self._candidates)
        if len(ids) < n or ids[:n] != self._candidates:
            self._candidates, self._candidate_rows, n = [], np.empty(0, dtype=np.int64), 0
        if len(ids) > n:
            tail = ids[n:]
            self._candidates.extend(tail)
            tail_rows = np.fromiter((self.rows.get(i, -1) for i in tail), np.int64, len(tail))
            self._candidate_rows = np.concatenate([self._candidate_rows, tail_rows])
        if self._mapped_at != len(self.ids):
            unknown = np.flatnonzero(self._candidate_rows < 0)
            for k in unknown:  # items learned since they were first offered as candidates
                self._candidate_rows[k] = self.rows.get(self._candidates[k], -1)
            self._mapped_at = len(self.ids)
        return self._candidate_rows


class MostPopular:
    """All-time interaction counts; the same ranking for every user.

    Examples
    --------
    >>> from models.streaming import Interaction
    >>> model = MostPopular()
    >>> model.warm_up([Interaction("u", "a", 0.0), Interaction("v", "a", 1.0),
    ...                Interaction("v", "b", 2.0)])
    >>> model.score(["w"], ["a", "b", "new"]).tolist()
    [[2.0, 1.0, 0.0]]
    """

    name = "most_popular"

    def __init__(self) -> None:
        self._vocab = _Vocabulary()
        self._counts = np.zeros(1)  # trailing slot: unknown items

    def warm_up(self, interactions: Sequence[Interaction]) -> None:
        self.learn(interactions)

    def learn(self, interactions: Sequence[Interaction]) -> None:
        for event in interactions:
            row = self._vocab.add(event.item_id)
            if row + 1 >= self._counts.shape[0]:
                counts = _grown(self._counts, row + 2)
                counts[-1] = 0.0
                self._counts = counts
            self._counts[row] += 1.0

    def score(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        counts = self._counts[self._vocab.candidate_rows(item_ids)]
        return np.tile(counts, (len(user_ids), 1))


class RecentPopular:
    """Interaction counts that halve every ``half_life_s`` seconds of event time.

    Counts are stored scaled by ``2**((t - t_ref) / half_life_s)`` so an event touches one
    cell; ``t_ref`` moves forward before the scale can overflow. Scores are the decayed counts
    as of the newest event learned.

    Parameters
    ----------
    half_life_s
        Half-life in seconds of event time. The default (14 days) had the best NDCG@10 of
        0.5 h .. 30 days on the last eighth of the ML-100K warm-up.

    Examples
    --------
    >>> from models.streaming import Interaction
    >>> model = RecentPopular(half_life_s=10.0)
    >>> model.warm_up([Interaction("u", "old", 0.0), Interaction("v", "old", 0.0),
    ...                Interaction("u", "new", 20.0)])
    >>> model.score(["w"], ["old", "new"]).tolist()
    [[0.5, 1.0]]
    """

    name = "recent_popular"

    def __init__(self, half_life_s: float = 14 * 86_400.0) -> None:
        if not half_life_s > 0:
            raise ValueError(f"half_life_s must be > 0, got {half_life_s}")
        self.half_life_s = half_life_s
        self._vocab = _Vocabulary()
        self._scaled = np.zeros(1)  # trailing slot: unknown items
        self._t_ref: float | None = None
        self._t_max = -math.inf

    def warm_up(self, interactions: Sequence[Interaction]) -> None:
        self.learn(interactions)

    def learn(self, interactions: Sequence[Interaction]) -> None:
        for event in interactions:
            row = self._vocab.add(event.item_id)
            if row + 1 >= self._scaled.shape[0]:
                scaled = _grown(self._scaled, row + 2)
                scaled[-1] = 0.0
                self._scaled = scaled
            t = float(event.timestamp)
            if self._t_ref is None:
                self._t_ref = t
            exponent = (t - self._t_ref) / self.half_life_s
            if exponent > 60.0:  # rebase while 2**exponent is still exact enough
                self._scaled *= 2.0**-exponent
                self._t_ref, exponent = t, 0.0
            self._scaled[row] += 2.0**exponent
            self._t_max = max(self._t_max, t)

    def score(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        scale = (
            0.0 if self._t_ref is None else 2.0 ** (-(self._t_max - self._t_ref) / self.half_life_s)
        )
        counts = self._scaled[self._vocab.candidate_rows(item_ids)] * scale
        return np.tile(counts, (len(user_ids), 1))


class RiverMF:
    """River matrix factorisation on implicit positives plus sampled negatives.

    Every interaction is learned as ``y = 1`` followed by ``n_negatives`` items drawn
    uniformly from the items seen so far that the user has not interacted with, learned as
    ``y = 0``. River keeps the model; after each ``learn_one`` the touched latent rows are
    copied into numpy matrices so ``score`` is one matrix product.

    Defaults were tuned by NDCG@10 on the last eighth of the ML-100K warm-up: squared loss
    beat log loss, FunkMF beat BiasedMF, and more negatives helped up to about 16.

    Parameters
    ----------
    n_factors
        Latent dimensions.
    learning_rate
        Plain SGD step for latents (and biases when ``biased``).
    l2
        L2 penalty on latents (and biases).
    n_negatives
        Sampled negatives per positive.
    loss
        ``"log"`` (the dot product is a logit) or ``"squared"``.
    biased
        ``reco.BiasedMF`` (global mean, user and item biases) instead of ``reco.FunkMF``.
    init_std
        Standard deviation of the normal latent initialisation.
    warm_up_epochs
        Passes over the warm-up prefix (in time order).
    seed
        Seeds latent initialisation and negative sampling.
    """

    name = "river_mf"

    def __init__(
        self,
        n_factors: int = 32,
        learning_rate: float = 0.1,
        l2: float = 0.01,
        n_negatives: int = 16,
        loss: str = "squared",
        biased: bool = False,
        init_std: float = 0.1,
        warm_up_epochs: int = 1,
        seed: int = 0,
    ) -> None:
        losses = {"log": optim.losses.Log, "squared": optim.losses.Squared}
        if loss not in losses:
            raise ValueError(f"loss must be one of {sorted(losses)}, got {loss!r}")
        self.n_factors = n_factors
        self.learning_rate = learning_rate
        self.l2 = l2
        self.n_negatives = n_negatives
        self.loss = loss
        self.biased = biased
        self.init_std = init_std
        self.warm_up_epochs = warm_up_epochs
        self.seed = seed

        initializer = optim.initializers.Normal(mu=0.0, sigma=init_std, seed=seed)
        self.model: reco.FunkMF | reco.BiasedMF
        if biased:
            self.model = reco.BiasedMF(
                n_factors=n_factors,
                bias_optimizer=optim.SGD(learning_rate),
                latent_optimizer=optim.SGD(learning_rate),
                loss=losses[loss](),
                l2_bias=l2,
                l2_latent=l2,
                latent_initializer=initializer,
                seed=seed,
            )
        else:
            self.model = reco.FunkMF(
                n_factors=n_factors,
                optimizer=optim.SGD(learning_rate),
                loss=losses[loss](),
                l2=l2,
                initializer=initializer,
                seed=seed,
            )
        self._rng = random.Random(seed)
        self._vocab = _Vocabulary()
        self._user_rows: dict[str, int] = {}
        self._user_items: list[set[int]] = []
        # Mirrors of River's state; the trailing row stays zero for unknown users/items.
        self._user_latents = np.zeros((1, n_factors))
        self._item_latents = np.zeros((1, n_factors))
        self._user_biases = np.zeros(1)
        self._item_biases = np.zeros(1)

    def warm_up(self, interactions: Sequence[Interaction]) -> None:
        for _ in range(self.warm_up_epochs):
            self.learn(interactions)

    def learn(self, interactions: Sequence[Interaction]) -> None:
        for event in interactions:
            user = event.user_id
            user_row = self._user_row(user)
            item_row = self._item_row(event.item_id)
            seen = self._user_items[user_row]
            seen.add(item_row)
            self._learn_pair(user, user_row, event.item_id, item_row, 1.0)
            n_items = len(self._vocab)
            if len(seen) >= n_items:
                continue
            for _ in range(self.n_negatives):
                negative = self._rng.randrange(n_items)
                for _ in range(10):  # rejection sampling; users see a small part of the catalog
                    if negative not in seen:
                        break
                    negative = self._rng.randrange(n_items)
                else:
                    continue
                self._learn_pair(user, user_row, self._vocab.ids[negative], negative, 0.0)

    def score(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        user_rows = np.fromiter(
            (self._user_rows.get(u, -1) for u in user_ids), np.int64, len(user_ids)
        )
        item_rows = self._vocab.candidate_rows(item_ids)
        scores = self._user_latents[user_rows] @ self._item_latents[item_rows].T  # [B N]
        if self.biased:
            scores += self.model.global_mean.get()
            scores += self._user_biases[user_rows, None]
            scores += self._item_biases[None, item_rows]
        return scores

    def _learn_pair(self, user: str, user_row: int, item: str, item_row: int, y: float) -> None:
        model = self.model
        model.learn_one(user, item, y)
        self._user_latents[user_row] = model.u_latents[user]
        self._item_latents[item_row] = model.i_latents[item]
        if self.biased:
            self._user_biases[user_row] = model.u_biases[user]
            self._item_biases[item_row] = model.i_biases[item]

    def _user_row(self, user: str) -> int:
        row = self._user_rows.get(user)
        if row is None:
            row = self._user_rows[user] = len(self._user_items)
            self._user_items.append(set())
            if row + 1 >= self._user_latents.shape[0]:
                self._user_latents = _grown(self._user_latents, row + 2)
                self._user_biases = _grown(self._user_biases, row + 2)
        return row

    def _item_row(self, item: str) -> int:
        row = self._vocab.add(item)
        if row + 1 >= self._item_latents.shape[0]:
            self._item_latents = _grown(self._item_latents, row + 2)
            self._item_biases = _grown(self._item_biases, row + 2)
        return row


class CoOccurrence:
    """Item-to-item "followed-by" counts from each user's last ``window`` items.

    When a user interacts with item ``j``, each of their previous ``window`` items ``p`` gets
    ``count[p, j] += 1`` and ``count[j, p] += reverse_weight``. A user whose history ends
    with ``p_1`` (latest), ``p_2``, ... scores candidate ``j`` as

    ``sum_d score_decay**(d - 1) * count[p_d, j] / rowsum[p_d]**row_norm / pop[j]**pop_exponent
    + prior_weight * pop[j] / max(pop)``

    where ``pop`` is the all-time interaction count. The default prior is too small to
    reorder items with any co-occurrence evidence: it breaks ties and ranks items for users
    without history. Defaults were tuned on the last eighth of the ML-100K warm-up.

    Parameters
    ----------
    window
        History items per user that emit and receive counts (``L``).
    score_decay
        Weight factor per step back in the user's history when scoring.
    reverse_weight
        Weight of "preceded-by" counts relative to "followed-by".
    row_norm
        Exponent of each history item's row-sum normaliser (1: transition probabilities).
    pop_exponent
        Exponent of the candidate's popularity dividing its score (damps popular items).
    prior_weight
        Weight of normalised popularity added to every score.

    Examples
    --------
    >>> from models.streaming import Interaction
    >>> model = CoOccurrence(reverse_weight=0.0, prior_weight=0.0)
    >>> model.warm_up([Interaction("u", "a", 0.0), Interaction("u", "b", 1.0),
    ...                Interaction("v", "a", 2.0)])
    >>> model.score(["v"], ["a", "b"]).tolist()
    [[0.0, 1.0]]
    """

    name = "cooccurrence"

    def __init__(
        self,
        window: int = 5,
        score_decay: float = 0.8,
        reverse_weight: float = 0.5,
        row_norm: float = 0.5,
        pop_exponent: float = 0.1,
        prior_weight: float = 1e-6,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.score_decay = score_decay
        self.reverse_weight = reverse_weight
        self.row_norm = row_norm
        self.pop_exponent = pop_exponent
        self.prior_weight = prior_weight
        self._vocab = _Vocabulary()
        self._counts = SparseRows()
        self._row_sums = np.zeros(1)
        self._popularity = np.zeros(1)  # trailing slot: unknown items
        self._histories: dict[str, deque[int]] = {}

    def warm_up(self, interactions: Sequence[Interaction]) -> None:
        self.learn(interactions)

    def learn(self, interactions: Sequence[Interaction]) -> None:
        for event in interactions:
            item = self._vocab.add(event.item_id)
            if item + 1 >= self._popularity.shape[0]:
                self._popularity = _grown(self._popularity, item + 2)
                self._row_sums = _grown(self._row_sums, item + 2)
            self._popularity[item] += 1.0
            history = self._histories.get(event.user_id)
            if history is None:
                history = self._histories[event.user_id] = deque(maxlen=self.window)
            for previous in history:
                self._counts.add(previous, item, 1.0)
                self._row_sums[previous] += 1.0
                if self.reverse_weight:
                    self._counts.add(item, previous, self.reverse_weight)
                    self._row_sums[item] += self.reverse_weight
            history.append(item)

    def score(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        item_rows = self._vocab.candidate_rows(item_ids)
        popularity = self._popularity[item_rows]
        top = popularity.max(initial=0.0)
        prior = self.prior_weight / top * popularity if top > 0 else np.zeros(len(item_rows))
        damping = np.maximum(popularity, 1.0) ** -self.pop_exponent
        out = np.empty((len(user_ids), len(item_rows)))
        summed = np.zeros(self._popularity.shape[0])  # [n_vocab + 1]; last: unknown items
        for b, user in enumerate(user_ids):
            summed[:] = 0.0
            weight = 1.0
            for previous in reversed(self._histories.get(user, ())):  # latest first
                cols, vals = self._counts.row(previous)
                if cols.size:  # cols are unique within a row, so += does not drop repeats
                    summed[cols] += (weight / self._row_sums[previous] ** self.row_norm) * vals
                weight *= self.score_decay
            out[b] = summed[item_rows] * damping + prior
        return out
