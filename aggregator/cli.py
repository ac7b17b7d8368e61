"""The `secagg` command.

It lives in ``aggregator/`` because the top-level packages are fixed and the
CLI is a host: it reads clocks and files and starts processes, which the
pure layers (``secagg/``, ``protocol/``) must not. Subcommands import their
modules lazily so that `secagg --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from secagg.errors import SecAggError


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


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
    return code


if __name__ == "__main__":
    sys.exit(main())
