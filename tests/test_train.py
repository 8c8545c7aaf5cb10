"""QLoRA fine-tuning end to end on the tiny model: files, loss, resume, the 4-bit trap."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetune.build import build
from finetune.config import TrainConfig
from finetune.train import IGNORE, prepare_model, tokenize, train
from storygen.backends.hf import TransformersBackend
from storygen.config import ModelSpec, SamplingConfig
from storygen.generation import generate_story
from storygen.loading import LoadedModel, load_model

from .conftest import FIXTURES


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    build(FIXTURES / "wp_hf.csv", out, valid_fraction=0.0, progress=False)
    (out / "valid.jsonl").write_text((out / "train.jsonl").read_text())
    return out


def _cfg(tiny_model_dir, data_dir, out, **kw):
    base = dict(
        data_dir=str(data_dir),
        output_dir=str(out),
        base=str(tiny_model_dir),
        max_length=384,
        batch_size=2,
        grad_accum=1,
        learning_rate=5e-3,
        warmup_steps=1,
        max_steps=6,
        eval_steps=3,
        save_steps=2,
        lora_r=4,
        seed=3,
        name="tiny",
    )
    base.update(kw)
    return TrainConfig(**base)


def test_labels_mask_the_prompt(tiny_lm):
    ex = tokenize(tiny_lm.tokenizer, "<|request|>\ngenre: x\n<|story|>\n", "Mara ran.", 64)
    n_prompt = ex.labels.count(IGNORE)
    assert n_prompt > 0 and ex.labels[n_prompt:] == ex.input_ids[n_prompt:]
    assert ex.input_ids[-1] == tiny_lm.tokenizer.eos_token_id


def test_training_writes_everything_and_the_adapter_loads(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    metrics = train(_cfg(tiny_model_dir, data_dir, out), progress=False)
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "storygen_adapter.json",
        "train_config.yaml",
        "metrics.json",
        "loss_curve.csv",
        "loss_curve.png",
        "data_report.json",
        "adapter_model.gguf",
    ):
        assert (out / name).exists(), name
    assert not (out / "checkpoint").exists()
    assert metrics["val_loss"] < metrics["val_loss_initial"]  # it learned something
    meta = json.loads((out / "storygen_adapter.json").read_text())
    assert meta["base_model"] == str(tiny_model_dir.resolve()) and meta["prompt_format"]
    lm = load_model(ModelSpec(base=str(tiny_model_dir), adapter=str(out), quantization="nf4"))
    story = generate_story(
        TransformersBackend(lm),
        __import__("storygen.request", fromlist=["StoryRequest"]).StoryRequest(prompt="a dragon"),
        SamplingConfig(max_new_tokens=10),
    )
    assert story.provenance["adapter_name"] == "tiny"


def test_resume_after_a_kill_matches_an_uninterrupted_run(
    tiny_model_dir, data_dir, tmp_path, monkeypatch
):
    full = tmp_path / "full"
    train(_cfg(tiny_model_dir, data_dir, full, quantization="fp32"), progress=False)

    killed = tmp_path / "killed"
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def dying_step(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # after the checkpoint at step 2 ... and step 3 ran: lost work
            raise KeyboardInterrupt
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_model_dir, data_dir, killed, quantization="fp32"), progress=False)
    assert json.loads((killed / "checkpoint" / "trainer_state.json").read_text())["step"] == 2
    resumed_steps = []

    def counting_step(self, *a, **kw):
        resumed_steps.append(1)
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting_step)
    train(_cfg(tiny_model_dir, data_dir, killed, quantization="fp32"), progress=False)
    assert len(resumed_steps) == 4  # steps 3-6 only: it picked up at the checkpoint

    a = load_file(full / "adapter_model.safetensors")
    b = load_file(killed / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=2e-3)


def test_generate_then_train_keeps_lora_gradients(tiny_model_dir, data_dir, tmp_path):
    """The avx512_bf16 trap: inference before training must not leave LoRA without gradients."""
    import bitsandbytes as bnb

    cfg = _cfg(tiny_model_dir, data_dir, tmp_path / "trap")
    model, tok, base_id, device = prepare_model(cfg)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and not any(m.support_avx512bf16_for_cpu for m in layers)
    lm = LoadedModel(model, tok, ModelSpec(base=str(tiny_model_dir), adapter="x"), base_id, device)
    model.eval()
    generate_story(
        TransformersBackend(lm),
        __import__("storygen.request", fromlist=["StoryRequest"]).StoryRequest(prompt="a dragon"),
        SamplingConfig(max_new_tokens=8),
    )
    model.train()
    ids = tok("Mara walked to the lighthouse. The sea was dark.", return_tensors="pt").input_ids
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = [p.grad for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]
        assert grads and sum(float(g.abs().sum()) for g in grads if g is not None) > 0
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("arch", ["gpt2", "mistral"])
@pytest.mark.parametrize("quantization", ["nf4", "fp32"])
def test_lora_targets_every_projection_per_architecture(
    arch, quantization, tiny_model_dir, data_dir, tmp_path
):
    """GPT-2 (Conv1D) and Mistral bases train too, with LoRA on each of their projections."""
    from transformers import (
        AutoTokenizer,
        GPT2Config,
        GPT2LMHeadModel,
        MistralConfig,
        MistralForCausalLM,
    )

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    if arch == "gpt2":
        config = GPT2Config(
            vocab_size=len(tok),
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=512,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
    else:
        config = MistralConfig(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            eos_token_id=tok.eos_token_id,
        )
        model = MistralForCausalLM(config)
    folder = tmp_path / arch
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    cfg = _cfg(folder, data_dir, tmp_path / "out", quantization=quantization, max_steps=2)
    peft_model, *_ = prepare_model(cfg)
    wrapped = {
        n.split(".lora_A")[0].rsplit(".", 1)[-1]
        for n, _ in peft_model.named_parameters()
        if "lora_A" in n
    }
    want = {
        "gpt2": {"c_attn", "c_proj", "c_fc"},  # GPT-2's fused attention, projection and MLP
        "mistral": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    }
    assert wrapped == want[arch]  # every linear projection of the block, written out here
    metrics = train(cfg, progress=False)
    assert metrics["steps"] == 2 and math.isfinite(metrics["val_loss"])  # no nan, no infinity


@pytest.mark.integration  # two training processes
def test_two_process_data_parallel_run_under_accelerate_launch(tiny_model_dir, data_dir, tmp_path):
    """`accelerate launch` (here 2 CPU processes over gloo) trains one adapter together."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "finetune",
        "train",
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(out),
        "--base",
        str(tiny_model_dir),
        "--quantization",
        "fp32",
        "--max-length",
        "384",
        "--batch-size",
        "1",
        "--grad-accum",
        "2",
        "--max-steps",
        "2",
        "--eval-steps",
        "2",
        "--lora-r",
        "4",
    ]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(done.stdout[done.stdout.index("{") :])
    assert metrics["steps"] == 2 and (out / "adapter_model.safetensors").exists()


