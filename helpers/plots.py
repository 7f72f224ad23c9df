"""Plots: each helper returns a matplotlib Figure; the notebook shows it and saves it in the run directory."""

from __future__ import annotations


def _figure(width: float = 7, height: float = 4):
    from matplotlib.figure import Figure  # a Figure not tied to pyplot: no global state, safe headless

    return Figure(figsize=(width, height))


def plot_loss_curves(log_history: list[dict], title: str = "Loss", eval_loss_before: float | None = None):
    """Train loss per logging step and eval loss per evaluation (plus, if given, before training, at step 0)."""
    fig = _figure()
    ax = fig.add_subplot()
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and h["step"] > 0]
    if eval_loss_before is not None:
        evals.insert(0, (0, eval_loss_before))
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss (held out)", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (answer tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_before_after(metrics: dict[str, tuple[float, float]], title: str = "Base model vs fine-tuned"):
    """Grouped bars: for each metric name, (base, fine-tuned) values between 0 and 1."""
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
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("fraction of test examples")
    ax.set_title(title)
    ax.legend(loc="upper left")
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
    ax.set_title("LoRA trains a small fraction of the model")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig
