import doctest
import random

import numpy as np
import pytest

import models.baselines
from models.baselines import CoOccurrence, MostPopular, RecentPopular, RiverMF
from models.streaming import Interaction

DAY = 86_400.0

FACTORIES = {
    "most_popular": MostPopular,
    "recent_popular": RecentPopular,
    "river_mf": lambda: RiverMF(n_factors=4, seed=3),
    "river_mf_biased": lambda: RiverMF(n_factors=4, biased=True, loss="log", seed=3),
    "cooccurrence": CoOccurrence,
}


def stream(n_users=6, n_items=8, n_events=60, seed=0):
    """Random implicit events, in time order, one per second."""
    rng = random.Random(seed)
    return [
        Interaction(f"u{rng.randrange(n_users)}", f"i{rng.randrange(n_items)}", float(t))
        for t in range(n_events)
    ]


def vocabulary(events):
    """Item ids in order of first appearance, as the evaluator offers them."""
    return list(dict.fromkeys(e.item_id for e in events))


@pytest.fixture(params=sorted(FACTORIES))
def trained(request):
    model = FACTORIES[request.param]()
    events = stream()
    model.warm_up(events[:40])
    model.learn(events[40:])
    return model, events


def test_doctests_pass():
    assert doctest.testmod(models.baselines).failed == 0


def test_names_are_the_table_labels():
    names = [f().name for f in (MostPopular, RecentPopular, RiverMF, CoOccurrence)]
    assert names == ["most_popular", "recent_popular", "river_mf", "cooccurrence"]


def test_scores_have_one_row_per_user_and_one_column_per_candidate(trained):
    model, events = trained
    items = vocabulary(events)
    scores = model.score(["u0", "u1", "u2"], items)
    assert scores.shape == (3, len(items))
    assert np.issubdtype(scores.dtype, np.floating)
    assert np.isfinite(scores).all()
    assert model.score([], items).shape == (0, len(items))
    assert model.score(["u0"], []).shape == (1, 0)


def test_batch_rows_equal_single_user_calls(trained):
    model, events = trained
    items = vocabulary(events)
    batch = model.score(["u0", "u3", "nobody"], items)
    for row, user in zip(batch, ["u0", "u3", "nobody"], strict=True):
        np.testing.assert_allclose(row, model.score([user], items)[0], rtol=1e-12)


def test_unknown_items_score_zero_and_unknown_users_get_the_item_only_score(trained):
    model, events = trained
    items = vocabulary(events) + ["never-seen"]
    scores = model.score(["u0", "nobody"], items)
    if not getattr(model, "biased", False):  # BiasedMF: global mean + user bias
        assert scores[0, -1] == 0.0
        assert scores[1, -1] == 0.0
    unknown = scores[1, :-1]
    if isinstance(model, RiverMF):
        if model.biased:
            expected = model.model.global_mean.get() + model._item_biases[:-1][: len(unknown)]
            np.testing.assert_allclose(unknown, expected)
        else:
            assert (unknown == 0.0).all()
    else:  # popularity, or CoOccurrence's popularity prior
        counts = MostPopular()
        counts.learn(events)
        expected = counts.score(["nobody"], items[:-1])[0]
        if isinstance(model, RecentPopular):
            assert (unknown > 0).all()
        else:
            np.testing.assert_allclose(unknown / unknown.max(), expected / expected.max())


def test_candidate_vocabulary_can_grow_and_reorder(trained):
    model, events = trained
    items = vocabulary(events)
    before = model.score(["u0"], items)[0]
    model.learn([Interaction("u9", "fresh", 100.0)])
    grown = model.score(["u0"], items + ["fresh"])[0]
    assert grown.shape == (len(items) + 1,)
    if isinstance(model, (MostPopular, RecentPopular)):
        assert grown[-1] > 0.0
    if isinstance(model, (MostPopular, CoOccurrence)):  # others decay or retrain old items
        np.testing.assert_allclose(grown[:-1], before)
    reordered = model.score(["u0"], list(reversed(items)))[0]
    np.testing.assert_allclose(reordered, grown[:-1][::-1])
    same_length = model.score(["u0"], items)[0]  # not a prefix of the previous list
    np.testing.assert_allclose(same_length, grown[:-1])


def test_candidate_that_was_unknown_is_scored_once_learned():
    model = MostPopular()
    model.learn([Interaction("u", "a", 0.0)])
    assert model.score(["u"], ["a", "b"]).tolist() == [[1.0, 0.0]]
    model.learn([Interaction("v", "b", 1.0), Interaction("w", "b", 2.0)])
    assert model.score(["u"], ["a", "b"]).tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_same_seed_same_scores(name):
    events = stream(seed=5)
    runs = []
    for _ in range(2):
        model = FACTORIES[name]()
        model.warm_up(events[:30])
        model.learn(events[30:])
        runs.append(model.score(["u0", "u1"], vocabulary(events)))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_river_mf_seed_changes_the_model():
    events = stream(seed=5)
    scores = []
    for seed in (1, 2):
        model = RiverMF(n_factors=4, seed=seed)
        model.learn(events)
        scores.append(model.score(["u0"], vocabulary(events)))
    assert not np.allclose(scores[0], scores[1])


@pytest.mark.parametrize("biased", [False, True])
@pytest.mark.parametrize("loss", ["squared", "log"])
def test_river_mf_vectorised_scores_equal_river_predict_one(biased, loss):
    model = RiverMF(n_factors=5, n_negatives=3, biased=biased, loss=loss, seed=7)
    events = stream(n_users=5, n_items=12, n_events=80, seed=2)
    model.warm_up(events[:50])
    for event in events[50:]:
        model.learn([event])
    users, items = ["u0", "u2", "u4"], vocabulary(events)
    scores = model.score(users, items)
    n_users, n_items = len(model.model.u_latents), len(model.model.i_latents)
    for b, user in enumerate(users):
        for n, item in enumerate(items):
            assert scores[b, n] == pytest.approx(model.model.predict_one(user, item), abs=1e-12)
    # reading state for scoring must not create River entries
    model.score(["nobody"], items + ["never-seen"])
    assert (len(model.model.u_latents), len(model.model.i_latents)) == (n_users, n_items)


