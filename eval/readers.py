"""Adherence as readers see it: blind batches of a comparison's stories for labellers, and
their answers scored per system with paired intervals.

The judges (:mod:`storygen.judges`) measure adherence in every comparison, but a system that
uses them (best-of-n keeps the attempt they score best) cannot be measured by them alone:
selecting on a judge's errors inflates its own figure. Readers break the loop:

    python -m eval readers batch runs/best_of --systems demo-1-attempt demo-best-of-4 \
        --out runs/readers
    # each batch_NN.md goes to a reader with finetune/gold/judges/guideline.md; answers in
    # labels_NN.jsonl beside it, in the labelled set's format (one JSON object per story)
    python -m eval readers score runs/readers

A batch shows each story once under a random id, with the parts of its request a reader
checks (characters and traits, place, era, events; the genre, tone, ending, point of view and
arc asked for are not shown: readers label the story's own, unprimed), in a seeded order that
mixes the systems; a story two systems share (best-of-n keeping the first attempt) is read
once. ``key.jsonl`` (which system wrote which story) stays beside the batches, never in them.
"""

from __future__ import annotations

import json
import random
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from eval.adherence import FIELD_KINDS
from eval.compare import EvalError

BOOTSTRAP = 2000


def scored_stories(run: Path, system: str) -> dict[str, dict]:
    """Item id -> {"text", "request", "provenance"} of the stories a comparison's report scored
    for a system (``per_item/`` names each by its saved row's key; the story is the row's, the
    request the one in its provenance). A run scored before per-item keys were saved gives each
    id's last saved row."""
    path = run / "generations" / f"{system}.jsonl"
    if not path.exists():
        raise EvalError(f"{path} does not exist: run the comparison first (eval compare)")
    saved: dict[tuple[str, str], dict] = {}
    last: dict[str, dict] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            entry = {
                "text": row["story"],
                "request": row["provenance"]["request"],
                "provenance": row["provenance"],
            }
        except ValueError:
            continue  # a line torn by an interrupted run
        except (KeyError, TypeError) as exc:
            raise EvalError(f"{path}:{n}: not a saved story of eval compare ({exc})") from exc
        saved[(row["id"], row.get("key"))] = last[row["id"]] = entry
    scored = run / "per_item" / f"{system}.jsonl"
    if not scored.exists():
        return last
    rows = [json.loads(x) for x in scored.read_text().splitlines() if x.strip()]
    if not all("story_key" in r for r in rows):
        return last
    missing = [r["id"] for r in rows if (r["id"], r["story_key"]) not in saved]
    if missing:
        raise EvalError(f"{path}: the story the report scored for {missing[0]} is not saved")
    return {r["id"]: saved[(r["id"], r["story_key"])] for r in rows}


def _shared(run: Path, systems: list[str]) -> tuple[dict[str, dict], list[str]]:
    """Each system's scored stories, and the items every one of them wrote for (in the first
    system's order)."""
    rows = {s: scored_stories(run, s) for s in systems}
    items = [i for i in rows[systems[0]] if all(i in rows[s] for s in systems[1:])]
    if not items:
        raise EvalError(f"the systems {systems} share no item in {run}")
    return rows, items


def make_batches(
    run: Path, systems: list[str], out: Path, per_batch: int = 30, seed: int = 0
) -> dict[str, int]:
    """Write ``batch_NN.md`` and ``key.jsonl`` under ``out`` for the stories ``systems`` wrote
    for the same items of the comparison in ``run``."""
    from storygen.judges.labels import batch_markdown, shown_request

    if len(systems) < 2:
        raise EvalError("name at least two systems to compare")
    rows, items = _shared(run, systems)
    items = sorted(items)
    stories: dict[str, dict] = {}  # text -> its blind id, request and writers
    for item in items:
        for system in systems:
            row = rows[system][item]
            text = row["text"]
            entry = stories.setdefault(
                text,
                {"id": f"r:{secrets.token_hex(4)}", "request": row["request"], "writers": []},
            )
            entry["writers"].append({"system": system, "item": item})
    order = list(stories.items())
    random.Random(seed).shuffle(order)
    out.mkdir(parents=True, exist_ok=True)
    batches = [order[i : i + per_batch] for i in range(0, len(order), per_batch)]
    for n, batch in enumerate(batches, 1):
        shown = [(e["id"], text, shown_request(e["request"])) for text, e in batch]
        (out / f"batch_{n:02d}.md").write_text(
            batch_markdown(shown, f"Batch {n}: {len(shown)} stories")
        )
    key = [
        {"id": e["id"], "request": e["request"], "writers": e["writers"], "batch": n}
        for n, batch in enumerate(batches, 1)
        for _, e in batch
    ]
    (out / "key.jsonl").write_text("".join(json.dumps(k) + "\n" for k in key))
    return {"items": len(items), "stories": len(stories), "batches": len(batches)}


def make_pairs(run: Path, systems: list[str], out: Path) -> int:
    """An A/B pairs file (``human_ratings``' items, for a study) of the stories two systems
    wrote for the same items of the comparison in ``run``: the stories its report scored, each
    with its provenance. Items where both wrote the same text are left out (nothing to
    choose). Returns the number of items."""
    from human_ratings.pairs import Item, item_id, item_row
    from storygen.request import StoryRequest

    if len(systems) != 2 or systems[0] == systems[1]:
        raise EvalError("an A/B item compares two systems: name exactly two")
    rows, items = _shared(run, systems)
    made = 0
    with out.open("w") as f:
        for item in items:
            a, b = (rows[s][item] for s in systems)
            if a["text"] == b["text"]:
                continue
            request = StoryRequest.from_dict(a["request"])
            seed = a["provenance"].get("sampling", {}).get("seed", 0)
            stories = {
                s: {"text": r["text"], "provenance": r["provenance"]}
                for s, r in zip(systems, (a, b))
            }
            f.write(json.dumps(item_row(Item(item_id(request, seed), request, stories))) + "\n")
            made += 1
    return made


