"""The audit's outputs: a PNG grid, a leakage-vs-N·B plot with the chance band, and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt
import numpy as np

from clients.lab.audit.inversion import AuditResult, ViewResult

#: Metrics plotted against N·B, with their axis labels.
PLOTTED: tuple[tuple[str, str], ...] = (
    ("rank1", "rank-1 re-identification"),
    ("identity_cosine", "identity cosine (evaluator)"),
    ("ssim", "SSIM"),
)


def view_key(view: ViewResult) -> str:
    """The view's prefix in ``reconstructions.npz``: individual, masked, sum_N4, ..."""
    return view.name.replace("sum N=", "sum_N")


def reconstruction_arrays(result: AuditResult) -> dict[str, np.ndarray]:
    """Every view's targets and reconstructions (float16) under ``<view>/<attack>``."""
    arrays: dict[str, np.ndarray] = {}
    for view in [result.individual, result.masked, *result.sums]:
        key = view_key(view)
        arrays[f"{key}/targets"] = view.targets.astype(np.float16)
        for attack, recs in view.recs.items():
            arrays[f"{key}/{attack}"] = recs.astype(np.float16)
    return arrays


def _matched(
    summary: dict[str, Any], arrays: Any, key: str, view: dict[str, Any], attack: str, rows: int
) -> list[np.ndarray]:
    """For the first ``rows`` targets (client 1's images), the matched reconstruction."""
    match = view["attacks"][attack]["match"]
    recs = np.asarray(arrays[f"{key}/{attack}"], dtype=np.float32)
    return [recs[match[i]] for i in range(rows)]


def grid_columns(summary: dict[str, Any], arrays: Any) -> tuple[list[str], list[list[np.ndarray]]]:
    """Column titles and images: client 1's private images, then each view's best match."""
    views = summary["views"]
    targets = np.asarray(arrays["individual/targets"], dtype=np.float32)
    rows = len(targets)
    titles, columns = ["private"], [list(targets)]
    for attack in views["individual"]["attacks"]:
        titles.append(f"one update\n{attack}")
        columns.append(_matched(summary, arrays, "individual", views["individual"], attack, rows))
    masked = views["masked"]
    titles.append(f"masked\n{masked['best_attack']}")
    columns.append(_matched(summary, arrays, "masked", masked, masked["best_attack"], rows))
    for view in views["sum"]["sweep"]:
        key = f"sum_N{view['clients']}"
        titles.append(f"sum N·B={view['n_times_b']}\n{view['best_attack']}")
        columns.append(_matched(summary, arrays, key, view, view["best_attack"], rows))
    return titles, columns


def save_grid(summary: dict[str, Any], arrays: Any, path: Path) -> Path:
    """Private images (rows) next to each view's reconstruction of them (columns)."""
    titles, columns = grid_columns(summary, arrays)
    rows = len(columns[0])
    fig, axes = plt.subplots(
        rows, len(columns), figsize=(1.25 * len(columns), 1.45 * rows + 0.5), squeeze=False
    )
    for c, (title, column) in enumerate(zip(titles, columns, strict=True)):
        for r, image in enumerate(column):
            ax = axes[r][c]
            picture = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
            ax.imshow(np.clip(picture, 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def save_leakage_plot(summary: dict[str, Any], path: Path) -> Path:
    """Each metric against N·B for the sum (one line per attack), with the chance band."""
    views = summary["views"]
    sweep = views["sum"]["sweep"]
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 4.2), squeeze=False)
    nb = [v["n_times_b"] for v in sweep]
    attacks = list(sweep[0]["attacks"])
    b = int(summary["config"]["batch_size"])
    ticks = sorted({b, *nb})
    for ax, (metric, label) in zip(axes[0], PLOTTED, strict=True):
        for i, attack in enumerate(attacks):
            colour = f"C{i}"
            band = [v["attacks"][attack][f"{metric}_chance_band"] for v in sweep]
            ax.fill_between(
                nb, [lo for lo, _ in band], [hi for _, hi in band], color=colour, alpha=0.15,
                label=f"chance (95%), {attack}",
            )  # fmt: skip
            values = [v["attacks"][attack][metric] for v in sweep]
            ax.plot(nb, values, marker="o", color=colour, label=f"sum, {attack}")
            if metric == "rank1" and "template_rank1" in sweep[0]["attacks"][attack]:
                # The shared head's templates, matched in θ^t's own feature space.
                leaked = [v["attacks"][attack]["template_rank1"] for v in sweep]
                ax.plot(nb, leaked, marker="s", linestyle="--", color=colour,
                        label="sum, head templates in θ's space")  # fmt: skip
        one = views["individual"]
        ax.plot(
            [b],
            [one[metric]],
            marker="*",
            markersize=12,
            linestyle="",
            color="tab:red",
            label=f"one update ({one['best_attack']})",
        )
        ax.plot(
            [b],
            [views["masked"][metric]],
            marker="x",
            markersize=9,
            linestyle="",
            color="black",
            label="masked upload",
        )
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.set_xlabel("N·B (images in the sum)")
        ax.set_ylabel(label)
        if metric == "rank1":
            ax.set_ylim(-0.05, 1.05)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle("Gradient inversion: leakage falls with N·B but is not zero", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.14, 1.0, 1.0))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def render(out: Path) -> dict[str, str]:
    """(Re)draw ``grid.png`` and ``leakage.png`` from ``audit.json`` and ``reconstructions.npz``."""
    summary = json.loads((out / "audit.json").read_text())
    with np.load(out / "reconstructions.npz") as arrays:
        grid = save_grid(summary, arrays, out / "grid.png")
    plot = save_leakage_plot(summary, out / "leakage.png")
    return {"grid": str(grid), "plot": str(plot)}


def write_outputs(result: AuditResult, out: Path) -> dict[str, str]:
    """``audit.json`` and ``reconstructions.npz`` under ``out``, then the two PNGs from them."""
    out.mkdir(parents=True, exist_ok=True)
    data = out / "audit.json"
    data.write_text(json.dumps(result.summary, indent=2) + "\n")
    arrays = out / "reconstructions.npz"
    np.savez_compressed(arrays, **reconstruction_arrays(result))  # type: ignore[arg-type]
    return {**render(out), "json": str(data), "arrays": str(arrays)}


def text_summary(summary: dict[str, Any]) -> list[str]:
    """A few human-readable lines: each view's best attack against chance."""
    lines = []
    views = summary["views"]
    rows: list[tuple[str, dict[str, Any]]] = [
        ("individual", views["individual"]),
        ("masked", views["masked"]),
    ]
    rows += [(f"sum N·B={v['n_times_b']}", v) for v in views["sum"]["sweep"]]
    for name, view in rows:
        lines.append(
            f"{name:14s} best {view['best_attack']:8s} rank-1 {view['rank1']:.2f} "
            f"(chance {view['rank1_chance']:.2f})  identity cos {view['identity_cosine']:.2f} "
            f"(chance {view['identity_cosine_chance']:.2f})  SSIM {view['ssim']:.2f} "
            f"(chance {view['ssim_chance']:.2f})"
        )
    lines.append(summary["statement"])
    return lines
