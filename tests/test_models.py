import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from models import (
    DecayedPopularity,
    HashingTextEncoder,
    ItemFeaturizer,
    ItemIndex,
    ItemText,
    Recommender,
    RecommenderConfig,
    UserProfile,
    event_weight,
)
from tests.conftest import genre_catalog

DAY = 86_400.0


def ev(event_id, item, ts, kind="view", value=None, user="u"):
    return SimpleNamespace(
        event_id=event_id, user_id=user, item_id=item, event_type=kind, timestamp=ts, value=value
    )


@pytest.fixture
def recommender():
    featurizer = ItemFeaturizer(HashingTextEncoder())
    texts = [ItemText(c["item_id"], c["title"], tuple(c["categories"])) for c in genre_catalog()]
    index = ItemIndex(featurizer.dim, initial_capacity=4)  # forces growth
    index.upsert(texts, featurizer.featurize(texts))
    return Recommender(index, RecommenderConfig(top_k=5), content_name=featurizer.name)


def test_item_index_counts_rows_known_from_events_only():
    featurizer = ItemFeaturizer(HashingTextEncoder())
    index = featurizer.new_index()
    index.ensure("seen-in-an-event")
    index.ensure("seen-in-an-event")
    texts = [ItemText("seen-in-an-event", "Alien"), ItemText("new", "Heat")]
    assert index.id_only == 1
    index.upsert(texts, featurizer.featurize(texts))  # the catalog names both
    assert index.id_only == 0 and len(index) == 2
    index.upsert(texts[:1], featurizer.featurize(texts[:1]))  # an update
    index.ensure("another")
    assert index.id_only == 1


def test_event_weights_rank_actions():
    assert event_weight("purchase", None) > event_weight("click", None) > event_weight("view", None)
    assert event_weight("skip", None) < 0
    assert event_weight("rating", 5) > event_weight("rating", 1) > 0


def test_popularity_decays_by_half_life():
    pop = DecayedPopularity(half_life_s=DAY)
    pop.learn_one(0, timestamp=0.0)
    pop.learn_one(1, timestamp=2 * DAY)
    counts = pop.counts(3)
    assert counts[0] == pytest.approx(0.25) and counts[1] == pytest.approx(1.0)
    assert counts[2] == 0.0
    pop.learn_one(0, timestamp=200 * DAY)  # rebases without overflow
    assert np.isfinite(pop.counts(2)).all() and pop.counts(2)[0] == pytest.approx(1.0)


def test_popularity_knows_when_each_item_was_last_seen():
    pop = DecayedPopularity(half_life_s=DAY)
    pop.learn_one(0, timestamp=DAY)
    pop.learn_one(2000, timestamp=3 * DAY)  # grows past the initial capacity
    pop.learn_one(0, timestamp=2 * DAY)  # late event: the stream's clock does not go back
    idle = pop.idle_seconds(2002)
    assert pop.now == 3 * DAY
    assert idle[0] == DAY and idle[2000] == 0.0 and np.isinf(idle[1]) and np.isinf(idle[2001])


def test_user_with_one_genre_gets_that_genre(recommender):
    profile = UserProfile("u")
    for n, item in enumerate(["h0", "h1", "h2", "h3"]):
        assert recommender.learn_one(profile, ev(f"e{n}", item, 1e9 + n, "purchase"), (0, n))
    # Comedy is what everybody else watches.
    for n in range(30):
        recommender.learn_one(UserProfile("other"), ev(f"o{n}", f"c{n % 3}", 1e9 + n), None)
    top = recommender.recommend([profile])[0]
    assert len(top) == 5
    assert all(item.item_id.startswith("h") for item in top)
    assert not {"h0", "h1", "h2", "h3"} & {item.item_id for item in top}  # consumed excluded
    assert all(item.reason.startswith("similar to '") for item in top)
    assert [s.score for s in top] == sorted((s.score for s in top), reverse=True)


def test_cold_user_gets_popular_items(recommender):
    for n in range(10):
        recommender.learn_one(UserProfile(f"x{n}"), ev(f"p{n}", "c7", 1e9 + n), None)
    top = recommender.recommend([UserProfile("new")])[0]
    assert top[0].item_id == "c7" and top[0].reason == "popular now"


def test_replayed_and_duplicate_events_are_not_applied_twice(recommender):
    profile = UserProfile("u")
    assert recommender.learn_one(profile, ev("a", "h1", 1e9), (3, 10))
    assert not recommender.learn_one(profile, ev("a", "h1", 1e9), (3, 10))  # same offset
    assert not recommender.learn_one(profile, ev("b", "h2", 1e9), (3, 9))  # older offset
    assert not recommender.learn_one(profile, ev("a", "h1", 1e9), (3, 11))  # producer retry
    assert recommender.learn_one(profile, ev("c", "h2", 1e9), (3, 12))
    assert profile.events_applied == 2


