"""Preprocessing: WritingPrompts pairs -> cleaned, tagged, prompt-formatted training examples.

Streams its input and writes JSONL as it goes, so memory stays flat at full dataset scale
(only the de-duplication fingerprints are kept). Uses several processes when asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from finetune.clean import clean_pair, fingerprint, truncate_words
from finetune.data import RawPair, iter_pairs
from storygen.arcs import extract_beats
from storygen.prompt_format import PROMPT_FORMAT_VERSION, render_example, render_plan_example
from storygen.request import MAX_PLOT_POINT, MAX_PROMPT, RequestError, Setting, validate
from storygen.tagger import length_bucket, tag_story

PLAN_WORDS = 150
"""Planned examples are the story's first words up to this many (at a sentence end)."""
PLANNED_SHARE = 0.5
"""The share of stories whose story example is written from their plan (the others straight
from the request), so the adapter learns both ways to write."""

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]")


@dataclass
class BuildReport:
    """How many rows went in, how many came out, and why the others were dropped."""

    read: int = 0
    kept: int = 0
    train: int = 0
    valid: int = 0
    dropped: Counter = field(default_factory=Counter)
    prompt_tags: Counter = field(default_factory=Counter)
    fields: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {
            "prompt_format": PROMPT_FORMAT_VERSION,
            "read": self.read,
            "kept": self.kept,
            "train": self.train,
            "valid": self.valid,
            "dropped": dict(self.dropped.most_common()),
            "prompt_tags": dict(self.prompt_tags.most_common()),
            "fields_present": dict(self.fields.most_common()),
        }


