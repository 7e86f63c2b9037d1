import numpy as np
import pytest

from models import HashingTextEncoder, ItemFeaturizer, ItemText, Recommender, UserProfile
from models.evaluation import RecommenderScorer, prequential, waves
from models.fusion import (
    FactoredSignals,
    FusionGate,
    LinearScores,
    StandardizedSignals,
    activity_bucket,
    standardize,
)
from models.long_term import LongTermInterest, pack_vector, render_history, unpack_vector
from models.sparse_rows import SparseRows
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


def test_factored_signals_give_the_dense_blend_and_z_scores():
    from scipy import sparse

    rng = np.random.default_rng(4)
    users, n_items, dim = 5, 40, 6
    items = rng.normal(size=(n_items, dim)).astype(np.float32) + 0.5  # a shared direction
    wide = items.astype(np.float64)
    moments = (wide.mean(axis=0), np.cov(wide.T, bias=True))
    queries = rng.normal(size=(users, dim)).astype(np.float32)
    queries[4] = 0.0  # a user with no evidence: constant scores, weight zero
    dense_sparse = np.where(
        rng.uniform(size=(users, n_items)) < 0.2, rng.exponential(size=(users, n_items)), 0.0
    )
    shared = rng.exponential(size=n_items).astype(np.float32)
    parts = [
        LinearScores(queries, items, *moments),
        LinearScores(rng.normal(size=(users, dim)).astype(np.float32), items, *moments),
        sparse.csr_matrix(dense_sparse.astype(np.float32)),
        shared,
    ]
    buckets = np.array([0, 1, 2, 3, 4])
    factored = FactoredSignals(parts, n_items, buckets)
    dense = StandardizedSignals([np.asarray(r, dtype=np.float32) for r in factored.raw], buckets)
    np.testing.assert_allclose(factored.raw[0], queries @ items.T, rtol=1e-5)
    np.testing.assert_allclose(factored.mean, dense.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(factored.scale, dense.scale, rtol=1e-3, atol=1e-5)
    weights = rng.uniform(size=(users, 4))
    np.testing.assert_allclose(factored.blend(weights), dense.blend(weights), rtol=1e-4, atol=1e-4)
    assert factored.scale[0, 4] == 0  # no evidence: the signal weighs nothing
    columns = np.array([0, 3, 17, 39])
    for b in range(users):
        np.testing.assert_allclose(factored.z(b, columns), dense.z(b, columns), atol=1e-4)
    subset, dense_subset = factored.rows(np.array([3, 1])), dense.rows(np.array([3, 1]))
    np.testing.assert_allclose(subset.z(1, columns), dense_subset.z(1, columns), atol=1e-4)
    np.testing.assert_allclose(
        subset.blend(weights[[3, 1]]), dense_subset.blend(weights[[3, 1]]), rtol=1e-4, atol=1e-4
    )


def test_bfloat16_shortlist_then_exact_scores_serve_what_the_exact_blend_serves():
    from dataclasses import replace

    from models import RecommenderConfig
    from schemas import BehaviorEvent

    rng = np.random.default_rng(6)
    featurizer = ItemFeaturizer(HashingTextEncoder(dim=48))
    index = featurizer.new_index()
    n_items = 3000
    texts = [ItemText(f"i{n}", f"item {n}", (f"c{n % 7}",), None) for n in range(n_items)]
    vectors = rng.normal(size=(n_items, featurizer.dim)).astype(np.float32)
    index.upsert(texts, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    coarse = Recommender(index, RecommenderConfig(ranking_precision="bfloat16"))
    profiles = []
    for u in range(40):
        profile = UserProfile(f"u{u}")
        for n, item in enumerate(rng.zipf(1.4, size=25) % n_items):
            event = BehaviorEvent(
                event_id=f"u{u}-{n}",
                user_id=profile.user_id,
                item_id=f"i{item}",
                event_type="view",
                timestamp=1_700_000_000.0 + 60 * n,
            )
            coarse.learn_one(profile, event, None)
        profiles.append(profile)

    def served(precision: str) -> list[list[str]]:
        coarse.config = replace(coarse.config, ranking_precision=precision)
        return [[s.item_id for s in items] for items in coarse.recommend(profiles)]

    assert coarse.ranks_coarse_first
    assert served("bfloat16") == served("float32")
    # Content rows updated in place: the bfloat16 copy must follow (it is cached).
    index.upsert(texts[:500], -index.features[:500].copy())
    assert served("bfloat16") == served("float32")


def test_item_moments_follow_updates():
    featurizer = ItemFeaturizer(HashingTextEncoder(dim=8))
    index = featurizer.new_index()
    rng = np.random.default_rng(5)
    texts = [ItemText(f"i{n}", f"item {n}", ("c",), None) for n in range(30)]
    index.upsert(texts, rng.normal(size=(30, featurizer.dim)))
    index.upsert(texts[:5] + texts[:2], rng.normal(size=(7, featurizer.dim)))  # updates, repeats
    index.ensure("id-only")  # a row without content: zeros
    mean, covariance = index.feature_moments()
    wide = index.features.astype(np.float64)
    np.testing.assert_allclose(mean, wide.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(covariance, np.cov(wide.T, bias=True), atol=1e-9)


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


def test_gate_ignores_a_misleading_signal_rather_than_inverting_it():
    rng = np.random.default_rng(0)
    gate = FusionGate(signals=("sequence", "popularity"), learning_rate=0.05, seed=1)
    for _ in range(300):
        n = 200
        positives = rng.integers(0, n, size=8)
        informative = rng.normal(size=(8, n))
        informative[np.arange(8), positives] += 3.0
        misleading = rng.normal(size=(8, n))
        misleading[np.arange(8), positives] -= 3.0  # the positive always ranks low here
        signals = StandardizedSignals([informative, misleading], np.full(8, 2))
        gate.learn(signals, positives, [[] for _ in range(8)])
    assert gate.weights[2, 1] == 0.0 and gate.weights[2, 0] > 1.0
    assert (gate.weights >= 0).all()


def test_transitions_follow_the_order_of_actions():
    t = ItemTransitions(window=3, reverse_weight=0.0)
    for _ in range(5):
        t.learn_one([0], 1)
        t.learn_one([0, 1], 2)
    scores = t.score([[1], [0], [2]], n_items=3)
    assert scores[0].argmax() == 2 and scores[1].argmax() == 1
    assert not scores[2].any()  # nothing ever followed item 2


def test_transitions_scores_add_up_the_same_densely_and_by_sorting(monkeypatch):
    import models.transitions as transitions

    rng = np.random.default_rng(3)
    t = ItemTransitions(window=3, max_neighbours=5)
    history = rng.integers(0, 40, size=400).tolist()
    for n in range(1, len(history)):
        t.learn_one(history[max(0, n - 3) : n], history[n], float(rng.uniform(0.5, 2.0)))
    recent = [history[n : n + 3] for n in range(0, 60, 3)] + [[], [39]]
    dense = t.sparse_scores(recent, n_items=35)  # 22 x 35: summed in one flat array
    monkeypatch.setattr(transitions, "DENSE_SUM_LIMIT", 0)
    by_sorting = t.sparse_scores(recent, n_items=35)
    assert dense.has_canonical_format and by_sorting.has_canonical_format
    assert dense.nnz == by_sorting.nnz > 0 and dense.dtype == by_sorting.dtype == np.float32
    np.testing.assert_array_equal(dense.indptr, by_sorting.indptr)
    np.testing.assert_array_equal(dense.indices, by_sorting.indices)
    np.testing.assert_allclose(dense.data, by_sorting.data, rtol=1e-6)


def test_transitions_memory_is_bounded_and_keeps_the_heavy_followers():
    bounded = ItemTransitions(window=1, reverse_weight=0.0, max_targets=4)
    unbounded = ItemTransitions(window=1, reverse_weight=0.0)
    for t in (bounded, unbounded):
        for _ in range(3):
            t.learn_one([0], 1)
            t.learn_one([0], 2)
        for target in range(3, 1000):  # a flood of one-off followers of item 0
            t.learn_one([0], target)
    cols, _ = bounded._counts.row(0)
    assert len(cols) <= 8 and bounded._counts.pruned >= 990
    held = {"counts": len(cols), "bytes": 12 * len(cols), "pruned": bounded._counts.pruned}
    assert bounded.memory() == held  # only item 0 is ever followed
    assert len(unbounded._counts.row(0)[0]) == 999
    scores, exact = bounded.score([[0]], 1000)[0], unbounded.score([[0]], 1000)[0]
    assert set(np.argsort(-scores)[:2]) == {1, 2}  # the heavy followers survive
    np.testing.assert_allclose(scores[[1, 2]], exact[[1, 2]])  # at the same scale


def test_sparse_rows_hold_exact_counts_in_packed_arrays():
    rng = np.random.default_rng(3)
    rows, expected = SparseRows(), {}
    for row, col, value in zip(
        rng.integers(0, 5, 3000), rng.integers(0, 400, 3000), rng.random(3000), strict=True
    ):
        rows.add(int(row), int(col), float(value))
        key = (int(row), int(col))
        expected[key] = expected.get(key, 0.0) + float(value)
    for row in range(5):
        cols, vals = rows.row(row)
        assert (np.diff(cols) > 0).all()  # ascending, one entry per column
        want = {c: v for (r, c), v in expected.items() if r == row}
        assert dict(zip(cols.tolist(), vals.tolist(), strict=True)) == pytest.approx(want)
    assert rows.nbytes() == 12 * len(expected)  # int32 column + float64 count
    assert rows.row(99)[0].size == 0


def test_sparse_rows_prune_to_the_largest_counts():
    rows = SparseRows(max_cols=2)
    for col, count in [(5, 1.0), (6, 3.0), (7, 2.0), (8, 0.5)]:
        rows.add(0, col, count)
    rows.add(0, 9, 1.5)  # a fifth column: the row first keeps its two largest
    cols, vals = rows.row(0)
    assert dict(zip(cols.tolist(), vals.tolist(), strict=True)) == {6: 3.0, 7: 2.0, 9: 1.5}
    assert rows.pruned == 2
    rows.add(0, 6, 1.0)  # the kept slots still add up
    assert rows.block([0], [6, 5])[0].tolist() == [4.0, 0.0]
    with pytest.raises(ValueError):
        SparseRows(max_cols=-1)


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
    assert not LongTermInterest(HashingTextEncoder(), items, refresh_every=4).is_stale(profile)
    long_term = LongTermInterest(HashingTextEncoder(), items, refresh_every=2)
    assert long_term.is_stale(profile)
    assert long_term.refresh([profile]) == 1 and not long_term.is_stale(profile)
    vector = unpack_vector(profile.long_term)
    assert vector.shape == (256,) and len(profile.long_term) < 800
    np.testing.assert_allclose(vector, unpack_vector(pack_vector(vector)))


def test_history_text_names_the_strongest_actions_and_is_read_to_a_token_cap():
    featurizer = ItemFeaturizer(HashingTextEncoder())
    items = featurizer.new_index()
    texts = [ItemText(i, title) for i, title in [("a", "Alien"), ("b", "Heat"), ("c", "Ran")]]
    items.upsert(texts, featurizer.featurize(texts))
    rec = Recommender(items)
    profile = UserProfile("u")
    actions = [("a", "view"), ("b", "purchase"), ("a", "view"), ("c", "view"), ("c", "skip")]
    for n, (item, kind) in enumerate(actions):
        rec.learn_one(profile, Interaction("u", item, 1e9 + n, kind, None, f"e{n}"))
    # The purchase outweighs every view; of equal views the later one wins; newest first.
    assert render_history(profile, items, max_events=2) == "viewed Ran; purchased Heat"
    assert render_history(profile, items, max_events=1) == "purchased Heat"

    class TokenCapSeen(HashingTextEncoder):
        caps: list = []

        def encode(self, texts, max_tokens=None):
            self.caps.append(max_tokens)
            return super().encode(texts, max_tokens)

    encoder = TokenCapSeen()
    LongTermInterest(encoder, items, refresh_every=1, max_tokens=32).refresh([profile])
    assert encoder.caps == [32]


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


def test_softmax_ranker_on_two_candidates_is_rivers_logistic_regression():
    """Softmax over {positive, negative} = sigmoid of the score difference: the same steps
    as River's LogisticRegression (AdaGrad, L2, no intercept) on x_pos - x_neg, y = True."""
    from river import linear_model, optim

    from models.reranker import SoftmaxRanker

    rng = np.random.default_rng(5)
    ours = SoftmaxRanker(4, learning_rate=0.3, l2=0.01)
    river = linear_model.LogisticRegression(optimizer=optim.AdaGrad(0.3), l2=0.01, intercept_lr=0.0)
    for _ in range(50):
        x = rng.normal(size=(2, 4))
        positive = int(rng.integers(2))
        ours.learn_one(x, positive)
        diff = x[positive] - x[1 - positive]
        river.learn_one({f: float(v) for f, v in enumerate(diff)}, True)
        expected = np.array([river.weights.get(f, 0.0) for f in range(4)])
        np.testing.assert_allclose(ours.weights, expected, rtol=1e-9, atol=1e-12)
    x = rng.normal(size=(2, 4))
    p_river = river.predict_proba_one({f: float(v) for f, v in enumerate(x[0] - x[1])})[True]
    scores = ours.predict_one(x)
    assert p_river == pytest.approx(1.0 / (1.0 + np.exp(scores[1] - scores[0])))


def test_softmax_ranker_minibatch_is_the_mean_gradient_and_skips_padding():
    from models.reranker import SoftmaxRanker

    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 5, 4))
    valid = np.ones((3, 5), dtype=bool)
    valid[1, 3:] = False  # padding: must not take part in the softmax
    positives = np.array([0, 2, -1])  # the last list's choice is not a candidate: skipped
    w0 = rng.normal(size=4)
    model = SoftmaxRanker(4, learning_rate=0.1, init=w0)
    model.learn_many(x, positives, valid)

    def loss(w):
        total = 0.0
        for b in (0, 1):
            logits = x[b][valid[b]] @ w
            total += np.log(np.exp(logits).sum()) - logits[positives[b]]
        return total / 2

    numeric = np.array([(loss(w0 + e) - loss(w0 - e)) / 2e-6 for e in np.eye(4) * 1e-6])
    # First AdaGrad step: w0 - lr * g / |g| elementwise.
    np.testing.assert_allclose(model.weights, w0 - 0.1 * np.sign(numeric), atol=1e-6)
    predicted = model.predict_many(x.astype(np.float32))
    np.testing.assert_allclose(predicted[2], x[2] @ model.weights, rtol=1e-5)


def test_softmax_ranker_learns_which_feature_marks_the_chosen_item():
    from models.reranker import SoftmaxRanker

    rng = np.random.default_rng(7)
    model = SoftmaxRanker(2, learning_rate=0.1)
    for _ in range(200):
        x = rng.normal(size=(16, 20, 2))
        positives = rng.integers(0, 20, size=16)
        x[np.arange(16), positives, 0] += 2.0  # feature 0 tells, feature 1 is noise
        model.learn_many(x, positives)
    assert model.weights[0] > 1.0 > abs(model.weights[1]) * 5


def test_candidates_take_each_signals_top_and_never_excluded_items():
    from models.reranker import CandidateReranker

    reranker = CandidateReranker(("sequence", "popularity"), per_signal=2)
    raw = [
        np.array([[5.0, 4.0, 3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0, 2.0]]),
        np.broadcast_to(np.array([0.0, 0.0, 0.0, 9.0, 8.0, 0.0]), (2, 6)),
    ]
    fused = raw[0] + raw[1]
    excluded = np.zeros((2, 6), dtype=bool)
    excluded[0, 0] = True
    cand, valid = reranker.candidates(raw, fused, excluded)
    assert set(cand[0][valid[0]]) == {1, 2, 3, 4}  # 0 is excluded; 1, 2 next best
    assert set(cand[1][valid[1]]) == {3, 4, 5}
    assert cand.shape == valid.shape and not valid[1].all()


def test_recommender_reranker_learns_online_and_ranks_candidates_first():
    stream = _stream(n_items=24)
    catalog = genre_catalog()
    stream = [
        Interaction(
            e.user_id, catalog[int(e.item_id[1:])]["item_id"], e.timestamp, "like", None, e.event_id
        )
        for e in stream
    ]
    featurizer = ItemFeaturizer(HashingTextEncoder())
    items = featurizer.new_index()
    texts = [ItemText(c["item_id"], c["title"], tuple(c["categories"])) for c in catalog]
    items.upsert(texts, featurizer.featurize(texts))
    from models.recommender import RecommenderConfig

    recommender = Recommender(items, RecommenderConfig(rerank=True, rerank_per_signal=3))
    before = recommender.reranker.ranker.weights.copy()
    result = prequential(RecommenderScorer("s", recommender), stream, warmup=0.5, batch_size=32)
    assert result.evaluated > 0 and recommender.reranker.ranker.updates > 0
    assert not np.array_equal(recommender.reranker.ranker.weights, before)
    profile = UserProfile("u-new")
    recommender.learn_one(profile, stream[0])
    scores = recommender.scores([profile])[0]
    signals = recommender._standardized([profile])
    cand, valid = recommender.reranker.candidates(
        signals.raw, recommender.gate.blend(signals), recommender._excluded([profile], len(items))
    )
    served = set(cand[0][valid[0]].tolist())
    others = [r for r in range(len(items)) if r not in served]
    assert scores[list(served)].min() > scores[others].max()
