"""The training curves of a ``medscope train all`` run, in one figure for the model card.

Three panels, each read from what the stages already write (nothing is logged twice):

1. the pointer curriculum: the criterion measured on videos set aside at each check (exact match; for the point
   stages also the share of answers that are labels of the row), stages one after another on one step axis;
2. SFT: the loss of the agent and of the fair baseline, per logged step (the trainers' ``log_history``);
3. GA-GRPO and its ablations: the answer reward R_acc and the crop reward R_crop, smoothed over a few steps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from medscope.io import atomic_path
from medscope.train.card import log_history


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over ``window`` points (GRPO's per-step rewards are one prompt's group each: noisy)."""
    out = []
    for i in range(len(values)):
        recent = values[max(0, i - window + 1): i + 1]
        out.append(sum(recent) / len(recent))
    return out


def plot_curves(run: Path, path: Path, *, sft: Sequence[str] = ("sft", "sft_uniform"),
                grpo: Sequence[str] = ("grpo", "grpo_no_evidence", "grpo_no_crop_bonus"), window: int = 5) -> Path:
    """Write the figure to ``path`` (PNG, atomically); stages that did not run are left out of it."""
    import matplotlib

    matplotlib.use("Agg")  # headless; set here, not at import
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    record = run / "curriculum" / "curriculum.json"
    ax = axes[0]
    if record.is_file():
        offset = 0
        for stage in json.loads(record.read_text())["stages"]:
            steps = [offset + c["step"] for c in stage["curve"]]
            ax.plot(steps, [c["exact"] for c in stage["curve"]], color="tab:blue")
            decoded = [(step, c["listed"]) for step, c in zip(steps, stage["curve"], strict=True) if "listed" in c]
            if decoded:  # measured at fewer checks than exact match
                ax.plot(*zip(*decoded, strict=True), color="tab:orange", marker=".")
            ax.axvline(offset, color="0.85", lw=0.8)
            ax.text(offset, 1.02, stage["name"].split("-", 1)[1], fontsize=7, rotation=45)
            offset += stage["steps"]
        ax.plot([], [], color="tab:blue", label="exact match")
        ax.plot([], [], color="tab:orange", label="answer is a pair of row labels")
        ax.legend(fontsize=8, loc="lower right")
    ax.set(title="pointer curriculum (videos set aside)", xlabel="step", ylim=(0, 1.1))
    ax = axes[1]
    for name in sft:
        history = [h for h in log_history(run / name) if "loss" in h and "step" in h]
        if history:
            ax.plot([h["step"] for h in history], [h["loss"] for h in history], label=name)
    ax.set(title="SFT on trajectories", xlabel="optimizer step", ylabel="loss")
    ax.legend(fontsize=8)
    ax = axes[2]
    for k, name in enumerate(grpo):
        history = [h for h in log_history(run / name) if "rewards/accuracy/mean" in h]
        if not history:
            continue
        steps = [h["step"] for h in history]
        colour = f"C{k}"
        ax.plot(steps, _smooth([h["rewards/accuracy/mean"] for h in history], window), color=colour,
                label=f"{name} R_acc")
        ax.plot(steps, _smooth([h["rewards/crop/mean"] for h in history], window), color=colour, ls="--",
                label=f"{name} R_crop")
    ax.set(title=f"GA-GRPO rewards (trailing mean of {window} steps)", xlabel="step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
