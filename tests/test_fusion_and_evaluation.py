import numpy as np
import pytest

from models import HashingTextEncoder, ItemFeaturizer, ItemText, Recommender, UserProfile
from models.evaluation import RecommenderScorer, prequential, waves
from models.fusion import FusionGate, StandardizedSignals, activity_bucket, standardize
from models.long_term import LongTermInterest, pack_vector, render_history, unpack_vector
from models.streaming import Interaction
from models.transitions import ItemTransitions
from tests.conftest import genre_catalog


def test_standardize_rows_and_constant_rows():
    z = standardize(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(z[0].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(z[0].std(), 1.0, atol=1e-6)
    assert not z[1].any()


def test_standardized_signals_blend_equals_weighted_z_scores():
    rng = np.random.default_rng(3)
    raw = [rng.normal(size=(4, 30)) * 5 + 2, rng.exponential(size=(4, 30)), np.ones((4, 30))]
    raw.append(np.broadcast_to(rng.normal(size=30), (4, 30)))  # one row shared by all users
    signals = StandardizedSignals([r.astype(np.float32) for r in raw], np.array([0, 1, 2, 3]))
    z = np.stack([standardize(r) for r in raw])  # [S B N]
    weights = rng.uniform(size=(4, 4))
    expected = np.einsum("sbn,bs->bn", z, weights)
    np.testing.assert_allclose(signals.blend(weights), expected, rtol=1e-4, atol=1e-4)
    columns = np.array([0, 7, 29])
    np.testing.assert_allclose(signals.z(2, columns), z[:, 2, columns], rtol=1e-4, atol=1e-5)
    subset = signals.rows(np.array([3, 1]))
    np.testing.assert_allclose(subset.z(0, columns), z[:, 3, columns], rtol=1e-4, atol=1e-5)


def test_activity_buckets():
    assert [activity_bucket(n) for n in (0, 2, 3, 9, 10, 99, 100, 5000)] == [0, 0, 1, 1, 2, 3, 4, 4]


def test_gate_learns_to_trust_the_informative_signal():
    rng = np.random.default_rng(0)
    gate = FusionGate(signals=("sequence", "popularity"), learning_rate=0.05, seed=1)
    before = gate.weights.copy()
    for _ in range(300):
        n = 200
        positives = rng.integers(0, n, size=8)
        informative = rng.normal(size=(8, n))
        informative[np.arange(8), positives] += 3.0  # the positive stands out here only
        noise = rng.normal(size=(8, n))
        signals = StandardizedSignals([informative, noise], np.full(8, 2))
        gate.learn(signals, positives, [[] for _ in range(8)])
    assert gate.weights[2, 0] > before[2, 0] + 0.5
    assert gate.weights[2, 1] < gate.weights[2, 0] / 3
    np.testing.assert_array_equal(gate.weights[0], before[0])  # other buckets untouched


def test_transitions_follow_the_order_of_actions():
    t = ItemTransitions(window=3, reverse_weight=0.0)
    for _ in range(5):
        t.learn_one([0], 1)
        t.learn_one([0, 1], 2)
    scores = t.score([[1], [0], [2]], n_items=3)
    assert scores[0].argmax() == 2 and scores[1].argmax() == 1
    assert not scores[2].any()  # nothing ever followed item 2


def test_history_is_rendered_as_text_and_packed_compactly():
    featurizer = ItemFeaturizer(HashingTextEncoder())
    items = featurizer.new_index()
    texts = [ItemText("a", "Alien", ("Horror", "Sci-Fi")), ItemText("b", "Heat", ("Action",))]
    items.upsert(texts, featurizer.featurize(texts))
    rec = Recommender(items)
    profile = UserProfile("u")
    for n, (item, kind) in enumerate([("a", "purchase"), ("b", "skip"), ("b", "rating")]):
        rec.learn_one(profile, Interaction("u", item, 1e9 + n, kind, 4.0, f"e{n}"))
    assert render_history(profile, items) == "rated Heat (Action); purchased Alien (Horror, Sci-Fi)"
    long_term = LongTermInterest(HashingTextEncoder(), items, refresh_every=2)
    assert long_term.is_stale(profile)
    assert long_term.refresh([profile]) == 1 and not long_term.is_stale(profile)
    vector = unpack_vector(profile.long_term)
    assert vector.shape == (256,) and len(profile.long_term) < 800
    np.testing.assert_allclose(vector, unpack_vector(pack_vector(vector)))


class Oracle:
    """Knows the future: scores the user's next item highest."""

    name = "oracle"

    def __init__(self, interactions):
        self.future = {}
        for e in reversed(interactions):
            self.future.setdefault(e.user_id, []).append(e.item_id)

    def warm_up(self, interactions):
        for e in interactions:
            self.future[e.user_id].pop()

    def score(self, user_ids, item_ids):
        out = np.zeros((len(user_ids), len(item_ids)))
        for row, user in enumerate(user_ids):
            if self.future[user][-1] in item_ids:
                out[row, list(item_ids).index(self.future[user][-1])] = 1.0
        return out

    def learn(self, interactions):
        for e in interactions:
            self.future[e.user_id].pop()


def _stream(n_users=20, per_user=15, n_items=40, seed=3):
    rng = np.random.default_rng(seed)
    events = [
        Interaction(
            f"u{u}", f"i{int(rng.integers(n_items))}", float(t * 7 + u), "view", None, f"e{u}-{t}"
        )
        for t in range(per_user)
        for u in range(n_users)
    ]
    return sorted(events, key=lambda e: e.timestamp)


def test_protocol_with_an_oracle_scores_every_evaluated_event():
    stream = _stream()
    result = prequential(Oracle(stream), stream, warmup=0.5, batch_size=32)
    assert result.evaluated + result.skipped == len(stream) - len(stream) // 2
    repeats = sum(
        1
        for n, e in enumerate(stream[150:], 150)
        if any(p.user_id == e.user_id and p.item_id == e.item_id for p in stream[:n])
    )
    # Re-consumed items are masked, so only they can be missed.
    assert result.recall == pytest.approx(1 - repeats / result.evaluated)


def test_waves_hold_each_user_once_in_order():
    batch = [Interaction(u, "i", float(n)) for n, u in enumerate("aabacb")]
    assert [[e.user_id for e in w] for w in waves(batch)] == [["a", "b", "c"], ["a", "b"], ["a"]]


def test_streamrec_scorer_is_batch_size_independent_for_per_user_state():
    stream = _stream(n_items=24)
    catalog = genre_catalog()
    stream = [
        Interaction(
            e.user_id, catalog[int(e.item_id[1:])]["item_id"], e.timestamp, "like", None, e.event_id
        )
        for e in stream
    ]

    def run(batch_size):
        featurizer = ItemFeaturizer(HashingTextEncoder())
        items = featurizer.new_index()
        texts = [ItemText(c["item_id"], c["title"], tuple(c["categories"])) for c in catalog]
        items.upsert(texts, featurizer.featurize(texts))
        from models.recommender import RecommenderConfig

        # Only per-user state: micro-batching must not change a single ranking.
        config = RecommenderConfig(signals=("short_term",), learn_gate=False)
        scorer = RecommenderScorer("s", Recommender(items, config))
        return prequential(scorer, stream, warmup=0.5, batch_size=batch_size)

    one, many = run(1), run(64)
    assert one.evaluated == many.evaluated > 0 and one.ndcg > 0
    # Batched BLAS may round differently and flip exact ties; nothing else may differ.
    differ = sum(a != b for a, b in zip(one.ndcg_series, many.ndcg_series, strict=True))
    assert differ <= 0.02 * one.evaluated
