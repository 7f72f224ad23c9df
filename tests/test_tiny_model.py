import json
import re
import shutil

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers import tiny


def test_the_tiny_model_is_shipped_as_safetensors_and_every_file_matches_its_checksum(tiny_model_dir):
    assert tiny_model_dir == tiny.SHIPPED_DIR
    manifest = tiny.verify_tiny_model()
    assert set(manifest["files"]) == {p.name for p in tiny_model_dir.iterdir() if p.name != tiny.MANIFEST}
    assert "model.safetensors" in manifest["files"]
    assert not list(tiny_model_dir.glob("*.bin")) and not list(tiny_model_dir.glob("*.pt")), "safetensors only"


def test_the_shipped_model_was_built_from_todays_spec_and_corpus():
    """A change to TINY_SPEC or data/corpus.txt without a rebuild would make the shipped model a stranger to its
    own recipe: caught here."""
    manifest = tiny.verify_tiny_model()
    assert manifest["spec"] == tiny.TINY_SPEC, "TINY_SPEC changed: rebuild with python -m helpers build-tiny-model --replace"
    assert manifest["corpus_sha256"] == tiny.corpus_sha256(), "data/corpus.txt changed: rebuild the tiny model"


def test_a_damaged_or_missing_file_is_refused_with_the_fix(tmp_path):
    copy = tmp_path / "tiny_base"
    shutil.copytree(tiny.SHIPPED_DIR, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit
    weights.write_bytes(bytes(data))
    with pytest.raises(tiny.TinyModelError, match=r"model\.safetensors is changed.*git checkout"):
        tiny.verify_tiny_model(copy)
    (copy / "tokenizer.json").unlink()
    (copy / "model.safetensors").write_bytes((tiny.SHIPPED_DIR / "model.safetensors").read_bytes())
    with pytest.raises(tiny.TinyModelError, match=r"tokenizer\.json is missing"):
        tiny.verify_tiny_model(copy)
    (copy / tiny.MANIFEST).unlink()
    with pytest.raises(tiny.TinyModelError, match="build-tiny-model"):
        tiny.verify_tiny_model(copy)


def test_the_rebuild_command_builds_a_complete_model_and_compares_it(tmp_path, monkeypatch):
    """The recipe that made the shipped model still runs (cut to 20 pretraining steps here; the real rebuild takes
    minutes), writes a manifest, and says how it differs from the shipped model."""
    monkeypatch.setitem(tiny.TINY_SPEC, "pretrain_steps", 20)
    out = tmp_path / "rebuilt"
    manifest = tiny.build_tiny_model(out, verbose=False)
    assert tiny.verify_tiny_model(out) == manifest and manifest["spec"]["pretrain_steps"] == 20
    diff = tiny.compare_with_shipped(out)
    assert not diff["identical"] and "model.safetensors" in diff["files_that_differ"]
    assert diff["largest_weight_difference"] > 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(tiny.SHIPPED_DIR).get_vocab(), \
        "the tokenizer is trained deterministically from the corpus"
    assert (out / "tokenizer.model").read_bytes() == (tiny.SHIPPED_DIR / "tokenizer.model").read_bytes()


def test_transformers_splits_text_exactly_as_the_sentencepiece_model_does(tiny_model_dir):
    """llama.cpp reads tokenizer.model (06's GGUF export), transformers reads tokenizer.json: both must give the same
    tokens, on the corpus and on every chat the course trains on, special tokens included."""
    import sentencepiece as spm

    from helpers.paths import DATA_DIR

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    sp = spm.SentencePieceProcessor(model_file=str(tiny_model_dir / "tokenizer.model"))
    texts = [p for p in (DATA_DIR / "corpus.txt").read_text(encoding="utf-8").split("\n\n") if p.strip()]
    for path in sorted((DATA_DIR / "meetings").glob("*.jsonl")) + [DATA_DIR / "chat_sample.jsonl"]:
        texts += [tok.apply_chat_template(json.loads(line)["messages"], tokenize=False)
                  for line in path.read_text(encoding="utf-8").splitlines()]
    texts.append("Ünïcode, 日本語 and emoji 🦙 fall back to bytes\t\n  ")
    specials = {t: tok.convert_tokens_to_ids(t) for t in ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")}
    for text in texts:
        expected = []
        for piece in re.split("(" + "|".join(map(re.escape, specials)) + ")", text):
            expected += [specials[piece]] if piece in specials else sp.encode(piece) if piece else []
        assert tok(text, add_special_tokens=False)["input_ids"] == expected, text[:80]
    assert len(texts) > 2000


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
    every = make_datasets.NAMES_TRAIN + make_datasets.NAMES_VALIDATION + make_datasets.NAMES_TEST
    # " Nils" inside a sentence and "Nils" opening a line are different tokens of one name
    names = {ids[0]: n for n in every for prefix in (" ", "") if len(ids := tok(prefix + n)["input_ids"]) == 1}
    first, later = [], []
    for paragraph in (DATA_DIR / "corpus.txt").read_text().split("\n\n")[-40:]:
        ids = tok(paragraph)["input_ids"]
        with torch.no_grad():
            probs = model(torch.tensor([ids])).logits[0].softmax(-1)
        for i in range(1, len(ids)):
            if ids[i] in names:
                seen = names[ids[i]] in tok.decode(ids[:i])  # earlier in the paragraph, in whatever tokens
                (later if seen else first).append(probs[i - 1, ids[i]].item())
    p_first, p_later = sum(first) / len(first), sum(later) / len(later)
    assert p_later > 0.6 and p_later > 10 * p_first, (p_first, p_later)  # measured: 0.75 and 0.045


def test_4bit_weights_are_counted_as_weights_not_packed_bytes():
    import torch
    from transformers import BitsAndBytesConfig

    from helpers.lora import trainable_report
    from helpers.model import model_footprint

    folder = tiny.ensure_tiny_model(verbose=False)
    full = AutoModelForCausalLM.from_pretrained(folder)
    packed = AutoModelForCausalLM.from_pretrained(folder, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32))
    assert sum(p.numel() for p in packed.parameters()) < sum(p.numel() for p in full.parameters())  # two per byte
    assert model_footprint(packed)["parameters"] == model_footprint(full)["parameters"]
    assert trainable_report(packed)["total"] == trainable_report(full)["total"]
