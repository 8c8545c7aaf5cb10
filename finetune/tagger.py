"""Deterministic metadata tagger: derives the story-request fields from a story's own text.

Lexicon and pattern based, so it is offline, fast (tens of thousands of stories a minute) and
gives the same answer every time. Fine-tuning uses it to turn WritingPrompts pairs into tagged
requests; evaluation reuses it to check whether a generated story follows its request.
``python -m finetune tagger-accuracy`` measures it against a hand-labelled set.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from storygen.request import LENGTHS, Character, Setting, StoryRequest

_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”")


def _lex(text: str) -> frozenset[str]:
    return frozenset(text.split())


GENRE_WORDS = {
    "fantasy": _lex(
        "dragon dragons magic wizard wizards sorcerer spell spells sword kingdom elf "
        "elves dwarf dwarves king queen prince princess enchanted quest mage wand "
        "throne realm goblin orc sorceress witch witches"
    ),
    "science fiction": _lex(
        "ship spaceship planet planets alien aliens space galaxy robot robots "
        "android androids ai laser orbit earth mars colony starship "
        "universe cyborg quantum warp lightyears humanity species "
        "simulation technology scientists"
    ),
    "horror": _lex(
        "blood scream screamed screaming monster monsters demon demons corpse "
        "corpses ghost ghosts haunted terror flesh dead undead zombie zombies "
        "creature darkness nightmare shadows teeth rotting"
    ),
    "mystery": _lex(
        "detective murder clue clues suspect case investigation mystery "
        "evidence killer crime police inspector alibi witness solved"
    ),
    "romance": _lex(
        "love loved kiss kissed heart hearts romance wedding married lover date "
        "boyfriend girlfriend husband wife darling embrace"
    ),
    "comedy": _lex(
        "laughed joke jokes funny hilarious ridiculous awkward idiot lol stupid "
        "silly giggled snorted"
    ),
    "adventure": _lex(
        "journey treasure explore explorer map island jungle pirates pirate "
        "expedition voyage mountains climbed adventure"
    ),
    "drama": _lex(
        "family mother father mom dad brother sister divorce hospital funeral "
        "grief memories son daughter"
    ),
    "thriller": _lex(
        "gun guns shot agent bomb chase escape hostage assassin target "
        "mission trigger bullet bullets"
    ),
    "historical": _lex(
        "war soldier soldiers empire roman medieval century ancient emperor "
        "knights battlefield general troops musket"
    ),
    "fairy tale": _lex(
        "fairy godmother once upon enchanted curse cursed castle giant "
        "troll frog spell beast princess"
    ),
    "dystopian": _lex(
        "regime government rebellion rebels citizens surveillance ration "
        "resistance wasteland apocalypse survivors collapse authorities"
    ),
}
TONE_WORDS = {
    "dark": _lex(
        "death dead blood kill killed pain dark darkness suffering cruel despair "
        "die dying murder corpse"
    ),
    "lighthearted": _lex("smiled grin grinned cheerful fun happily playful sunny bright delighted"),
    "humorous": _lex(
        "laughed joke jokes funny hilarious ridiculous lol snorted giggled idiot sarcastically"
    ),
    "hopeful": _lex(
        "hope hoped hopeful future dream dreams light tomorrow believe begin promise better"
    ),
    "melancholic": _lex(
        "tears cried alone lonely miss missed grief sorrow memories lost empty sadness goodbye"
    ),
    "suspenseful": _lex(
        "suddenly footsteps silence heartbeat froze breath whispered waited "
        "creaked shadow trembling pounding"
    ),
    "whimsical": _lex(
        "magical whimsical tiny giggled sparkling unicorn talking curious peculiar teapot"
    ),
}
GENRE_PROMPT_TAGS = {"EU": "fantasy"}
PLACES = (
    "space station",
    "spaceship",
    "castle",
    "forest",
    "village",
    "city",
    "kingdom",
    "desert",
    "ocean",
    "island",
    "school",
    "hospital",
    "office",
    "bar",
    "tavern",
    "house",
    "apartment",
    "church",
    "prison",
    "lab",
    "laboratory",
    "ship",
    "planet",
    "mountain",
    "cave",
    "library",
    "lighthouse",
    "farm",
    "palace",
    "bunker",
    "train",
    "restaurant",
    "park",
    "street",
    "town",
    "battlefield",
    "heaven",
    "hell",
    "moon",
    "mars",
    "earth",
    "new york",
    "london",
    "paris",
)
_SINGLE_PLACES = frozenset(p for p in PLACES if " " not in p)
_MULTI_PLACES = tuple(p for p in PLACES if " " in p)
_ERA_RE = re.compile(
    r"\b(1[0-9]{3}s?|20[0-9]{2}s?|2[1-9][0-9]{2}|medieval|victorian|ancient|prehistoric|"
    r"renaissance|future|the twenties|world war (?:i|ii|one|two|1|2))\b",
    re.I,
)
TRAITS = _lex(
    "brave stubborn kind curious clever lonely angry old young tired gentle cruel quiet shy "
    "proud loyal greedy wise foolish nervous calm cold warm bitter cheerful ambitious honest "
    "sly reckless patient jealous fierce timid bold weary determined desperate mysterious "
    "beautiful strong weak sad happy afraid scared small tall"
)
NOT_NAMES = _lex(
    "I The A An And But Or So He She It They We You His Her Its Their Our My Your This That "
    "These Those What When Where Why How Who Then There Here Now Yes No Oh Okay OK Well Just "
    "Not In On At Of For With As If Is Was Are Were Be Been Do Did Does Mr Mrs Ms Dr Sir God "
    "Lord Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March "
    "April May June July August September October November December Earth Mars Hell Heaven "
    "Christmas English America American One Two Three After Before All Every Even Maybe Still "
    "Today Tonight Tomorrow Yesterday Please Thank Thanks Hey Hello Sorry Good Something "
    "Nothing Everything Someone Everyone Nobody Nothing Because While Once Again Some Most "
    "Let Don't Didn't Can't Won't I'm It's That's Sure Right No-one Me Him Them Us"
)
FIRST = _lex("i me my mine myself")
SECOND = _lex("you your yours yourself")
THIRD = _lex("he she him her his hers himself herself they them their")
POSITIVE = _lex(
    "smiled smile happy happily laughed love loved together home safe peace "
    "hope joy warm relief finally free alive hugged beautiful"
)
NEGATIVE = _lex(
    "dead died death cried tears alone lost blood pain never gone dark cold "
    "killed grave empty broke broken"
)
TWIST = (
    "realized",
    "realised",
    "all along",
    "it was me",
    "turns out",
    "turned out",
    "the truth",
    "had been",
    "wasn't real",
    "was never",
)


@dataclass
class Tags:
    """The request fields the tagger found in a story, with the evidence counts behind them."""

    request: StoryRequest
    scores: dict[str, dict[str, float]] = field(default_factory=dict)


def _narration(text: str) -> str:
    """The story without its dialogue: point of view is a property of the narration."""
    return _QUOTED.sub(" ", text)


def _best(scores: dict[str, float], minimum: float) -> str:
    label, score = max(scores.items(), key=lambda kv: (kv[1], kv[0]))
    return label if score >= minimum else ""


def lexicon_scores(
    counts: Counter, n_words: int, lexicons: dict[str, frozenset[str]]
) -> dict[str, float]:
    """Hits per 1000 words of each lexicon, from lower-cased word counts."""
    per_k = 1000 / max(n_words, 1)
    return {k: sum(counts[w] for w in lex if w in counts) * per_k for k, lex in lexicons.items()}


def places_in(words: Counter, lower_text: str) -> Counter:
    """How often each known place (singular or plural) is mentioned."""
    found = Counter(
        {p: words[p] + words[p + "s"] for p in _SINGLE_PLACES if p in words or p + "s" in words}
    )
    for p in _MULTI_PLACES:
        if p in lower_text:
            found[p] = lower_text.count(p)
    return found


def length_bucket(n_words: int) -> str:
    """The length bucket whose budget is nearest to ``n_words``."""
    return min(LENGTHS, key=lambda k: abs(LENGTHS[k] - n_words))


def characters(text: str, limit: int = 3, tokens: list[str] | None = None) -> list[Character]:
    """Recurring capitalised names (not sentence-initial function words) and nearby traits."""
    tokens = tokens if tokens is not None else _WORD.findall(text)
    counts = Counter(
        t
        for t in tokens
        if t[0].isupper()
        and t not in NOT_NAMES
        and len(t) > 1
        and not t.isupper()
        and "'" not in t
        and "’" not in t
    )
    names = [n for n, c in counts.most_common() if c >= 2][:limit]
    out = []
    for name in names:
        near: Counter[str] = Counter()
        for i, t in enumerate(tokens):
            if t == name:
                near.update(
                    w for w in (x.lower() for x in tokens[max(0, i - 4) : i + 5]) if w in TRAITS
                )
        out.append(Character(name, [w for w, _ in near.most_common(2)]))
    return out


def ending(text: str) -> str:
    """Ending type from the last fifth of the story: twist, open, happy, sad or bittersweet."""
    tail = text[-max(400, len(text) // 5) :]
    last = tail.strip()[-200:]
    lower = tail.lower()
    if any(t in lower for t in TWIST):
        return "twist"
    if last.rstrip("\"”' ").endswith(("?", "...", "…")):
        return "open"
    words = [w.lower() for w in _WORD.findall(tail)]
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    if pos >= 2 and neg >= 2:
        return "bittersweet"
    if pos > neg:
        return "happy"
    if neg > pos:
        return "sad"
    return "open"


def pov(text: str) -> str:
    """Point of view from pronoun counts in the narration."""
    counts = Counter(_WORD.findall(_narration(text).lower()))
    first = sum(counts[w] for w in FIRST) * 1.5  # narrators say "I" less often than "he"
    second = sum(counts[w] for w in SECOND)
    third = sum(counts[w] for w in THIRD)
    if second > 2 * max(first, third):
        return "second person"
    return "first person" if first >= third else "third person"


def tag_story(story: str, prompt: str = "", prompt_tags: list[str] | None = None) -> Tags:
    """Derive a :class:`StoryRequest` describing ``story`` (and its WritingPrompts prompt)."""
    tokens = _WORD.findall(story)
    words = Counter(_WORD.findall(story.lower()))
    n_words = len(tokens)
    prompt_words = Counter(_WORD.findall(prompt.lower()))
    # The prompt says what the story is about: its words count three times.
    n_all = n_words + 3 * sum(prompt_words.values())
    genre_scores = lexicon_scores(words, n_all, GENRE_WORDS)
    for k, v in lexicon_scores(prompt_words, n_all, GENRE_WORDS).items():
        genre_scores[k] += 3 * v
    for tag in prompt_tags or []:
        if tag in GENRE_PROMPT_TAGS:
            genre_scores[GENRE_PROMPT_TAGS[tag]] += 5
    tone_scores = lexicon_scores(words, n_words, TONE_WORDS)
    lower = story.lower()
    places = places_in(words, lower)
    # Ties go to the place mentioned first, so the answer never depends on set order.
    place = max(places, key=lambda p: (places[p], -lower.find(p))) if places else ""
    era = _ERA_RE.search(story + " " + prompt)
    request = StoryRequest(
        characters=characters(story, tokens=tokens),
        setting=Setting(place, era.group(1).lower() if era else ""),
        genre=_best(genre_scores, 4.0),
        tone=_best(tone_scores, 3.0),
        ending=ending(story),
        pov=pov(story),
        length=length_bucket(len(story.split())),
        prompt=prompt,
    )
    return Tags(request, {"genre": genre_scores, "tone": tone_scores})
