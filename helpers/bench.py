"""`python -m helpers bench`: the common tutorial recipe against the course's default recipe, measured in one run.

Both recipes train the same model on the same examples for the same epochs with the same LoRA, learning rate,
schedule, seed and precision. They differ only where the common tutorial differs from the course:

    tutorial   every example padded to 512 tokens (padding="max_length"), transformers.Trainer with
               DataCollatorForLanguageModeling(mlm=False) (the loss covers prompt and answer), batch 2 x gradient
               accumulation 4; on a GPU the base model is loaded in 8-bit (bitsandbytes LLM.int8)
    course     helpers.train.make_trainer at the profile's defaults: TRL's SFTTrainer, padding per batch, loss on the
               answers only; on a GPU (t4 defaults) 4-bit NF4 QLoRA with fp16 compute

Each training runs in a fresh process, so its peak memory is its own (process RSS on the CPU, max allocated on a
GPU), and the recipes alternate so that slow drift in the machine hits both. Real tokens and padding are counted
from the batches the model is actually fed. Quality is compared with one yardstick for both: the loss on the answer
tokens of held-out validation examples, computed the same way after training (their training losses are not
comparable: the tutorial averages over prompt tokens too).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .paths import REPO_ROOT

GIB = 2**30
T4_FP16_PEAK_FLOPS = 65e12  # NVIDIA's data sheet: T4 tensor cores, fp16 (about 24 TFLOPS sustained under its 70 W cap)
TARGET_SPEEDUP = 3.0  # the target: the course recipe at least 3x the tutorial's real tokens per second
LOSS_TOLERANCE = 0.02  # "no worse": the course's held-out loss at most 2% above the tutorial's
TINYLLAMA = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
METRICS = ("real_tokens_per_s", "train_s", "peak_gib", "peak_rise_gib", "padding_fraction", "final_train_loss",
           "heldout_answer_loss", "mfu_vs_t4_peak", "mfu_vs_measured_peak")


@dataclass
class BenchSettings:
    """What every run of one benchmark shares: device, profile, model, prepared data and size."""

    device: str  # "cpu" or "cuda"
    profile: str  # "tiny" on the CPU, "t4" on a GPU
    model_id: str  # "tiny", or the folder of the TinyLlama-shaped model built for this benchmark
    data_dir: str  # a run directory whose data/ holds the prepared splits (the same for every run)
    examples: int  # training examples, the first N of the prepared train split
    epochs: float
    eval_rows: int  # validation examples for the held-out answer loss
    threads: int = 0  # torch threads in each training process; 0: torch's default (the machine's cores)
    tutorial_max_length: int = 512
    tutorial_batch: int = 2
    tutorial_accumulation: int = 4


@dataclass
class Job:
    """One training (or, for recipe "base", one evaluation of the untrained model) in its own process."""

    name: str
    recipe: str  # "tutorial", "course" or "base"
    changes: dict = field(default_factory=dict)  # a course variant: packing, gradient_checkpointing, attn, sampling
    seed: int = 0  # run k of every recipe uses seed k: LoRA's initialisation, data order and dropout vary by run


# --- counting what the model is fed ------------------------------------------------------------------------------
class BatchCounter:
    """Wraps a data collator and counts each batch it builds: real (attention_mask == 1) tokens and all positions."""

    def __init__(self, collate):
        self.collate, self.real, self.positions, self.batches = collate, 0, 0, 0

    def __call__(self, features):
        batch = self.collate(features)
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        self.positions += ids.numel()
        # TRL's padding-free (packed) batches carry no attention mask: one flat row of real tokens, nothing padded
        self.real += int(mask.sum()) if mask is not None else ids.numel()
        self.batches += 1
        return batch


# --- the child process: one training, measured --------------------------------------------------------------------
def recipe_config(settings: BenchSettings, changes: dict, seed: int = 0):
    """The profile's RunConfig, pointed at the benchmark's model, epochs and seed, with a variant's changes applied."""
    from .config import make_config

    cfg = make_config(settings.profile)
    cfg.model.model_id, cfg.train.num_train_epochs, cfg.train.seed = settings.model_id, settings.epochs, seed
    for name in ("packing", "gradient_checkpointing"):
        if name in changes:
            setattr(cfg.train, name, changes[name])
    cfg.train.logging_steps = 1  # every step's loss, for final_train_loss (see `final_train_loss`)
    return cfg


