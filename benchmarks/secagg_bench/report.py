"""What `secagg bench suite` writes: results.json, results.csv, table.md and PNG plots.

Plots are log-log, one panel per D (``*_vs_n``) or per N (``*_vs_d``), one
line per mode; a peer system's line is dashed in its mode's colour. Cells
that did not run are absent from the plots and listed under the table.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, NullLocator

from protocol.modes import names

#: results.csv columns, in order (results.json also keeps each cell's raw output).
COLUMNS = (
    "system",
    "mode",
    "clients",
    "dim",
    "status",
    "reason",
    "degree",
    "threshold",
    "dropout",
    "repeat",
    "client_s",
    "server_s",
    "decrypt_s",
    "bytes_up_per_client",
    "bytes_per_param",
    "expansion_vs_fp32",
    "max_abs_error",
    "estimate_s",
    "wall_s",
    "peak_rss_mb",
    "load_1min",
    "method",
)
#: One colour per registry mode (protocol.modes; a test checks every mode has one).
COLOURS = {
    "plain": "tab:gray",
    "secagg": "tab:blue",
    "secagg+": "tab:orange",
    "ckks": "tab:green",
    "bfv": "tab:red",
    "bfv-masked": "tab:purple",
}
#: Distinct markers, so that modes with equal values (e.g. the two HE uploads) stay visible.
MARKERS = {"plain": "o", "secagg": "s", "secagg+": "^", "ckks": "D", "bfv": "P", "bfv-masked": "v"}
PLOTS = (
    # file, y field, y label, x field, panel field
    ("client_time_vs_n.png", "client_s", "client s (one client, one round)", "clients", "dim"),
    ("server_time_vs_n.png", "server_s", "server s (N clients, one round)", "clients", "dim"),
    ("bytes_vs_n.png", "bytes_per_param", "upload bytes per parameter", "clients", "dim"),
    ("client_time_vs_d.png", "client_s", "client s (one client, one round)", "dim", "clients"),
    ("server_time_vs_d.png", "server_s", "server s (N clients, one round)", "dim", "clients"),
    ("bytes_vs_d.png", "bytes_up_per_client", "upload bytes per client", "dim", "clients"),
)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_results(doc: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """results.json (everything) and results.csv (one line per cell), replaced atomically."""
    json_path, csv_path = out / "results.json", out / "results.csv"
    _atomic_write(json_path, json.dumps(doc, indent=1, default=str) + "\n")
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in doc["rows"]:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    os.replace(tmp, csv_path)
    return json_path, csv_path


def write_all(doc: dict[str, Any], out: Path) -> list[Path]:
    """table.md and the six plots; returns their paths."""
    paths = [write_table(doc, out / "table.md")]
    for name, y, ylabel, x, panel in PLOTS:
        paths.append(plot(doc["rows"], out / name, x=x, y=y, ylabel=ylabel, panel=panel))
    return paths


def series_label(row: dict[str, Any]) -> str:
    """'secagg+' for ours, 'secagg+ · flower (peer)' for a peer's row."""
    if row["system"] == "secagg":
        return str(row["mode"])
    return f"{row['mode']} · {row['system']} (peer)"


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def dim_label(d: int) -> str:
    """1000000 → '1e6'; other values as they are."""
    exp = round(math.log10(d)) if d > 0 else 0
    return f"1e{exp}" if 10**exp == d else str(d)


