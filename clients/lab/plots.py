"""PNG plots and a markdown report of a run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


def time_split(rounds: list[int], parts: dict[str, list[float]], path: Path) -> Path:
    """Stacked bars: where each round's seconds went (mean over the clients)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [str(r) for r in rounds]
    bottom = [0.0] * len(rounds)
    for name, values in parts.items():
        ax.bar(labels, values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xlabel("round")
    ax.set_ylabel("seconds (mean per client)")
    ax.set_title("Round time: training, crypto, network, waiting")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def bytes_vs_plain(
    masked: float, plain: float, path: Path, *, label: str = "masked (secagg)"
) -> Path:
    """Bytes a client uploads per round: masked vector against the fp32 update."""
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.bar(["fp32 update", label], [plain / 1e3, masked / 1e3], color=["grey", "tab:blue"])
    ax.set_ylabel("kB per client per round")
    ax.set_title("Upload per client")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def metric_per_round(
    values: list[float],
    label: str,
    path: Path,
    *,
    bound: list[float] | None = None,
    rounds: list[int] | None = None,
) -> Path:
    """One metric per round (accuracy, or the secure-vs-plain error with its bound per round)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = rounds if rounds is not None else list(range(len(values)))
    ax.plot(xs, values, marker="o", label=label)
    if bound is not None:
        ax.plot(xs, bound, color="red", linestyle="--", label="bound")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
