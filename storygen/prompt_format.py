"""The one prompt format: a story request rendered as tagged text.

Fine-tuning data, generation and evaluation all call this module, so the model is trained on
exactly the text it is later prompted with. ``PROMPT_FORMAT_VERSION`` is stamped into every
adapter and checked at load time: change the rendering, bump the version. Adapters of an older
version (:data:`FORMAT_VERSIONS`) keep loading and get exactly their own rendering; a request
that needs a newer feature (the arc, a plan) is refused for them with a message.

Layout (one field per line, empty fields left out)::

    <|request|>
    genre: science fiction
    characters: Mara (stubborn, kind); Jonah (curious)
    arc: man in a hole
    ...
    <|plan|>
    premise: A keeper finds a letter that was never sent.
    1. Mara keeps the light alone.
    2. ...
    <|story|>
    Once upon a time ...<eos>

The ``<|plan|>`` section (version 2) is optional: a story is written straight from the request,
or from a plan. Plan-then-write is two tasks of one adapter: the request followed by
``<|plan|>`` asks for the plan (:func:`plan_prompt`); the request, the plan and ``<|story|>``
ask for the story.

User text can never forge the syntax: values are single-line (validation collapses newlines),
and the structural characters inside a value are backslash-escaped, so neither a marker (which
needs ``|``) nor a field or list separator can appear unescaped. Lists (characters and their
traits, events) escape ``\\ ; , ( ) |``; since version 3, a value that is a line of free text
(the place, the era, the prompt, the premise and each beat) escapes only ``\\`` and ``|``, so
the model reads and writes plain sentences ("Mara, alone" and not "Mara\\, alone"). Versions 1
and 2 escape every value in full.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from storygen.request import (
    BEAT_NAMES,
    LENGTHS,
    Character,
    Plan,
    RequestError,
    Setting,
    StoryRequest,
    validate,
    validate_plan,
)

V1 = "storygen-tags-v1"
V2 = "storygen-tags-v2"
V3 = "storygen-tags-v3"
PROMPT_FORMAT_VERSION = V3
FORMAT_VERSIONS = (V1, V2, V3)
"""Every version this code renders, oldest first; adapters of any of them load."""
REQUEST_MARKER = "<|request|>"
PLAN_MARKER = "<|plan|>"
STORY_MARKER = "<|story|>"
MARKERS = (REQUEST_MARKER, PLAN_MARKER, STORY_MARKER, "<|end|>")

# Field order is part of the format. Version 1 has no arc.
FIELDS = (
    "genre",
    "tone",
    "setting",
    "era",
    "characters",
    "must happen",
    "arc",
    "ending",
    "point of view",
    "length",
    "prompt",
)
FIELDS_V1 = tuple(f for f in FIELDS if f != "arc")
PREMISE = "premise"
# A beat's own number or bullet: "1. ", "2) ", "- ", "• " (a space after it, so "1984: ..."
# and "-5 degrees" stay as written).
_BEAT_LINE = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+")

_ESCAPE = re.compile(r"[\\;,()|]")
_ESCAPE_TEXT = re.compile(r"[\\|]")
_UNESCAPE = re.compile(r"\\(.)")


def escape(text: str) -> str:
    """Backslash-escape the characters that carry structure in the tagged format."""
    return _ESCAPE.sub(r"\\\g<0>", text)


def escape_text(text: str) -> str:
    """Escape a line of free text: only what could form a marker (``|``) or an escape."""
    return _ESCAPE_TEXT.sub(r"\\\g<0>", text)


def _free_text(version: str):
    """How ``version`` escapes a value that is a line of free text."""
    return escape if version in (V1, V2) else escape_text


def unescape(text: str) -> str:
    """Inverse of :func:`escape`."""
    return _UNESCAPE.sub(r"\1", text)


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped."""
    parts, cur, i = [], "", 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if c == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _unescaped(text: str, char: str) -> int:
    """The index of the first ``char`` in ``text`` that is not escaped, or -1."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == char:
            return i
        else:
            i += 1
    return -1


def _character(c: Character) -> str:
    name = escape(c.name)
    return f"{name} ({', '.join(escape(t) for t in c.traits)})" if c.traits else name


def check_version(request: StoryRequest, version: str, planned: bool = False) -> None:
    """Refuse what ``version`` cannot say: an unknown version, or the arc or a plan for a
    version-1 adapter (a :class:`RequestError` naming the field)."""
    if version not in FORMAT_VERSIONS:
        raise ValueError(f"unknown prompt format {version!r}; known: {', '.join(FORMAT_VERSIONS)}")
    if version == V1:
        why = f"the adapter speaks prompt format {V1}, which has no {{}}: use an adapter of {V2}"
        why += " or later"
        errors = {}
        if request.arc:
            errors["arc"] = why.format("arc") + " or leave the arc empty"
        if planned:
            errors["plan"] = why.format("plan") + " or write without a plan"
        if errors:
            raise RequestError(errors)


def request_fields(request: StoryRequest, version: str = PROMPT_FORMAT_VERSION) -> dict[str, str]:
    """The non-empty tagged fields of a request, in format order, values already escaped."""
    check_version(request, version)
    free = _free_text(version)
    values = {
        "genre": request.genre,
        "tone": request.tone,
        "setting": free(request.setting.place),
        "era": free(request.setting.era),
        "characters": "; ".join(_character(c) for c in request.characters),
        "must happen": "; ".join(escape(p) for p in request.plot_points),
        "arc": request.arc,
        "ending": request.ending,
        "point of view": request.pov,
        "length": f"{request.length} (about {LENGTHS[request.length]} words)",
        "prompt": free(request.prompt),
    }
    return {k: values[k] for k in (FIELDS_V1 if version == V1 else FIELDS) if values[k]}


def render_plan(plan: Plan, version: str = PROMPT_FORMAT_VERSION, person: bool = False) -> str:
    """A validated plan as text: the premise line (when there is one), then numbered beats.

    As the model reads it (``version``'s escapes, a line break at the end), or with
    ``person=True`` as a person reads and edits it (``Premise: ...``, no escapes), which
    :func:`parse_plan` with ``escaped=False`` reads back."""
    free = str if person else _free_text(version)
    head = "Premise" if person else PREMISE
    lines = [f"{head}: {free(plan.premise)}"] if plan.premise else []
    lines += [f"{i}. {free(beat)}" for i, beat in enumerate(plan.beats, 1)]
    return "\n".join(lines) + ("" if person else "\n")


def parse_plan(text: str, origin: str = "model", escaped: bool = True, check: bool = True) -> Plan:
    """Read a plan back from text: the model's (tagged, ``escaped``) or a person's (plain,
    ``escaped=False``) lines.

    A line ``premise: ...`` is the premise; every other non-empty line is a beat, its leading
    number or bullet dropped. In the model's text, only what lies between ``<|plan|>`` and
    ``<|story|>`` is the plan; a person's text is taken as typed. Raises
    :class:`RequestError` when no beat is left or a part is too long (``check=False``: the
    plan as read, unchecked).
    """
    plain = unescape if escaped else str
    if escaped:
        text = strip_markers(text.split(STORY_MARKER, 1)[0].split(PLAN_MARKER)[-1])
    premise, beats = "", []
    for line in text.splitlines():
        line = line.strip()
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == PREMISE and not premise:
            premise = plain(value.strip())
        elif line:
            beats.append(plain(_BEAT_LINE.sub("", line, count=1)).strip())
    plan = Plan(premise, [b for b in beats if b], origin)
    return validate_plan(plan) if check else plan


def render_request(
    request: StoryRequest, version: str = PROMPT_FORMAT_VERSION, plan: Plan | None = None
) -> str:
    """Render a validated request (and its plan, if any) as the prompt text, ending where the
    story begins."""
    check_version(request, version, plan is not None)
    lines = [REQUEST_MARKER]
    lines += [f"{k}: {v}" for k, v in request_fields(request, version).items()]
    text = "\n".join(lines) + "\n"
    if plan is not None:
        text += f"{PLAN_MARKER}\n{render_plan(validate_plan(plan), version)}"
    return text + STORY_MARKER + "\n"


def render_plan_request(request: StoryRequest, version: str = PROMPT_FORMAT_VERSION) -> str:
    """The request as the prompt for its plan (stage 1 of plan-then-write)."""
    check_version(request, version, planned=True)
    return render_request(request, version).removesuffix(STORY_MARKER + "\n") + PLAN_MARKER + "\n"


CHAT_INSTRUCTION = "Write a short story that follows this request. Reply with the story only."
CHAT_PLAN_INSTRUCTION = (
    "Plan a short story that follows this request. Reply with the plan only: first a line "
    "'premise: ' and the story's premise in one sentence, then five numbered lines, one short "
    "sentence each: " + ", ".join(BEAT_NAMES) + "."
)
CHAT_FOLLOW_PLAN = "Follow this plan, beat by beat, in order:"
_CONTENT_SLOT = "\x00storygen-content\x00"


@dataclass(frozen=True)
class Prompt:
    """A prompt as pieces of text. Pieces marked ``special`` come from a chat template and may
    hold the tokenizer's special tokens (``<|im_start|>``); every other piece (the request, the
    story so far) is tokenized so that no special token can be formed from it."""

    parts: tuple[tuple[str, bool], ...]
    style: str
    """``tagged`` (the fine-tuning format) or ``chat`` (the base model's chat template)."""

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.parts)

    def extended(self, text: str) -> Prompt:
        """This prompt followed by plain ``text`` (the story so far, for Continue)."""
        if not text:
            return self
        parts = list(self.parts)
        if parts and not parts[-1][1]:
            parts[-1] = (parts[-1][0] + text, False)
        else:
            parts.append((text, False))
        return Prompt(tuple(parts), self.style)


