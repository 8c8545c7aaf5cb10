"""The story request: one typed schema for everything a user can ask for.

The controlled vocabularies below are shared by the UI (dropdown choices), the prompt format,
the fine-tuning tagger (which derives the same fields from real stories) and the evaluation
(which checks whether a generated story follows them).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

GENRES = (
    "fantasy",
    "science fiction",
    "horror",
    "mystery",
    "romance",
    "comedy",
    "adventure",
    "drama",
    "thriller",
    "historical",
    "fairy tale",
    "dystopian",
)
TONES = ("dark", "lighthearted", "humorous", "hopeful", "melancholic", "suspenseful", "whimsical")
ENDINGS = ("happy", "sad", "bittersweet", "twist", "open")
POVS = ("first person", "second person", "third person")
# The six emotional arcs of Reagan et al. (2016, "The emotional arcs of stories are dominated by
# six basic shapes"), each with how the protagonist's fortune moves (storygen.arcs has the shapes).
ARCS = {
    "rags to riches": "rise",
    "tragedy": "fall",
    "man in a hole": "fall then rise",
    "icarus": "rise then fall",
    "cinderella": "rise, fall, rise",
    "oedipus": "fall, rise, fall",
}
# Length buckets with the word budgets that generation aims for and the tagger bins into.
LENGTHS = {"flash": 150, "short": 350, "medium": 700, "long": 1000}

# Common spellings users type, per field, mapped onto the vocabularies above.
ALIASES = {
    "genre": {
        "sci-fi": "science fiction",
        "scifi": "science fiction",
        "sf": "science fiction",
        "fairytale": "fairy tale",
    },
    "tone": {
        "funny": "humorous",
        "light": "lighthearted",
        "sad": "melancholic",
        "tense": "suspenseful",
    },
    "arc": {
        "rise": "rags to riches",
        "fall": "tragedy",
        "riches to rags": "tragedy",
        "fall then rise": "man in a hole",
        "fall-rise": "man in a hole",
        "rise then fall": "icarus",
        "rise-fall": "icarus",
        "rise, fall, rise": "cinderella",
        "rise-fall-rise": "cinderella",
        "fall, rise, fall": "oedipus",
        "fall-rise-fall": "oedipus",
    },
    "pov": {
        "first": "first person",
        "second": "second person",
        "third": "third person",
        "1st": "first person",
        "2nd": "second person",
        "3rd": "third person",
    },
}

MAX_NAME = 60
MAX_TRAIT = 60
MAX_TRAITS = 8
MAX_CHARACTERS = 8
MAX_PLACE = 120
MAX_PLOT_POINT = 300
MAX_PLOT_POINTS = 8
MAX_PROMPT = 2000
MAX_BEAT = 300
MAX_BEATS = 12
# The five parts of a classic arc (Freytag), one beat each in a plan the model writes.
BEAT_NAMES = ("exposition", "rising action", "climax", "falling action", "resolution")
PLAN_ORIGINS = ("model", "edited", "person")

# Unicode categories Cc (C0 and C1 controls, DEL) and Cs (surrogates), as one character class.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def remove_controls(text: str) -> str:
    """``text`` without the control characters validation refuses (for a model's own output,
    which is not a person's to correct); line breaks and tabs stay."""
    return _CONTROL.sub(lambda m: m.group(0) if m.group(0) in "\n\t" else "", text)


class RequestError(ValueError):
    """A request that cannot be used; ``errors`` maps each bad field to a readable message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass
class Character:
    """A named character and a few traits (for example "Mara", ["stubborn", "kind"])."""

    name: str
    traits: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Character:
        """Parse the command-line form ``"Mara: stubborn, kind"``."""
        name, _, traits = text.partition(":")
        return cls(name=name.strip(), traits=[t.strip() for t in traits.split(",") if t.strip()])


@dataclass
class Setting:
    """Where and when the story takes place; both parts are optional."""

    place: str = ""
    era: str = ""


@dataclass
class StoryRequest:
    """Everything a user can ask of a story. Every field is optional; an empty request is valid
    only when it asks for something (see :func:`validate`)."""

    characters: list[Character] = field(default_factory=list)
    setting: Setting = field(default_factory=Setting)
    genre: str = ""
    tone: str = ""
    plot_points: list[str] = field(default_factory=list)
    ending: str = ""
    pov: str = ""
    length: str = "short"
    prompt: str = ""
    arc: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "characters": [{"name": c.name, "traits": list(c.traits)} for c in self.characters],
            "setting": {"place": self.setting.place, "era": self.setting.era},
            "genre": self.genre,
            "tone": self.tone,
            "plot_points": list(self.plot_points),
            "ending": self.ending,
            "pov": self.pov,
            "length": self.length,
            "prompt": self.prompt,
            "arc": self.arc,
        }

    @classmethod
    def from_dict(cls, data: Any) -> StoryRequest:
        """Build and validate a request from plain JSON data; raises :class:`RequestError`."""
        if not isinstance(data, dict):
            raise RequestError({"request": f"expected a JSON object, got {type(data).__name__}"})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise RequestError({k: "unknown field" for k in sorted(unknown)})
        errors: dict[str, str] = {}
        chars = data.get("characters", [])
        characters: list[Character] = []
        if not isinstance(chars, list):
            errors["characters"] = "expected a list"
        else:
            for i, c in enumerate(chars):
                if isinstance(c, str):
                    characters.append(Character.parse(c))
                elif isinstance(c, dict) and set(c) <= {"name", "traits"}:
                    characters.append(Character(c.get("name", ""), c.get("traits", [])))
                else:
                    errors[f"characters[{i}]"] = 'expected {"name": ..., "traits": [...]}'
        setting = data.get("setting", {})
        if isinstance(setting, str):
            setting = {"place": setting}
        if not isinstance(setting, dict) or not set(setting) <= {"place", "era"}:
            errors["setting"] = 'expected {"place": ..., "era": ...}'
            setting = {}
        if errors:
            raise RequestError(errors)
        scalars = {k: v for k, v in data.items() if k not in ("characters", "setting")}
        return validate(cls(characters=characters, setting=Setting(**setting), **scalars))


def _clean_text(value: Any, name: str, limit: int, errors: dict[str, str], multiline=False) -> str:
    """Check one text field; record a readable error and return "" when it is unusable."""
    if value is None:
        return ""
    if not isinstance(value, str):
        errors[name] = f"expected text, got {type(value).__name__}"
        return ""
    value = unicodedata.normalize("NFC", value)
    allowed = "\n\t\r" if multiline else "\t"
    for m in _CONTROL.finditer(value):
        if m.group(0) not in allowed:
            errors[name] = f"contains a control character ({ascii(m.group(0))})"
            return ""
    value = " ".join(value.split())  # one line: newlines and runs of spaces become one space
    if len(value) > limit:
        errors[name] = f"is too long ({len(value)} characters, at most {limit})"
        return ""
    return value


def _choice(value: Any, name: str, choices, errors: dict[str, str]) -> str:
    if isinstance(value, str) and (not value or value in choices):
        return value  # already a vocabulary value (or empty): nothing to clean
    text = _clean_text(value, name, 40, errors)
    key = text.lower()
    key = ALIASES.get(name, {}).get(key, key)
    if key and key not in choices:
        errors[name] = f"{text!r} is not one of: {', '.join(choices)}"
        return ""
    return key


def _text_list(value: Any, name: str, limit: int, count: int, errors: dict[str, str]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        errors[name] = f"expected a list of text, got {type(value).__name__}"
        return []
    items = [
        _clean_text(v, f"{name}[{i}]", limit, errors, multiline=True) for i, v in enumerate(value)
    ]
    items = [i for i in items if i]
    if len(items) > count:
        errors[name] = f"has {len(items)} entries, at most {count}"
    return items[:count]


def validate(request: StoryRequest) -> StoryRequest:
    """Return a normalised copy of ``request`` or raise :class:`RequestError` naming every bad
    field. Never raises anything else, whatever the field types are."""
    errors: dict[str, str] = {}
    characters = []
    raw_chars = request.characters if isinstance(request.characters, (list, tuple)) else None
    if raw_chars is None:
        errors["characters"] = "expected a list of characters"
        raw_chars = []
    if len(raw_chars) > MAX_CHARACTERS:
        errors["characters"] = f"has {len(raw_chars)} entries, at most {MAX_CHARACTERS}"
    for i, c in enumerate(raw_chars[:MAX_CHARACTERS]):
        if not isinstance(c, Character):
            errors[f"characters[{i}]"] = "expected a character with a name and traits"
            continue
        name = _clean_text(c.name, f"characters[{i}].name", MAX_NAME, errors)
        if not name and f"characters[{i}].name" not in errors:
            errors[f"characters[{i}].name"] = "is missing"
        traits = _text_list(c.traits, f"characters[{i}].traits", MAX_TRAIT, MAX_TRAITS, errors)
        characters.append(Character(name, traits))
    setting = request.setting if isinstance(request.setting, Setting) else None
    if setting is None:
        errors["setting"] = "expected a place and an era"
        setting = Setting()
    clean = StoryRequest(
        characters=characters,
        setting=Setting(
            _clean_text(setting.place, "setting.place", MAX_PLACE, errors),
            _clean_text(setting.era, "setting.era", MAX_PLACE, errors),
        ),
        genre=_choice(request.genre, "genre", GENRES, errors),
        tone=_choice(request.tone, "tone", TONES, errors),
        plot_points=_text_list(
            request.plot_points, "plot_points", MAX_PLOT_POINT, MAX_PLOT_POINTS, errors
        ),
        ending=_choice(request.ending, "ending", ENDINGS, errors),
        pov=_choice(request.pov, "pov", POVS, errors),
        arc=_choice(request.arc, "arc", tuple(ARCS), errors),
        length=_choice(request.length or "short", "length", tuple(LENGTHS), errors),
        prompt=_clean_text(request.prompt, "prompt", MAX_PROMPT, errors, multiline=True),
    )
    if not errors and clean == StoryRequest(length=clean.length):
        errors["request"] = "is empty: give at least a prompt, a genre, a character or a setting"
    if errors:
        raise RequestError(errors)
    return clean


@dataclass
class Plan:
    """The plan of a story (plan-then-write): a one-line premise and its beats, in order.

    The model writes one with a beat per part of :data:`BEAT_NAMES`; a person may change, add
    or remove beats. ``origin`` says who wrote the beats: ``model``, ``edited`` (the model's,
    changed by a person) or ``person``.
    """

    premise: str = ""
    beats: list[str] = field(default_factory=list)
    origin: str = "model"

    def to_dict(self) -> dict[str, Any]:
        return {"premise": self.premise, "beats": list(self.beats), "origin": self.origin}


def validate_plan(plan: Plan) -> Plan:
    """A normalised copy of ``plan`` (each part one line, within its limits) or
    :class:`RequestError` naming every bad part; at least one beat is needed."""
    errors: dict[str, str] = {}
    if not isinstance(plan, Plan):
        raise RequestError({"plan": "expected a premise and a list of beats"})
    premise = _clean_text(plan.premise, "plan.premise", MAX_BEAT, errors, multiline=True)
    beats = _text_list(plan.beats, "plan.beats", MAX_BEAT, MAX_BEATS, errors)
    if not beats and not errors:
        errors["plan.beats"] = "is empty: give at least one beat"
    origin = plan.origin if plan.origin in PLAN_ORIGINS else ""
    if not origin:
        errors["plan.origin"] = f"is not one of: {', '.join(PLAN_ORIGINS)}"
    if errors:
        raise RequestError(errors)
    return Plan(premise, beats, origin)
