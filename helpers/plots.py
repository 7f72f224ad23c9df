"""Plots: each helper returns a matplotlib Figure; the notebook shows it and saves it in the run directory."""

from __future__ import annotations


from functools import lru_cache


@lru_cache(maxsize=None)
def _figure_class():
    """matplotlib's Figure with a PNG representation (made once, on first use, so importing this module is cheap).

    Jupyter shows pyplot's figures through a hook that pyplot installs; a Figure made without pyplot would show as
    "<Figure size ...>" text, so it renders itself. `display(fig)` and `handle.update(fig)` then show a picture in
    Jupyter, Colab and VS Code.
    """
    import io

    from matplotlib.figure import Figure

    class CourseFigure(Figure):
        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            return buffer.getvalue()

    return CourseFigure


def _figure(width: float = 7, height: float = 4):
    """A Figure not tied to pyplot (no global state, safe headless) that still shows as a picture in a notebook."""
    return _figure_class()(figsize=(width, height))


def plot_loss_curves(log_history: list[dict], title: str = "Loss", eval_loss_before: float | None = None):
    """Train loss per logging step and eval loss per evaluation (plus, if given, before training, at step 0)."""
    fig = _figure()
    ax = fig.add_subplot()
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and h["step"] > 0]
    if eval_loss_before is not None:
        evals.insert(0, (0, eval_loss_before))
    if train:
        # a lone point (the live plot's first draw) is invisible as a line: draw it as a dot
        ax.plot(*zip(*train), "o" if len(train) == 1 else "-", label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss (held out)", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (answer tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_preference_curves(log_history: list[dict], title: str = "DPO", before: dict | None = None):
    """08's live picture of DPO: the log-probabilities of the chosen and the rejected replies (train per logging step,
    held out per evaluation), and the held-out reward margin and accuracy; `before` (`dpo.reward_metrics` of the
    evaluation before training) is drawn at step 0."""
    before = before or {}
    fig = _figure(10, 4)
    left, right = fig.subplots(1, 2)
    for key, color in (("chosen", "tab:green"), ("rejected", "tab:red")):
        train = [(h["step"], h[f"logps/{key}"]) for h in log_history if f"logps/{key}" in h]
        evals = [(h["step"], h[f"eval_logps/{key}"]) for h in log_history if f"eval_logps/{key}" in h and h["step"] > 0]
        if f"logps/{key}" in before:
            evals.insert(0, (0, before[f"logps/{key}"]))
        if train:
            left.plot(*zip(*train), color=color, alpha=0.5, label=f"{key} (train)")
        if evals:
            left.plot(*zip(*evals), "o-", color=color, label=f"{key} (held out)")
    left.set_xlabel("optimizer step")
    left.set_ylabel("log-probability of the reply (sum over its tokens)")
    left.set_title("How likely the policy finds each reply")
    for key, color, label in (("eval_rewards/margins", "tab:purple", "reward margin"),
                              ("eval_rewards/accuracies", "tab:blue", "reward accuracy")):
        points = [(h["step"], h[key]) for h in log_history if key in h and h["step"] > 0]
        if key.removeprefix("eval_") in before:
            points.insert(0, (0, before[key.removeprefix("eval_")]))
        if points:
            right.plot(*zip(*points), "o-", color=color, label=label)
    right.set_xlabel("optimizer step")
    right.set_ylabel("held-out pairs")
    right.set_title("Chosen over rejected, against the reference")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # the first redraw may come before any evaluation
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def plot_before_after(metrics: dict[str, tuple[float, float]], title: str = "Base model vs fine-tuned"):
    """Grouped bars: for each metric name, (base, fine-tuned) scores between 0 and 1."""
    fig = _figure(7, 3.8)
    ax = fig.add_subplot()
    names = list(metrics)
    xs = range(len(names))
    base = [metrics[n][0] for n in names]
    tuned = [metrics[n][1] for n in names]
    bars_b = ax.bar([x - 0.2 for x in xs], base, width=0.4, label="base", color="tab:gray")
    bars_t = ax.bar([x + 0.2 for x in xs], tuned, width=0.4, label="fine-tuned", color="tab:green")
    for bars in (bars_b, bars_t):
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(list(xs), names, rotation=15)
    ax.set_ylim(0, 1.25)  # room for the legend above the bars
    ax.set_ylabel("score (higher is better; 1 = perfect)")
    ax.set_title(title)
    ax.legend(loc="upper left", ncol=2)
    return fig


def plot_token_lengths(lengths: list[int], max_length: int, title: str = "Tokens per example"):
    """Histogram of example lengths with the max_length cut-off drawn in."""
    fig = _figure(7, 3.5)
    ax = fig.add_subplot()
    upper = max(max_length, max(lengths)) * 1.05
    ax.hist(lengths, bins=[upper * i / 60 for i in range(61)], color="tab:blue", alpha=0.8)
    ax.set_xlim(0, upper)
    ax.axvline(max_length, color="tab:red", linestyle="--", label=f"max_length = {max_length}")
    ax.set_xlabel("tokens (after the chat template)")
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.legend()
    return fig


def plot_memory_estimate(estimates: dict, limits: dict[str, float], title: str = "Estimated training memory"):
    """One stacked horizontal bar per configuration (name -> budget.MemoryEstimate), one part per colour, with a
    vertical line for each memory limit (name -> GiB), such as this GPU and a T4."""
    fig = _figure(8, 1.6 + 0.7 * len(estimates))
    ax = fig.add_subplot()
    names = list(estimates)
    parts = list(dict.fromkeys(p for e in estimates.values() for p in e.parts))
    colours = dict(zip(parts, ["tab:blue", "tab:cyan", "tab:purple", "tab:orange", "tab:red", "tab:gray", "tab:green",
                              "tab:olive"]))
    for row, name in enumerate(names):
        left = 0.0
        for part in parts:
            gib = estimates[name].parts.get(part, 0.0)
            ax.barh(row, gib, left=left, color=colours[part], label=part if row == 0 else None, height=0.55)
            left += gib
        ax.text(left, row, f" {left:.1f} GiB", va="center", fontsize=9)
    for (label, gib), style in zip(limits.items(), ["--", ":", "-."]):
        ax.axvline(gib, color="black", linestyle=style, linewidth=1, label=f"{label}: {gib:.1f} GiB")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    right = max([e.total_gib for e in estimates.values()] + list(limits.values()))
    ax.set_xlim(0, right * 1.2)
    ax.set_xlabel("GiB")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return fig


def plot_lora_params(by_rank: dict[str, dict[int, int]], total_params: int):
    """Trainable parameters against LoRA rank, one line per target-module choice, on log axes."""
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    for label, counts in by_rank.items():
        ax.plot(list(counts), list(counts.values()), "o-", label=label)
    ax.axhline(total_params, color="tab:gray", linestyle=":", label=f"whole model ({total_params:,})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(next(iter(by_rank.values()))), [str(r) for r in next(iter(by_rank.values()))])
    ax.set_yscale("log")
    ax.set_xlabel("LoRA rank r")
    ax.set_ylabel("trainable parameters")
    # the title states what the figure shows for this model, not a promise: on the 1M-parameter tiny model a high
    # rank reaches a large share, on a 1B model a small one
    top = max(max(c.values()) for c in by_rank.values())
    ax.set_title(f"Trainable parameters grow linearly with r (up to {top / total_params:.0%} of this model)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def plot_run_comparison(histories: dict[str, list[dict]], title: str = "Runs compared"):
    """Loss curves of several runs on one plot, one colour per run: train loss thin, eval loss with markers.

    The eval loss is the one to compare (held-out data); the train loss shows how fast each run fits.
    """
    from matplotlib.lines import Line2D

    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    handles = []
    for i, (name, history) in enumerate(histories.items()):
        colour = f"C{i % 10}"  # matplotlib's default cycle; runs beyond ten share colours
        train = [(h["step"], h["loss"]) for h in history if "loss" in h]
        evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
        if train:
            ax.plot(*zip(*train), color=colour, linewidth=1, alpha=0.6)
        if evals:
            ax.plot(*zip(*evals), "o-", color=colour, markersize=4)
        handles.append(Line2D([], [], color=colour, linewidth=3, label=name))
    # two grey keys for the line styles; legend-only handles, so ax.lines holds the data curves alone
    handles += [Line2D([], [], color="tab:gray", linewidth=1, label="train loss"),
                Line2D([], [], color="tab:gray", marker="o", markersize=4, label="eval loss (held out)")]
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8)
    return fig
