"""The model picker (02_model_loading), the hyperparameter panel (04_training_sft) and the rating widget
(05_evaluation), for ipywidgets 7 and 8.

The picker and the panel start at the run config's values, so a headless run (nbval, run-course) takes the
defaults. Both show, live, what the choice costs (the memory estimate against this GPU and a T4, and for the panel
the steps and a rough time), and `apply_*` copies the values into the config, rejecting impossible ones with a
message. The rating widget starts unrated: a headless run records no ratings.
"""

from __future__ import annotations

import html
import math

from .config import ConfigError, RunConfig

ANY_HUB_ID = "any Hub id (type it below)"
_STYLE = {"description_width": "150px"}


def model_picker(cfg: RunConfig):
    """A dropdown over the course's suggested models, a box for any other Hub id, and the memory verdict."""
    import ipywidgets as w

    from .model import MODEL_CHOICES

    options = [(f"{c.model_id} ({c.size})", c.model_id) for c in MODEL_CHOICES.values()] + [(ANY_HUB_ID, ANY_HUB_ID)]
    known = cfg.model.model_id in MODEL_CHOICES
    dropdown = w.Dropdown(options=options, value=cfg.model.model_id if known else ANY_HUB_ID,
                          description="model", style=_STYLE, layout=w.Layout(width="560px"))
    other = w.Text(value="" if known else cfg.model.model_id, placeholder="owner/name, e.g. google/gemma-3-1b-it",
                   description="Hub id", style=_STYLE, layout=w.Layout(width="560px"))
    info = w.HTML()
    picker = w.VBox([dropdown, other, info])

    def refresh(_=None) -> None:
        info.value = _picker_html(cfg, picked_model_id(picker))

    dropdown.observe(refresh, names="value")
    other.observe(refresh, names="value")
    refresh()
    return picker


def picked_model_id(picker) -> str:
    dropdown, other = picker.children[:2]
    return other.value.strip() if dropdown.value == ANY_HUB_ID else dropdown.value


def apply_model_picker(cfg: RunConfig, picker) -> str:
    """Put the picked model into the config; an empty or malformed Hub id is rejected with what to type."""
    model_id = picked_model_id(picker)
    if not model_id:
        raise ConfigError("the model picker is on 'any Hub id' but the Hub id box is empty: type owner/name "
                          "(e.g. Qwen/Qwen2.5-0.5B-Instruct) or pick a model from the list")
    if model_id != "tiny" and model_id.count("/") != 1 and not _is_folder(model_id):
        raise ConfigError(f"{model_id!r} is not a Hub model id: it has the form owner/name, "
                          "e.g. Qwen/Qwen2.5-0.5B-Instruct (or give a local folder)")
    cfg.model.model_id = model_id
    return model_id


def _is_folder(path: str) -> bool:
    from pathlib import Path

    return Path(path).expanduser().is_dir()


def _picker_html(cfg: RunConfig, model_id: str) -> str:
    from .model import MODEL_CHOICES

    choice = MODEL_CHOICES.get(model_id)
    lines = [html.escape(choice.note)] if choice else []
    if model_id:
        trial = cfg.copy()
        trial.model.model_id = model_id
        lines.append(memory_line(trial))
    if model_id != "tiny" and cfg.profile == "tiny":
        lines.append("This machine runs the <code>tiny</code> profile (no GPU): a real model would need the Hub and "
                     "a GPU. Open the notebook in Colab to train it.")
    return "<br>".join(lines)


def memory_line(cfg: RunConfig) -> str:
    """The memory verdict for cfg as one line of HTML, coloured by how well it fits; never raises."""
    from .budget import T4_GIB, estimate_training_memory, memory_budget_gib, memory_verdict, model_shape

    try:
        shape = model_shape(cfg.model.model_id)
    except Exception as e:  # an unknown id or no network: say so instead of estimating
        return f"<span style='color:#a60'>No memory estimate: {html.escape(str(e)[:200])}</span>"
    estimate = estimate_training_memory(cfg, shape)
    budget, name = memory_budget_gib()
    verdict = memory_verdict(estimate, budget, name, cfg, shape)
    colour = {"Fits": "#070", "Tight": "#a60"}.get(verdict.split(":")[0], "#b00")
    on_t4 = estimate_training_memory(cfg, shape, on_gpu=True).total_gib
    t4 = f"would take {on_t4:.1f} GiB: " + ("it fits" if on_t4 <= 0.9 * T4_GIB else "it does not fit")
    weights = {"none": f"{cfg.model.dtype} weights", "4bit": "4-bit weights", "8bit": "8-bit weights"}
    size = f"{shape.parameters / 1e9:.2f}B" if shape.parameters >= 1e8 else f"{shape.parameters / 1e6:.1f}M"
    return (f"<b>Memory</b> ({size} parameters, {weights[cfg.model.quantization]}, batch "
            f"{estimate.batch_size} x {estimate.seq_len} tokens): <span style='color:{colour}'>"
            f"{html.escape(verdict)}</span> On a T4 ({T4_GIB} GiB) it {t4}.")


