"""Start a real aggregator and client daemons as separate processes on loopback."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clients.lab.cluster import CLI, child_env
from clients.training.synthetic import exact_levels

SECAGG = CLI


@dataclass
class Cluster:
    """One aggregator process and its clients; always call :meth:`stop`."""

    workdir: Path
    aggregator: subprocess.Popen[str] | None = None
    port: int = 0
    clients: dict[int, subprocess.Popen[str]] = field(default_factory=dict)
    _config: dict[str, object] = field(default_factory=dict)
    _extra: list[str] = field(default_factory=list)

    def start_aggregator(
        self,
        config: dict[str, object],
        *,
        extra: list[str] | None = None,
        fault: str | None = None,
        exit_when_finished: bool = True,
    ) -> None:
        self._config, self._extra = dict(config), list(extra or [])
        lines = ["[aggregator]"]
        for key, value in config.items():
            lines.append(f"{key} = {json.dumps(value)}")
        path = self.workdir / "aggregator.toml"
        path.write_text("\n".join(lines) + "\n")
        cmd = [*SECAGG, "aggregator", "serve", "--config", str(path)]
        if exit_when_finished:
            cmd.append("--exit-when-finished")
        env = child_env()
        if fault:
            env["SECAGG_FAULT"] = fault
        self.aggregator = subprocess.Popen(
            cmd + (extra or []),
            stdout=subprocess.PIPE,
            stderr=open(self.workdir / "aggregator.log", "a"),
            text=True,
            env=env,
        )
        assert self.aggregator.stdout is not None
        line = self.aggregator.stdout.readline()
        match = re.search(r"port (\d+)", line)
        if not match:
            raise RuntimeError(
                f"aggregator did not start: {line!r}, see {self.workdir}/aggregator.log"
            )
        self.port = int(match.group(1))

    def start_client(self, client: int, args: list[str], *, fault: str | None = None) -> None:
        env = child_env()
        if fault:
            env["SECAGG_FAULT"] = fault
        cmd = [
            *SECAGG,
            "client",
            "run",
            "--id",
            str(client),
            "--aggregator",
            f"127.0.0.1:{self.port}",
        ]
        # The tests configure both sides: a client opts in to what this aggregator runs.
        # and states n_C = 0 unless the test says otherwise (small test cohorts).
        profile, mode = self._config.get("profile"), self._config.get("mode")
        if profile == "semi-honest":
            cmd += ["--allow", "semi-honest"]
        if mode in ("ckks", "bfv"):
            cmd += ["--allow", str(mode)]
        if "--colluders" not in args:
            cmd += ["--colluders", "0"]
        self.clients[client] = subprocess.Popen(
            cmd + args,
            stdout=subprocess.PIPE,
            stderr=open(self.workdir / f"client-{client}.log", "a"),
            text=True,
            env=env,
        )

    def restart_aggregator(self) -> None:
        """Start the aggregator again on the same port and state (after it died)."""
        assert self.aggregator is not None
        self.aggregator.wait(timeout=30)
        config = {**self._config, "listen": f"127.0.0.1:{self.port}"}
        self.start_aggregator(config, extra=self._extra)

    def restart_client(self, client: int, args: list[str], *, timeout: float = 60) -> None:
        """Wait for a client to die (at its fault point), then start it again."""
        self.clients[client].wait(timeout=timeout)
        self.start_client(client, args)

    def wait(self, timeout: float) -> int:
        assert self.aggregator is not None
        return self.aggregator.wait(timeout=timeout)

    def rounds(self) -> list[dict[str, object]]:
        path = self.workdir / "state" / "rounds.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def stop(self) -> None:
        procs = [*self.clients.values()] + ([self.aggregator] if self.aggregator else [])
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            proc.wait(timeout=10)


def expected_sha256(survivors: list[int], round_: int, dim: int, levels: int = 1 << 16) -> str:
    """Digest of the exact sum the synthetic exact-levels trainer implies."""
    total = sum(exact_levels(c, round_, dim, levels).astype(np.uint64) for c in survivors)
    assert isinstance(total, np.ndarray)
    return hashlib.sha256(total.astype("<u8").tobytes()).hexdigest()


def wait_for(predicate: object, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.1)
    return False
