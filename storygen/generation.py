"""Streaming story generation: request in, clean story with provenance out.

The decoding loop is our own (over the model's KV cache and transformers' logits processors)
rather than ``model.generate`` in a background thread, for three reasons a reader would notice:
each request samples from its own ``torch.Generator`` (so concurrent users cannot disturb each
other's seeds), Stop takes effect between two tokens with no worker left running, and the
repetition guard can end a degenerate loop as soon as it starts. ``bench/generation.py`` measures
it against plain ``generate`` on the same model.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, LogitsProcessorList
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from storygen.config import SamplingConfig
from storygen.loading import LoadedModel
from storygen.prompt_format import FIELDS, REQUEST_MARKER, render_request, request_fields
from storygen.request import LENGTHS, StoryRequest, validate

TOKENS_PER_WORD = 1.4  # English BPE averages ~1.3 tokens a word; a little headroom
CHAT_INSTRUCTION = "Write a short story that follows this request. Reply with the story only."
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]*]*(?=\s|$)")


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


@dataclass
class DecodeStats:
    """Counters a caller (or a test) can read after decoding."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    forward_calls: int = 0
    first_token_s: float | None = None
    seconds: float = 0.0


def max_new_tokens(request: StoryRequest, sampling: SamplingConfig) -> int:
    """Token budget: the explicit cap, else the request's length bucket in tokens."""
    if sampling.max_new_tokens:
        return sampling.max_new_tokens
    return int(LENGTHS[request.length] * TOKENS_PER_WORD) + 32


def build_prompt(lm: LoadedModel, request: StoryRequest) -> tuple[str, str]:
    """Return (prompt text, prompt style).

    With an adapter the model was trained on the tagged format, so it gets exactly that. A bare
    instruction-tuned base gets the same fields inside its chat template, which it understands.
    """
    tok = lm.tokenizer
    if lm.spec.adapter is None and getattr(tok, "chat_template", None):
        fields_text = "\n".join(f"{k}: {v}" for k, v in request_fields(request).items())
        messages = [{"role": "user", "content": f"{CHAT_INSTRUCTION}\n\n{fields_text}"}]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text, "chat"
    return render_request(request), "tagged"


def _processors(sampling: SamplingConfig) -> tuple[LogitsProcessorList, LogitsProcessorList]:
    """(repetition penalty, sampling warpers) as transformers' logits processors."""
    penalty = LogitsProcessorList()
    if sampling.repetition_penalty != 1.0:
        penalty.append(RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty))
    warpers = LogitsProcessorList()
    if sampling.temperature > 0:
        warpers.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_k:
            warpers.append(TopKLogitsWarper(sampling.top_k))
        if sampling.top_p < 1.0:
            warpers.append(TopPLogitsWarper(sampling.top_p))
    return penalty, warpers