# widget description -> (config section, field)
_FIELDS = {
    "learning rate": ("train", "learning_rate"),
    "epochs": ("train", "num_train_epochs"),
    "max steps (-1: epochs)": ("train", "max_steps"),
    "batch size": ("train", "per_device_train_batch_size"),
    "grad. accumulation": ("train", "gradient_accumulation_steps"),
    "max_length": ("train", "max_length"),
    "LoRA rank r": ("lora", "r"),
    "LoRA alpha": ("lora", "alpha"),
    "LoRA dropout": ("lora", "dropout"),
    "LoRA targets": ("lora", "target_modules"),
    "packing": ("train", "packing"),
    "answer-only loss": ("train", "assistant_only_loss"),
    "eval every (steps)": ("train", "eval_steps"),
    "tracker": ("train", "report_to"),
}


def hyperparameter_panel(cfg: RunConfig, n_train: int, mean_tokens: float):
    """Widgets for the settings worth trying, starting at the config's values, and a live summary of what they
    add up to for `n_train` examples of about `mean_tokens` tokens: steps, memory, a rough time, or what is wrong."""
    import ipywidgets as w

    from .budget import measured_matmul_flops

    t, lora = cfg.train, cfg.lora
    lr_exp = math.log10(t.learning_rate)
    targets = [("all linear layers", "all-linear"), ("attention only", "attention")]
    if lora.target_modules not in ("all-linear", "attention"):
        targets.append((lora.target_modules, lora.target_modules))
    controls = [
        w.FloatLogSlider(value=t.learning_rate, base=10, min=min(-5, lr_exp), max=max(-2, lr_exp), step=0.1,
                         readout_format=".1e", description="learning rate"),
        w.FloatSlider(value=t.num_train_epochs, min=0.5, max=max(10, t.num_train_epochs), step=0.5,
                      description="epochs"),
        w.IntText(value=t.max_steps, description="max steps (-1: epochs)"),
        w.IntSlider(value=t.per_device_train_batch_size, min=1, max=max(64, t.per_device_train_batch_size),
                    description="batch size"),
        w.IntSlider(value=t.gradient_accumulation_steps, min=1, max=max(32, t.gradient_accumulation_steps),
                    description="grad. accumulation"),
        w.IntSlider(value=t.max_length, min=16, max=max(4096, t.max_length), step=16, description="max_length"),
        w.IntSlider(value=lora.r, min=1, max=max(128, lora.r), description="LoRA rank r"),
        w.IntSlider(value=lora.alpha, min=1, max=max(256, lora.alpha), description="LoRA alpha"),
        w.FloatSlider(value=lora.dropout, min=0.0, max=0.5, step=0.01, description="LoRA dropout"),
        w.Dropdown(options=targets, value=lora.target_modules, description="LoRA targets"),
        w.Checkbox(value=t.packing, description="packing"),
        w.Checkbox(value=t.assistant_only_loss, description="answer-only loss"),
        w.IntSlider(value=t.eval_steps, min=1, max=max(200, t.eval_steps), description="eval every (steps)"),
        w.Dropdown(options=["none", "tensorboard", "trackio"], value=t.report_to, description="tracker"),
    ]
    for c in controls:
        c.style = _STYLE
    summary = w.HTML()
    panel = w.VBox(controls + [summary])
    flops = measured_matmul_flops(0.2)  # once: what this machine does per second, for the rough time

    def refresh(_=None) -> None:
        summary.value = _summary_html(cfg, panel, n_train, mean_tokens, flops)

    for c in controls:
        c.observe(refresh, names="value")
    refresh()
    return panel


def _panel_config(cfg: RunConfig, panel) -> tuple[RunConfig, list[str]]:
    """A copy of cfg with the panel's values, and every value that was refused, with the reason."""
    trial = cfg.copy()
    problems = []
    for widget in panel.children:
        if widget.description not in _FIELDS:
            continue
        section, name = _FIELDS[widget.description]
        target = getattr(trial, section)
        old, new = getattr(target, name), widget.value
        if isinstance(old, bool):
            new = bool(new)
        elif isinstance(old, int):
            new = int(new)
        elif isinstance(old, float):
            new = slider_value(widget, old)
        try:
            setattr(target, name, new)
        except ConfigError as e:
            problems.append(f"{widget.description}: {e}")
    return trial, problems


