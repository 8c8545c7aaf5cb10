"""Write tab handlers: form values in, streamed story out. Thin over ``storygen``."""

from __future__ import annotations

import random
import re
import tempfile
import time
from contextlib import closing
from pathlib import Path

import gradio as gr

from storygen.backends.base import BackendError
from storygen.config import ConfigError, SamplingConfig
from storygen.generation import render_plan_text
from storygen.prompt_format import parse_plan
from storygen.request import Character, Plan, RequestError, Setting, StoryRequest, validate

MAX_SEED = 2**31 - 1
"""Random seeds are drawn below this."""
MAX_PAGE_SEED = 2**53 - 1
"""The largest whole number a browser's number field holds exactly."""


MAX_FIELD_CHARS = 10_000
"""A first bound on every form field, before it is parsed; validation has the precise ones
(8 characters of 60-character names, a 2000-character prompt, ...)."""


def parse_characters(text: str) -> list[Character]:
    """One character per line: ``Name: trait, trait``."""
    return [Character.parse(line) for line in (text or "").splitlines() if line.strip()]


def form_request(
    characters: str,
    place: str,
    era: str,
    genre: str,
    tone: str,
    plot_points: str,
    ending: str,
    pov: str,
    length: str,
    prompt: str,
    arc: str = "",
) -> StoryRequest:
    """Build and validate a request from the form fields (raises RequestError)."""
    fields = locals()
    errors = {}
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            errors[name] = f"must be text, not {type(value).__name__}"
        elif len(value or "") > MAX_FIELD_CHARS:
            errors[name] = f"is too long: {len(value)} characters, at most {MAX_FIELD_CHARS}"
    if errors:
        raise RequestError(errors)
    return validate(
        StoryRequest(
            characters=parse_characters(characters),
            setting=Setting(place or "", era or ""),
            genre=genre or "",
            tone=tone or "",
            plot_points=[p for p in (plot_points or "").splitlines() if p.strip()],
            ending=ending or "",
            pov=pov or "",
            length=length or "short",
            prompt=prompt or "",
            arc=arc or "",
        )
    )


def plan_from_box(text, model_plan: str | None) -> Plan:
    """The plan in the plan box, as the person left it: ``origin`` says whether it is the
    model's plan as written, the model's plan edited, or a plan the person wrote alone."""
    if not isinstance(text, str):
        raise RequestError({"plan": f"must be text, not {type(text).__name__}"})
    if len(text) > MAX_FIELD_CHARS:
        raise RequestError({"plan": f"is too long: {len(text)} characters, at most 10000"})
    if not text.strip():
        raise RequestError({"plan": "is empty: press Plan first, or write one beat a line"})
    origin = "person"
    if isinstance(model_plan, str) and model_plan.strip():
        origin = "model" if text.strip() == model_plan.strip() else "edited"
    return parse_plan(text, origin=origin, escaped=False)


def error_text(exc: Exception) -> str:
    """A readable message for the status line; field errors one per line."""
    if isinstance(exc, RequestError):
        return "**Please fix the request:**\n" + "\n".join(
            f"- **{k}** {v}" for k, v in exc.errors.items()
        )
    return f"**Error:** {exc}"


def story_title(text: str, request: StoryRequest) -> str:
    names = " & ".join(c.name for c in request.characters[:2])
    first = re.sub(r"\s+", " ", text).strip()[:40]
    return (f"{request.genre or 'story'} — {names}" if names else first) or "untitled"


KEEP = gr.skip()
"""An output value that leaves the component as it is."""


def seed_value(seed) -> int:
    """The form's seed as an int the page can show exactly, or a ConfigError saying why not."""
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"the seed must be a whole number, not {str(seed)[:40]!r}")
    if not 0 <= seed <= MAX_PAGE_SEED:
        raise ConfigError(f"the seed must be between 0 and {MAX_PAGE_SEED}")
    return seed


MAX_DOWNLOAD_CHARS = 200_000
"""Far above any story the app writes (4096 new tokens after a 2048-token Continue text)."""


