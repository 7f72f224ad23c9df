"""Preference tuning with TRL's DPOTrainer, on top of the SFT adapter: the DPOConfig, the policy, the measurements,
and the whole run for `python -m helpers dpo`.

The policy is the base model with 04's adapter, trainable. Passed to `DPOTrainer` without a `ref_model`, TRL adds
a frozen copy of that adapter (named "ref") and computes the reference log-probabilities with it: the reference is
the SFT model, and the base weights are held in memory once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .config import RunConfig
from .paths import DATA_DIR
from .rundir import RunDir

PREFERENCE_DATA = DATA_DIR / "preferences"


@dataclass
class DPOSettings:
    """DPO's own hyperparameters (the rest comes from the run's config: precision, batch size, max length)."""

    learning_rate: float = 2e-3  # the tiny profile's, measured over seeds (benchmarks/dpo_seeds.py)
    beta: float = 0.1  # how far the policy may move from the reference: small moves far, large stays close
    num_train_epochs: int = 5
    sft_weight: float = 1.0  # weight of the negative log-likelihood of the chosen answer beside the DPO loss
    eval_steps: int = 25
    save_steps: int = 50


def dpo_settings(cfg: RunConfig) -> DPOSettings:
    """DPO's settings for the run's profile. The tiny model's were measured over seeds; on a GPU profile the learning
    rate is the one TRL's own example script (trl/scripts/dpo.py) uses with LoRA, 5e-6, not measured in this course."""
    return DPOSettings() if cfg.profile == "tiny" else DPOSettings(learning_rate=5e-6, num_train_epochs=3)


def require_adapter_run(cfg: RunConfig, run: RunDir) -> None:
    """DPO here continues 04's LoRA adapter: a fully fine-tuned run is refused in one sentence, with what to do."""
    if cfg.method == "full":
        raise ValueError(f"{run.path} was fully fine-tuned: DPO in this course continues an SFT adapter, with the "
                         "adapter switched off as the reference; use a LoRA or QLoRA run "
                         "(python -m helpers train --method lora)")


def dpo_stage(run: RunDir) -> RunDir:
    """The DPO stage's own folder inside the run (run/dpo): its checkpoints, adapter and summary."""
    return RunDir(run.path / "dpo")


def load_preference_splits(source: str | None = None):
    """The preference pairs as `datasets.Dataset`s by split (TRL's prompt / chosen / rejected), checked first."""
    from datasets import Dataset

    from .data import read_preference_dataset

    reports = read_preference_dataset(str(source or PREFERENCE_DATA))
    return {split: Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in report.rows])
            for split, report in reports.items()}, reports


def build_dpo_config(cfg: RunConfig, stage: RunDir, settings: DPOSettings, **overrides):
    """TRL's DPOConfig from the run config and the DPO settings: the call 08 writes out."""
    from trl import DPOConfig

    from .train import precision_flags

    t, s = cfg.train, settings
    return DPOConfig(**{**dict(
        output_dir=str(stage.checkpoints_dir),
        **precision_flags(cfg),
        learning_rate=s.learning_rate,
        beta=s.beta,
        loss_type=["sigmoid", "sft"],  # DPO's loss, plus the chosen answer's NLL: keeps the answers well formed
        loss_weights=[1.0, s.sft_weight],
        num_train_epochs=s.num_train_epochs,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_length=t.max_length,
        activation_checkpointing=t.gradient_checkpointing,
        eval_strategy="steps",
        eval_steps=s.eval_steps,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=2,
        seed=t.seed,
        report_to="none",
    ), **overrides})


def load_policy(cfg: RunConfig, run: RunDir):
    """The base model with the run's SFT adapter, trainable, and the tokenizer (04's adapter is trained first if
    the run has none)."""
    from peft import PeftModel

    from .model import load_model_and_tokenizer
    from .train import ensure_adapter

    require_adapter_run(cfg, run)
    ensure_adapter(cfg, run)
    model, tokenizer = load_model_and_tokenizer(cfg)
    return PeftModel.from_pretrained(model, str(run.adapter_dir), is_trainable=True), tokenizer


def greedy_answers(model, tokenizer, rows: list[dict]) -> list[str]:
    """The model's greedy reply to each pair's prompt (08 compares them with the chosen and rejected replies)."""
    from .inference import reply

    model.eval()
    return [reply(model, tokenizer, row["prompt"], max_new_tokens=48) for row in rows]


def chosen_rate(rows: list[dict], answers: list[str]) -> dict:
    """How often the answer to a pair's prompt is its chosen reply, and how often its rejected one: over all pairs
    and per `group` (08)."""
    counts = {}
    for row, answer in zip(rows, answers, strict=True):
        for key in ("all", row["group"]) if row.get("group") else ("all",):
            c = counts.setdefault(key, {"pairs": 0, "chosen": 0, "rejected": 0})
            c["pairs"] += 1
            c["chosen"] += answer == row["chosen"][-1]["content"]
            c["rejected"] += answer == row["rejected"][-1]["content"]
    return {k: {"pairs": c["pairs"], "chosen": c["chosen"] / c["pairs"], "rejected": c["rejected"] / c["pairs"]}
            for k, c in counts.items()}


