"""Full fine-tuning vs LoRA vs QLoRA, measured on the same data and steps: what trains, what it costs in memory
and time, how well it learns the task, and how much of what the base model knew it forgets. Introduced in
07_methods_compared.

Forgetting is measured on text the base model knew: paragraphs of its own pretraining corpus (`data/corpus.txt`),
which fine-tuning never shows it. The loss per token on them before and after fine-tuning says how much of that
knowledge survived.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from .config import RunConfig, method_name
from .paths import DATA_DIR
from .rundir import RunDir


def knowledge_texts(every: int = 25) -> list[str]:
    """Every `every`-th paragraph of the tiny model's pretraining corpus (63 of them): the text whose loss shows
    forgetting. Fixed, so every run and every machine measures the same paragraphs."""
    paragraphs = [p.strip() for p in (DATA_DIR / "corpus.txt").read_text(encoding="utf-8").split("\n\n") if p.strip()]
    return paragraphs[::every]


def text_loss(model, tokenizer, texts: list[str], batch_size: int = 16, max_length: int = 128) -> float:
    """The mean loss per token of `texts` (each ended by EOS, as in pretraining), in evaluation mode, no gradients."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        for i in range(0, len(texts), batch_size):
            batch = [t + tokenizer.eos_token for t in texts[i:i + batch_size]]
            enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_length,
                            add_special_tokens=False).to(model.device)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            with torch.no_grad():
                logits = model(**enc).logits.float()
            shift = labels[:, 1:]
            losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), shift, reduction="none",
                                                       ignore_index=-100)
            total += losses.sum().item()
            count += (shift != -100).sum().item()
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return total / count


