"""Supervised fine-tuning with TRL's SFTTrainer: the SFTConfig, the trainer, and the whole run for the command
line. Introduced in 04_training_sft.
"""

from __future__ import annotations

import json
import math
import re
import traceback
from contextlib import contextmanager
from pathlib import Path

from .config import RunConfig, TrainConfig
from .data import has_generation_markers, load_splits, to_sft_format
from .machine import process_state
from .rundir import RunDir
from .tracking import prepare_tracker


def precision_flags(cfg: RunConfig) -> dict:
    """fp16 / bf16 / CPU flags for SFTConfig, from the compute dtype the profile chose (04 writes them out).

    TRL defaults to bf16=True, which fails on a CPU and is only emulated (slowly) on a T4, so all three are always
    set explicitly. The dtype itself was chosen from the GPU's compute capability (see helpers.machine).
    """
    import torch

    check_precision(cfg)
    gpu = torch.cuda.is_available()
    return {"fp16": gpu and cfg.model.dtype == "float16", "bf16": gpu and cfg.model.dtype == "bfloat16",
            "use_cpu": not gpu}


def check_precision(cfg: RunConfig) -> None:
    """Refuse bf16 on a GPU without native bf16 (a T4), with the fix: torch's is_bf16_supported() says True there."""
    import torch

    if cfg.model.dtype == "bfloat16" and torch.cuda.is_available() and torch.cuda.get_device_capability(0) < (8, 0):
        raise ValueError("cfg.model.dtype = 'bfloat16' but this GPU (compute capability < 8.0, e.g. a T4) has no "
                         "native bf16: use 'float16' (the t4 profile's choice)")


def build_sft_config(cfg: RunConfig, run: RunDir, tokenizer, **overrides):
    """TRL's SFTConfig from the run config: the call 04 writes out (tests/test_one_truth.py holds them together).

    `overrides` replace fields for trainers built to measure rather than to train (no evaluation, no saving).
    """
    from trl import SFTConfig

    t = cfg.train
    early = early_stopping_on(t, overrides.get("eval_strategy", "steps"))
    return SFTConfig(**{**dict(
        output_dir=str(run.checkpoints_dir),
        **precision_flags(cfg),
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a fraction of the total steps
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_length=t.max_length,
        packing=t.packing,
        **loss_mask_flags(t, tokenizer),
        activation_checkpointing=t.gradient_checkpointing,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        logging_steps=t.logging_steps,
        logging_nan_inf_filter=False,  # a NaN loss must reach the logs (and NonFiniteLossGuard), not be averaged away
        save_strategy="steps",
        save_steps=t.eval_steps if early else t.save_steps,  # early stopping can only restore a step it saved
        save_total_limit=2,  # with early stopping the best checkpoint is kept as well: the Trainer protects it
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        seed=t.seed,
        run_name=cfg.run_name,
        report_to=t.report_to,  # `prepare_tracker` points it at the run's logs/ folder
    ), **overrides})


def early_stopping_on(t: TrainConfig, eval_strategy) -> bool:
    """Whether early stopping applies: asked for, and there are evaluations to stop on (a trainer built only to
    measure memory or speed turns them off)."""
    return t.early_stopping_patience > 0 and eval_strategy != "no"  # an IntervalStrategy compares equal to its str


def loss_mask_flags(t: TrainConfig, tokenizer) -> dict:
    """Which tokens carry the loss: the answers only (t.assistant_only_loss), or every token, the prompt included.

    With {% generation %} markers the data stays `messages` and assistant_only_loss masks all but the assistant
    turns; without them (or with weight-0 turns) `to_sft_format` makes one prompt/completion row per trained turn and
    completion_only_loss masks the rest (on `messages` data it has nothing to mask, so it is harmless there; on
    prompt/completion rows with markers both masks apply, which leaves the completion's assistant tokens).
    """
    return {"assistant_only_loss": t.assistant_only_loss and has_generation_markers(tokenizer),
            "completion_only_loss": t.assistant_only_loss}


