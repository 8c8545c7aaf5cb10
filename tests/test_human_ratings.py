"""The vote log (safe appends, torn rows, formulas, one vote per item) and its statistics."""

import csv
import json
import multiprocessing
import threading

import pytest

from human_ratings.report import markdown
from human_ratings.stats import (
    bradley_terry,
    bradley_terry_ci,
    position_bias,
    summary,
    win_rates,
)
from human_ratings.store import COLUMNS, DuplicateVote, VoteError, VoteStore

from .conftest import make_vote


def test_a_vote_appears_exactly_once_with_the_fixed_columns(tmp_path):
    store = VoteStore(tmp_path / "votes.csv")
    store.append(
        make_vote(
            left_coherence=4,
            right_coherence=2,
            comment="nice",
            seed_left=3,
            seed_right=3,
            settings='{"t": 0.8}',
        )
    )
    rows = list(csv.reader((tmp_path / "votes.csv").open()))
    assert rows[0] == COLUMNS and len(rows) == 2
    (vote,) = store.votes()
    assert (vote.annotator, vote.choice, vote.left_coherence, vote.comment) == (
        "ann",
        "left",
        4,
        "nice",
    )
    assert vote.schema_version == 3 and vote.timestamp_utc.endswith("+00:00")


def test_one_vote_per_annotator_and_item_unless_replaced(tmp_path):
    store = VoteStore(tmp_path / "votes.csv")
    store.append(make_vote(choice="left"))
    with pytest.raises(DuplicateVote, match="^ann has already rated item i1$"):
        store.append(make_vote(choice="right"))
    store.append(make_vote(annotator="other", choice="right"))
    store.append(make_vote(choice="tie", replaces=True))
    assert len(store.read_all()) == 3
    assert {(v.annotator, v.choice) for v in store.votes()} == {("ann", "tie"), ("other", "right")}


def test_formulas_are_neutralised_in_every_cell(tmp_path):
    store = VoteStore(tmp_path / "votes.csv")
    store.append(
        make_vote(
            annotator="=cmd|'/c calc'!A1",
            item="+1",
            left="-2",
            right="@x",
            comment='=HYPERLINK("http://x")\nsecond line',
        )
    )
    raw = list(csv.reader((tmp_path / "votes.csv").open()))[1]
    assert all(not cell.startswith(("=", "+", "-", "@")) for cell in raw)
    (vote,) = store.votes()
    assert vote.annotator == "=cmd|'/c calc'!A1" and vote.system_left == "-2"
    assert vote.comment == '=HYPERLINK("http://x")\nsecond line'


def test_a_torn_row_is_skipped_and_never_corrupts_the_file(tmp_path):
    path = tmp_path / "votes.csv"
    store = VoteStore(path)
    store.append(make_vote(item="i1"))
    with path.open("ab") as f:
        f.write(b'crash,i2,base,tuned,left,,,,,,,,,"half a comm')  # killed mid-write
    assert [v.item_id for v in VoteStore(path).votes()] == ["i1"]
    store.append(make_vote(item="i3", comment="after the crash"))
    fresh = VoteStore(path)
    assert [v.item_id for v in fresh.votes()] == ["i1", "i3"]
    # The torn row was cut off before the append and kept aside: the csv module (and pandas,
    # spreadsheets) read every row, where its open quote would have swallowed i3.
    rows = list(csv.reader(path.open(newline="")))
    assert [r[1] for r in rows[1:]] == ["i1", "i3"]
    torn = b'crash,i2,base,tuned,left,,,,,,,,,"half a comm\n'
    assert (tmp_path / "votes.csv.torn").read_bytes() == torn


def test_a_hand_edited_row_fails_its_checksum(tmp_path):
    path = tmp_path / "votes.csv"
    VoteStore(path).append(make_vote(choice="left"))
    path.write_text(path.read_text().replace(',"left",', ',"right",'))
    assert VoteStore(path).votes() == []


def test_bad_votes_are_refused_with_a_reason():
    with pytest.raises(VoteError, match="choice"):
        make_vote(choice="maybe")
    with pytest.raises(VoteError, match="1-5"):
        make_vote(left_engagement=7)
    with pytest.raises(VoteError, match="annotator is missing"):
        make_vote(annotator=" ")
    with pytest.raises(VoteError, match="different systems"):
        make_vote(left="a", right="a")


