from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers.tiny import tiny_model_dir as tiny_model_dir_fn


def test_tiny_model_is_built_once_and_cached_as_safetensors(tiny_model_dir):
    from helpers.tiny import ensure_tiny_model

    weights = tiny_model_dir / "model.safetensors"
    built_at = weights.stat().st_mtime
    assert ensure_tiny_model(verbose=False) == tiny_model_dir == tiny_model_dir_fn()
    assert weights.stat().st_mtime == built_at, "a second call must reuse the cache, not rebuild"
    assert not list(tiny_model_dir.glob("*.bin")), "weights must be safetensors only"


def test_tokenizer_has_chat_template_with_generation_markers_and_safe_pad(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert "{% generation %}" in tok.chat_template
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.eos_token == "<|end|>"


def test_tiny_model_is_a_base_model_that_copies_from_context(tiny_model_dir):
    """Pretraining taught it to reuse a name seen earlier: the skill the fine-tuning task builds on."""
    import torch

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    enc = tok("The message from Kofi was short: Porto at 6pm. The name on the letter was", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert "Kofi" in tok.decode(out[0, enc["input_ids"].shape[1]:])
