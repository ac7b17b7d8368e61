"""`secagg aggregator serve`, `secagg status` and `secagg pki …`: the service's commands."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys

from protocol.pki_layout import CLIENT_CERT, CLIENT_KEY, SIGNING_KEY
from secagg.cli import print_json

CLIENT_FILES = ", ".join((CLIENT_CERT, CLIENT_KEY, SIGNING_KEY))


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
    try:
        server = AggregatorServer(settings, clients=args.clients)
        server.start()
        print(f"aggregator listening on port {server.port}", flush=True)
        server.wait(exit_when_finished=args.exit_when_finished)
    except sqlite3.Error as exc:  # an unreadable or locked state database
        print(f"secagg: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


def _status(args: argparse.Namespace) -> int:
    import urllib.request

    url = args.aggregator if "://" in args.aggregator else f"http://{args.aggregator}"
    with urllib.request.urlopen(url.rstrip("/") + "/status", timeout=args.timeout) as reply:  # noqa: S310
        status = json.loads(reply.read())
    if args.json:
        print_json(status)
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
        print_json(paths.as_dict())
    else:
        print(f"PKI for {len(paths.client_ids)} clients in {paths.root}")
        print(f"  CA            {paths.ca_cert}")
        print(f"  server        {paths.server_cert}")
        print(f"  clients       {paths.clients_dir}/<id>/ ({CLIENT_FILES})")
        print(f"  roster        {paths.roster} (public key {paths.roster_public})")
        print(
            f"  consortium    {paths.consortium}/ ({paths.ca_key.name}, {paths.roster_key.name}): "
            "keep with the consortium, never on the aggregator (it refuses to start beside them)"
        )
    return 0


def _pki_add(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aggregator.pki import add_client

    paths = add_client(Path(args.pki_dir), args.client, days=args.days, name=args.name)
    files = paths.client(args.client)
    if args.json:
        print_json(
            {"client": args.client, "roster_ids": list(paths.client_ids)}
            | {
                "cert": str(files.cert),
                "key": str(files.key),
                "signing_key": str(files.signing_key),
            }
        )
    else:
        print(f"client {args.client} enrolled: {files.dir}/ ({CLIENT_FILES})")
        print(f"roster re-signed ({len(paths.client_ids)} clients): {paths.roster}")
        print(f"restart the aggregator and the daemons with the new {paths.roster.name}")
    return 0


def _pki_remove(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aggregator.pki import remove_client

    paths = remove_client(Path(args.pki_dir), args.client)
    if args.json:
        print_json({"removed": args.client, "roster_ids": list(paths.client_ids)})
    else:
        print(f"client {args.client} removed; roster re-signed ({len(paths.client_ids)} clients)")
        print(f"restart the aggregator and the daemons with the new {paths.roster.name}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `aggregator serve`, `status` and `pki init|add|remove`."""
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
    status = sub.add_parser("status", help="rounds, phase, clients and aborts of an aggregator")
    status.add_argument(
        "--aggregator", required=True, help="the operator endpoint, e.g. 127.0.0.1:9464"
    )
    status.add_argument("--timeout", type=float, default=5.0)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)
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
