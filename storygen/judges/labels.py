"""The labelled set's format, shared by those who make labels (``finetune.judge_set``) and
those who score systems with them (``eval.readers``): what a reader is shown of a request, a
batch of stories as one Markdown file, and a reader's answers as units, each judged alone."""

from __future__ import annotations

import json
from typing import Any

from storygen.judges import CLASS_FIELDS


def batch_markdown(stories: list[tuple[str, str, dict | None]], title: str) -> str:
    """Stories (id, text, request or None) as one Markdown file for a reader."""
    parts = [f"# {title}\n"]
    for sid, text, request in stories:
        parts.append(f"\n---\n\n## Story `{sid}`\n")
        if request is not None:
            parts.append("**Request:**\n\n```json\n" + json.dumps(request, indent=1) + "\n```\n")
        parts.append("**Story:**\n\n" + text.strip() + "\n")
    return "\n".join(parts)


def shown_request(request: dict) -> dict:
    """The part of a request labellers see: what the story is checked against (characters,
    place, era, events). The genre, tone, ending, point of view and arc asked for are not
    shown: those are labelled as the story's own, unprimed."""
    return {
        "characters": [
            {"name": c["name"], "traits": list(c.get("traits") or [])}
            for c in request.get("characters") or []
        ],
        "place": (request.get("setting") or {}).get("place") or None,
        "era": (request.get("setting") or {}).get("era") or None,
        "events": list(request.get("plot_points") or []),
    }


def units(label: dict, request: dict) -> dict[str, Any]:
    """A labeller's answers as units, each judged on its own: the story's genre, tone,
    ending, point of view and arc, and for the request, ``place``, ``era``,
    ``character:I:present``, ``character:I:trait:T`` and ``event:J`` (a part the request
    lacks has no unit)."""
    shown = shown_request(request)
    out: dict[str, Any] = {f: label[f] for f in CLASS_FIELDS}
    for key in ("place", "era"):
        if shown[key]:
            out[key] = bool(label.get(key))
    given = {c.get("name"): c for c in label.get("characters") or [] if isinstance(c, dict)}
    for i, c in enumerate(shown["characters"]):
        answer = given.get(c["name"]) or {}
        out[f"character:{i}:present"] = bool(answer.get("present"))
        traits = answer.get("traits") or {}
        for t in c["traits"]:
            out[f"character:{i}:trait:{t}"] = bool(traits.get(t))
    events = label.get("events") or []
    for j in range(len(shown["events"])):
        out[f"event:{j}"] = bool(events[j]) if j < len(events) else False
    return out
