"""The app under load, killed with SIGKILL halfway and started again (``python -m bench.soak``,
short, run as a user runs it)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # the real embedded model, or a process


def test_a_killed_and_restarted_app_loses_alters_and_doubles_no_vote(tmp_path):
    out = tmp_path / "soak.json"
    args = ["--seconds", "30", "--annotators", "3", "--writers", "1", "--seed", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", *args, "--json", str(out)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["acknowledged"] >= 20 and r["stories"] >= 1, r
    assert 0 < r["acknowledged_after_restart"] < r["acknowledged"], r  # votes on both sides
    assert (r["lost"], r["altered"], r["duplicates"]) == (0, 0, 0), r
    assert r["stored"] == r["pandas_rows"] >= r["acknowledged"], r
    assert r["errors"] == 0 and r["app_tracebacks"] == 0, r
