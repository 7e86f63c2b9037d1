"""Model safety: checkpoints are verified (sha256 manifest, safetensors, JSON) and never
unpickled; a corrupt or mismatched one is refused with a clear error while the model that was
serving keeps serving — in the engine, and in a running worker that watches the checkpoint
path for a new model."""

from __future__ import annotations

import json
import logging
import pickle
import re
import time
from pathlib import Path

import pytest
import torch

from models.sequence_model import SequenceModel, SequenceModelConfig
from models.sequence_training import CHECKPOINT_FILES, _sha256, save_checkpoint
from stream_app.engine import Engine
from stream_app.settings import Settings
from tests.conftest import genre_catalog
from tests.reliability.harness import EventSource, Ledger, Producer, Scenario, read_topic

ITEMS = [c["item_id"] for c in genre_catalog()]
TINY = {"max_len": 8, "hidden": 16, "layers": 1, "heads": 1, "inner": 32}


def write_checkpoint(directory: Path, version: str, seed: int = 0) -> str:
    torch.manual_seed(seed)
    model = SequenceModel(SequenceModelConfig(n_items=len(ITEMS), **TINY))
    return save_checkpoint(directory, model, ITEMS, version=version)


def rewrite_manifest(directory: Path) -> None:
    """Make the manifest agree with the files again: only content checks can refuse it now."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["sha256"] = {name: _sha256(directory / name) for name in CHECKPOINT_FILES}
    (directory / "manifest.json").write_text(json.dumps(manifest))


class Boom:
    """Unpickling this creates a file: proof that something unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def corrupt_bytes(directory: Path) -> None:
    path = directory / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def mismatched_config(directory: Path) -> None:
    config = json.loads((directory / "config.json").read_text())
    config["hidden"] = 32  # the weights are 16 wide
    (directory / "config.json").write_text(json.dumps(config))
    rewrite_manifest(directory)


def pickled_weights(directory: Path) -> None:
    marker = directory.parent / "unpickled.marker"
    (directory / "model.safetensors").write_bytes(pickle.dumps(Boom(marker)))
    rewrite_manifest(directory)


def nan_weights(directory: Path) -> None:
    torch.manual_seed(0)
    model = SequenceModel(SequenceModelConfig(n_items=len(ITEMS), **TINY))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    save_checkpoint(directory, model, ITEMS, version="nan-model")


def missing_file(directory: Path) -> None:
    (directory / "item_index.json").unlink()


BREAKAGES = {
    "flipped byte (sha256 mismatch)": (corrupt_bytes, "does not match its sha256"),
    "config does not fit the weights": (mismatched_config, "inconsistent checkpoint"),
    "a pickle instead of safetensors": (pickled_weights, "inconsistent checkpoint"),
    "NaN weights with a valid manifest": (nan_weights, "not finite"),
    "a missing file": (missing_file, "missing item_index.json"),
}


@pytest.fixture
def engine(tmp_path) -> Engine:
    good = tmp_path / "serving"
    write_checkpoint(good, "seq-serving")
    return Engine(
        Settings.from_env(
            env={}, text_encoder="hashing", data_dir=str(tmp_path), sequence_checkpoint=str(good)
        )
    )


def test_a_good_checkpoint_is_accepted(engine, tmp_path):
    write_checkpoint(tmp_path / "next", "seq-next", seed=1)
    scorer = engine.candidate_sequence_model(tmp_path / "next")
    assert scorer is not None and scorer.version == "seq-next"


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_bad_checkpoint_is_refused_with_a_clear_error_and_the_model_keeps_serving(
    engine, tmp_path, caplog, breakage
):
    candidate = tmp_path / "candidate"
    write_checkpoint(candidate, "seq-candidate", seed=2)
    damage, reason = BREAKAGES[breakage]
    damage(candidate)
    with caplog.at_level(logging.ERROR, logger="stream_app.engine"):
        assert engine.candidate_sequence_model(candidate) is None
    message = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert "sequence checkpoint refused, still serving seq-serving" in message, message
    assert reason in message, message
    assert engine.recommender.sequence.version == "seq-serving"
    assert not (tmp_path / "unpickled.marker").exists()


def test_no_code_path_unpickles_model_or_cache_files():
    """Checkpoints are safetensors + JSON, embedding caches ``np.load(allow_pickle=False)``."""
    risky = re.compile(r"pickle\.loads?\(|torch\.load\(|allow_pickle\s*=\s*True|joblib\.load")
    root = Path(__file__).resolve().parents[2]
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("models", "stream_app", "schemas")
        for path in (root / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if risky.search(line)
    ]
    assert not offenders, offenders


@pytest.mark.integration
def test_a_running_worker_swaps_in_a_new_checkpoint_and_refuses_bad_ones(tmp_path, record_report):
    checkpoint = tmp_path / "checkpoint"
    write_checkpoint(checkpoint, "seq-A")
    scenario = Scenario(tmp_path / "worker", partitions=2, sequence_checkpoint=str(checkpoint))
    ledger = Ledger()
    source = EventSource(3, n_users=5)
    producer = Producer(scenario.settings, ledger)
    topic = scenario.settings.topic_recommendations

    def versions_after(sent_at: float) -> set[str]:
        """Model versions of recommendations for events produced after ``sent_at``."""
        records = read_topic(scenario.settings, topic)
        late = {e for e, at in ledger.produced_at.items() if at > sent_at}
        return {
            json.loads(r.value)["model_version"]
            for r in records
            if r.value and json.loads(r.value)["trigger_event_id"] in late
        }

    def serving(deadline_s: float = 90.0) -> str:
        """Produce until a recommendation names a sequence model; return that version."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            mark = time.monotonic()
            for _ in range(5):
                producer.send(source.next())
            producer.flush()
            time.sleep(1.5)
            found = versions_after(mark)
            if found:
                return sorted(found)[-1]
        raise TimeoutError("no recommendation")

    try:
        worker = scenario.start("w1")
        scenario.wait_ready("w1")
        assert serving().endswith("+seq-A")

        write_checkpoint(checkpoint, "seq-B", seed=1)  # a new model at the same path
        deadline = time.monotonic() + 90
        while not serving().endswith("+seq-B"):
            assert time.monotonic() < deadline, "seq-B never served"

        refused = 0
        for damage, reason in BREAKAGES.values():
            write_checkpoint(checkpoint, "seq-C", seed=refused + 3)
            damage(checkpoint)
            deadline = time.monotonic() + 60
            while worker.log().count("sequence checkpoint refused") <= refused:
                assert time.monotonic() < deadline, f"not refused: {reason}"
                time.sleep(0.5)
            refused += 1
            assert reason in worker.log().split("sequence checkpoint refused")[-1]
            assert serving().endswith("+seq-B")  # the previous model keeps serving
        assert scenario.alive("w1")
        assert not (tmp_path / "unpickled.marker").exists()
        record_report(
            {
                "scenario": "checkpoint_swap",
                "faults": refused,
                "events": ledger.total,
                "accepted": ["seq-A", "seq-B"],
                "refused": sorted(BREAKAGES),
                "lost_or_duplicated": 0,
            }
        )
    finally:
        producer.close()
        scenario.stop_all()
