"""The worker's Engine: catalog embedding cache, sequence model attach and fine-tuning."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from models.fusion import SIGNALS
from models.sequence_training import train_sequence_model
from models.streaming import Interaction
from schemas import CatalogItem, Recommendation
from stream_app.cli import main
from stream_app.engine import Engine, save_embeddings, text_key
from stream_app.settings import ConfigError, Settings
from tests.conftest import genre_catalog


def _engine(tmp_path, **overrides) -> Engine:
    return Engine(
        Settings.from_env(env={}, text_encoder="hashing", data_dir=str(tmp_path), **overrides)
    )


def test_embedding_cache_skips_the_encoder_for_unchanged_text(tmp_path):
    records = [CatalogItem(**c) for c in genre_catalog()]
    first = _engine(tmp_path)
    texts, vectors = first.featurize(records)
    cache = tmp_path / "emb.npz"
    save_embeddings(cache, [text_key(t, first.featurizer.name) for t in texts], vectors)

    cached = _engine(tmp_path, embedding_cache=str(cache))
    calls = []
    original = cached.featurizer.featurize
    cached.featurizer.featurize = lambda items: calls.append(len(items)) or original(items)
    changed = records[:-1] + [
        CatalogItem(item_id="c11", title="Renamed Party", categories=["Comedy"])
    ]
    _, again = cached.featurize(changed)
    assert calls == [1]  # only the item whose text changed was embedded
    np.testing.assert_allclose(again[:-1], vectors[:-1])


def test_sequence_model_joins_the_blend_and_fine_tunes_as_a_copy(tmp_path):
    catalog = genre_catalog()
    ids = [c["item_id"] for c in catalog]
    # Each user walks the catalog in order: item k is followed by item k+1.
    stream = [
        Interaction(f"u{u}", ids[(u + t) % len(ids)], 1e9 + 60 * t + u, "view", None, f"e{u}-{t}")
        for u in range(30)
        for t in range(12)
    ]
    scorer = train_sequence_model(
        stream,
        epochs=3,
        seed=1,
        progress=False,
        model_options={"hidden": 16, "layers": 1, "heads": 1, "inner": 32},
    )
    engine = _engine(tmp_path, sequence_finetune_interval_s=10.0, sequence_finetune_steps=2)
    engine.add_items(*engine.featurize([CatalogItem(**c) for c in catalog]))
    engine.recommender.attach_sequence(scorer)
    profiles = {}
    for event in stream:
        profile = profiles.setdefault(event.user_id, engine.load_profile(event.user_id, None))
        engine.apply(profile, event, None)
        engine.note_activity(profile)
    recs = engine.recommend(list(profiles.values()), ["t"] * len(profiles))
    assert scorer.version in recs[0]["model_version"]
    assert all(len(r["items"]) == 10 for r in recs)
    # The documents the worker publishes are valid Recommendation records.
    parsed = Recommendation.loads(json.dumps(recs[0]).encode())
    assert parsed.items[0].item_id == recs[0]["items"][0]["item_id"] and parsed.items[0].reason

    tuned = engine.fine_tuned_sequence_model()
    assert tuned is not None and tuned is not scorer
    assert tuned.version.endswith("+ft1")
    before = [p.detach().clone() for p in scorer.model.parameters()]
    engine.recommender.attach_sequence(tuned)
    assert all(
        np.array_equal(a, b.detach())
        for a, b in zip(before, scorer.model.parameters(), strict=True)
    )
    assert engine.recommend(list(profiles.values())[:2], ["t", "t"])[0]["items"]


def test_gate_learns_from_a_sample_pooled_into_full_batches(tmp_path, catalog):
    engine = _engine(tmp_path, gate_sample_rate=0.5)
    engine.add_items(*engine.featurize([CatalogItem(**c) for c in catalog]))
    items = [c["item_id"] for c in catalog]
    profiles = []
    for u in range(300):
        profile = engine.load_profile(f"u{u}", None)
        for n in range(3):
            item = items[(u + n) % len(items)]
            event = Interaction(f"u{u}", item, 1e9 + n, "view", event_id=f"{u}-{n}")
            assert engine.apply(profile, event, None)
        profiles.append(profile)
    examples, next_items = engine.gate_examples(profiles, items[:1] * len(profiles))
    assert 100 < len(examples) < 200  # about half, seeded
    originals, stored = {id(p) for p in profiles}, [p.to_dict() for p in profiles]
    assert all(id(e) not in originals and e.to_dict() in stored for e in examples)  # copies
    size = engine.recommender.config.gate_users_per_batch
    engine.learn_gate(examples[: size - 1], next_items[: size - 1])
    assert engine.recommender.gate.updates == 0  # waits for a full batch
    engine.learn_gate(examples[size - 1 :], next_items[size - 1 :])
    full = len(examples) // size
    assert 0 < engine.recommender.gate.updates <= full * size


def test_the_worker_blends_only_the_signals_its_settings_name(tmp_path, catalog):
    assert Settings().signal_names == SIGNALS  # by default, every signal
    items = [c["item_id"] for c in catalog]
    refreshed = {}
    for signals in (
        "sequence,transitions,short_term,long_term,popularity",
        "popularity, short_term",
    ):
        engine = _engine(tmp_path, signals=signals)
        assert engine.recommender.gate.signals == engine.recommender.config.signals
        engine.add_items(*engine.featurize([CatalogItem(**c) for c in catalog]))
        profile = engine.load_profile("u", None)
        for n in range(5):
            event = Interaction("u", items[n], 1e9 + n, "view", event_id=f"e{n}")
            assert engine.apply(profile, event, None)
        (served,) = engine.recommend([profile], ["e4"])
        assert len(served["items"]) == 10 and not {i["item_id"] for i in served["items"]} & set(
            items[:5]
        )
        refreshed[engine.recommender.config.signals] = engine.recommender.refresh_long_term(
            [profile], force=True
        )
    # A history is embedded by BERT only where the long-term signal is blended.
    assert refreshed == {SIGNALS: 1, ("popularity", "short_term"): 0}


@pytest.mark.parametrize("signals", ["sequence,bogus", "popularity,popularity", " , "])
def test_a_worker_asked_for_an_unknown_or_repeated_signal_refuses_to_start(tmp_path, signals):
    with pytest.raises(ConfigError, match="STREAMREC_SIGNALS must name each of"):
        _engine(tmp_path, signals=signals)
    result = CliRunner().invoke(
        main, ["worker", "--data-dir", str(tmp_path)], env={"STREAMREC_SIGNALS": signals}
    )
    assert result.exit_code == 2 and "STREAMREC_SIGNALS must name each of" in result.output
