"""Soak test of the whole app: annotators and writers through gradio_client, the app killed
with SIGKILL halfway and started again on the same vote log.

    python -m bench.soak [--seconds 180] [--annotators 6] [--writers 2]

``app.py`` runs in its own process on the embedded default. Annotator threads start rating
under a fresh ID, vote on every item with random choices, ratings and comments of awkward
text (line breaks, quotes, formulas, non-Latin scripts), and press Next item; writer threads ask
for short stories. Halfway the app gets SIGKILL and is started again; clients whose request was
cut off go on under the same annotator ID, so the restarted app must still know what each one
has rated. At the end every acknowledged vote ("Saved.") must be in the log exactly
once, as it was typed, read back by the project's reader and by pandas; nothing may be counted
twice; no request may end in an error the app did not answer with a message; and the app's own
log must hold no traceback. Prints votes/s and the counts, and returns them.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.app_serving import ROOT, start_app
from story_ui.rate import CHOICE_LABELS

PIECES = [
    "nice story",
    "line one\nline two",
    "ends with a newline\n",
    "\r\n",
    'she said "no", twice',
    "=SUM(A1:A9)",
    "+1",
    "'+1",
    "-minus",
    "@mention",
    "Zoë, café, naïve",
    "勇敢な猫",
    "قصة جميلة",
    "🐉🔥",
    "tab\there",
    "",
]
REVEAL = re.compile(r"Story \*\*A\*\* was written by `([^`]*)`, story \*\*B\*\* by `([^`]*)`")
RECEIPT = re.compile(r"receipt `([0-9a-f]+)`")
SAMPLING = [0.8, 0.92, 50, 1.15, 32]
"""temperature, top_p, top_k, repetition penalty, max new tokens: short stories."""
PAIRS = ROOT / "human_ratings" / "demo_pairs.jsonl"
NAMES = ["ann", "Zoë", "+1", "=x", "a,b", 'q"t']
"""Annotator ID stems (a counter follows): formulas, commas and quotes must round-trip too."""
FORM = ["Mara: stubborn, kind", "a lighthouse", "", "mystery", "", "", "", "", "flash", "", ""]
"""The Write form in the order of /write's parameters (characters ... prompt, arc)."""


@dataclass
class Tally:
    """What the clients saw; one lock for all of it."""

    acknowledged: list[dict] = field(default_factory=list)
    stories: int = 0
    interrupted: int = 0  # cut off by the kill: expected, and never acknowledged
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class App:
    """The app process, its URL, and whether it is down (being killed or restarted)."""

    def __init__(self, study: Path, log: Path):
        self.study, self.log = study, log
        self.votes = study / "votes.csv"
        self.proc, self.url, self.start_s = start_app(self.votes, "--study", str(study), log=log)
        self.restart_s = None
        self.down = threading.Event()
        self.epoch = 0  # bumped by each kill: a request that spans one was cut off

    def kill_and_restart(self) -> None:
        self.down.set()
        self.epoch += 1
        self.proc.kill()  # SIGKILL: no clean-up of any kind
        self.proc.wait()
        self.proc, self.url, self.restart_s = start_app(
            self.votes, "--study", str(self.study), log=self.log
        )
        self.down.clear()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3)))[:5000]


