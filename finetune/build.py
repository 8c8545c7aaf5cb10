"""Preprocessing: WritingPrompts pairs -> cleaned, tagged, prompt-formatted training examples.

Streams its input and writes JSONL as it goes, so memory stays flat at full dataset scale
(only the de-duplication fingerprints are kept). Uses several processes when asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from finetune.clean import clean_pair, fingerprint, text_key, truncate_words
from finetune.data import MIX_SUFFIXES, SPLITS, DataError, MixSource, RawPair, iter_pairs, read_mix
from storygen.arcs import extract_beats
from storygen.prompt_format import PROMPT_FORMAT_VERSION, render_example, render_plan_example
from storygen.request import (
    MAX_PLOT_POINT,
    MAX_PROMPT,
    RequestError,
    Setting,
    StoryRequest,
    validate,
)
from storygen.tagger import length_bucket, tag_story
from storygen.text import sentences

PLAN_WORDS = 150
"""Planned examples are the story's first words up to this many (at a sentence end)."""
PLANNED_SHARE = 0.5
"""The share of stories whose story example is written from their plan (the others straight
from the request), so the adapter learns both ways to write."""


@dataclass
class BuildReport:
    """How many rows went in, how many came out, and why the others were dropped."""

    read: int = 0
    kept: int = 0
    train: int = 0
    valid: int = 0
    test: int = 0
    splits: dict[str, str] = field(default_factory=dict)
    """Where each written split comes from: an original split, or a seeded share of train."""
    dropped: Counter = field(default_factory=Counter)
    prompt_tags: Counter = field(default_factory=Counter)
    fields: Counter = field(default_factory=Counter)
    mix: str = ""
    """The data mix file, when the source is one."""
    sources: list[dict] = field(default_factory=list)
    """Per source of a mix: its file, writer, whether a model wrote it, and its counts."""

    def _mix(self) -> dict:
        if not self.sources:
            return {}
        train = [s["train"] for s in self.sources]
        words = [s["train_words"] for s in self.sources]
        model = [s["model_written"] for s in self.sources]
        return {
            "mix": {
                "file": self.mix,
                "sources": self.sources,
                "model_written_share": {
                    "train stories": round(
                        sum(t for t, m in zip(train, model) if m) / max(1, sum(train)), 3
                    ),
                    "train words": round(
                        sum(w for w, m in zip(words, model) if m) / max(1, sum(words)), 3
                    ),
                },
            }
        }

    def to_dict(self) -> dict:
        return {
            "prompt_format": PROMPT_FORMAT_VERSION,
            "tags": {
                "genre, tone, pov": f"storygen.judges (heads.json sha256 {heads_sha256()[:12]})",
                "characters, place, era": "storygen.tagger (found in the story's text)",
                "ending, arc": "left out: not measured (docs/judges)",
            },
            "read": self.read,
            "kept": self.kept,
            "train": self.train,
            "valid": self.valid,
            "test": self.test,
            "splits": self.splits,
            "dropped": dict(self.dropped.most_common()),
            "prompt_tags": dict(self.prompt_tags.most_common()),
            "fields_present": dict(self.fields.most_common()),
            **self._mix(),
        }


def heads_sha256() -> str:
    from storygen.judges import HEADS

    return hashlib.sha256(HEADS.read_bytes()).hexdigest()


