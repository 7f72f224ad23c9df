"""Generate answers and score them, base model against fine-tuned: held-out loss, the task metric, word overlap,
the answers side by side, the training curves' verdict and human ratings. Introduced in 05_evaluation
(02_model_loading uses `generate_answers` for the baseline); `evaluate_run` is the command line's
`python -m helpers evaluate`.
"""

from __future__ import annotations

import json
import math
import random

from .config import RunConfig
from .data import prompt_of, reference_of
from .formats import GROUP_FIELD
from .rundir import RunDir

RATINGS_FILE = "human_ratings.json"
RATING_CHOICES = ("not rated", "A is better", "B is better", "both good", "both bad")


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus the chat template's end-of-turn token where it has one, so generation stops after one reply."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|end|>", "<|eot_id|>", "<|im_end|>", "</s>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid is not None and tid >= 0:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


def generate_answers(model, tokenizer, rows: list[dict], cfg: RunConfig, progress: bool = True,
                     padding_side: str = "left", stopped: list | None = None) -> list[str]:
    """Greedy, batched, bounded generation: one reply per row, reproducible and never endless.

    `padding_side="right"` exists only to show, in 05_evaluation, what goes wrong without left padding.
    `stopped`, a list, receives for each reply whether the model ended it itself (False: max_new_tokens cut it).
    """
    import torch
    from tqdm.auto import tqdm

    # decoder-only: pad on the left so that every prompt ends where generation starts
    tokenizer.padding_side = padding_side
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
        if stopped is not None:
            stopped += [bool(set(row) & set(stop_token_ids(tokenizer))) for row in new_tokens.tolist()]
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


def text_scores(predictions: list[str], references: list[str]) -> dict:
    """Word overlap with the reference, for free text: mean ROUGE-L F1 (rouge-score) and corpus BLEU (sacrebleu).

    ROUGE-L rewards the longest common word sequence (0 to 1); BLEU counts matching 1- to 4-word runs over the
    whole test set (0 to 100). rouge-score's tokenizer keeps only ASCII letters and digits, so for other scripts
    prefer BLEU. Both come from their libraries: `evaluate.load` would fetch them from the Hub, which fails offline.
    """
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    return {"rougeL": sum(rouge) / len(rouge), "bleu": sacrebleu.corpus_bleu(predictions, [references]).score}


def score_answers(predictions: list[str], references: list[str]) -> dict:
    """Exact match, ROUGE-L and BLEU; when the references are structured (JSON or `key: value` lines) also the rate
    of answers with exactly the reference's fields and the accuracy of each field. Structured answers are compared
    field by field, so spacing and field order do not matter."""
    refs = [parse_fields(r) for r in references]
    n = len(references)
    overlap = text_scores(predictions, references)
    if not all(r is not None for r in refs):
        exact = sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / n
        return {"exact_match": exact, **overlap, "n": n}
    preds = [parse_fields(p) for p in predictions]
    fields = sorted({k for r in refs for k in r})
    return {
        "exact_match": sum(p == r for p, r in zip(preds, refs)) / n,
        # the right structure: exactly the reference's fields, whatever their values
        "valid_format": sum(p is not None and p.keys() == r.keys() for p, r in zip(preds, refs)) / n,
        "field_accuracy": {f: sum((p or {}).get(f) == r.get(f) for p, r in zip(preds, refs)) / n for f in fields},
        **overlap,
        "n": n,
    }


