"""Load the base model and its tokenizer, with the precision and quantization the profile asks for.
Introduced in 02_model_loading.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from .budget import ModelShape
from .config import RunConfig


@dataclass(frozen=True)
class ModelChoice:
    """A model the course suggests: its size, what it is good for, and its shape (from its config.json)."""

    model_id: str
    size: str
    note: str
    shape: ModelShape | None = None
    gated: bool = False


# Shapes copied from each model's config.json (hidden, MLP, layers, heads, KV heads, vocabulary, tied embeddings);
# the parameter counts they give match the published sizes. They let the memory estimate work offline.
MODEL_CHOICES = {c.model_id: c for c in [
    ModelChoice("tiny", "1M", "the course's offline model (4 layers), shipped in data/tiny_base; CPU"),
    ModelChoice("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "1.1B", "the t4 default: Llama-2 architecture, 32k vocabulary",
                ModelShape(2048, 5632, 22, 32, 4, 32000, False)),
    ModelChoice("Qwen/Qwen2.5-0.5B-Instruct", "0.5B", "small and strong for its size; 152k vocabulary, so the "
                "logits take much of the memory", ModelShape(896, 4864, 24, 14, 2, 151936, True, True)),
    ModelChoice("Qwen/Qwen2.5-1.5B-Instruct", "1.5B", "a clear step up in quality; fits a T4 in 4-bit",
                ModelShape(1536, 8960, 28, 12, 2, 151936, True, True)),
    ModelChoice("HuggingFaceTB/SmolLM2-360M-Instruct", "360M", "fast to train; good for trying settings",
                ModelShape(960, 2560, 32, 15, 5, 49152, True)),
    ModelChoice("HuggingFaceTB/SmolLM2-1.7B-Instruct", "1.7B", "fully open data and recipe",
                ModelShape(2048, 8192, 24, 32, 32, 49152, True)),
    ModelChoice("meta-llama/Llama-3.2-1B-Instruct", "1.2B", "gated: accept the licence on huggingface.co and "
                "add an HF_TOKEN", ModelShape(2048, 8192, 16, 32, 8, 128256, True), gated=True),
    ModelChoice("microsoft/Phi-3-mini-4k-instruct", "3.8B", "the largest here: 4-bit and a short max_length on a T4",
                ModelShape(3072, 8192, 32, 32, 32, 32064, False)),
]}


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says why and what to do."""


def model_source(cfg: RunConfig) -> str:
    """Where from_pretrained reads the weights: the built tiny model's folder, or the Hub id / folder as given."""
    if cfg.model.model_id == "tiny":
        from .tiny import ensure_tiny_model

        return str(ensure_tiny_model())
    return cfg.model.model_id


def quantization_config(cfg: RunConfig):
    """bitsandbytes settings: 4-bit NF4 with double quantization (QLoRA), 8-bit, or None (02's BitsAndBytesConfig)."""
    if cfg.model.quantization == "none":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if cfg.model.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=getattr(torch, cfg.model.dtype))


def load_tokenizer(cfg: RunConfig):
    """The tokenizer, with a pad token that is not the end-of-sequence token: 02's tokenizer cell, as a function."""
    from transformers import AutoTokenizer

    with explain_load_errors(cfg.model.model_id):
        tokenizer = AutoTokenizer.from_pretrained(model_source(cfg), trust_remote_code=False, token=_token())
    return ensure_pad_token(tokenizer)


def ensure_pad_token(tokenizer):
    """Give the tokenizer a pad token distinct from EOS (the lines 02 writes out, then `check_pad_token`).

    If padding reused EOS, code that masks padding by token id would also mask every real EOS, and the model would
    never learn to stop. Llama-family tokenizers have an unused <unk> we can pad with instead.
    """
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.pad_token = tokenizer.unk_token
    check_pad_token(tokenizer)
    return tokenizer


def check_pad_token(tokenizer) -> None:
    """Raise, with the fix, if the tokenizer still has no pad token distinct from EOS (no <unk> to reuse)."""
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ModelLoadError("this tokenizer has no pad token distinct from EOS and no <unk> to reuse; add one "
                             "with tokenizer.add_special_tokens({'pad_token': '<pad>'}) and resize the model's "
                             "embeddings (model.resize_token_embeddings(len(tokenizer)))")


