"""The `secagg` command: a thin entry that the packages fill with their commands.

Each package registers its own command group through the ``secagg.commands``
entry-point group (pyproject.toml): ``aggregator`` (serve, status, pki),
``clients`` (client run, eval), ``clients.lab`` (demo, simulate, experiment,
audit) and ``secagg_bench`` (bench …). So this module, which sits in the
lowest layer because the distribution is named ``secagg``, imports none of
them, and each group imports its heavy modules (torch, grpc) only when its
command runs, which keeps `secagg --help` fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from secagg.errors import SecAggError

#: The entry-point group each package's ``register(subparsers)`` is listed under.
GROUP = "secagg.commands"

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def print_json(obj: Any) -> None:
    """One indented JSON document on stdout (the ``--json`` contract)."""
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def print_result(result: dict[str, Any], *, as_json: bool) -> None:
    """One JSON object, or one ``key value`` line per field."""
    if as_json:
        print_json(result)
        return
    for key, value in result.items():
        print(f"{key:24s} {value}")


def registrars() -> list[tuple[str, Registrar]]:
    """(name, register) of every installed command group, in name order."""
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    return [(ep.name, ep.load()) for ep in found]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (kept separate so tests can inspect it)."""
    parser = argparse.ArgumentParser(prog="secagg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    groups = registrars()
    if not groups:
        parser.error(f"no commands registered under {GROUP!r}: reinstall secagg (make venv)")
    for _name, register in groups:
        register(sub)
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
    except OSError as exc:  # a missing file, a full disk, a port in use
        print(f"secagg: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
