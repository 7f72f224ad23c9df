"""The `tiny` profile's base model, built offline: a small Llama and a tokenizer trained on `data/corpus.txt`.

It stands in for a Hub model where there is no GPU and no network (CI, a laptop). Built once, deterministically,
then cached: every notebook loads the cached copy with the ordinary `from_pretrained`, like any Hub model.
Introduced in 02_model_loading.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .paths import DATA_DIR, cache_dir

# The chat template. `{% generation %}` marks what the assistant says, so TRL can train on those tokens only
# (assistant_only_loss). The end-of-turn token sits inside the markers: the model must learn to stop.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

# What is built. Changing anything here (or the corpus) gives a new cache key, hence a fresh build.
TINY_SPEC = {
    "version": 1,
    "vocab_size": 2048,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "max_position_embeddings": 512,
    "pretrain_block": 128,
    "pretrain_batch": 8,
    "pretrain_steps": 1200,
    "pretrain_lr": 6e-3,
    "seed": 0,
}


def tiny_model_dir() -> Path:
    """Where the tiny base model lives (built on first use): the cache folder plus a key of spec and corpus."""
    corpus = (DATA_DIR / "corpus.txt").read_bytes()
    key = hashlib.sha256(json.dumps(TINY_SPEC, sort_keys=True).encode() + corpus).hexdigest()[:12]
    return cache_dir() / f"tiny-base-{key}"


def ensure_tiny_model(verbose: bool = True) -> Path:
    """Return the folder of the tiny base model, building and caching it first if needed."""
    target = tiny_model_dir()
    if (target / "model.safetensors").exists():
        return target
    if verbose:
        print(f"Building the tiny base model once (about 2 minutes on a laptop CPU); cached in {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        _build(tmp, verbose=verbose)
        try:
            os.replace(tmp, target)  # atomic: a half-built folder is never seen under the final name
        except OSError:  # another process finished first; keep its copy
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def train_tiny_tokenizer(corpus: str):
    """A byte-level BPE tokenizer trained on the corpus, wrapped as a transformers tokenizer with our template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY_SPEC["vocab_size"], special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([corpus], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>",
                                   pad_token="<pad>", chat_template=CHAT_TEMPLATE, model_max_length=512)


def _build(out: Path, verbose: bool) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = TINY_SPEC
    torch.manual_seed(spec["seed"])
    corpus = (DATA_DIR / "corpus.txt").read_text(encoding="utf-8")
    tokenizer = train_tiny_tokenizer(corpus)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec["hidden_size"], intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"], num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_attention_heads"], max_position_embeddings=spec["max_position_embeddings"],
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    _pretrain(model, tokenizer, corpus, verbose)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "tiny_spec.json").write_text(json.dumps(spec, indent=2))


def _pretrain(model, tokenizer, corpus: str, verbose: bool) -> None:
    """Plain next-token prediction on the corpus: this is what makes it a *base* model.

    One paragraph per sequence: a name or city seen earlier in the paragraph is always in context when it comes
    back, so the model learns to look back and copy, the skill the fine-tuning task builds on.
    """
    import torch

    spec = TINY_SPEC
    paragraphs = [p for p in corpus.split("\n\n") if p.strip()]
    encoded = tokenizer(paragraphs, truncation=True, max_length=spec["pretrain_block"])["input_ids"]
    steps = spec["pretrain_steps"]
    opt = torch.optim.AdamW(model.parameters(), lr=spec["pretrain_lr"], weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec["pretrain_lr"], total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(spec["seed"])
    model.train()
    start, step = time.time(), 0
    while step < steps:
        for batch in torch.randperm(len(encoded), generator=gen).split(spec["pretrain_batch"])[: steps - step]:
            rows = [encoded[i] for i in batch]
            width = max(map(len, rows))
            ids = torch.full((len(rows), width), tokenizer.pad_token_id)
            for i, row in enumerate(rows):
                ids[i, : len(row)] = torch.tensor(row)
            mask = (ids != tokenizer.pad_token_id).long()
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad()
            step += 1
            if verbose and step % (steps // 5) == 0:
                print(f"  pretraining step {step}/{steps}: loss {loss.item():.2f} ({time.time() - start:.0f}s)")
    model.eval()


def build_shaped_model(shape, folder: Path, device: str = "cpu") -> Path:
    """A Llama with a real model's shape (a `budget.ModelShape`) and random weights, saved in fp16 with the tiny
    tokenizer: what GPU tests and benchmarks train when they must not download anything. It learns nothing useful,
    but it takes exactly the memory and time of the real model."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model())
    config = LlamaConfig(vocab_size=max(shape.vocab_size, len(tokenizer)), hidden_size=shape.hidden_size,
                         intermediate_size=shape.intermediate_size, num_hidden_layers=shape.num_layers,
                         num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_kv_heads,
                         max_position_embeddings=4096, tie_word_embeddings=shape.tie_embeddings,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).half()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return Path(folder)