def sampling_settings(values: dict) -> dict:
    """The sampling controls' values as SamplingConfig fields, which checks each one and names
    it; a max_new_tokens of 0 means "from the length"."""
    v = values.get("max_new_tokens")
    if v is None:  # the slider always sends a number; None would silently mean "from the length"
        raise ConfigError("max_new_tokens must be a number, not 'None'")
    return {**values, "max_new_tokens": None if v == 0 and not isinstance(v, bool) else v}


def write(
    services,
    form: dict,
    settings: dict,
    seed: int,
    randomize: bool,
    prefix: str,
    drafts: list[dict],
    session: str | None = None,
    plan_text: str | None = None,
    model_plan: str | None = None,
    same_plan: Plan | None = None,
):
    """Stream a story for the form (form_request's fields by name); yields (story, status,
    seed, drafts, provenance). With ``plan_text`` (the plan box) the story follows that plan;
    ``model_plan`` is the plan as the model wrote it, to tell whether it was edited;
    ``same_plan`` is the plan of the story being continued or regenerated.

    ``session`` names the visitor, so that Stop ends this visitor's story only. A seed that
    cannot be used is answered with a message and left on screen as typed (echoing a number
    beyond what the page can hold would end the request without one)."""
    try:
        request = form_request(**form)
        plan = plan_from_box(plan_text, model_plan) if plan_text is not None else same_plan
        if randomize:
            seed = random.SystemRandom().randrange(MAX_SEED)
        sampling = SamplingConfig(seed=seed_value(seed), **sampling_settings(settings))
        if not isinstance(prefix, (str, type(None))):
            raise ConfigError("the story to continue must be text")
    except (RequestError, ConfigError) as exc:
        yield (
            KEEP,
            error_text(exc),
            KEEP,
            drafts,
            KEEP,
        )  # the story on screen stays, and its provenance
        return
    yield prefix or "", "Writing…", seed, drafts, None
    text, story = prefix or "", None
    shown_at = float("-inf")  # the first piece is shown at once
    try:
        # closing(): Stop closes this handler, and with it the story's engine, at once.
        with closing(services.write(request, sampling, prefix or "", session, plan)) as updates:
            for update in updates:
                if update.story is not None:
                    story = update.story
                    continue
                text = update.text
                if time.monotonic() - shown_at >= services.config.stream_every_s:
                    shown_at = time.monotonic()
                    yield text, "Writing…", seed, drafts, None
    except (BackendError, RequestError) as exc:  # keep what is on screen, say why
        yield text, error_text(exc), seed, drafts, None
        return
    p = story.provenance
    unfinished = p["stop_reason"] == "stopped"
    draft = {
        "title": story_title(story.text, request) + (" (unfinished)" if unfinished else ""),
        "seed": seed,
        "words": len(story.text.split()),
        "text": story.text,
        "provenance": p,
    }
    drafts = [*drafts, draft]
    status = (
        f"{'Stopped' if unfinished else 'Done'}: {draft['words']} words, {p['new_tokens']} "
        f"tokens in {p['seconds']} s (end: {p['stop_reason']}); seed {seed}; kept in the drafts."
    )
    if plan is not None:
        status += f" Written from {PLAN_WORDS[plan.origin]} ({len(plan.beats)} beats)."
    yield story.text, status, seed, drafts, p


PLAN_WORDS = {"model": "the model's plan", "edited": "your edited plan", "person": "your plan"}


def make_plan(
    services,
    form: dict,
    settings: dict,
    seed: int,
    randomize: bool,
    model_plan: str | None,
    session: str | None = None,
    plan_now: str | None = None,
):
    """Stream the model's plan for the form (plan-then-write, stage 1) into the plan box;
    yields (plan text, status, seed, the model's plan). A refusal or failure puts back what
    the plan box held before (``plan_now``) and says why."""
    try:
        request = form_request(**form)
        if randomize:
            seed = random.SystemRandom().randrange(MAX_SEED)
        sampling = SamplingConfig(seed=seed_value(seed), **sampling_settings(settings))
    except (RequestError, ConfigError) as exc:
        yield KEEP, error_text(exc), KEEP, model_plan
        return
    yield KEEP, "Planning…", seed, model_plan
    text, shown_at = "", float("-inf")
    try:
        with closing(services.plan(request, sampling, session)) as updates:
            for update in updates:
                if update.plan is not None:
                    plan_text = render_plan_text(update.plan)
                    status = (
                        f"Plan ready: {len(update.plan.beats)} beats (seed {seed}). Change, add "
                        "or remove beats, one a line, then press **Write from plan**."
                    )
                    yield plan_text, status, seed, plan_text
                    return
                text = update.text
                if time.monotonic() - shown_at >= services.config.stream_every_s:
                    shown_at = time.monotonic()
                    yield text, "Planning…", seed, model_plan
    except (BackendError, RequestError) as exc:
        before = plan_now if isinstance(plan_now, str) else ""
        yield before if text else KEEP, error_text(exc), seed, model_plan