def measure_preferences(trainer, tokenizer, pairs: list[dict], sft_test: list[dict]) -> dict:
    """Everything 08 compares before and after DPO: TRL's reward metrics on the held-out pairs, the greedy answers
    and how often they are the chosen reply, and 05's exact match on the SFT test split."""
    reward = reward_metrics(trainer.evaluate())
    answers = greedy_answers(trainer.model, tokenizer, pairs)
    return {"reward": reward, "answers": answers, "chosen_rate": chosen_rate(pairs, answers),
            "task": task_exact_match(trainer.model, tokenizer, sft_test)}


def reward_metrics(metrics: dict) -> dict:
    """The reward accuracy and margin, and the chosen / rejected log-probabilities, from a DPO evaluation."""
    keys = ("rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")
    return {k: metrics[f"eval_{k}"] for k in keys if f"eval_{k}" in metrics}


def dpo_run(cfg: RunConfig, run: RunDir, settings: DPOSettings | None = None, source: str | None = None) -> dict:
    """The whole DPO stage in one call (the command line): resumes from the stage's last complete checkpoint."""
    from trl import DPOTrainer

    from .data import load_splits
    from .live import NonFiniteLossGuard
    from .train import checkpoint_step, keep_adapters_in_fp32, last_complete_checkpoint, train_with_guidance

    settings = settings or dpo_settings(cfg)
    stage = dpo_stage(run)
    splits, reports = load_preference_splits(source)
    model, tokenizer = load_policy(cfg, run)
    args = build_dpo_config(cfg, stage, settings)
    trainer = DPOTrainer(model=model, args=args, train_dataset=splits["train"], eval_dataset=splits["test"],
                         processing_class=tokenizer, callbacks=[NonFiniteLossGuard()])
    if args.fp16:
        keep_adapters_in_fp32(trainer.model)
    test_pairs, sft_test = reports["test"].rows, list(load_splits(cfg, run)["test"])
    before = measure_preferences(trainer, tokenizer, test_pairs, sft_test)
    resume = last_complete_checkpoint(stage)
    if resume:
        print(f"resuming from {resume} (step {checkpoint_step(resume)})")
    train_with_guidance(trainer, cfg, resume)
    after = measure_preferences(trainer, tokenizer, test_pairs, sft_test)
    from .plots import plot_preference_curves

    fig = plot_preference_curves(trainer.state.log_history, title=f"{run.path.name}: DPO", before=before["reward"])
    fig.savefig(stage.figure_path("dpo_curves"), dpi=120, bbox_inches="tight")
    model.save_pretrained(str(stage.adapter_dir), selected_adapters=["default"], safe_serialization=True)
    tokenizer.save_pretrained(str(stage.adapter_dir))
    summary = {"settings": asdict(settings), "before": before, "after": after, "global_step": trainer.state.global_step,
               "resumed_from_step": checkpoint_step(resume), "log_history": trainer.state.log_history}
    stage.write_json("dpo_summary.json", summary)
    return summary


def task_exact_match(model, tokenizer, rows: list[dict]) -> float:
    """Exact match on the SFT task's test split (05's metric): what DPO must not break."""
    from .data import prompt_of, reference_of
    from .inference import reply

    model.eval()
    return sum(reply(model, tokenizer, prompt_of(r), max_new_tokens=48) == reference_of(r) for r in rows) / len(rows)


def dpo_lesson_holds(before: dict, after: dict) -> list[str]:
    """What 08 asserts about a DPO run on the tiny profile (empty when it all holds), with the margins measured over
    seeds by benchmarks/dpo_seeds.py: the held-out reward accuracy and margin rose, the greedy answer took the chosen
    reply where no time is given without losing the time where one is, and 05's exact match did not collapse."""
    problems = []
    acc, margin = after["reward"]["rewards/accuracies"], after["reward"]["rewards/margins"]
    no_time, time_given = after["chosen_rate"]["no time given"]["chosen"], after["chosen_rate"]["time given"]["chosen"]
    if acc < 0.8:
        problems.append(f"held-out reward accuracy {acc:.2f} < 0.8")
    if margin < 1.5:
        problems.append(f"held-out reward margin {margin:.2f} < 1.5")
    if no_time < before["chosen_rate"]["no time given"]["chosen"] + 0.5:
        problems.append(f"chosen answers where no time is given rose only to {no_time:.2f}")
    if time_given < 0.8:
        problems.append(f"chosen answers where a time is given fell to {time_given:.2f}")
    if after["task"] < before["task"] - 0.15:
        problems.append(f"05's exact match fell from {before['task']:.2f} to {after['task']:.2f}")
    return problems


def preference_table(**measured: dict):
    """`measure_preferences` results side by side (before=..., after=...), one row per number (08)."""
    import pandas as pd

    rows = {"reward accuracy (held-out pairs)": lambda m: m["reward"]["rewards/accuracies"],
            "reward margin": lambda m: m["reward"]["rewards/margins"],
            "log-prob of chosen": lambda m: m["reward"]["logps/chosen"],
            "log-prob of rejected": lambda m: m["reward"]["logps/rejected"],
            "answer = chosen, no time given": lambda m: m["chosen_rate"]["no time given"]["chosen"],
            "answer = chosen, time given": lambda m: m["chosen_rate"]["time given"]["chosen"],
            "05's exact match (SFT test split)": lambda m: m["task"]}
    return pd.DataFrame({name: {row: get(m) for row, get in rows.items()} for name, m in measured.items()}).round(2)
