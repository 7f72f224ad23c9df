"""What a training run will cost before anything is loaded: GPU memory, from the model's config alone, and a
rough time. Introduced in 02_model_loading; the panel in 04_training_sft shows it live.

The estimate adds up what training holds at its peak, for one batch of `batch_size` examples of `seq_len` tokens:

    weights        linear layers at the chosen quantization (NF4: about 0.52 bytes per parameter with its scales),
                   the rest (embeddings, output head, norms) in fp32 for a quantized model (peft's k-bit
                   preparation upcasts them) or in the compute dtype
    LoRA           adapter weights and their gradients, fp32: 8 bytes per trainable parameter
    optimizer      AdamW's two moving averages, fp32: 8 bytes per trainable parameter
    activations    what the forward pass keeps for the backward pass: every layer's intermediate tensors, or,
                   with gradient checkpointing, only each layer's input plus one layer recomputed at a time
    logits         batch x tokens x vocabulary, in the compute dtype, then upcast to fp32 by the loss, with its
                   log-softmax and gradients: for large vocabularies this is the largest part
    CUDA overhead  the CUDA context and allocator slack (GPU only; not a tensor, but it takes memory)

The coefficients were checked against measured peaks (tests/test_budget.py on CPU, tests/test_gpu.py on CUDA).
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from .config import RunConfig

GIB = 2**30
T4_GIB = 14.6  # a "16 GB" T4 as Colab reports it: about 14.6 GiB usable
CUDA_OVERHEAD_GIB = 0.5  # CUDA context, cuBLAS workspace and allocator slack, roughly
NF4_BYTES = (4 + 0.127) / 8  # 4 bits, plus the double-quantized block scales (QLoRA paper: 0.127 bits each)
INT8_BYTES = 1.0 + 4 / 4096  # 8 bits, plus one fp32 scale per row of 4096


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only transformer's config that decide its memory."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    tie_embeddings: bool
    attention_bias: bool = False

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * (self.hidden_size // self.num_heads)

    def linear_layers(self) -> dict[str, tuple[int, int, str]]:
        """Per decoder layer: name -> (in_features, out_features, 'attention' | 'MLP')."""
        h, i, kv = self.hidden_size, self.intermediate_size, self.kv_dim
        return {"q_proj": (h, h, "attention"), "k_proj": (h, kv, "attention"), "v_proj": (h, kv, "attention"),
                "o_proj": (h, h, "attention"), "gate_proj": (h, i, "MLP"), "up_proj": (h, i, "MLP"),
                "down_proj": (i, h, "MLP")}

    @property
    def linear_parameters(self) -> int:
        per_layer = sum(a * b for a, b, _ in self.linear_layers().values())
        return self.num_layers * per_layer

    @property
    def parameters(self) -> int:
        h = self.hidden_size
        embeddings = self.vocab_size * h * (1 if self.tie_embeddings else 2)
        norms = self.num_layers * 2 * h + h
        bias = self.num_layers * (h + 2 * self.kv_dim) if self.attention_bias else 0
        return self.linear_parameters + embeddings + norms + bias


def shape_from_config(config) -> ModelShape:
    """A ModelShape from a transformers config object (what `AutoConfig.from_pretrained` returns)."""
    heads = config.num_attention_heads
    return ModelShape(hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                      num_layers=config.num_hidden_layers, num_heads=heads,
                      num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                      vocab_size=config.vocab_size,
                      tie_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
                      attention_bias=bool(getattr(config, "attention_bias", False))
                      or getattr(config, "model_type", "") == "qwen2")


@lru_cache(maxsize=64)  # the panel asks again at every slider move; a Hub id would mean a request each time
def model_shape(model_id: str) -> ModelShape:
    """The shape of a model without its weights: the course's catalogue, a local folder, or config.json from the Hub."""
    from transformers import AutoConfig

    from .model import MODEL_CHOICES, ModelLoadError, _explain_load_error, _token

    if model_id in MODEL_CHOICES and MODEL_CHOICES[model_id].shape is not None:
        return MODEL_CHOICES[model_id].shape  # recorded from the model's config.json, so no network is needed
    if model_id == "tiny":
        from .tiny import ensure_tiny_model

        source = str(ensure_tiny_model())
    else:
        source = model_id
    try:  # config.json only: a few kilobytes, never the weights
        config = AutoConfig.from_pretrained(source, trust_remote_code=False, token=_token())
    except (OSError, ValueError) as e:
        raise ModelLoadError(_explain_load_error(model_id, e)) from None
    return shape_from_config(getattr(config, "text_config", config))


