"""Before fine-tuning: does the model need new weights, or the right prompt? A measurement on the tiny model: made-up
facts given in the prompt, against the same facts fine-tuned into the weights. Introduced in 00_setup_and_gpu_check.

A fact counts as known when, asked to complete a sentence about a person, the model gives that person's city the
highest probability among all the cities of the facts (a multiple choice, so the score does not depend on how the
model would phrase an answer). Chance is one in the number of facts.
"""

from __future__ import annotations

import random

FACT = "{name} lives in {city}."
# the question as the facts were written, and the same question put another way (a form the corpus also uses)
QUESTIONS = {"asked as trained": "{name} lives in",
             "asked another way": "Every Monday morning {name} walks to the library in"}


def made_up_facts(n: int = 20, seed: int = 0) -> dict[str, str]:
    """n people, each with a city drawn at random: facts the tiny model's corpus does not hold (the names and cities
    are words it knows, paired anew)."""
    names, cities = _names_and_cities()
    rng = random.Random(seed)
    chosen = rng.sample(cities, n)
    return dict(zip(rng.sample(names, n), chosen))


def _names_and_cities() -> tuple[list[str], list[str]]:
    """The fine-tuning data's training names and its cities (data/make_datasets.py): words the tiny model knows."""
    import importlib.util

    from .paths import DATA_DIR

    spec = importlib.util.spec_from_file_location("make_datasets", DATA_DIR / "make_datasets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NAMES_TRAIN, module.CITIES_ALL


def fact_accuracy(model, tokenizer, facts: dict[str, str], question: str, fact_in_prompt: bool) -> float:
    """The share of facts the model gets right: the person's city scores highest among the facts' cities."""
    import torch

    cities = sorted(set(facts.values()))
    model.eval()
    right = 0
    tokenizer.padding_side = "right"  # each candidate's tokens start at the same position: after the prompt
    for name, city in facts.items():
        prompt = (FACT.format(name=name, city=city) + " " if fact_in_prompt else "") + question.format(name=name)
        start = len(tokenizer(prompt)["input_ids"])
        enc = tokenizer([f"{prompt} {c}" for c in cities], return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad():
            logprobs = torch.log_softmax(model(**enc).logits.float(), dim=-1)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        scores = [sum(logprobs[k, i - 1, ids[k, i]].item() for i in range(start, int(mask[k].sum())))
                  for k in range(len(cities))]
        right += cities[max(range(len(cities)), key=scores.__getitem__)] == city
    return right / len(facts)


def fact_scores(model, tokenizer, facts: dict[str, str]) -> dict[str, dict[str, float]]:
    """Accuracy for each question, with the fact in the prompt and without it."""
    return {("fact in the prompt" if given else "fact not given"):
            {q: fact_accuracy(model, tokenizer, facts, template, given) for q, template in QUESTIONS.items()}
            for given in (False, True)}


def train_on_facts(model, tokenizer, facts: dict[str, str], output_dir: str, seed: int = 0):
    """LoRA on the fact sentences as plain text (TRL's `text` format), 30 epochs: the facts put into the weights.
    The calls are 03's and 04's; here only their result matters. The loss is on every token (plain text has no
    answer part), at the tiny profile's learning rate."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from .config import make_config
    from .lora import apply_lora
    from .train import _datasets_progress_bars

    cfg = make_config("tiny")
    cfg.train.seed = seed
    model = apply_lora(model, cfg)  # the tiny profile's LoRA (03): r 16, alpha 32, every linear layer
    data = Dataset.from_list([{"text": FACT.format(name=n, city=c)} for n, c in facts.items()])
    args = SFTConfig(output_dir=output_dir, learning_rate=cfg.train.learning_rate, num_train_epochs=30,
                     per_device_train_batch_size=4, bf16=False, use_cpu=not torch.cuda.is_available(),
                     activation_checkpointing=False, save_strategy="no", report_to="none", logging_steps=50,
                     seed=seed)
    with _datasets_progress_bars(enabled=False):  # TRL's data-preparation bars, for 20 rows
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    return model


def facts_findings(before: dict, after: dict, n: int) -> str:
    """What the four rows say, as Markdown computed from them, so that the text agrees with the numbers."""
    trained, other = QUESTIONS
    given, missing = "fact in the prompt", "fact not given"
    lines = [f"- Without the fact, the base model is at chance ({before[missing][trained]:.2f} and "
             f"{before[missing][other]:.2f}; a blind guess among {n} cities scores {1 / n:.2f}).",
             f"- **With the fact in the prompt** it answers {before[given][trained]:.2f} and {before[given][other]:.2f}: "
             "reading a fact and using it is what a base model already does well, and what retrieval (RAG) relies on "
             "(here with one fact and nothing to distract).",
             f"- **Fine-tuned on the facts**, asked as it was trained, it answers {after[missing][trained]:.2f}; asked "
             f"another way, {after[missing][other]:.2f}."]
    if after[missing][other] < after[missing][trained] - 0.3:
        lines.append("  Fine-tuning stored the sentences more than the facts: the knowledge does not transfer to a "
                     "question phrased differently. Teaching facts by fine-tuning needs each fact in many phrasings, "
                     "and still has to be redone whenever a fact changes.")
    else:
        lines.append("  On this run the facts transferred to the other question too; compare the two columns over a "
                     "few seeds before concluding.")
    lines.append(f"- Given in the prompt, the facts still work after fine-tuning ({after[given][trained]:.2f} / "
                 f"{after[given][other]:.2f}): a prompt is how to give a model facts that change.")
    return "\n".join(lines)