def make_trainer(cfg: RunConfig, run: RunDir, model, tokenizer, splits, callbacks: list | None = None,
                 **overrides):
    """An SFTTrainer on the run's train split, evaluating on its validation split: 04's SFTTrainer cell.

    It always stops at a NaN/inf loss (NonFiniteLossGuard); with cfg.train.early_stopping_patience above 0 it also
    stops once the eval loss has not improved for that many evaluations. `callbacks` adds more (LiveLossPlot).
    """
    from trl import SFTTrainer

    if overrides.get("report_to", cfg.train.report_to) != "none":
        prepare_tracker(cfg, run)  # before SFTConfig: building it already imports the tracker, which reads its folder
    args = build_sft_config(cfg, run, tokenizer, **overrides)
    # TRL prepares each split in four passes, each with a progress bar: eight bars that, on the shipped 432 rows,
    # flash by in under a second. Show them only for large datasets, where preparing takes long enough to watch.
    quiet = len(splits["train"]) < 5000
    with _datasets_progress_bars(enabled=not quiet):
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=to_sft_format(splits["train"], tokenizer, cfg.train.assistant_only_loss),
            eval_dataset=to_sft_format(splits["validation"], tokenizer, cfg.train.assistant_only_loss),
            processing_class=tokenizer,
            callbacks=course_callbacks(cfg, args) + list(callbacks or []),
        )
    if trainer.args.fp16:
        keep_adapters_in_fp32(trainer.model)
    return trainer


def course_callbacks(cfg: RunConfig, args) -> list:
    """The course's callbacks: NonFiniteLossGuard always, EarlyStoppingCallback when early stopping applies."""
    from transformers import EarlyStoppingCallback

    from .live import NonFiniteLossGuard

    callbacks = [NonFiniteLossGuard()]
    if early_stopping_on(cfg.train, args.eval_strategy):
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    return callbacks


@contextmanager
def _datasets_progress_bars(enabled: bool):
    """datasets' progress bars on or off inside the block, restored afterwards."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was else datasets.disable_progress_bars)()


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


class TrainingError(RuntimeError):
    """Training failed in a way the message explains, with the settings to change (shown without a traceback)."""


def train_with_guidance(trainer, cfg: RunConfig, resume: str | Path | None = None):
    """`trainer.train(resume_from_checkpoint=...)` inside `explain_training_failures`: 04's training cell."""
    with explain_training_failures(trainer, cfg):
        return trainer.train(resume_from_checkpoint=str(resume) if resume else None)


@contextmanager
def explain_training_failures(trainer, cfg: RunConfig):
    """Around `trainer.train()`: a GPU out-of-memory error, or a NaN/inf loss that NonFiniteLossGuard stopped, ends
    in a TrainingError that says what to change, with this run's numbers, instead of a library traceback.

    The out-of-memory traceback's frames hold the failed step's GPU tensors; they are cleared before the cache is
    emptied, so that the memory really goes back to the GPU.
    """
    import torch

    from .live import NonFiniteLossGuard

    try:
        yield
    except RuntimeError as e:  # torch.OutOfMemoryError (torch.cuda.OutOfMemoryError) is a RuntimeError
        if not (isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()):
            raise
        message = out_of_memory_message(cfg, Path(trainer.args.output_dir), str(e))
        traceback.clear_frames(e.__traceback__)
        release_gpu_memory()
        raise TrainingError(message) from None
    guard = next((c for c in trainer.callback_handler.callbacks if isinstance(c, NonFiniteLossGuard)), None)
    if guard is not None and guard.bad_step is not None:
        raise TrainingError(non_finite_message(cfg, trainer.args, guard)) from None


