"""Write tab handlers: form values in, streamed story out. Thin over ``storygen``."""

from __future__ import annotations

import random
import re
import tempfile
import time
from contextlib import closing
from pathlib import Path

import gradio as gr

from story_ui.forms import MAX_FIELD_CHARS, SamplingForm, StoryForm
from storygen.backends.base import BackendError
from storygen.config import ConfigError
from storygen.prompt_format import parse_plan, render_plan
from storygen.request import Plan, RequestError, StoryRequest

MAX_SEED = 2**31 - 1
"""Random seeds are drawn below this."""


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


MAX_DOWNLOAD_CHARS = 200_000
"""Far above any story the app writes (4096 new tokens after a 2048-token Continue text)."""


def write(
    services,
    form: StoryForm,
    sampling: SamplingForm,
    drafts: list[dict],
    prefix: str = "",
    session: str | None = None,
    plan_text: str | None = None,
    model_plan: str | None = None,
    same_plan: Plan | None = None,
    new_seed: bool = False,
):
    """Stream a story for the form; yields (story, status, seed, drafts, provenance). With
    ``plan_text`` (the plan box) the story follows that plan; ``model_plan`` is the plan as the
    model wrote it, to tell whether it was edited; ``same_plan`` is the plan of the story being
    continued or regenerated; ``prefix`` the story text to continue; ``new_seed`` draws a seed
    whatever the form says (Regenerate).

    ``session`` names the visitor, so that Stop ends this visitor's story only. A seed that
    cannot be used is answered with a message and left on screen as typed (echoing a number
    beyond what the page can hold would end the request without one)."""
    seed = sampling.seed
    try:
        request = form.request()
        plan = plan_from_box(plan_text, model_plan) if plan_text is not None else same_plan
        if sampling.randomize or new_seed:
            seed = random.SystemRandom().randrange(MAX_SEED)
        config = sampling.sampling(seed)
        if not isinstance(prefix, (str, type(None))):
            raise ConfigError("the story to continue must be text")
    except (RequestError, ConfigError) as exc:
        # The story on screen stays, and its provenance.
        yield KEEP, error_text(exc), KEEP, drafts, KEEP
        return
    attempts = 1 if prefix else sampling.attempts
    yield prefix or "", "Writing…", seed, drafts, None
    text, story = prefix or "", None
    shown_at = float("-inf")  # the first piece is shown at once
    try:
        # closing(): Stop closes this handler, and with it the story's engine, at once.
        writing = services.write(request, config, prefix or "", session, plan, attempts)
        with closing(writing) as updates:
            for attempt, update in updates:
                if update.story is not None:
                    story = update.story
                    continue
                text = update.text
                if time.monotonic() - shown_at >= services.config.stream_every_s:
                    shown_at = time.monotonic()
                    doing = (
                        f"Writing attempt {attempt + 1} of {attempts}…"
                        if attempts > 1
                        else "Writing…"
                    )
                    yield text, doing, seed, drafts, None
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
    if p.get("attempts"):
        a = p["attempts"]
        scores = ", ".join("–" if x is None else f"{x:.2f}" for x in a["adherence"])
        status += (
            f" Kept attempt {a['chosen'] + 1} of {a['n']}, the one the judges found follows the "
            f"request best (adherence {scores})."
        )
    yield story.text, status, seed, drafts, p


PLAN_WORDS = {"model": "the model's plan", "edited": "your edited plan", "person": "your plan"}


def make_plan(
    services,
    form: StoryForm,
    sampling: SamplingForm,
    model_plan: str | None,
    session: str | None = None,
    plan_now: str | None = None,
):
    """Stream the model's plan for the form (plan-then-write, stage 1) into the plan box;
    yields (plan text, status, seed, the model's plan). A refusal or failure puts back what
    the plan box held before (``plan_now``) and says why."""
    seed = sampling.seed
    try:
        request = form.request()
        if sampling.randomize:
            seed = random.SystemRandom().randrange(MAX_SEED)
        config = sampling.sampling(seed)
    except (RequestError, ConfigError) as exc:
        yield KEEP, error_text(exc), KEEP, model_plan
        return
    yield KEEP, "Planning…", seed, model_plan
    text, shown_at = "", float("-inf")
    try:
        with closing(services.plan(request, config, session)) as updates:
            for update in updates:
                if update.plan is not None:
                    plan_text = render_plan(update.plan, person=True)
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


def story_of(provenance, drafts) -> str | None:
    """The server's copy of the story whose provenance is on screen: its draft's text (never
    text a client sends)."""
    if not isinstance(provenance, dict) or not isinstance(drafts, list):
        return None
    for d in reversed(drafts):
        if isinstance(d, dict) and d.get("provenance") == provenance:
            return d.get("text")
    return None


def react(services, kind: str, provenance, drafts, edited="", visitor: str = "") -> str:
    """A reader's reaction to the story on screen (the server's copy of it); the message."""
    from human_ratings.reactions import DuplicateReaction, ReactionError

    story = story_of(provenance, drafts)
    if not story:
        return "There is no finished story to react to yet: write one first."
    if not isinstance(edited, (str, type(None))):
        return "The edit must be text."
    wait = services.react_limit.hit(visitor or "?")
    if wait:
        return f"Not kept: too many reactions in a minute; try again in {wait:.0f} s."
    try:
        services.react(kind, story, provenance, edited or "", visitor=visitor)
    except DuplicateReaction as exc:
        return f"Not kept: {exc} (the first one stands)."
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