def proportion_interval(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% for z=1.96) of a rate measured on n examples, such as an exact-match score:
    where the rate on unlimited examples of the same kind probably lies. Introduced in 05_evaluation."""
    if n <= 0:
        raise ValueError("a rate needs at least one example")
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate_answers(model, tokenizer, rows: list[dict], cfg: RunConfig, progress: bool = True) -> tuple[dict, list[str]]:
    """Generate for every row and score against the reference replies (and per group, where rows have one)."""
    predictions = generate_answers(model, tokenizer, rows, cfg, progress=progress)
    scores = score_answers(predictions, [reference_of(r) for r in rows])
    groups = scores_by_group(rows, predictions)
    return ({**scores, "by_group": groups} if groups else scores), predictions


def scores_by_group(rows: list[dict], predictions: list[str]) -> dict[str, dict]:
    """`score_answers` for each `group` label the rows carry (the shipped test split: "seen phrasing" and "unseen
    phrasing"); {} when no row has one. Rows without a label are left out."""
    labels = sorted({r[GROUP_FIELD] for r in rows if r.get(GROUP_FIELD)})
    return {g: score_answers([p for p, r in zip(predictions, rows) if r.get(GROUP_FIELD) == g],
                             [reference_of(r) for r in rows if r.get(GROUP_FIELD) == g]) for g in labels}


def eval_loss(trainer) -> dict:
    """Held-out loss on the answer tokens and its perplexity, through the trainer's own evaluation loop."""
    loss = trainer.evaluate()["eval_loss"]
    return {"eval_loss": loss, "perplexity": math.exp(loss)}


def loss_baselines(tokenizer) -> dict[str, dict]:
    """What the held-out loss and perplexity are measured against: a uniform guess over the vocabulary (loss
    ln V, perplexity V: the model knows nothing) and a perfect answer (loss 0, perplexity 1: every answer token
    certain). A perplexity above V means the model is surer of the wrong tokens than a blind guess would be."""
    vocabulary = len(tokenizer)
    return {"uniform guess": {"eval_loss": math.log(vocabulary), "perplexity": float(vocabulary)},
            "perfect answer": {"eval_loss": 0.0, "perplexity": 1.0}}


def compare_models(model, tokenizer, cfg: RunConfig, trainer, rows: list[dict], base_trainer=None) -> dict:
    """Held-out loss and the task metric for the base model (adapter switched off) and the fine-tuned one.

    A fully fine-tuned model has no adapter to switch off: its base model is a separate model, given as the model
    of `base_trainer` (a trainer built the same way around it; `base_trainer_for` makes one).
    """
    import contextlib

    results, predictions = {}, {}
    for name, adapter_off in (("base", True), ("finetuned", False)):
        if adapter_off and base_trainer is not None:
            which, switch = base_trainer, contextlib.nullcontext()
        else:  # the base model is the very same weights with the LoRA update switched off
            which, switch = trainer, model.disable_adapter() if adapter_off else contextlib.nullcontext()
        with switch:
            loss = eval_loss(which)
            scores, predictions[name] = evaluate_answers(model if which is trainer else which.model, tokenizer,
                                                         rows, cfg)
        results[name] = {**loss, **scores}
    return {"results": results, "predictions": predictions}


def base_trainer_for(cfg: RunConfig, run: RunDir, splits):
    """After full fine-tuning: the untouched base model, loaded again, in a trainer built like the run's, or None
    when the run has an adapter (then switching it off gives the base model back)."""
    if cfg.method != "full":
        return None
    from .model import load_model_and_tokenizer
    from .train import make_trainer

    base, tokenizer = load_model_and_tokenizer(cfg)
    return make_trainer(cfg, run, base.eval(), tokenizer, splits, report_to="none")  # measures, logs nothing


def interpret_comparison(results: dict, baselines: dict | None = None) -> str:
    """What the base-vs-fine-tuned table says, as Markdown bullets computed from its numbers (05_evaluation), so
    that the prose agrees with the table on every run, including a run where fine-tuning did not work."""
    base, tuned = results["base"], results["finetuned"]
    lines = []
    fell = tuned["eval_loss"] < base["eval_loss"]
    ref = ""
    if baselines:
        guess = baselines["uniform guess"]["perplexity"]
        ref = (f" For scale: a uniform guess over the {guess:,.0f}-token vocabulary has perplexity {guess:,.0f}, a "
               "perfect answer 1." + (" The base model is *worse* than a blind guess: it is confidently wrong "
                                      "about tokens it never saw in pretraining (the chat template's)."
                                      if base["perplexity"] > guess else ""))
    lines.append(f"- The **held-out loss** {'fell' if fell else 'did not fall'}: {base['eval_loss']:.2f} -> "
                 f"{tuned['eval_loss']:.2f} (perplexity {base['perplexity']:,.1f} -> {tuned['perplexity']:,.1f})."
                 + ref)
    n, em0, em1 = tuned["n"], base["exact_match"], tuned["exact_match"]
    lines.append(f"- **Exact match** went from {em0:.2f} to {em1:.2f}: {round(em1 * n)} of {n} test answers entirely "
                 f"right, {'up' if em1 > em0 else 'not up'} from {round(em0 * n)}, on rows it never trained on.")
    fields = tuned.get("field_accuracy")
    if fields:
        worst = min(fields, key=fields.get)
        listed = ", ".join(f"{f} {a:.2f}" for f, a in fields.items())
        verdict = (f"'{worst}' is the hardest. Below {WEAK_FIELD:.1f}, the model is not copying that field from the "
                   "message; the side-by-side answers below show what it writes instead." if fields[worst] < WEAK_FIELD
                   else f"every field is right in most answers; '{worst}' is the hardest.")
        lines.append(f"- **Per field**: {listed}: {verdict}")
    groups = tuned.get("by_group")
    if groups:
        listed = ", ".join(f"{g} {s['exact_match']:.2f} ({s['n']} rows)" for g, s in groups.items())
        lines.append(f"- **By group** (exact match): {listed}. A gap between them is what training on one kind of "
                     "row costs on the other.")
    return "\n".join(lines)


def lesson_problems(results: dict, min_gain: float = 0.2) -> list[str]:
    """What failed in the lesson's promise (the held-out loss falls, exact match rises by `min_gain`), each with
    what to look at and what to do; [] when it held."""
    base, tuned = results["base"], results["finetuned"]
    problems = []
    if tuned["eval_loss"] >= base["eval_loss"]:
        problems.append(f"the held-out loss did not fall ({base['eval_loss']:.3f} -> {tuned['eval_loss']:.3f}): "
                        "training did not take. Look at 04's loss curve; if it is flat, raise cfg.train.learning_rate "
                        "or the epochs, and check that train_summary.json is from this run's config.")
    if tuned["exact_match"] < base["exact_match"] + min_gain:
        fields = tuned.get("field_accuracy", {})
        weak = [f"'{f}' ({a:.2f})" for f, a in fields.items() if a < WEAK_FIELD]
        problems.append(f"exact match rose only from {base['exact_match']:.2f} to {tuned['exact_match']:.2f} (the "
                        f"lesson needs +{min_gain})" + (f"; the weak fields are {', '.join(weak)}" if weak else "")
                        + ". If valid format is low, the model has not learnt the answer's layout: train longer. If "
                        "one field is low, read its side-by-side answers: values from the training data mean the "
                        "model memorised instead of copying. A changed config (04's panel) is the usual cause; "
                        "the profile's defaults are measured over 5 seeds in the README.")
    return problems


def side_by_side(rows: list[dict], predictions: dict[str, list[str]], n: int = 8) -> list[dict]:
    """Prompt, base answer, fine-tuned answer and reference for the first n rows."""
    return [{"message": prompt_of(r)[-1]["content"].split("\n\n")[-1], "base": predictions["base"][i],
             "fine-tuned": predictions["finetuned"][i], "reference": reference_of(r)}
            for i, r in enumerate(rows[:n])]


def same_answer(prediction: str, reference: str) -> bool:
    """The exact-match rule for one answer: field by field when the reference is structured, else as text."""
    ref = parse_fields(reference)
    return parse_fields(prediction) == ref if ref is not None else prediction.strip() == reference.strip()


def _marked(answer: str, reference: str) -> str:
    """The answer as HTML, its words that differ from the reference highlighted (difflib, word by word)."""
    import difflib
    import html
    import re

    words, ref_words = re.findall(r"\S+|\n", answer), re.findall(r"\S+|\n", reference)
    out = []
    for op, _, _, j1, j2 in difflib.SequenceMatcher(None, ref_words, words, autojunk=False).get_opcodes():
        for word in words[j1:j2]:
            text = "<br>" if word == "\n" else html.escape(word)
            out.append(text if op == "equal" or word == "\n" else f'<span style="{_WRONG}">{text}</span>')
    return " ".join(out).replace(" <br> ", "<br>") or '<i style="color:#888">(empty)</i>'


_WRONG = "background:#f8c9c9;color:#000;border-radius:3px;padding:0 2px"
_RIGHT = "background:#d9f2d9;color:#000"
_CELL = "text-align:left;vertical-align:top;padding:4px 8px;border-bottom:1px solid #ddd"


def side_by_side_html(pairs: list[dict]) -> str:
    """An HTML table of `side_by_side` rows: an answer equal to the reference is green, and in any other answer
    the words that differ from the reference are red."""
    import html

    head = "".join(f'<th style="{_CELL}">{h}</th>' for h in ("message", "base", "fine-tuned", "reference"))
    body = []
    for p in pairs:
        cells = [f'<td style="{_CELL}">{html.escape(p["message"])}</td>']
        for key in ("base", "fine-tuned"):
            style = _CELL + (";" + _RIGHT if same_answer(p[key], p["reference"]) else "")
            cells.append(f'<td style="{style};font-family:monospace">{_marked(p[key], p["reference"])}</td>')
        reference = html.escape(p["reference"]).replace("\n", "<br>")
        cells.append(f'<td style="{_CELL};font-family:monospace">{reference}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    legend = (f'<p><span style="{_RIGHT};padding:0 4px">green</span>: same as the reference. '
              f'<span style="{_WRONG}">red</span>: words that differ from the reference.</p>')
    widths = "".join(f'<col style="width:{w}%">' for w in (25, 31, 22, 22))  # the babble of a base model is long
    return (f'{legend}<table style="border-collapse:collapse;table-layout:fixed;width:100%">{widths}'
            f'<tr>{head}</tr>{"".join(body)}</table>')


def before_after_bars(results: dict) -> dict[str, tuple[float, float]]:
    """(base, fine-tuned) pairs between 0 and 1 for `plots.plot_before_after`: the task metrics and BLEU / 100."""
    base, tuned = results["base"], results["finetuned"]
    bars = {"exact match": (base["exact_match"], tuned["exact_match"])}
    if "valid_format" in base:
        bars["valid format"] = (base["valid_format"], tuned["valid_format"])
        bars |= {f"field: {k}": (base["field_accuracy"][k], tuned["field_accuracy"][k]) for k in base["field_accuracy"]}
    bars["ROUGE-L"] = (base["rougeL"], tuned["rougeL"])
    bars["BLEU / 100"] = (base["bleu"] / 100, tuned["bleu"] / 100)
    return bars


def diagnose_fit(log_history: list[dict], rise: float = 0.05, still_falling: float = 0.02,
                 task_scores: dict | None = None, floor: float = 0.01) -> dict:
    """Read the training log's eval losses: over-fitting, still learning (under-fitting), or converged; with the
    evidence in numbers and what to try next. Train and eval loss are both on the answer tokens, so comparable.

    With `task_scores` (the fine-tuned model's `score_answers`), a field the model rarely gets right is reported
    too, whatever the curves say: a loss averaged over every answer token can look converged while one field,
    a few tokens of each answer, is still wrong.

    A change counts only when it is larger than `rise` / `still_falling` (relative) and `floor` (absolute, in nats
    per token): near zero, a rise from 0.015 to 0.016 is 6% but only noise."""
    verdict = _curve_verdict(log_history, rise, still_falling, floor)
    weak = {f: a for f, a in (task_scores or {}).get("field_accuracy", {}).items() if a < WEAK_FIELD}
    if weak:
        worst = ", ".join(f"'{f}' {a:.0%}" for f, a in sorted(weak.items(), key=lambda x: x[1]))
        verdict["task"] = (f"but on the test split some fields are rarely right: {worst} of answers (exact match "
                           f"{task_scores['exact_match']:.2f}); the loss hides this, because such a field is only a "
                           "few of each answer's tokens")
        verdict["next"] = [f"read the side-by-side answers for {', '.join(map(repr, weak))}: a value from the "
                           "training data in place of the one in the message means the model memorised values "
                           "instead of copying them; more varied values in the training data help",
                           *verdict["next"]]
    return verdict


WEAK_FIELD = 0.5  # a field right in fewer than half of the test answers has not been learnt


def _curve_verdict(log_history: list[dict], rise: float, still_falling: float, floor: float) -> dict:
    """The eval-loss curve alone: over-fitting, under-fitting or converged (see `diagnose_fit`)."""
    by_step = {}
    for h in log_history:  # the evaluation after training repeats the last step: the one during training counts
        if "eval_loss" in h:
            by_step.setdefault(h["step"], h["eval_loss"])
    evals = list(by_step.values())
    train = [h["loss"] for h in log_history if "loss" in h]
    if len(evals) < 3 or not train:
        return {"verdict": "too few evaluations to judge", "evidence": f"{len(evals)} eval losses in the log",
                "next": ["lower eval_steps so that training is evaluated at least 3 times"]}
    best, last, before_last = min(evals), evals[-1], evals[-2]
    gap = last - sum(train[-3:]) / len(train[-3:])
    evidence = (f"eval loss {evals[0]:.3f} -> best {best:.3f} -> last {last:.3f}; last train loss "
                f"{train[-1]:.3f}, gap eval - train {gap:+.3f}")
    if last - best > max(best * rise, floor):
        return {"verdict": "over-fitting", "evidence": evidence + f"; the eval loss rose {last / best - 1:.0%} "
                "from its best while the model kept training",
                "next": ["stop earlier: fewer epochs, or early_stopping_patience (keeps the best checkpoint)",
                         "more (or more varied) training data", "a lower learning rate or a smaller LoRA r",
                         "more LoRA dropout"]}
    if before_last - last > max(still_falling * before_last, floor):
        return {"verdict": "under-fitting (still learning)", "evidence": evidence + f"; the eval loss still fell "
                f"{1 - last / before_last:.1%} between the last two evaluations",
                "next": ["train longer (more epochs or steps)", "a higher learning rate (try 2x)",
                         "a larger LoRA r or more target modules, if longer training plateaus high"]}
    return {"verdict": "converged, no sign of over-fitting", "evidence": evidence + "; the eval loss has levelled "
            "off at its best", "next": ["more epochs will not help: the curve is flat",
                                        "to go further: more or better data, a larger model or LoRA r",
                                        "check the side-by-side answers: the remaining errors show what is hard"]}


def blind_pairs(pairs: list[dict], seed: int = 0) -> list[dict]:
    """The side-by-side answers as A and B in a random order per row, so a rater cannot tell which model is which."""
    rng = random.Random(seed)
    out = []
    for p in pairs:
        a_is = rng.choice(("base", "fine-tuned"))
        b_is = "fine-tuned" if a_is == "base" else "base"
        out.append({**p, "a_is": a_is, "a": p[a_is], "b": p[b_is]})
    return out


def rating_outcome(item: dict, choice: str) -> str | None:
    """A rater's choice (`RATING_CHOICES`) unblinded: 'fine-tuned better', 'base better', 'both good', 'both bad'."""
    if choice in ("A is better", "B is better"):
        winner = item["a_is"] if choice == "A is better" else ("base" if item["a_is"] == "fine-tuned" else "fine-tuned")
        return f"{winner} better"
    return None if choice == "not rated" else choice


def rating_key(item: dict) -> tuple:
    """What a rating is about: the message and both answers (a rating of other answers does not carry over)."""
    return item["message"], item["base"], item["fine-tuned"]


def save_ratings(run: RunDir, items: list[dict], choices: list[str]) -> None:
    """The rated rows (answers, blind order, choice and outcome) to human_ratings.json in the run directory."""
    rated = [{**item, "choice": c, "outcome": rating_outcome(item, c)} for item, c in zip(items, choices)
             if c != "not rated"]
    run.write_json(RATINGS_FILE, rated)


def load_ratings(run: RunDir, pairs: list[dict]) -> list[dict]:
    """Saved ratings that still apply: those whose message and both answers are the ones shown now."""
    path = run.path / RATINGS_FILE
    if not path.exists():
        return []
    current = {rating_key(p) for p in pairs}
    return [r for r in json.loads(path.read_text(encoding="utf-8")) if rating_key(r) in current]


def summarize_ratings(ratings: list[dict], shown: int) -> dict:
    """How many rows were rated, and how often each outcome was chosen."""
    outcomes = ("fine-tuned better", "base better", "both good", "both bad")
    return {"rated": len(ratings), "shown": shown,
            **{o: sum(r["outcome"] == o for r in ratings) for o in outcomes}}


def metrics_record(cfg: RunConfig, results: dict, n_test: int, fit: dict | None, human: dict) -> dict:
    """What metrics.json holds: base and fine-tuned side by side, how answers were generated, the curves' verdict
    and the human ratings."""
    return {"model": cfg.model.model_id, "profile": cfg.profile, "run_name": cfg.run_name, "n_test": n_test,
            "base": results["base"], "finetuned": results["finetuned"],
            "generation": {"decoding": "greedy", "max_new_tokens": cfg.eval.max_new_tokens,
                           "batch_size": cfg.eval.batch_size},
            "fit": fit, "human": human}


def save_evaluation(run: RunDir, record: dict, pairs: list[dict]) -> list:
    """metrics.json, the base-vs-fine-tuned chart (PNG) and the side-by-side table (HTML) in the run directory."""
    from .plots import plot_before_after

    fig = plot_before_after(before_after_bars(record), title=f"{record['run_name']}: base vs fine-tuned on "
                            f"{record['n_test']} test examples")
    fig.savefig(run.figure_path("base_vs_finetuned"), dpi=120, bbox_inches="tight")
    page = run.path / "side_by_side.html"
    page.write_text(side_by_side_html(pairs), encoding="utf-8")
    return [run.write_json("metrics.json", record), run.figure_path("base_vs_finetuned"), page]


def evaluate_run(cfg: RunConfig, run: RunDir, n_side_by_side: int = 8) -> dict:
    """The whole of 05_evaluation, headless (`python -m helpers evaluate`): both models scored, everything saved."""
    from .data import load_splits
    from .inference import load_finetuned
    from .train import make_trainer

    if not run.has_finetuned(cfg):
        raise FileNotFoundError(f"no trained {'adapter' if cfg.method != 'full' else 'model'} in "
                                f"{run.finetuned_dir(cfg)}: train first, with `python -m helpers train --run-dir "
                                f"{run.path}` (or notebook 04_training_sft)")
    splits = load_splits(cfg, run)
    model, tokenizer = load_finetuned(cfg, run)
    rows = list(splits["test"])
    comparison = compare_models(model, tokenizer, cfg, make_trainer(cfg, run, model, tokenizer, splits, report_to="none"), rows,
                                base_trainer=base_trainer_for(cfg, run, splits))
    pairs = side_by_side(rows, comparison["predictions"], n=n_side_by_side)
    history = run.read_json("train_summary.json", made_by="04_training_sft")["log_history"]
    human = summarize_ratings(load_ratings(run, pairs), shown=len(pairs))
    fit = diagnose_fit(history, task_scores=comparison["results"]["finetuned"])
    record = metrics_record(cfg, comparison["results"], len(rows), fit, human)
    save_evaluation(run, record, pairs)
    return record