def lora_parameters(shape: ModelShape, r: int, target_modules: str) -> int:
    """Trainable LoRA parameters: r x (in + out) for every adapted linear layer."""
    layers = shape.linear_layers()
    if target_modules == "all-linear":
        chosen = layers.values()
    elif target_modules == "attention":
        chosen = [v for v in layers.values() if v[2] == "attention"]
    else:
        names = {t.strip() for t in target_modules.split(",")}
        chosen = [v for k, v in layers.items() if k in names]
    return shape.num_layers * sum(r * (a + b) for a, b, _ in chosen)


def activation_bytes_per_token(shape: ModelShape, b: int, dropout: bool, quantized: bool) -> int:
    """Bytes one decoder layer keeps per token for the backward pass (b = bytes of the compute dtype).

    Counted tensor by tensor for a Llama-style layer with SDPA attention (no attention matrix is stored): the two
    RMSNorms keep an fp32 copy of their input (and, in a k-bit-prepared model, whose norms run in fp32, their fp32
    output too); the linear layers keep their inputs; attention keeps q, k, v, its output and the log-sum-exp; the
    MLP keeps gate, SiLU(gate), up and their product; LoRA's dropout keeps a copy of each adapted layer's input and
    a one-byte mask.
    """
    h, i, kv = shape.hidden_size, shape.intermediate_size, shape.kv_dim
    norms = 2 * 4 * h * (2 if quantized else 1)
    attention = b * (h + (h + 2 * kv) + h + h) + 4 * shape.num_heads  # q/k/v input, q k v, output, o input, lse
    mlp = b * (h + 4 * i)
    lora_dropout = (b + 1) * (4 * h + 2 * h + i) if dropout else 0  # q k v o inputs, gate up inputs, down input
    return norms + attention + mlp + lora_dropout


# TRL 1.16's SFTTrainer never builds the whole (tokens x vocabulary) logits: its fused LM head computes the loss
# 4,096 tokens x 32,768 vocabulary columns at a time (trl.kernels.chunked_logprob).
LOGITS_TILE = (4096, 32768)


def full_logits_gib(shape: ModelShape, tokens: int, b: int) -> float:
    """What the logits would take if they were built whole, as a plain transformers Trainer does: the logits in the
    compute dtype, their fp32 upcast's log-softmax and two fp32 gradients. For a large vocabulary this is most of
    the memory, which is why TRL computes them in tiles instead."""
    return tokens * shape.vocab_size * (b + 4 + 4 + 4) / GIB


@dataclass
class MemoryEstimate:
    """GiB per part of training at the peak, for one configuration; `total_gib` is what the GPU must hold."""

    model_id: str
    parts: dict[str, float]
    batch_size: int
    seq_len: int
    quantization: str
    dtype: str
    gradient_checkpointing: bool
    parameters: int
    lora_parameters: int

    @property
    def total_gib(self) -> float:
        return sum(self.parts.values())

    @property
    def tensors_gib(self) -> float:
        """Everything but the CUDA overhead: what torch.cuda.max_memory_allocated measures."""
        return self.total_gib - self.parts.get("CUDA overhead", 0.0)

    def as_dict(self) -> dict:
        return {**asdict(self), "total_gib": round(self.total_gib, 3)}


