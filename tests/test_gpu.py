"""The real GPU path: 4-bit NF4 QLoRA with fp16 compute (the t4 profile), on a Llama built from a config.

Skipped without CUDA. No download: the model is a TinyLlama-shaped Llama (fewer layers, random weights) saved
locally with the tiny tokenizer, loaded through the same `from_pretrained` code as a Hub model.
"""

import pytest
import torch

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, tiny_model_dir):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # TinyLlama-1.1B's shape (hidden 2048, MLP 5632, 32 heads, 4 KV heads), 4 layers instead of 22
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=2048, intermediate_size=5632, num_hidden_layers=4,
                         num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("llama")
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def test_t4_profile_trains_4bit_qlora_in_fp16(llama_dir, tmp_path):
    from helpers.config import make_config
    from helpers.rundir import RunDir
    from helpers.train import build_sft_config, train_run

    cfg = make_config("t4")
    cfg.model.model_id = str(llama_dir)
    cfg.train.max_steps = 30
    cfg.train.learning_rate = 1e-3
    run = RunDir(tmp_path / "run")
    args = build_sft_config(cfg, run, tokenizer=type("T", (), {"chat_template": ""})())
    assert args.fp16 and not args.bf16
    summary = train_run(cfg, run)
    assert summary["global_step"] == 30
    assert summary["eval_loss_after"] < summary["eval_loss_before"]
    assert (run.adapter_dir / "adapter_model.safetensors").exists()


def test_4bit_model_is_quantized_and_small(llama_dir):
    from helpers.config import make_config
    from helpers.model import load_base_model

    cfg = make_config("t4")
    cfg.model.model_id = str(llama_dir)
    model = load_base_model(cfg)
    assert getattr(model, "is_loaded_in_4bit", False)
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(model.config).parameters())
    assert model.get_memory_footprint() < n_params * 1.0  # fp16 would be 2 bytes per parameter