def _unit(key: str, salt: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for ``key``."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def plot_point(story: str) -> str:
    """One event sentence from the middle third of the story, to train "must happen"."""
    middle = story[len(story) // 3 : 2 * len(story) // 3]
    for sentence in sentences(middle):
        if 6 <= len(sentence.split()) <= 25 and sentence[0].isupper():
            return sentence[:MAX_PLOT_POINT]
    return ""


def source_key(raw: RawPair) -> str:
    """A story's key as the source gives it (a hash of the raw prompt and story, before any
    cleaning): its split and its per-story draws (fields dropped, plot point, planned) follow
    this, so that a change to cleaning or tagging never moves a story between splits."""
    text = f"{raw.prompt}\x1f{raw.story}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


JUDGED = ("genre", "tone", "pov")
"""The story's own fields its tags take from the validated judges (docs/judges). The ending and
the arc are left out: no judge of them beat the majority baseline on held-out stories, so a
tag would teach the model a label that means nothing."""


def tag_request(pair) -> StoryRequest:
    """A story's request: the tagger's characters, place and era (found in its text), and the
    validated judges' genre, tone and point of view; no ending, no arc."""
    from storygen.judges import CannotJudge, judges

    request = tag_story(pair.story, pair.prompt, pair.tags, pair.words).request
    request.prompt = request.prompt[:MAX_PROMPT]
    request.ending, request.arc = "", ""
    try:
        labels = judges().labels(pair.story)
    except CannotJudge:
        labels = {}
    for name in JUDGED:
        setattr(request, name, labels.get(name, ""))
    return request


def make_example(raw: RawPair, word_budget: int, field_dropout: float) -> tuple[dict | None, str]:
    """One raw pair -> (training example, "") or (None, why it was dropped)."""
    pair, why = clean_pair(raw.prompt, raw.story, raw.source_id, word_budget)
    if pair is None:
        return None, why
    key = source_key(raw)
    request = tag_request(pair)
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
        "fingerprint": fingerprint(pair),
        "source_key": key,
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


def _work(
    args: tuple[
        tuple[list, ...], int, float, dict[str, tuple[float, float]], frozenset, tuple[str, ...]
    ],
) -> list:
    """Worker side: everything per pair, including the JSON line, so that the parent process
    only de-duplicates, counts and writes. Batches travel as lists of strings (pickling those
    is much cheaper than pickling dataclasses). Returns one tuple per pair: (fingerprint or
    None, why dropped, prompt tags, fields present, JSON line, the split its own draw gives,
    whether it is held out by id, the prompt's key, words).

    ``writers``: a mix's writers by source index (empty for one source). A story from a source
    after the first gets its writer before its id (``gpt-4:123``); every story of a mix names
    its writer."""
    (prompts, stories, ids, origins, indexes), budget, dropout, bands, held, writers = args
    out = []
    for raw, origin, index in zip(
        map(RawPair, prompts, stories, ids), origins, indexes, strict=True
    ):
        example, why = make_example(raw, budget, dropout)
        if example is None:
            out.append((None, why, (), (), "", "", False, "", 0))
            continue
        if writers:
            example["writer"] = writers[index]
            if index:
                example["id"] = f"{writers[index]}:{raw.source_id}"
        key = example["fingerprint"]  # duplicates: the same text once cleaned
        out.append(
            (
                key,
                "",
                example["prompt_tags"],
                _present(example["request"])
                + ["plan task"] * bool(example["tasks"])
                + ["written from plan"] * example["planned"],
                json.dumps(example),
                _split_of(example["source_key"], origin, bands),
                raw.source_id in held,
                text_key(example["request"]["prompt"]),  # one prompt's stories share a split
                example["words"],
            )
        )
    return out


STRICTNESS = ("test", "valid", "train")
"""A prompt two stories put in two splits goes, for a mix's later writers, to the first here."""


def _with_indexes(args) -> tuple[list, list[int]]:
    """:func:`_work`'s rows with each one's source index (the parent counts per source)."""
    return _work(args), args[0][4]


def _split_of(key: str, origin: str, bands: dict[str, tuple[float, float]]) -> str:
    """A row of an original valid or test split stays there; a train row goes to a carved split
    when its seeded number falls in that split's band (valid [0, v), test [v, v + t)), so that
    adding a test split leaves the validation rows as they were."""
    if origin != "train":
        return origin
    u = _unit(key, "split")
    for name, (low, high) in bands.items():
        if low <= u < high:
            return name
    return "train"


def _batches(pairs: Iterable[RawPair], size: int) -> Iterator[tuple[list[str], ...]]:
    it = iter(pairs)
    while batch := list(islice(it, size)):
        yield (
            [p.prompt for p, _, _ in batch],
            [p.story for p, _, _ in batch],
            [p.source_id for p, _, _ in batch],
            [o for _, o, _ in batch],
            [i for _, _, i in batch],
        )


def _read(
    source: str | Path, split: str, limit: int | None = None
) -> tuple[Iterator[tuple[RawPair, str, int]], list[str], list[MixSource]]:
    """The pairs to build, each with the original split it comes from and its source's index
    in a mix (0 otherwise); those splits; the mix's sources (none for one source).

    A folder of the original release is read split by split (``all``: every split it has);
    a data mix (YAML) source after source, as one body of stories; any other source is one
    body of stories, read as train."""
    text = str(source)
    if not text.startswith("hub:") and Path(text).suffix.lower() in MIX_SUFFIXES:
        sources = read_mix(source)
        if split not in ("all", "train"):
            raise DataError(f"{source}: --split {split} names an original split; a mix has none")
        pairs = (
            (pair, "train", i)
            for i, s in enumerate(sources)
            for pair in islice(iter_pairs(s.path), limit or None)
        )
        return pairs, ["train"], sources
    pairs, originals = _read_one(source, split, limit)
    return ((pair, origin, 0) for pair, origin in pairs), originals, []


def _read_one(
    source: str | Path, split: str, limit: int | None = None
) -> tuple[Iterator[tuple[RawPair, str]], list[str]]:
    text = str(source)
    folder = None if text.startswith("hub:") else Path(source)
    if folder is not None and folder.is_dir():
        names = [s for s in SPLITS if (folder / f"{s}.wp_source").exists()]
        chosen = names if split == "all" else [split]
        if not chosen:
            raise DataError(
                f"{folder}: expected NAME.wp_source and NAME.wp_target for at least one of "
                f"{', '.join(SPLITS)}"
            )
        # --limit applies to each split, so that a small run keeps its valid and test stories.
        pairs = (
            (pair, name)
            for name in chosen
            for pair in islice(iter_pairs(folder, name), limit or None)
        )
        return pairs, chosen
    if folder is not None and folder.suffix.lower() in (".wp_source", ".wp_target"):
        name = folder.name.split(".")[0]
        name = name if name in SPLITS else "train"  # a file of one's own: a body of stories
        return ((pair, name) for pair in islice(iter_pairs(source), limit or None)), [name]
    if split not in ("all", "train"):
        raise DataError(
            f"{source}: --split {split} names an original split of a .wp folder; this source has "
            "none: its stories are split by --valid-fraction and --test-fraction"
        )
    return ((pair, "train") for pair in islice(iter_pairs(source), limit or None)), ["train"]


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
    split: str = "all",
    valid_fraction: float = 0.1,
    word_budget: int = 1000,
    field_dropout: float = 0.15,
    workers: int = 1,
    limit: int | None = None,
    progress: bool = True,
    test_fraction: float = 0.0,
    hold_out: frozenset[str] = frozenset(),
) -> BuildReport:
    """Write ``train.jsonl``, ``valid.jsonl`` (and ``test.jsonl`` when there is a test split)
    and ``report.json`` under ``out_dir``.

    The original release's valid and test splits are kept as they are, but for a story that
    repeats an earlier one (counted as a duplicate: no test story is one the model trained
    on); a split the source does not have is carved out of train by its fraction (seeded by
    each story's :func:`source_key`, so cleaning never moves a story between splits). The
    files appear only once the whole input is read: a failed run leaves none behind (nor an
    earlier run's split that this one does not write).

    ``hold_out``: source ids (a CSV's ``row_id``) whose stories go to ``test.jsonl`` whatever
    their draw: prompts a model is measured on elsewhere (:func:`held_out_rows`), never
    trained on.
    """
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise DataError(f"{name} must be at least 0 and below 1, got {value}")
    if valid_fraction + test_fraction >= 1:
        raise DataError("valid_fraction + test_fraction must leave some stories to train on")
    if split not in ("all", *SPLITS):
        raise DataError(f"unknown split {split!r}; known: all, {', '.join(SPLITS)}")
    pairs, originals, sources = _read(source, split, limit)
    bands, splits = {}, {}
    for name, (low, high) in (
        ("valid", (0.0, valid_fraction)),
        ("test", (valid_fraction, valid_fraction + test_fraction)),
    ):
        if name in originals:
            splits[name] = f"the original {name} split"
        elif "train" in originals and high > low:
            bands[name] = (low, high)
            splits[name] = f"{high - low:.0%} of the train stories (seeded)"
    if hold_out:
        carved = [splits["test"]] if "test" in splits else []
        splits["test"] = " and ".join([*carved, f"the rows held out by id ({len(hold_out)})"])
    if "train" in originals:
        splits["train"] = "the original train split" if originals != ["train"] else "the rest"
    names = ["train", "valid", *(["test"] if "test" in splits else [])]
    report = BuildReport(splits=splits)
    writers = tuple(s.writer for s in sources)
    if sources:
        report.mix = str(source)
        report.sources = [
            {
                "path": str(s.path),
                "writer": s.writer,
                "model_written": s.model_written,
                **dict.fromkeys(("read", "kept", "train", "valid", "test", "train_words"), 0),
            }
            for s in sources
        ]
        report.splits["mix"] = (
            f"{writers[0]}'s stories split as they would alone; a story of "
            f"{', '.join(writers[1:]) or 'no other source'} takes its prompt's split (the "
            "strictest of test, valid, train that prompt has gone to), else its own draw"
        )
    # A mix's prompts -> the strictest split they went to, and those the primary answers.
    prompt_split: dict[str, str] = {}
    primary_prompts: set[str] = set()
    seen: set[str] = set()
    held = frozenset(hold_out)
    jobs = ((b, word_budget, field_dropout, bands, held, writers) for b in _batches(pairs, 256))
    made = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = {name: out_dir / f".{name}.jsonl.partial" for name in names}
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    results = (
        _bounded_map(pool, _with_indexes, jobs, 4 * workers) if pool else map(_with_indexes, jobs)
    )
    bar = tqdm(desc="preprocess", unit=" pairs", disable=not progress, mininterval=1)
    try:
        with contextlib.ExitStack() as stack:
            # The pool is shut down however the loop ends (an unreadable input raises mid-way).
            if pool:
                stack.enter_context(pool)
            files = {name: stack.enter_context(path.open("w")) for name, path in partial.items()}
            for batch, indexes in results:
                for (
                    key,
                    why,
                    prompt_tags,
                    fields,
                    line,
                    dest,
                    is_held,
                    prompt,
                    words,
                ), index in zip(batch, indexes, strict=True):
                    report.read += 1
                    counts = report.sources[index] if sources else None
                    if counts is not None:
                        counts["read"] += 1
                    if key is None:
                        report.dropped[why] += 1
                        continue
                    if key in seen:
                        report.dropped["duplicate"] += 1
                        continue
                    if sources and index and sources[index].same_prompts:
                        if prompt not in primary_prompts:
                            report.dropped[f"prompt not in {sources[0].writer}'s"] += 1
                            continue
                    seen.add(key)
                    if is_held:
                        dest = "test"
                    elif sources and index:
                        dest = prompt_split.get(prompt, dest)
                    if sources:
                        if not index:
                            primary_prompts.add(prompt)
                        before = prompt_split.get(prompt, "train")
                        prompt_split[prompt] = min(before, dest, key=STRICTNESS.index)
                    if counts is not None:
                        counts["kept"] += 1
                        counts[dest] += 1
                        counts["train_words"] += words * (dest == "train")
                    report.kept += 1
                    report.prompt_tags.update(prompt_tags)
                    report.fields.update(fields)
                    setattr(report, dest, getattr(report, dest) + 1)
                    files[dest].write(line + "\n")
                bar.update(len(batch))
    except BaseException:
        for path in partial.values():
            path.unlink(missing_ok=True)
        if made and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    finally:
        bar.close()
    for name in SPLITS:
        final = out_dir / f"{name}.jsonl"
        if name in partial:
            partial[name].replace(final)
        else:
            final.unlink(missing_ok=True)  # an earlier run's split, which this one does not have
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def held_out_rows(path: Path) -> frozenset[str]:
    """The source row ids a labelled set measures on: each row of a JSONL file (such as
    ``finetune/gold/judges/stories.jsonl``) in its ``heldout`` split, or with no split; an id
    ``wp:123`` (or a story written for it, ``request_from``) names the sample's row 123."""
    out = set()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or "id" not in row:
                raise DataError(f"{path}:{n}: expected a JSON object with an id")
            if row.get("split", "heldout") == "heldout":
                out.add(str(row.get("request_from") or row["id"]).split(":", 1)[-1])
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read the rows to hold out from {path}: {exc}") from exc
    return frozenset(out)


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