def estimate_training_memory(cfg: RunConfig, shape: ModelShape | None = None, seq_len: int | None = None,
                             on_gpu: bool | None = None) -> MemoryEstimate:
    """Peak memory of training with `cfg` (LoRA, QLoRA or, with cfg.method = "full", every weight), in GiB per part.
    `seq_len` defaults to max_length (worst case)."""
    shape = shape or model_shape(cfg.model.model_id)
    if on_gpu is None:
        import torch

        on_gpu = torch.cuda.is_available()
    t, m = cfg.train, cfg.model
    b = 4 if m.dtype == "float32" else 2
    seq_len = seq_len or t.max_length
    tokens = t.per_device_train_batch_size * seq_len
    other = shape.parameters - shape.linear_parameters
    if m.quantization == "none":
        weights = shape.parameters * b
    else:  # bitsandbytes quantizes the linear layers; peft's k-bit preparation upcasts everything else to fp32
        weights = shape.linear_parameters * (NF4_BYTES if m.quantization == "4bit" else INT8_BYTES) + other * 4
    full = cfg.method == "full"
    n_lora = 0 if full else lora_parameters(shape, cfg.lora.r, cfg.lora.target_modules)
    quantized = m.quantization != "none"
    per_layer = activation_bytes_per_token(shape, b, dropout=cfg.lora.dropout > 0 and not full, quantized=quantized)
    if t.gradient_checkpointing:  # each layer's input is kept (fp32 in a k-bit model); one layer is recomputed
        activations = tokens * (shape.num_layers * shape.hidden_size * (4 if quantized else b) + per_layer)
    else:
        activations = tokens * shape.num_layers * per_layer
    # one tile of logits and its gradient at a time (see LOGITS_TILE)
    logits = min(tokens, LOGITS_TILE[0]) * min(shape.vocab_size, LOGITS_TILE[1]) * 2 * b
    if full:  # every weight trains: fp32 weights (mixed precision keeps an fp32 master copy, bf16 runs keep bf16),
        # a gradient of the same size for each, and AdamW's two averages in the weights' dtype
        w = 2 if m.dtype == "bfloat16" else 4
        parts = {"weights": shape.parameters * w, "gradients": shape.parameters * w,
                 "optimizer state": shape.parameters * 2 * w}
    else:
        parts = {"weights": weights, "LoRA weights + gradients": n_lora * 8, "optimizer state": n_lora * 8}
    parts.update({"activations": activations, "logits": logits})
    parts = {k: v / GIB for k, v in parts.items()}
    if on_gpu:
        parts["CUDA overhead"] = CUDA_OVERHEAD_GIB
    return MemoryEstimate(cfg.model.model_id, parts, t.per_device_train_batch_size, seq_len, m.quantization,
                          m.dtype, t.gradient_checkpointing, shape.parameters, n_lora)


def estimate_merge_memory(cfg: RunConfig, shape: ModelShape | None = None, on_gpu: bool | None = None) -> dict:
    """06's merge, in GiB per model held at once: the adapter model of sections 1-4 (still loaded), the base loaded
    again unquantized in the compute dtype for the merge, and the merged model reloaded from disk for the check;
    plus what the merge writes to disk (GB). An estimate from the model's shape, like the training estimate."""
    shape = shape or model_shape(cfg.model.model_id)
    if on_gpu is None:
        import torch

        on_gpu = torch.cuda.is_available()
    m = cfg.model
    b = 4 if m.dtype == "float32" else 2
    other = shape.parameters - shape.linear_parameters
    if m.quantization == "none":
        adapter_model = shape.parameters * b
    else:
        adapter_model = shape.linear_parameters * (NF4_BYTES if m.quantization == "4bit" else INT8_BYTES) + other * 4
    n_lora = 0 if cfg.method == "full" else lora_parameters(shape, cfg.lora.r, cfg.lora.target_modules)
    parts = {"adapter model (sections 1-4)": (adapter_model + n_lora * 4) / GIB,
             "base, unquantized, merged": shape.parameters * b / GIB,
             "merged model reloaded (the check)": shape.parameters * b / GIB}
    if on_gpu:
        parts["CUDA overhead"] = CUDA_OVERHEAD_GIB
    return {"parts": parts, "total_gib": sum(parts.values()), "written_gb": shape.parameters * b / 1e9}


