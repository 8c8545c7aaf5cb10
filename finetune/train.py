"""QLoRA fine-tuning: completion-only SFT of a 4-bit base with LoRA on all linear projections.

A plain, readable loop (nanoGPT-style) rather than a Trainer: every step that matters is here —
the -100 label mask, length-grouped batches, gradient accumulation, evaluation, resumable
checkpoints and the files a run leaves behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from finetune.build import read_examples, training_pairs
from finetune.config import TARGET_MODULES, TrainConfig
from storygen.config import ModelSpec
from storygen.curves import write_curves
from storygen.loading import ADAPTER_META, load_base, prompt_ids
from storygen.prompt_format import PROMPT_FORMAT_VERSION

IGNORE = -100  # label value that CrossEntropyLoss skips: no loss on the prompt or on padding


@dataclass
class Example:
    """One tokenized example: input ids and labels (prompt positions masked)."""

    input_ids: list[int]
    labels: list[int]


def tokenize(tokenizer, prompt: str, completion: str, max_length: int) -> Example | None:
    """Prompt + story + EOS, with the loss on the story tokens only. None if no story fits."""
    p = prompt_ids(tokenizer, prompt)
    c = tokenizer(completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    ids = (p + c)[:max_length]
    labels = ([IGNORE] * len(p) + c)[:max_length]
    if all(label == IGNORE for label in labels):
        return None
    return Example(ids, labels)


class TrainDataError(ValueError):
    """Training data that cannot be used (wrong prompt format, no usable example)."""


def check_data_format(data: Path) -> None:
    """Refuse data that ``preprocess`` rendered in another prompt format than the one this
    code stamps into the adapter (an adapter must speak the format it was trained on)."""
    report = data / "report.json"
    if not report.exists():
        return  # hand-made data: rendered by whoever made it
    built = json.loads(report.read_text()).get("prompt_format")
    if built != PROMPT_FORMAT_VERSION:
        raise TrainDataError(
            f"{data} was preprocessed for prompt format {built!r}; this code trains "
            f"{PROMPT_FORMAT_VERSION!r}: run `python -m finetune preprocess` again"
        )


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffle, then sort within mega-batches of 50 batches so each batch holds similar lengths
    (little padding) while the order across batches stays random."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * 50
    batches = []
    for i in range(0, len(order), mega):
        chunk = sorted(order[i : i + mega], key=lambda j: -lengths[j])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[Example], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-pad a batch (training needs no left padding: there is no generation here)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {
        "input_ids": ids.to(device),
        "labels": labels.to(device),
        "attention_mask": mask.to(device),
    }


def batch_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed token NLL over the story tokens of a batch, and how many tokens that is."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shift_logits = logits[:, :-1].float()
    shift_labels = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return loss, int((shift_labels != IGNORE).sum())


@torch.no_grad()
def evaluate(model, examples: list[Example], batch_size: int, pad_id: int, device) -> dict:
    """Validation loss (mean story-token NLL) and perplexity."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    for i in range(0, len(order), batch_size):
        batch = collate([examples[j] for j in order[i : i + batch_size]], pad_id, device)
        loss, n = batch_loss(model, batch)
        total, count = total + float(loss), count + n
    model.train(was_training)
    mean = total / max(count, 1)
    return {"val_loss": mean, "val_ppl": math.exp(min(mean, 50)), "val_tokens": count}


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def prepare_model(cfg: TrainConfig):
    """Load the base (4-bit by default), guard it and wrap it in fresh LoRA adapters."""
    spec = ModelSpec(base=cfg.base, adapter=None, quantization=cfg.quantization, device=cfg.device)
    model, tokenizer, base_id, device = load_base(spec, trainable=True)
    return add_lora(model, cfg), tokenizer, base_id, device