def release_gpu_memory() -> None:
    """Hand the memory PyTorch cached for the failed step back to the GPU."""
    import gc

    import torch

    gc.collect()  # tensors held only by reference cycles (a traceback's frames) go now, not at some later point
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def memory_fixes(cfg: RunConfig) -> list[tuple[str, str]]:
    """Settings that lower training memory, as (assignment, what it costs) with this run's numbers; those already in
    place are left out. Ordered from no cost in quality to some."""
    t, fixes = cfg.train, []
    if t.per_device_train_batch_size > 1:
        b, a = t.per_device_train_batch_size // 2, t.gradient_accumulation_steps * 2
        was = t.per_device_train_batch_size * t.gradient_accumulation_steps
        fixes += [(f"cfg.train.per_device_train_batch_size = {b}", "half the activation memory per step"),
                  (f"cfg.train.gradient_accumulation_steps = {a}", f"with it: {b} x {a} = {b * a} examples per "
                   f"optimizer step, {'as before' if b * a == was else f'was {was}'}; slightly slower")]
    if not t.gradient_checkpointing:
        fixes.append(("cfg.train.gradient_checkpointing = True",
                       "activations recomputed in the backward pass: far less memory, about 30% slower"))
    if cfg.model.quantization != "4bit":
        fixes.append(('cfg.model.quantization = "4bit"',
                      "QLoRA: frozen weights in 4 bits, a quarter of fp16 (needs a CUDA GPU and bitsandbytes)"))
    if t.max_length // 2 >= 16:
        fixes.append((f"cfg.train.max_length = {t.max_length // 2}",
                       "longer examples are cut: see how many in 01_dataset_prep's token-length plot"))
    return fixes


def out_of_memory_message(cfg: RunConfig, checkpoints: Path, error: str) -> str:
    """What to change after a GPU out-of-memory error, with this run's numbers, and where to change it."""
    fixes = memory_fixes(cfg)
    width = max((len(line) for line, _ in fixes), default=0)
    t = cfg.train
    resume = newest_checkpoint(checkpoints)
    return "\n".join([
        f"The GPU ran out of memory while training ({error.splitlines()[0] if error else 'out of memory'}).",
        f"This run trains {t.per_device_train_batch_size} examples of up to {t.max_length} tokens per step on "
        f"{cfg.model.model_id}. Apply these in order until it fits:" if fixes else
        "Every usual memory saving is already on: choose a smaller model (cfg.model.model_id) or a larger GPU.",
        "", *(f"    {line:<{width}}  # {why}" for line, why in fixes), "",
        "Where: in 04_training_sft, in a cell after the hyperparameter panel, then save_config(cfg, run); restart "
        "the runtime (the old model still holds its GPU memory) and run the notebook again. For "
        f"`python -m helpers train`, edit {checkpoints.parent / 'config.json'}.",
        f"The run can resume from its last checkpoint, {resume.name} (the command line, and 04's "
        "training cell through last_complete_checkpoint(run), pick it up by themselves)." if resume else
        "No checkpoint was saved yet: the run starts again from step 0.",
    ])


def non_finite_message(cfg: RunConfig, args, guard) -> str:
    """Why the loss became NaN or infinite, for this run's precision and learning rate, and the sound checkpoint."""
    values = ", ".join(f"{k} = {v}" for k, v in guard.bad_values.items())
    kind = "NaN (not a number)" if any(math.isnan(v) for v in guard.bad_values.values()) else "infinite"
    lr = cfg.train.learning_rate
    causes = [f"- The learning rate, {lr:g}, may be too high: try cfg.train.learning_rate = {lr / 10:g} (10x lower)."]
    if args.fp16:
        causes.insert(0, "- fp16 overflow: this run computes in fp16, whose largest number is 65504; a larger "
                         "activation or gradient becomes inf, then NaN. On a T4 (no bf16) lower the learning rate "
                         "(the LoRA weights already stay in fp32); on an Ampere or newer GPU use bf16, which has "
                         "fp32's range: cfg.model.dtype = \"bfloat16\".")
    else:
        causes.append(f"- Not an fp16 overflow: this run computes in {'bf16' if args.bf16 else 'fp32'}. If a lower "
                      "learning rate does not help, look for a broken example in the data or a damaged model.")
    what = "the loss" if any("loss" in k for k in guard.bad_values) else "the gradient"
    return "\n".join([f"Training stopped at step {guard.bad_step}: {what} became {kind}: {values}. Every weight "
                      "the optimizer updates from there on turns NaN too. Likely causes, for this run:",
                      *causes, resume_advice(Path(args.output_dir), guard)])