def test_limits_are_exact_and_every_reason_is_named():
    make_vote(annotator="a" * 200, comment="c" * 5000)  # at the limits: accepted
    with pytest.raises(VoteError, match="^annotator is too long$"):
        make_vote(annotator="a" * 201)
    with pytest.raises(VoteError, match="^comment must be text of at most 5000 characters$"):
        make_vote(comment="c" * 5001)
    with pytest.raises(VoteError, match="^comment must be text"):
        make_vote(comment=5)
    with pytest.raises(VoteError, match=r"^comment contains a control character \('\\x07'\)$"):
        make_vote(comment="a\x07")
    with pytest.raises(
        VoteError, match="^choice must be one of .*; the two sides must show different systems$"
    ):
        make_vote(choice="maybe", left="a", right="a")


def test_the_raw_file_has_plain_cells_a_checksum_and_unix_line_ends(tmp_path):
    import zlib

    path = tmp_path / "votes.csv"
    VoteStore(path).append(make_vote(left_coherence=4, seed_left=7))
    raw = path.read_bytes()
    assert b"\r\n" not in raw and raw.endswith(b"\n")
    header, row = list(csv.reader(path.open(newline="")))
    cells = dict(zip(header, row))
    assert cells["left_coherence"] == "4" and cells["seed_left"] == "7" and cells["replaces"] == "0"
    crc = format(zlib.crc32("\x1f".join(row[:-1]).encode()), "08x")
    assert cells["row_crc"] == crc


def test_a_replacing_vote_is_read_back_as_one(tmp_path):
    store = VoteStore(tmp_path / "votes.csv")
    written = [make_vote(choice="left"), make_vote(choice="right", replaces=True)]
    for v in written:
        store.append(v)
    assert VoteStore(tmp_path / "votes.csv").read_all() == written  # every field, timestamps too
    assert [v.replaces for v in written] == [False, True]
    (vote,) = store.votes()
    assert vote.choice == "right"


def test_the_log_is_a_plain_file_and_a_replaced_one_is_read_afresh(tmp_path):
    path = tmp_path / "votes.csv"
    store = VoteStore(path)
    store.append(make_vote(item="i1", comment="x" * 500))
    assert path.stat().st_mode & 0o777 == 0o644 & ~_umask()
    assert [v.item_id for v in store.read_all()] == ["i1"]  # parsed to the end
    other = VoteStore(tmp_path / "other.csv")
    other.append(make_vote(item="i9"))
    path.write_bytes((tmp_path / "other.csv").read_bytes())  # shorter: a restored backup
    assert [v.item_id for v in store.read_all()] == ["i9"]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_rated_items_are_the_annotators_own(tmp_path):
    store = VoteStore(tmp_path / "votes.csv")
    store.append(make_vote(annotator="ann", item="i1"))
    store.append(make_vote(annotator="ann", item="i2"))
    store.append(make_vote(annotator="bob", item="i3"))
    assert store.rated_items("ann") == {"i1", "i2"} and store.rated_items("eve") == set()


def test_a_damaged_row_loses_that_row_alone(tmp_path):
    path = tmp_path / "votes.csv"
    store = VoteStore(path)
    for i in range(3):
        store.append(make_vote(item=f"i{i}"))
    raw = path.read_bytes()
    at = raw.index(b'"i1"')
    path.write_bytes(raw[:at] + b'"\xff\xfe"' + raw[at + 4 :])  # bytes that are not UTF-8
    assert [v.item_id for v in VoteStore(path).read_all()] == ["i0", "i2"]


def test_many_threads_lose_nomake_vote(tmp_path):
    store = VoteStore(tmp_path / "votes.csv")

    def worker(k):
        for i in range(25):
            store.append(make_vote(annotator=f"t{k}", item=f"i{i}", comment="x" * 300))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(VoteStore(tmp_path / "votes.csv").read_all()) == 200


def _process_worker(path, k):
    store = VoteStore(path)
    for i in range(25):
        store.append(make_vote(annotator=f"p{k}", item=f"i{i}", comment="y" * 500))


def test_many_processes_lose_no_vote_and_interleave_nothing(tmp_path):
    path = tmp_path / "votes.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_process_worker, args=(path, k)) for k in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 150
    votes = VoteStore(path).read_all()
    assert len(votes) == 150 and len({(v.annotator, v.item_id) for v in votes}) == 150


