"""A local cluster: a PKI, an aggregator and client daemons as separate processes.

Used by `secagg demo` and `secagg bench round`: everything runs on loopback
over mutual TLS, with the real CLI entry points, so what they show is what a
deployment does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "secagg"]


def child_env(fault: str | None = None) -> dict[str, str]:
    """The environment for a child process: this checkout on the path, a fault point or none."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("SECAGG_FAULT", None)
    if fault:
        env["SECAGG_FAULT"] = fault
    return env


def _toml(section: str, values: dict[str, Any]) -> str:
    """A TOML section; dict values become sub-tables (``[section.key]``)."""
    plain = {k: v for k, v in values.items() if not isinstance(v, dict)}
    lines = [f"[{section}]", *(f"{k} = {json.dumps(v)}" for k, v in plain.items())]
    text = "\n".join(lines) + "\n"
    for key, table in values.items():
        if isinstance(table, dict):
            text += _toml(f"{section}.{key}", table)
    return text


class LocalCluster:
    """Start with :meth:`start`; always :meth:`stop` (a context manager does it)."""

    def __init__(self, run_dir: Path, clients: int) -> None:
        self.run_dir = run_dir
        self.clients = clients
        self.logs = run_dir / "logs"
        self.procs: list[subprocess.Popen[str]] = []
        self.aggregator: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(
        self,
        aggregator: dict[str, Any],
        client: dict[str, Any] | None = None,
        *,
        faults: dict[int, str] | None = None,
        spare_identities: int = 0,
    ) -> None:
        """PKI, then the aggregator (``[aggregator]`` settings), then every client.

        ``spare_identities`` enrols that many more clients (ids after the
        daemons') whom no daemon runs, e.g. for a test's misbehaving client.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        pki = [*CLI, "pki", "init", "--out", str(self.run_dir / "pki"), "--days", "1"]
        pki += ["--clients", str(self.clients + spare_identities)]
        pki += ["--server-name", "localhost", "--server-name", "127.0.0.1"]
        done = subprocess.run(pki, capture_output=True, text=True, env=child_env(), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"secagg pki init failed: {done.stderr.strip()}")
        settings = {"listen": "127.0.0.1:0", "pki_dir": "pki", "state_dir": "state", **aggregator}
        (self.run_dir / "aggregator.toml").write_text(_toml("aggregator", settings))
        cmd = [*CLI, "aggregator", "serve", "--config", str(self.run_dir / "aggregator.toml")]
        self.aggregator = subprocess.Popen(
            [*cmd, "--exit-when-finished"],
            stdout=subprocess.PIPE,
            stderr=open(self.logs / "aggregator.log", "w"),
            text=True,
            env=child_env(),
        )
        self.procs.append(self.aggregator)
        assert self.aggregator.stdout is not None
        match = re.search(r"port (\d+)", self.aggregator.stdout.readline())
        if not match:
            raise RuntimeError(f"the aggregator did not start; see {self.logs / 'aggregator.log'}")
        self.port = int(match.group(1))
        for c in range(1, self.clients + 1):
            config = self.run_dir / f"client-{c}.toml"
            values = {"id": c, "aggregator": f"127.0.0.1:{self.port}", "pki_dir": "pki"}
            # "{id}" in a string setting becomes this client's id (per-client files).
            own = {
                k: v.replace("{id}", str(c)) if isinstance(v, str) else v
                for k, v in (client or {}).items()
            }
            config.write_text(_toml("client", {**values, **own}))
            self.procs.append(
                subprocess.Popen(
                    [*CLI, "client", "run", "--config", str(config)],
                    stdout=subprocess.DEVNULL,
                    stderr=open(self.logs / f"client-{c}.log", "w"),
                    text=True,
                    env=child_env((faults or {}).get(c)),
                )
            )

    def follow(
        self, rounds: int, on_round: Callable[[dict[str, Any]], None] | None = None
    ) -> list[dict[str, Any]]:
        """Round records as they land, until ``rounds`` completed or the aggregator exits."""
        path = self.run_dir / "state" / "rounds.jsonl"
        seen: list[dict[str, Any]] = []
        assert self.aggregator is not None
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            for line in lines[len(seen) :]:
                seen.append(json.loads(line))
                if on_round is not None:
                    on_round(seen[-1])
            if sum(r["completed"] for r in seen) >= rounds or self.aggregator.poll() is not None:
                return seen
            time.sleep(0.1)

    def wait(self, timeout: float = 60) -> None:
        """Wait for the aggregator to exit; raise unless it exited cleanly."""
        assert self.aggregator is not None
        code = self.aggregator.wait(timeout=timeout)
        if code != 0:
            raise RuntimeError(f"aggregator exited with {code}; see {self.logs}")

    def stop(self) -> None:
        """Kill whatever still runs."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait(timeout=10)
