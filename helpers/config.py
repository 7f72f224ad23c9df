"""The one run config: data, model, LoRA, training and evaluation settings, with a preset per profile.

Every notebook and the command line read the same `RunConfig`, saved as `config.json` in the run directory.
Values are checked when they are set, so a typo fails here, with what is allowed, and not deep inside a library.
Introduced in 00_setup_and_gpu_check.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from .formats import FORMATS

PROFILES = ("tiny", "t4", "ampere")
# What training updates: "lora" (adapters on frozen weights), "qlora" (adapters on frozen 4-bit weights) or "full"
# (every weight). Compared side by side in 07_methods_compared.
METHODS = ("lora", "qlora", "full")


class ConfigError(ValueError):
    """A config value that is not allowed; the message says what is."""


def _rule(check: Callable[[Any], bool], allowed: str):
    return (check, allowed)


_positive_int = _rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a whole number above 0")
_fraction = _rule(lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "a number from 0 up to (not including) 1")


class _Checked:
    """Base for config sections: every assignment is checked against the class's RULES."""

    RULES: dict[str, tuple[Callable[[Any], bool], str]] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in {f.name for f in fields(self)}:
            known = ", ".join(f.name for f in fields(self))
            raise ConfigError(f"{type(self).__name__} has no setting {name!r}; the settings are: {known}")
        rule = self.RULES.get(name)
        if rule and not rule[0](value):
            raise ConfigError(f"{type(self).__name__}.{name} = {value!r} is not allowed: use {rule[1]}")
        object.__setattr__(self, name, value)

    def _repr_markdown_(self) -> str:
        """Jupyter shows a config as a table of its settings."""
        rows = []

        def walk(prefix: str, d: dict) -> None:
            for k, v in d.items():
                walk(f"{prefix}{k}.", v) if isinstance(v, dict) else rows.append((prefix + k, v))

        walk("", asdict(self))
        return "| setting | value |\n|---|---|\n" + "\n".join(f"| `{k}` | `{v!r}` |" for k, v in rows)


@dataclass
class DataConfig(_Checked):
    """Which dataset, and how it is split. Introduced in 01_dataset_prep."""

    dataset: str = "data/meetings"  # a folder of split files (train.jsonl, ...), one file, or a Hub dataset id
    format: str = "auto"  # "auto" (detected from the field names) or one of helpers.formats.FORMATS
    column_map: dict = field(default_factory=dict)  # rename fields before reading, e.g. {"question": "instruction"}
    validation_size: int = 48  # rows held out of train to watch the eval loss during training
    test_size: int = 60  # rows of the test split used for the task metric (held out from training entirely)
    seed: int = 0

    RULES = {
        "dataset": _rule(lambda v: isinstance(v, str) and v.strip() != "", "a path or a Hub dataset id"),
        "format": _rule(lambda v: v == "auto" or v in FORMATS, "'auto' or one of " + ", ".join(FORMATS)),
        "column_map": _rule(lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str)
                                                                  for k, x in v.items()),
                            "a dict of old field name -> course field name, e.g. {'answer': 'output'}"),
        "validation_size": _positive_int,
        "test_size": _positive_int,
    }


@dataclass
class ModelConfig(_Checked):
    """Which base model and how it is loaded. Introduced in 02_model_loading."""

    model_id: str = "tiny"  # "tiny" is the offline model built by helpers; anything else is a Hub id or a folder
    quantization: str = "none"  # "none", "4bit" (QLoRA, NF4) or "8bit"
    dtype: str = "float32"  # compute dtype: "float32" on CPU, "float16" on a T4, "bfloat16" on Ampere and newer

    RULES = {
        "model_id": _rule(lambda v: isinstance(v, str) and v.strip() != "", "'tiny', a Hub model id or a folder"),
        "quantization": _rule(lambda v: v in ("none", "4bit", "8bit"), "'none', '4bit' or '8bit'"),
        "dtype": _rule(lambda v: v in ("float32", "float16", "bfloat16"), "'float32', 'float16' or 'bfloat16'"),
    }