def write_table(doc: dict[str, Any], path: Path) -> Path:
    """A markdown table of the measured cells, then the skipped and failed ones."""
    rows = doc["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    plain_server = {
        (r["clients"], r["dim"]): r["server_s"]
        for r in ok
        if r["mode"] == "plain" and r["system"] == "secagg"
    }
    m = doc["machine"]
    load = ", ".join(f"{v:.1f}" for v in m["load_average_at_start"])
    lines = [
        "# secagg bench suite",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Machine: {m['cpus']} CPUs, {m['machine']}, Python {m['python']}; load average at "
        f"start {load}. Started {doc['started_utc']}, {doc.get('elapsed_s', 0.0):.0f} s in all.",
        *(
            ["", "**Interrupted**: the cells after the last measured one did not run."]
            if doc.get("interrupted")
            else []
        ),
        "",
        "client s: one client's work for its whole update in one round; server s: the "
        "aggregator's work for N clients (masking modes: dropout after key sharing included); "
        "× plain: server s over the plain server s of the same N and D; B/param and × fp32: "
        "upload per client per parameter and against a float32 update. Compare modes within "
        "this run only (see docs/benchmarking.md).",
        "",
        "| D | N | mode | system | degree | dropout | client s | server s | × plain "
        "| B/param | × fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(ok, key=_order):
        base = plain_server.get((r["clients"], r["dim"]))
        ratio = r["server_s"] / base if base and r["mode"] != "plain" else None
        lines.append(
            f"| {dim_label(r['dim'])} | {r['clients']} | {r['mode']} | {r['system']} "
            f"| {_fmt(r['degree'], 'd')} | {_fmt(r['dropout'], '.0%')} "
            f"| {_fmt(r['client_s'], '.3g')} | {_fmt(r['server_s'], '.3g')} "
            f"| {_fmt(ratio, '.3g')} | {_fmt(r['bytes_per_param'], '.2f')} "
            f"| {_fmt(r['expansion_vs_fp32'], '.2f')} |"
        )
    rest = [r for r in rows if r["status"] != "ok"]
    if rest:
        lines += ["", "Not measured:", "", "| D | N | mode | system | status | reason |"]
        lines.append("|---|---|---|---|---|---|")
        for r in sorted(rest, key=_order):
            reason = str(r["reason"]).replace("|", "/")
            lines.append(
                f"| {dim_label(r['dim'])} | {r['clients']} | {r['mode']} | {r['system']} "
                f"| {r['status']} | {reason} |"
            )
    lines += ["", "Methods:", ""]
    for label, method in sorted({(series_label(r), r["method"]) for r in ok}):
        lines.append(f"- {label}: {method}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _order(row: dict[str, Any]) -> tuple[int, int, int, bool, str]:
    """By D, N, mode; ours before the peer."""
    order = names()
    rank = order.index(row["mode"]) if row["mode"] in order else len(order)
    return row["dim"], row["clients"], rank, row["system"] != "secagg", row["system"]


def _series(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=_order):
        out.setdefault(series_label(r), []).append(r)
    return out


def plot(
    rows: list[dict[str, Any]], path: Path, *, x: str, y: str, ylabel: str, panel: str
) -> Path:
    """One log-log figure, a panel per value of ``panel``, a line per mode (and peer)."""
    ok = [r for r in rows if r["status"] == "ok" and r.get(y) and r[y] > 0]
    panels = sorted({r[panel] for r in ok}) or [None]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False, sharey=True
    )
    for ax, value in zip(axes[0], panels, strict=True):
        cell_rows = [r for r in ok if r[panel] == value]
        if not cell_rows:
            ax.text(0.5, 0.5, "no measured cells", ha="center", va="center")
            ax.set_axis_off()
            continue
        for label, points in _series(cell_rows).items():
            points = sorted(points, key=lambda r: r[x])
            peer = points[0]["system"] != "secagg"
            ax.plot(
                [r[x] for r in points],
                [r[y] for r in points],
                marker=MARKERS.get(points[0]["mode"], "o"),
                markersize=7 if points[0]["mode"] in ("secagg", "ckks") else 5,
                linestyle="--" if peer else "-",
                markerfacecolor="white" if peer else None,
                color=COLOURS.get(points[0]["mode"], "black"),
                label=label,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted({r[x] for r in cell_rows})
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([dim_label(t) if x == "dim" else str(t) for t in ticks])
        ax.set_xlabel("N (clients)" if x == "clients" else "D (parameters)")
        ax.set_title(f"D = {dim_label(value)}" if panel == "dim" else f"N = {value}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.08 + 0.05 * ((len(labels) - 1) // 5), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