def test_batch_ranking_matches_single_user_ranking(recommender):
    profiles = []
    for u, items in enumerate((["h0", "h5"], ["c1"], [])):
        profile = UserProfile(f"u{u}")
        for n, item in enumerate(items):
            recommender.learn_one(profile, ev(f"{u}-{n}", item, 1e9 + n, "like"), None)
        profiles.append(profile)
    together = recommender.recommend(profiles)
    alone = [recommender.recommend([p])[0] for p in profiles]
    assert together == alone


def test_recent_actions_outweigh_old_ones(recommender):
    profile = UserProfile("u")
    recommender.learn_one(profile, ev("old", "h0", 1e9, "purchase"), None)
    recommender.learn_one(profile, ev("new", "c0", 1e9 + 30 * DAY, "purchase"), None)
    assert recommender.recommend([profile])[0][0].item_id.startswith("c")
    assert recommender.predict_one(profile, "c5") > recommender.predict_one(profile, "h5")


def test_skip_pushes_similar_items_down(recommender):
    base, skipped = UserProfile("a"), UserProfile("b")
    for profile in (base, skipped):
        recommender.learn_one(profile, ev(f"{profile.user_id}1", "h0", 1e9, "view"), None)
        recommender.learn_one(profile, ev(f"{profile.user_id}2", "c0", 1e9, "view"), None)
    recommender.learn_one(skipped, ev("b3", "h1", 1e9, "skip"), None)
    assert recommender.predict_one(skipped, "h5") < recommender.predict_one(base, "h5")


def test_items_seen_only_in_events_are_rankable():
    index = ItemIndex(8)
    rec = Recommender(index)
    for n in range(3):
        rec.learn_one(UserProfile(f"v{n}"), ev(f"e{n}", "only-id", 1e9), None)
    assert rec.recommend([UserProfile("new")])[0][0].item_id == "only-id"


def test_profile_round_trips_and_stays_bounded(recommender):
    profile = UserProfile("u")
    for n in range(500):
        recommender.learn_one(profile, ev(f"e{n}", f"h{n % 12}", 1e9 + n), (0, n))
    data = profile.to_dict()
    assert UserProfile.from_dict(data) == profile
    assert len(profile.items) == recommender.config.history_len
    assert len(profile.recent_ids) == recommender.config.dedup_window
    assert profile.events_applied == 500
    assert pickle.loads(pickle.dumps(profile)) == profile


def test_items_older_than_the_kept_history_are_still_never_served(recommender):
    rec = Recommender(recommender.items, RecommenderConfig(top_k=5, history_len=4, consumed_len=7))
    for n in range(40):  # c0 is what everybody watches
        rec.learn_one(UserProfile(f"o{n}"), ev(f"o{n}", "c0", 1e9 + n), None)
    profile = UserProfile("u")
    watched = ["c0", "h0", "h1", "h2", "h3", "h4", "h5", "h0", "h6", "h7", "h8"]
    for n, item in enumerate(watched):
        rec.learn_one(profile, ev(f"e{n}", item, 1e9 + 100 + n), (0, n))
    assert profile.items == ["h0", "h6", "h7", "h8"]
    assert profile.older_items == ["c0", "h0", "h1", "h2", "h3", "h4", "h5"]  # oldest first
    served = {s.item_id for s in rec.recommend([profile])[0]}
    assert len(served) == 5 and not served & set(watched)
    assert UserProfile.from_dict(profile.to_dict()) == profile
    assert "o" not in UserProfile("new").to_dict()  # nothing stored until needed
    # h0, had again, moves to the end when it drops out again; past 7, the oldest goes.
    rec.learn_one(profile, ev("e11", "h9", 2e9), (0, 11))
    assert profile.older_items == ["c0", "h1", "h2", "h3", "h4", "h5", "h0"]
    rec.learn_one(profile, ev("e12", "h10", 2e9 + 1), (0, 12))
    assert profile.older_items == ["h1", "h2", "h3", "h4", "h5", "h0", "h6"]


def test_a_profile_copy_is_equal_and_shares_no_list(recommender):
    profile = UserProfile("u")
    for n in range(5):
        recommender.learn_one(profile, ev(f"e{n}", f"h{n}", 1e9 + n + 0.25), (0, n))
    copied = profile.copy()
    assert copied == profile  # fractional times too: a copy is not a store round trip
    recommender.learn_one(copied, ev("e9", "h9", 2e9), (0, 9))
    assert len(profile.items) == 5 and profile.events_applied == 5
    assert profile.recent_ids != copied.recent_ids and profile.times != copied.times


