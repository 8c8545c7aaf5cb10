"""The one-command study on the tiny model: stages keyed and reused, the manifest, verify."""

import json

import pytest
import yaml

from study.config import StudyConfig, StudyError
from study.manifest import compare_figures, file_hash
from study.stages import run_study, verify

from .conftest import FIXTURES


def _config(tiny_model_dir, **changes):
    data = {
        "name": "tiny",
        # 4 stories survive cleaning; their seeded numbers put one in valid, one in test.
        "data": {
            "source": str(FIXTURES / "wp_hf.csv"),
            "valid_fraction": 0.18,
            "test_fraction": 0.32,
        },
        "train": {
            "base": str(tiny_model_dir),
            "quantization": "fp32",
            "max_length": 256,
            "batch_size": 1,
            "grad_accum": 1,
            "max_steps": 2,
            "eval_steps": 1,
            "save_steps": 1,
            "gradient_checkpointing": False,
            "threads": 1,
        },
        "compare": {
            "limit": 1,
            "seed": 3,
            "metrics": ["perplexity", "overlap"],
            "systems": [
                {
                    "name": "base",
                    "base": str(tiny_model_dir),
                    "quantization": "fp32",
                    "sampling": {"max_new_tokens": 8},
                },
                {
                    "name": "tuned",
                    "base": str(tiny_model_dir),
                    "adapter": "study",
                    "quantization": "fp32",
                    "sampling": {"max_new_tokens": 8},
                },
            ],
        },
    }
    for section, values in changes.items():
        data[section] = {**data[section], **values} if isinstance(values, dict) else values
    return StudyConfig.from_dict(data)


def test_a_study_runs_every_stage_then_reuses_what_its_settings_did_not_change(
    tiny_model_dir, tmp_path, monkeypatch
):
    import finetune.train
    import study.stages as stages

    out = tmp_path / "study"
    first = run_study(_config(tiny_model_dir), out, progress=False)
    assert first["complete"] and [s["stage"] for s in first["stages"]] == [
        "data",
        "train",
        "compare",
    ]
    assert not any(s["reused"] for s in first["stages"])
    data_dir = out / f"data-{first['stages'][0]['key']}"
    assert first["stages"][0]["outputs"]["test.jsonl"] == file_hash(data_dir / "test.jsonl")
    train_dir = out / f"train-{first['stages'][1]['key']}"
    assert (train_dir / "adapter_model.gguf").exists()  # the llama.cpp form, from this adapter
    assert first["inputs"] == {"wp_hf.csv": file_hash(FIXTURES / "wp_hf.csv")}
    assert first["code"]["commit"] and first["machine"]["cores"] >= 1
    assert first["packages"]["torch"] and first["seeds"]["train"] == 42
    assert set(first["figures"]) == {"train", "base", "tuned"}
    assert first["figures"]["tuned"]["n_items"] == 1 and "token_ppl" in first["figures"]["base"]
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["figures"] == json.loads(json.dumps(first["figures"]))
    report = (out / "study.md").read_text()
    assert "| train |" in report and "| tuned |" in report

    ran = []
    real_train, real_compare = finetune.train.train, stages.run_comparison
    monkeypatch.setattr(
        finetune.train, "train", lambda *a, **k: ran.append("train") or real_train(*a, **k)
    )
    monkeypatch.setattr(
        stages, "run_comparison", lambda *a, **k: ran.append("compare") or real_compare(*a, **k)
    )
    again = run_study(_config(tiny_model_dir), out, progress=False)
    assert ran == [] and all(s["reused"] for s in again["stages"])
    assert again["figures"] == first["figures"]
    # New sampling reaches the comparison only; new training settings the adapter and after.
    sampling = _config(tiny_model_dir).compare
    sampling["systems"][0]["sampling"] = {"max_new_tokens": 6}
    run_study(_config(tiny_model_dir, compare=sampling), out, progress=False)
    assert ran == ["compare"]
    ran.clear()
    changed = run_study(_config(tiny_model_dir, train={"learning_rate": 1e-3}), out, progress=False)
    assert ran == ["train", "compare"] and [s["reused"] for s in changed["stages"]] == [
        True,
        False,
        False,
    ]
    # Killed after training but before the stage was marked: marked now, not trained again.
    (train_dir / "stage.json").unlink()
    ran.clear()
    run_study(_config(tiny_model_dir), out, progress=False)
    assert ran == ["compare"] and (train_dir / "stage.json").exists()
    # Killed while training (no stage.json, no metrics): it runs again, in the same folder.
    (train_dir / "stage.json").unlink()
    (train_dir / "metrics.json").unlink()
    ran.clear()
    again = run_study(_config(tiny_model_dir), out, progress=False)
    assert ran == ["train", "compare"] and again["stages"][1]["code"]["commit"]


