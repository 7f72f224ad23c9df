"""LoRA with peft: the config, attaching it, and checking what trains. Introduced in 03_lora."""

from __future__ import annotations

from .config import RunConfig


# The "attention" preset as peft reads a string: a regular expression matched against each module's full name.
# It picks every linear projection inside a self-attention block: q/k/v/o_proj, or Phi-3's fused qkv_proj.
ATTENTION_PATTERN = r".*\.self_attn\.\w+_proj"


def lora_targets(target_modules: str):
    """What peft's `target_modules` gets for the config's choice: 'all-linear', the attention pattern, or names."""
    if target_modules == "all-linear":
        return "all-linear"
    if target_modules == "attention":
        return ATTENTION_PATTERN
    return [t.strip() for t in target_modules.split(",") if t.strip()]


def build_lora_config(cfg: RunConfig):
    """peft's LoraConfig from the run config (the one place it is built)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=lora_targets(cfg.lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def apply_lora(model, cfg: RunConfig):
    """Freeze the base model and attach LoRA adapters; a quantized model is first prepared for k-bit training."""
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    set_seed(cfg.train.seed)  # LoRA's A matrices start random: seed them so a run is reproducible
    if getattr(model, "is_quantized", False):
        # casts norms to fp32 and enables input grads so gradients flow through the frozen 4-bit weights
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
    try:
        return get_peft_model(model, build_lora_config(cfg))
    except ValueError as e:  # usually target module names that this architecture does not have
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise ValueError(f"LoRA could not be attached ({e}). cfg.lora.target_modules = "
                         f"{cfg.lora.target_modules!r}; this model's linear layers are named: {', '.join(names)}") from None


def prepare_for_training(model, cfg: RunConfig):
    """What trains: LoRA adapters on the frozen model (LoRA, QLoRA: `apply_lora`), or every weight (full)."""
    from transformers import set_seed

    from .config import check_method

    check_method(cfg)
    if cfg.method != "full":
        return apply_lora(model, cfg)
    set_seed(cfg.train.seed)  # the same seed a LoRA run would use, for the order of the rows and dropout
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def trainable_report(model) -> dict:
    """How many parameters train, out of how many."""
    # transformers' count: 4-bit weights counted as weights, not as their packed bytes
    trainable, total = model.num_parameters(only_trainable=True), model.num_parameters()
    return {"trainable": trainable, "total": total, "trainable_percent": round(100 * trainable / total, 3)}


def check_only_lora_trains(model) -> None:
    """Raise if a base weight would train or a LoRA weight would not: the promise LoRA makes."""
    wrong = [n for n, p in model.named_parameters() if p.requires_grad != ("lora_" in n)]
    if wrong:
        raise AssertionError(f"{len(wrong)} parameters have the wrong requires_grad, e.g. {wrong[:3]}")


ATTENTION_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj")


def linear_layer_table(model) -> list[dict]:
    """The model's linear layers grouped by name (q_proj, v_proj, ...): the candidates for LoRA targets."""
    groups: dict[str, dict] = {}
    for name, module in model.named_modules():
        if hasattr(module, "in_features") and hasattr(module, "out_features") and "lora_" not in name:
            short = name.rsplit(".", 1)[-1]
            if short == "lm_head":  # the output layer is never a LoRA target in this course (peft skips it too)
                continue
            g = groups.setdefault(short, {"module": short, "count": 0, "in_features": module.in_features,
                                          "out_features": module.out_features})
            g["count"] += 1
    for g in groups.values():
        g["kind"] = "attention" if g["module"] in ATTENTION_NAMES else "MLP"
    return list(groups.values())


def lora_params_by_rank(table: list[dict], ranks=(1, 2, 4, 8, 16, 32, 64), attention_only: bool = False) -> dict:
    """Trainable LoRA parameters for each rank: r * (in + out) per adapted layer (A is r x in, B is out x r)."""
    rows = [g for g in table if g["kind"] == "attention" or not attention_only]
    return {r: sum(r * (g["in_features"] + g["out_features"]) * g["count"] for g in rows) for r in ranks}
