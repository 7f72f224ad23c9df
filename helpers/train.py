"""Supervised fine-tuning with TRL's SFTTrainer: the SFTConfig, the trainer, and the whole run for the command
line. Introduced in 04_training_sft.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from .config import RunConfig
from .data import has_generation_markers, load_splits, to_sft_format
from .machine import process_state
from .rundir import RunDir


def precision_flags(cfg: RunConfig) -> dict:
    """fp16 / bf16 / CPU flags for SFTConfig, from the compute dtype the profile chose.

    TRL defaults to bf16=True, which fails on a CPU and is only emulated (slowly) on a T4, so both flags are always
    set explicitly. The dtype itself was chosen from the GPU's compute capability (see helpers.machine).
    """
    import torch

    if not torch.cuda.is_available():
        return {"use_cpu": True, "bf16": False, "fp16": False}
    dtype = cfg.model.dtype
    if dtype == "bfloat16" and torch.cuda.get_device_capability(0) < (8, 0):
        raise ValueError("cfg.model.dtype = 'bfloat16' but this GPU (compute capability < 8.0, e.g. a T4) has no "
                         "native bf16: use 'float16' (the t4 profile's choice)")
    return {"bf16": dtype == "bfloat16", "fp16": dtype == "float16"}


def build_sft_config(cfg: RunConfig, run: RunDir, tokenizer, **overrides):
    """TRL's SFTConfig from the run config (the one place it is built)."""
    from trl import SFTConfig

    t = cfg.train
    args = dict(
        output_dir=str(run.checkpoints_dir),
        learning_rate=t.learning_rate,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_length=t.max_length,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a fraction of the total steps
        lr_scheduler_type=t.lr_scheduler_type,
        activation_checkpointing=t.gradient_checkpointing,
        packing=t.packing,
        # loss on the answer only: assistant turns where the template marks them, else the completion
        assistant_only_loss=has_generation_markers(tokenizer),
        logging_steps=t.logging_steps,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=2,
        seed=t.seed,
        report_to="none",
        **precision_flags(cfg),
    )
    args.update(overrides)
    return SFTConfig(**args)


def make_trainer(cfg: RunConfig, run: RunDir, model, tokenizer, splits, **overrides):
    """An SFTTrainer on the run's train split, evaluating on its validation split."""
    from trl import SFTTrainer

    trainer = SFTTrainer(
        model=model,
        args=build_sft_config(cfg, run, tokenizer, **overrides),
        train_dataset=to_sft_format(splits["train"], tokenizer),
        eval_dataset=to_sft_format(splits["validation"], tokenizer),
        processing_class=tokenizer,
    )
    if trainer.args.fp16:
        keep_adapters_in_fp32(trainer.model)
    return trainer


def keep_adapters_in_fp32(model) -> None:
    """Trainable weights in fp32 for fp16 mixed precision (the t4 profile).

    TRL 1.16 casts the LoRA weights of a quantized model to bf16 (the QLoRA paper's choice). Under fp16 mixed
    precision the gradient scaler cannot unscale bf16 gradients, so the first optimizer step fails ("not
    implemented for 'BFloat16'"), and a T4 has no native bf16 anyway. fp32 adapter weights with fp16 compute is the
    standard mixed-precision set-up; the adapters are small, so the extra memory is a few MB.
    """
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def last_complete_checkpoint(run: RunDir) -> Path | None:
    """The newest checkpoint that was written completely, or None; half-written ones are set aside, never loaded.

    The Trainer writes a checkpoint's weights, optimizer and RNG state first and `trainer_state.json` last, so a
    checkpoint is complete when that file is there, parses, and names the checkpoint's own step. A folder a crash
    or a Colab disconnect left without it is renamed `incomplete-checkpoint-N` (kept for a look, not reused).
    """
    folder = run.checkpoints_dir
    complete = []
    for path in sorted(folder.glob("checkpoint-*")) if folder.is_dir() else []:
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if not match or not path.is_dir():
            continue
        try:
            state = json.loads((path / "trainer_state.json").read_text())
            ok = state.get("global_step") == int(match[1]) and any(path.glob("adapter_model.safetensors"))
        except (OSError, ValueError):
            ok = False
        if ok:
            complete.append((int(match[1]), path))
        else:
            path.rename(path.with_name(f"incomplete-{path.name}"))
    return max(complete)[1] if complete else None