def final_train_loss(log_history: list[dict]) -> float | None:
    """The mean logged training loss over the last quarter of the optimizer steps (one step is noisy; the run's
    overall mean would count its first steps, which a run with fewer steps, such as a packed one, weighs more)."""
    losses = [h["loss"] for h in log_history if "loss" in h]
    tail = losses[-max(1, len(losses) // 4):]
    return sum(tail) / len(tail) if tail else None


def load_rows(settings: BenchSettings, cfg):
    """The benchmark's splits: the first `examples` training rows and `eval_rows` validation rows."""
    from .data import load_splits
    from .rundir import RunDir

    splits = load_splits(cfg, RunDir(Path(settings.data_dir)))
    train = splits["train"].select(range(min(settings.examples, len(splits["train"]))))
    validation = splits["validation"].select(range(min(settings.eval_rows, len(splits["validation"]))))
    return {"train": train, "validation": validation}


def build_course(settings: BenchSettings, job: Job, splits, out_dir: Path):
    """Recipe (b): make_trainer at the profile's defaults (plus a variant's change), evaluation and saving off."""
    from .lora import apply_lora
    from .model import load_model_and_tokenizer
    from .rundir import RunDir
    from .train import make_trainer

    cfg = recipe_config(settings, job.changes, job.seed)
    model, tokenizer = load_model_and_tokenizer(cfg)
    if "attn" in job.changes:  # load_base_model always asks for SDPA; the variant swaps it before LoRA is attached
        model.set_attn_implementation(job.changes["attn"])
    model = apply_lora(model, cfg)
    extra = {"train_sampling_strategy": job.changes["sampling"]} if "sampling" in job.changes else {}
    trainer = make_trainer(cfg, RunDir(out_dir), model, tokenizer, splits, eval_strategy="no", save_strategy="no",
                           disable_tqdm=True, report_to="none", **extra)
    return trainer, tokenizer


def tutorial_dataset(rows, tokenizer, max_length: int):
    """The tutorial's data: the chat-templated text, tokenized and padded to max_length, every row the same width."""
    from datasets import Dataset

    texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    enc = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True)
    return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})


def build_tutorial(settings: BenchSettings, job: Job, splits, out_dir: Path):
    """Recipe (a): plain Trainer, pad to 512, batch 2 x accumulation 4, the same LoRA, learning rate and schedule."""
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from .lora import apply_lora
    from .model import load_model_and_tokenizer
    from .train import keep_adapters_in_fp32, precision_flags

    cfg = recipe_config(settings, {}, job.seed)
    if settings.device == "cuda":  # the tutorial's GPU set-up: the base model in 8-bit
        cfg.model.quantization = "8bit"
    model, tokenizer = load_model_and_tokenizer(cfg)
    model = apply_lora(model, cfg)
    t = cfg.train
    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=settings.tutorial_batch,
        gradient_accumulation_steps=settings.tutorial_accumulation, learning_rate=t.learning_rate,
        num_train_epochs=t.num_train_epochs, warmup_steps=t.warmup_ratio, lr_scheduler_type=t.lr_scheduler_type,
        activation_checkpointing=t.gradient_checkpointing, seed=t.seed, eval_strategy="no", save_strategy="no",
        logging_steps=t.logging_steps,  # 1, as for the course (see recipe_config)
        report_to="none", disable_tqdm=True, label_names=["labels"], **precision_flags(cfg))
    trainer = Trainer(model=model, args=args, data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
                      train_dataset=tutorial_dataset(splits["train"], tokenizer, settings.tutorial_max_length))
    if args.fp16:  # as the course does: fp16 mixed precision needs fp32 trainable weights
        keep_adapters_in_fp32(trainer.model)
    return trainer, tokenizer


def answer_labels(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of a conversation and its labels: the assistant's tokens, everything else -100 (no loss)."""
    from .data import has_generation_markers

    if has_generation_markers(tokenizer):
        enc = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = enc["input_ids"], enc["assistant_masks"]
    else:  # as helpers.data.loss_mask_tokens: everything after the prompt is the answer
        ids = tokenizer.apply_chat_template(messages, return_dict=True)["input_ids"]
        n_prompt = len(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                                     return_dict=True)["input_ids"])
        mask = [0] * n_prompt + [1] * (len(ids) - n_prompt)
    return list(ids), [i if m else -100 for i, m in zip(ids, mask)]