@contextlib.contextmanager
def explain_load_errors(model_id: str):
    """Turn from_pretrained's OSError (a misspelt id, a gated model, no network, an incomplete folder) into a
    ModelLoadError that says what to do, without the library's traceback."""
    try:
        yield
    except OSError as e:
        raise ModelLoadError(_explain_load_error(model_id, e)) from None


def load_base_model(cfg: RunConfig):
    """The base model as the profile wants it: fp32 on CPU, 4-bit NF4 + fp16 on a T4, bf16 on Ampere.

    02's `from_pretrained` cell, as a function (tests/test_one_truth.py holds the two together). The one difference:
    under `accelerate launch` each process puts the model on its own GPU (LOCAL_RANK); in a notebook that is GPU 0.
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the per-shard loading bar; Hub downloads keep their own progress bar
    bnb_config = quantization_config(cfg)
    if bnb_config is not None and not torch.cuda.is_available():
        print("Note: loading a bitsandbytes-quantized model without a GPU; this works but is slow.")
    with explain_load_errors(cfg.model.model_id):
        model = AutoModelForCausalLM.from_pretrained(
            model_source(cfg),
            quantization_config=bnb_config,
            dtype=weights_dtype(cfg),
            device_map={"": int(os.environ.get("LOCAL_RANK", 0))} if torch.cuda.is_available() else None,
            attn_implementation="sdpa",
            trust_remote_code=False,
            use_safetensors=True,
            token=_token(),
        )
    if bnb_config is not None and not torch.cuda.is_available():
        keep_cpu_4bit_trainable(model)
    return model


def weights_dtype(cfg: RunConfig):
    """The dtype the weights are loaded in: the compute dtype, except for full fine-tuning under fp16 mixed
    precision, whose weights must stay fp32 (the optimizer updates them; fp16 copies are made for each step).
    With frozen weights (LoRA, QLoRA) fp16 is fine: only the fp32 adapters are updated."""
    import torch

    if cfg.method == "full" and cfg.model.dtype == "float16":
        return torch.float32
    return getattr(torch, cfg.model.dtype)


def keep_cpu_4bit_trainable(model) -> None:
    """Stop bitsandbytes repacking 4-bit weights for fast CPU inference, which breaks training afterwards.

    On a CPU with AVX512-BF16, bitsandbytes 0.50's Linear4bit converts its weight to a packed inference layout the
    first time it runs without gradients (an evaluation, a generation) and keeps it; the next training steps then
    compute wrong gradients (measured on the tiny model: QLoRA's eval loss stuck near 1.4 instead of 0.14 when one
    answer was generated before training). A GPU never takes this path.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def load_model_and_tokenizer(cfg: RunConfig):
    """Both, with the model's generation config using the tokenizer's pad token."""
    tokenizer = load_tokenizer(cfg)
    model = load_base_model(cfg)
    model.generation_config.pad_token_id = model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def model_footprint(model) -> dict:
    """Parameter count and the memory the weights take, as the notebook reports them."""
    # transformers counts a bitsandbytes 4-bit tensor's weights, not its packed bytes (two weights per byte)
    return {"parameters": model.num_parameters(), "weights_mib": round(model.get_memory_footprint() / 2**20, 1),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "device": str(next(model.parameters()).device)}


def _token():
    from .machine import hf_token

    return hf_token()


def _explain_load_error(model_id: str, error: Exception) -> str:
    text = str(error)
    if Path(model_id).exists():
        return f"{model_id}: this folder does not hold a complete model (config.json, *.safetensors, tokenizer): {text[:200]}"
    if "gated" in text.lower() or "401" in text or "403" in text:
        return (f"{model_id} is gated: accept its licence on huggingface.co, then add an HF_TOKEN "
                "(Colab: the key icon, 'Secrets'; elsewhere: the HF_TOKEN environment variable)")
    return (f"could not load {model_id!r}: check the spelling of the Hub id (owner/name), your network "
            "(the Hub is needed for any model except 'tiny'), or give a local folder")