def followed(label: dict, request: dict) -> dict[str, bool]:
    """Each field ``request`` sets, as a reader's answers say: the story's own genre, tone,
    ending, point of view and arc against the ones asked for, and each part's presence. Keys
    as the judges name them (``genre``, ``character:Mara``, ``trait:Mara:kind``,
    ``event:0``)."""
    from storygen.judges import asked
    from storygen.judges.labels import units
    from storygen.request import StoryRequest

    u = units(label, request)
    req = StoryRequest.from_dict(request)
    out = {}
    index = {}  # the judges' key of each character -> its place in the request
    for i, c in enumerate(req.characters):
        index.setdefault(c.name, []).append(i)
    seen: dict[str, int] = {}
    for key, kind, value, name in asked(req):
        if kind in ("genre", "tone", "ending", "pov", "arc"):
            out[key] = u[kind] == value
        elif kind in ("place", "era"):
            out[key] = bool(u.get(kind))
        elif kind == "character":
            seen[value] = seen.get(value, 0) + 1
            i = index[value][seen[value] - 1]
            out[key] = u[f"character:{i}:present"]
        elif kind == "trait":
            i = index[name][seen[name] - 1]
            out[key] = u[f"character:{i}:trait:{value}"]
        else:
            out[key] = u[key]
    return out


def _labels(folder: Path) -> dict[str, dict]:
    labels = {}
    for path in sorted(folder.glob("labels_*.jsonl")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    labels[row["id"]] = row
                except (ValueError, KeyError, TypeError) as exc:
                    raise EvalError(f"{path}:{n}: not a label ({exc})") from exc
    return labels


def score(folder: Path) -> dict[str, Any]:
    """Reader adherence per system, over all the fields a request sets and over only those
    the judges measure, and paired differences between systems with 95% intervals
    resampling items."""
    from storygen.judges import asked, judges
    from storygen.request import StoryRequest

    key_path = folder / "key.jsonl"
    if not key_path.exists():
        raise EvalError(f"{key_path} does not exist: make the batches first")
    key = [json.loads(x) for x in key_path.read_text().splitlines() if x.strip()]
    labels = _labels(folder)
    missing = [k["id"] for k in key if k["id"] not in labels]
    if missing:
        raise EvalError(f"{len(missing)} stories have no label yet (first: {missing[0]})")
    measures = judges().measures
    per: dict[str, dict[str, dict[str, float]]] = {}  # system -> item -> figures
    for k in key:
        answers = followed(labels[k["id"]], k["request"])
        fields = {
            f: (kind, value) for f, kind, value, _ in asked(StoryRequest.from_dict(k["request"]))
        }
        scoped = [ok for f, ok in answers.items() if measures(*fields[f])]
        figures = {
            "all": float(np.mean(list(answers.values()))) if answers else float("nan"),
            "measured": float(np.mean(scoped)) if scoped else float("nan"),
        }
        for kind in FIELD_KINDS:  # each kind of field: the share of this request's followed
            hits = [ok for f, ok in answers.items() if fields[f][0] == kind]
            figures[kind] = float(np.mean(hits)) if hits else float("nan")
        for w in k["writers"]:
            per.setdefault(w["system"], {})[w["item"]] = figures
    systems = sorted(per)
    items = sorted(set.intersection(*(set(v) for v in per.values())))
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(items), len(items)) for _ in range(BOOTSTRAP)]
    out: dict[str, Any] = {"items": len(items), "stories": len(key), "systems": {}, "pairs": []}
    for s in systems:
        for scope in (*SCOPES, *FIELD_KINDS):
            v = np.array([per[s][i][scope] for i in items])
            if np.isnan(v).all():
                continue
            out["systems"].setdefault(s, {})[scope] = {
                "mean": float(np.nanmean(v)),
                "ci95": _boot(v, draws),
                "items": int(np.sum(~np.isnan(v))),
            }
    for n, a in enumerate(systems):
        for b in systems[n + 1 :]:
            for scope in (*SCOPES, *FIELD_KINDS):
                d = np.array([per[b][i][scope] - per[a][i][scope] for i in items])
                if np.isnan(d).all():
                    continue
                out["pairs"].append(
                    {
                        "a": a,
                        "b": b,
                        "scope": scope,
                        "b_minus_a": float(np.nanmean(d)),
                        "ci95": _boot(d, draws),
                        "items_that_differ": int(np.sum(np.nan_to_num(d) != 0)),
                    }
                )
    return out


SCOPES = ("all", "measured")
"""Every field a request sets; only the fields (and values) the judges measure. Each kind of
field (genre, character, event, ...) is also scored alone, over the items that ask for it."""


def _boot(values: np.ndarray, draws: list[np.ndarray]) -> list[float]:
    """95% percentile interval of the mean of ``values`` (NaN left out), resampling items."""
    means = []
    for d in draws:
        v = values[d]
        v = v[~np.isnan(v)]
        if len(v):
            means.append(float(v.mean()))
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]