def heldout_answer_loss(model, tokenizer, rows, batch_size: int = 8) -> float:
    """Mean cross-entropy per answer token on held-out rows: the one quality yardstick both recipes are judged by."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        chunk = rows.select(range(start, min(start + batch_size, len(rows))))
        pairs = [answer_labels(tokenizer, r["messages"]) for r in chunk]
        width = max(len(ids) for ids, _ in pairs)
        ids = torch.full((len(pairs), width), tokenizer.pad_token_id)
        labels, mask = torch.full_like(ids, -100), torch.zeros_like(ids)
        for k, (row_ids, row_labels) in enumerate(pairs):
            ids[k, :len(row_ids)], labels[k, :len(row_ids)], mask[k, :len(row_ids)] = \
                torch.tensor(row_ids), torch.tensor(row_labels), 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        target = labels[:, 1:].to(device)
        total += F.cross_entropy(logits[:, :-1].flatten(0, 1), target.flatten(), reduction="sum").item()
        count += int((target != -100).sum())
    return total / count


def memory_now(device: str) -> int:
    """Bytes in use now: the process's resident memory on the CPU, allocated tensors on a GPU."""
    import torch

    if device == "cuda":
        return torch.cuda.memory_allocated()
    import psutil

    return psutil.Process().memory_info().rss


def peak_memory(device: str) -> int:
    """The process's peak so far: max RSS on the CPU (Linux reports KiB), max allocated on a GPU."""
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed_train(trainer, device: str) -> float:
    """Seconds of trainer.train() alone (model loading and tokenization are not timed)."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.train()
    if device == "cuda":
        torch.cuda.synchronize()  # the last kernels finish before the clock stops
    return time.perf_counter() - start


def run_job(settings: BenchSettings, job: Job) -> dict:
    """The child process's work: build the recipe, train it, measure, and evaluate the held-out answer loss."""
    import torch
    import peft, transformers, trl  # noqa: F401,E401  (imported before the baseline, so every recipe counts alike)

    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline = memory_now(settings.device)
    splits = load_rows(settings, recipe_config(settings, {}))
    if job.recipe == "base":
        return {"heldout_answer_loss": base_model_loss(settings, splits)}
    with tempfile.TemporaryDirectory() as tmp:
        builder = build_tutorial if job.recipe == "tutorial" else build_course
        trainer, tokenizer = builder(settings, job, splits, Path(tmp))
        counter = trainer.data_collator = BatchCounter(trainer.data_collator)  # used from train() on
        train_s = timed_train(trainer, settings.device)
        peak = peak_memory(settings.device)  # before the evaluation below can raise it
        return {"train_s": train_s, "real_tokens": counter.real, "positions": counter.positions,
                "batches": counter.batches, "optimizer_steps": trainer.state.global_step,
                "real_tokens_per_s": counter.real / train_s, "padding_fraction": 1 - counter.real / counter.positions,
                "peak_gib": peak / GIB, "peak_rise_gib": (peak - baseline) / GIB,
                "final_train_loss": final_train_loss(trainer.state.log_history),
                "heldout_answer_loss": heldout_answer_loss(trainer.model, tokenizer, splits["validation"])}


def base_model_loss(settings: BenchSettings, splits) -> float:
    """The untrained base model's held-out answer loss: where both recipes start from."""
    from .model import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(recipe_config(settings, {}))
    return heldout_answer_loss(model, tokenizer, splits["validation"])


def child_main(argv: list[str]) -> int:
    """`python -m helpers.bench --child '{json}'`: one job, its result printed as a RESULT line."""
    if "--child" not in argv:
        print("run the benchmark with `python -m helpers bench` or `python benchmarks/recipes.py`", file=sys.stderr)
        return 2
    spec = json.loads(argv[argv.index("--child") + 1])
    result = run_job(BenchSettings(**spec["settings"]), Job(**spec["job"]))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --- the parent: settings, jobs, subprocesses ---------------------------------------------------------------------
def variant_jobs(settings: BenchSettings) -> list[Job]:
    """The course recipe with one technique changed: packing, checkpointing flipped, eager attention, length
    grouping."""
    from .config import make_config

    checkpointing = make_config(settings.profile).train.gradient_checkpointing
    return [Job("course + packing", "course", {"packing": True}),
            Job(f"course + checkpointing {'off' if checkpointing else 'on'}", "course",
                {"gradient_checkpointing": not checkpointing}),
            Job("course + eager attention", "course", {"attn": "eager"}),
            Job("course + length grouping", "course", {"sampling": "group_by_length"})]


def job_list(settings: BenchSettings, runs: int, variants: bool, base: bool = True) -> list[tuple[Job, int]]:
    """(job, run number) in the order they run: the recipes alternate, so drift in the machine hits them alike."""
    jobs = [Job("tutorial", "tutorial"), Job("course", "course")] + (variant_jobs(settings) if variants else [])
    first = [(Job("base model (untrained)", "base"), 0)] if base else []
    return first + [(Job(job.name, job.recipe, job.changes, seed=k), k) for k in range(runs) for job in jobs]