def estimate_dpo_memory(cfg: RunConfig, shape: ModelShape | None = None, seq_len: int | None = None,
                        on_gpu: bool | None = None) -> MemoryEstimate:
    """Peak memory of DPO with `cfg` on top of a LoRA/QLoRA adapter (08), in GiB per part.

    TRL's DPOTrainer puts each pair's chosen and rejected sequences in one batch, so a batch of B pairs is 2 x B
    sequences: activations and logits double against SFT at the same batch size. The reference pass runs without
    gradients (nothing is kept for the backward pass), through a frozen copy of the adapter ("ref"), which adds
    the adapter's weights once more; the base weights are held once.
    """
    doubled = cfg.copy()
    doubled.train.per_device_train_batch_size = 2 * cfg.train.per_device_train_batch_size
    estimate = estimate_training_memory(doubled, shape, seq_len, on_gpu)
    estimate.parts = {"reference adapter": estimate.lora_parameters * 4 / GIB, **estimate.parts}
    estimate.batch_size = cfg.train.per_device_train_batch_size
    return estimate


def memory_budget_gib() -> tuple[float, str]:
    """How much memory training may use here: this GPU's, or (no GPU) the machine's RAM."""
    from .machine import gpu_info

    gpu = gpu_info()
    if gpu is not None:
        return gpu.total_memory_gib, gpu.name
    import psutil

    return psutil.virtual_memory().total / GIB, "RAM, no GPU"