def summarize_training(trainer, eval_before: dict, eval_after: dict, resumed_from: Path | None = None) -> dict:
    """What train_summary.json holds: steps, losses before/after, and the full log history for the plots."""
    history = trainer.state.log_history
    train_losses = [h["loss"] for h in history if "loss" in h]
    return {
        "global_step": trainer.state.global_step,
        "resumed_from_step": int(resumed_from.name.split("-")[-1]) if resumed_from else None,
        "eval_loss_before": eval_before["eval_loss"],
        "eval_loss_after": eval_after["eval_loss"],
        "perplexity_before": math.exp(eval_before["eval_loss"]),
        "perplexity_after": math.exp(eval_after["eval_loss"]),
        "final_train_loss": train_losses[-1] if train_losses else None,
        "final_eval_loss": eval_after["eval_loss"],
        "train_runtime_s": next((h["train_runtime"] for h in history if "train_runtime" in h), None),
        "log_history": history,
    }


def save_training(trainer, run: RunDir, summary: dict) -> None:
    """The adapter (safetensors), the tokenizer beside it, train_summary.json and the loss-curve PNG."""
    from .plots import plot_loss_curves

    # A PeftModel saves only the adapter weights, as safetensors; the tokenizer (and its chat template) goes
    # beside them. (trainer.save_model would also pickle the training arguments: not needed, not safetensors.)
    trainer.model.save_pretrained(str(run.adapter_dir), safe_serialization=True)
    trainer.processing_class.save_pretrained(str(run.adapter_dir))
    run.write_json("train_summary.json", summary)
    fig = plot_loss_curves(summary["log_history"], title=f"{run.path.name}: loss",
                           eval_loss_before=summary["eval_loss_before"])
    fig.savefig(run.figure_path("loss_curves"), dpi=120, bbox_inches="tight")


def train_run(cfg: RunConfig, run: RunDir) -> dict:
    """The whole of 04_training_sft in one call (the command line and standalone notebooks use it).

    If the run directory holds a complete checkpoint (a run cut off by a crash, a SIGKILL or a Colab disconnect),
    training resumes from it, with its optimizer, scheduler and RNG state, and ends at the same step count.
    """
    from .lora import apply_lora
    from .model import load_model_and_tokenizer

    state = process_state()  # one process, or one of several under `accelerate launch`
    with state.main_process_first():  # the main process prepares the data and tidies checkpoints; the rest wait
        splits = load_splits(cfg, run)
        resume = last_complete_checkpoint(run)
    model, tokenizer = load_model_and_tokenizer(cfg)
    model = apply_lora(model, cfg)
    trainer = make_trainer(cfg, run, model, tokenizer, splits)
    eval_before = trainer.evaluate()  # the base model's loss: LoRA starts as a no-op, even on a resumed run
    if resume and state.is_main_process:
        print(f"resuming from {resume} (step {resume.name.split('-')[-1]})")
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    eval_after = trainer.evaluate()
    summary = summarize_training(trainer, eval_before, eval_after, resume)
    summary["num_processes"] = state.num_processes
    if state.is_main_process:
        save_training(trainer, run, summary)
    state.wait_for_everyone()
    return summary


def ensure_adapter(cfg: RunConfig, run: RunDir) -> None:
    """Train now if the run has no adapter yet (a notebook opened on its own in a fresh runtime)."""
    if (run.adapter_dir / "adapter_model.safetensors").exists():
        return
    print(f"No trained adapter in {run.adapter_dir}: training one now with this run's config "
          "(what 04_training_sft does).")
    train_run(cfg, run)
