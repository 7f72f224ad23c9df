"""06's GGUF export on the t4 profile's model shape, offline: TinyLlama's architecture and tokenizer, random weights.

    python benchmarks/export_tinyllama_shape.py [--tokenizer-model PATH] [--layers 22] [--out FILE]

The t4 profile exports a merged TinyLlama/TinyLlama-1.1B-Chat-v1.0. Without the Hub its weights are out of reach,
but what decides whether the export *works* (the converter reads the model, llama.cpp tokenizes every prompt as
transformers does, the chat template and the end-of-turn token travel, the Modelfile's TEMPLATE writes the same
prompts) and what the files *weigh* depends only on the architecture, the tokenizer and the template. This script
builds a model of TinyLlama's shape (its config.json: hidden 2048, MLP 5632, 22 layers, 32 heads, 4 KV heads,
vocabulary 32000) with random fp16 weights (what 06's merge writes on a T4), TinyLlama's chat template, and its
SentencePiece tokenizer, then runs 06's steps through helpers.export: prepare_for_gguf, convert_to_gguf, quantize_gguf
(q8_0, q4_k_m), and checks, on the 60 test prompts of data/meetings, that llama.cpp renders and tokenizes each prompt
exactly as transformers does. It records sizes, tensor types and times. Answer agreement is not measured: random
weights answer nothing, so it needs the real fine-tuned model (06 on a T4).

The tokenizer: TinyLlama uses Llama 2's SentencePiece model (32,000 pieces). Without `--tokenizer-model`, TinyLlama's
own tokenizer files come from the Hub; offline, `--tokenizer-model` takes that SentencePiece file (for instance the
copy of Llama 2's in karpathy/llama2.c), loaded with the settings of TOKENIZER_CONFIG below.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "results" / "export_tinyllama_shape_cpu.json"
TINYLLAMA = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
# TinyLlama-1.1B-Chat-v1.0's chat template (the Zephyr template) and special tokens. The Hub's files are out of reach
# here: `legacy` is False as in transformers 5's LlamaTokenizer, which applies that default when a config has none;
# with TinyLlama's own files, check `AutoTokenizer.from_pretrained(TINYLLAMA).legacy` (the JSON records it)
TINYLLAMA_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
TOKENIZER_CONFIG = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                    "unk_token": "<unk>", "pad_token": "</s>", "add_bos_token": True, "add_eos_token": False,
                    "legacy": False, "model_max_length": 2048, "padding_side": "right"}


def build_base(folder: Path, tokenizer_files: Path | None, layers: int):
    """A TinyLlama-shaped base model folder: random fp16 weights, TinyLlama's tokenizer and chat template (its own
    files from the Hub, or, offline, its SentencePiece model with the settings above)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True)
    if tokenizer_files is None:  # TinyLlama's own tokenizer files, chat template included
        from huggingface_hub import snapshot_download

        shutil.copytree(snapshot_download(TINYLLAMA, allow_patterns=["tokenizer*", "special_tokens_map.json"]),
                        folder, dirs_exist_ok=True)
    else:
        shutil.copy(tokenizer_files, folder / "tokenizer.model")
        (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = tokenizer.chat_template or TINYLLAMA_TEMPLATE
    config = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=layers, num_attention_heads=32,
                         num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float16)
    return model, tokenizer


