"""Supervised fine-tuning on two stacks, side by side: this project's loop (``finetune/train.py``)
against TRL's ``SFTTrainer``, on the same data, model, LoRA and schedule.

    python -m bench.sft_stacks [--data runs/data_wp500_v2] [--steps 10] [--threads 2]

Both start from the same NF4 base with the same fresh, seeded LoRA (``finetune.train``'s
``prepare_model``), read the same (prompt, completion) pairs with the loss on the completion
only (TRL: a prompt-completion dataset, ``completion_only_loss``), batch by length, and take the
same optimizer steps: batch x grad_accum, AdamW, gradient norm clipped at 1, linear warm-up then
cosine decay to 10% of the peak (TRL: ``cosine_with_min_lr``; its warm-up starts from 0, ours
from one step's worth), with gradient checkpointing as the config says (TRL's default is on).
Both adapters are then scored by the same function on the same validation examples.

TRL casts the LoRA weights of a quantized base to bf16 (the QLoRA paper's recommendation); ours
keeps them in fp32. So TRL runs twice: as it comes, and with the LoRA weights cast back to fp32
(the difference of the loops alone). Each run is its own process, so its peak resident memory
is its own. Reports tokens/s (non-padding tokens trained per second), peak RSS, the final
validation loss, and the ratios to ours.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

from bench.common import table
from eval.resources import PeakRSS
from finetune.build import read_examples, training_pairs
from finetune.config import TrainConfig
from finetune.train import evaluate, prepare_model, tokenize, train


def validation_set(cfg: TrainConfig, tokenizer) -> list:
    """The validation examples ``train`` scores (the same tokenization and cap)."""
    rows = read_examples(Path(cfg.data_dir) / "valid.jsonl")
    pairs = (tokenize(tokenizer, p, c, cfg.max_length) for r in rows for p, c in training_pairs(r))
    return [e for e in pairs if e is not None][: cfg.max_eval_examples]


def run_ours(cfg: TrainConfig) -> dict:
    with PeakRSS() as mem:
        metrics = train(cfg, progress=False)
    return {
        "stack": "ours (finetune/train.py)",
        "tokens_per_s": metrics["tokens_per_s"],
        "peak_rss_mib": mem.peak_mib,
        "val_loss": metrics["val_loss"],
        "val_loss_initial": metrics["val_loss_initial"],
        "steps": metrics["steps"],
    }


def run_trl(cfg: TrainConfig, fp32_lora: bool = False) -> dict:
    """TRL's SFTTrainer on the same model, LoRA, pairs and schedule (``fp32_lora``: with the
    LoRA weights cast back from TRL's bf16 to fp32, as ours keeps them)."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with PeakRSS() as mem:
        model, tokenizer, _, device = prepare_model(cfg)
        valid = validation_set(cfg, tokenizer)
        before = evaluate(model, valid, cfg.batch_size, tokenizer.pad_token_id, device)
        rows = read_examples(Path(cfg.data_dir) / "train.jsonl")
        pairs = [{"prompt": p, "completion": c} for r in rows for p, c in training_pairs(r)]
        args = SFTConfig(
            output_dir=str(Path(cfg.output_dir) / "trl"),
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type="cosine_with_min_lr",
            lr_scheduler_kwargs={"min_lr_rate": 0.1},
            warmup_steps=cfg.warmup_steps,
            max_steps=cfg.max_steps,
            max_length=cfg.max_length,
            gradient_checkpointing=cfg.gradient_checkpointing,
            completion_only_loss=True,
            train_sampling_strategy="group_by_length",
            optim="adamw_torch",
            weight_decay=0.0,
            max_grad_norm=1.0,
            logging_steps=1,
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            seed=cfg.seed,
            use_cpu=device.type == "cpu",
            bf16=False,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(pairs),
            processing_class=tokenizer,
        )
        if fp32_lora:
            for param in model.parameters():
                if param.requires_grad:
                    param.data = param.data.float()
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        after = evaluate(model, valid, cfg.batch_size, tokenizer.pad_token_id, device)
    tokens = max(h.get("num_tokens", 0) for h in trainer.state.log_history)
    return {
        "stack": "TRL SFTTrainer" + (", fp32 LoRA" if fp32_lora else " (bf16 LoRA)"),
        "tokens_per_s": tokens / seconds,
        "peak_rss_mib": mem.peak_mib,
        "val_loss": after["val_loss"],
        "val_loss_initial": before["val_loss"],
        "steps": trainer.state.global_step,
    }


def _in_own_process(stack, cfg: TrainConfig) -> dict:
    """One stack in a fresh process (its peak memory is its own), in its own output folder."""
    import multiprocessing

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(**{**cfg.to_dict(), "output_dir": out})
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(stack, (cfg,))


def measure(cfg: TrainConfig) -> list[dict]:
    """Ours, TRL as it comes and TRL with fp32 LoRA weights on ``cfg``, then the ratios."""
    stacks = (run_ours, run_trl, functools.partial(run_trl, fp32_lora=True))
    rows = [_in_own_process(stack, cfg) for stack in stacks]
    ours = rows[0]
    for trl in rows[1:3]:
        rows.append(
            {
                "stack": f"ratio {trl['stack']} / ours",
                **{k: trl[k] / ours[k] for k in ("tokens_per_s", "peak_rss_mib", "val_loss")},
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("runs/data_wp500_v2"))
    parser.add_argument("--base", default="embedded")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--config", type=Path, default=Path("finetune/demo.yaml"), help="training settings"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if not (args.data / "train.jsonl").exists():
        raise SystemExit(f"{args.data}/train.jsonl not found: run python -m finetune preprocess")
    # the config's settings (finetune/demo.yaml's by default), for a few steps
    overrides = {"data_dir": str(args.data), "base": args.base, "max_steps": args.steps}
    overrides |= {"eval_steps": 10_000, "save_steps": 10_000, "threads": args.threads}
    cfg = TrainConfig.load(args.config, overrides)
    rows = measure(cfg)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{args.steps} steps of {args.config}'s settings on {args.base}, {args.data}:\n")
    cols = ["stack", "tokens_per_s", "peak_rss_mib", "val_loss_initial", "val_loss", "steps"]
    print(table(rows, cols))


if __name__ == "__main__":
    main()
