"""Readers' reactions to a finished story: thumbs up or down, or their own edit of it.

An append-only JSON Lines log with the vote log's guarantees (:mod:`human_ratings.applog`):
threads and processes append at once without losing or merging a record, a crash mid-write
loses that record alone, and text is kept exactly (JSON escapes line breaks and quotes; no
spreadsheet formula rule is needed, the file is not CSV). Each record holds what made the
story (request, sampling settings and seed, backend, base model, adapter, prompt format), so
``python -m finetune prefer`` can turn reactions into preference data. Anonymous unless the
person gives a name.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from human_ratings.applog import AppendLog

SCHEMA_VERSION = 2
KINDS = ("up", "down", "edit")
MAX_TEXT = 100_000


class ReactionError(ValueError):
    """A reaction that cannot be recorded, with a message for the reader."""


class DuplicateReaction(ReactionError):
    """This visitor already gave this story a thumb (or an edit)."""


def family(kind: str) -> str:
    """Thumbs up and down are one choice; an edit is another."""
    return "edit" if kind == "edit" else "thumb"


@dataclass
class Reaction:
    """One reader's reaction to one story."""

    kind: str
    """``up``, ``down`` or ``edit`` (the reader's version of the story is ``edited``)."""
    story: str
    """The story exactly as the model wrote it."""
    edited: str = ""
    system: str = ""
    """Which model wrote it: the adapter's name, or the base model's for a bare base."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """The story's provenance: request, sampling (with the seed), backend, base, adapter..."""
    reader: str = ""
    """Empty unless the reader chose to give a name."""
    visitor: str = ""
    """A pseudonymous id of the visit (or the browser) that reacted: one thumb and one edit
    per visitor and story."""
    schema_version: int = SCHEMA_VERSION
    timestamp_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ReactionError(f"a reaction is one of {', '.join(KINDS)}, not {self.kind!r}")
        if not isinstance(self.story, str) or not self.story.strip():
            raise ReactionError("there is no finished story to react to yet")
        if self.kind == "edit":
            if not isinstance(self.edited, str) or not self.edited.strip():
                raise ReactionError("the edited story is empty: change the text, then save")
            if self.edited == self.story:
                raise ReactionError("the edit is the same as the story: change it, then save")
        elif self.edited:
            raise ReactionError("only an edit carries an edited text")
        for name in ("story", "edited"):
            if len(getattr(self, name)) > MAX_TEXT:
                raise ReactionError(f"the {name} text is too long (at most {MAX_TEXT} characters)")
        if not isinstance(self.reader, str) or len(self.reader) > 64:
            raise ReactionError("a reader name is text of at most 64 characters")


def system_of(provenance: dict[str, Any]) -> str:
    """The name a story's system goes by: its adapter's, or its base model's."""
    return str(provenance.get("adapter_name") or provenance.get("base_model") or "unknown")


def _encode(reaction: Reaction) -> bytes:
    data = asdict(reaction)
    body = json.dumps(data, ensure_ascii=False, sort_keys=True)
    data["crc"] = f"{zlib.crc32(body.encode()):08x}"
    return (json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n").encode()


def _decode(line: bytes) -> Reaction | None:
    try:
        data = json.loads(line)
        crc = data.pop("crc")
        body = json.dumps(data, ensure_ascii=False, sort_keys=True)
        if crc != f"{zlib.crc32(body.encode()):08x}":
            return None  # an altered record
        known = {f.name for f in fields(Reaction)}
        return Reaction(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class ReactionLog(AppendLog):
    """The reactions JSONL at ``path``."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._cache: list[Reaction] = []

    def append(self, reaction: Reaction) -> Reaction:
        """Keep ``reaction``; :class:`DuplicateReaction` when its visitor already gave this
        story a reaction of the same family (a thumb, or an edit): the first one stands."""
        data = _encode(reaction)
        with self._locked():
            current = self._read()  # a fresh offset, which the torn-tail cut relies on
            if reaction.visitor and any(
                r.visitor == reaction.visitor
                and r.story == reaction.story
                and family(r.kind) == family(reaction.kind)
                for r in current
            ):
                said = "an edit" if reaction.kind == "edit" else "a thumb"
                raise DuplicateReaction(f"you have given this story {said} already")
            self._cut_torn_tail()
            self._write(data)
        return reaction

    def _read(self) -> list[Reaction]:
        """Parse the complete lines appended since the last call (lock held)."""
        if not self.path.exists():
            self._offset, self._cache = 0, []
            return []
        if self.path.stat().st_size < self._offset:
            self._offset, self._cache = 0, []  # the file was replaced
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # an unfinished last line waits for the next append
        for line in chunk[:end].split(b"\n"):
            reaction = _decode(line) if line.strip() else None
            if reaction is not None:
                self._cache.append(reaction)
        self._offset += end
        return list(self._cache)

    def read_all(self) -> list[Reaction]:
        """Every intact record, in order (torn or altered ones skipped)."""
        with self._locked():
            return self._read()

    def counts(self) -> dict[str, dict[str, int]]:
        """Reactions per system and kind."""
        out: dict[str, Counter] = {}
        for r in self.read_all():
            out.setdefault(r.system, Counter())[r.kind] += 1
        return {s: {k: c[k] for k in KINDS} for s, c in sorted(out.items())}
