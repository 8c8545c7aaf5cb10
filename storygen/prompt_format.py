"""The one prompt format: a story request rendered as tagged text.

Fine-tuning data, generation and evaluation all call this module, so the model is trained on
exactly the text it is later prompted with. ``PROMPT_FORMAT_VERSION`` is stamped into every
adapter and checked at load time: change the rendering, bump the version.

Layout (one field per line, empty fields left out)::

    <|request|>
    genre: science fiction
    characters: Mara (stubborn, kind); Jonah (curious)
    ...
    <|story|>
    Once upon a time ...<eos>

User text can never forge the syntax: values are single-line (validation collapses newlines),
and the structural characters ``\\ ; , ( ) |`` inside a value are backslash-escaped, so neither a
marker (which needs ``|``) nor a field or list separator can appear unescaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from storygen.request import LENGTHS, Character, Setting, StoryRequest, validate

PROMPT_FORMAT_VERSION = "storygen-tags-v1"
REQUEST_MARKER = "<|request|>"
STORY_MARKER = "<|story|>"
MARKERS = (REQUEST_MARKER, STORY_MARKER, "<|end|>")

# Field order is part of the format.
FIELDS = (
    "genre",
    "tone",
    "setting",
    "era",
    "characters",
    "must happen",
    "ending",
    "point of view",
    "length",
    "prompt",
)

_ESCAPED = "\\;,()|"
_ESCAPE = re.compile(r"[\\;,()|]")
_UNESCAPE = re.compile(r"\\(.)")


def escape(text: str) -> str:
    """Backslash-escape the characters that carry structure in the tagged format."""
    return _ESCAPE.sub(r"\\\g<0>", text)


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


def request_fields(request: StoryRequest) -> dict[str, str]:
    """The non-empty tagged fields of a request, in format order, values already escaped."""
    values = {
        "genre": request.genre,
        "tone": request.tone,
        "setting": escape(request.setting.place),
        "era": escape(request.setting.era),
        "characters": "; ".join(_character(c) for c in request.characters),
        "must happen": "; ".join(escape(p) for p in request.plot_points),
        "ending": request.ending,
        "point of view": request.pov,
        "length": f"{request.length} (about {LENGTHS[request.length]} words)",
        "prompt": escape(request.prompt),
    }
    return {k: values[k] for k in FIELDS if values[k]}


def render_request(request: StoryRequest) -> str:
    """Render a validated request as the prompt text, ending where the story begins."""
    lines = [REQUEST_MARKER]
    lines += [f"{k}: {v}" for k, v in request_fields(request).items()]
    lines.append(STORY_MARKER)
    return "\n".join(lines) + "\n"


CHAT_INSTRUCTION = "Write a short story that follows this request. Reply with the story only."
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


def tagged_prompt(request: StoryRequest) -> Prompt:
    """The fine-tuning format, for a model trained on it (any adapter of this project)."""
    return Prompt(((render_request(request), False),), "tagged")


def chat_prompt(request: StoryRequest, template: str, special_tokens: dict[str, str]) -> Prompt:
    """The request's fields inside a base model's own chat template (a bare instruct model
    understands that better than tags it was never trained on).

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
    content = f"{CHAT_INSTRUCTION}\n\n{fields_text}"
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


def render_example(request: StoryRequest, story: str) -> tuple[str, str]:
    """A fine-tuning example: (prompt, completion). The trainer appends the EOS token and puts
    the loss on the completion only."""
    return render_request(request), strip_markers(story).strip()


def strip_markers(text: str) -> str:
    """Remove any format marker from model output (it must never reach a reader)."""
    for m in MARKERS:
        text = text.replace(m, "")
    return text


def parse_request(text: str) -> StoryRequest:
    """Read a rendered prompt back into a request (the inverse of :func:`render_request`)."""
    body = text.split(REQUEST_MARKER, 1)[-1].split(STORY_MARKER, 1)[0]
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
        )
    )
