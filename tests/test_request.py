"""The story request schema: validation gives field-specific errors and never crashes."""

import random

import pytest

from storygen.request import (
    MAX_NAME,
    MAX_PROMPT,
    PLAN_ORIGINS,
    Character,
    Plan,
    RequestError,
    Setting,
    StoryRequest,
    validate,
    validate_plan,
)


def test_valid_request_is_normalised():
    req = validate(
        StoryRequest(
            characters=[Character("  Mara ", [" stubborn", "kind "])],
            genre="Sci-Fi",
            tone="funny",
            pov="first",
            prompt="a\n\nb",
        )
    )
    assert req.characters[0] == Character("Mara", ["stubborn", "kind"])
    assert (req.genre, req.tone, req.pov, req.prompt) == (
        "science fiction",
        "humorous",
        "first person",
        "a b",
    )


@pytest.mark.parametrize(
    "request_kwargs, field, words",
    [
        ({"prompt": ""}, "request", "empty"),
        ({"characters": [Character("", ["kind"])]}, "characters[0].name", "missing"),
        ({"characters": [Character("x" * (MAX_NAME + 1))]}, "characters[0].name", "too long"),
        ({"prompt": "y" * (MAX_PROMPT + 1)}, "prompt", "too long"),
        ({"genre": "cooking"}, "genre", "not one of"),
        ({"ending": "sad-ish"}, "ending", "not one of"),
        ({"prompt": "bell\x07"}, "prompt", "control character"),
        ({"setting": Setting("home\x00")}, "setting.place", "control character"),
        ({"genre": 3}, "genre", "expected text"),
        ({"characters": "Mara"}, "characters", "expected a list"),
        ({"plot_points": ["a"] * 9}, "plot_points", "at most"),
    ],
)
def test_bad_fields_get_field_specific_errors(request_kwargs, field, words):
    with pytest.raises(RequestError) as info:
        validate(StoryRequest(**{"prompt": "a story", **request_kwargs}))
    assert field in info.value.errors
    assert words in info.value.errors[field]


def test_several_errors_are_reported_together():
    with pytest.raises(RequestError) as info:
        validate(StoryRequest(genre="cooking", tone="grumpy", prompt="ok"))
    assert set(info.value.errors) == {"genre", "tone"}


def test_from_dict_rejects_unknown_fields_and_bad_shapes():
    with pytest.raises(RequestError) as info:
        StoryRequest.from_dict({"prompt": "x", "colour": "red"})
    assert "colour" in info.value.errors
    with pytest.raises(RequestError):
        StoryRequest.from_dict(["not", "a", "dict"])
    with pytest.raises(RequestError):
        StoryRequest.from_dict({"characters": [42]})


def test_from_dict_round_trips():
    req = validate(
        StoryRequest(
            characters=[Character("Mara", ["kind"])],
            genre="horror",
            setting=Setting("a ship", "2300"),
            plot_points=["the hull cracks"],
        )
    )
    assert StoryRequest.from_dict(req.to_dict()) == req


def test_validation_never_crashes_on_garbage():
    rng = random.Random(0)
    junk = [None, 0, 1.5, [], {}, "", "x", ["a", 1], {"a": 1}, b"bytes", object()]
    for _ in range(300):
        data = {
            k: rng.choice(junk)
            for k in rng.sample(
                [
                    "characters",
                    "setting",
                    "genre",
                    "tone",
                    "plot_points",
                    "ending",
                    "pov",
                    "length",
                    "prompt",
                ],
                4,
            )
        }
        try:
            StoryRequest.from_dict(data)
        except RequestError as exc:
            assert exc.errors  # a readable reason, never another exception type


SETTING_SHAPE = 'expected {"place": ..., "era": ...}'
GENRE_LIST = (
    "fantasy, science fiction, horror, mystery, romance, comedy, adventure, drama, thriller, "
    "historical, fairy tale, dystopian"
)