def run_in_subprocess(settings: BenchSettings, job: Job) -> dict:
    """One job in a fresh Python process (its own peak memory); an error comes back as {'error': ...}."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if settings.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # --device cpu on a GPU machine: the children must not see the GPU either
    if settings.threads:
        env["OMP_NUM_THREADS"] = str(settings.threads)
    spec = json.dumps({"settings": asdict(settings), "job": asdict(job)})
    load_before = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-m", "helpers.bench", "--child", spec], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        return {"error": (proc.stderr or proc.stdout)[-3000:]}
    # the 1-minute load average around the run: about the run's own threads when the machine is otherwise idle,
    # more when other work shared the cores (then the times are slower and noisier)
    return {**json.loads(line[len("RESULT "):]), "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def pick_device(requested: str) -> str:
    """'cuda' if asked for or (auto) available, else 'cpu'."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA GPU is visible to torch")
    return "cuda" if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()) else "cpu"


def prepare(device: str, args, workdir: Path) -> BenchSettings:
    """Build the GPU model (if any) and prepare the data once, in `workdir`; the settings every job shares."""
    from .config import make_config
    from .data import prepare_splits
    from .rundir import RunDir

    profile, model_id = ("t4", build_tinyllama(workdir / "tinyllama-shape")) if device == "cuda" else ("tiny", "tiny")
    cfg = make_config(profile)
    cfg.model.model_id = model_id
    prepare_splits(cfg, RunDir(workdir / "data-run"))  # the shipped dataset, cleaned and split as 01 does
    small = args.smoke
    return BenchSettings(device=device, profile=profile, model_id=model_id, data_dir=str(workdir / "data-run"),
                         examples=args.examples or (16 if small else 64 if device == "cpu" else 256),
                         epochs=args.epochs or (1.0 if small else cfg.train.num_train_epochs),
                         eval_rows=args.eval_rows or (8 if small else cfg.data.validation_size),
                         threads=args.threads or 0)


def build_tinyllama(folder: Path) -> str:
    """TinyLlama-1.1B's shape with random weights, built on the GPU from its config (no download)."""
    import torch

    from .model import MODEL_CHOICES
    from .tiny import build_shaped_model

    build_shaped_model(MODEL_CHOICES[TINYLLAMA].shape, folder, "cuda")
    torch.cuda.empty_cache()  # the parent's copy must not hold GPU memory the children need
    return str(folder)


# --- the report ---------------------------------------------------------------------------------------------------
def machine_info(device: str, matmul_flops: float, threads: int) -> dict:
    """What the numbers were measured on: CPU, cores, torch threads, GPU, and its measured matmul speed."""
    import torch

    from .machine import cpu_summary, gpu_info

    gpu = gpu_info() if device == "cuda" else None
    return {**cpu_summary(), "torch_threads": threads or torch.get_num_threads(), "gpu": gpu.name if gpu else None,
            "gpu_memory_gib": round(gpu.total_memory_gib, 1) if gpu else None,
            "compute_capability": ".".join(map(str, gpu.compute_capability)) if gpu else None,
            "measured_matmul_tflops": round(matmul_flops / 1e12, 3),
            "matmul_dtype": "float16" if device == "cuda" else "float32"}


def recipe_descriptions(settings: BenchSettings) -> dict[str, dict]:
    """Exactly what each recipe is, for the JSON and the README."""
    from .config import make_config

    cfg = make_config(settings.profile)
    t, gpu = cfg.train, settings.device == "cuda"
    shared = (f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} dropout={cfg.lora.dropout} on {cfg.lora.target_modules}; "
              f"lr {t.learning_rate}, {t.lr_scheduler_type} schedule, warmup {t.warmup_ratio}, {settings.epochs} "
              f"epochs on {settings.examples} examples, seed = run number; "
              + ("fp16 mixed precision" if gpu else "fp32 on the CPU") + "; SDPA attention (transformers' default)")
    tutorial = (f"padding='max_length' to {settings.tutorial_max_length} tokens over the chat-templated text; "
                "transformers.Trainer + DataCollatorForLanguageModeling(mlm=False): loss on prompt and answer, "
                f"padding masked; batch {settings.tutorial_batch} x accumulation {settings.tutorial_accumulation}; "
                f"gradient checkpointing {'on' if t.gradient_checkpointing else 'off'} (as the course's profile)"
                + ("; base model in 8-bit (bitsandbytes LLM.int8)" if gpu else ""))
    course = (f"helpers.train.make_trainer, profile {settings.profile}: TRL SFTTrainer, padding per batch to its "
              f"longest example (max_length {t.max_length}), loss on the assistant's answer only; batch "
              f"{t.per_device_train_batch_size} x accumulation {t.gradient_accumulation_steps}; gradient "
              f"checkpointing {'on' if t.gradient_checkpointing else 'off'}"
              + ("; base model in 4-bit NF4 (QLoRA)" if cfg.model.quantization == "4bit" and gpu else ""))
    return {"tutorial": {"description": tutorial, "shared": shared},
            "course": {"description": course, "shared": shared}}