@dataclass
class LoraSettings(_Checked):
    """The LoRA adapter: rank, scale, dropout and which layers get one. Introduced in 03_lora."""

    r: int = 16
    alpha: int = 32  # the update is scaled by alpha / r
    dropout: float = 0.05
    target_modules: str = "all-linear"  # "all-linear", "attention" (the self-attention projections only), or
    # comma-separated layer names such as "q_proj,v_proj"

    RULES = {
        "r": _rule(lambda v: isinstance(v, int) and 1 <= v <= 1024, "a whole number from 1 to 1024 (8-64 is usual)"),
        "alpha": _positive_int,
        "dropout": _fraction,
        "target_modules": _rule(lambda v: isinstance(v, str) and v.strip() != "", "'all-linear', 'attention' or names like 'q_proj,v_proj'"),
    }


@dataclass
class TrainConfig(_Checked):
    """Optimisation settings, turned into TRL's SFTConfig by `build_sft_config`. Introduced in 04_training_sft."""

    learning_rate: float = 2e-4
    num_train_epochs: float = 2.0
    max_steps: int = -1  # above 0, overrides the epochs
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 512  # tokens per example; longer ones are truncated
    warmup_ratio: float = 0.05
    lr_scheduler_type: str = "cosine"
    gradient_checkpointing: bool = False
    packing: bool = False  # concatenate short examples into full max_length rows (fewer, fuller batches)
    assistant_only_loss: bool = True  # loss on the answers only; False trains on the prompts too
    early_stopping_patience: int = 0  # above 0: stop after this many evaluations without a better eval loss,
    # and keep the best checkpoint (0 = off)
    logging_steps: int = 5
    eval_steps: int = 20
    save_steps: int = 50
    seed: int = 0
    report_to: str = "none"  # an experiment tracker writing into the run's logs/ folder: "tensorboard" or "trackio"

    RULES = {
        "learning_rate": _rule(lambda v: isinstance(v, (int, float)) and 0 < v < 1, "a positive number below 1 (LoRA: 1e-4 to 5e-3)"),
        "num_train_epochs": _rule(lambda v: isinstance(v, (int, float)) and v > 0, "a number of epochs above 0"),
        "max_steps": _rule(lambda v: isinstance(v, int) and (v == -1 or v > 0), "-1 (use the epochs) or a step count above 0"),
        "per_device_train_batch_size": _positive_int,
        "gradient_accumulation_steps": _positive_int,
        "max_length": _rule(lambda v: isinstance(v, int) and 16 <= v <= 32768, "a token count from 16 to 32768"),
        "warmup_ratio": _fraction,
        "lr_scheduler_type": _rule(lambda v: v in ("linear", "cosine", "constant", "constant_with_warmup"),
                                   "'linear', 'cosine', 'constant' or 'constant_with_warmup'"),
        "gradient_checkpointing": _rule(lambda v: isinstance(v, bool), "True or False"),
        "packing": _rule(lambda v: isinstance(v, bool), "True or False"),
        "assistant_only_loss": _rule(lambda v: isinstance(v, bool), "True or False"),
        "early_stopping_patience": _rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                                         "0 (off) or a number of evaluations, such as 3"),
        "logging_steps": _positive_int,
        "eval_steps": _positive_int,
        "save_steps": _positive_int,
        "report_to": _rule(lambda v: v in ("none", "tensorboard", "trackio"),
                           "'none' (no tracker), 'tensorboard' or 'trackio' (both work offline)"),
    }


@dataclass
class EvalConfig(_Checked):
    """How answers are generated for the task metric: greedy, batched and bounded. Introduced in 05_evaluation."""

    max_new_tokens: int = 48
    batch_size: int = 16

    RULES = {"max_new_tokens": _positive_int, "batch_size": _positive_int}


@dataclass
class RunConfig(_Checked):
    """Everything one fine-tuning run needs; saved as config.json in its run directory."""

    profile: str = "tiny"
    run_name: str = "tiny"
    method: str = "lora"  # "lora", "qlora" (LoRA on a 4-bit model) or "full" (every weight trains); see use_method
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    RULES = {
        "profile": _rule(lambda v: v in PROFILES, "one of " + ", ".join(PROFILES)),
        "run_name": _rule(lambda v: isinstance(v, str) and v.strip() != "" and "/" not in v and "\\" not in v,
                          "a folder name without slashes, such as 'first-run'"),
        "method": _rule(lambda v: v in METHODS, "one of " + ", ".join(METHODS) + " (set it with use_method)"),
    }

    def to_dict(self) -> dict:
        return asdict(self)

    def copy(self) -> "RunConfig":
        """An independent copy, to try changed settings without touching this one."""
        return RunConfig.from_dict(self.to_dict())

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        sections = {"data": DataConfig, "model": ModelConfig, "lora": LoraSettings, "train": TrainConfig,
                    "eval": EvalConfig}
        kwargs = {k: v for k, v in d.items() if k not in sections}
        if "method" not in kwargs:  # a config saved before methods existed: LoRA, on 4-bit weights if quantized
            kwargs["method"] = "qlora" if d.get("model", {}).get("quantization") == "4bit" else "lora"
        for name, section in sections.items():
            kwargs[name] = section(**d.get(name, {}))
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(d)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON (line {e.lineno}: {e.msg}); fix it or delete the file to "
                              "start from the profile's defaults") from None
        except TypeError as e:  # an unknown key in one of the sections
            raise ConfigError(f"{path}: {e}; remove that key or delete the file to start from the defaults") from None


