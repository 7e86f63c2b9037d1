"""The README's main command: ``streamrec demo`` on the embedded broker, end to end."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_trains_the_transformer_and_serves_it_live(tmp_path):
    env = {**os.environ, "STREAMREC_TEXT_ENCODER": "hashing", "STREAMREC_LOG_LEVEL": "warning"}
    run = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "demo", "--rate", "200", "--duration", "45"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sequence model sasrec_transformer/" in run.stderr, run.stderr[-3000:]
    shown = run.stdout
    # Live recommendations, each item with its reason; the Transformer leads some of them.
    assert shown.count("user-") >= 20, shown[-2000:]
    assert "next in your sequence after" in shown, shown[-3000:]
    assert "often chosen with" in shown or "similar to" in shown, shown[-3000:]
