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
    """Pretraining taught it to reuse a name seen earlier in a paragraph (it cannot guess a name's first mention):
    the copying skill the fine-tuning task builds on."""
    import sys

    import torch

    from helpers.paths import DATA_DIR

    sys.path.insert(0, str(DATA_DIR))
    import make_datasets

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    names = {tok(" " + n)["input_ids"][0] for n in make_datasets.NAMES_TRAIN + make_datasets.NAMES_TEST}
    first, later = [], []
    for paragraph in (DATA_DIR / "corpus.txt").read_text().split("\n\n")[-40:]:
        ids = tok(paragraph)["input_ids"]
        with torch.no_grad():
            probs = model(torch.tensor([ids])).logits[0].softmax(-1)
        seen = set()
        for i in range(1, len(ids)):
            if ids[i] in names:
                (later if ids[i] in seen else first).append(probs[i - 1, ids[i]].item())
                seen.add(ids[i])
    p_first, p_later = sum(first) / len(first), sum(later) / len(later)
    assert p_later > 0.3 and p_later > 10 * p_first, (p_first, p_later)


def test_4bit_weights_are_counted_as_weights_not_packed_bytes():
    import logging

    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from helpers.lora import trainable_report
    from helpers.model import model_footprint
    from helpers.tiny import ensure_tiny_model

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    folder = ensure_tiny_model(verbose=False)
    full = AutoModelForCausalLM.from_pretrained(folder)
    packed = AutoModelForCausalLM.from_pretrained(folder, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32))
    assert sum(p.numel() for p in packed.parameters()) < sum(p.numel() for p in full.parameters())  # two per byte
    assert model_footprint(packed)["parameters"] == model_footprint(full)["parameters"]
    assert trainable_report(packed)["total"] == trainable_report(full)["total"]