def add_lora(model, cfg: TrainConfig):
    """Freeze the base, enable gradient checkpointing if asked, and add LoRA adapters on every
    linear projection of the architecture (bench/gpu_qlora.py calls this on a random model)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model_type = model.config.model_type
    targets = TARGET_MODULES.get(model_type)
    if targets is None:
        raise ValueError(
            f"no LoRA target modules known for model type {model_type!r}; "
            f"known: {sorted(TARGET_MODULES)}"
        )
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    model.config.use_cache = False  # the KV cache is useless in training and fights checkpointing
    torch.manual_seed(cfg.seed)
    # GPT-2 stores its Conv1D weights transposed; once bitsandbytes has swapped them for
    # 4/8-bit Linear layers they are in the usual orientation again.
    transposed = model_type == "gpt2" and cfg.quantization not in ("nf4", "int8")
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        fan_in_fan_out=transposed,
    )
    return get_peft_model(model, lora)


def make_optimizer(model, cfg: TrainConfig, device):
    params = [p for p in model.parameters() if p.requires_grad]
    if device.type == "cuda":
        import bitsandbytes as bnb

        # Paged 8-bit AdamW: optimizer state in 8 bits, paged to CPU on memory spikes (QLoRA).
        return bnb.optim.PagedAdamW8bit(params, lr=cfg.learning_rate, weight_decay=0.0)
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)


def save_adapter(model, out: Path, cfg: TrainConfig, base_id: str, metrics: dict) -> None:
    """Adapter weights plus the metadata that lets the loader refuse a mismatch."""

    model.save_pretrained(out)
    halve_weights(out / "adapter_model.safetensors")
    meta = {
        "name": cfg.name,
        "base_model": base_id,
        "prompt_format": PROMPT_FORMAT_VERSION,
        "quantization": cfg.quantization,
        "lora_r": cfg.lora_r,
        "metrics": metrics,
    }
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n")
    write_gguf_form(out)


def halve_weights(weights: Path) -> None:
    """Store adapter weights in fp16: half the file of fp32 (the demo adapter is committed),
    LoRA weights lose nothing visible, and numpy (the GGUF export) reads them, which it cannot
    do for the bf16 that TRL leaves after QLoRA."""
    from safetensors.torch import load_file, save_file

    save_file(
        {k: v.half() if v.is_floating_point() else v for k, v in load_file(weights).items()},
        weights,
    )


def write_gguf_form(out: Path) -> None:
    """The adapter's GGUF form for the llama.cpp backend, where the architecture allows it."""
    from finetune.export_gguf import ExportError, export_gguf

    try:
        export_gguf(out)
    except ExportError as exc:  # e.g. GPT-2: the peft adapter is still complete and usable
        print(f"note: no GGUF form written ({exc})")