def _unit(key: str, salt: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for ``key``."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def plot_point(story: str) -> str:
    """One event sentence from the middle third of the story, to train "must happen"."""
    middle = story[len(story) // 3 : 2 * len(story) // 3]
    for m in _SENTENCE.finditer(middle):
        sentence = m.group(0).strip()
        if 6 <= len(sentence.split()) <= 25 and sentence[0].isupper():
            return sentence[:MAX_PLOT_POINT]
    return ""


def make_example(raw: RawPair, word_budget: int, field_dropout: float) -> tuple[dict | None, str]:
    """One raw pair -> (training example, "") or (None, why it was dropped)."""
    pair, why = clean_pair(raw.prompt, raw.story, raw.source_id, word_budget)
    if pair is None:
        return None, why
    key = fingerprint(pair)
    request = tag_story(pair.story, pair.prompt, pair.tags, pair.words).request
    request.prompt = request.prompt[:MAX_PROMPT]
    if _unit(key, "plot") < 0.5:
        request.plot_points = [p for p in [plot_point(pair.story)] if p]
    # Users fill in some fields, not all: drop each derived field now and then so the model
    # learns to write from partial requests too.
    for name in ("genre", "tone", "ending", "pov", "characters", "arc"):
        if _unit(key, name) < field_dropout:
            setattr(request, name, [] if name == "characters" else "")
    if _unit(key, "setting") < field_dropout:
        request.setting = Setting()
    try:
        request = validate(request)
    except RequestError as exc:
        return None, f"tagged request invalid ({next(iter(exc.errors))})"
    # Plan-then-write: the beats of the story's opening (cut to PLAN_WORDS at a sentence end,
    # so that a story written from them fits a training row whole) teach stage 1 (request ->
    # plan) as an extra task, and half of the stories are that opening written from its beats
    # (stage 2). The request's length is the opening's.
    opening = truncate_words(pair.story, PLAN_WORDS)
    plan = extract_beats(opening)
    planned = plan is not None and _unit(key, "planned") < PLANNED_SHARE
    tasks = []
    if plan is not None:
        plan_request = replace(request, length=length_bucket(len(opening.split())))
        try:
            plan_prompt, plan_completion = render_plan_example(plan_request, plan)
        except RequestError:  # a beat no request could hold (a control character): no plan
            plan, planned = None, False
        else:
            tasks.append({"task": "plan", "prompt": plan_prompt, "completion": plan_completion})
    if planned:
        prompt, completion = render_example(plan_request, opening, plan)
    else:
        prompt, completion = render_example(request, pair.story)
    return {
        "id": raw.source_id,
        "fingerprint": key,
        "prompt": prompt,
        "completion": completion,
        "request": request.to_dict(),
        "plan": plan.to_dict() if plan is not None else None,
        "planned": planned,
        "tasks": tasks,
        "prompt_tags": pair.tags,
        "words": pair.words,
    }, ""


def _present(request: dict) -> list[str]:
    """The request fields that are set (a setting counts when it names a place or an era)."""
    return [k for k, v in request.items() if (any(v.values()) if k == "setting" else v)]


def _work(args: tuple[tuple[list[str], list[str], list[str]], int, float, float]) -> list[tuple]:
    """Worker side: everything per pair, including the JSON line, so that the parent process
    only de-duplicates, counts and writes. Batches travel as three lists of strings (pickling
    those is much cheaper than pickling dataclasses). Returns one tuple per pair:
    (fingerprint or None, why dropped, prompt tags, fields present, JSON line, is validation)."""
    (prompts, stories, ids), budget, dropout, valid_fraction = args
    out = []
    for raw in map(RawPair, prompts, stories, ids):
        example, why = make_example(raw, budget, dropout)
        if example is None:
            out.append((None, why, (), (), "", False))
            continue
        key = example["fingerprint"]
        out.append(
            (
                key,
                "",
                example["prompt_tags"],
                _present(example["request"])
                + ["plan task"] * bool(example["tasks"])
                + ["written from plan"] * example["planned"],
                json.dumps(example),
                _unit(key, "split") < valid_fraction,
            )
        )
    return out


def _batches(pairs: Iterable[RawPair], size: int) -> Iterator[tuple[list[str], ...]]:
    it = iter(pairs)
    while batch := list(islice(it, size)):
        yield [p.prompt for p in batch], [p.story for p in batch], [p.source_id for p in batch]


def _bounded_map(pool: ProcessPoolExecutor, fn, jobs: Iterable, inflight: int) -> Iterator:
    """Like ``pool.map`` but reading ``jobs`` lazily: ``Executor.map`` submits the whole input
    at once, which would hold the full dataset in memory. Results keep the input order."""
    pending: deque = deque()
    for job in jobs:
        pending.append(pool.submit(fn, job))
        if len(pending) >= inflight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def build(
    source: str | Path,
    out_dir: Path,
    split: str = "train",
    valid_fraction: float = 0.1,
    word_budget: int = 1000,
    field_dropout: float = 0.15,
    workers: int = 1,
    limit: int | None = None,
    progress: bool = True,
) -> BuildReport:
    """Write ``train.jsonl``, ``valid.jsonl`` and ``report.json`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = BuildReport()
    seen: set[str] = set()
    pairs = iter_pairs(source, split)
    if limit:
        pairs = islice(pairs, limit)
    jobs = ((b, word_budget, field_dropout, valid_fraction) for b in _batches(pairs, 256))
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    results = _bounded_map(pool, _work, jobs, 4 * workers) if pool else map(_work, jobs)
    bar = tqdm(desc="preprocess", unit=" pairs", disable=not progress, mininterval=1)
    with (
        # The pool is shut down however the loop ends (an unreadable input raises mid-way).
        pool if pool else contextlib.nullcontext(),
        (out_dir / "train.jsonl").open("w") as ftrain,
        (out_dir / "valid.jsonl").open("w") as fvalid,
    ):
        for batch in results:
            for key, why, prompt_tags, fields, line, is_valid in batch:
                report.read += 1
                if key is None:
                    report.dropped[why] += 1
                    continue
                if key in seen:
                    report.dropped["duplicate"] += 1
                    continue
                seen.add(key)
                report.kept += 1
                report.prompt_tags.update(prompt_tags)
                report.fields.update(fields)
                report.valid += is_valid
                report.train += not is_valid
                (fvalid if is_valid else ftrain).write(line + "\n")
            bar.update(len(batch))
    bar.close()
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def read_examples(path: Path) -> list[dict]:
    """Load a JSONL file written by :func:`build` (one line per story)."""
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def training_pairs(row: dict) -> list[tuple[str, str]]:
    """Every (prompt, completion) a built story teaches: the story, then its extra tasks (the
    plan)."""
    return [(row["prompt"], row["completion"])] + [
        (t["prompt"], t["completion"]) for t in row.get("tasks", [])
    ]