def legacy_tokenizer(base: Path):
    """The same tokenizer loaded with `legacy=True`: SentencePiece's dummy prefix after every special token, as
    llama.cpp applies it (transformers 5's LlamaTokenizer defaults to legacy=False: a prefix at the start only)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, legacy=True)
    tokenizer.chat_template = tokenizer.chat_template or TINYLLAMA_TEMPLATE
    return tokenizer


def check_prompts(llm, tokenizer, conversations: list[list[dict]]) -> dict:
    """On each test conversation: 06's checks of the prompt (the file's template writes what transformers writes,
    llama.cpp splits it into the same tokens), and the same token check on the whole conversation, answer included."""
    from helpers.export import prompt_checks

    template_differs, tokens_differ = [], []
    for i, messages in enumerate(conversations):
        checks = prompt_checks(llm, tokenizer, messages[:-1])
        whole = tokenizer.apply_chat_template(messages, tokenize=False)
        same_whole = llm.tokenize(whole.encode(), add_bos=False, special=True) == \
            tokenizer(whole, add_special_tokens=False)["input_ids"]
        if not checks["template"]:
            template_differs.append(i)
        if not (checks["tokens"] and same_whole):
            tokens_differ.append(i)
    return {"prompts": len(conversations), "template_differs_on": template_differs,
            "tokens_differ_on": tokens_differ}


def first_difference(llm, tokenizer, messages: list[dict]) -> dict | None:
    """Where llama.cpp's tokens of a whole conversation first part from transformers', as pieces around that place."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    hf = tokenizer(text, add_special_tokens=False)["input_ids"]
    cpp = llm.tokenize(text.encode(), add_bos=False, special=True)
    at = next((i for i, (a, b) in enumerate(zip(hf, cpp)) if a != b), None)
    if at is None and len(hf) != len(cpp):
        at = min(len(hf), len(cpp))
    if at is None:
        return None
    window = slice(max(at - 3, 0), at + 3)
    return {"token": at, "transformers": tokenizer.convert_ids_to_tokens(hf[window]),
            "llama.cpp": tokenizer.convert_ids_to_tokens(cpp[window])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer-model", type=Path, help="TinyLlama's (Llama 2's) SentencePiece tokenizer.model")
    parser.add_argument("--layers", type=int, default=22, help="22 is TinyLlama's; fewer for a quick check")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import llama_cpp
    import transformers

    from helpers.export import (chat_wrappers, check_wrappers, convert_to_gguf, gguf_metadata, load_gguf,
                                prepare_for_gguf, quantize_gguf, tensor_types)

    rows = [json.loads(line) for line in (Path(__file__).resolve().parents[1] / "data" / "meetings" /
                                          "test.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    conversations = [r["messages"] for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, tokenizer = build_base(tmp / "base", args.tokenizer_model, args.layers)
        merged = tmp / "merged"  # what 06's merge cell writes: safetensors weights and the tokenizer, fp16
        start = time.perf_counter()
        model.save_pretrained(merged, safe_serialization=True)
        tokenizer.save_pretrained(merged)
        del model
        timings = {"save_merged_s": time.perf_counter() - start}
        written = sum(p.stat().st_size for p in merged.iterdir())
        prepare_for_gguf(merged, str(tmp / "base"))
        files, start = {}, time.perf_counter()
        files["f16"] = convert_to_gguf(merged, tmp / "export" / "model-f16.gguf", "f16")
        timings["convert_f16_s"] = time.perf_counter() - start
        for quant in ("q8_0", "q4_k_m"):
            start = time.perf_counter()
            files[quant] = quantize_gguf(files["f16"], tmp / "export" / f"model-{quant}.gguf", quant)
            timings[f"quantize_{quant}_s"] = time.perf_counter() - start
        llm = load_gguf(files["q4_k_m"], n_ctx=2048)
        wrappers = chat_wrappers(tokenizer)
        record = {
            "date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(), "transformers": transformers.__version__,
            "llama_cpp_python": llama_cpp.__version__, "layers": args.layers, "weights": "random, fp16",
            "tokenizer": "TinyLlama's files from the Hub" if args.tokenizer_model is None else
                         f"{args.tokenizer_model.name} ({args.tokenizer_model.stat().st_size} bytes) with the settings "
                         "of TOKENIZER_CONFIG",
            "merged_folder_bytes": written,
            "files": {q: {"bytes": p.stat().st_size, "tensor_types": tensor_types(p)} for q, p in files.items()},
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "metadata": gguf_metadata(llm),
            "tokenizer_legacy": tokenizer.legacy,
            "prompts": check_prompts(llm, tokenizer, conversations),
            "first_difference": first_difference(llm, tokenizer, conversations[0]),
            "prompts_with_legacy_true": check_prompts(llm, legacy_tokenizer(tmp / "base"), conversations),
            "modelfile_template_differs_on": check_wrappers(tokenizer, wrappers, [c[:-1] for c in conversations]),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
    p, meta = record["prompts"], record["metadata"]
    ok = (meta["chat_template"] and "</s>" in meta["end_of_generation"] and not p["template_differs_on"]
          and not p["tokens_differ_on"] and not record["modelfile_template_differs_on"])
    print("the export path holds for TinyLlama's shape, tokenizer and template" if ok else "PROBLEMS: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
