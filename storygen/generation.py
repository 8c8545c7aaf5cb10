"""Streaming story generation: request in, clean story with provenance out, on any backend.

What every backend shares lives here: request validation, the prompt (through
:mod:`storygen.prompt_format`), the token budget, Stop between two tokens, the repetition guard,
incremental text, story clean-up and provenance. The engines only turn a prompt into tokens
(:mod:`storygen.backends`); the local ones choose each token with the one
:class:`~storygen.sampling.Sampler`, seeded per request, so concurrent users cannot disturb each
other's stories. ``bench/generation.py`` measures it against the engines' own loops.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Hashable, Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from typing import Any

from storygen.backends.base import Backend, BackendError, DecodeStats
from storygen.config import SamplingConfig
from storygen.prompt_format import (
    FIELDS,
    PLAN_MARKER,
    PREMISE,
    REQUEST_MARKER,
    Prompt,
    parse_plan,
    render_plan,
    strip_markers,
    unescape,
)
from storygen.request import (
    BEAT_NAMES,
    LENGTHS,
    MAX_BEAT,
    MAX_BEATS,
    Plan,
    RequestError,
    StoryRequest,
    remove_controls,
    validate,
    validate_plan,
)
from storygen.text import END_MARK, TITLE_END, cut_to_sentence

__all__ = [
    "BackendError",
    "DecodeStats",
    "Story",
    "StoryUpdate",
    "PlanUpdate",
    "stream_story",
    "stream_plan",
    "generate_story",
    "generate_plan",
]

TOKENS_PER_WORD = 1.4  # English BPE averages ~1.3 tokens a word; a little headroom
PLAN_TOKENS = 256
"""The most tokens a plan takes (a premise and five one-line beats need about 150)."""
PLAN_LINE_TOKENS = 48
"""The most tokens one line of a plan takes (a beat is a sentence of at most 20 words)."""
_OPENS = "\"'“‘([*"
"""What may open a sentence, besides a capital or a digit."""
_LINE_BREAK = re.compile(r"[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")  # as str.splitlines
MAX_PREFIX_TOKENS = 2048
"""The longest story text Continue takes (its prompt pass cannot be stopped, so it is bounded)."""
_CHARS_PER_TOKEN_MAX = 12  # no tokenizer needs this many characters a token: a cheap first check
_FORMAT_ESCAPE = re.compile(r"\\([\\;,()|])")
"""A backslash before a character the prompt format escapes: format, never story text."""


@dataclass
class Story:
    """A finished story and everything needed to reproduce it."""

    text: str
    stop_reason: str
    provenance: dict[str, Any]


@dataclass
class StoryUpdate:
    """One step of a stream: the new text, the text so far and, at the end, the story."""

    delta: str
    text: str
    story: Story | None = None

    @property
    def done(self) -> bool:
        return self.story is not None


def max_new_tokens(request: StoryRequest, sampling: SamplingConfig) -> int:
    """Token budget: the explicit cap, else the request's length bucket in tokens."""
    if sampling.max_new_tokens:
        return sampling.max_new_tokens
    return int(LENGTHS[request.length] * TOKENS_PER_WORD) + 32


