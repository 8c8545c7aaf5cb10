"""A comparison's stories, written by :mod:`storygen.items` and saved as they come.

``generations/<system>.jsonl`` gets one line per story, keyed by the settings that made it
(model, sampling with the seed, plan mode, the item's request and plan): an interrupted run
resumes where it stopped, and a changed setting redoes only what it affects.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from storygen.config import ModelSpec, SystemSpec
from storygen.items import story_seed, write_stories


def settings_key(**settings: Any) -> str:
    """A short hash of what made a result, saved with it: a result made otherwise (another
    model, sampling, seed or window) is not reused."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def story_inputs(item: dict) -> dict[str, Any]:
    """What a story is written from, for the keys of saved stories: the item's request and
    plan (an item re-made by a new preprocess keeps its id, not its text)."""
    plan = item.get("plan")
    return {"request": item["request"].to_dict(), "plan": plan.to_dict() if plan else None}


def read_done(path: Path, keys: dict[str, str]) -> dict[str, dict]:
    """The rows of ``path`` made with the key their item has now (``keys``: id -> key)."""
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                if keys.get(row["id"]) == row["key"]:
                    done[row["id"]] = row
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by an interrupted run: make that result again
    return done


def open_for_append(path: Path):
    """``path`` opened to append whole lines: a last line torn by a killed run (no line break
    at its end) is cut off first, or the next row would be glued to it and lost too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size:
        with path.open("rb+") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":  # only then is the whole file read, to find the cut
                f.seek(0)
                f.truncate(f.read().rfind(b"\n") + 1)
    return path.open("a")


def generate_all(
    backend, system: SystemSpec, items: list[dict], seed: int, out: Path
) -> list[dict]:
    """One story per item (or the saved one), by the seed rule of :mod:`storygen.items`. A
    system with ``plan: model`` plans each story first, ``plan: reference`` writes from the
    beats of the item's human story; the plan used is saved with the story."""
    keys = {
        it["id"]: settings_key(
            model=system.spec(),
            sampling=system.sampling_for(story_seed(seed, i)).to_dict(),
            plan=system.plan,
            item=story_inputs(it),
            # (left out at one attempt: stories saved before best-of-n keep their keys)
            **({"attempts": system.attempts} if system.attempts > 1 else {}),
        )
        for i, it in enumerate(items)
    }
    done = read_done(out, keys)
    todo = [(i, 0) for i, it in enumerate(items) if it["id"] not in done]
    if not todo:
        return [done[it["id"]] for it in items]
    requests = [it["request"] for it in items]
    plans = [it["plan"] for it in items]
    with open_for_append(out) as f:
        # Every story computes its whole prompt, so the speed figures do not depend on the
        # story before.
        for w in write_stories(backend, system, requests, seed, 1, plans, todo, fresh_cache=True):
            item = items[w.index]
            row = {
                "id": item["id"],
                "key": keys[item["id"]],
                "story": w.text,
                "plan": w.plan.to_dict() if w.plan is not None else None,
                "plan_error": w.plan_error,
                "provenance": w.provenance,
            }
            f.write(json.dumps(row) + "\n")
            f.flush()
            done[item["id"]] = row
    return [done[it["id"]] for it in items]


def engine_memory(gens: Path, spec: ModelSpec, measured: float, wrote: bool) -> float:
    """The story engine's resident memory: what loading it added plus what writing added on top
    at its peak. The run that writes stories keeps its figure beside them
    (``<system>.memory.json``), since a rerun that reuses the stories only loads the engine."""
    path = gens.with_name(gens.stem + ".memory.json")
    key = settings_key(model=spec)
    if wrote:
        path.write_text(json.dumps({"key": key, "memory_mib": measured}) + "\n")
    elif path.exists():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return float(saved["memory_mib"])
    return measured  # stories written before figures were kept: this run's loading only
