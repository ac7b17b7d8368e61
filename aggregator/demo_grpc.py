"""`secagg demo`: a PKI, an aggregator and client daemons as separate processes.

Mutual TLS on loopback, SecAgg with the active profile (signed keys and a
consistency round), one client killed with SIGKILL before it sends its
masked input in round 1 to show dropout recovery. Clients run the synthetic
trainer (face training plugs in later), so the demo can replay plaintext
FedAvg itself and check the secure model against it within the quantisation
bound. Everything lands in ``runs/<id>/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aggregator.cluster import LocalCluster
from clients.training.synthetic import SyntheticTrainer
from protocol.config import minimum_threshold
from secagg.quantization import Quantizer, required_modulus_bits


@dataclass(frozen=True)
class DemoOptions:
    """What `secagg demo` runs."""

    clients: int = 4
    rounds: int = 5
    dim: int = 20_000
    kill: bool = True
    out: Path = Path("runs")
    phase_timeout_s: float = 8.0


def plaintext_fedavg(
    options: DemoOptions, survivors: list[list[int]], lr: float = 1.0
) -> np.ndarray:
    """Replay the rounds in the clear, in float64, with the same trainer and survivors."""
    model = np.zeros(options.dim)
    for alive in survivors:
        updates = [SyntheticTrainer(c)(model.astype(np.float32), 0).vector for c in alive]
        model = model + lr * np.mean([u for u in updates if u is not None], axis=0)
        model = model.astype(np.float32).astype(np.float64)
    return model


def run(options: DemoOptions, *, progress: Any = print) -> dict[str, Any]:
    """Run the demo; returns the report (also written to runs/<id>/report.json)."""
    run_dir = options.out / time.strftime("%Y%m%d-%H%M%S")
    # The client policy's safe minimum with no colluding client assumed (n_C = 0):
    # t = 3 for 4 clients, so one may drop. Kill one only when the round survives it.
    threshold = minimum_threshold(options.clients, profile="active", colluders=0)
    kill = options.kill and options.clients > threshold
    started = time.monotonic()
    with LocalCluster(run_dir, options.clients) as cluster:
        cluster.start(
            {
                "rounds": options.rounds,
                "dim": options.dim,
                "profile": "active",
                "threshold": threshold,
                "phase_timeout_s": options.phase_timeout_s,
                "start_timeout_s": 3.0,
                "poll_wait_s": 1.0,
            },
            {"colluders": 0},
            faults={options.clients: "before_send_MaskedInput@1"} if kill else None,
        )
        progress(f"aggregator on 127.0.0.1:{cluster.port} (mTLS, active profile, t={threshold})")
        if kill:
            progress(f"client {options.clients} will be killed before its masked input in round 1")
        rounds = cluster.follow(options.rounds, lambda record: progress(_describe(record)))
        cluster.wait()
    wall = time.monotonic() - started
    completed = [r for r in rounds if r["completed"]]
    model = np.load(sorted((run_dir / "state" / "checkpoints").glob("model-*.npy"))[-1])
    reference = plaintext_fedavg(options, [r["survivors"] for r in completed])
    step = Quantizer(1.0, 1 << 16).step
    bound = step * len(completed)  # each round's secure mean is within one level of the clear one
    error = float(np.max(np.abs(model - reference)))
    report = {
        "mode": "secagg",
        "profile": "active",
        "transport": "grpc+mtls",
        "clients": options.clients,
        "dim": options.dim,
        "threshold": threshold,
        "killed": [options.clients] if kill else [],
        "rounds": rounds,
        "wall_s": wall,
        "parity": {"max_abs_error": error, "bound": bound, "ok": error <= bound},
        "bytes_up_per_client_per_round": (options.dim + 1) * _bits(options.clients) / 8,
        "fp32_bytes_per_client_per_round": 4 * options.dim,
    }
    report["plots"] = _plots(run_dir, report, rounds, options, model, survivors=completed)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    (run_dir / "report.md").write_text(_markdown(report))
    report["run_dir"] = str(run_dir)
    return report


def _plots(
    run_dir: Path,
    report: dict[str, Any],
    rounds: list[dict[str, Any]],
    options: DemoOptions,
    model: np.ndarray,
    *,
    survivors: list[dict[str, Any]],
) -> list[str]:
    """Time per phase, bytes against fp32, and the secure model's gap to plain FedAvg."""
    from aggregator import plots

    gaps = []
    for upto in range(1, len(survivors) + 1):
        reference = plaintext_fedavg(options, [r["survivors"] for r in survivors[:upto]])
        checkpoint = run_dir / "state" / "checkpoints" / f"model-{upto:06d}.npy"
        gaps.append(float(np.max(np.abs(np.load(checkpoint) - reference))))
    return [
        str(plots.time_breakdown(rounds, run_dir / "time_per_round.png")),
        str(
            plots.bytes_vs_plain(
                report["bytes_up_per_client_per_round"],
                report["fp32_bytes_per_client_per_round"],
                run_dir / "bytes_per_client.png",
            )
        ),
        str(
            plots.metric_per_round(
                gaps,
                "max |secure − plaintext FedAvg|",
                run_dir / "parity_per_round.png",
                bound=[Quantizer(1.0, 1 << 16).step * (i + 1) for i in range(len(gaps))],
            )
        ),
    ]


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# secagg demo",
        "",
        f"{report['clients']} client daemons, mutual TLS, SecAgg ({report['profile']} profile), "
        f"t = {report['threshold']}, model of {report['dim']} parameters; killed: "
        f"{report['killed'] or 'none'}.",
        "",
        "| round | outcome | survivors | seconds | bytes received |",
        "|---|---|---|---|---|",
    ]
    for r in report["rounds"]:
        outcome = "completed" if r["completed"] else f"aborted: {r['abort_reason']}"
        cells = [r["round"], outcome, r["survivors"], f"{r['wall_s']:.2f}", r["bytes_received"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    parity = report["parity"]
    lines += [
        "",
        f"Parity with plaintext FedAvg: max |err| {parity['max_abs_error']:.2e} ≤ bound "
        f"{parity['bound']:.2e}: {'yes' if parity['ok'] else 'NO'}.",
        "",
        *(f"![{Path(p).stem}]({Path(p).name})" for p in report["plots"]),
        "",
    ]
    return "\n".join(lines)


def _bits(clients: int) -> int:
    return required_modulus_bits(clients, 1 << 16, 1)


def _describe(record: dict[str, Any]) -> str:
    dropped = sorted(set(record["cohort"]) - set(record["survivors"]))
    phases = " ".join(f"{k}={v:.2f}s" for k, v in record["phase_seconds"].items())
    status = "completed" if record["completed"] else f"aborted ({record['abort_reason']})"
    return (
        f"round {record['round']}: {status}; survivors {record['survivors']}; "
        f"dropped {dropped or '-'}; {phases}"
    )
