"""`secagg bench …`: the benchmark harnesses' commands (registered by secagg.cli)."""

from __future__ import annotations

import argparse

from protocol import modes
from protocol.config import PROFILES
from secagg.cli import print_json, print_result
from secagg.errors import ParameterError


def _bench_primitives(args: argparse.Namespace) -> int:
    from secagg_bench import primitives as bench_primitives

    result = bench_primitives.run(dim=args.dim, repeat=args.repeat)
    if args.json:
        print_json(result)
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
    from secagg_bench import mask as bench_mask

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
    print_result(result, as_json=args.json)
    return 0


def _bench_round(args: argparse.Namespace) -> int:
    from pathlib import Path

    from secagg_bench import grpc_round as bench_round

    result = bench_round.run(
        clients=args.clients,
        dim=args.dim,
        modes=args.mode or ["plain", "secagg+"],
        rounds=args.rounds,
        out=Path(args.out),
    )
    if args.json:
        print_json(result)
    else:
        for row in result["modes"]:
            ratio = f"  {row['vs_plain']:.2f}x plain" if "vs_plain" in row else ""
            print(
                f"{row['mode']:8s} median round {row['round_wall_s_median']:7.2f} s  "
                f"up/client {row['bytes_up_per_client'] / 1e6:7.2f} MB{ratio}"
            )
    return 0


def _bench_he(args: argparse.Namespace) -> int:
    from secagg_bench import he as bench_he

    if args.masked and not args.scheme.startswith("bfv"):
        raise ParameterError("--masked needs --scheme bfv (masks are added mod the plain modulus)")
    if args.masked:  # the real hybrid round: key agreement, masks, encryption, unmasking
        from secagg_bench import he_masked as bench_he_masked

        result = bench_he_masked.run(args.clients, args.dim, seed=args.seed)
        print_result(result, as_json=args.json)
        return 0
    result = bench_he.run(args.scheme, args.clients, args.dim, args.masked, seed=args.seed)
    print_result(result, as_json=args.json)
    return 0


def _bench_suite(args: argparse.Namespace) -> int:
    from pathlib import Path

    from secagg_bench import suite as bench_suite

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
            print_json(cells)
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
        print_json(doc)
    else:
        print((options.out / "table.md").read_text(encoding="utf-8"), end="")
        names = ", ".join(["results.json", "results.csv", *doc["outputs"]])
        print(f"wrote {names} in {options.out}")
    return 0 if all(r["status"] != "failed" for r in doc["rows"]) else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bench primitives|mask|round|he|suite`."""
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
    rnd = bench_sub.add_parser("round", help="full rounds over gRPC with N daemon processes")
    rnd.add_argument("--clients", type=int, required=True)
    rnd.add_argument("--dim", type=int, required=True)
    rnd.add_argument(
        "--mode",
        action="append",
        choices=modes.names("bench-round"),
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

    from secagg_bench.peers import DEFAULT_PEERS_DIR, DEFAULT_PEERS_PYTHON

    suite = bench_sub.add_parser(
        "suite", help="sweep N, D and modes; CSV, JSON, PNG plots and a markdown table"
    )
    suite.add_argument("--out", default="runs/bench-suite", help="output directory")
    suite.add_argument("--clients", help="comma list of N (default 10,50,100)")
    suite.add_argument("--dims", help="comma list of D, 1e5 form allowed (default 1e5,1e6,1e7)")
    suite.add_argument(
        "--modes", help=f"comma list of {','.join(modes.names('suite'))} (default all)"
    )
    suite.add_argument("--repeat", type=int, default=1, help="rounds per masking cell (median)")
    suite.add_argument(
        "--dropout", type=float, default=0.1, help="fraction silent after key sharing"
    )
    suite.add_argument("--peers", action="store_true", help="add Flower and NVIDIA FLARE rows")
    suite.add_argument(
        "--peers-python",
        default=str(DEFAULT_PEERS_PYTHON),
        help="the peers' interpreter (default: the venv `make peers` builds)",
    )
    suite.add_argument(
        "--peers-dir", default=str(DEFAULT_PEERS_DIR), help="the peer harnesses' folder"
    )
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