def resume_advice(checkpoints: Path, guard) -> str:
    """Which checkpoint predates the bad step, and why a lower learning rate needs a fresh start rather than it."""
    sound = newest_checkpoint(checkpoints, up_to=guard.last_good_step)
    if sound is None:
        return f"No checkpoint was saved before step {guard.bad_step}: start the run again after the change."
    return (f"The losses were finite up to step {guard.last_good_step}, so {sound.name} is sound (a later one may "
            "hold NaN weights). Resuming from it restores its optimizer and learning-rate schedule as well: to "
            f"train with a lower learning rate, start afresh (delete {checkpoints}).")


def numbered_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """The Trainer's `checkpoint-N` folders in folder, as (N, path), oldest first; [] if there is no folder."""
    found = [(int(m[1]), p) for p in (folder.glob("checkpoint-*") if folder.is_dir() else [])
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()]
    return sorted(found)


def newest_checkpoint(folder: Path, up_to: int | None = None) -> Path | None:
    """The newest checkpoint in folder with its trainer_state.json, at or before step `up_to`; nothing is moved."""
    found = [(step, p) for step, p in numbered_checkpoints(folder)
             if (p / "trainer_state.json").exists() and (up_to is None or step <= up_to)]
    return max(found)[1] if found else None


def last_complete_checkpoint(run: RunDir) -> Path | None:
    """The newest checkpoint that was written completely, or None; half-written ones are set aside, never loaded.

    The Trainer writes a checkpoint's weights, optimizer and RNG state first and `trainer_state.json` last, so a
    checkpoint is complete when that file is there, parses, and names the checkpoint's own step. A folder a crash
    or a Colab disconnect left without it is renamed `incomplete-checkpoint-N` (kept for a look, not reused).
    """
    complete = []
    for step, path in numbered_checkpoints(run.checkpoints_dir):
        try:
            state = json.loads((path / "trainer_state.json").read_text())
            ok = state.get("global_step") == step and (any(path.glob("adapter_model.safetensors"))
                                                       or any(path.glob("model*.safetensors")))
        except (OSError, ValueError):
            ok = False
        if ok:
            complete.append((step, path))
        else:
            path.rename(path.with_name(f"incomplete-{path.name}"))
    return max(complete)[1] if complete else None


def set_aside_checkpoints(run: RunDir) -> Path | None:
    """Move a run's checkpoints to `checkpoints-old-N/` so that training starts afresh (after the settings changed:
    resuming would continue the old run). Returns where they went, or None if there were none."""
    folder = run.checkpoints_dir
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    n = 1
    while folder.with_name(f"checkpoints-old-{n}").exists():
        n += 1
    return folder.rename(folder.with_name(f"checkpoints-old-{n}"))


def summarize_training(trainer, eval_before: dict, eval_after: dict, resumed_from: Path | None = None) -> dict:
    """What train_summary.json holds: steps, losses before/after, early stopping, and the log history for plots."""
    state = trainer.state
    history = state.log_history
    train_losses = [h["loss"] for h in history if "loss" in h]
    best = trainer.args.load_best_model_at_end  # off: no best checkpoint is tracked, the last weights are kept
    return {
        "global_step": state.global_step,
        "stopped_early": state.global_step < state.max_steps,
        "best_eval_loss": state.best_metric if best else None,
        "best_checkpoint_step": checkpoint_step(state.best_model_checkpoint) if best else None,
        "resumed_from_step": checkpoint_step(resumed_from),
        "eval_loss_before": eval_before["eval_loss"],
        "eval_loss_after": eval_after["eval_loss"],
        "perplexity_before": math.exp(eval_before["eval_loss"]),
        "perplexity_after": math.exp(eval_after["eval_loss"]),
        "final_train_loss": train_losses[-1] if train_losses else None,
        "final_eval_loss": eval_after["eval_loss"],
        "train_runtime_s": next((h["train_runtime"] for h in history if "train_runtime" in h), None),
        "log_history": history,
    }


def checkpoint_step(path: str | Path | None) -> int | None:
    """The step of a checkpoint folder, `checkpoint-40` -> 40; None for None."""
    return int(Path(path).name.split("-")[-1]) if path else None


