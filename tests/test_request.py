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
