"""The story request schema: validation gives field-specific errors and never crashes."""

import random

import pytest

from storygen.request import (
    MAX_NAME,
    MAX_PROMPT,
    Character,
    RequestError,
    Setting,
    StoryRequest,
    validate,
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