def plan_of(provenance) -> Plan | None:
    """The plan the story on screen was written from (from its provenance), if any: Continue
    and Regenerate write from the same plan."""
    plan = (provenance or {}).get("plan") if isinstance(provenance, dict) else None
    if not isinstance(plan, dict):
        return None
    return Plan(plan.get("premise", ""), list(plan.get("beats", [])), plan.get("origin", "model"))


def drafts_table(drafts: list[dict]) -> list[list]:
    return [[i + 1, d["title"], d["seed"], d["words"]] for i, d in enumerate(drafts)]


def export(text: str, fmt: str, drafts: list[dict]) -> tuple[str | None, str]:
    """Write the story to a temporary .md or .txt file for download: (path, message)."""
    if not isinstance(text, str) or not text.strip():
        return None, "There is no story to download yet."
    if len(text) > MAX_DOWNLOAD_CHARS:
        return None, f"**Error:** a story to download is at most {MAX_DOWNLOAD_CHARS} characters."
    if fmt not in ("Markdown", "Text"):
        return None, f"**Error:** download as Markdown or Text, not {str(fmt)[:20]!r}."
    prov = next((d["provenance"] for d in reversed(drafts) if d["text"] == text), None)
    suffix = ".md" if fmt == "Markdown" else ".txt"
    out = Path(tempfile.mkdtemp(prefix="story-")) / f"story{suffix}"
    if suffix == ".md":
        body = f"# {story_title(text, validate_or_empty(prov))}\n\n{text}\n"
        if prov:
            body += (
                f"\n---\n*{prov['base_model']} + {prov['adapter_name'] or 'no adapter'}, "
                f"{prov['quantization']}, seed {prov['sampling']['seed']}*\n"
            )
    else:
        body = text + "\n"
    out.write_text(body, encoding="utf-8", errors="replace")
    return str(out), f"Ready to download as {fmt}."


def open_draft(number, drafts: list[dict]):
    """(story, message, provenance) for the draft with this 1-based number; the story and its
    provenance stay if there is none (Continue, Regenerate and reactions read the provenance:
    it must be the open story's)."""
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(drafts):
        have = f"1 to {len(drafts)}" if drafts else "none yet"
        return (
            KEEP,
            f"There is no draft #{str(number)[:20]}: drafts of this visit are {have}.",
            KEEP,
        )
    d = drafts[number - 1]
    return d["text"], f"Opened draft #{number} (seed {d['seed']}).", d.get("provenance")


REACTED = {
    "up": "Thank you: kept as a story you liked.",
    "down": "Thank you: kept as a story you did not like.",
    "edit": "Thank you: your edit is kept next to the story as written.",
}


def react(services, kind: str, story, provenance: dict | None, edited="") -> str:
    """A reader's reaction to the story on screen; the message to show."""
    from human_ratings.reactions import ReactionError

    if not provenance:
        return "There is no finished story to react to yet: write one first."
    if not isinstance(story, str) or not isinstance(edited, (str, type(None))):
        return "The story and the edit must be text."
    try:
        services.react(kind, story, provenance, edited or "")
    except ReactionError as exc:
        return f"Not kept: {exc}."
    except OSError as exc:  # the disk, not the reader: say so, keep the text on screen
        return f"Not kept: the server could not write it ({exc.strerror or exc})."
    return REACTED[kind]


def validate_or_empty(prov: dict | None) -> StoryRequest:
    if prov and prov.get("request"):
        try:
            return StoryRequest.from_dict(prov["request"])
        except RequestError:
            pass
    return StoryRequest()