def repetition_start(ids: list[int], min_span: int = 16, max_period: int = 48) -> int | None:
    """If ``ids`` ends in a loop (one block of tokens repeated back to back, covering at least
    ``min_span`` tokens and three copies), return where the second copy starts; else None."""
    n = len(ids)
    for period in range(1, max_period + 1):
        copies = max(3, -(-min_span // period))
        if n < copies * period:
            break
        block = ids[n - period :]
        if all(ids[n - (k + 1) * period : n - k * period] == block for k in range(1, copies)):
            start = n - copies * period
            while start - period >= 0 and ids[start - period : start] == block:
                start -= period
            return start + period
    return None


def eos_ids(lm: LoadedModel) -> set[int]:
    """Every token id that ends a story: the tokenizer's EOS and the model's configured ones."""
    ids = getattr(lm.model.generation_config, "eos_token_id", None)
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    return (ids | {lm.tokenizer.eos_token_id}) - {None}


def decode(
    lm: LoadedModel,
    prompt: str,
    sampling: SamplingConfig,
    budget: int,
    stop_event: threading.Event | None = None,
    stats: DecodeStats | None = None,
    stop_on_eos: bool = True,
) -> Iterator[tuple[list[int], str]]:
    """Sample up to ``budget`` tokens after ``prompt``; yield (generated ids, stop reason or "").

    The last item carries the reason: ``eos``, ``length``, ``stopped`` or ``repetition``.
    """
    stats = stats if stats is not None else DecodeStats()
    model, tok = lm.model, lm.tokenizer
    t0 = time.perf_counter()
    input_ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(lm.device)
    stats.prompt_tokens = input_ids.shape[1]
    generator = torch.Generator(device="cpu").manual_seed(sampling.seed)
    penalty, warpers = _processors(sampling)
    eos = eos_ids(lm)
    cache = DynamicCache()
    generated: list[int] = []
    step_input = input_ids
    reason = "length"
    with torch.inference_mode():
        for _ in range(budget):
            if stop_event is not None and stop_event.is_set():
                reason = "stopped"
                break
            # Only the last position's logits are needed: on the prompt pass that saves the
            # LM head over every prompt token (~150 ms of first-token latency here).
            out = model(input_ids=step_input, cache=cache, use_cache=True, logits_to_keep=1)
            stats.forward_calls += 1
            logits = out.logits[:, -1, :].float()
            # The penalty looks at the story so far, not the prompt: a requested name must not
            # become less likely because the request mentions it.
            seen = torch.tensor([generated], dtype=torch.long, device=logits.device)
            scores = penalty(seen, logits) if generated else logits
            scores = warpers(seen, scores)
            if sampling.temperature > 0:
                probs = torch.softmax(scores, dim=-1).cpu()
                token = int(torch.multinomial(probs, 1, generator=generator))
            else:
                token = int(scores.argmax(-1))
            if stats.first_token_s is None:
                stats.first_token_s = time.perf_counter() - t0
            if stop_on_eos and token in eos:
                reason = "eos"
                break
            generated.append(token)
            loop_at = repetition_start(generated)
            if loop_at is not None:
                del generated[loop_at:]
                reason = "repetition"
                break
            yield generated, ""
            step_input = torch.tensor([[token]], device=lm.device)
    stats.new_tokens = len(generated)
    stats.seconds = time.perf_counter() - t0
    yield generated, reason


def clean_story(text: str, finished: bool) -> str:
    """Make model output fit to read: no markers or echoed request, no half sentence at the end.

    ``finished`` says the model ended the story itself (EOS); otherwise the tail is cut back to
    the last complete sentence.
    """
    if REQUEST_MARKER in text:  # the model started a new request: the story is over
        text = text.split(REQUEST_MARKER, 1)[0]
    text = text.replace("<|story|>", "").replace("<|end|>", "")
    lines = text.strip().splitlines()
    field_line = re.compile(rf"^({'|'.join(map(re.escape, FIELDS))}): ")
    while lines and (field_line.match(lines[0]) or not lines[0].strip()):
        lines.pop(0)  # an echo of the request
    text = "\n".join(line.rstrip() for line in lines).strip()
    text = re.sub(r"\n{3,}", "\n\n", text)
    ends = list(_SENTENCE_END.finditer(text))
    if ends and not (finished and ends[-1].end() == len(text)):
        text = text[: ends[-1].end()]
    return text


def stream_story(
    lm: LoadedModel,
    request: StoryRequest,
    sampling: SamplingConfig | None = None,
    stop_event: threading.Event | None = None,
    prefix: str = "",
    stop_on_eos: bool = True,
) -> Iterator[StoryUpdate]:
    """Generate a story for ``request``, yielding text as it is produced.

    The last update has ``story`` set. Setting ``stop_event`` (or closing the iterator) ends the
    work before the next token; the story so far is still cleaned and returned. ``prefix`` is
    story text to continue from (the Continue button): the model picks up where it ends.
    ``stop_on_eos=False`` always spends the whole budget (benchmarks compare equal lengths).
    """
    request = validate(request)
    sampling = sampling or SamplingConfig()
    prompt, style = build_prompt(lm, request)
    prefix = prefix.strip()
    if prefix:
        prompt += prefix
        prefix += " " if not prefix.endswith("\n") else ""
    stats = DecodeStats()
    tok = lm.tokenizer
    shown = ""
    ids: list[int] = []
    reason = ""
    for ids, reason in decode(
        lm, prompt, sampling, max_new_tokens(request, sampling), stop_event, stats, stop_on_eos
    ):
        if reason:
            break
        text = tok.decode(ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            continue  # half of a multi-byte character: wait for the rest
        text = (
            prefix + text.split(REQUEST_MARKER, 1)[0].lstrip(" ")
            if prefix
            else text.split(REQUEST_MARKER, 1)[0]
        )
        if len(text) > len(shown) and text.startswith(shown):
            delta, shown = text[len(shown) :], text
            yield StoryUpdate(delta, shown)
    raw = tok.decode(ids, skip_special_tokens=True)
    story_text = clean_story(prefix + raw.lstrip(" ") if prefix else raw, finished=reason == "eos")
    provenance = {
        **lm.provenance(),
        "sampling": sampling.to_dict(),
        "prompt_style": style,
        "request": request.to_dict(),
        "stop_reason": reason,
        "continued_from_chars": len(prefix),
        "prompt_tokens": stats.prompt_tokens,
        "new_tokens": stats.new_tokens,
        "seconds": round(stats.seconds, 3),
        "first_token_s": None if stats.first_token_s is None else round(stats.first_token_s, 3),
    }
    yield StoryUpdate("", story_text, Story(story_text, reason, provenance))


def generate_story(
    lm: LoadedModel,
    request: StoryRequest,
    sampling: SamplingConfig | None = None,
) -> Story:
    """Generate a whole story without streaming."""
    for update in stream_story(lm, request, sampling):
        if update.story is not None:
            return update.story
    raise AssertionError("stream_story ended without a story")
