"""A/B items for annotators: one request, one story from each of two systems, same seed.

``python -m human_ratings pairs requests.jsonl systems.yaml --out pairs.jsonl`` writes them;
the Rate tab reads them. Each line: ``{"item_id", "request", "stories": {system: {...}}}``.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from human_ratings.applog import AppendLog
from storygen.config import ConfigError, SystemSpec, read_yaml
from storygen.request import RequestError, StoryRequest


class PairsError(ValueError):
    """A requests, systems or pairs file that cannot be used."""


@dataclass
class Item:
    """One A/B item as the Rate tab shows it."""

    item_id: str
    request: StoryRequest
    stories: dict[str, dict[str, Any]]
    """system name -> {"text": ..., "provenance": {...}}"""


def item_id(request: StoryRequest, seed: int) -> str:
    """A stable id for (request, seed). A field left at its default is left out, so that a
    field added to requests later (the arc) does not change the ids of items made before."""
    fields = request.to_dict()
    if not fields["arc"]:
        del fields["arc"]
    key = json.dumps(fields, sort_keys=True) + f"|{seed}"
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


def _rows(path: Path, what: str, parse):
    """Parse each non-empty JSONL line with ``parse``; errors name the file, line and cause."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PairsError(f"cannot read {path}: {exc}") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(parse(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                detail = exc.errors if isinstance(exc, RequestError) else exc
                raise PairsError(f"{path}:{n}: not {what} ({detail})") from exc
    return out


def load_requests(path: Path) -> list[StoryRequest]:
    """One request per line (a bare request, or a row with a "request" field)."""
    return _rows(
        path, "a story request", lambda row: StoryRequest.from_dict(row.get("request", row))
    )


def load_systems(path: Path) -> list[SystemSpec]:
    try:
        data = read_yaml(path)
        if not isinstance(data, dict) or not isinstance(data.get("systems"), list):
            raise ConfigError(f"{path}: expected 'systems:' with two entries")
        systems = [SystemSpec.from_dict(s, str(path)) for s in data["systems"]]
    except ConfigError as exc:
        raise PairsError(str(exc)) from exc
    if len(systems) != 2 or systems[0].name == systems[1].name:
        raise PairsError(f"{path}: need exactly two systems with different names")
    for s in systems:
        if s.plan != "none":
            raise PairsError(
                f"{path}: system {s.name!r} has plan: {s.plan}; A/B items are written straight "
                "from the request (plan-then-write is compared by `eval compare`)"
            )
    return systems


def build_pairs(
    requests: list[StoryRequest], systems: list[SystemSpec], out: Path, seed: int = 7000
) -> int:
    """Both systems' stories for every request (:mod:`storygen.items`: request i's on seed
    ``seed + i``), one A/B item per request; returns the number of items."""
    from storygen.items import story_seed, write_for_systems

    stories = write_for_systems(systems, requests, seed)
    with out.open("w") as f:
        for i, request in enumerate(requests):
            stories_i = {s.name: stories[s.name][i].as_story() for s in systems}
            item = Item(item_id(request, story_seed(seed, i)), request, stories_i)
            f.write(json.dumps(item_row(item)) + "\n")
    return len(requests)


def item_row(item: Item) -> dict[str, Any]:
    """An item as one line of a pairs file."""
    return {"item_id": item.item_id, "request": item.request.to_dict(), "stories": item.stories}


class ItemLog(AppendLog):
    """Items made on the spot (the Rate tab's ``--live``), appended as they are made, so that
    the votes on them keep their stories after a restart (``finetune prefer`` reads them)."""

    def append(self, item: Item) -> None:
        data = (json.dumps(item_row(item)) + "\n").encode()
        with self._locked():
            if self.path.exists():  # the end of the last whole line: where a torn one starts
                self._offset = self.path.read_bytes().rfind(b"\n") + 1
            self._cut_torn_tail()
            self._write(data)

    def read_all(self) -> tuple[list[Item], int]:
        """The whole items in the file, and how many lines could not be read (a torn last
        line, or a line of another kind)."""
        if not self.path.exists():
            return [], 0
        items, bad = [], 0
        for line in self.path.read_bytes().split(b"\n"):
            if not line.strip():
                continue
            try:
                items.append(_item(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError):
                bad += 1
        return items, bad


def _item(row: dict) -> Item:
    item = Item(str(row["item_id"]), StoryRequest.from_dict(row["request"]), dict(row["stories"]))
    if len(item.stories) != 2:
        raise ValueError("an item needs exactly two stories")
    return item


def load_items(path: Path) -> list[Item]:
    """Read a pairs file; every item must hold exactly two stories."""
    return _rows(path, "an A/B item", _item)


def assign_sides(item: Item, rng: random.Random) -> tuple[str, str]:
    """Randomise which system is shown on the left for this viewing."""
    a, b = sorted(item.stories)
    return (a, b) if rng.random() < 0.5 else (b, a)


def arena_systems(
    child: Path, base: str = "embedded", sampling: dict[str, Any] | None = None
) -> list[SystemSpec]:
    """A preference-tuned adapter and its parent (from its lineage) as the two systems of A/B
    items, with the same base and sampling: the Rate tab then judges child against parent."""
    from storygen.loading import LineageError, lineage_parent, read_adapter_meta

    meta = read_adapter_meta(Path(child))
    lineage = meta.get("lineage") or {}
    try:
        parent = lineage_parent(Path(child), base)
    except LineageError as exc:
        raise PairsError(str(exc)) from exc
    names = (lineage.get("parent") or Path(parent).name, meta.get("name") or Path(child).name)
    if names[0] == names[1]:
        names = (f"{names[0]} (parent)", names[1])
    try:
        return [
            SystemSpec.from_dict(
                {"name": name, "base": base, "adapter": str(adapter), "sampling": sampling or {}}
            )
            for name, adapter in zip(names, (parent, child), strict=True)
        ]
    except ConfigError as exc:
        raise PairsError(str(exc)) from exc