def tagged_prompt(
    request: StoryRequest,
    version: str = PROMPT_FORMAT_VERSION,
    plan: Plan | None = None,
    task: str = "story",
) -> Prompt:
    """The fine-tuning format, for a model trained on it (any adapter of this project):
    ``task`` ``story`` (from the request, or from ``plan``) or ``plan`` (the plan itself)."""
    if task == "plan":
        return Prompt(((render_plan_request(request, version), False),), "tagged")
    return Prompt(((render_request(request, version, plan), False),), "tagged")


def chat_prompt(
    request: StoryRequest,
    template: str,
    special_tokens: dict[str, str],
    plan: Plan | None = None,
    task: str = "story",
) -> Prompt:
    """The request's fields inside a base model's own chat template (a bare instruct model
    understands that better than tags it was never trained on). ``task`` and ``plan`` as in
    :func:`tagged_prompt`.

    The template is rendered the way transformers' ``apply_chat_template`` renders it (sandboxed
    Jinja, ``trim_blocks``, ``lstrip_blocks``), with a placeholder for the user's text, so the
    template's pieces and the user's text can be tokenized each by their own rule.
    """
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise ValueError(f"chat template: {message}")

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.globals["raise_exception"] = raise_exception
    fields_text = "\n".join(f"{k}: {v}" for k, v in request_fields(request).items())
    if task == "plan":
        content = f"{CHAT_PLAN_INSTRUCTION}\n\n{fields_text}"
    else:
        content = f"{CHAT_INSTRUCTION}\n\n{fields_text}"
        if plan is not None:  # plain lines: a chat model reads text, not the tagged format
            plan = validate_plan(plan)
            lines = [f"{PREMISE}: {plan.premise}"] if plan.premise else []
            lines += [f"{i}. {beat}" for i, beat in enumerate(plan.beats, 1)]
            content += f"\n\n{CHAT_FOLLOW_PLAN}\n" + "\n".join(lines)
    rendered = env.from_string(template).render(
        messages=[{"role": "user", "content": _CONTENT_SLOT}],
        add_generation_prompt=True,
        **special_tokens,
    )
    before, slot, after = rendered.partition(_CONTENT_SLOT)
    if not slot or _CONTENT_SLOT in after:
        raise ValueError("the chat template does not show the user's message exactly once")
    parts = tuple(
        (t, special) for t, special in ((before, True), (content, False), (after, True)) if t
    )
    return Prompt(parts, "chat")


