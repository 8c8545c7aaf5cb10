"""The labelled story set the judges are built and measured on (``finetune/gold/judges/``).

Stories from three kinds of writer: Reddit's (the shared WritingPrompts sample), two strong
models' (GPT-4 and GPT-3.5 on the same prompts) and the project's own systems (for requests
made from the others). Shared stories stay outside the repository: the set keeps their ids and
the SHA-256 of the text that was labelled, and reads the text back from the shared folder,
cleaned as preprocessing cleans it.

How the set is made, in order (each step's output is committed before the next starts):

1. :func:`select` draws the stories and fixes the held-out split (a third of each source, by a
   hash of the id) before any judge exists.
2. Writers read each shared story and write a request of true parts (in the story) and false
   ones (``request_guideline.md``); :func:`probe_request` mixes them, seeded by the id, into
   the request the labellers judge. The project's stories get the true parts of another
   story's request, as a person's request, and are written for it.
3. Two labellers label each story independently (``guideline.md``); :func:`disagreements`
   lists where they differ, and a third read settles those (:func:`settle`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.clean import clean_pair
from storygen.judges.labels import units

GOLD = Path(__file__).resolve().parent / "gold" / "judges"
SOURCES = {
    "wp": ("train_sample_500.csv", "reddit"),
    "gpt4": ("model_stories_gpt4.csv", "gpt-4"),
    "gpt35": ("model_stories_gpt35.csv", "gpt-3.5-turbo"),
}
"""id prefix -> (file in the shared WritingPrompts folder, writer)."""
HELD_OUT_SHARE = 1 / 3


class JudgeSetError(ValueError):
    """A labelled-set file that cannot be used."""


def unit(key: str, salt: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for ``key``."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class SharedStory:
    id: str
    writer: str
    prompt: str
    text: str


def shared_stories(data_dir: Path) -> Iterator[SharedStory]:
    """Every usable story of the shared folder, cleaned as preprocessing cleans it (a row
    preprocessing drops is left out; rows without a numeric row id are too)."""
    csv.field_size_limit(1 << 30)
    for prefix, (name, writer) in SOURCES.items():
        path = Path(data_dir) / name
        if not path.exists():
            raise JudgeSetError(f"{path} does not exist (the shared WritingPrompts folder)")
        seen = set()
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                row_id = (row.get("row_id") or "").strip()
                if not row_id.isdigit() or row_id in seen:
                    continue
                seen.add(row_id)
                pair, _ = clean_pair(row["prompt"], row["story"], row_id)
                if pair is not None:
                    yield SharedStory(f"{prefix}:{row_id}", writer, pair.prompt, pair.story)


def shared_texts(data_dir: Path, ids: set[str]) -> dict[str, SharedStory]:
    """The shared stories with these ids."""
    return {s.id: s for s in shared_stories(data_dir) if s.id in ids}


def select(data_dir: Path, counts: dict[str, int], seed: int = 2026) -> list[dict]:
    """Draw ``counts[prefix]`` stories of each source; a third of each is held out."""
    by_source: dict[str, list[SharedStory]] = {p: [] for p in counts}
    for story in shared_stories(data_dir):
        prefix = story.id.split(":", 1)[0]
        if prefix in by_source:
            by_source[prefix].append(story)
    rows = []
    for prefix, n in counts.items():
        pool = sorted(by_source[prefix], key=lambda s: s.id)
        chosen = random.Random(f"{seed}:{prefix}").sample(pool, n)
        rows += [
            {
                "id": s.id,
                "writer": s.writer,
                "text_sha256": text_sha256(s.text),
                "words": len(s.text.split()),
            }
            for s in chosen
        ]
    return assign_split(rows)


def prompt_of(row: dict) -> str:
    """The shared sample's row id a story belongs to: its own (``wp:``, ``gpt4:``, ``gpt35:``
    stories of one row share a prompt), or for the project's stories, that of the story whose
    request they were written for."""
    source = row.get("request_from") or row["id"]
    return source.split(":", 1)[1]


def assign_split(rows: list[dict]) -> list[dict]:
    """Hold out about a third of the prompts, with every story of each: a story never has a
    sibling on the other side (the same prompt written by another writer, or a request written
    from it)."""
    for row in rows:
        held = unit(prompt_of(row), "judge-split") < HELD_OUT_SHARE
        row["split"] = "heldout" if held else "train"
    return rows


def probe_request(written: dict) -> dict:
    """The request labellers judge for a shared story: the writer's true and false parts,
    mixed at random (seeded by the story's id), as a :class:`~storygen.request.StoryRequest`
    dict (no genre, tone, ending, point of view or arc: those are labelled as the story's
    own)."""
    rng = random.Random(f"probe:{written['id']}")
    true_chars = [c for c in written.get("characters") or [] if c.get("name")][:2]
    characters = []
    for i, c in enumerate(true_chars):
        if rng.random() < (0.8 if i == 0 else 0.5):
            traits = list(c.get("traits") or [])[:2]
            false = list(c.get("false_traits") or [])
            if false and rng.random() < 0.4:  # one trait the story does not show
                if traits and rng.random() < 0.5:
                    traits[rng.randrange(len(traits))] = false[0]
                else:
                    traits = (traits + [false[0]])[-2:]
            characters.append({"name": c["name"], "traits": traits})
    fake = written.get("false_character") or {}
    if fake.get("name") and (rng.random() < 0.5 or not characters):
        characters.insert(rng.randrange(len(characters) + 1), dict(fake))
    place = _one_of(rng, written.get("place", ""), written.get("false_place", ""))
    era = _one_of(rng, written.get("era", ""), written.get("false_era", ""), keep_empty=0.5)
    events = [e for e in written.get("events") or [] if e][:2]
    events += [e for e in written.get("false_events") or [] if e][:2]
    rng.shuffle(events)
    return {
        "characters": characters,
        "setting": {"place": place, "era": era},
        "plot_points": events[: rng.choice((1, 2, 2))],
        "length": "short",
    }


def _one_of(rng: random.Random, true: str, false: str, keep_empty: float = 0.0) -> str:
    """The true value or the false one, evenly; with no true value, the false one or (with
    probability ``keep_empty``) nothing."""
    if true:
        return true if rng.random() < 0.5 or not false else false
    return "" if rng.random() < keep_empty else false


def read_jsonl(path: Path) -> list[dict]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise JudgeSetError(f"cannot read {path}: {exc}") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise JudgeSetError(f"{path}:{n}: not JSON ({exc})") from exc
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


SYSTEMS = {
    "smollm2-demo": {"adapter": "adapters/smollm2-135m-wp-demo-v3"},  # the demo of the time
    "smollm2-base": {"adapter": None},
    "smollm2-demo-dpo": {"adapter": "adapters/smollm2-135m-wp-demo-dpo"},
}
"""The project's systems whose stories join the set (name -> model settings), on the
embedded base; stories are split between them as :data:`SYSTEM_SHARES` says."""
SYSTEM_SHARES = {"smollm2-demo": 0.5, "smollm2-base": 0.25, "smollm2-demo-dpo": 0.25}


def system_request(written: dict) -> dict:
    """A person's request made from a writer's true parts of a shared story (its characters
    and true traits, place, era and events), with a genre, tone, ending, point of view and arc
    drawn at random (some left empty, as people leave them), seeded by the story's id."""
    from storygen.request import ARCS, ENDINGS, GENRES, POVS, TONES

    rng = random.Random(f"system:{written['id']}")

    def maybe(choices, empty: float) -> str:
        return "" if rng.random() < empty else rng.choice(sorted(choices))

    return {
        "characters": [
            {"name": c["name"], "traits": list(c.get("traits") or [])[:2]}
            for c in (written.get("characters") or [])[:2]
        ],
        "setting": {"place": written.get("place", ""), "era": written.get("era", "")},
        "genre": maybe(GENRES, 0.2),
        "tone": maybe(TONES, 0.3),
        "plot_points": [e for e in written.get("events") or [] if e][:2],
        "ending": maybe(ENDINGS, 0.3),
        "pov": maybe(POVS, 0.3),
        "arc": maybe(ARCS, 0.5),
        "length": "flash" if rng.random() < 0.25 else "short",
    }


def plan_system_stories(stories: list[dict], written: list[dict], n: int, seed: int = 5000):
    """Rows for ``n`` stories by the project's systems: each from another story's written
    request (:func:`system_request`), in that story's split (a request's phrases never cross
    from training to held-out stories), with its system and seed."""
    split_of = {s["id"]: s["split"] for s in stories}
    usable = [w for w in written if w.get("characters") or w.get("events")]
    ranked = sorted(usable, key=lambda w: unit(w["id"], "system-source"))
    held = [w for w in ranked if split_of[w["id"]] == "heldout"]
    train = [w for w in ranked if split_of[w["id"]] == "train"]
    n_held = round(n * HELD_OUT_SHARE)
    sources = held[:n_held] + train[: n - n_held]
    names = [name for name, share in SYSTEM_SHARES.items() for _ in range(round(share * n))]
    random.Random(seed).shuffle(names)
    rows = []
    for i, (w, system) in enumerate(zip(sources, names, strict=True)):
        rows.append(
            {
                "id": f"sys:{i}",
                "writer": f"system:{system}",
                "request_from": w["id"],
                "split": split_of[w["id"]],  # its source's: the same prompt
                "seed": seed + i,
                "request": system_request(w),
            }
        )
    return rows


def write_system_stories(rows: list[dict], progress: bool = True) -> list[dict]:
    """Write each planned row's story (llama.cpp on the embedded base), filling in ``text``,
    ``text_sha256``, ``words`` and ``provenance``."""
    from storygen.backends import load_backend
    from storygen.config import ModelSpec, SystemSpec
    from storygen.items import write_one
    from storygen.request import StoryRequest

    out = []
    for name, model in SYSTEMS.items():
        mine = [r for r in rows if r["writer"] == f"system:{name}"]
        if not mine:
            continue
        system = SystemSpec(name, ModelSpec(**model))
        backend = load_backend(system.spec())
        try:
            for row in mine:
                request = StoryRequest.from_dict(row["request"])
                w = write_one(backend, system, request, row["seed"])
                out.append(
                    {
                        **row,
                        "text": w.text,
                        "text_sha256": text_sha256(w.text),
                        "words": len(w.text.split()),
                        "provenance": w.provenance,
                    }
                )
                if progress:
                    print(f"{row['id']} {name}: {len(w.text.split())} words", flush=True)
        finally:
            backend.close()
    order = {r["id"]: i for i, r in enumerate(rows)}
    return sorted(out, key=lambda r: order[r["id"]])


def disagreements(a: dict, b: dict, request: dict) -> dict[str, tuple[Any, Any]]:
    """The units where two labellers' answers differ: unit -> (a's answer, b's answer)."""
    ua, ub = units(a, request), units(b, request)
    return {k: (ua[k], ub[k]) for k in ua if ua[k] != ub.get(k)}


def settle(a: dict, b: dict, third: dict | None, request: dict) -> dict[str, Any]:
    """The final answer per unit: the two labellers' where they agree, else the third
    reader's (who saw both answers, unlabelled, and the guideline)."""
    ua, ub = units(a, request), units(b, request)
    answers = (third or {}).get("answers") or {}
    out = {}
    for k, v in ua.items():
        if v == ub.get(k):
            out[k] = v
        elif k in answers:
            out[k] = answers[k]
        else:
            raise JudgeSetError(f"{a['id']}: {k} is disputed and has no third read")
    # Other genres and tones that also apply: those both labellers named.
    for key, main in (("genres_also", "genre"), ("tones_also", "tone")):
        both = set(a.get(key) or []) & set(b.get(key) or [])
        out[key] = sorted(both - {out[main]})
    return out


def third_read_markdown(disputes: list[tuple[str, str, dict, dict]]) -> str:
    """Stories (id, text, shown request, disputed units -> the two answers) for a third
    reader, the two answers in a seeded order and unnamed."""
    parts = ["# Stories with disputed labels\n"]
    for sid, text, request, disputed in disputes:
        rng = random.Random(f"third:{sid}")
        lines = []
        for unit_key, pair in disputed.items():
            options = list(pair)
            rng.shuffle(options)
            shown = " or ".join(json.dumps(o) for o in options)
            lines.append(f"- `{unit_key}`: {shown}")
        parts.append(f"\n---\n\n## Story `{sid}`\n")
        parts.append("**Request:**\n\n```json\n" + json.dumps(request, indent=1) + "\n```\n")
        parts.append("**Disputed:**\n\n" + "\n".join(lines) + "\n")
        parts.append("**Story:**\n\n" + text.strip() + "\n")
    return "\n".join(parts)


def merge(label_dir: Path, third_dir: Path, gold: Path = GOLD) -> dict[str, int]:
    """Gather the labellers' batch files (``batchK.labelsA/B.jsonl``) and the third reads
    (``batchK.answers.jsonl``) into the set's ``labels_a.jsonl``, ``labels_b.jsonl``,
    ``third_read.jsonl`` and the settled ``labels.jsonl``; returns counts."""
    stories = read_jsonl(gold / "stories.jsonl")
    order = {s["id"]: i for i, s in enumerate(stories)}
    slots: dict[str, dict[str, dict]] = {"A": {}, "B": {}}
    for slot in slots:
        for path in sorted(label_dir.glob(f"batch*.labels{slot}.jsonl")):
            for row in read_jsonl(path):
                if row["id"] in slots[slot]:
                    raise JudgeSetError(f"{row['id']} labelled twice in slot {slot}")
                slots[slot][row["id"]] = row
    third = {
        r["id"]: r for p in sorted(third_dir.glob("batch*.answers.jsonl")) for r in read_jsonl(p)
    }
    missing = [s["id"] for s in stories if s["id"] not in slots["A"] or s["id"] not in slots["B"]]
    if missing:
        raise JudgeSetError(f"{len(missing)} stories lack a labeller's answers: {missing[:5]}")
    settled = []
    for s in stories:
        a, b = slots["A"][s["id"]], slots["B"][s["id"]]
        units_ = settle(a, b, third.get(s["id"]), s["request"])
        also = {k: units_.pop(k) for k in ("genres_also", "tones_also")}
        settled.append({"id": s["id"], "units": units_, **also})
    key = lambda r: order[r["id"]]  # noqa: E731
    write_jsonl(gold / "labels_a.jsonl", sorted(slots["A"].values(), key=key))
    write_jsonl(gold / "labels_b.jsonl", sorted(slots["B"].values(), key=key))
    write_jsonl(gold / "third_read.jsonl", sorted(third.values(), key=key))
    write_jsonl(gold / "labels.jsonl", settled)
    return {"stories": len(settled), "third_reads": len(third)}
