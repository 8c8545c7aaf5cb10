"""The Write tab's form as data: what a visitor typed, by name, never a positional list.

:class:`StoryForm` is the request's fields as the page holds them (text, one line per
character or event); :class:`SamplingForm` the decoding controls. :func:`named_handler` turns
a handler that takes these dataclasses into one Gradio can call with the page's components,
with each component's name as a parameter, so that a ``gradio_client`` user reads the
endpoint's parameters by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields

import gradio as gr

from storygen.best_of import MAX_ATTEMPTS
from storygen.config import ConfigError, SamplingConfig
from storygen.request import Character, RequestError, Setting, StoryRequest, validate

MAX_FIELD_CHARS = 10_000
"""A first bound on every form field, before it is parsed; validation has the precise ones
(8 characters of 60-character names, a 2000-character prompt, ...)."""
MAX_PAGE_SEED = 2**53 - 1
"""The largest whole number a browser's number field holds exactly."""


def parse_characters(text: str) -> list[Character]:
    """One character per line: ``Name: trait, trait``."""
    return [Character.parse(line) for line in (text or "").splitlines() if line.strip()]


@dataclass
class StoryForm:
    """The request as the form holds it."""

    characters: str = ""
    """One character a line: ``Name: trait, trait``."""
    place: str = ""
    era: str = ""
    genre: str = ""
    tone: str = ""
    plot_points: str = ""
    """One event a line."""
    ending: str = ""
    pov: str = ""
    length: str = "short"
    prompt: str = ""
    arc: str = ""

    def request(self) -> StoryRequest:
        """The validated request (raises :class:`RequestError` naming each bad field)."""
        errors = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not isinstance(value, str):
                errors[f.name] = f"must be text, not {type(value).__name__}"
            elif len(value or "") > MAX_FIELD_CHARS:
                errors[f.name] = f"is too long: {len(value)} characters, at most {MAX_FIELD_CHARS}"
        if errors:
            raise RequestError(errors)
        return validate(
            StoryRequest(
                characters=parse_characters(self.characters),
                setting=Setting(self.place or "", self.era or ""),
                genre=self.genre or "",
                tone=self.tone or "",
                plot_points=[p for p in (self.plot_points or "").splitlines() if p.strip()],
                ending=self.ending or "",
                pov=self.pov or "",
                length=self.length or "short",
                prompt=self.prompt or "",
                arc=self.arc or "",
            )
        )


@dataclass
class SamplingForm:
    """The decoding controls (their ranges are :class:`SamplingConfig`'s own)."""

    temperature: float = SamplingConfig.temperature
    top_p: float = SamplingConfig.top_p
    top_k: int = SamplingConfig.top_k
    repetition_penalty: float = SamplingConfig.repetition_penalty
    max_new_tokens: int = 0
    """0: from the request's length."""
    seed: int = SamplingConfig.seed
    randomize: bool = False
    """A new random seed each time."""
    attempts: int = 1
    """Best-of-n: stories written for each press, of which the judges' best is kept."""

    def settings(self) -> dict:
        """The controls' values as SamplingConfig fields (without the seed), which checks each
        one and names it; a max_new_tokens of 0 means "from the length"."""
        v = self.max_new_tokens
        # The slider always sends a number; None would silently mean "from the length".
        if v is None:
            raise ConfigError("max_new_tokens must be a number, not 'None'")
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "max_new_tokens": None if v == 0 and not isinstance(v, bool) else v,
        }

    def sampling(self, seed: int) -> SamplingConfig:
        """The settings with ``seed`` (raises :class:`ConfigError` naming a bad control)."""
        a = self.attempts
        if isinstance(a, float) and a.is_integer():
            a = self.attempts = int(a)
        if isinstance(a, bool) or not isinstance(a, int) or not 1 <= a <= MAX_ATTEMPTS:
            raise ConfigError(f"attempts must be a whole number from 1 to {MAX_ATTEMPTS}")
        return SamplingConfig(seed=seed_value(seed), **self.settings())


def seed_value(seed) -> int:
    """The form's seed as an int the page can show exactly, or a ConfigError saying why not."""
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"the seed must be a whole number, not {str(seed)[:40]!r}")
    if not 0 <= seed <= MAX_PAGE_SEED:
        raise ConfigError(f"the seed must be between 0 and {MAX_PAGE_SEED}")
    return seed


FORMS = (StoryForm, SamplingForm)


def form_names() -> list[str]:
    """The parameter names of every form field, in order: the story form's, then sampling's."""
    return [f.name for cls in FORMS for f in fields(cls)]


def named_handler(fn: Callable, extra: list[str], stream: bool) -> Callable:
    """A Gradio handler for ``fn(story: StoryForm, sampling: SamplingForm, **extra, session=)``
    whose parameters are the forms' fields and then ``extra``, by name (in the order of the
    ``inputs`` given to Gradio: :func:`form_names`, then ``extra``). ``stream``: ``fn`` is a
    generator, and so is the handler."""
    names = form_names() + list(extra)
    story_keys = [f.name for f in fields(StoryForm)]
    sampling_keys = [f.name for f in fields(SamplingForm)]

    def split(args):
        values = dict(zip(names, args, strict=True))
        story = StoryForm(**{k: values.pop(k) for k in story_keys})
        sampling = SamplingForm(**{k: values.pop(k) for k in sampling_keys})
        return story, sampling, values

    # Gradio passes the visitor's request positionally, after the inputs, where the signature
    # names it (annotated gr.Request): Stop is aimed at its session.
    if stream:

        def handler(*args):
            story, sampling, rest = split(args[:-1])
            yield from fn(story, sampling, **rest, session=args[-1].session_hash)
    else:

        def handler(*args):
            story, sampling, rest = split(args[:-1])
            return fn(story, sampling, **rest, session=args[-1].session_hash)

    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    handler.__signature__ = inspect.Signature(
        [inspect.Parameter(n, positional) for n in names]
        + [inspect.Parameter("request", positional, annotation=gr.Request)]
    )
    handler.__annotations__ = {"request": gr.Request}  # what Gradio reads the type from
    handler.__name__ = fn.__name__
    return handler
