"""The tagger's word lists and patterns, in the request's own vocabulary (data, not logic).

:mod:`storygen.tagger` reads stories with them, :mod:`eval.adherence` scores generated stories
with the same lists, so a request field means one thing everywhere.
"""

from __future__ import annotations

import re


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
# Oaths that name a place without setting the story there ("what the hell", "for heaven's sake").
PLACE_IDIOMS = {
    "hell": (
        "the hell",
        "hell of",
        "hell no",
        "hell yeah",
        "hell with",
        "like hell",
        "bloody hell",
        "hell, no",
        "hell, yeah",
    ),
    "heaven": ("heaven's sake", "heavens", "heaven knows", "thank heaven", "heaven forbid"),
}
SINGLE_PLACES = frozenset(p for p in PLACES if " " not in p)
MULTI_PLACES = tuple(p for p in PLACES if " " in p)
# An era is a year or decade ("1920s", "2150") or a named period. Two patterns, each starting
# with a literal, so the regex engine skips straight to candidates; the named periods only run
# when a substring test finds one of their words.
YEAR_RE = re.compile(r"1(?<!\w1)[0-9]{3}s?\b|2(?<!\w2)(?:0[0-9]{2}s?|[1-9][0-9]{2})\b")
PERIODS = ("medieval", "victorian", "ancient", "prehistoric", "renaissance", "future")
PERIOD_RE = re.compile(
    r"\b(medieval|victorian|ancient|prehistoric|renaissance|future|the twenties|"
    r"world war (?:i|ii|one|two|1|2))\b"
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
# Words that stand before a name without being part of it ("Captain Flint" is Flint).
TITLES = _lex(
    "Mr Mrs Ms Miss Dr Doctor Sir Lady Lord Madam Captain Detective Agent Officer Sergeant "
    "Private Corporal Lieutenant Colonel Major General Admiral Commander Chief Judge Professor "
    "Father Mother Sister Brother Uncle Aunt Auntie Grandma Grandpa Nana King Queen Prince "
    "Princess President Senator Governor Mayor Saint St Reverend Pastor Bishop Emperor"
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