def slider_value(widget, start: float) -> float:
    """A float slider's value as its readout shows it. A browser snaps a slider to its grid and sends the value back
    with float noise, untouched: JupyterLab (ipywidgets 8) turned the panel's 4e-3 into 3.98e-3 and 5 epochs into
    5.000000000000001, which trained 271 steps instead of 270. So a value within half a step of `start`, the config's value, is
    `start`; any other is rounded to what the readout shows (two significant digits on the log scale)."""
    new, step = float(widget.value), float(getattr(widget, "step", 0) or 0)
    if hasattr(widget, "base"):  # FloatLogSlider: the step is in powers of the base
        if new > 0 and start > 0 and abs(math.log(new / start, widget.base)) <= step / 2 + 1e-9:
            return start
        return float(f"{new:.2g}")
    if step and abs(new - start) <= step / 2 + 1e-12:
        return start
    return round(round(new / step) * step, 10) if step else new


def panel_problems(trial: RunConfig, n_train: int) -> list[str]:
    """Settings that are each allowed but together cannot work."""
    from .budget import planned_steps

    t = trial.train
    problems = []
    effective, _, steps = planned_steps(t, n_train)
    if effective > n_train:
        problems.append(f"the effective batch ({effective}) is larger than the training set ({n_train} examples): "
                        "lower the batch size or the accumulation")
    if t.eval_steps > steps:
        problems.append(f"eval every {t.eval_steps} steps, but training has only {steps}: no evaluation would run; "
                        f"set it to {max(1, steps // 4)} or less")
    return problems


def _summary_html(cfg: RunConfig, panel, n_train: int, mean_tokens: float, flops: float) -> str:
    from .budget import format_seconds, training_plan

    trial, problems = _panel_config(cfg, panel)
    problems += panel_problems(trial, n_train)
    if problems:
        return "<b style='color:#b00'>Not possible:</b><ul>" + "".join(
            f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>"
    try:
        plan = training_plan(trial, n_train, mean_tokens, matmul_flops=flops)
    except Exception as e:  # the model's shape is unknown (offline, a typo): the rest of the panel still works
        return f"<span style='color:#a60'>No estimate: {html.escape(str(e)[:200])}</span>"
    return (f"effective batch <b>{plan['effective_batch']}</b> · <b>{plan['steps']}</b> optimizer steps "
            f"({plan['epochs']:.1f} epochs of {plan['steps_per_epoch']}) · {plan['evaluations']} evaluations · "
            f"rough time <b>{format_seconds(plan['seconds'])}</b> (within about 2x)<br>{memory_line(trial)}")


def apply_panel(cfg: RunConfig, panel, n_train: int) -> dict:
    """Copy the panel's values into the config; refuse (ConfigError, with every reason) if any cannot work.
    Returns what changed, as {"section.field": (old, new)}."""
    trial, problems = _panel_config(cfg, panel)
    problems += panel_problems(trial, n_train)
    if problems:
        raise ConfigError("the panel's settings cannot train:\n- " + "\n- ".join(problems))
    changed = {}
    for section in ("train", "lora"):
        for name, new in trial.to_dict()[section].items():
            old = getattr(getattr(cfg, section), name)
            if new != old:
                setattr(getattr(cfg, section), name, new)
                changed[f"{section}.{name}"] = (old, new)
    return changed


def rating_widget(pairs: list[dict], run, seed: int = 0):
    """Blind human rating of the side-by-side answers: for each message, answers A and B (base and fine-tuned in a
    random order) and the reference; every choice is saved at once to the run's human_ratings.json."""
    import ipywidgets as w

    from .evaluation import RATING_CHOICES, blind_pairs, load_ratings, rating_key, save_ratings

    items = blind_pairs(pairs, seed)
    earlier = {rating_key(r): r["choice"] for r in load_ratings(run, pairs)}  # the same answers, rated before
    toggles = [w.ToggleButtons(options=list(RATING_CHOICES), value=earlier.get(rating_key(i), "not rated"))
               for i in items]

    def save(_=None) -> None:
        save_ratings(run, items, [t.value for t in toggles])

    rows = []
    for n, (item, toggle) in enumerate(zip(items, toggles), 1):
        toggle.observe(save, names="value")
        rows += [w.HTML(_rating_html(n, item)), toggle]
    return w.VBox(rows)


def _rating_html(n: int, item: dict) -> str:
    def block(label: str, text: str) -> str:
        body = html.escape(text).replace("\n", "<br>") or "<i>(empty)</i>"
        return f'<td style="vertical-align:top;padding:2px 12px 2px 0"><b>{label}</b><br><code>{body}</code></td>'

    return (f"<hr><b>{n}.</b> {html.escape(item['message'])}<table><tr>{block('A', item['a'])}"
            f"{block('B', item['b'])}{block('reference', item['reference'])}</tr></table>")
