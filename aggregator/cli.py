"""The `secagg` command.

It lives in ``aggregator/`` because the top-level packages are fixed and the
CLI is a host: it reads clocks and files and starts processes, which the
pure layers (``secagg/``, ``protocol/``) must not. Subcommands import their
modules lazily so that `secagg --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any

from protocol.config import PROFILES
from secagg.errors import ParameterError, SecAggError


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _print_result(result: dict[str, Any], *, as_json: bool) -> None:
    """One JSON object, or one ``key value`` line per field."""
    if as_json:
        _print_json(result)
        return
    for key, value in result.items():
        print(f"{key:24s} {value}")


def _bench_primitives(args: argparse.Namespace) -> int:
    from aggregator import bench_primitives

    result = bench_primitives.run(dim=args.dim, repeat=args.repeat)
    if args.json:
        _print_json(result)
    else:
        print(f"AES-256-CTR keystream : {result['aes_ctr_keystream_mwords_per_s']:8.1f} Mwords/s")
        print(
            f"mask PRG              : {result['prg_mwords_per_s']:8.1f} Mwords/s "
            f"({result['prg_vs_keystream']:.0%} of keystream)"
        )
        print(
            f"PRG + accumulate      : {result['prg_accumulate_mwords_per_s']:8.1f} Mwords/s "
            f"({result['prg_accumulate_vs_keystream']:.0%} of keystream)"
        )
        print(f"quantise + pack       : {result['quantize_pack_mwords_per_s']:8.1f} Mwords/s")
        for row in result["shamir"]:
            print(
                f"Shamir n={row['n']:<5} t={row['t']:<4}: split 2 secrets "
                f"{row['split_two_secrets_s'] * 1e3:7.2f} ms, reconstruct 1000 secrets "
                f"{row['reconstruct_1000_secrets_s'] * 1e3:7.1f} ms"
            )
    return 0


def _bench_mask(args: argparse.Namespace) -> int:
    from aggregator import bench_mask

    result = bench_mask.run(
        clients=args.clients,
        dim=args.dim,
        degree=args.degree,
        dropout=args.dropout,
        repeat=args.repeat,
        profile=args.profile,
        threshold=args.threshold,
        seed=args.seed,
    )
    _print_result(result, as_json=args.json)
    return 0


def _simulate_he(args: argparse.Namespace) -> int:
    import hashlib
    import time

    import numpy as np

    from protocol.he_flow import HEConfig, run_he_round
    from secagg.primitives.signing import signing_key
    from secagg.rng import DeterministicRandomSource

    if args.mode == "bfv-masked":
        return _simulate_he_masked(args)
    rng = DeterministicRandomSource(args.seed)
    cohort = tuple(range(1, args.clients + 1))
    config = HEConfig(
        round=0,
        clients=cohort,
        dim=args.dim,
        scheme=args.mode,
        key_holder=1,
        clip=1.0,
        max_weight=10,
        levels=1 << 16,
        nonce=rng.random_bytes(32),
        model_hash=hashlib.sha256(b"simulate").digest(),
    )
    keys = {c: signing_key(rng) for c in cohort}
    vectors = {
        c: np.frombuffer(rng.random_bytes(8 * args.dim), "<u8") / 2.0**64 * 2 - 1 for c in cohort
    }
    weights = {c: 1 + c % 10 for c in cohort}
    drops = (
        {"upload": list(cohort[len(cohort) - args.drop_uploads :])} if args.drop_uploads else None
    )
    start = time.perf_counter()
    report = run_he_round(
        config, vectors=vectors, weights=weights, roster_keys=keys, rng=rng, drops=drops
    )
    seconds = time.perf_counter() - start
    contributors = report.contributors
    expected = sum(weights[c] * vectors[c] for c in contributors) / max(
        1, sum(weights[c] for c in contributors)
    )
    errors = [float(np.max(np.abs(r - expected))) for r in report.results.values()]
    summary = {
        "mode": args.mode,
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
        _print_json(summary)
    else:
        status = "completed" if report.completed else f"ABORTED ({report.abort_reason})"
        print(f"{args.mode} round {status}; contributors {list(contributors)}")
        error = summary["max_abs_error_vs_weighted_mean"]
        print(f"max |decrypted mean − float64 weighted mean| = {error}")
    return 0 if report.completed else 1


def _simulate_he_masked(args: argparse.Namespace) -> int:
    from aggregator import bench_he_masked
    from protocol.simulation import parse_drops

    summary = bench_he_masked.simulate(
        args.clients, args.dim, drops=parse_drops(args.drop), seed=args.seed
    )
    if args.json:
        _print_json(summary)
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
    import time

    if args.mode != "mask":
        return _simulate_he(args)

    from protocol.simulation import make_config, parse_drops, simulate

    config = make_config(
        clients=args.clients,
        dim=args.dim,
        threshold=args.threshold,
        degree=None if args.graph == "complete" else args.degree,
        profile=args.profile,
        seed=str(args.seed).encode(),
    )
    if args.graph == "harary" and args.degree is None:
        raise ParameterError("--graph harary needs --degree K")
    report = simulate(config, drops=parse_drops(args.drop), seed=args.seed, clock=time.perf_counter)
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
        _print_json(summary)
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

    from aggregator import demo_grpc

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
        _print_json(report)
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
    from aggregator import demo

    print("secagg demo (in memory): weighted FedAvg of synthetic updates through SecAgg")
    rows = demo.run(
        clients=args.clients,
        rounds=args.rounds,
        dim=args.dim,
        drop_round=None if args.no_kill else min(1, args.rounds - 1),
        seed=args.seed,
    )
    if args.json:
        _print_json(demo.summary(rows, args.dim))
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


def _aggregator_serve(args: argparse.Namespace) -> int:
    import logging
    import os

    # gRPC's C core logs every failed TLS handshake at INFO (one line, about 200 bytes, per
    # junk connection: 120k of them wrote 25 MB). Before grpc is imported; an operator's
    # own GRPC_VERBOSITY wins.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

    from aggregator.server import AggregatorServer
    from aggregator.settings import AggregatorSettings, load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    overrides = {
        "listen": args.listen,
        "state_dir": args.state_dir,
        "insecure": True if args.insecure else None,
        "rounds": args.rounds,
        "dim": args.dim,
    }
    if args.config:
        settings = load_settings(args.config, **overrides)
    else:
        settings = AggregatorSettings(**{k: v for k, v in overrides.items() if v is not None})
    server = AggregatorServer(settings, clients=args.clients)
    server.start()
    print(f"aggregator listening on port {server.port}", flush=True)
    server.wait(exit_when_finished=args.exit_when_finished)
    return 0


def _client_run(args: argparse.Namespace) -> int:
    import logging

    from clients.run import run_client
    from clients.settings import load_client_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_client_settings(
        args.config,
        id=args.id,
        aggregator=args.aggregator,
        pki_dir=args.pki_dir,
        insecure=True if args.insecure else None,
        exact_levels=True if args.exact_levels else None,
        colluders=args.colluders,
    )
    if args.allow:
        settings = settings.with_opt_in(*args.allow)
    stats = run_client(settings)
    print(
        json.dumps(
            {
                "client": settings.id,
                "rounds_completed": stats.rounds_completed,
                "rounds_aborted": stats.rounds_aborted,
            }
        ),
        flush=True,
    )
    return 0


def _client_init_model(args: argparse.Namespace) -> int:
    """Every party builds θ₀ from the same [client.training] settings; the aggregator loads it."""
    import numpy as np

    from clients.settings import load_client_settings
    from clients.training.face_trainer import FaceTrainingSettings, initial_model

    settings = load_client_settings(args.config, insecure=True)
    if settings.trainer != "face":
        raise ParameterError('init-model needs trainer = "face" and a [client.training] table')
    theta = initial_model(FaceTrainingSettings(**settings.training), channels=args.channels)
    np.save(args.out, theta)
    _print_result(
        {"out": args.out, "dim": int(theta.size), "backbone": settings.training.get("backbone")},
        as_json=True,
    )
    return 0


def _pki_add(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aggregator.pki import add_client

    paths = add_client(Path(args.pki_dir), args.client, days=args.days, name=args.name)
    files = paths.client(args.client)
    if args.json:
        _print_json(
            {"client": args.client, "roster_ids": list(paths.client_ids)}
            | {
                "cert": str(files.cert),
                "key": str(files.key),
                "signing_key": str(files.signing_key),
            }
        )
    else:
        print(f"client {args.client} enrolled: {files.dir}/ (client.pem, client.key, signing.key)")
        print(f"roster re-signed ({len(paths.client_ids)} clients): {paths.roster}")
        print("restart the aggregator and the daemons with the new roster.json")
    return 0


def _pki_remove(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aggregator.pki import remove_client

    paths = remove_client(Path(args.pki_dir), args.client)
    if args.json:
        _print_json({"removed": args.client, "roster_ids": list(paths.client_ids)})
    else:
        print(f"client {args.client} removed; roster re-signed ({len(paths.client_ids)} clients)")
        print("restart the aggregator and the daemons with the new roster.json")
    return 0


def _pki_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aggregator.pki import init_pki

    paths = init_pki(
        Path(args.out),
        clients=args.clients,
        server_names=args.server_name,
        days=args.days,
        force=args.force,
    )
    if args.json:
        _print_json(paths.as_dict())
    else:
        print(f"PKI for {len(paths.client_ids)} clients in {paths.root}")
        print(f"  CA            {paths.ca_cert}")
        print(f"  server        {paths.server_cert}")
        clients_dir = paths.root / "clients"
        print(f"  clients       {clients_dir}/<id>/ (client.pem, client.key, signing.key)")
        print(f"  roster        {paths.roster} (public key {paths.roster_public})")
        print(
            f"  consortium    {paths.consortium}/ ({paths.ca_key.name}, {paths.roster_key.name}): "
            "keep with the consortium, never on the aggregator (it refuses to start beside them)"
        )
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from aggregator.experiment import ExperimentConfig, run_experiment

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
        _print_json(result)
    else:
        final = result["final"]
        accuracy = f"{final['accuracy_mean']:.3f}±{final['accuracy_std']:.3f}"
        print(f"final verification accuracy {accuracy}; report {cfg.out}/report.json")
        print(f"trust: {result['trust']}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    """Face verification of a saved backbone (``secagg eval``)."""
    from clients.training.evaluate import evaluate_checkpoint

    if args.data is not None and (args.pairs is not None or args.images is not None):
        raise ParameterError("give either --data or --pairs with --images, not both")
    if args.data is None and (args.pairs is None or args.images is None):
        raise ParameterError("give --data SPEC, or --pairs PAIRS together with --images DIR")
    try:
        result = evaluate_checkpoint(
            args.checkpoint,
            data=args.data,
            pairs=args.pairs,
            images=args.images,
            device=args.device,
            folds=args.folds,
            seed=args.seed,
            max_impostor=args.max_impostor,
            batch_size=args.batch_size,
            flip=not args.no_flip,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ParameterError(f"eval: {exc}") from exc
    summary = result.to_json()
    if args.json:
        _print_json(summary)
        return 0
    print(
        f"{summary['pairs']} pairs ({summary['genuine']} genuine, {summary['impostor']} "
        f"impostor), {summary['folds']} folds"
    )
    print(f"accuracy      {summary['accuracy_mean']:.4f} ± {summary['accuracy_std']:.4f}")
    for key, tar in summary["tar_at_far"].items():
        note = "" if summary["far_resolved"][key] else "  (too few impostors: TAR at FAR 0)"
        print(
            f"TAR@FAR={key:5s} {tar:.4f}  (achieved FAR {summary['far_achieved'][key]:.2e}){note}"
        )
    return 0


def _bench_round(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aggregator import bench_round

    result = bench_round.run(
        clients=args.clients,
        dim=args.dim,
        modes=args.mode or ["plain", "secagg+"],
        rounds=args.rounds,
        out=Path(args.out),
    )
    if args.json:
        _print_json(result)
    else:
        for row in result["modes"]:
            ratio = f"  {row['vs_plain']:.2f}x plain" if "vs_plain" in row else ""
            print(
                f"{row['mode']:8s} median round {row['round_wall_s_median']:7.2f} s  "
                f"up/client {row['bytes_up_per_client'] / 1e6:7.2f} MB{ratio}"
            )
    return 0


def _status(args: argparse.Namespace) -> int:
    import urllib.request

    url = args.aggregator if "://" in args.aggregator else f"http://{args.aggregator}"
    with urllib.request.urlopen(url.rstrip("/") + "/status", timeout=args.timeout) as reply:  # noqa: S310
        status = json.loads(reply.read())
    if args.json:
        _print_json(status)
        return 0
    state = "finished" if status["finished"] else f"phase {status['phase']}"
    print(f"round {status['round']}/{status['rounds']} (epoch {status['epoch']}), {state}")
    print(f"profile {status['profile']}; clients present: {status['present']}")
    if status["waiting_for"]:
        print(f"waiting for: {status['waiting_for']}")
    for r in status["history"][-5:]:
        outcome = "completed" if r["completed"] else f"aborted: {r['abort_reason']}"
        wait = f"started after {r.get('start_wait_s', 0.0):.1f} s"
        if r.get("waited_for"):
            wait += f" waiting for {r['waited_for']}"
        if r.get("not_waited_for"):
            wait += f", not waiting for {r['not_waited_for']}"
        print(
            f"  round {r['round']} (epoch {r['epoch']}): {outcome}, survivors {r['survivors']}; "
            + wait
        )
    kept = status.get("retention")
    if kept:
        print(
            f"retained: bodies of {kept['rounds_with_bodies']} rounds "
            f"(keep_rounds {kept['keep_rounds']}), checkpoints {kept['checkpoints']} "
            f"(keep_checkpoints {kept['keep_checkpoints']}); state "
            f"{(kept['database_bytes'] + kept['checkpoint_bytes']) / 1e6:.1f} MB, "
            f"{kept['bytes_pruned'] / 1e6:.1f} MB of bodies pruned"
        )
    return 0


def _bench_he(args: argparse.Namespace) -> int:
    from aggregator import bench_he

    if args.masked and not args.scheme.startswith("bfv"):
        raise ParameterError("--masked needs --scheme bfv (masks are added mod the plain modulus)")
    if args.masked:  # the real hybrid round: key agreement, masks, encryption, unmasking
        from aggregator import bench_he_masked

        result = bench_he_masked.run(args.clients, args.dim, seed=args.seed)
        _print_result(result, as_json=args.json)
        return 0
    result = bench_he.run(args.scheme, args.clients, args.dim, args.masked, seed=args.seed)
    _print_result(result, as_json=args.json)
    return 0


def _bench_suite(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aggregator import bench_suite

    options = bench_suite.options_from(
        out=args.out,
        clients=args.clients,
        dims=args.dims,
        modes=args.modes,
        quick=args.quick,
        repeat=args.repeat,
        dropout=args.dropout,
        peers=args.peers,
        peers_python=Path(args.peers_python),
        peers_dir=Path(args.peers_dir),
        peers_max_dim=int(args.peers_max_dim),
        max_cell_s=args.max_cell_s,
        max_memory_gb=args.max_memory_gb,
        max_total_s=args.max_total_s,
        seed=args.seed,
    )
    if args.plan:
        cells = bench_suite.describe_plan(options)
        if args.json:
            _print_json(cells)
            return 0
        total = sum(c["estimate_s"] for c in cells if not c["skip"])
        for c in cells:
            verdict = f"skip: {c['skip']}" if c["skip"] else f"~{c['estimate_s']:.0f} s"
            print(
                f"{c['system']:8s} {c['mode']:10s} N={c['clients']:<5d} D={c['dim']:<9d} {verdict}"
            )
        print(f"estimated total {total / 60:.0f} min (conservative)")
        return 0
    doc = bench_suite.run(options)
    if args.json:
        _print_json(doc)
    else:
        print((options.out / "table.md").read_text(encoding="utf-8"), end="")
        names = ", ".join(["results.json", "results.csv", *doc["outputs"]])
        print(f"wrote {names} in {options.out}")
    return 0 if all(r["status"] != "failed" for r in doc["rows"]) else 1


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (kept separate so tests can inspect it)."""
    parser = argparse.ArgumentParser(prog="secagg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="measure throughput and overhead")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    prim = bench_sub.add_parser("primitives", help="crypto primitives vs raw AES-CTR")
    prim.add_argument("--dim", type=int, default=1_000_000, help="vector length (words)")
    prim.add_argument("--repeat", type=int, default=7, help="repeats per measurement (median)")
    prim.add_argument("--json", action="store_true", help="print one JSON object")
    prim.set_defaults(func=_bench_primitives)

    mask = bench_sub.add_parser("mask", help="one masked round in memory, timed per party")
    mask.add_argument("--clients", type=int, required=True)
    mask.add_argument("--dim", type=int, required=True)
    mask.add_argument(
        "--degree", type=int, default=None, help="SecAgg+ neighbours (default: complete)"
    )
    mask.add_argument(
        "--dropout", type=float, default=0.0, help="fraction dropping after ShareKeys"
    )
    mask.add_argument("--repeat", type=int, default=1)
    mask.add_argument("--profile", choices=PROFILES, default="active")
    mask.add_argument("--threshold", type=int, default=None)
    mask.add_argument("--seed", type=int, default=0)
    mask.add_argument("--json", action="store_true")
    mask.set_defaults(func=_bench_mask)

    agg = sub.add_parser("aggregator", help="the aggregator service")
    agg_sub = agg.add_subparsers(dest="aggregator_command", required=True)
    serve = agg_sub.add_parser("serve", help="run the gRPC aggregator")
    serve.add_argument("--config", help="aggregator.toml")
    serve.add_argument("--listen", help="host:port (port 0 picks a free one)")
    serve.add_argument("--state-dir")
    serve.add_argument("--rounds", type=int)
    serve.add_argument("--dim", type=int)
    serve.add_argument("--insecure", action="store_true", help="no TLS (development only)")
    serve.add_argument("--clients", type=int, help="roster size when running without a PKI")
    serve.add_argument("--exit-when-finished", action="store_true")
    serve.set_defaults(func=_aggregator_serve)

    client = sub.add_parser("client", help="the client daemon")
    client_sub = client.add_subparsers(dest="client_command", required=True)
    run = client_sub.add_parser("run", help="run the client daemon")
    run.add_argument("--config", help="client.toml")
    run.add_argument("--id", type=int)
    run.add_argument("--aggregator", help="host:port")
    run.add_argument("--pki-dir")
    run.add_argument("--insecure", action="store_true", help="no TLS (development only)")
    run.add_argument("--exact-levels", action="store_true", help="synthetic integer inputs")
    run.add_argument(
        "--allow",
        action="append",
        choices=["plain", "ckks", "bfv", "semi-honest"],
        help="opt this client's policy into a weaker mode or profile (repeatable; logged "
        "with what it gives up)",
    )
    run.add_argument("--colluders", type=int, help="n_C this client assumes (policy.colluders)")
    run.set_defaults(func=_client_run)
    init_model = client_sub.add_parser(
        "init-model",
        help="write the initial model (.npy) the aggregator's `initial_model` points at",
    )
    init_model.add_argument("--config", required=True, help="client.toml with [client.training]")
    init_model.add_argument("--out", required=True, help="where the float32 .npy goes")
    init_model.add_argument("--channels", type=int, default=1, help="1: grayscale, 3: RGB")
    init_model.set_defaults(func=_client_init_model)

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
    exp.add_argument(
        "--mode", choices=("plain", "secagg", "secagg+", "ckks", "bfv-masked"), default="secagg"
    )
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

    status = sub.add_parser("status", help="rounds, phase, clients and aborts of an aggregator")
    status.add_argument(
        "--aggregator", required=True, help="the operator endpoint, e.g. 127.0.0.1:9464"
    )
    status.add_argument("--timeout", type=float, default=5.0)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)

    demo = sub.add_parser("demo", help="end-to-end demo (see README)")
    demo.add_argument("--clients", type=int, default=4)
    demo.add_argument("--rounds", type=int, default=5)
    demo.add_argument("--mode", choices=("secagg", "secagg+", "plain"), default="secagg")
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

    rnd = bench_sub.add_parser("round", help="full rounds over gRPC with N daemon processes")
    rnd.add_argument("--clients", type=int, required=True)
    rnd.add_argument("--dim", type=int, required=True)
    rnd.add_argument(
        "--mode",
        action="append",
        choices=("plain", "secagg", "secagg+", "ckks", "bfv-masked"),
        help="repeatable; default plain and secagg+",
    )
    rnd.add_argument("--rounds", type=int, default=3)
    rnd.add_argument("--out", default="runs/bench-round")
    rnd.add_argument("--json", action="store_true")
    rnd.set_defaults(func=_bench_round)

    hep = bench_sub.add_parser("he", help="homomorphic aggregation with TenSEAL, one round")
    hep.add_argument(
        "--scheme", choices=("ckks", "ckks-compact", "ckks-nvflare", "bfv"), default="ckks"
    )
    hep.add_argument(
        "--masked", action="store_true", help="BFV with pairwise masks in the plaintexts"
    )
    hep.add_argument("--clients", type=int, required=True)
    hep.add_argument("--dim", type=int, required=True)
    hep.add_argument("--seed", type=int, default=0)
    hep.add_argument("--json", action="store_true")
    hep.set_defaults(func=_bench_he)

    from aggregator.bench_peers import DEFAULT_PEERS_DIR, DEFAULT_PEERS_PYTHON

    suite = bench_sub.add_parser(
        "suite", help="sweep N, D and modes; CSV, JSON, PNG plots and a markdown table"
    )
    suite.add_argument("--out", default="runs/bench-suite", help="output directory")
    suite.add_argument("--clients", help="comma list of N (default 10,50,100)")
    suite.add_argument("--dims", help="comma list of D, 1e5 form allowed (default 1e5,1e6,1e7)")
    suite.add_argument(
        "--modes", help="comma list of plain,secagg,secagg+,ckks,bfv-masked (default all)"
    )
    suite.add_argument("--repeat", type=int, default=1, help="rounds per masking cell (median)")
    suite.add_argument(
        "--dropout", type=float, default=0.1, help="fraction silent after key sharing"
    )
    suite.add_argument("--peers", action="store_true", help="add Flower and NVIDIA FLARE rows")
    suite.add_argument("--peers-python", default=str(DEFAULT_PEERS_PYTHON))
    suite.add_argument("--peers-dir", default=str(DEFAULT_PEERS_DIR))
    suite.add_argument(
        "--peers-max-dim", type=float, default=1e6, help="largest D the peers run at"
    )
    suite.add_argument(
        "--max-cell-s", type=float, default=600.0, help="skip cells estimated to take longer"
    )
    suite.add_argument(
        "--max-memory-gb", type=float, default=4.0, help="skip cells estimated to need more"
    )
    suite.add_argument(
        "--max-total-s", type=float, default=0.0, help="skip cells that would end after this"
    )
    suite.add_argument("--quick", action="store_true", help="tiny grid for CI (N 3,5; D 1e3,3e3)")
    suite.add_argument("--plan", action="store_true", help="print the cells and estimates only")
    suite.add_argument("--seed", type=int, default=0)
    suite.add_argument("--json", action="store_true", help="print the results document")
    suite.set_defaults(func=_bench_suite)

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
        choices=("mask", "ckks", "bfv", "bfv-masked"),
        default="mask",
        help="mask: SecAgg/SecAgg+ (default); ckks/bfv: homomorphic aggregation; "
        "bfv-masked: SecAgg masks inside BFV plaintexts (takes --drop)",
    )
    sim.add_argument(
        "--drop-uploads", type=int, default=0, help="HE modes: clients that never upload"
    )
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(func=_simulate)

    pki = sub.add_parser("pki", help="consortium PKI: CA, certificates, signed roster")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True)
    pki_init = pki_sub.add_parser("init", help="create a CA, server and client certs, roster")
    pki_init.add_argument("--out", required=True, help="directory to create")
    pki_init.add_argument("--clients", type=int, required=True, help="client ids 1..N")
    pki_init.add_argument(
        "--server-name",
        action="append",
        default=None,
        help="DNS name or IP for the server certificate (repeatable; "
        "default localhost and 127.0.0.1)",
    )
    pki_init.add_argument("--days", type=int, default=365, help="certificate validity")
    pki_init.add_argument("--force", action="store_true", help="replace an existing PKI dir")
    pki_init.add_argument("--json", action="store_true", help="print the paths as JSON")
    pki_init.set_defaults(func=_pki_init)
    pki_add = pki_sub.add_parser(
        "add", help="enrol one more client: certificate, signing key, re-signed roster"
    )
    pki_add.add_argument("--pki-dir", required=True, help="a directory made by pki init")
    pki_add.add_argument("--client", type=int, required=True, help="the new client's id")
    pki_add.add_argument("--name", default="", help="display name (default client-<id>)")
    pki_add.add_argument("--days", type=int, default=365, help="certificate validity")
    pki_add.add_argument("--json", action="store_true", help="print the paths as JSON")
    pki_add.set_defaults(func=_pki_add)
    pki_remove = pki_sub.add_parser(
        "remove", help="take a client off the roster (re-signed); its files are kept"
    )
    pki_remove.add_argument("--pki-dir", required=True, help="a directory made by pki init")
    pki_remove.add_argument("--client", type=int, required=True, help="the client's id")
    pki_remove.add_argument("--json", action="store_true", help="print the roster ids as JSON")
    pki_remove.set_defaults(func=_pki_remove)
    ev = sub.add_parser("eval", help="face verification of a saved backbone checkpoint")
    ev.add_argument("--checkpoint", required=True, help="backbone checkpoint (torch.save'd dict)")
    ev.add_argument("--data", help="dataset spec (folder, .npz, orl, synthetic:I:N): all pairs")
    ev.add_argument("--pairs", help="LFW-style pairs.txt (with --images)")
    ev.add_argument("--images", help="identity folder the pairs refer to")
    ev.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda:0, ...")
    ev.add_argument("--folds", type=int, default=10, help="folds when the pairs have none")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--max-impostor", type=int, default=None, help="cap impostor pairs (--data)")
    ev.add_argument("--batch-size", type=int, default=256)
    ev.add_argument("--no-flip", action="store_true", help="embed without the flipped image")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=_eval)

    from aggregator.audit.command import register as register_audit  # argparse only, no torch

    register_audit(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `secagg` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except SecAggError as exc:
        print(f"secagg: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:  # a missing file, a full disk, a port in use
        print(f"secagg: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
