"""Plan-then-write: the plan stage, stories written from a plan, the version-1 refusal, the
CLI's --plan and --outline, and the structure metrics on hand-made stories."""

import json

import pytest

from eval.structure import arc_adherence, beat_adherence
from storygen.backends.hf import TransformersBackend
from storygen.cli import main
from storygen.config import SamplingConfig
from storygen.generation import (
    generate_plan,
    generate_story,
    plan_from_text,
    render_plan_text,
    stream_plan,
)
from storygen.prompt_format import PLAN_MARKER, STORY_MARKER, V1, V2, parse_plan, render_plan
from storygen.request import MAX_BEAT, MAX_BEATS, Plan, RequestError, StoryRequest

from .test_arcs import LEVELS, STORY, story_of

SETTINGS = SamplingConfig(seed=3, max_new_tokens=40)
REQUEST = StoryRequest(genre="mystery", arc="man in a hole", prompt="a lighthouse keeper")


def test_the_plan_streams_then_arrives_parsed_with_provenance(tiny_backend):
    updates = list(stream_plan(tiny_backend, REQUEST, SETTINGS))
    *partial, last = updates
    assert partial and all(u.plan is None for u in partial)
    assert all(b.text.startswith(a.text) for a, b in zip(partial, partial[1:], strict=False))
    assert last.plan is not None and last.plan.beats and last.plan.origin == "model"
    assert last.text == render_plan_text(last.plan)
    assert last.provenance["request"]["arc"] == "man in a hole"
    assert last.provenance["prompt_format"] == V2 and last.provenance["new_tokens"] <= 40
    assert generate_plan(tiny_backend, REQUEST, SETTINGS) == last.plan  # same seed, same plan


def test_the_plan_prompt_asks_for_a_plan_and_the_story_prompt_carries_it(tiny_backend):
    plan = Plan("A keeper finds a letter.", ["Mara keeps the light.", "A ship is lost."])
    asks = tiny_backend.prompt(REQUEST, task="plan").text
    assert asks.endswith(f"{PLAN_MARKER}\n") and STORY_MARKER not in asks
    story_prompt = tiny_backend.prompt(REQUEST, plan=plan).text
    assert story_prompt.endswith(f"{PLAN_MARKER}\n{render_plan(plan)}{STORY_MARKER}\n")
    story = generate_story(tiny_backend, REQUEST, SETTINGS, plan=plan)
    assert story.provenance["plan"] == plan.to_dict()
    assert generate_story(tiny_backend, REQUEST, SETTINGS).provenance["plan"] is None


def test_a_version_1_adapter_is_refused_the_arc_and_the_plan_by_name(tiny_lm):
    old = TransformersBackend(tiny_lm)
    old.adapter_meta = {"prompt_format": V1, "name": "old"}  # as an adapter trained on v1 says
    with pytest.raises(RequestError) as arc:
        generate_story(old, REQUEST, SETTINGS)
    assert set(arc.value.errors) == {"arc"} and V1 in arc.value.errors["arc"]
    with pytest.raises(RequestError) as plan:
        generate_plan(old, StoryRequest(genre="mystery"), SETTINGS)
    assert set(plan.value.errors) == {"plan"}
    plain = generate_story(old, StoryRequest(genre="mystery"), SETTINGS)
    assert plain.provenance["prompt_format"] == V1 and plain.text


def test_a_models_plan_is_cut_to_size_and_an_empty_one_is_refused():
    long = "x" * (MAX_BEAT + 50)
    text = "premise: A start.\n" + "\n".join(f"{i}. {long}" for i in range(20))
    plan = plan_from_text(text)
    assert plan.premise == "A start." and len(plan.beats) == MAX_BEATS
    assert all(len(b) <= MAX_BEAT for b in plan.beats)
    unnumbered = plan_from_text("\n".join(f"{i}. beat {i}" for i in range(1, 21)))
    assert unnumbered.premise == "" and unnumbered.beats == [f"beat {i}" for i in range(1, 13)]
    with pytest.raises(RequestError) as none:
        plan_from_text("  \n premise: only a premise \n")
    assert "no usable plan" in none.value.errors["plan"]


def test_parse_plan_reads_the_models_escaped_text_up_to_the_story():
    text = "premise: A \\(small\\) start\n1. Mara\\; alone\n2) a storm\n- rescue\n<|story|>\n3. no"
    assert parse_plan(text) == Plan("A (small) start", ["Mara; alone", "a storm", "rescue"])


def _cli(tiny_model_dir, *extra):
    args = ["generate", "--base", str(tiny_model_dir), "--adapter", "none"]
    args += ["--quantization", "fp32", "--max-new-tokens", "20", "--seed", "5", *extra]
    return main(args)


def test_cli_plan_writes_the_beats_then_the_story(tiny_model_dir, capsys):
    assert (
        _cli(tiny_model_dir, "--genre", "mystery", "--arc", "fall then rise", "--plan", "--json")
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["plan"]["beats"] and out["plan"]["origin"] == "model"
    assert out["provenance"]["plan"] == out["plan"]
    assert out["provenance"]["request"]["arc"] == "man in a hole"  # the alias, resolved
    assert out["plan_provenance"]["prompt_format"] == V2


def test_cli_outline_is_the_persons_own_beats(tiny_model_dir, tmp_path, capsys):
    outline = tmp_path / "beats.txt"
    outline.write_text("Premise: A keeper\\'s last night\n1. Mara lights the lamp.\n\n- A ship.\n")
    assert _cli(tiny_model_dir, "--genre", "mystery", "--outline", str(outline), "--json") == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan == {
        "premise": "A keeper\\'s last night",  # a person's backslash stays as typed
        "beats": ["Mara lights the lamp.", "A ship."],
        "origin": "person",
    }
    outline.write_text("\n \n")
    assert _cli(tiny_model_dir, "--genre", "mystery", "--outline", str(outline)) == 2
    assert "plan.beats" in capsys.readouterr().err
    assert _cli(tiny_model_dir, "--genre", "mystery", "--arc", "zigzag") == 2
    assert "arc" in capsys.readouterr().err


def test_arc_adherence_on_stories_made_to_follow_an_arc():
    arcs = list(LEVELS)
    stories = [story_of(LEVELS[a]) for a in arcs]
    right = arc_adherence([StoryRequest(arc=a) for a in arcs], stories)
    assert right["arc_match"] == 1.0 and right["arc_n"] == 6 and right["arc_correlation"] > 0.85
    # Each story asked for the opposite shape: no match, negative correlation.
    opposite = {
        "rags to riches": "tragedy",
        "tragedy": "rags to riches",
        "man in a hole": "icarus",
        "icarus": "man in a hole",
        "cinderella": "oedipus",
        "oedipus": "cinderella",
    }
    wrong = arc_adherence([StoryRequest(arc=opposite[a]) for a in arcs], stories)
    assert wrong["arc_match"] == 0.0 and wrong["arc_correlation"] < -0.85
    # No arc asked, or a story too short to measure: left out, and counted.
    mixed = arc_adherence(
        [StoryRequest(genre="mystery"), StoryRequest(arc="tragedy")], [stories[1], "Too short."]
    )
    assert mixed == {"arc_n": 0, "arc_asked": 1}


def test_beat_adherence_averages_over_the_stories_with_a_plan():
    beats = ["Mara keeps the lighthouse on an island.", "A dragon burns the castle."]
    scores = beat_adherence([beats, None, beats[::-1]], [STORY, STORY, STORY])
    assert scores == {"beat_coverage": 0.5, "beat_order": 1.0, "beat_n": 2}
    assert beat_adherence([None], [STORY]) == {"beat_n": 0}