def render_example(request: StoryRequest, story: str, plan: Plan | None = None) -> tuple[str, str]:
    """A fine-tuning example: (prompt, completion), the story written from the request (and
    from ``plan``, if given). The trainer appends the EOS token and puts the loss on the
    completion only."""
    return render_request(request, plan=plan), strip_markers(story).strip()


def render_plan_example(request: StoryRequest, plan: Plan) -> tuple[str, str]:
    """A fine-tuning example of stage 1: (the request asking for a plan, the plan)."""
    return render_plan_request(request), render_plan(validate_plan(plan))


def strip_markers(text: str) -> str:
    """Remove any format marker from model output (it must never reach a reader)."""
    for m in MARKERS:
        text = text.replace(m, "")
    return text


def parse_request(text: str) -> StoryRequest:
    """Read a rendered prompt back into a request (the inverse of :func:`render_request`)."""
    body = text.split(REQUEST_MARKER, 1)[-1].split(STORY_MARKER, 1)[0].split(PLAN_MARKER, 1)[0]
    raw: dict[str, str] = {}
    for line in body.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key in FIELDS:
            raw[key] = value
    characters = []
    for part in _split(raw.get("characters", ""), ";"):
        # "name (trait, trait)": the name's own brackets are escaped, so the first unescaped
        # "(" opens the traits (a lookbehind for "\\" would misread an escaped backslash).
        i = _unescaped(part, "(")
        name, traits = (part[:i].rstrip(), _split(part[i + 1 : -1], ",")) if i > 0 else (part, [])
        characters.append(Character(unescape(name), [unescape(t) for t in traits]))
    return validate(
        StoryRequest(
            characters=characters,
            setting=Setting(unescape(raw.get("setting", "")), unescape(raw.get("era", ""))),
            genre=raw.get("genre", ""),
            tone=raw.get("tone", ""),
            plot_points=[unescape(p) for p in _split(raw.get("must happen", ""), ";")],
            ending=raw.get("ending", ""),
            pov=raw.get("point of view", ""),
            length=raw.get("length", "short").split(" ")[0],
            prompt=unescape(raw.get("prompt", "")),
            arc=raw.get("arc", ""),
        )
    )