def test_river_mf_separates_two_taste_groups():
    rng = random.Random(0)
    events = []
    for t in range(1500):
        group = rng.randrange(2)
        user = f"{'ab'[group]}{rng.randrange(10)}"
        events.append(Interaction(user, f"{'ab'[group]}-item{rng.randrange(6)}", float(t)))
    model = RiverMF(n_factors=8, seed=0)
    model.warm_up(events)
    items = vocabulary(events)
    in_a = np.array([i.startswith("a-") for i in items])
    scores = model.score(["a0", "b0"], items)
    assert scores[0, in_a].mean() > scores[0, ~in_a].mean() + 0.2
    assert scores[1, ~in_a].mean() > scores[1, in_a].mean() + 0.2


def test_river_mf_negatives_avoid_the_users_own_items():
    model = RiverMF(n_factors=2, n_negatives=5, seed=0)
    learned = []
    model.model.learn_one = lambda user, item, y: learned.append((user, item, y))
    model.learn([Interaction("x", f"i{n}", float(n)) for n in range(3)])
    model.learn([Interaction("y", "j", 3.0)])
    negatives = [(u, i) for u, i, y in learned if y == 0.0]
    # x has no item it has not seen; y's negatives are x's items, never its own j
    assert len(negatives) == 5
    assert {u for u, _ in negatives} == {"y"}
    assert {i for _, i in negatives} <= {"i0", "i1", "i2"}
    assert [(u, i) for u, i, y in learned if y == 1.0] == [
        ("x", "i0"),
        ("x", "i1"),
        ("x", "i2"),
        ("y", "j"),
    ]


def test_cooccurrence_learns_a_then_b():
    events, t = [], 0.0
    for n in range(20):
        for item in ("popular", "A", "B"):
            events.append(Interaction(f"u{n}", item, t))
            t += 1.0
        events.append(Interaction(f"v{n}", "popular", t))  # more popular than B
        t += 1.0
    model = CoOccurrence()
    model.warm_up(events)
    items = vocabulary(events)
    # a user with no history gets the popularity prior only
    prior = dict(zip(items, model.score(["new"], items)[0], strict=True))
    assert prior["popular"] > prior["A"] == prior["B"] > 0.0
    assert max(prior.values()) <= model.prior_weight
    model.learn([Interaction("new", "A", t)])
    scores = dict(zip(items, model.score(["new"], items)[0], strict=True))
    assert scores["B"] > scores["popular"] > prior["popular"]


def test_cooccurrence_latest_history_item_counts_most():
    events = []
    for n in range(5):
        events += [Interaction(f"a{n}", "X", 0.0), Interaction(f"a{n}", "after-X", 1.0)]
        events += [Interaction(f"b{n}", "Y", 0.0), Interaction(f"b{n}", "after-Y", 1.0)]
    model = CoOccurrence(reverse_weight=0.0)
    model.warm_up(events)
    model.learn([Interaction("new", "X", 2.0)])
    model.learn([Interaction("new", "Y", 3.0)])  # Y is the latest
    after_x, after_y = model.score(["new"], ["after-X", "after-Y"])[0]
    assert after_y > after_x > 0.0


def test_cooccurrence_window_limits_the_history():
    model = CoOccurrence(window=2, reverse_weight=0.0, prior_weight=0.0)
    model.learn([Interaction("u", item, float(t)) for t, item in enumerate("abcd")])
    # d was counted after b and c only; a had left the window
    model.learn([Interaction("v", "a", 10.0)])
    model.learn([Interaction("w", "b", 10.0)])
    assert model.score(["v", "w"], ["d"]).tolist()[0] == [0.0]
    assert model.score(["w"], ["d"])[0, 0] > 0.0


def test_recent_popular_prefers_recent_items_where_most_popular_does_not():
    events = [Interaction(f"u{n}", "old", 0.0) for n in range(5)]
    events += [Interaction(f"v{n}", "new", 30 * DAY) for n in range(2)]
    recent, alltime = RecentPopular(half_life_s=DAY), MostPopular()
    recent.warm_up(events)
    alltime.warm_up(events)
    old, new = recent.score(["x"], ["old", "new"])[0]
    assert new > old
    assert new == pytest.approx(2.0)
    assert old == pytest.approx(5.0 * 2.0**-30)
    assert alltime.score(["x"], ["old", "new"]).tolist() == [[5.0, 2.0]]


def test_recent_popular_survives_long_streams():
    model = RecentPopular(half_life_s=1.0)
    model.learn([Interaction("u", "a", float(t)) for t in range(0, 5000, 7)])
    model.learn([Interaction("u", "b", 5000.0)])
    a, b = model.score(["u"], ["a", "b"])[0]
    assert np.isfinite([a, b]).all()
    assert b == pytest.approx(1.0)
    assert a == pytest.approx(sum(2.0 ** -(5000.0 - t) for t in range(0, 5000, 7)))


@pytest.mark.parametrize(
    "build",
    [
        lambda: RecentPopular(half_life_s=0.0),
        lambda: CoOccurrence(window=0),
        lambda: RiverMF(loss="hinge"),
    ],
)
def test_bad_hyperparameters_are_refused(build):
    with pytest.raises(ValueError):
        build()