@pytest.mark.parametrize(
    "data, errors",
    [
        ([1, 2], {"request": "expected a JSON object, got list"}),
        ({"colour": "red", "zeta": 1}, {"colour": "unknown field", "zeta": "unknown field"}),
        ({"characters": "Mara"}, {"characters": "expected a list"}),
        (
            {"characters": [5, {"name": "A", "age": 3}]},
            {
                "characters[0]": 'expected {"name": ..., "traits": [...]}',
                "characters[1]": 'expected {"name": ..., "traits": [...]}',
            },
        ),
        ({"setting": ["x"]}, {"setting": SETTING_SHAPE}),
        (
            {"setting": {"place": "a", "weather": "b"}},
            {"setting": 'expected {"place": ..., "era": ...}'},
        ),
        ({"characters": [{"traits": ["kind"]}]}, {"characters[0].name": "is missing"}),
        (
            {"prompt": ""},
            {"request": "is empty: give at least a prompt, a genre, a character or a setting"},
        ),
        ({"prompt": "y" * 2001}, {"prompt": "is too long (2001 characters, at most 2000)"}),
        ({"genre": "Cooking"}, {"genre": f"'Cooking' is not one of: {GENRE_LIST}"}),
        ({"genre": 3, "prompt": "x"}, {"genre": "expected text, got int"}),
        ({"prompt": "bell\x07"}, {"prompt": "contains a control character ('\\x07')"}),
        ({"plot_points": ["a"] * 9}, {"plot_points": "has 9 entries, at most 8"}),
        ({"plot_points": 5, "prompt": "x"}, {"plot_points": "expected a list of text, got int"}),
        (
            {"characters": [{"name": "x" * 61}]},
            {"characters[0].name": "is too long (61 characters, at most 60)"},
        ),
        (
            {"characters": [{"name": "M", "traits": ["t"] * 9}]},
            {"characters[0].traits": "has 9 entries, at most 8"},
        ),
        (
            {"characters": [{"name": f"c{i}"} for i in range(9)]},
            {"characters": "has 9 entries, at most 8"},
        ),
        (
            {"length": "epic", "prompt": "x"},
            {"length": "'epic' is not one of: flash, short, medium, long"},
        ),
    ],
)
def test_every_refusal_names_its_field_and_says_exactly_why(data, errors):
    with pytest.raises(RequestError) as info:
        StoryRequest.from_dict(data)
    assert info.value.errors == errors


@pytest.mark.parametrize(
    "text, character",
    [
        ("Mara: stubborn, kind", Character("Mara", ["stubborn", "kind"])),
        ("Jonah", Character("Jonah", [])),
        ("Ed: a:b", Character("Ed", ["a:b"])),  # the first colon ends the name
        (" Zoë :  , brave ,", Character("Zoë", ["brave"])),
        ("a,b: c", Character("a,b", ["c"])),
    ],
)
def test_a_character_line_is_name_colon_traits(text, character):
    assert Character.parse(text) == character


def test_plain_json_characters_and_a_setting_string_are_read():
    req = StoryRequest.from_dict(
        {
            "characters": [
                "Mara: stubborn, kind",
                {"name": "Jonah"},
                {"name": "Ed", "traits": ["x"]},
            ],
            "setting": "a lighthouse",
        }
    )
    assert req.characters == [
        Character("Mara", ["stubborn", "kind"]),
        Character("Jonah", []),
        Character("Ed", ["x"]),
    ]
    assert req.setting == Setting("a lighthouse", "")


def test_a_plan_as_json_and_a_models_text_without_control_characters():
    from storygen.request import Plan, remove_controls

    plan = Plan("A keeper.", ["Mara waits.", "A ship."], "edited")
    assert plan.to_dict() == {
        "premise": "A keeper.",
        "beats": ["Mara waits.", "A ship."],
        "origin": "edited",
    }
    assert remove_controls("a\x00b\nc\td\x07\x7f\x85e") == "ab\nc\tde"