def save_training(trainer, run: RunDir, summary: dict, cfg: RunConfig | None = None) -> None:
    """The adapter, or after full fine-tuning the whole model (safetensors), the tokenizer beside it,
    train_summary.json and the loss-curve PNG."""
    from .plots import plot_loss_curves

    # A PeftModel saves only the adapter weights, as safetensors; a fully fine-tuned model saves all of them. The
    # tokenizer (and its chat template) goes beside them. (trainer.save_model would also pickle the training
    # arguments: not needed, not safetensors.)
    folder = run.finetuned_dir(cfg) if cfg is not None else run.adapter_dir
    trainer.model.save_pretrained(str(folder), safe_serialization=True)
    trainer.processing_class.save_pretrained(str(folder))
    run.write_json("train_summary.json", summary)
    fig = plot_loss_curves(summary["log_history"], title=f"{run.path.name}: loss",
                           eval_loss_before=summary["eval_loss_before"])
    fig.savefig(run.figure_path("loss_curves"), dpi=120, bbox_inches="tight")


def train_run(cfg: RunConfig, run: RunDir) -> dict:
    """The whole of 04_training_sft in one call (the command line and standalone notebooks use it).

    If the run directory holds a complete checkpoint (a run cut off by a crash, a SIGKILL or a Colab disconnect),
    training resumes from it, with its optimizer, scheduler and RNG state, and ends at the same step count.
    """
    from .config import check_method, method_name
    from .lora import prepare_for_training
    from .model import load_model_and_tokenizer

    check_method(cfg)
    state = process_state()  # one process, or one of several under `accelerate launch`
    with state.main_process_first():  # the main process prepares the data and tidies checkpoints; the rest wait
        splits = load_splits(cfg, run)
        resume = last_complete_checkpoint(run)
    model, tokenizer = load_model_and_tokenizer(cfg)
    model = prepare_for_training(model, cfg)
    trainer = make_trainer(cfg, run, model, tokenizer, splits)
    eval_before = trainer.evaluate()  # the base model's loss (LoRA starts as a no-op; a resume loads its weights later)
    if resume and state.is_main_process:
        print(f"resuming from {resume} (step {checkpoint_step(resume)})")
    train_with_guidance(trainer, cfg, resume)
    eval_after = trainer.evaluate()
    summary = summarize_training(trainer, eval_before, eval_after, resume)
    summary["num_processes"] = state.num_processes
    summary["method"] = method_name(cfg)
    if state.is_main_process:
        save_training(trainer, run, summary, cfg)
    state.wait_for_everyone()
    return summary


def ensure_adapter(cfg: RunConfig, run: RunDir) -> None:
    """Train now if the run has no adapter (or, for full fine-tuning, no model) yet: a notebook opened on its own
    in a fresh runtime."""
    if run.has_finetuned(cfg):
        return
    what = "adapter" if cfg.method != "full" else "fine-tuned model"
    print(f"No trained {what} in {run.finetuned_dir(cfg)}: training now with this run's config "
          "(what 04_training_sft does).")
    train_run(cfg, run)


def collect_run_histories(runs_root: Path) -> dict[str, list[dict]]:
    """Each run's log history by run name, for `plots.plot_run_comparison`: from runs_root/*/train_summary.json, or,
    for a run that has none (cut off before the end), from its TensorBoard logs (report_to="tensorboard")."""
    from .tracking import read_tensorboard_history, tracker_dir  # noqa: needs tensorboard only when used

    histories = {}
    for folder in sorted(p for p in Path(runs_root).iterdir() if p.is_dir()) if Path(runs_root).is_dir() else []:
        path, board = folder / "train_summary.json", tracker_dir(RunDir(folder), "tensorboard")
        try:
            if path.exists():
                histories[folder.name] = json.loads(path.read_text(encoding="utf-8"))["log_history"]
            elif any(board.glob("events.out.tfevents.*")):
                histories[folder.name] = read_tensorboard_history(board)
        except (OSError, ValueError, KeyError, TypeError) as e:  # half-written, hand-edited, or another format
            print(f"skipped {folder.name}: {path.name} could not be read ({type(e).__name__}: {e})")
    return histories