def test_win_rates_and_bradley_terry_rank_the_better_system_first():
    votes = [
        make_vote(
            annotator=f"a{i}",
            item=f"i{i}",
            left="A",
            right="B",
            choice="left" if i % 4 else "right",
        )
        for i in range(40)
    ]
    votes += [
        make_vote(
            annotator=f"b{i}",
            item=f"j{i}",
            left="B",
            right="C",
            choice="left" if i % 3 else "right",
        )
        for i in range(30)
    ]
    rates = {r["system"]: r for r in win_rates(votes)}
    assert rates["A"]["wins"] == 30 and rates["A"]["losses"] == 10
    assert rates["A"]["ci_low"] < 0.75 < rates["A"]["ci_high"]
    bt = bradley_terry(votes)
    assert bt["A"] > bt["B"] > bt["C"]
    ranked = bradley_terry_ci(votes, rounds=50)
    assert [r["system"] for r in ranked] == ["A", "B", "C"]
    assert all(r["ci_low"] <= r["bt_score"] <= r["ci_high"] for r in ranked)


def test_position_bias_detects_a_left_preference():
    votes = [
        make_vote(annotator=f"a{i}", item=f"i{i}", choice="left" if i < 45 else "right")
        for i in range(50)
    ]
    pb = position_bias(votes)
    assert pb["left_win_rate"] == 0.9 and pb["p_value"] < 1e-6
    even = position_bias(
        [
            make_vote(annotator=f"a{i}", item=f"i{i}", choice="left" if i % 2 else "right")
            for i in range(50)
        ]
    )
    assert even["p_value"] == pytest.approx(1.0)


def test_summary_has_every_section():
    votes = [
        make_vote(annotator=a, item=f"i{i}", choice=c, left_coherence=r, right_coherence=r)
        for i in range(5)
        for a, c, r in (("x", "left", 4), ("y", "left", 4), ("z", "tie", 3))
    ]
    s = summary(votes, bootstrap_rounds=20)
    assert s["votes"] == 15 and s["annotators"] == 3 and s["items"] == 5
    coherence = [r for r in s["agreement"] if r["criterion"] == "coherence"]
    assert [r["statistic"].split(" (")[0] for r in coherence] == [
        "Krippendorff's alpha",
        "Cohen's kappa",
        "Fleiss' kappa",
    ]
    alpha, cohen, fleiss = coherence
    assert (alpha["units"], alpha["raters"], alpha["unit"]) == (10, 3, "stories")
    assert fleiss["status"] == "ok" and fleiss["units"] == 10 and fleiss["raters"] == 3
    assert cohen["status"] == "n/a"
    text = markdown(s)
    assert "| coherence | Fleiss' kappa (3 ratings per unit) |" in text
    assert "10 stories, 3 raters" in text


def test_pairs_files_are_checked_line_by_line(tmp_path):
    from human_ratings.pairs import PairsError, load_items, load_requests

    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"item_id": "a", "request": {"prompt": "x"}, "stories": {"s1": {}}}\n')
    with pytest.raises(PairsError, match=r"pairs.jsonl:1: not an A/B item .*two stories"):
        load_items(bad)
    reqs = tmp_path / "requests.jsonl"
    reqs.write_text('{"prompt": "fine"}\n\n{"genre": "cooking"}\n')
    with pytest.raises(PairsError, match=r"requests.jsonl:3: not a story request .*genre"):
        load_requests(reqs)
    with pytest.raises(PairsError, match="cannot read"):
        load_items(tmp_path / "missing.jsonl")


def test_stats_json_is_strict_json_with_undefined_figures_as_null(tmp_path, capsys):
    from human_ratings.__main__ import main

    store = VoteStore(tmp_path / "votes.csv")
    for a in ("x", "y", "z"):  # every rating 3: agreement is undefined
        store.append(make_vote(annotator=a, choice="tie", left_coherence=3, right_coherence=3))
    assert main(["stats", str(tmp_path / "votes.csv"), "--json", "--bootstrap", "5"]) == 0

    def no_nan(word):
        raise AssertionError(f"{word} in the JSON")

    result = json.loads(capsys.readouterr().out, parse_constant=no_nan)
    rows = [r for r in result["agreement"] if r["criterion"] == "coherence"]
    assert {r["status"] for r in rows} == {"undefined", "n/a"}
    assert all(r["value"] is None for r in rows)


def test_settings_are_one_json_object_with_sorted_keys():
    from human_ratings.store import settings_json

    text = settings_json({"top_p": 0.9, "seed": 1}, {"seed": 2})
    assert text == '{"left": {"seed": 1, "top_p": 0.9}, "right": {"seed": 2}}'
