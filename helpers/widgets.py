"""A small hyperparameter panel (ipywidgets 7 and 8). Introduced in 04_training_sft.

The panel starts at the run config's values, so a headless run (nbval, run-course) trains with the defaults.
"""

from __future__ import annotations

import math

from .config import ConfigError, RunConfig

# widget description -> (config section, field)
_FIELDS = {
    "learning rate": ("train", "learning_rate"),
    "epochs": ("train", "num_train_epochs"),
    "batch size": ("train", "per_device_train_batch_size"),
    "LoRA rank r": ("lora", "r"),
    "LoRA alpha": ("lora", "alpha"),
}


def hyperparameter_panel(cfg: RunConfig):
    """Sliders for the settings worth trying first, starting at the config's values."""
    import ipywidgets as w

    style = {"description_width": "120px"}
    t, lora = cfg.train, cfg.lora
    lr_exp = math.log10(t.learning_rate)
    return w.VBox([
        w.FloatLogSlider(value=t.learning_rate, base=10, min=min(-5, lr_exp), max=max(-2, lr_exp), step=0.1,
                         description="learning rate", readout_format=".1e", style=style),
        w.FloatSlider(value=t.num_train_epochs, min=0.5, max=max(10, t.num_train_epochs), step=0.5,
                      description="epochs", style=style),
        w.IntSlider(value=t.per_device_train_batch_size, min=1, max=max(64, t.per_device_train_batch_size),
                    description="batch size", style=style),
        w.IntSlider(value=lora.r, min=1, max=max(128, lora.r), description="LoRA rank r", style=style),
        w.IntSlider(value=lora.alpha, min=1, max=max(256, lora.alpha), description="LoRA alpha", style=style),
    ])


def apply_panel(cfg: RunConfig, panel) -> dict:
    """Copy the panel's values into the config (checked like any assignment); return what changed."""
    changed = {}
    for widget in panel.children:
        section, name = _FIELDS[widget.description]
        target = getattr(cfg, section)
        old, new = getattr(target, name), widget.value
        if isinstance(old, int) and not isinstance(old, bool):
            new = int(new)
        elif isinstance(old, float):
            new = float(new)
        if new != old:
            try:
                setattr(target, name, new)
            except ConfigError as e:
                raise ConfigError(f"the panel's {widget.description!r}: {e}") from None
            changed[f"{section}.{name}"] = (old, new)
    return changed