def medians(runs: list[dict]) -> dict:
    """The median of every numeric metric over the runs that succeeded (None where none has it)."""
    ok = [r for r in runs if "error" not in r]
    out = {}
    for name in METRICS + ("real_tokens", "positions", "optimizer_steps"):
        values = [r[name] for r in ok if r.get(name) is not None]
        out[name] = statistics.median(values) if values else None
    return out


def spread(runs: list[dict], name: str) -> float:
    """(max - min) / median of one metric over the runs: how large the noise is."""
    values = [r[name] for r in runs if "error" not in r and r.get(name) is not None]
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


def ratio(b: dict, a: dict, name: str) -> float | None:
    """b's median over a's, for one metric."""
    return b[name] / a[name] if b.get(name) and a.get(name) else None


def add_mfu(runs: list[dict], settings: BenchSettings, matmul_flops: float) -> None:
    """Model FLOPs utilisation of each GPU run: 4 N FLOPs per real token (see `model_flops_per_token`)."""
    per_token = model_flops_per_token(settings)
    for r in runs:
        if "error" not in r and r.get("real_tokens_per_s"):
            achieved = per_token * r["real_tokens_per_s"]
            r["model_tflops_per_s"] = achieved / 1e12
            r["mfu_vs_t4_peak"], r["mfu_vs_measured_peak"] = achieved / T4_FP16_PEAK_FLOPS, achieved / matmul_flops


def model_flops_per_token(settings: BenchSettings) -> float:
    """Forward 2N plus backward through frozen weights 2N (budget.training_flops_per_token without the recompute:
    MFU counts the model's FLOPs, not the ones gradient checkpointing repeats). LoRA's own small matrices and the
    attention's sequence-squared term are left out, so the figure is a slight under-count."""
    from .budget import model_shape, training_flops_per_token

    return training_flops_per_token(model_shape(TINYLLAMA if settings.device == "cuda" else settings.model_id), False)


def compare(variant: dict, course: dict, name: str) -> int:
    """+1 if the variant's runs are above the course recipe's in at least 80% of all (variant run, course run)
    pairs and the medians differ by more than 3%; -1 for the reverse; 0 otherwise (within the noise). A rank
    comparison, so one run disturbed by other work on the machine cannot decide it alone."""
    v = [r[name] for r in variant["runs"] if "error" not in r]
    c = [r[name] for r in course["runs"] if "error" not in r]
    above = sum((x > y) + 0.5 * (x == y) for x in v for y in c) / (len(v) * len(c))
    r = ratio(variant["median"], course["median"], name) or 1.0
    return 1 if above >= 0.8 and r > 1.03 else -1 if above <= 0.2 and r < 0.97 else 0


def verdict(variant: dict, course: dict) -> dict:
    """Whether a technique pays here: faster, or less memory without being slower, at a held-out loss no higher;
    each judged beyond the run-to-run noise (see `compare`)."""
    names = ("real_tokens_per_s", "peak_gib", "heldout_answer_loss")
    speed, memory, loss = (ratio(variant["median"], course["median"], n) for n in names)
    if speed is None or memory is None or loss is None:
        return {"pays": None, "summary": "failed"}
    fast = {1: "faster", -1: "slower", 0: "within the noise"}[compare(variant, course, "real_tokens_per_s")]
    mem = {1: "more", -1: "less", 0: "within the noise"}[compare(variant, course, "peak_gib")]
    lost = {1: "higher", -1: "lower", 0: "within the noise"}[compare(variant, course, "heldout_answer_loss")]
    pays = lost != "higher" and (fast == "faster" or (mem == "less" and fast != "slower"))
    summary = (f"{speed:.2f}x real tokens/s ({fast}), {memory:.2f}x peak memory ({mem}), {loss:.2f}x held-out "
               f"answer loss ({lost}): {'pays' if pays else 'does not pay'} here")
    return {"pays": pays, "speed": fast, "memory": mem, "heldout_loss": lost, "speed_ratio": speed,
            "memory_ratio": memory, "loss_ratio": loss, "summary": summary}