def _save_checkpoint(ckpt: Path, model, optimizer, state: dict) -> None:
    """Write a checkpoint to a temporary folder and swap it in: a kill mid-save loses nothing."""
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(state))
    old = ckpt.with_name(ckpt.name + ".old")
    if ckpt.exists():
        ckpt.rename(old)
    tmp.rename(ckpt)
    shutil.rmtree(old, ignore_errors=True)


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a fine-tuning run; returns the final metrics.

    Runs as one process, or as several under ``accelerate launch`` (data-parallel: each process
    holds the 4-bit base on its own GPU, takes every world-size-th micro-batch, and LoRA
    gradients are averaged across processes). Only the main process evaluates and writes files.
    """
    from accelerate import Accelerator
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    acc = Accelerator(cpu=cfg.device == "cpu" or not torch.cuda.is_available())
    if acc.num_processes > 1 and acc.device.type == "cuda":
        cfg = TrainConfig(**{**cfg.to_dict(), "device": f"cuda:{acc.local_process_index}"})
    main = acc.is_main_process
    out = Path(cfg.output_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "train_config.yaml")
    data = Path(cfg.data_dir)
    check_data_format(data)
    model, tokenizer, base_id, device = prepare_model(cfg)
    pad_id = tokenizer.pad_token_id

    def load(name: str) -> list[Example]:
        rows = read_examples(data / name)
        tokenized = (
            tokenize(tokenizer, prompt, completion, cfg.max_length)
            for r in rows
            for prompt, completion in training_pairs(r)
        )
        return [e for e in tokenized if e is not None]

    train_set, valid_set = load("train.jsonl"), load("valid.jsonl")[: cfg.max_eval_examples]
    if not train_set:
        raise TrainDataError(f"{data / 'train.jsonl'} holds no usable example")
    batches = length_grouped_batches(
        [len(e.input_ids) for e in train_set], cfg.batch_size, cfg.seed
    )
    world, rank = acc.num_processes, acc.process_index
    steps_per_epoch = max(1, len(batches) // (cfg.grad_accum * world))
    total = cfg.max_steps or max(1, int(steps_per_epoch * cfg.epochs))
    optimizer = make_optimizer(model, cfg, device)

    ckpt = out / "checkpoint"
    state = {"step": 0, "history": [], "tokens": 0, "seconds": 0.0}
    if (ckpt / "trainer_state.json").exists():
        state = json.loads((ckpt / "trainer_state.json").read_text())
        set_peft_model_state_dict(model, load_file(ckpt / "adapter_model.safetensors"))
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        if main:
            print(f"resumed from {ckpt} at step {state['step']}")
    # Under several processes this wraps the model for gradient averaging; alone it is a no-op.
    ddp_model, optimizer = acc.prepare(model, optimizer)
    history: list[dict] = state["history"]
    if not history and main:
        history.append({"step": 0, **evaluate(model, valid_set, cfg.batch_size, pad_id, device)})

    ddp_model.train()
    bar = tqdm(
        total=total,
        initial=state["step"],
        desc="train",
        unit="step",
        disable=not (progress and main),
    )
    t_start = time.perf_counter() - state["seconds"]
    while state["step"] < total:
        step = state["step"]
        lr = lr_at(step, total, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro = [
            batches[((step * cfg.grad_accum + k) * world + rank) % len(batches)]
            for k in range(cfg.grad_accum)
        ]
        # Seeded per step, so LoRA dropout after a resume matches an uninterrupted run.
        torch.manual_seed(cfg.seed * 100_003 + step * world + rank)
        sums, counts = 0.0, 0
        loaded = [collate([train_set[i] for i in b], pad_id, device) for b in micro]
        n_tokens = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in loaded)
        for k, batch in enumerate(loaded):
            # Average gradients across processes once per optimizer step, not per micro-batch.
            sync = acc.no_sync(ddp_model) if k < len(loaded) - 1 else contextlib.nullcontext()
            with sync:
                loss, n = batch_loss(ddp_model, batch)
                acc.backward(loss / max(n_tokens, 1))  # token-mean over the accumulated step
            sums, counts = sums + loss.item(), counts + n
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        state["tokens"] += world * sum(int(b["attention_mask"].sum()) for b in loaded)
        state["seconds"] = time.perf_counter() - t_start
        record = {
            "step": state["step"],
            "train_loss": sums / max(counts, 1),
            "lr": lr,
            "tokens_per_s": state["tokens"] / max(state["seconds"], 1e-9),
        }
        if main and (state["step"] % cfg.eval_steps == 0 or state["step"] == total):
            record.update(evaluate(model, valid_set, cfg.batch_size, pad_id, device))
        history.append(record)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", lr=f"{lr:.1e}")
        bar.update(1)
        if main and state["step"] % cfg.save_steps == 0 and state["step"] < total:
            _save_checkpoint(ckpt, model, optimizer, state)
        acc.wait_for_everyone()
    bar.close()
    if not main:
        return {}

    final = [h for h in history if "val_loss" in h]
    metrics = {
        "steps": state["step"],
        "train_loss_last": next(
            (h["train_loss"] for h in reversed(history) if "train_loss" in h), None
        ),
        "val_loss_initial": final[0]["val_loss"],
        "val_ppl_initial": final[0]["val_ppl"],
        "val_loss": final[-1]["val_loss"],
        "val_ppl": final[-1]["val_ppl"],
        "tokens_per_s": state["tokens"] / max(state["seconds"], 1e-9),
        "seconds": state["seconds"],
        "train_examples": len(train_set),
        "valid_examples": len(valid_set),
    }
    save_adapter(model, out, cfg, base_id, metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_curves(history, out / "loss_curve.csv")
    if (data / "report.json").exists():
        shutil.copy(data / "report.json", out / "data_report.json")
    shutil.rmtree(ckpt, ignore_errors=True)
    return metrics
