"""The vote log keeps every acknowledged vote exactly as typed, as standard CSV that other tools
read completely, with writers killed at random."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from human_ratings.store import (
    COLUMNS,
    DuplicateVote,
    VoteError,
    VoteStore,
    _crc,
    neutralize,
    restore,
)

from .conftest import examples, make_vote

ROOT = Path(__file__).resolve().parent.parent
TRICKY = [
    "nice story\n",
    "\r\n",
    "\n",
    "line one\nline two\r\nline three",
    "\r=1+1",
    "'=x",
    "'+1",
    "+1",
    '"quoted, with commas"',
    '=HYPERLINK("http://x")',
    "tab\tinside",
    "ünïcödé ✓ 🌊",
    "'",
    "''",
]


def pandas_votes(path: Path) -> list[dict]:
    """The log as pandas reads it, cells restored by the documented rule."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    text = ("annotator", "item_id", "comment", "settings")
    return [
        {k: restore(row[k]) if k in text else row[k] for k in COLUMNS}
        for _, row in frame.iterrows()
    ]


@pytest.mark.parametrize("text", TRICKY)
def test_free_text_round_trips_byte_for_byte(tmp_path, text):
    path = tmp_path / "votes.csv"
    VoteStore(path).append(make_vote(annotator=text.strip() or "x", comment=text, settings=text))
    (vote,) = VoteStore(path).votes()  # a fresh reader: nothing cached
    assert (
        vote.comment == text and vote.settings == text and vote.annotator == (text.strip() or "x")
    )
    (row,) = pandas_votes(path)
    assert row["comment"] == text and row["settings"] == text
    (raw,) = list(csv.reader(path.open(newline="", encoding="utf-8")))[1:]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in raw)


def test_a_comment_ending_in_a_line_break_is_read_back_and_counts_for_the_one_vote_rule(tmp_path):
    store = VoteStore(tmp_path / "votes.csv")
    store.append(make_vote(comment="nice story\n"))
    with pytest.raises(DuplicateVote):
        VoteStore(tmp_path / "votes.csv").append(make_vote(comment="again"))


def test_annotators_who_differ_by_an_apostrophe_stay_apart(tmp_path):
    store = VoteStore(tmp_path / "votes.csv")
    store.append(make_vote(annotator="+1"))
    store.append(make_vote(annotator="'+1"))
    assert {v.annotator for v in store.votes()} == {"+1", "'+1"}
    assert store.rated_items("'+1") == {"i1"} and store.rated_items("+1") == {"i1"}


@given(st.text())
def test_neutralize_is_reversible(text):
    assert restore(neutralize(text)) == text


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85"])
def test_control_characters_get_the_write_forms_rule(char):
    with pytest.raises(VoteError, match="control character"):
        make_vote(comment=f"bad{char}")
    make_vote(comment="tab\tnewline\ncr\r")  # the three a multi-line field may hold


def test_a_log_written_by_schema_1_is_still_read_by_its_own_rule(tmp_path):
    """Schema 1 quoted only formula starts and wrote line breaks as spaces."""
    cells = ["'+1", "i1", "base", "tuned", "left", *[""] * 8, "'=sum", "", "", "", "0", "1"]
    cells.append("2026-01-01T00:00:00+00:00")
    path = tmp_path / "votes.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerow([*cells, _crc(cells)])
        old_apostrophe = ["'quoted", "i2", *cells[2:]]
        writer.writerow([*old_apostrophe, _crc(old_apostrophe)])
    store = VoteStore(path)
    store.append(make_vote(annotator="new", comment="'=x"))
    by_annotator = {v.annotator: v for v in store.votes()}
    assert by_annotator["+1"].comment == "=sum" and by_annotator["+1"].schema_version == 1
    assert "'quoted" in by_annotator  # under schema 1 a leading ' before text was the text's own
    assert by_annotator["new"].comment == "'=x" and by_annotator["new"].schema_version == 3


WRITER = """
import json, random, sys
from human_ratings.store import DuplicateVote, Vote, VoteStore

path, ack, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
alphabet = [chr(c) for c in range(32, 127)] + list("\\n\\r\\t'\\"=+-@,;é✓🌊")
store = VoteStore(path)
with open(ack, "a", encoding="utf-8") as out:
    for i in range(n):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        vote = Vote(
            annotator=f"w{seed}-{rng.randrange(30)}" + rng.choice(["", "'", "+", "="]),
            item_id=f"item-{rng.randrange(40)}",
            system_left="base",
            system_right="tuned",
            choice=rng.choice(["left", "right", "tie", "both_bad"]),
            comment=text,
            settings=json.dumps({"i": i, "t": text}),
        )
        try:
            store.append(vote)
        except DuplicateVote:
            continue
        # Acknowledged: only now does the annotator see "Saved".
        out.write(json.dumps([vote.annotator, vote.item_id, vote.comment, vote.settings]) + "\\n")
        out.flush()
"""