def build_report(settings: BenchSettings, results: dict[str, list[dict]], base: dict, matmul_flops: float,
                 runs: int) -> dict:
    """The JSON: machine, versions, date, settings, every run, the medians, the ratio b/a and the verdicts."""
    from .machine import package_versions

    if settings.device == "cuda":
        for rs in results.values():
            add_mfu(rs, settings, matmul_flops)
    recipes = {name: {"runs": rs, "median": medians(rs), "tokens_per_s_spread": spread(rs, "real_tokens_per_s")}
               for name, rs in results.items()}
    for name, text in recipe_descriptions(settings).items():
        recipes[name].update(text)
    a, b = recipes["tutorial"]["median"], recipes["course"]["median"]
    ratios = {n: ratio(b, a, n) for n in ("real_tokens_per_s", "train_s", "peak_gib", "heldout_answer_loss")}
    return {"benchmark": "recipes: tutorial (a) vs course (b)",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": settings.device, "machine": machine_info(settings.device, matmul_flops, settings.threads),
            "versions": package_versions(),
            "settings": {**asdict(settings), "runs": runs, "dataset": recipe_config(settings, {}).data.dataset},
            "base_model_heldout_answer_loss": base.get("heldout_answer_loss"), "recipes": recipes,
            "ratio_course_over_tutorial": ratios, "target": target_check(a, b, ratios),
            "variants": {n: verdict(r, recipes["course"]) for n, r in recipes.items() if n.startswith("course +")},
            "notes": report_notes(settings)}


def target_check(a: dict, b: dict, ratios: dict) -> dict:
    """The issue's target: at least 3x the real tokens/s, peak memory no higher, held-out loss no worse."""
    speed, memory, loss = (ratios.get(n) for n in ("real_tokens_per_s", "peak_gib", "heldout_answer_loss"))
    return {"speedup_wanted": TARGET_SPEEDUP, "speedup_met": bool(speed and speed >= TARGET_SPEEDUP),
            "memory_no_higher": bool(memory and memory <= 1.0), "loss_tolerance": LOSS_TOLERANCE,
            "loss_no_worse": bool(loss and loss <= 1 + LOSS_TOLERANCE)}


def report_notes(settings: BenchSettings) -> list[str]:
    """How to read the numbers."""
    notes = ["real tokens: attention_mask == 1 positions in the batches fed to the model (packed batches have no "
             "padding); padding_fraction = padded positions / all positions",
             "train_s: trainer.train() alone; model loading and tokenization are not timed",
             "run k of every recipe uses seed k (LoRA initialisation, data order, dropout), so the spread of the "
             "held-out loss over runs shows its noise too; runs alternate between recipes",
             "final_train_loss is each recipe's own training loss (mean over the last quarter of the optimizer "
             "steps) and is not comparable across recipes (the tutorial "
             "averages over prompt and answer tokens, the course over answer tokens); heldout_answer_loss is the "
             "comparison: mean cross-entropy per answer token on held-out validation examples, computed alike"]
    if settings.device == "cuda":
        notes += ["peak_gib: torch.cuda.max_memory_allocated in the training process (weights included)",
                  "MFU: 4 N FLOPs per real token (forward 2N + backward through frozen weights 2N; no recompute, "
                  "LoRA and attention's s^2 term left out) / peak; the T4 peak is the 65 TFLOPS fp16 data-sheet "
                  "figure, so on another GPU mfu_vs_t4_peak says what share of a T4's peak this throughput would "
                  "be (it can exceed 1); mfu_vs_measured_peak is against this GPU's measured fp16 matmul speed"]
    else:
        notes.append("peak_gib: the training process's peak resident memory (ru_maxrss), libraries included; "
                     "peak_rise_gib: the rise above the process after its imports")
    return notes