def repetition_start(ids: list[int], min_span: int = 16, max_period: int = 48) -> int | None:
    """If ``ids`` ends in a loop (one block of tokens repeated back to back, covering at least
    ``min_span`` tokens and three copies), return where the second copy starts; else None."""
    n = len(ids)
    for period in range(1, max_period + 1):
        copies = max(3, -(-min_span // period))
        if n < copies * period:
            continue  # not break: copies * period is not monotone (period 5 needs 20, 6 needs 18)
        block = ids[n - period :]
        if all(ids[n - (k + 1) * period : n - k * period] == block for k in range(1, copies)):
            start = n - copies * period
            while start - period >= 0 and ids[start - period : start] == block:
                start -= period
            return start + period
    return None


def decode(
    backend: Backend,
    prompt: Prompt,
    sampling: SamplingConfig,
    budget: int,
    stop_event: threading.Event | None = None,
    stats: DecodeStats | None = None,
    stop_on_eos: bool = True,
) -> Iterator[tuple[list[Hashable], str]]:
    """Up to ``budget`` tokens after ``prompt``; yield (generated tokens, stop reason or "").

    The last item carries the reason: ``eos``, ``length``, ``stopped`` or ``repetition``. Stop
    is checked before each model step, and closing this generator closes the engine's stream.
    """
    backend.check_sampling(sampling, stop_on_eos)
    stats = stats if stats is not None else DecodeStats()
    t0 = time.perf_counter()
    generated: list[Hashable] = []
    reason = "eos"
    stream = backend.tokens(prompt, sampling, budget, stats, stop_on_eos)
    try:
        while True:
            if stop_event is not None and stop_event.is_set():
                reason = "stopped"
                break
            if len(generated) >= budget:
                reason = "length"
                break
            try:
                token = next(stream)
            except StopIteration as end:
                reason = end.value or "eos"  # the engine ended the story (or ran out of room)
                break
            if stats.first_token_s is None:
                stats.first_token_s = time.perf_counter() - t0
            generated.append(token)
            loop_at = repetition_start(generated)
            if loop_at is not None:
                del generated[loop_at:]
                reason = "repetition"
                break
            yield generated, ""
    finally:
        stream.close()
        stats.new_tokens = len(generated)
        stats.seconds = time.perf_counter() - t0
    yield generated, reason


class IncrementalText:
    """The text of a growing token list, decoding only a short window of the newest tokens each
    time (the way vLLM detokenizes incrementally), so a long story costs the same per token as a
    short one. Text is added once its tokens decode to whole characters."""

    def __init__(self, backend: Backend):
        self.detokenize = backend.detokenize
        self.text = ""
        self._start = 0  # the window decoded for context starts here ...
        self._done = 0  # ... and the text of tokens before this index is final

    def __call__(self, ids: list[Hashable]) -> str:
        before = self.detokenize(ids[self._start : self._done])
        now = self.detokenize(ids[self._start :])
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self.text += now[len(before) :]
            self._start, self._done = self._done, len(ids)
        return self.text


def clean_story(text: str, finished: bool) -> str:
    """Make model output fit to read: no markers, format escapes or echoed request, no half
    sentence at the end.

    ``finished`` says the model ended the story itself (EOS); otherwise the tail is cut back to
    the last complete sentence.
    """
    for marker in (REQUEST_MARKER, PLAN_MARKER):  # the model started a new request: it is over
        text = text.split(marker, 1)[0]
    text = _FORMAT_ESCAPE.sub(r"\1", strip_markers(text))  # "\," copied from an escaped plan
    lines = text.strip().splitlines()
    field_line = re.compile(rf"^({'|'.join(map(re.escape, FIELDS))}): ")
    while lines and (field_line.match(lines[0]) or not lines[0].strip()):
        lines.pop(0)  # an echo of the request
    text = "\n".join(line.rstrip() for line in lines).strip()
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text if finished else cut_to_sentence(text)


def check_prefix(backend: Backend, prefix: str) -> None:
    """Refuse story text too long to continue, before any model work (and before tokenizing
    megabytes of it)."""
    n = None
    if len(prefix) <= MAX_PREFIX_TOKENS * _CHARS_PER_TOKEN_MAX:
        n = backend.count_tokens(prefix)
    if n is None or n > MAX_PREFIX_TOKENS:
        size = f"{n} tokens" if n is not None else f"{len(prefix)} characters"
        raise RequestError(
            {
                "story to continue": f"is too long ({size}); at most {MAX_PREFIX_TOKENS} tokens "
                f"(about {int(MAX_PREFIX_TOKENS / TOKENS_PER_WORD)} words) can be continued: "
                "keep its last part"
            }
        )


def stream_story(
    backend: Backend,
    request: StoryRequest,
    sampling: SamplingConfig | None = None,
    stop_event: threading.Event | None = None,
    prefix: str = "",
    stop_on_eos: bool = True,
    plan: Plan | None = None,
) -> Iterator[StoryUpdate]:
    """Generate a story for ``request``, yielding text as it is produced.

    The last update has ``story`` set. Setting ``stop_event`` (or closing the iterator) ends the
    work before the next token; the story so far is returned as it was shown, cleaned of markers
    but not cut back to a sentence (its stop reason, ``stopped``, says it is unfinished).
    ``prefix`` is story text to continue from (the Continue button): the model picks up where
    it ends.
    ``stop_on_eos=False`` always spends the whole budget (benchmarks compare equal lengths).
    ``plan`` (plan-then-write, stage 2): the story follows these beats, in order.
    """
    request = validate(request)
    plan = validate_plan(plan) if plan is not None else None
    sampling = sampling or SamplingConfig()
    prompt = backend.prompt(request, plan=plan)
    # Text that ends a paragraph is continued on a new line, any other after a space.
    prefix = prefix.lstrip().rstrip(" \t") if prefix.strip() else ""
    if prefix:
        check_prefix(backend, prefix)
        prompt = prompt.extended(prefix)
        prefix += " " if not prefix.endswith("\n") else ""
    stats = DecodeStats()
    shown = ""
    ids: list[Hashable] = []
    reason = ""
    text_of = IncrementalText(backend)
    budget = max_new_tokens(request, sampling)
    # closing(): a caller that closes this stream (Stop in the app) closes the engine's at once,
    # rather than whenever the garbage collector gets to it.
    with closing(
        decode(backend, prompt, sampling, budget, stop_event, stats, stop_on_eos)
    ) as steps:
        for ids, reason in steps:
            if reason:
                break
            # The model's own leading spaces are dropped: the glue after the prefix (or nothing)
            # stands for them, as in the final story.
            text = prefix + text_of(ids).split(REQUEST_MARKER, 1)[0].lstrip(" ")
            if len(text) > len(shown) and text.startswith(shown):
                delta, shown = text[len(shown) :], text
                yield StoryUpdate(delta, shown)
    raw = backend.detokenize(ids)
    # Stopped by the writer: the text they saw stays, half sentence and all (marked unfinished
    # by its stop reason); only a story cut by its budget is cut back to a whole sentence.
    story_text = clean_story(prefix + raw.lstrip(" "), finished=reason in ("eos", "stopped"))
    provenance = {
        **backend.provenance(),
        "sampling": sampling.to_dict(),
        "prompt_style": prompt.style,
        "request": request.to_dict(),
        "plan": plan.to_dict() if plan is not None else None,
        "stop_reason": reason,
        "continued_from_chars": len(prefix),
        "prompt_tokens": stats.prompt_tokens,
        "new_tokens": stats.new_tokens,
        "seconds": round(stats.seconds, 3),
        "first_token_s": None if stats.first_token_s is None else round(stats.first_token_s, 3),
    }
    yield StoryUpdate("", story_text, Story(story_text, reason, provenance))


def generate_story(
    backend: Backend,
    request: StoryRequest,
    sampling: SamplingConfig | None = None,
    plan: Plan | None = None,
) -> Story:
    """Generate a whole story without streaming."""
    for update in stream_story(backend, request, sampling, plan=plan):
        if update.story is not None:
            return update.story
    raise AssertionError("stream_story ended without a story")


@dataclass
class PlanUpdate:
    """One step of a plan's stream: the new text, the text so far and, at the end, the plan
    with what made it."""

    delta: str
    text: str
    plan: Plan | None = None
    provenance: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.plan is not None


def plan_from_text(text: str) -> Plan:
    """The plan in a model's output: each line cut to a beat's length, at most
    :data:`~storygen.request.MAX_BEATS` beats after the premise. Raises :class:`RequestError`
    (field ``plan``) when there is no beat in it."""
    text = remove_controls(text)
    lines = [line.strip()[:MAX_BEAT] for line in text.splitlines() if line.strip()]
    try:
        plan = parse_plan("\n".join(lines), origin="model", check=False)
        return validate_plan(replace(plan, beats=plan.beats[:MAX_BEATS]))
    except RequestError as exc:
        raise RequestError(
            {
                "plan": f"the model wrote no usable plan ({exc}): try another seed, or write the "
                "beats yourself"
            }
        ) from exc


def plan_line(text: str) -> tuple[str, bool]:
    """The line of a plan the model is writing: (what of it stands so far, whether it is
    complete).

    A line is one sentence: it ends at a line break, at a format marker, or where its first
    sentence ends (a stop after at least three words, not a title's "Mr.", then a space and
    what starts a sentence: a capital, a digit, a quote or a bracket). Text after a possible
    end waits until the next characters decide, so what stands never shrinks as the model
    writes on.
    """
    cut = _LINE_BREAK.search(text)
    marker = text.find("<|")
    ends = [i for i in (cut.start() if cut else -1, marker) if i >= 0]
    if ends:
        return text[: min(ends)].rstrip(), True
    if text.endswith("<"):  # perhaps a marker's start
        text = text[:-1]
    for m in END_MARK.finditer(text):
        head, rest = text[: m.end()], text[m.end() :]
        if len(head.split()) < 3 or TITLE_END.search(head):
            continue
        after = rest.lstrip()
        if not after:
            return head, False  # an end, if what comes next starts a sentence
        if rest[0].isspace() and (after[0].isupper() or after[0].isdigit() or after[0] in _OPENS):
            return head, True
    return text, False


def _line_text(raw: str) -> str:
    """A plan line as a person reads it: no escapes (nor half of one), single spaces."""
    raw = raw[:-1] if (len(raw) - len(raw.rstrip("\\"))) % 2 else raw
    return " ".join(unescape(raw).split())


def _shown(lines: list[tuple[str, str]]) -> str:
    """A plan being written, as a person reads it: its lines with text."""
    shown = []
    for head, raw in lines:
        if text := _line_text(raw):
            shown.append(f"{'Premise:' if head.startswith(PREMISE) else head} {text}")
    return "\n".join(shown)


def stream_plan(
    backend: Backend,
    request: StoryRequest,
    sampling: SamplingConfig | None = None,
    stop_event: threading.Event | None = None,
) -> Iterator[PlanUpdate]:
    """Plan-then-write, stage 1: the model writes the request's premise and beats, streamed.

    The plan's shape is held while decoding, so that a small model's plan is one, whatever it
    would ramble into: the model continues its own text after ``premise:``, then after ``1.``
    and so on to the fifth beat (:data:`~storygen.request.BEAT_NAMES`), each line a sentence
    (:func:`plan_line`) of at most :data:`PLAN_LINE_TOKENS` tokens and a fair share of what is
    left of the budget, each with its own seed (the request's seed plus the attempt's number).
    A line the model leaves empty (its end of text at once) is left out, and the next one takes
    its number. The last update has ``plan`` set. It ends after the last line, at a format
    marker, after :data:`PLAN_TOKENS` in all (or ``max_new_tokens``, if lower), or at Stop (the
    beats so far are the plan). Raises :class:`RequestError` for a request the model's prompt
    format cannot plan (a version-1 adapter) or when the model wrote no beat.
    """
    request = validate(request)
    sampling = sampling or SamplingConfig()
    prompt = backend.prompt(request, task="plan")
    budget = min(PLAN_TOKENS, sampling.max_new_tokens or PLAN_TOKENS)
    attempts = 1 + len(BEAT_NAMES)  # the premise, then the beats
    written, lines, shown = "", [], ""
    used, seconds, stopped = 0, 0.0, False
    for k in range(attempts):
        if used >= budget:
            break
        # No space after a line's head: the model writes its own (" Mara", as in training).
        beats = sum(not h.startswith(PREMISE) for h, _ in lines)
        head = f"{PREMISE}:" if k == 0 else f"{beats + 1}."
        stats, text_of, line = DecodeStats(), IncrementalText(backend), ("", False)
        lines.append((head, ""))
        steps = decode(
            backend,
            prompt.extended(written + head),
            replace(sampling, seed=(sampling.seed + k) % 2**63),
            min(PLAN_LINE_TOKENS, (budget - used) // (attempts - k) or 1),  # a share each
            stop_event,
            stats,
        )
        with closing(steps):
            for ids, why in steps:
                if why == "repetition":  # the loop is cut from the tokens: read them again
                    line = plan_line(backend.detokenize(ids).lstrip(" \t"))
                if why:
                    stopped = why == "stopped"
                    break
                line = plan_line(text_of(ids).lstrip(" \t"))
                lines[-1] = (head, line[0])
                if (new := _shown(lines)) != shown:
                    yield PlanUpdate(new[len(shown) :], new)
                    shown = new
                if line[1]:
                    break
        used += stats.new_tokens
        seconds += stats.seconds
        if _line_text(line[0]):
            lines[-1] = (head, line[0])
            written += f"{head} {line[0]}\n"
        else:  # the model wrote nothing to read: the next line takes its number
            lines.pop()
        if (new := _shown(lines)) != shown:  # a loop cut from the line: show what stands
            yield PlanUpdate(new[len(shown) :] if new.startswith(shown) else "", new)
            shown = new
        if stopped or "<|" in text_of.text:
            break  # Stop, or the model wrote a marker: the plan is over
    reason = "stopped" if stopped else "length" if used >= budget else "eos"
    plan = plan_from_text(written)
    provenance = {
        **backend.provenance(),
        "sampling": sampling.to_dict(),
        "prompt_style": prompt.style,
        "request": request.to_dict(),
        "stop_reason": reason,
        "new_tokens": used,
        "seconds": round(seconds, 3),
    }
    yield PlanUpdate("", render_plan(plan, person=True), plan, provenance)


def generate_plan(
    backend: Backend, request: StoryRequest, sampling: SamplingConfig | None = None
) -> Plan:
    """The request's plan, without streaming."""
    for update in stream_plan(backend, request, sampling):
        if update.plan is not None:
            return update.plan
    raise AssertionError("stream_plan ended without a plan")