@pytest.mark.parametrize(
    "plan, errors",
    [
        ("1. Mara waits.", {"plan": "expected a premise and a list of beats"}),
        (Plan("A keeper.", [], "model"), {"plan.beats": "is empty: give at least one beat"}),
        (Plan("", ["  ", ""], "person"), {"plan.beats": "is empty: give at least one beat"}),
        (
            Plan("A\x07keeper.", ["Mara waits."], "model"),
            {"plan.premise": "contains a control character ('\\x07')"},
        ),
        (
            Plan("p" * 301, ["Mara waits."], "model"),
            {"plan.premise": "is too long (301 characters, at most 300)"},
        ),
        (
            Plan("", ["Mara waits.", "b" * 301], "model"),
            {"plan.beats[1]": "is too long (301 characters, at most 300)"},
        ),
        (Plan("", ["a beat"] * 13, "model"), {"plan.beats": "has 13 entries, at most 12"}),
        (Plan("", 7, "model"), {"plan.beats": "expected a list of text, got int"}),
        (
            Plan("", ["Mara waits."], "robot"),
            {"plan.origin": "is not one of: model, edited, person"},
        ),
        (
            Plan(3, [], ""),
            {
                "plan.premise": "expected text, got int",
                "plan.origin": "is not one of: model, edited, person",
            },
        ),
    ],
)
def test_every_refusal_of_a_plan_names_its_part_and_says_exactly_why(plan, errors):
    with pytest.raises(RequestError) as info:
        validate_plan(plan)
    assert info.value.errors == errors


@pytest.mark.parametrize("origin", PLAN_ORIGINS)
def test_a_valid_plan_keeps_its_origin_and_becomes_one_line_a_part(origin):
    plan = Plan(" A keeper,\nalone. ", ["Mara\twaits\r\nby the lamp.", "", "A ship."], origin)
    assert validate_plan(plan) == Plan(
        "A keeper, alone.", ["Mara waits by the lamp.", "A ship."], origin
    )


ARC_LIST = "rags to riches, tragedy, man in a hole, icarus, cinderella, oedipus"


@pytest.mark.parametrize(
    "request_, errors",
    [
        (StoryRequest(characters="Mara"), {"characters": "expected a list of characters"}),
        (
            StoryRequest(characters=[5, "Mara", Character("Jo")]),
            {
                "characters[0]": "expected a character with a name and traits",
                "characters[1]": "expected a character with a name and traits",
            },
        ),
        (StoryRequest(setting="a lighthouse"), {"setting": "expected a place and an era"}),
        (
            StoryRequest(setting=Setting("a\nlighthouse"), prompt="x"),
            {"setting.place": "contains a control character ('\\n')"},
        ),
        (
            StoryRequest(setting=Setting("a lighthouse", "e" * 121)),
            {"setting.era": "is too long (121 characters, at most 120)"},
        ),
        (
            StoryRequest(genre="hor\x07ror", prompt="x"),
            {"genre": "contains a control character ('\\x07')"},
        ),
        (
            StoryRequest(tone="t" * 41, prompt="x"),
            {"tone": "is too long (41 characters, at most 40)"},
        ),
        (StoryRequest(arc="spiral", prompt="x"), {"arc": f"'spiral' is not one of: {ARC_LIST}"}),
    ],
)
def test_validate_refuses_what_from_dict_cannot_build_and_names_it(request_, errors):
    """``validate`` also takes requests built in code, whose fields may be of any type."""
    with pytest.raises(RequestError) as info:
        validate(request_)
    assert info.value.errors == errors


def test_empty_fields_are_left_out_and_the_length_defaults_to_short():
    for empty in (None, ""):
        clean = validate(
            StoryRequest(genre=empty, tone=empty, arc=empty, length=empty, prompt="A key.")
        )
        assert clean == StoryRequest(prompt="A key.", length="short")
    eight = [Character(f"c{i}") for i in range(8)]  # the most characters a request takes
    assert validate(StoryRequest(characters=eight)).characters == eight
    prompt = "Line one.\n\tLine two."  # the prompt alone may span lines
    assert validate(StoryRequest(prompt=prompt)).prompt == "Line one. Line two."


def test_limits_are_inclusive_a_lone_text_is_a_list_of_one_and_errors_read_as_one_line():
    assert validate(StoryRequest(prompt="p" * MAX_PROMPT)).prompt == "p" * MAX_PROMPT
    name = "n" * MAX_NAME
    assert validate(StoryRequest(characters=[Character(name)])).characters[0].name == name
    lone = validate(StoryRequest(plot_points="A key is found."))
    assert lone.plot_points == ["A key is found."]
    error = RequestError({"genre": "is wrong", "tone": "is missing"})
    assert str(error) == "genre: is wrong; tone: is missing"