def snapshot_weights(model) -> dict:
    """A copy of every base-model weight (not LoRA's), by its name in the base model, to see later what moved."""
    return {_base_name(n): p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def weights_moved(model, before: dict) -> dict:
    """How many base-model weight tensors changed since `before`, and how many LoRA tensors there are."""
    import torch

    base = {_base_name(n): p for n, p in model.named_parameters() if "lora_" not in n}
    changed = sum(not torch.equal(base[n].detach(), w) for n, w in before.items())
    lora = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
    return {"base_tensors": len(before), "base_tensors_changed": changed, "lora_tensors": lora}


def _base_name(name: str) -> str:
    """peft's name for a base weight (base_model.model.x.base_layer.weight) -> the base model's (x.weight)."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def training_state_bytes(trainer) -> dict:
    """What the optimizer works on, measured from the tensors after training: the trainable weights (their gradients
    take the same again) and AdamW's state (two averages per trainable weight)."""
    import torch

    params = [p for p in trainer.model.parameters() if p.requires_grad]
    weights = sum(p.numel() * p.element_size() for p in params)
    optimizer = sum(v.numel() * v.element_size() for state in trainer.optimizer.state.values()
                    for v in state.values() if torch.is_tensor(v) and v.dim() > 0)
    return {"trainable_weights_mib": weights / 2**20, "optimizer_state_mib": optimizer / 2**20}


def method_trainer(cfg: RunConfig, scratch: RunDir, splits):
    """A model prepared for cfg.method (helpers.lora.prepare_for_training) in an SFTTrainer that saves nothing:
    the same steps as 03 and 04, for a run that is measured rather than kept."""
    from .lora import prepare_for_training
    from .model import load_model_and_tokenizer
    from .train import make_trainer

    model, tokenizer = load_model_and_tokenizer(cfg)
    model = prepare_for_training(model, cfg)
    return make_trainer(cfg, scratch, model, tokenizer, splits, save_strategy="no", report_to="none")


def measure_method(trainer, cfg: RunConfig, test_rows: list[dict], texts: list[str]) -> dict:
    """Train and measure one run: trainable parameters, memory, time, the task metric, and forgetting (the loss on
    `texts` before and after). On a GPU the peak memory is torch's; on a CPU, the training state's tensors."""
    import torch

    from .evaluation import evaluate_answers

    from .budget import estimate_training_memory

    model, tokenizer = trainer.model, trainer.processing_class
    on_gpu = torch.cuda.is_available()
    estimate = estimate_training_memory(cfg, on_gpu=on_gpu)  # from the config alone, as 02 and section 2 do
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    before = snapshot_weights(model)
    knowledge_before = text_loss(model, tokenizer, texts)
    eval_before = trainer.evaluate()["eval_loss"]
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    scores, _ = evaluate_answers(model, tokenizer, test_rows, cfg, progress=False)
    return {
        "method": method_name(cfg), "learning_rate": cfg.train.learning_rate, "steps": trainer.state.global_step,
        "trainable": model.num_parameters(only_trainable=True), "total": model.num_parameters(),
        **training_state_bytes(trainer),
        "optimizer_state_estimate_mib": estimate.parts["optimizer state"] * 1024,
        "peak_estimate_gib": estimate.tensors_gib,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
        "train_seconds": seconds,
        "eval_loss_before": eval_before, "eval_loss_after": trainer.evaluate()["eval_loss"],
        "exact_match": scores["exact_match"],
        "knowledge_loss_before": knowledge_before, "knowledge_loss_after": text_loss(model, tokenizer, texts),
        **weights_moved(model, before),
        "log_history": trainer.state.log_history,
    }


def forgetting(record: dict) -> float:
    """How much the loss on the known text rose: after minus before (0 = nothing forgotten)."""
    return record["knowledge_loss_after"] - record["knowledge_loss_before"]


def methods_table(results: dict[str, dict]) -> list[dict]:
    """One row per run, rounded, for display: what trained, what it cost, what it learned, what it forgot."""
    rows = []
    for name, r in results.items():
        rows.append({
            "run": name, "trainable": f"{r['trainable']:,} of {r['total']:,} ({r['trainable'] / r['total']:.0%})",
            "optimizer state MiB (estimate)": f"{r['optimizer_state_mib']:.2f} ({r['optimizer_state_estimate_mib']:.2f})",
            **({"peak GPU GiB (estimate)": f"{r['peak_gpu_gib']:.2f} ({r['peak_estimate_gib']:.2f})"}
               if r["peak_gpu_gib"] is not None else {}),
            "seconds": round(r["train_seconds"], 1),
            "eval loss": f"{r['eval_loss_before']:.2f} -> {r['eval_loss_after']:.3f}",
            "exact match": round(r["exact_match"], 2),
            "known-text loss": f"{r['knowledge_loss_before']:.3f} -> {r['knowledge_loss_after']:.3f}",
            "forgetting": round(forgetting(r), 3),
            "base tensors changed": f"{r['base_tensors_changed']} of {r['base_tensors']}",
        })
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Rows of equal keys as a Markdown table, for `IPython.display.Markdown`."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows])


def methods_findings(results: dict[str, dict], lora: str, qlora: str, full_large: str, full_small: str) -> str:
    """What the comparison says, as Markdown bullets computed from its numbers, so that the prose agrees with the
    table on every run (07_methods_compared)."""
    f = {name: forgetting(r) for name, r in results.items()}
    best = max(results, key=lambda n: results[n]["exact_match"])
    most = max(f, key=f.get)
    close = [n for n in results if results[best]["exact_match"] - results[n]["exact_match"] < 0.1]
    lines = [f"- **Learned the task best:** {' / '.join(close)} (exact match "
             f"{', '.join(format(results[n]['exact_match'], '.2f') for n in close)}"
             + ("; within 0.1 of each other, which 60 test rows cannot tell apart)." if len(close) > 1 else ")."),
             f"- **Forgot the most:** {most}: the loss on known text rose by {f[most]:.2f} "
             f"({results[most]['knowledge_loss_before']:.2f} -> {results[most]['knowledge_loss_after']:.2f})."]
    ratio = f[full_large] / f[lora] if f[lora] > 0 else float("inf")
    worse = results[full_large]["exact_match"] < results[lora]["exact_match"] - 0.1
    lines.append(f"- **Full fine-tuning at LoRA's learning rate** forgot {ratio:.1f}x as much as LoRA "
                 f"({f[full_large]:.2f} vs {f[lora]:.2f}) and scored {results[full_large]['exact_match']:.2f} "
                 f"exact match against LoRA's {results[lora]['exact_match']:.2f}: "
                 + ("every weight took large steps; they fitted the training data (eval loss "
                    f"{results[full_large]['eval_loss_after']:.3f}) and overwrote what the model knew"
                    if ratio > 1 else "here it did not forget more; look at its loss curve below")
                 + (", and the task came out worse too." if worse and ratio > 1 else "."))
    small, big = f[full_small], f[full_large]
    lines.append(f"- **The same full fine-tuning at a smaller learning rate** forgot {small:.2f} instead of {big:.2f} "
                 f"and scored {results[full_small]['exact_match']:.2f}"
                 + (f"; it forgot {'less' if small < f[lora] else 'more'} than LoRA ({f[lora]:.2f}): here the "
                    "learning rate mattered more than the method." if small < big else "."))
    q, l = results[qlora], results[lora]
    lines.append(f"- **QLoRA vs LoRA:** 4-bit weights cost the base model {q['knowledge_loss_before'] - l['knowledge_loss_before']:+.3f} "
                 f"on known text and {q['eval_loss_before'] - l['eval_loss_before']:+.3f} on the task's held-out "
                 f"loss before training; after it, exact match {q['exact_match']:.2f} vs {l['exact_match']:.2f}.")
    opt = results[full_large]["optimizer_state_mib"] / max(l["optimizer_state_mib"], 1e-9)
    lines.append(f"- **Memory:** full fine-tuning's optimizer state is {opt:.1f}x LoRA's "
                 f"({results[full_large]['optimizer_state_mib']:.2f} vs {l['optimizer_state_mib']:.2f} MiB): AdamW "
                 "keeps two numbers for every weight that trains.")
    return "\n".join(lines)


def plot_methods(results: dict[str, dict]):
    """Two panels over the runs: the task metric (exact match), and forgetting (the known-text loss before and
    after). The trade-off reads across them: a run that learns the task without raising the right-hand bars."""
    from .plots import _figure

    fig = _figure(10, 3.8)
    names = list(results)
    left, right = fig.subplots(1, 2)
    left.barh(names, [results[n]["exact_match"] for n in names], color="tab:green")
    left.set_xlim(0, 1.15)
    left.set_xlabel("exact match on the test split (higher is better)")
    left.set_title("What each run learned")
    for y, n in enumerate(names):
        left.text(results[n]["exact_match"], y, f" {results[n]['exact_match']:.2f}", va="center", fontsize=9)
    before = [results[n]["knowledge_loss_before"] for n in names]
    after = [results[n]["knowledge_loss_after"] for n in names]
    ys = range(len(names))
    right.barh([y - 0.2 for y in ys], before, height=0.4, color="tab:gray", label="before fine-tuning")
    right.barh([y + 0.2 for y in ys], after, height=0.4, color="tab:red", label="after")
    right.set_yticks(list(ys), names)
    right.set_xlabel("loss per token on known text (lower = remembered)")
    right.set_title("What each run forgot")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def compare_methods(base_cfg: RunConfig, runs: dict[str, tuple[str, float]], scratch: Path | str, splits,
                    test_rows: list[dict], texts: list[str]) -> dict[str, dict]:
    """Each named run (method, learning rate) trained from `base_cfg` and measured: the benchmark's loop
    (benchmarks/methods_compared.py); the notebook writes the same loop out."""
    from .config import use_method

    results = {}
    for name, (method, lr) in runs.items():
        cfg = use_method(base_cfg.copy(), method)
        cfg.train.learning_rate = lr
        folder = RunDir(Path(scratch) / re.sub(r"[^\w.-]+", "-", name))
        results[name] = measure_method(method_trainer(cfg, folder, splits), cfg, test_rows, texts)
    return results