def test_hashing_encoder_is_deterministic_and_unit_length():
    enc = HashingTextEncoder(64)
    a, b = enc.encode(["Haunted Nightmare", "haunted nightmare"]), enc.encode(["Haunted Nightmare"])
    np.testing.assert_allclose(a[0], a[1])
    np.testing.assert_allclose(a[0], b[0])
    assert np.linalg.norm(a[0]) == pytest.approx(1.0)


def test_retired_items_are_never_recommended(recommender):
    for n in range(5):
        recommender.learn_one(UserProfile(f"p{n}"), ev(f"r{n}", "c3", 1e9 + n), None)
    assert recommender.recommend([UserProfile("new")])[0][0].item_id == "c3"
    recommender.items.retire("c3")
    assert "c3" not in {s.item_id for s in recommender.recommend([UserProfile("new")])[0]}


def test_stored_history_with_items_this_process_never_saw_is_ranked(recommender):
    # A worker that restarts (or takes over a partition) loads profiles whose items its
    # fresh index may not hold yet: ranking must still work for them.
    elsewhere = Recommender(recommender.items.__class__(recommender.items.dim))
    profile = UserProfile("u")
    for n in range(4):
        elsewhere.learn_one(profile, ev(f"e{n}", f"unseen{n}", 1e9 + n), (0, n))
    stored = profile.to_dict()
    before = len(recommender.items)
    top = recommender.recommend([UserProfile.from_dict(stored)])[0]
    assert len(recommender.items) == before + 4
    assert not {s.item_id for s in top} & {f"unseen{n}" for n in range(4)}


def test_stored_profile_is_compact_and_round_trips(recommender):
    import json

    from models.long_term import pack_vector, unpack_vector

    profile = UserProfile("u")
    for n in range(100):
        event = ev(f"event-{n}", str(200 + n % 40), 881_250_949.4 + 37 * n, "rating", value=4)
        recommender.learn_one(profile, event, (2, n, 1_700_000_000_000 + n))
    vector = np.random.default_rng(0).normal(size=384).astype(np.float32)
    profile.long_term, profile.long_term_at = pack_vector(vector), 100
    stored = json.dumps(profile.to_dict(), separators=(",", ":"))
    assert len(stored) < 2300  # a full 100-event history (the mean user is well below)
    back = UserProfile.from_dict(json.loads(stored))
    assert back.items == profile.items and back.kinds == profile.kinds
    assert back.recent_ids == profile.recent_ids and back.last_source == profile.last_source
    np.testing.assert_allclose(back.times, np.round(profile.times))  # whole seconds
    restored = unpack_vector(back.long_term)
    cosine = restored @ vector / np.linalg.norm(restored) / np.linalg.norm(vector)
    assert cosine > 0.999
    assert back.is_duplicate("event-99", None) and not back.is_duplicate("new", None)
    # Format 1 (before compaction) is still read.
    old = {**profile.to_dict(), "ts": profile.times, "r": profile.recent_ids}
    del old["v"], old["tg"]
    assert UserProfile.from_dict(old).times == profile.times


def test_bert_in_bfloat16_embeds_like_float32():
    from models.text_encoder import BertTextEncoder, packaged_minilm_path

    texts = ["purchased 'Toy Story (1995)' (Animation, Comedy); viewed 'Fargo (1996)'", "Heat"]
    exact = BertTextEncoder(packaged_minilm_path(), precision="float32").encode(texts)
    low = BertTextEncoder(packaged_minilm_path(), precision="bfloat16").encode(texts)
    assert not np.array_equal(exact, low)  # bfloat16 did run
    assert np.all((exact * low).sum(axis=1) > 0.999)


def test_bert_reads_a_text_only_up_to_the_token_cap():
    from models.text_encoder import BertTextEncoder, packaged_minilm_path

    encoder = BertTextEncoder(packaged_minilm_path(), precision="float32")
    head = "rated Heat (Action, Crime, Thriller)"
    texts = [head + "; rated Ran (Drama, War)" * 20, head + "; viewed Alien (Horror)" * 20]
    capped = encoder.encode(texts, max_tokens=8)
    assert np.allclose(capped[0], capped[1], atol=1e-5)  # the first 8 tokens are the same
    full = encoder.encode(texts)
    assert (full[0] * full[1]).sum() < 0.99  # the rest differs, and is read without the cap