def _call(app: App, tally: Tally, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, one request; None when it failed (a failure the kill caused is
    counted as interrupted, any other as an error)."""
    epoch = app.epoch
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every failure is sorted and counted
        if app.down.is_set() or app.epoch != epoch:
            with tally.lock:
                tally.interrupted += 1
            return None
        with tally.lock:
            tally.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        return None


def annotator(app: App, tally: Tally, stop: threading.Event, seed: int) -> None:
    from gradio_client import Client

    rng = random.Random(seed)
    n, name = 0, None
    while not stop.is_set():
        while app.down.is_set() and not stop.is_set():
            time.sleep(0.2)
        if name is None:
            n += 1
            name = f"{rng.choice(NAMES)}-{seed}-{n}"
        client = _call(app, tally, Client, app.url, verbose=False)
        start = client and client.predict
        shown = start and _call(app, tally, start, name, "", api_name="/start_rating")
        while shown and not stop.is_set():
            if not shown[1]:
                name = None  # every item rated: start over under a new ID
                break
            label = rng.choice(list(CHOICE_LABELS))
            ratings = [rng.choice([None, "1", "2", "3", "4", "5"]) for _ in range(8)]
            comment = _text(rng)
            epoch = app.epoch
            res = _call(app, tally, client.predict, label, comment, *ratings, api_name="/vote")
            if res is None:
                break  # cut off: the same annotator goes on after the restart
            reveal = REVEAL.search(res[-1] or "")
            receipt = RECEIPT.search(res[-1] or "")
            if not reveal or not receipt:
                with tally.lock:
                    tally.errors.append(f"vote not saved: {res[-1][:200]}")
                break
            with tally.lock:
                tally.acknowledged.append(
                    {
                        "annotator": name,
                        "receipt": receipt.group(1),
                        "system_left": reveal.group(1),
                        "system_right": reveal.group(2),
                        "choice": CHOICE_LABELS[label],
                        "comment": comment,
                        "ratings": [None if r is None else int(r) for r in ratings],
                        "after_restart": epoch > 0,
                    }
                )
            shown = _call(app, tally, client.predict, api_name="/next_item")


def writer(app: App, tally: Tally, stop: threading.Event, seed: int) -> None:
    from gradio_client import Client

    rng = random.Random(seed)
    while not stop.is_set():
        while app.down.is_set() and not stop.is_set():
            time.sleep(0.2)
        client = _call(app, tally, Client, app.url, verbose=False)
        while client and not stop.is_set():
            s = rng.randrange(2**31)
            out = _call(
                app, tally, client.predict, *FORM, *SAMPLING, s, False, 1, "", api_name="/write"
            )
            if out is None:
                break
            with tally.lock:
                if out[1].startswith("Done:"):
                    tally.stories += 1
                else:
                    tally.errors.append(f"story not written: {out[1][:200]}")


def check_log(votes: Path, acknowledged: list[dict]) -> dict:
    """Every acknowledged vote exactly once and exactly as typed, by both readers."""
    import pandas as pd

    from human_ratings.identity import folder_key
    from human_ratings.store import CRITERIA, VoteStore, receipt, restore

    key = folder_key(votes.with_name("study.key"))
    stored = VoteStore(votes).read_all()
    keys = [(v.annotator, v.item_id) for v in stored]
    by_key = {(v.annotator, receipt(key, v.annotator, v.item_id)): v for v in stored}
    if votes.exists():
        frame = pd.read_csv(votes, dtype=str, keep_default_na=False)
    else:
        frame = pd.DataFrame({"annotator": [], "item_id": [], "study": []})
    pandas_keys = {
        (restore(a), receipt(key, restore(a), i))
        for a, i in zip(frame["annotator"], frame["item_id"], strict=True)
    }
    lost, altered = [], []
    for a in acknowledged:
        key = (a["annotator"], a["receipt"])
        v = by_key.get(key)
        if v is None or key not in pandas_keys:
            lost.append(key)
            continue
        ratings = [getattr(v, f"{side}_{c}") for side in ("left", "right") for c in CRITERIA]
        seen = (v.system_left, v.system_right, v.choice, v.comment, ratings)
        typed = (a["system_left"], a["system_right"], a["choice"], a["comment"], a["ratings"])
        if seen != typed:
            altered.append(key)
    return {
        "stored": len(stored),
        "pandas_rows": len(frame),
        "lost": len(lost),
        "altered": len(altered),
        "duplicates": len(keys) - len(set(keys)),
    }


def run(seconds: float = 180, annotators: int = 6, writers: int = 2, seed: int = 0) -> dict:
    from human_ratings.study import new_study

    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "app.log"
        # A local study of the demo items that names the systems after each vote, so that the
        # clients can say what they voted for (and k high enough for every annotator).
        study = new_study(Path(d) / "study", PAIRS, k=1000, access="local", reveal="each", gold=0)
        votes = study.votes_path
        app = App(study.folder, log)
        tally, stop = Tally(), threading.Event()
        threads = [
            threading.Thread(target=annotator, args=(app, tally, stop, seed * 1000 + i))
            for i in range(annotators)
        ] + [
            threading.Thread(target=writer, args=(app, tally, stop, seed * 1000 + 500 + i))
            for i in range(writers)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(seconds / 2)
        app.kill_and_restart()
        time.sleep(max(0.0, seconds - (time.perf_counter() - t0)))
        stop.set()
        for t in threads:
            t.join(timeout=120)
        wall = time.perf_counter() - t0
        app.stop()
        result = check_log(votes, tally.acknowledged)
        tracebacks = log.read_text(errors="replace").count("Traceback")
        torn = Path(f"{votes}.torn")
        result.update(
            seconds=round(wall, 1),
            acknowledged=len(tally.acknowledged),
            acknowledged_after_restart=sum(a["after_restart"] for a in tally.acknowledged),
            votes_per_s=round(len(tally.acknowledged) / wall, 2),
            stories=tally.stories,
            interrupted=tally.interrupted,
            errors=len(tally.errors),
            error_samples=tally.errors[:5],
            app_tracebacks=tracebacks,
            torn_bytes_kept=torn.stat().st_size if torn.exists() else 0,
            start_s=round(app.start_s, 1),
            restart_s=round(app.restart_s, 1),
        )
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--annotators", type=int, default=6)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    r = run(args.seconds, args.annotators, args.writers, args.seed)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    for k, v in r.items():
        print(f"{k:>16}: {v}")
    bad = r["lost"] + r["altered"] + r["duplicates"] + r["errors"] + r["app_tracebacks"]
    bad += r["stored"] != r["pandas_rows"] or not r["acknowledged_after_restart"]
    print("PASS" if bad == 0 else "FAIL")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