def test_verify_reruns_from_nothing_and_names_each_figure_that_moved(tiny_model_dir, tmp_path):
    out = tmp_path / "study"
    run_study(_config(tiny_model_dir), out, progress=False)
    report = verify(out / "manifest.json", tmp_path / "rerun", progress=False)
    assert report["reproduced"] and report["inputs_identical"]
    data_files = [f for f in report["files"] if f["stage"] == "data"]
    assert data_files and all(f["verdict"] == "identical" for f in data_files)
    assert {f["verdict"] for f in report["figures"]} <= {"exact", "within"}
    # A figure that does not come out again is named, with how far it moved.
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["figures"]["base"]["token_ppl"] *= 1.01
    manifest["config"]["gguf"] = True  # a manifest written before the setting was retired
    (out / "manifest.json").write_text(json.dumps(manifest))
    moved = verify(out / "manifest.json", tmp_path / "rerun2", progress=False)
    bad = [f for f in moved["figures"] if f["verdict"] == "differs"]
    assert not moved["reproduced"] and [(f["group"], f["figure"]) for f in bad] == [
        ("base", "token_ppl")
    ]
    assert bad[0]["relative_difference"] == pytest.approx(0.01 / 1.01, rel=1e-6)
    with pytest.raises(StudyError, match="not empty"):
        verify(out / "manifest.json", tmp_path / "rerun", progress=False)


def test_figures_are_compared_within_the_tolerance_of_their_kind():
    old = {"train": {"val_loss": 2.0}, "sys": {"token_ppl": 10.0, "bleu": 4.0, "rouge1": 0.5}}
    new = {"train": {"val_loss": 2.001}, "sys": {"token_ppl": 10.02, "bleu": 4.1}}
    verdicts = {(r["group"], r["figure"]): r["verdict"] for r in compare_figures(old, new)}
    assert verdicts == {
        ("train", "val_loss"): "within",  # 0.05% <= 0.1%
        ("sys", "token_ppl"): "differs",  # 0.2% > 0.1%
        ("sys", "bleu"): "within",  # 2.5% <= 5%
        ("sys", "rouge1"): "missing",
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train": {"data_dir": "x"}}, "set by the study"),
        ({"train": {"lora_rank": 4}}, "lora_rank"),
        ({"data": {"test_fraction": "some"}}, "test_fraction"),
        ({"compare": {"test": "x.jsonl", "systems": [{"name": "a"}]}}, "own test split"),
        ({"colour": "red"}, "unknown setting 'colour'"),
    ],
)
def test_a_bad_study_config_fails_before_any_work_and_names_the_setting(change, message):
    data = yaml.safe_load((FIXTURES.parent.parent / "study" / "embedded_wp500.yaml").read_text())
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    with pytest.raises(StudyError, match=message):
        StudyConfig.from_dict(data)


def test_a_study_without_test_stories_says_how_to_get_some(tiny_model_dir, tmp_path):
    with pytest.raises(StudyError, match="test_fraction above 0"):
        run_study(_config(tiny_model_dir, data={"test_fraction": 0.0}), tmp_path, progress=False)


def test_the_command_line_runs_a_study_and_verify_says_whether_it_came_out_again(
    tiny_model_dir, tmp_path, capsys
):
    from study.__main__ import main

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(_config(tiny_model_dir).to_dict()))
    assert main(["run", str(config), "--out", str(tmp_path / "s")]) == 0
    assert "study.md" in capsys.readouterr().out
    assert (
        main(["verify", str(tmp_path / "s" / "manifest.json"), "--out", str(tmp_path / "v")]) == 0
    )
    out = capsys.readouterr().out
    assert '"reproduced": true' in out and "token_ppl" in out
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