def fitting_changes(cfg: RunConfig, budget_gib: float, shape: ModelShape | None = None,
                    on_gpu: bool | None = None) -> list[tuple[str, object]]:
    """The config changes, tried in the order that costs the least quality and speed, that bring the estimate
    under 90% of `budget_gib`; [] if it already fits. Raises ValueError if even all of them are not enough."""
    shape = shape or model_shape(cfg.model.model_id)
    trial = cfg.copy()
    changes: list[tuple[str, object]] = []

    def fits() -> bool:
        return estimate_training_memory(trial, shape, on_gpu=on_gpu).total_gib <= 0.9 * budget_gib

    steps = [("train.gradient_checkpointing", True)]
    if cfg.model.quantization != "4bit" and on_gpu is not False and cfg.method != "full":  # full: weights must train
        steps.append(("model.quantization", "4bit"))
    while not fits() and (steps or trial.train.per_device_train_batch_size > 1 or trial.train.max_length > 256):
        if steps:
            name, value = steps.pop(0)
            section, field = name.split(".")
            if getattr(getattr(trial, section), field) == value:
                continue
            setattr(getattr(trial, section), field, value)
            if name == "model.quantization" and trial.model.dtype == "float32":
                trial.model.dtype = "float16"
            changes.append((name, value))
        elif trial.train.per_device_train_batch_size > 1:  # same effective batch: half the batch, twice the steps
            trial.train.per_device_train_batch_size //= 2
            trial.train.gradient_accumulation_steps *= 2
            changes = [c for c in changes if not c[0].startswith(("train.per_device", "train.gradient_acc"))]
            changes += [("train.per_device_train_batch_size", trial.train.per_device_train_batch_size),
                        ("train.gradient_accumulation_steps", trial.train.gradient_accumulation_steps)]
        else:
            trial.train.max_length = max(256, trial.train.max_length // 2)
            changes = [c for c in changes if c[0] != "train.max_length"] + [("train.max_length", trial.train.max_length)]
    if not fits():
        raise ValueError(f"{cfg.model.model_id} cannot train in {budget_gib:.1f} GiB even with 4-bit weights, batch 1 "
                         "and max_length 256: pick a smaller model")
    return changes


def memory_verdict(estimate: MemoryEstimate, budget_gib: float, budget_name: str, cfg: RunConfig | None = None,
                   shape: ModelShape | None = None) -> str:
    """One sentence: fits, tight, or does not fit, and then what to change so that it fits."""
    share = estimate.total_gib / budget_gib
    head = f"{estimate.total_gib:.1f} GiB of {budget_gib:.1f} GiB ({budget_name}, {share:.0%})"
    if share <= 0.75:
        return f"Fits: {head}."
    if share <= 0.9:
        return f"Tight: {head}. It should fit, with little room for longer batches."
    if cfg is None:
        return f"Does not fit: {head}."
    try:
        changes = fitting_changes(cfg, budget_gib, shape, on_gpu=estimate.parts.get("CUDA overhead") is not None)
    except ValueError as e:
        return f"Does not fit: {head}. {e}."
    todo = ", ".join(f"cfg.{k} = {v!r}" for k, v in changes)
    return f"Does not fit: {head}. To fit, set {todo}."


def training_flops_per_token(shape: ModelShape, gradient_checkpointing: bool) -> float:
    """Forward (2 per parameter) and backward through frozen weights (2: activation gradients only, no weight
    gradients), plus one more forward when checkpointing recomputes it."""
    per_param = 2 + 2 + (2 if gradient_checkpointing else 0)
    return per_param * shape.parameters


def measured_matmul_flops(seconds: float = 0.3) -> float:
    """This machine's matrix-multiply speed (FLOP/s), measured: fp16 on a GPU, fp32 on the CPU."""
    import torch

    on_gpu = torch.cuda.is_available()
    n = 4096 if on_gpu else 512
    a = torch.randn(n, n, device="cuda" if on_gpu else "cpu", dtype=torch.float16 if on_gpu else torch.float32)
    a @ a  # warm up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ a
        count += 1
    if on_gpu:
        torch.cuda.synchronize()
    return 2 * n**3 * count / (time.perf_counter() - start)


def rough_training_seconds(shape: ModelShape, cfg: RunConfig, tokens: int, steps: int,
                           matmul_flops: float, on_gpu: bool) -> float:
    """A rough training time (right within about 2x, no better): the FLOPs at the measured matrix-multiply speed
    (a quarter of it on a GPU, where 4-bit de-quantization and small matrices keep it from its peak), plus a fixed
    cost per layer for each micro-batch, for everything that is not a big matrix product: kernel launches, LoRA's
    small matrices, Python. For models of a few billion parameters and short examples that fixed cost dominates.
    Calibrated on measured runs: the tiny model on a 2-core CPU, a TinyLlama-shaped model on an H100."""
    flops = training_flops_per_token(shape, cfg.train.gradient_checkpointing) * tokens
    micro_batches = steps * cfg.train.gradient_accumulation_steps
    per_layer = 0.03 if on_gpu else 0.015
    return flops / (matmul_flops * (0.25 if on_gpu else 1.0)) + micro_batches * shape.num_layers * per_layer


def planned_steps(t, n_train: int, processes: int = 1) -> tuple[int, int, int]:
    """(effective batch, optimizer steps per epoch, total steps) as the Trainer will count them."""
    effective = t.per_device_train_batch_size * t.gradient_accumulation_steps * processes
    per_epoch = max(1, math.ceil(n_train / effective))
    return effective, per_epoch, t.max_steps if t.max_steps > 0 else math.ceil(per_epoch * t.num_train_epochs)


def training_plan(cfg: RunConfig, n_train: int, mean_tokens: float, shape: ModelShape | None = None,
                  matmul_flops: float | None = None, processes: int = 1) -> dict:
    """What the settings add up to: effective batch, optimizer steps, evaluations, tokens, memory and a rough time."""
    import torch

    t = cfg.train
    shape = shape or model_shape(cfg.model.model_id)
    on_gpu = torch.cuda.is_available()
    effective, per_epoch, steps = planned_steps(t, n_train, processes)
    tokens = int(steps * effective * (t.max_length if t.packing else min(mean_tokens, t.max_length)))
    estimate = estimate_training_memory(cfg, shape, on_gpu=on_gpu)
    seconds = rough_training_seconds(shape, cfg, tokens, steps, matmul_flops or measured_matmul_flops(), on_gpu)
    return {"effective_batch": effective, "steps_per_epoch": per_epoch, "steps": steps,
            "epochs": steps / per_epoch, "evaluations": steps // t.eval_steps, "tokens": tokens,
            "memory": estimate, "seconds": seconds}


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def measure_training_peak(cfg: RunConfig, seq_len: int, steps: int = 2) -> dict:
    """Train `steps` steps on full-length examples of `seq_len` tokens and measure the peak memory:
    torch.cuda.max_memory_allocated on a GPU; on the CPU the rise of the process's peak resident memory (so call
    it in a fresh process). Returns {'peak_gib', 'device', 'seq_len', 'batch_size'}."""
    import tempfile

    from datasets import Dataset

    from .lora import apply_lora
    from .model import load_model_and_tokenizer
    from .rundir import RunDir
    from .train import make_trainer

    import peft, trl  # noqa: F401  (imported before the baseline, so that their code is not counted)
    from transformers import AutoModelForCausalLM  # noqa: F401

    on_gpu, start = _peak_baseline()
    model, tokenizer = load_model_and_tokenizer(cfg)
    model = apply_lora(model, cfg)
    rows = _full_length_rows(tokenizer, seq_len, cfg.train.per_device_train_batch_size * steps)
    splits = {"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows[:1])}
    cfg = cfg.copy()
    cfg.train.max_length, cfg.train.max_steps, cfg.train.gradient_accumulation_steps = seq_len, steps, 1
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(cfg, RunDir(Path(tmp)), model, tokenizer, splits, save_strategy="no",
                               eval_strategy="no", logging_steps=steps, disable_tqdm=True, report_to="none")
        trainer.train()
    return {"peak_gib": _peak_since(on_gpu, start) / GIB, "device": "cuda" if on_gpu else "cpu",
            "seq_len": seq_len, "batch_size": cfg.train.per_device_train_batch_size}


def measure_merge_peak(cfg: RunConfig, run) -> dict:
    """06's section 5 as the notebook runs it, measured: the adapter model of sections 1-4 (its logits on a question),
    `merge_adapter` (the base loaded again unquantized, merged, saved to run/merged), and the merged folder reloaded
    for the check. Peak as in `measure_training_peak` (so on the CPU call it in a fresh process). Returns
    {'peak_gib', 'device', 'written_gb', 'merge_and_save_s'}: what `estimate_merge_memory` estimates, measured."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from .inference import merge_adapter
    from .model import load_model_and_tokenizer

    on_gpu, start = _peak_baseline()
    model, tokenizer = load_model_and_tokenizer(cfg)
    model = PeftModel.from_pretrained(model, str(run.adapter_dir)).eval()
    question = [{"role": "user", "content": "Where do we meet?"}]
    enc = tokenizer.apply_chat_template(question, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True).to(model.device)
    with torch.no_grad():
        model(**enc)
    began = time.perf_counter()
    merged, _ = merge_adapter(cfg, run)
    seconds = time.perf_counter() - began
    reloaded = AutoModelForCausalLM.from_pretrained(run.merged_dir, dtype=merged.dtype, device_map=model.device)
    with torch.no_grad():
        reloaded(**enc)
    written = sum(p.stat().st_size for p in run.merged_dir.glob("*.safetensors"))
    return {"peak_gib": _peak_since(on_gpu, start) / GIB, "device": "cuda" if on_gpu else "cpu",
            "written_gb": written / 1e9, "merge_and_save_s": seconds}


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _peak_baseline() -> tuple[bool, int]:
    """Where a peak measurement starts: (on a GPU?, bytes in use now), with the GPU's peak counter reset."""
    import torch

    on_gpu = torch.cuda.is_available()
    gc.collect()  # models left over from earlier work would be freed mid-measurement and hide part of the peak
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return True, torch.cuda.memory_allocated()
    return False, _rss_bytes()


def _peak_since(on_gpu: bool, start: int) -> int:
    """Bytes of the peak above `start`: torch.cuda.max_memory_allocated on a GPU, the process's peak resident memory
    on the CPU."""
    import resource

    import torch

    if on_gpu:
        return torch.cuda.max_memory_allocated() - start
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start


def _full_length_rows(tokenizer, seq_len: int, n: int) -> list[dict]:
    """Chat examples whose replies run past `seq_len` tokens, so that every one is cut to exactly seq_len."""
    import random

    rng = random.Random(0)
    words = [w for w in tokenizer.get_vocab() if w.isalpha()][:500] or ["word"]
    reply = " ".join(rng.choice(words) for _ in range(seq_len * 2))
    return [{"messages": [{"role": "user", "content": f"Example {k}: repeat some words."},
                          {"role": "assistant", "content": reply}]} for k in range(n)]
