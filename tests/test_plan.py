"""Plan-then-write from the outside: the CLI's --plan and --outline, and the structure metrics
on hand-made stories (the plan stage itself is tested in test_generation.py)."""

import json

from eval.structure import beat_adherence
from storygen.cli import main
from storygen.config import SamplingConfig
from storygen.prompt_format import V3
from storygen.request import StoryRequest

from .test_arcs import STORY

SETTINGS = SamplingConfig(seed=3, max_new_tokens=40)
REQUEST = StoryRequest(genre="mystery", arc="man in a hole", prompt="a lighthouse keeper")


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
    assert out["plan_provenance"]["prompt_format"] == V3


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


def test_beat_adherence_averages_over_the_stories_with_a_plan():
    beats = ["Mara keeps the lighthouse on an island.", "A dragon burns the castle."]
    scores = beat_adherence([beats, None, beats[::-1]], [STORY, STORY, STORY])
    assert scores == {"beat_coverage": 0.5, "beat_order": 1.0, "beat_n": 2}
    assert beat_adherence([None], [STORY]) == {"beat_n": 0}