def use_method(cfg: RunConfig, method: str) -> RunConfig:
    """Switch cfg to a training method, with the quantization it needs: QLoRA is LoRA on 4-bit weights; LoRA and
    full fine-tuning load them unquantized (full fine-tuning must update them, and 4-bit weights cannot be updated).
    The learning rate is left as it is: 07_methods_compared shows why full fine-tuning wants a smaller one."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    cfg.method = method
    if method == "qlora":
        cfg.model.quantization = "4bit"
    elif method == "full" or cfg.model.quantization == "4bit":
        cfg.model.quantization = "none"
    return cfg


def check_method(cfg: RunConfig) -> None:
    """Refuse a method and a quantization that do not go together, with the fix (before anything is loaded)."""
    q = cfg.model.quantization
    if cfg.method == "full" and q != "none":
        raise ConfigError(f"cfg.method = 'full' updates every weight, but cfg.model.quantization = {q!r} loads them "
                          "as frozen integers that cannot be updated: use use_method(cfg, 'full') (unquantized) or "
                          "use_method(cfg, 'qlora')")
    if cfg.method == "qlora" and q != "4bit":
        raise ConfigError(f"cfg.method = 'qlora' is LoRA on 4-bit weights, but cfg.model.quantization = {q!r}: use "
                          "use_method(cfg, 'qlora') (sets '4bit') or use_method(cfg, 'lora')")


def method_name(cfg: RunConfig) -> str:
    """What the run really does: 'full', or 'qlora' whenever the adapters sit on 4-bit weights."""
    return "full" if cfg.method == "full" else ("qlora" if cfg.model.quantization == "4bit" else "lora")


def make_config(profile: str, run_name: str | None = None) -> RunConfig:
    """The preset for a profile: what the course recommends on that kind of machine."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    cfg = RunConfig(profile=profile, run_name=run_name or profile)
    if profile == "tiny":  # CPU, offline: the whole course in minutes
        cfg.train = TrainConfig(learning_rate=4e-3, num_train_epochs=5.0, per_device_train_batch_size=8,
                                max_length=256, logging_steps=10, eval_steps=30, save_steps=100)
        cfg.eval = EvalConfig(max_new_tokens=40, batch_size=30)
    # On a GPU the shipped data gives 54 optimizer steps (432 rows, effective batch 16, 2 epochs): evaluate every 10
    # so that the curves have points to read, and checkpoint every 20 so that a disconnect loses little.
    elif profile == "t4":  # free Colab T4: 4-bit QLoRA with fp16 compute, never bf16 (compute capability 7.5)
        cfg.method = "qlora"
        cfg.model = ModelConfig(model_id="TinyLlama/TinyLlama-1.1B-Chat-v1.0", quantization="4bit", dtype="float16")
        cfg.train = TrainConfig(learning_rate=2e-4, num_train_epochs=2.0, per_device_train_batch_size=8,
                                gradient_accumulation_steps=2, max_length=512, gradient_checkpointing=True,
                                logging_steps=5, eval_steps=10, save_steps=20)
    else:  # ampere: bf16 and room for a larger model
        cfg.model = ModelConfig(model_id="Qwen/Qwen2.5-3B-Instruct", quantization="none", dtype="bfloat16")
        cfg.train = TrainConfig(learning_rate=2e-4, num_train_epochs=2.0, per_device_train_batch_size=8,
                                gradient_accumulation_steps=2, max_length=512, gradient_checkpointing=True,
                                logging_steps=5, eval_steps=10, save_steps=20)
    return cfg
