"""Readers' reactions: exact text, concurrent and killed writers, clear refusals, counts."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from human_ratings.reactions import Reaction, ReactionError, ReactionLog, system_of

ROOT = Path(__file__).resolve().parent.parent
PROVENANCE = {
    "adapter_name": "smollm2-135m-wp-demo",
    "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "backend": "llamacpp",
    "sampling": {"seed": 7, "temperature": 0.8},
    "request": {"genre": "mystery"},
}


def test_each_kind_is_kept_with_what_made_the_story(tmp_path):
    log = ReactionLog(tmp_path / "reactions.jsonl")
    story = 'Mara ran.\n"=SUM(A1)" she said, 完.'
    log.append(Reaction("up", story, system=system_of(PROVENANCE), provenance=PROVENANCE))
    log.append(Reaction("down", story, system="base", provenance={}))
    log.append(Reaction("edit", story, edited=story + "\nThe end.", system="base", reader="ann"))
    up, down, edit = ReactionLog(tmp_path / "reactions.jsonl").read_all()
    assert (up.kind, up.story, up.provenance, up.system) == (
        "up",
        story,
        PROVENANCE,
        "smollm2-135m-wp-demo",
    )
    assert (down.kind, edit.kind, edit.edited, edit.reader) == (
        "down",
        "edit",
        story + "\nThe end.",
        "ann",
    )
    assert up.reader == "" and up.timestamp_utc  # anonymous unless a name is given
    assert log.counts() == {
        "base": {"up": 0, "down": 1, "edit": 1},
        "smollm2-135m-wp-demo": {"up": 1, "down": 0, "edit": 0},
    }
    assert system_of({"base_model": "b"}) == "b" and system_of({}) == "unknown"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "love", "story": "A."}, "one of up, down, edit"),
        ({"kind": "up", "story": "  "}, "no finished story"),
        ({"kind": "edit", "story": "A.", "edited": ""}, "edited story is empty"),
        ({"kind": "edit", "story": "A.", "edited": "A."}, "same as the story"),
        ({"kind": "up", "story": "A.", "edited": "B."}, "only an edit"),
        ({"kind": "up", "story": "x" * 100_001}, "too long"),
        ({"kind": "up", "story": "A.", "reader": "r" * 65}, "at most 64"),
    ],
)
def test_a_reaction_that_cannot_be_kept_says_why(kwargs, message):
    with pytest.raises(ReactionError, match=message):
        Reaction(**kwargs)


def test_a_torn_or_altered_record_is_lost_alone(tmp_path):
    path = tmp_path / "reactions.jsonl"
    log = ReactionLog(path)
    log.append(Reaction("up", "One."))
    with path.open("ab") as f:
        f.write(b'{"kind": "up", "story": "half a rec')  # a writer killed mid-record
    assert [r.story for r in ReactionLog(path).read_all()] == ["One."]
    log.append(Reaction("down", "Two."))
    assert [r.story for r in ReactionLog(path).read_all()] == ["One.", "Two."]
    assert b"half a rec" in (tmp_path / "reactions.jsonl.torn").read_bytes()
    lines = path.read_bytes().split(b"\n")
    lines[0] = lines[0].replace(b"One.", b"Won.")  # altered after it was written
    path.write_bytes(b"\n".join(lines))
    assert [r.story for r in ReactionLog(path).read_all()] == ["Two."]


def test_threads_appending_at_once_lose_and_merge_nothing(tmp_path):
    log = ReactionLog(tmp_path / "reactions.jsonl")
    barrier = threading.Barrier(8)

    def write(w):
        barrier.wait()
        for i in range(40):
            log.append(Reaction("up", f"story {w}-{i}\n" + "x" * random.randrange(5000)))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stories = [r.story.split("\n")[0] for r in ReactionLog(tmp_path / "reactions.jsonl").read_all()]
    assert sorted(stories) == sorted(f"story {w}-{i}" for w in range(8) for i in range(40))


WRITER = """
import json, sys
from human_ratings.reactions import Reaction, ReactionLog
log, ack = ReactionLog(sys.argv[1]), open(sys.argv[2], "a")
seed, n = int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    text = f"{seed}-{i} " + "y" * (i * 37 % 3000) + "\\n\\u2028\\"end\\""
    log.append(Reaction("edit", "original", edited=text))
    ack.write(json.dumps(text) + "\\n")  # acknowledged: the reader now sees "Saved"
    ack.flush()
"""


def test_every_acknowledged_reaction_survives_writers_killed_at_random(tmp_path):
    path, script = tmp_path / "reactions.jsonl", tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng, kills = random.Random(1), 0
    acks = [tmp_path / f"ack{w}.jsonl" for w in range(3)]
    for r in range(3):
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(path), str(acks[w]), str(r * 10 + w), "400"],
                env=env,
            )
            for w in range(3)
        ]
        time.sleep(rng.uniform(0.3, 1.0))
        victim = procs[rng.randrange(3)]
        if victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
            kills += 1
        for p in procs:
            p.wait(120)
    acked = [json.loads(line) for a in acks if a.exists() for line in a.read_text().splitlines()]
    kept = [r.edited for r in ReactionLog(path).read_all()]
    assert kills >= 1 and len(acked) > 300
    assert set(acked) <= set(kept) and len(set(kept)) == len(kept)


@settings(max_examples=40, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1))
def test_any_text_round_trips(tmp_path_factory, text):
    if not text.strip():
        text = "x" + text
    path = tmp_path_factory.mktemp("r") / "reactions.jsonl"
    ReactionLog(path).append(Reaction("edit", "the story", edited=text))
    (back,) = ReactionLog(path).read_all()
    assert back.edited == text
