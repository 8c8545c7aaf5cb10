"""The scripted study of ``python -m bench.study_sim``, smaller: 12 annotators (8 careful, 4
careless) over the real app in its own process, three systems, k = 3, SIGKILL and restart
midway; run as a person runs it.

Neighbouring systems are 2 Bradley-Terry units apart here (a careful reader prefers the better
one 88% of the time): with about 20 kept votes per pair the true order then comes out wrong in
far under 1 run in 10,000, so a wrong order is the pipeline's fault. At the benchmark's gap of 1
(73%) chance alone reverses it in about 1 run in 50."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # a second process, for tens of seconds


def test_a_scripted_study_excludes_the_careless_and_recovers_the_true_order(tmp_path):
    out = tmp_path / "sim.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.study_sim", "--items", "30", "--read-s", "0.8"]
        + ["--seed", "5", "--gap", "2", "--json", str(out)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    r = json.loads(out.read_text())
    assert r["killed_midway"] and r["acknowledged"] >= 90, r
    assert r["lost"] == 0 and r["duplicates"] == 0, r  # no vote lost or counted twice
    assert r["every_item_k_or_k_plus_1"], r
    assert r["careless_excluded"] >= 3 and r["careful_excluded"] <= 1, r
    assert r["true_order_recovered"], r
    assert r["app_tracebacks"] == 0, r
    assert done.returncode == 0, done.stdout[-2000:]