def _bench(module: str, *args: str) -> None:
    """Run a benchmark as a person runs it (tests never import bench/)."""
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", module, *args]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


@pytest.mark.integration  # a benchmark process
def test_gpu_benchmark_runs_end_to_end_on_a_tiny_shape(tmp_path):
    """bench/gpu_qlora.py is only timed on a GPU; here it runs on a tiny shape so it cannot rot:
    the plain stack and the trainer's own path start from the same model and the same loss."""
    out = tmp_path / "gpu.json"
    args = "--shape tiny --device cpu --steps 1 --warmup 1 --batch 2 --seq 32 --json"
    _bench("bench.gpu_qlora", *args.split(), str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [(r["path"], r["grad_ckpt"]) for r in rows] == [
        ("plain", True),
        ("plain", False),
        ("storygen", True),
    ]
    assert all(isinstance(r["tokens_per_s"], float) and r["tokens_per_s"] > 0 for r in rows)
    assert len({r["loss_first_last"].split(" / ")[0] for r in rows}) == 1


def test_data_preprocessed_for_another_prompt_format_is_refused(tiny_model_dir, data_dir, tmp_path):
    """An adapter is stamped with the prompt format it speaks: training it on data rendered in
    another one would make the stamp a lie."""
    import shutil

    from finetune.train import TrainDataError

    old = tmp_path / "old-data"
    shutil.copytree(data_dir, old)
    report = json.loads((old / "report.json").read_text())
    (old / "report.json").write_text(json.dumps({**report, "prompt_format": "storygen-tags-v1"}))
    with pytest.raises(TrainDataError, match="storygen-tags-v1"):
        train(_cfg(tiny_model_dir, old, tmp_path / "run"), progress=False)
    assert not (tmp_path / "run" / "adapter_model.safetensors").exists()


@pytest.mark.integration  # three training processes
def test_the_sft_stack_benchmark_trains_the_same_model_on_both_stacks(
    tiny_model_dir, data_dir, tmp_path
):
    """bench.sft_stacks: both stacks start from the same base and score the same validation
    examples with the same function (equal initial losses), train the steps asked, and learn
    (the loss falls on these repeated fixture stories)."""
    cfg = _cfg(tiny_model_dir, data_dir, tmp_path / "unused")
    config = tmp_path / "tiny.yaml"
    cfg.save(config)
    out = tmp_path / "stacks.json"
    args = ["--data", str(data_dir), "--base", str(tiny_model_dir), "--steps", "4"]
    _bench("bench.sft_stacks", *args, "--threads", "1", "--config", str(config), "--json", str(out))
    ours, trl, trl_fp32, *ratios = json.loads(out.read_text())
    assert trl["stack"] != trl_fp32["stack"] and len(ratios) == 2
    for row in (trl, trl_fp32):
        assert row["val_loss_initial"] == pytest.approx(ours["val_loss_initial"], rel=1e-6)
    for row in (ours, trl, trl_fp32):
        assert row["steps"] == 4 and row["tokens_per_s"] > 0 and row["peak_rss_mib"] > 0
        assert row["val_loss"] < row["val_loss_initial"]
