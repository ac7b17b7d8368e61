"""`secagg demo`, `simulate`, `experiment` and `audit …`: the in-process lab's commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from protocol import modes
from protocol.config import PROFILES, RoundConfig
from secagg.cli import print_json
from secagg.errors import ParameterError


def _random_vectors(rng: Any, cohort: tuple[int, ...], dim: int) -> dict[int, Any]:
    import numpy as np

    return {c: np.frombuffer(rng.random_bytes(8 * dim), "<u8") / 2.0**64 * 2 - 1 for c in cohort}


def _simulate_float(args: argparse.Namespace, name: str) -> int:
    """ckks, bfv and plain: float updates, each client's (or the server's) weighted mean."""
    import hashlib
    import time

    import numpy as np

    from protocol.modes import build_config
    from protocol.runner import run_round
    from secagg.primitives.signing import signing_key
    from secagg.rng import DeterministicRandomSource

    rng = DeterministicRandomSource(args.seed)
    if name == "plain":
        config = build_config(
            "plain", clients=args.clients, dim=args.dim, max_weight=10, seed=str(args.seed).encode()
        )
        keys = None
    else:
        config = build_config(
            name,
            clients=args.clients,
            dim=args.dim,
            max_weight=10,
            nonce=rng.random_bytes(32),
            model_hash=hashlib.sha256(b"simulate").digest(),
        )
        keys = {c: signing_key(rng) for c in config.clients}
    cohort = config.clients
    vectors = _random_vectors(rng, cohort, args.dim)
    weights = {c: 1 + c % 10 for c in cohort}
    phase = "masked" if name == "plain" else "upload"
    drops = {phase: list(cohort[len(cohort) - args.drop_uploads :])} if args.drop_uploads else None
    start = time.perf_counter()
    report = run_round(
        name, config, vectors=vectors, weights=weights, drops=drops, rng=rng, roster_keys=keys
    )
    seconds = time.perf_counter() - start
    contributors = report.survivors
    expected = sum(weights[c] * vectors[c] for c in contributors) / max(
        1, sum(weights[c] for c in contributors)
    )
    means = report.results.values() if report.results else [report.mean]
    errors = [float(np.max(np.abs(r - expected))) for r in means if r is not None]
    summary = {
        "mode": name,
        "clients": args.clients,
        "dim": args.dim,
        "completed": report.completed,
        "abort_reason": report.abort_reason,
        "contributors": list(contributors),
        "dropped": report.dropped,
        "max_abs_error_vs_weighted_mean": max(errors) if errors else None,
        "upload_bytes_per_client": report.upload_bytes,
        "bytes_per_param": report.upload_bytes / args.dim,
        "seconds": seconds,
    }
    if args.json:
        print_json(summary)
    else:
        status = "completed" if report.completed else f"ABORTED ({report.abort_reason})"
        print(f"{name} round {status}; contributors {list(contributors)}")
        error = summary["max_abs_error_vs_weighted_mean"]
        print(f"max |decrypted mean − float64 weighted mean| = {error}")
    return 0 if report.completed else 1


def _simulate_he_masked(args: argparse.Namespace) -> int:
    from clients.lab import he_masked_sim
    from protocol.simulation import parse_drops

    summary = he_masked_sim.simulate(
        args.clients, args.dim, drops=parse_drops(args.drop), seed=args.seed
    )
    if args.json:
        print_json(summary)
    else:
        status = "completed" if summary["completed"] else f"ABORTED ({summary['abort_reason']})"
        print(f"bfv-masked round {status}; survivors {summary['survivors']}")
        for phase, ids in summary["dropped"].items():
            print(f"  dropped at {phase}: {ids}")
        print(f"decrypted integer sum exact: {summary['exact_sum']}")
        error = summary["max_abs_error_vs_weighted_mean"]
        print(f"max |decrypted mean − float64 weighted mean| = {error}")
        print(f"upload {summary['bytes_per_param']:.2f} bytes per parameter")
    return 0 if summary["completed"] else 1


def _simulate(args: argparse.Namespace) -> int:
    """One round in memory of any registry mode; ``mask`` is the old name of secagg."""
    import time

    from protocol import modes
    from protocol.runner import run_round
    from protocol.simulation import SimulationReport, parse_drops

    name = modes.mode(args.mode).name  # "mask" → "secagg"
    if name == "bfv-masked":
        return _simulate_he_masked(args)
    if name not in ("secagg", "secagg+"):
        return _simulate_float(args, name)
    if args.graph == "harary" and args.degree is None and name == "secagg":
        raise ParameterError("--graph harary needs --degree K")
    # SecAgg on a Harary graph is SecAgg+ (the degree decides, protocol.policy.mode_of).
    sparse = name == "secagg+" or args.graph == "harary"
    options: dict[str, Any] = {"degree": args.degree} if sparse else {}
    config = modes.build_config(
        "secagg+" if sparse else "secagg",
        clients=args.clients,
        dim=args.dim,
        threshold=args.threshold,
        profile=args.profile,
        seed=str(args.seed).encode(),
        **options,
    )
    assert isinstance(config, RoundConfig)
    round_ = run_round(
        None, config, drops=parse_drops(args.drop), seed=args.seed, clock=time.perf_counter
    )
    report: SimulationReport = round_.detail
    summary = {
        "clients": config.n,
        "dim": config.dim,
        "threshold": config.threshold,
        "graph": "complete" if config.degree is None else "harary",
        "degree": config.degree if config.degree is not None else config.n - 1,
        "profile": config.profile,
        "modulus_bits": config.modulus_bits,
        "completed": report.completed,
        "abort_reason": report.abort_reason,
        "exact_sum": report.exact,
        "survivors": list(report.survivors),
        "dropped": report.dropped,
        "rejections": [{"client": c, "error": e} for c, e in report.rejections],
        "unmasking_shares_released": sorted(report.unmask_releases),
        "timings_s": report.timings,
    }
    if args.json:
        print_json(summary)
    else:
        status = "completed" if report.completed else f"ABORTED ({report.abort_reason})"
        alive = f"{len(report.survivors)}/{config.n}"
        print(f"round {status}; survivors {alive}; exact sum: {report.exact}")
        for phase, ids in report.dropped.items():
            if ids:
                print(f"  dropped at {phase}: {ids}")
        for phase, t in report.timings.items():
            clients_s, server_s = t.get("clients_s", 0.0), t["server_s"]
            print(f"  {phase:12s} clients {clients_s:8.3f} s   server {server_s:8.3f} s")
    return 0 if report.completed or args.drop else 1


def _demo(args: argparse.Namespace) -> int:
    if args.transport == "memory":
        return _demo_memory(args)
    from pathlib import Path

    from clients.lab import demo_grpc

    options = demo_grpc.DemoOptions(
        clients=args.clients,
        rounds=args.rounds,
        mode=args.mode,
        algorithm=args.algorithm,
        trainer=args.trainer,
        data=args.data,
        local_epochs=args.local_epochs,
        dim=args.dim,
        kill=not args.no_kill,
        out=Path(args.out),
        seed=args.seed,
    )
    what = (
        f"{options.algorithm} training a face model ({options.data})"
        if options.trainer == "face"
        else "FedAvg of the synthetic trainer's updates"
    )
    log = sys.stderr if args.json else sys.stdout
    print(
        f"secagg demo: PKI + aggregator + {options.clients} client daemons as separate "
        f"processes,\nmutual TLS on loopback, {options.mode}, {what}.",
        file=log,
    )
    report = demo_grpc.run(
        options,
        progress=lambda line: print("  " + line, file=log, flush=True),
        live=not args.json and sys.stdout.isatty(),
    )
    if args.json:
        print_json(report)
        return 0 if report["parity"]["ok"] else 1
    _demo_summary(report)
    return 0 if report["parity"]["ok"] else 1


def _demo_summary(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="secagg demo: summary")
    table.add_column("")
    table.add_column("value", justify="right")
    parity = report["parity"]
    completed = sum(r["completed"] for r in report["rounds"])
    ratio = report["bytes_up_per_client_per_round"] / report["fp32_bytes_per_client_per_round"]
    rows = [
        (
            "rounds completed",
            f"{completed} (aborted attempts retried: {len(report['rounds']) - completed})",
        ),
        ("clients killed", str(report["killed"] or "none")),
        ("wall time", f"{report['wall_s']:.1f} s"),
        ("upload per client per round", f"{ratio:.2f}x the fp32 update"),
        (
            "secure = plaintext FedAvg (every round)",
            f"{'yes' if parity['ok'] else 'NO'}: max |err| {parity['max_abs_error']:.2e} "
            f"<= bound {parity['bound']:.2e}",
        ),
    ]
    if report.get("final_accuracy") is not None:
        rows.append(("verification accuracy (held out)", f"{report['final_accuracy']:.3f}"))
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    console.print(f"report: {report['run_dir']}/report.md (and report.json, PNG plots)")


def _demo_memory(args: argparse.Namespace) -> int:
    from clients.lab import demo

    print("secagg demo (in memory): weighted FedAvg of synthetic updates through SecAgg")
    rows = demo.run(
        clients=args.clients,
        rounds=args.rounds,
        dim=args.dim,
        drop_round=None if args.no_kill else min(1, args.rounds - 1),
        seed=args.seed,
    )
    if args.json:
        print_json(demo.summary(rows, args.dim))
        return 0
    columns = ("round", "survivors", "dropped", "max|err|", "bound", "s", "KB up")
    widths = (5, 9, 8, 10, 10, 7, 8)
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        dropped = ",".join(map(str, r.dropped)) or "-"
        print(
            f"{r.round:>5} {r.survivors:>9} {dropped:>8} {r.max_error:>10.2e} "
            f"{r.error_bound:>10.2e} {r.seconds:>7.2f} {r.bytes_up_per_client / 1e3:>8.1f}"
        )
    print("secure weighted mean equals the plaintext mean within the quantisation bound: yes")
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from clients.lab.experiment import ExperimentConfig, run_experiment

    size = (
        tuple(int(v) for v in args.image_size.split("x"))
        if "x" in args.image_size
        else (
            int(args.image_size),
            int(args.image_size),
        )
    )
    cfg = ExperimentConfig(
        algorithm=args.algorithm,
        mode=args.mode,
        data=args.data,
        clients=args.clients,
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        backbone=args.backbone,
        embedding_dim=args.embedding_dim,
        image_size=(size[0], size[1]),
        test_identities=args.test_identities,
        lr=args.lr,
        device=args.device,
        seed=args.seed,
        out=args.out,
        dp_sgd_noise=args.dp_sgd_noise,
        dp_sgd_clip=args.dp_sgd_clip,
        dp_sgd_delta=args.dp_sgd_delta,
        dplc_epsilon=args.dplc_epsilon,
        fedface_epsilon=args.fedface_epsilon,
        fedgc_lambda=args.fedgc_lambda,
        dp_epsilon=args.dp_epsilon,
        dp_noise_multiplier=args.dp_noise_multiplier,
        dp_clip=args.dp_clip,
        dp_delta=args.dp_delta,
        dp_colluders=args.dp_colluders,
    )
    quiet = args.json
    result = run_experiment(cfg, progress=(lambda _: None) if quiet else print)
    if args.json:
        print_json(result)
    else:
        final = result["final"]
        accuracy = f"{final['accuracy_mean']:.3f}±{final['accuracy_std']:.3f}"
        print(f"final verification accuracy {accuracy}; report {cfg.out}/report.json")
        print(f"trust: {result['trust']}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `demo`, `simulate`, `experiment` and `audit server|inversion`."""
    exp = sub.add_parser("experiment", help="a federated face-recognition run in one process")
    exp.add_argument(
        "--algorithm",
        default="fedavg",
        choices=("fedavg", "fedgc", "fedgc-reference", "privacyface", "fedface", "projector"),
        help="fedgc: private FedGC-DPC (client-side correction against DP cluster proxies); "
        "fedgc-reference: the published server-side correction, TRUSTED AGGREGATOR (the "
        "server sees every class embedding); privacyface: DPLC clusters (zCDP) + "
        "consensus-aware loss",
    )
    exp.add_argument("--mode", choices=modes.names("experiment"), default="secagg")
    exp.add_argument("--data", default="synthetic", help="synthetic[:IDS:IMGS], a folder or .npz")
    exp.add_argument("--clients", type=int, default=4)
    exp.add_argument("--rounds", type=int, default=5)
    exp.add_argument("--local-epochs", type=int, default=1)
    exp.add_argument("--backbone", default="small-cnn")
    exp.add_argument("--embedding-dim", type=int, default=128)
    exp.add_argument("--image-size", default="32", help="N or HxW")
    exp.add_argument("--test-identities", type=int, default=10)
    exp.add_argument("--lr", type=float, default=0.02)
    exp.add_argument("--device", default="auto")
    exp.add_argument("--seed", type=int, default=0)
    exp.add_argument("--out", default="runs/experiment")
    exp.add_argument(
        "--dp-sgd-noise",
        type=float,
        default=0.0,
        help="DP-SGD noise multiplier σ in local training (Opacus; 0 = off)",
    )
    exp.add_argument("--dp-sgd-clip", type=float, default=1.0, help="DP-SGD per-sample L2 clip")
    exp.add_argument("--dp-sgd-delta", type=float, default=1e-5, help="δ of the reported DP-SGD ε")
    exp.add_argument(
        "--dplc-epsilon",
        type=float,
        default=8.0,
        help="privacyface/fedgc: total DPLC ε per client over the run (zCDP, δ = 1e-5; "
        "row-level: one class embedding of the released clusters, not one person)",
    )
    exp.add_argument(
        "--fedface-epsilon",
        type=float,
        default=1.0,
        help="fedface: total ε per client of its noisy S_k over the run (zCDP, δ = 1e-5; "
        "one class embedding's ŵŵᵀ, sensitivity 1)",
    )
    exp.add_argument("--fedgc-lambda", type=float, default=1.0, help="FedGC correction weight λ")
    ddp = exp.add_mutually_exclusive_group()
    ddp.add_argument(
        "--dp-epsilon",
        type=float,
        default=0.0,
        help="distributed DP: total ε over the run at --dp-delta (calibrates the noise)",
    )
    ddp.add_argument(
        "--dp-noise-multiplier",
        type=float,
        default=0.0,
        help="distributed DP: noise multiplier z carried by the minimum honest survivors",
    )
    exp.add_argument("--dp-clip", type=float, default=1.0, help="distributed DP: L2 clip C")
    exp.add_argument("--dp-delta", type=float, default=1e-5, help="distributed DP: δ")
    exp.add_argument(
        "--dp-colluders",
        type=int,
        default=None,
        help="distributed DP: colluding clients n_C (default: the protocol's assumption)",
    )
    exp.add_argument("--json", action="store_true")
    exp.set_defaults(func=_experiment)
    demo = sub.add_parser("demo", help="end-to-end demo (see README)")
    demo.add_argument("--clients", type=int, default=4)
    demo.add_argument("--rounds", type=int, default=5)
    demo.add_argument("--mode", choices=modes.names("demo"), default="secagg")
    demo.add_argument(
        "--algorithm",
        default="fedavg",
        help="fedavg, projector, fedface, fedgc or privacyface over the daemons "
        "(fedgc-reference: `secagg experiment` only)",
    )
    demo.add_argument(
        "--trainer",
        choices=("face", "synthetic"),
        default="face",
        help="face: a small CNN on face identities; synthetic: fast vector updates",
    )
    demo.add_argument(
        "--data",
        default="synthetic:400:8",
        help="face data: synthetic:IDS:IMGS, orl, an .npz or an identity folder",
    )
    demo.add_argument("--local-epochs", type=int, default=1)
    demo.add_argument("--dim", type=int, default=20_000, help="synthetic trainer's dimension")
    demo.add_argument("--transport", choices=("grpc", "memory"), default="grpc")
    demo.add_argument("--out", default="runs", help="where runs/<id>/ goes")
    demo.add_argument("--no-kill", action="store_true", help="no client drops out")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=_demo)
    sim = sub.add_parser("simulate", help="run N clients and the server in memory")
    sim.add_argument("--clients", type=int, default=10)
    sim.add_argument("--dim", type=int, default=1000)
    sim.add_argument("--threshold", type=int, default=None, help="default ⌊2n/3⌋+1")
    sim.add_argument("--graph", choices=("complete", "harary"), default="complete")
    sim.add_argument("--degree", type=int, default=None, help="neighbours per client (harary)")
    sim.add_argument("--profile", choices=PROFILES, default="active")
    sim.add_argument(
        "--drop",
        default="",
        help="PHASE:COUNT[,...] with PHASE in advertise, share, masked, consistency, unmask",
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--mode",
        choices=(*modes.names("simulate"), "mask"),
        default="secagg",
        help="secagg (default; with --graph harary, SecAgg+), secagg+ (Harary graph, default "
        "degree the largest even k < n), plain, ckks, bfv (homomorphic aggregation), "
        "bfv-masked (SecAgg masks inside BFV plaintexts; takes --drop). "
        "mask: deprecated alias of secagg, same output",
    )
    sim.add_argument(
        "--drop-uploads",
        type=int,
        default=0,
        help="plain and HE modes: clients that never upload",
    )
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(func=_simulate)
    from clients.lab.audit.command import register as register_audit  # argparse only, no torch

    register_audit(sub)
