"""The app under load, killed with SIGKILL halfway and started again (bench/soak.py, short)."""

from bench.soak import run


def test_a_killed_and_restarted_app_loses_alters_and_doubles_no_vote():
    r = run(seconds=30, annotators=3, writers=1, seed=1)
    assert r["acknowledged"] >= 20 and r["stories"] >= 1, r
    assert 0 < r["acknowledged_after_restart"] < r["acknowledged"], r  # votes on both sides
    assert (r["lost"], r["altered"], r["duplicates"]) == (0, 0, 0), r
    assert r["stored"] == r["pandas_rows"] >= r["acknowledged"], r
    assert r["errors"] == 0 and r["app_tracebacks"] == 0, r
