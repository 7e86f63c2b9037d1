"""The sequence Transformer on tiny generated data: shapes, causality, learning, checkpoints."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from models.events import EVENT_TYPES
from models.sequence_model import SequenceModel, SequenceModelConfig, gap_buckets
from models.sequence_training import (
    CheckpointError,
    SequenceScorer,
    TrainConfig,
    _pad_left,
    encode_events,
    evaluate_leave_one_out,
    fit_sequence_model,
    leave_one_out_split,
    load_checkpoint,
    shuffled_ties,
    temporal_split,
    tie_run_ids,
    tie_runs,
    train_sequence_model,
    training_windows,
    window_loss,
)
from models.streaming import Interaction

N_ITEMS = 40
SMALL = {"max_len": 8, "hidden": 32, "layers": 1, "heads": 2, "inner": 64, "dropout": 0.1}
SMALL.update(attn_dropout=0.1)


def successor_data(n_users: int = 80, length: int = 12, seed: int = 0) -> list[Interaction]:
    """Each user walks the items in a cycle: item k is always followed by item k+1."""
    rng = np.random.default_rng(seed)
    out = []
    for user in range(n_users):
        start, t0 = int(rng.integers(N_ITEMS)), 1e9 + float(rng.integers(10**6))
        for step in range(length):
            out.append(
                Interaction(
                    user_id=f"u{user}",
                    item_id=f"i{(start + step) % N_ITEMS}",
                    timestamp=t0 + 60.0 * step,
                    event_type=EVENT_TYPES[step % 3],
                )
            )
    rng.shuffle(out)  # the split must restore time order itself
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: a second thread only adds synchronisation, badly so on busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    """(metrics, scorer) of a small model trained on the successor data."""
    data = successor_data()
    split = leave_one_out_split(data)
    metrics, result = evaluate_leave_one_out(
        data, SMALL, TrainConfig(epochs=25, patience=25, batch_size=64, lr=5e-3, progress=False)
    )
    return metrics, SequenceScorer(result.model, split.item_ids, version="test/1")


def test_shapes_and_causality():
    torch.manual_seed(0)
    model = SequenceModel(SequenceModelConfig(n_items=N_ITEMS, **SMALL)).eval()
    items = torch.randint(1, N_ITEMS + 1, (3, 8))  # [B L]
    items[0, :3] = 0  # left padding
    types, gaps = torch.ones_like(items), torch.full_like(items, 2)
    hidden = model(items, types, gaps)
    assert hidden.shape == (3, 8, 32)
    assert model.scores(hidden).shape == (3, 8, N_ITEMS)
    changed = items.clone()
    changed[:, 5] = changed[:, 5] % N_ITEMS + 1
    after = model(changed, types, gaps)
    torch.testing.assert_close(after[:, :5], hidden[:, :5])
    assert not torch.allclose(after[:, 5:], hidden[:, 5:])
    # Real positions never look at padding, so the amount of padding does not matter.
    short = model(items[:1, 3:], types[:1, 3:], gaps[:1, 3:])
    torch.testing.assert_close(short[0, -1], hidden[0, -1], atol=1e-5, rtol=1e-5)
    # Serving computes only the last position in the final block: same numbers.
    for norm_first in (False, True):
        config = SequenceModelConfig(n_items=N_ITEMS, norm_first=norm_first, **SMALL)
        model = SequenceModel(config).eval()
        last = model(items, types, gaps, last_only=True)
        assert last.shape == (3, 1, 32)
        torch.testing.assert_close(last[:, 0], model(items, types, gaps)[:, -1])


def test_gap_buckets():
    buckets = gap_buckets(np.array([np.nan, 0.0, 1.0, 3.0, -5.0, 1e12]), 32)
    assert buckets.tolist() == [1, 2, 3, 4, 2, 31]


def test_windows_cover_every_target_once():
    split = leave_one_out_split(successor_data(n_users=5, length=30))
    config = SequenceModelConfig(n_items=N_ITEMS, max_len=8)
    for rng, min_context in ((None, 0), (np.random.default_rng(3), 0), (None, 5)):
        items, _, _, targets = training_windows(split.train, config, rng, min_context)
        assert items.shape == targets.shape and items.shape[1] == 8
        assert (targets > 0).sum() == sum(len(s) - 1 for s in split.train)
        # Each target is the item after its input position: k -> k+1 in this data.
        has = targets > 0
        ids = np.array(split.item_ids)
        nxt = [int(i[1:]) for i in ids[targets[has] - 1]]
        prev = [int(i[1:]) for i in ids[items[has] - 1]]
        assert all((p + 1) % N_ITEMS == n for p, n in zip(prev, nxt, strict=True))


def test_shuffled_ties_reorders_only_actions_with_equal_timestamps():
    # Runs of equal timestamps: [0], [1, 2, 3], [4], [5, 6].
    times = [0.0, 10.0, 10.0, 10.0, 25.0, 40.0, 40.0]
    kinds = ["view", "click", "like", "purchase", "share", "view", "click"]
    sequence = encode_events(range(1, 8), kinds, times)
    orders = set()
    for seed in range(30):
        shuffled = shuffled_ties(sequence, np.random.default_rng(seed))
        items = shuffled.items.tolist()
        assert items[0] == 1 and items[4] == 5
        assert sorted(items[1:4]) == [2, 3, 4] and sorted(items[5:]) == [6, 7]
        # Each action keeps its own type; gaps are those of the timestamps.
        assert (shuffled.types == sequence.types[shuffled.items - 1]).all()
        np.testing.assert_array_equal(shuffled.gaps, sequence.gaps)
        orders.add(tuple(items))
    assert len(orders) > 6  # 3! * 2! = 12 orders are possible
    distinct = encode_events([1, 2, 3], ["view"] * 3, [0.0, 1.0, 2.0])
    assert shuffled_ties(distinct, np.random.default_rng(0)) is distinct


def test_served_query_is_the_mean_over_both_orders_of_the_last_tie():
    torch.manual_seed(0)
    config = SequenceModelConfig(n_items=N_ITEMS, **SMALL)
    scorer = SequenceScorer(SequenceModel(config), [f"i{k}" for k in range(N_ITEMS)])
    plain = copy.copy(scorer)
    plain.average_tie_orders = False

    def encoded(times):
        return scorer.encode([(f"i{k}", "view", t) for k, t in enumerate(times)])

    sequences = [
        # Ten actions (max_len is 8): last run of 3; the window starts inside another run.
        encoded([0.0, 3.0, 3.0, 5.0, 5.0, 9.0, 12.0, 20.0, 20.0, 20.0]),
        encoded([1.0, 2.0, 3.0, 3.0]),  # a last run of 2 in a shorter row
        encoded([7.0, 7.0]),  # one run, the whole sequence
        encoded([0.0, 0.0, 3.0, 5.0, 5.0, 9.0, 12.0]),  # the last action on its own
    ]
    windows = [s.window(max(0, len(s) - 8), len(s)) for s in sequences]
    served = scorer.hidden_states(sequences)
    given = plain.hidden_states(windows)
    reversed_ = plain.hidden_states([_last_tie_reversed(w) for w in windows])
    np.testing.assert_allclose(served[:3], (given[:3] + reversed_[:3]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served[3], given[3], rtol=1e-5, atol=1e-6)
    assert not np.allclose(given[0], reversed_[0])  # the order of a tie does move the query


def _last_tie_reversed(sequence):
    """The sequence with its last run of equal timestamps in reverse order."""
    run = tie_run_ids(sequence)
    start = int(np.searchsorted(run, run[-1]))
    order = np.r_[np.arange(start), np.arange(len(run) - 1, start - 1, -1)]
    return replace(sequence, items=sequence.items[order], types=sequence.types[order])


def test_tie_runs_list_each_action_with_the_rest_of_its_run():
    # Runs of equal timestamps: [1], [2, 3, 4], [5], [6, 7].
    sequence = encode_events(range(1, 8), ["view"] * 7, [0.0, 10.0, 10.0, 10.0, 25.0, 40.0, 40.0])
    expected = [[1, 0], [2, 3], [3, 4], [4, 0], [5, 0], [6, 7], [7, 0]]
    assert tie_runs(sequence, 2).tolist() == expected
    assert tie_runs(sequence, 3)[1].tolist() == [2, 3, 4]


def test_tied_targets_spread_each_loss_over_the_rest_of_its_tie_run():
    """A target stamped the same second as later actions is any of them, equally likely:
    its loss is the mean cross-entropy of those items, each with the others left in."""
    torch.manual_seed(0)
    config = SequenceModelConfig(n_items=N_ITEMS, exclude_history=True, **SMALL)
    model = SequenceModel(config).eval()
    data = successor_data(n_users=6, length=30)
    paired = [replace(it, timestamp=it.timestamp - it.timestamp % 120) for it in data]
    split = leave_one_out_split(paired)
    tied = [torch.as_tensor(a) for a in training_windows(split.train, config, tied_targets=True)]
    items, types, gaps, targets, before = tied
    assert targets.dim() == 3 and (targets[..., 1] != 0).any()
    with torch.no_grad():
        logits = model.scores(model(items, types, gaps))  # [B L n_items]
    expected = []
    for b, t in zip(*torch.nonzero(targets[..., 0]).T.tolist(), strict=True):
        wanted = {int(i) - 1 for i in targets[b, t] if i != 0}
        had = {int(i) - 1 for i in [*before[b], *items[b, : t + 1]] if i != 0}
        row = logits[b, t].clone()
        row[list(had - wanted)] = -torch.inf
        log_p = row - torch.logsumexp(row, 0)
        expected.append(-log_p[list(wanted)].mean())
    loss = window_loss(model, tied)
    assert loss.item() == pytest.approx(float(torch.stack(expected).mean()), rel=1e-5)
    plain = [torch.as_tensor(a) for a in training_windows(split.train, config)]
    torch.testing.assert_close(plain[3], targets[..., 0])
    assert window_loss(model, plain).item() != loss.item()
    # Without ties there is nothing to spread: the plain targets.
    distinct = leave_one_out_split(data).train
    for got, want in zip(
        training_windows(distinct, config, tied_targets=True),
        training_windows(distinct, config),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)


def test_history_excluded_loss_leaves_out_earlier_items_only():
    """Each target's softmax runs over the items the user has not had before it (in its
    window or before it), the target itself included."""
    torch.manual_seed(0)
    config = SequenceModelConfig(n_items=N_ITEMS, exclude_history=True, **SMALL)
    model = SequenceModel(config).eval()
    split = leave_one_out_split(successor_data(n_users=6, length=30))
    windows = [torch.as_tensor(a) for a in training_windows(split.train, config)]
    items, types, gaps, targets, before = windows
    assert before.shape[1] > 0  # histories longer than a window
    # A repeat: the target of one position is an item earlier in its window.
    targets[0, -1] = items[0, -3]
    loss = window_loss(model, windows)
    with torch.no_grad():
        logits = model.scores(model(items, types, gaps))  # [B L n_items]
    expected = []
    for b, t in zip(*torch.nonzero(targets).T.tolist(), strict=True):
        row = logits[b, t].clone()
        had = {int(i) - 1 for i in [*before[b], *items[b, : t + 1]] if i != 0}
        wanted = int(targets[b, t]) - 1
        row[list(had - {wanted})] = -torch.inf
        expected.append(torch.logsumexp(row, 0) - row[wanted])
    assert loss.item() == pytest.approx(float(torch.stack(expected).mean()), rel=1e-5)
    # Without the items before each window, and with the plain softmax, the loss differs.
    assert window_loss(model, windows[:4]).item() > loss.item()
    plain = SequenceModel(SequenceModelConfig(n_items=N_ITEMS, **SMALL)).eval()
    plain.load_state_dict(model.state_dict())
    assert window_loss(plain, windows[:4]).item() > window_loss(model, windows[:4]).item()


def test_splits_keep_test_out_of_training():
    data = successor_data(n_users=10, length=10)
    loo = leave_one_out_split(data)
    assert all(len(s) == 8 for s in loo.train)
    assert [c.end for c in loo.valid] == [8] * 10 and [c.end for c in loo.test] == [9] * 10
    temporal = temporal_split(data)
    assert sum(len(s) for s in temporal.train) == int(int(len(data) * 0.8) * 0.9)
    assert len(temporal.test) > 0 and len(temporal.valid) > 0


def test_learns_a_sequential_pattern(trained):
    metrics, _ = trained
    # Random ranking of 40 items gives NDCG@10 ≈ 0.11; the successor is deterministic.
    assert metrics["ndcg@10"] > 0.6
    assert metrics["recall@10"] > 0.8
    assert metrics["ndcg@10_exclude_history"] >= metrics["ndcg@10"] - 1e-9


def test_training_is_deterministic():
    data = successor_data(n_users=20)
    config = TrainConfig(epochs=2, batch_size=16, progress=False, seed=7)
    first, a = evaluate_leave_one_out(data, SMALL, config)
    second, b = evaluate_leave_one_out(data, SMALL, config)
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[name])
    assert first["ndcg@10"] == second["ndcg@10"]


def test_tie_shuffling_changes_training_only_where_timestamps_tie():
    def weights(data, shuffle_ties):
        config = TrainConfig(epochs=2, batch_size=16, progress=False, shuffle_ties=shuffle_ties)
        _, result = evaluate_leave_one_out(data, SMALL, config)
        return result.model.state_dict()

    def same(a, b):
        return all(torch.equal(tensor, b[name]) for name, tensor in a.items())

    distinct = successor_data(n_users=20)
    assert same(weights(distinct, True), weights(distinct, False))
    # Pairs of actions stamped the same second: their order is now drawn each epoch.
    paired = [replace(it, timestamp=it.timestamp - it.timestamp % 120) for it in distinct]
    assert not same(weights(paired, True), weights(paired, False))


def test_checkpoint_round_trip(trained, tmp_path):
    _, scorer = trained
    version = scorer.save_checkpoint(tmp_path / "ckpt")
    loaded = SequenceScorer.load_checkpoint(tmp_path / "ckpt")
    assert loaded.version == version and loaded.item_ids == scorer.item_ids
    seqs = [[("i1", "view", 1.0), ("i2", "click", 70.0)], [("i7", "purchase", 5.0)]]
    np.testing.assert_array_equal(loaded.score_sequences(seqs), scorer.score_sequences(seqs))
    manifest = json.loads((tmp_path / "ckpt" / "manifest.json").read_text())
    assert set(manifest["sha256"]) == {
        "model.safetensors",
        "config.json",
        "item_index.json",
        "version",
    }


@pytest.mark.parametrize("name", ["model.safetensors", "item_index.json", "config.json"])
def test_tampered_checkpoint_is_refused(trained, tmp_path, name):
    _, scorer = trained
    scorer.save_checkpoint(tmp_path)
    path = tmp_path / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path)


def test_incomplete_checkpoint_is_refused(trained, tmp_path):
    _, scorer = trained
    scorer.save_checkpoint(tmp_path)
    (tmp_path / "version").unlink()
    with pytest.raises(CheckpointError, match="missing version"):
        load_checkpoint(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        load_checkpoint(tmp_path)


def test_batched_scoring_equals_one_by_one(trained):
    _, scorer = trained
    seqs = [
        [("i3", "view", 10.0), ("i4", "view", 20.0), ("i5", "click", 4000.0)],
        [("i9", "rating", 1.0)],
        [(f"i{k % N_ITEMS}", "view", 60.0 * k) for k in range(30)],  # longer than max_len
        [("unknown", "view", 1.0), ("i3", "view", 10.0), ("i4", "view", 20.0)],
        [("unknown", "view", 1.0)],
    ]
    batched = scorer.score_sequences(seqs)
    assert batched.shape == (5, N_ITEMS) and batched.dtype == np.float32
    for row, seq in enumerate(seqs):
        np.testing.assert_allclose(batched[row], scorer.score_sequences([seq])[0], atol=1e-5)
    # Unknown ids are dropped; a sequence with nothing known scores zero everywhere.
    np.testing.assert_allclose(batched[3], scorer.score_sequences([seqs[3][1:]])[0], atol=1e-5)
    assert not batched[4].any()
    columns = {item: col for col, item in enumerate(scorer.item_ids)}
    assert columns["i6"] == int(np.argmax(batched[0]))  # learned: i5 -> i6


def test_bfloat16_serving_scores_like_float32(trained):
    _, scorer = trained
    seqs = [[(f"i{(k + s) % N_ITEMS}", "view", 60.0 * k) for k in range(12)] for s in range(6)]
    exact = scorer.hidden_states(seqs)
    low = copy.copy(scorer)
    low.precision = "bfloat16"
    served = low.hidden_states(seqs)
    assert not np.array_equal(exact, served)  # bfloat16 did run
    norms = np.linalg.norm(exact, axis=1) * np.linalg.norm(served, axis=1)
    cosine = (exact * served).sum(1) / norms
    assert cosine.min() > 0.999
    # The learned successor stays on top.
    assert (low.score_sequences(seqs).argmax(1) == scorer.score_sequences(seqs).argmax(1)).all()


def test_fine_tune_changes_model_and_reduces_loss(trained):
    _, trained_scorer = trained
    model = SequenceModel(trained_scorer.model.config)
    model.load_state_dict(trained_scorer.model.state_dict())
    scorer = SequenceScorer(model, trained_scorer.item_ids, seed=1)
    # A new habit: item k is now followed by k+2.
    recent = [
        [(f"i{(s + 2 * k) % N_ITEMS}", "view", 100.0 * k) for k in range(10)] for s in range(20)
    ]
    before_loss = scorer.loss(recent)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = scorer.fine_tune(recent, steps=15, lr=5e-3)
    assert len(losses) == 15
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert scorer.loss(recent) < 0.8 * before_loss
    assert not model.training
    interactions = [
        Interaction("u", item, ts, kind) for item, kind, ts in recent[0]
    ]  # interactions are accepted too
    assert len(scorer.fine_tune(interactions, steps=2)) == 2


def test_train_command_writes_checkpoint_and_json(tmp_path):
    from stream_app.train_command import train

    path = tmp_path / "events.jsonl"
    with path.open("w") as handle:
        for it in sorted(successor_data(n_users=20, length=8), key=lambda it: it.timestamp):
            event = {
                "event_id": f"e{it.user_id}-{it.timestamp}",
                "user_id": it.user_id,
                "item_id": it.item_id,
                "event_type": it.event_type,
                "timestamp": it.timestamp,
            }
            handle.write(json.dumps(event) + "\n")
    args = [str(path), "--out", str(tmp_path / "ckpt"), "--json", str(tmp_path / "r.json")]
    args += ["--epochs", "2", "--max-len", "8", "--hidden", "16", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(train, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    scores = report["results"]["sasrec_transformer"]
    assert report["dataset"] == "events" and 0.0 <= scores["ndcg@10"] <= 1.0
    assert {"recall@10_exclude_history", "best_epoch", "train_seconds"} <= set(scores)
    held_out = SequenceScorer.load_checkpoint(tmp_path / "ckpt")
    assert held_out.max_len == 8 and "trained on the training split" in result.output
    # --refit-all: same metrics, a checkpoint trained again on every interaction.
    args[2] = str(tmp_path / "deploy")
    deployed = CliRunner().invoke(train, [*args, "--refit-all"])
    assert deployed.exit_code == 0, deployed.output
    assert "trained on every interaction" in deployed.output
    again = json.loads((tmp_path / "r.json").read_text())["results"]["sasrec_transformer"]
    assert again["ndcg@10"] == scores["ndcg@10"]  # the held-out model's, as before
    refit = SequenceScorer.load_checkpoint(tmp_path / "deploy")
    assert refit.version != held_out.version and refit.item_ids == held_out.item_ids


def test_train_sequence_model_returns_a_scorer():
    data = successor_data(n_users=20, length=8)
    scorer = train_sequence_model(data, epochs=2, model_options=SMALL, progress=False)
    assert sorted(scorer.item_ids) == sorted({it.item_id for it in data})
    assert scorer.version.startswith("sasrec_transformer/") and scorer.max_len == 8
    assert scorer.score_sequences([[("i1", "view", 0.0)]]).shape == (1, len(scorer.item_ids))


def test_refit_retrains_on_everything_for_the_chosen_epochs():
    from models.sequence_training import weights_digest

    data = successor_data(n_users=30, length=10)
    kwargs = {"epochs": 4, "model_options": SMALL, "progress": False}
    refit = train_sequence_model(data, **kwargs)
    held_out_only = train_sequence_model(data, refit=False, **kwargs)
    # By hand: early stopping on the last tenth, then that many epochs over all of it.
    split = temporal_split(data, test_fraction=0.0, valid_fraction=0.1)
    config = SequenceModelConfig(n_items=len(split.item_ids), exclude_history=True, **SMALL)
    tc = TrainConfig(epochs=4, progress=False)
    best = fit_sequence_model(split.train, split.valid, config, tc).best_epoch
    whole = temporal_split(data, test_fraction=0.0, valid_fraction=0.0)
    expected = fit_sequence_model(whole.train, [], config, replace(tc, epochs=best)).model
    assert refit.version.endswith(weights_digest(expected)[:12])
    assert refit.version != held_out_only.version


def test_evaluate_command_reports_every_method_and_trains_on_the_threads_asked(tmp_path):
    from stream_app.evaluate_command import BASELINES, SYSTEMS, evaluate

    path = tmp_path / "walks.inter"
    rows = sorted(successor_data(n_users=30, length=10), key=lambda it: it.timestamp)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{it.user_id}\t{it.item_id}\t4\t{it.timestamp:.0f}" for it in rows]
    path.write_text("\n".join(lines) + "\n")
    args = [str(path), "--epochs", "2", "--train-threads", "1", "--text-encoder", "hashing"]
    args += ["--json", str(tmp_path / "out.json"), "--plot", str(tmp_path / "out.png")]
    torch.set_num_threads(2)
    try:
        result = CliRunner().invoke(evaluate, args)
        assert torch.get_num_threads() == 2  # only the training ran on one
    finally:
        torch.set_num_threads(1)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["protocol"]["train_threads"] == 1 and report["protocol"]["warmup"] == 0.8
    assert set(report["results"]) == set(SYSTEMS) | set(BASELINES)
    for name, scores in report["results"].items():
        assert {"recall@10", "ndcg@10", "evaluated", "skipped", "events_per_s"} <= set(scores)
        assert scores["evaluated"] > 0 and 0.0 <= scores["ndcg@10"] <= 1.0, name
    assert "streamrec / best baseline" in result.output
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"


def test_profile_histories_padded_at_once_match_encoding_each_one():
    scorer = train_sequence_model(
        successor_data(n_users=20, length=8), epochs=1, model_options=SMALL, progress=False
    )
    long_items = [f"i{n % 6 + 1}" for n in range(11)]  # longer than max_len (8)
    histories = [
        (["i1", "unknown", "i2", "i3"], [0, 1, 2, 1], [10.0, 20.0, 35.0, 90.0]),
        ([], [], []),
        (["unknown"], [0], [5.0]),
        (long_items, [n % 3 for n in range(11)], [100.0 + 7 * n * n for n in range(11)]),
    ]
    events = [
        list(zip(items, [EVENT_TYPES[k] for k in kinds], times, strict=True))
        for items, kinds, times in histories
    ]
    encoded = [scorer.encode(e) for e in events]
    assert [len(e) for e in encoded] == [3, 0, 0, 11]  # items the model never saw: dropped
    windows = [e.window(max(0, len(e) - 8), len(e)) for e in encoded]
    expected = _pad_left(windows, 8, scorer.model.config.n_gap_buckets)
    padded = scorer.padded_inputs(histories)
    for got, want in zip(padded, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    # The long history's first action in view is timed from the one before it, as in training.
    assert padded[2][3, 0] == gap_buckets(np.array([7.0 * (9 - 4)]), 32)[0] != 1
    states = scorer.padded_hidden_states(*padded)
    np.testing.assert_allclose(states, scorer.hidden_states(events), rtol=1e-5, atol=1e-6)
    assert not states[1].any() and not states[2].any()


def test_kept_weights_are_a_moving_average_of_the_trained_ones():
    data = successor_data(n_users=30, length=10)
    split = temporal_split(data, test_fraction=0.0, valid_fraction=0.0)
    config = SequenceModelConfig(n_items=len(split.item_ids), **SMALL)
    raw = TrainConfig(epochs=2, progress=False, ema_decay=None)

    def weights(tc: TrainConfig) -> dict[str, torch.Tensor]:
        return fit_sequence_model(split.train, [], config, tc).model.state_dict()

    trained = weights(raw)
    # A decay of ~0 averages nothing in: the last step's weights, the trained ones.
    for name, tensor in weights(replace(raw, ema_decay=1e-12)).items():
        torch.testing.assert_close(tensor, trained[name])
    # A slow average lags behind training, towards the initial weights.
    averaged = weights(replace(raw, ema_decay=0.99))
    torch.manual_seed(raw.seed)
    initial = SequenceModel(config).state_dict()
    for name, tensor in averaged.items():
        if not torch.equal(trained[name], initial[name]):
            lag = (tensor - trained[name]).norm()
            assert 0 < lag < (initial[name] - trained[name]).norm()
