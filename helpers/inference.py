"""Use the fine-tuned model: load base + adapter, generate, stream, merge. Introduced in 06_inference."""

from __future__ import annotations

from .config import RunConfig
from .rundir import RunDir


def load_finetuned(cfg: RunConfig, run: RunDir):
    """The base model with the run's LoRA adapter on top (a peft `PeftModel`), and the tokenizer."""
    from peft import PeftModel

    from .model import load_model_and_tokenizer, quiet_known_warnings
    from .train import ensure_adapter

    ensure_adapter(cfg, run)
    model, tokenizer = load_model_and_tokenizer(cfg)
    with quiet_known_warnings():
        model = PeftModel.from_pretrained(model, str(run.adapter_dir))
    model.eval()
    return model, tokenizer


def generation_settings(temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 64,
                        repetition_penalty: float = 1.0) -> dict:
    """Keyword arguments for `generate`: temperature 0 means greedy (deterministic)."""
    settings = {"max_new_tokens": max_new_tokens, "repetition_penalty": repetition_penalty}
    if temperature > 0:
        settings.update(do_sample=True, temperature=temperature, top_p=top_p)
    else:
        settings.update(do_sample=False)
    return settings


def _generate_kwargs(model, tokenizer, messages: list[dict], settings: dict) -> dict:
    """Everything `generate` needs for one reply: the templated prompt, the settings, and where to stop."""
    from .evaluation import stop_token_ids

    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True).to(model.device)
    return dict(**enc, eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id,
                **generation_settings(**settings))


def reply(model, tokenizer, messages: list[dict], **settings) -> str:
    """One assistant reply to a conversation, stopping at the end-of-turn token."""
    import torch

    kwargs = _generate_kwargs(model, tokenizer, messages, settings)
    with torch.no_grad():
        out = model.generate(**kwargs)
    return tokenizer.decode(out[0, kwargs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def stream_reply(model, tokenizer, messages: list[dict], **settings):
    """Yield the reply piece by piece as it is generated (TextIteratorStreamer, generation in a thread)."""
    from threading import Thread

    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    thread = Thread(target=model.generate,
                    kwargs=dict(**_generate_kwargs(model, tokenizer, messages, settings), streamer=streamer))
    thread.start()
    yield from streamer
    thread.join()


def merge_adapter(cfg: RunConfig, run: RunDir):
    """Fold the adapter into the base weights (W + BA) and save a plain model, safetensors, to run/merged.

    Merging needs full-precision base weights: a 4-bit base is loaded again unquantized (in the profile's compute
    dtype) for the merge, because adding BA into 4-bit weights would round the update away.
    """
    from dataclasses import replace

    from peft import PeftModel

    from .model import load_model_and_tokenizer

    unquantized = replace(cfg, model=replace(cfg.model, quantization="none"))
    base, tokenizer = load_model_and_tokenizer(unquantized)
    merged = PeftModel.from_pretrained(base, str(run.adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(run.merged_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(run.merged_dir))  # the chat template travels with the model
    return merged, tokenizer