@pytest.mark.integration  # kills writers for seconds
def test_every_acknowledged_vote_survives_writers_killed_at_random(tmp_path):
    """10,000 votes of random text from 4 processes, writers killed with SIGKILL at random and
    restarted; then every acknowledged vote is read exactly once, by our reader and by pandas,
    and no annotator has two votes on an item."""
    path, script = tmp_path / "votes.csv", tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(0)
    acks = [tmp_path / f"ack{w}.jsonl" for w in range(4)]
    per_round, rounds = 500, 5  # 4 writers x 5 rounds x 500 attempts = 10,000 votes tried
    kills = 0
    for r in range(rounds):
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    str(path),
                    str(acks[w]),
                    str(r * 10 + w),
                    str(per_round),
                ],
                env=env,
            )
            for w in range(4)
        ]
        time.sleep(rng.uniform(0.3, 1.5))
        victim = procs[rng.randrange(4)]
        if victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
            kills += 1
        for p in procs:
            p.wait(120)
    acked = [
        tuple(json.loads(line)) for a in acks if a.exists() for line in a.read_text().splitlines()
    ]
    assert kills >= 1 and len(acked) > 2000
    ours = [(v.annotator, v.item_id, v.comment, v.settings) for v in VoteStore(path).read_all()]
    theirs = [
        (v["annotator"], v["item_id"], v["comment"], v["settings"]) for v in pandas_votes(path)
    ]
    assert sorted(ours) == sorted(theirs)  # pandas reads every row, and the same text
    assert set(acked) <= set(ours)  # nothing acknowledged is lost or altered ...
    assert len(set(ours)) == len(ours)  # ... or written twice
    pairs = [(a, i) for a, i, _, _ in ours]
    assert len(set(pairs)) == len(pairs)  # one vote per (annotator, item)


@settings(max_examples=examples(60), deadline=None)
@given(
    comment=st.text(st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from("\n\r\t")),
    annotator=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=50),
)
def test_any_text_round_trips_through_the_log(tmp_path_factory, comment, annotator):
    if not annotator.strip():
        annotator = "x" + annotator
    path = tmp_path_factory.mktemp("log") / "votes.csv"
    VoteStore(path).append(make_vote(annotator=annotator, comment=comment))
    (vote,) = VoteStore(path).read_all()
    assert (vote.annotator, vote.comment) == (annotator, comment)
    (row,) = pandas_votes(path)
    assert (row["annotator"], row["comment"]) == (annotator, comment)


def test_a_schema_2_log_is_read_and_new_votes_are_refused_with_a_clear_message(tmp_path):
    """Schema 3 added the study, the seconds and the anonymous flag: a schema 2 log keeps its
    votes readable, and is never mixed with rows of other columns."""
    from human_ratings.store import COLUMNS_2

    cells = ["ann", "i1", "base", "tuned", "left", *[""] * 8, "ok", "3", "3", "{}", "0", "2"]
    cells.append("2026-01-01T00:00:00+00:00")
    path = tmp_path / "votes.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(COLUMNS_2)
        writer.writerow([*cells, _crc(cells)])
    before = path.read_bytes()
    (vote,) = VoteStore(path).votes()
    assert (vote.annotator, vote.schema_version, vote.study, vote.seconds) == ("ann", 2, "", None)
    with pytest.raises(VoteError, match="older schema.*move it aside"):
        VoteStore(path).append(make_vote(annotator="new"))
    assert path.read_bytes() == before


def test_study_seconds_and_anonymous_round_trip(tmp_path):
    store = VoteStore(tmp_path / "votes.csv")
    store.append(make_vote(study="s1", seconds=12.3456, anonymous=True))
    (vote,) = VoteStore(tmp_path / "votes.csv").votes()
    assert (vote.study, vote.seconds, vote.anonymous) == ("s1", 12.346, True)
    with pytest.raises(VoteError, match="seconds"):
        make_vote(seconds=-1)
