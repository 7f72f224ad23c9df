"""Generate answers and score them: the task metric, base model against fine-tuned. Introduced in 05_evaluation
(02_model_loading uses `generate_answers` for the baseline).
"""

from __future__ import annotations

import json
import math

from .config import RunConfig
from .data import prompt_of, reference_of


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus the chat template's end-of-turn token where it has one, so generation stops after one reply."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|end|>", "<|eot_id|>", "<|im_end|>", "</s>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid is not None and tid >= 0:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


def generate_answers(model, tokenizer, rows: list[dict], cfg: RunConfig, progress: bool = True) -> list[str]:
    """Greedy, batched, bounded generation: one reply per row, reproducible and never endless."""
    import torch
    from tqdm.auto import tqdm

    tokenizer.padding_side = "left"  # decoder-only: pad on the left so every prompt ends where generation starts
    answers = []
    batches = range(0, len(rows), cfg.eval.batch_size)
    for start in tqdm(batches, desc="generating", disable=not progress, leave=False):
        batch = rows[start:start + cfg.eval.batch_size]
        enc = tokenizer.apply_chat_template([prompt_of(r) for r in batch], add_generation_prompt=True,
                                            padding=True, return_tensors="pt", return_dict=True).to(model.device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=cfg.eval.max_new_tokens, do_sample=False,
                                 eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id)
        new_tokens = out[:, enc["input_ids"].shape[1]:]
        answers += [a.strip() for a in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    tokenizer.padding_side = "right"
    return answers


def parse_fields(text: str) -> dict | None:
    """A structured answer as a dict: a JSON object, or lines of `key: value`. None if it is neither."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    lines = [line for line in text.splitlines() if line.strip()]
    pairs = [line.split(":", 1) for line in lines]
    if not lines or any(len(p) != 2 or not p[0].strip() for p in pairs):
        return None
    return {k.strip(): v.strip() for k, v in pairs}


def score_answers(predictions: list[str], references: list[str]) -> dict:
    """Exact match, plus (when the references are structured: JSON or `key: value` lines) the rate of answers with
    exactly the reference's fields and the accuracy of each field. Structured answers are compared field by field, so spacing and
    field order do not matter."""
    refs = [parse_fields(r) for r in references]
    n = len(references)
    if not all(r is not None for r in refs):
        return {"exact_match": sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / n, "n": n}
    preds = [parse_fields(p) for p in predictions]
    fields = sorted({k for r in refs for k in r})
    return {
        "exact_match": sum(p == r for p, r in zip(preds, refs)) / n,
        # the right structure: exactly the reference's fields, whatever their values
        "valid_format": sum(p is not None and p.keys() == r.keys() for p, r in zip(preds, refs)) / n,
        "field_accuracy": {f: sum((p or {}).get(f) == r.get(f) for p, r in zip(preds, refs)) / n for f in fields},
        "n": n,
    }


def evaluate_answers(model, tokenizer, rows: list[dict], cfg: RunConfig) -> tuple[dict, list[str]]:
    """Generate for every row and score against the reference replies."""
    predictions = generate_answers(model, tokenizer, rows, cfg)
    return score_answers(predictions, [reference_of(r) for r in rows]), predictions


def eval_loss(trainer) -> dict:
    """Held-out loss on the answer tokens and its perplexity, through the trainer's own evaluation loop."""
    loss = trainer.evaluate()["eval_loss"]
    return {"eval_loss": loss, "perplexity": math.exp(loss)}


def compare_models(model, tokenizer, cfg: RunConfig, trainer, rows: list[dict]) -> dict:
    """Held-out loss and the task metric for the base model (adapter switched off) and the fine-tuned one."""
    import contextlib

    results, predictions = {}, {}
    for name, adapter_off in (("base", True), ("finetuned", False)):
        # the base model is the very same weights with the LoRA update switched off
        with model.disable_adapter() if adapter_off else contextlib.nullcontext():
            loss = eval_loss(trainer)
            scores, predictions[name] = evaluate_answers(model, tokenizer, rows, cfg)
        results[name] = {**loss, **scores}
    return {"results": results, "predictions": predictions}


def side_by_side(rows: list[dict], predictions: dict[str, list[str]], n: int = 8) -> list[dict]:
    """Prompt, base answer, fine-tuned answer and reference for the first n rows."""
    return [{"message": prompt_of(r)[-1]["content"].split("\n\n")[-1], "base": predictions["base"][i],
             "fine-tuned": predictions["finetuned"][i], "reference": reference_of(r)}
            for i, r in enumerate(rows[:n])]
