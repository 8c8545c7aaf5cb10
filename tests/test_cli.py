"""The command line: every request field as a flag, JSON output, clear errors."""

import json

from storygen.cli import main


def _args(tiny_model_dir, *extra):
    return [
        "generate",
        "--base",
        str(tiny_model_dir),
        "--adapter",
        "none",
        "--quantization",
        "fp32",
        "--max-new-tokens",
        "20",
        "--seed",
        "5",
        *extra,
    ]


def test_generate_json_has_story_and_provenance(tiny_model_dir, capsys):
    code = main(
        _args(
            tiny_model_dir,
            "--character",
            "Mara: stubborn, kind",
            "--character",
            "Jonah: curious",
            "--place",
            "a lighthouse",
            "--genre",
            "mystery",
            "--ending",
            "happy",
            "--json",
        )
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    req = out["provenance"]["request"]
    assert [c["name"] for c in req["characters"]] == ["Mara", "Jonah"]
    assert req["characters"][0]["traits"] == ["stubborn", "kind"]
    assert (req["genre"], req["ending"], req["setting"]["place"]) == (
        "mystery",
        "happy",
        "a lighthouse",
    )
    assert out["provenance"]["sampling"]["seed"] == 5


def test_request_file_and_flag_overrides(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "request.json"
    path.write_text(
        json.dumps(
            {
                "genre": "horror",
                "prompt": "a door that is not there",
                "characters": [{"name": "Ada", "traits": ["brave"]}],
            }
        )
    )
    assert main(_args(tiny_model_dir, "--request", str(path), "--tone", "dark", "--json")) == 0
    req = json.loads(capsys.readouterr().out)["provenance"]["request"]
    assert (req["genre"], req["tone"], req["characters"][0]["name"]) == ("horror", "dark", "Ada")
    path.write_text(json.dumps({"prompt": "a door", "length": "flash"}))
    assert main(_args(tiny_model_dir, "--request", str(path), "--json")) == 0
    assert json.loads(capsys.readouterr().out)["provenance"]["request"]["length"] == "flash"
    assert main(_args(tiny_model_dir, "--request", str(path), "--length", "short", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["provenance"]["request"]["length"] == "short"


def test_streams_text_to_the_terminal(tiny_model_dir, capsys):
    assert main(_args(tiny_model_dir, "--prompt", "a lighthouse keeper")) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() and "seed 5" in captured.err


def test_bad_input_exits_2_with_a_field_message(tiny_model_dir, tmp_path, capsys):
    assert main(_args(tiny_model_dir, "--genre", "cooking")) == 2
    assert "genre" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(_args(tiny_model_dir, "--request", str(bad))) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(_args(tiny_model_dir, "--prompt", "x", "--top-p", "0")) == 2
    assert (
        main(["generate", "--base", "/nonexistent/model", "--adapter", "none", "--prompt", "x"])
        == 3
    )
    assert "does not exist" in capsys.readouterr().err
