"""The ``secagg audit`` subcommands (inversion, server): flags, then a lazy call.

Kept apart from ``secagg/cli.py`` so that the CLI only registers it;
torch is imported when the command runs, not when ``secagg --help`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from clients.lab.audit import ATTACKS as _ATTACKS
from protocol.pki_layout import PkiPaths
from secagg.errors import ParameterError


def _names(text: str) -> tuple[str, ...]:
    """'ig,dlg' → ('ig', 'dlg'), checked against the known attacks."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in _ATTACKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"choose attacks from {','.join(_ATTACKS)}, got {text!r}")
    return names


def _counts(text: str) -> tuple[int, ...]:
    """'2,4,8' → (2, 4, 8)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N,N,... got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one N")
    return values


def register(sub: Any) -> None:
    """Add ``audit inversion`` to the top-level subparsers ``sub``."""
    audit = sub.add_parser("audit", help="privacy audits of what the aggregator sees")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    inv = audit_sub.add_parser(
        "inversion",
        help="gradient inversion against one update, a masked upload and the sum",
        description=(
            "Attack what the aggregator sees in each mode (one client's update, one masked "
            "upload, the unmasked sum over N clients) and score the reconstructions against "
            "chance. Leakage from the sum falls with N·B but is not zero."
        ),
    )
    inv.add_argument("--data", default="orl", help="orl, synthetic[:IDS:IMGS], a folder or .npz")
    inv.add_argument("--image-size", type=int, default=32, help="square side (power of two)")
    inv.add_argument("--batch-size", type=int, default=2, help="B: images per client")
    inv.add_argument(
        "--clients", type=_counts, default=(2, 4, 8), help="N for the sum, e.g. 2,4,8 (each ≥ 2)"
    )
    inv.add_argument("--local-steps", type=int, default=1, help="E: full-batch SGD steps")
    inv.add_argument("--lr", type=float, default=0.05, help="the clients' learning rate")
    inv.add_argument(
        "--attacks", type=_names, default=_ATTACKS, help="on the update and the masked upload"
    )
    inv.add_argument(
        "--sum-attacks", type=_names, default=("ig", "template"), help="on each unmasked sum"
    )
    inv.add_argument(
        "--head",
        choices=("known", "private"),
        default="known",
        help="known: a shared head (in θ and in the upload); private: never uploaded",
    )
    inv.add_argument(
        "--projector",
        choices=("none", "known", "unknown"),
        default="none",
        help="clients' private orthogonal projector, and whether the attacker knows it",
    )
    inv.add_argument("--iterations", type=int, default=300, help="per attack optimisation")
    inv.add_argument("--tv", type=float, default=0.5, help="total-variation weight")
    inv.add_argument("--restarts", type=int, default=1, help="Inverting Gradients restarts")
    inv.add_argument("--evaluator-epochs", type=int, default=25)
    inv.add_argument("--generator-steps", type=int, default=800)
    inv.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    inv.add_argument("--seed", type=int, default=0)
    inv.add_argument("--out", default="runs/audit", help="grid.png, leakage.png, audit.json")
    inv.add_argument("--json", action="store_true", help="print only the JSON object on stdout")
    inv.set_defaults(func=run)

    server = audit_sub.add_parser(
        "server",
        help="play a malicious aggregator against the honest client code under a client config",
        description=(
            "Run a catalogue of attacks a malicious aggregator (with up to n_C colluding enrolled "
            "clients) can try against clients under the policy of a client config: profile, "
            "mode, cohort, threshold and graph downgrades, differencing, malformed messages, key "
            "substitution, Sybils, split views, config splits, replays, both-shares requests, "
            "low-order keys, and membership inference from FedFace's S. "
            "An oracle that strips the masks says whether the victim's input was recovered."
        ),
    )
    server.add_argument("--config", required=True, help="a client config (client.toml)")
    server.add_argument(
        "--roster",
        type=int,
        help="consortium size (default: the config's signed roster, else 10)",
    )
    server.add_argument("--json", action="store_true", help="print only the JSON object on stdout")
    server.set_defaults(func=run_server)


def run_server(args: argparse.Namespace) -> int:
    """``secagg audit server``: exit 0 when no attack succeeded, 1 otherwise."""
    from clients.lab.audit.server_attacks import run as run_attacks
    from clients.settings import load_client_settings

    settings = load_client_settings(args.config, id=None)
    roster = args.roster or _roster_size(Path(settings.pki_dir) if settings.pki_dir else None)
    if roster < 3:
        raise ParameterError("--roster must be at least 3")
    epsilon = settings.training.get("fedface_epsilon", 1.0)
    if type(epsilon) not in (int, float) or not 0 < epsilon < float("inf"):
        raise ParameterError("[client.training] fedface_epsilon must be a positive number")
    report = run_attacks(settings.client_policy(), roster, fedface_epsilon=float(epsilon))
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"roster {roster}, n_C assumed {report['colluders_assumed']}")
        for row in report["attacks"]:  # type: ignore[attr-defined]
            mark = "RECOVERED" if row["succeeded"] else "held"
            print(f"{mark:>9}  {row['id']:<26} {row['evidence']}")
        print(f"{report['succeeded']} attack(s) recovered the victim's input")
    return 1 if report["succeeded"] else 0


def _roster_size(pki: Path | None) -> int:
    """Clients on the config's signed roster; 10 when there is none to read."""
    if pki is None:
        return 10
    try:
        doc = json.loads(PkiPaths(pki).roster.read_text())
    except (OSError, ValueError):
        return 10
    clients = doc.get("clients") if isinstance(doc, dict) else None
    return len(clients) if isinstance(clients, list | dict) and clients else 10


def run(args: argparse.Namespace) -> int:
    """Run the audit, write the outputs, print JSON or a summary."""
    import torch

    from clients.lab.audit.inversion import AuditConfig, run_audit
    from clients.lab.audit.report import text_summary, write_outputs

    torch.set_num_threads(max(1, args.threads))
    config = AuditConfig(
        data=args.data,
        image_size=args.image_size,
        batch_size=args.batch_size,
        clients=tuple(args.clients),
        local_steps=args.local_steps,
        lr=args.lr,
        attacks=tuple(args.attacks),
        sum_attacks=tuple(args.sum_attacks),
        head=args.head,
        projector=args.projector,
        iterations=args.iterations,
        tv=args.tv,
        restarts=args.restarts,
        evaluator_epochs=args.evaluator_epochs,
        generator_steps=args.generator_steps,
        seed=args.seed,
    )
    started = time.perf_counter()

    def progress(line: str) -> None:
        print(f"[audit {time.perf_counter() - started:6.1f}s] {line}", file=sys.stderr, flush=True)

    try:
        result = run_audit(config, progress=progress)
    except ValueError as exc:
        raise ParameterError(f"audit inversion: {exc}") from exc
    paths = write_outputs(result, Path(args.out))
    progress(f"wrote {paths['grid']}, {paths['plot']} and {paths['json']}")
    if args.json:
        json.dump(result.summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for line in text_summary(result.summary):
            print(line)
    return 0
