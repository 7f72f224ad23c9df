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

    learning_rate: float = 5e-4  # the tiny profile's, measured; a real model with LoRA starts around 5e-6 to 5e-5
    beta: float = 0.1  # how far the policy may move from the reference: small moves far, large stays close
    num_train_epochs: int = 5
    sft_weight: float = 1.0  # weight of the negative log-likelihood of the chosen answer beside the DPO loss
    eval_steps: int = 25
    save_steps: int = 50


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

    if cfg.method == "full":
        raise ValueError(f"{run.path} was fully fine-tuned: DPO here continues an SFT adapter, so use a LoRA or "
                         "QLoRA run (python -m helpers train --method lora)")
    ensure_adapter(cfg, run)
    model, tokenizer = load_model_and_tokenizer(cfg)
    return PeftModel.from_pretrained(model, str(run.adapter_dir), is_trainable=True), tokenizer


def chosen_rate(model, tokenizer, rows: list[dict], by_group: bool = True) -> dict:
    """How often the greedy answer to a pair's prompt is its chosen answer, and how often its rejected one (08)."""
    from .inference import reply

    model.eval()
    counts = {}
    for row in rows:
        answer = reply(model, tokenizer, row["prompt"], max_new_tokens=48)
        for key in ("all", row.get("group")) if by_group and row.get("group") else ("all",):
            c = counts.setdefault(key, {"pairs": 0, "chosen": 0, "rejected": 0})
            c["pairs"] += 1
            c["chosen"] += answer == row["chosen"][-1]["content"]
            c["rejected"] += answer == row["rejected"][-1]["content"]
    return {k: {"pairs": c["pairs"], "chosen": c["chosen"] / c["pairs"], "rejected": c["rejected"] / c["pairs"]}
            for k, c in counts.items()}


def reward_metrics(metrics: dict) -> dict:
    """The reward accuracy and margin, and the chosen / rejected log-probabilities, from a DPO evaluation."""
    keys = ("rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")
    return {k: metrics[f"eval_{k}"] for k in keys if f"eval_{k}" in metrics}


def dpo_run(cfg: RunConfig, run: RunDir, settings: DPOSettings | None = None, source: str | None = None) -> dict:
    """The whole DPO stage in one call (the command line): resumes from the stage's last complete checkpoint."""
    from trl import DPOTrainer

    from .data import read_prepared
    from .train import checkpoint_step, last_complete_checkpoint, train_with_guidance

    settings = settings or DPOSettings()
    stage = dpo_stage(run)
    splits, reports = load_preference_splits(source)
    model, tokenizer = load_policy(cfg, run)
    args = build_dpo_config(cfg, stage, settings)
    trainer = DPOTrainer(model=model, args=args, train_dataset=splits["train"], eval_dataset=splits["test"],
                         processing_class=tokenizer)
    test_pairs, sft_test = reports["test"].rows, read_prepared(run, "test")
    before = {"reward": reward_metrics(trainer.evaluate()), "chosen_rate": chosen_rate(model, tokenizer, test_pairs),
              "task": task_exact_match(model, tokenizer, sft_test)}
    resume = last_complete_checkpoint(stage)
    if resume:
        print(f"resuming from {resume} (step {checkpoint_step(resume)})")
    train_with_guidance(trainer, cfg, resume)
    after = {"reward": reward_metrics(trainer.evaluate()), "chosen_rate": chosen_rate(model, tokenizer, test_pairs),
             "task": task_exact_match(model, tokenizer, sft_test)}
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