# --- output: table, plot, command ---------------------------------------------------------------------------------
def format_table(report: dict) -> str:
    """The medians of every recipe, the ratio b/a, the target and the variants' verdicts, as plain text."""
    gpu = report["device"] == "cuda"
    head = f"{'recipe':<34}{'real tok/s':>11}{'train s':>9}{'peak GiB':>10}{'padding':>9}{'train loss':>11}" \
           f"{'held-out':>10}" + (f"{'MFU T4':>8}{'MFU here':>9}" if gpu else "")
    lines = [head, "-" * len(head)]
    for name, r in report["recipes"].items():
        m, ok = r["median"], sum("error" not in x for x in r["runs"])
        if m["real_tokens_per_s"] is None:
            lines.append(f"{name:<34}failed: {next(x['error'] for x in r['runs'] if 'error' in x)[-300:]}")
            continue
        row = f"{name:<34}{m['real_tokens_per_s']:>11.0f}{m['train_s']:>9.1f}{m['peak_gib']:>10.3f}" \
              f"{m['padding_fraction']:>9.1%}{m['final_train_loss']:>11.3f}{m['heldout_answer_loss']:>10.3f}"
        row += f"{m['mfu_vs_t4_peak']:>8.1%}{m['mfu_vs_measured_peak']:>9.1%}" if gpu else ""
        lines.append(row + (f"   ({ok} of {len(r['runs'])} runs)" if ok < len(r["runs"]) else ""))
    lines += ["", "medians of " + str(report["settings"]["runs"]) + " runs each; " + ratio_sentence(report)]
    lines += [f"{name}: {v['summary']}" for name, v in report["variants"].items()]
    return "\n".join(lines)


def ratio_sentence(report: dict) -> str:
    """One line: the course recipe against the tutorial's, and whether the target is met."""
    r, t = report["ratio_course_over_tutorial"], report["target"]
    if r["real_tokens_per_s"] is None:
        return "no ratio: a recipe failed"
    return (f"course / tutorial: {r['real_tokens_per_s']:.2f}x real tokens/s (target {t['speedup_wanted']:g}x: "
            f"{'met' if t['speedup_met'] else 'NOT met'}), {r['train_s']:.2f}x training time, {r['peak_gib']:.2f}x "
            f"peak memory ({'no higher' if t['memory_no_higher'] else 'HIGHER'}), {r['heldout_answer_loss']:.2f}x "
            f"held-out answer loss ({'no worse' if t['loss_no_worse'] else 'WORSE'})")


PANELS = (("real_tokens_per_s", "real tokens / s (higher is better)"),
          ("train_s", "training time, s (lower is better)"), ("peak_gib", "peak memory, GiB (lower is better)"),
          ("heldout_answer_loss", "held-out answer loss (lower is better)"))


def plot_recipes(report: dict):
    """One panel per metric: a bar for each recipe's median, a dot for each run; padding written beside the bars."""
    from .plots import _figure

    names = [n for n, r in report["recipes"].items() if r["median"]["real_tokens_per_s"] is not None]
    fig = _figure(15, 1.6 + 0.45 * len(names))
    colours = ["tab:gray" if n == "tutorial" else "tab:green" if n == "course" else "tab:blue" for n in names]
    for k, (metric, label) in enumerate(PANELS):
        ax = fig.add_subplot(1, len(PANELS), k + 1)
        draw_panel(ax, report, names, metric, colours)
        ax.set_yticks(range(len(names)), names if k == 0 else [""] * len(names), fontsize=8)
        base = report["base_model_heldout_answer_loss"]
        ax.set_title(label + (f"\nuntrained model: {base:.3g}" if metric == "heldout_answer_loss" and base else ""),
                     fontsize=9)
    fig.suptitle(plot_title(report), fontsize=10)
    fig.tight_layout()
    return fig


def draw_panel(ax, report: dict, names: list[str], metric: str, colours: list[str]) -> None:
    """One metric: median bars, each run as a dot, the median written right of the furthest dot."""
    medians_ = [report["recipes"][n]["median"][metric] for n in names]
    ax.barh(range(len(names)), medians_, color=colours, alpha=0.8)
    right = 0.0
    for row, n in enumerate(names):
        runs = [r[metric] for r in report["recipes"][n]["runs"] if "error" not in r]
        ax.plot(runs, [row] * len(runs), "k.", markersize=4)
        value = medians_[row]
        text = f"  {value:,.0f}" if value >= 100 else f"  {value:.3g}"
        if metric == "real_tokens_per_s":
            text += f"  (padding {report['recipes'][n]['median']['padding_fraction']:.0%})"
        ax.text(max(runs + [value]), row, text, va="center", fontsize=7)
        right = max(right, *runs, value)
    ax.invert_yaxis()
    ax.set_xlim(0, right * 1.5)
    ax.grid(alpha=0.3, axis="x")


def plot_title(report: dict) -> str:
    """Machine, date and the headline ratio."""
    m, r = report["machine"], report["ratio_course_over_tutorial"]
    where = m["gpu"] or f"{m['cpu_model']}, {m['cpu_cores']} cores, torch threads: {m['torch_threads']}"
    head = f"{r['real_tokens_per_s']:.1f}x real tokens/s" if r["real_tokens_per_s"] else "no ratio"
    return (f"Course recipe vs tutorial recipe: {head} ({where}; {report['date'][:10]}; bars: median of "
            f"{report['settings']['runs']} runs, dots: each run; memory: "
            f"{'max allocated' if report['device'] == 'cuda' else 'process peak RSS'})")


def add_bench_arguments(parser) -> None:
    """The options of `python -m helpers bench` and `python benchmarks/recipes.py`."""
    parser.add_argument("--runs", type=int, help="trainings per recipe; the median is reported (default 3; 1 with "
                                                  "--smoke)")
    parser.add_argument("--examples", type=int, help="training examples (default: 64 on the CPU, 256 on a GPU)")
    parser.add_argument("--epochs", type=float, help="epochs (default: the profile's: 5 on tiny, 2 on t4)")
    parser.add_argument("--eval-rows", type=int, help="validation examples for the held-out loss (default: 48)")
    parser.add_argument("--variants", action="store_true",
                        help="also measure the course recipe with packing, checkpointing flipped, eager attention "
                             "and length grouping")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: a CUDA GPU (TinyLlama-shaped model, t4 defaults) if there is one, else the CPU")
    parser.add_argument("--threads", type=int, help="torch threads per training process (default: torch's, the "
                                                     "cores); 1 is steadier on a machine shared with other work")
    parser.add_argument("--smoke", action="store_true", help="a tiny size, to check that it runs (1 run, 16 examples)")
    parser.add_argument("--out", type=Path, help="the JSON (default benchmarks/results/recipes_<device>.json); "
                                                 "the PNG goes beside it")


def cmd_bench(args) -> int:
    """Run the benchmark, print the table, write the JSON and the PNG; 1 if any run failed."""
    import torch

    from .budget import measured_matmul_flops

    device = pick_device(args.device)
    warn_if_busy(device, args.threads)
    runs = args.runs or (1 if args.smoke else 3)
    out = Path(args.out or REPO_ROOT / "benchmarks" / "results" / f"recipes_{device}.json")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        settings = prepare(device, args, Path(tmp))
        if args.threads:
            torch.set_num_threads(args.threads)
        matmul = measured_matmul_flops(1.0)
        # --smoke skips the untrained model's loss: one process less, and the smoke test stays quick
        results, base = run_all(settings, runs, args.variants, with_base=not args.smoke)
    report = build_report(settings, results, base, matmul, runs)
    print(format_table(report))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if report["ratio_course_over_tutorial"]["real_tokens_per_s"] is not None:
        plot_recipes(report).savefig(out.with_suffix(".png"), dpi=120, bbox_inches="tight")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    failed = any("error" in r for rs in results.values() for r in rs)
    return 1 if failed else 0


def warn_if_busy(device: str, threads: int | None) -> None:
    """Say so when other work already keeps the CPU busy: torch's threads then wait on each other and every time
    comes out several times slower (on a 2-core machine beside one other busy process, the smoke run's tutorial
    recipe trained in 36 s with 2 threads and in 2.6 s with 1)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if device == "cpu" and load > 0.5 * cores and not threads:
        print(f"warning: the 1-minute load average is {load:.1f} on {cores} cores: other work is running, so the "
              "times will be slow and noisy; wait for a quiet machine, or pass --threads 1", flush=True)


def run_all(settings: BenchSettings, runs: int, variants: bool,
            with_base: bool) -> tuple[dict[str, list[dict]], dict]:
    """Every job in turn, each in its own process, with a progress line; results grouped by recipe name."""
    results: dict[str, list[dict]] = {}
    base: dict = {}
    todo = job_list(settings, runs, variants, with_base)
    for i, (job, k) in enumerate(todo, 1):
        started = time.perf_counter()
        result = run_in_subprocess(settings, job)
        took = time.perf_counter() - started
        if job.recipe == "base":
            base = result
        else:
            results.setdefault(job.name, []).append(result)
        print(f"[{i}/{len(todo)}] {job.name} run {k + 1} ({took:.0f}s): {progress_line(result)}", flush=True)
    return results, base


def progress_line(r: dict) -> str:
    """One run's numbers, or its error's last line."""
    if "error" in r:
        return "FAILED: " + r["error"].strip().splitlines()[-1]
    if "train_s" not in r:
        return f"held-out answer loss {r['heldout_answer_loss']:.3f}"
    return (f"{r['real_tokens_per_s']:.0f} real tok/s, {r['train_s']:.1f}s, peak {r['peak_gib']:.3f} GiB, padding "
            f"{r['padding_fraction']:.0%}, held-out {r['heldout_answer_loss']:.3f}")


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
