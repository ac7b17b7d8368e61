"""`secagg bench suite`: the crypto overhead swept over clients N, dimension D and mode.

One cell = one (mode, N, D). Every cell reports the same quantities, so that
modes compare within one run:

* ``client_s``: one client's work for its whole update in one round
  (quantise, mask or encrypt, pack; plus key agreement, shares and
  signatures in the masking modes);
* ``server_s``: the aggregator's work for N clients (sum or ciphertext sum;
  in the masking modes also the routing and the unmasking, with ``dropout``
  of the clients silent after sharing their keys, the costly case);
* ``bytes_up_per_client``, ``bytes_per_param`` and ``expansion_vs_fp32``
  (upload against a float32 update of D values).

The measurements reuse the single-mode benches: :func:`secagg_bench.mask.measure`
(a full in-memory round with all N client machines; all clients share one
input vector and the server sums as inputs arrive, so memory is a few
vectors), :func:`secagg_bench.he.run` for ``ckks`` (``distinct`` real
encryptions, every one of the N uploads summed),
:func:`secagg_bench.he_masked.run` for ``bfv-masked`` (the real hybrid
round of :mod:`protocol.he_masked`, every client for real, so its memory grows
with N × D) and the plain machines of :mod:`protocol.plain`. A cell whose
estimated time or memory exceeds the limits is recorded as skipped with the
reason, never dropped.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from protocol.modes import names
from secagg.errors import ParameterError, SecAggError
from secagg_bench import peers as bench_peers
from secagg_bench import report as bench_report
from secagg_bench.report import dim_label

MODES = names("suite")
Progress = Callable[[str], None]

# Cost model for the estimates that decide skips: rates seen on the shared
# 2-core machine under load (about a seventh of its idle speed). At the start
# of a run :func:`calibrate` measures the mask-expansion rate for about a
# second and scales every estimate by how much slower the machine is now.
_PRG_WORDS_PER_S = 120e6  # mask expansion + accumulate
_QUANT_WORDS_PER_S = 25e6  # quantise + pack (client), unpack + add (server)
_PEER_PAIR_S = 5e-3  # per client and neighbour: X25519, Shamir share, AES-GCM, signature
_HE_ENCRYPT_S_PER_PARAM = 1.0e-6
_HE_ADD_S_PER_PARAM = 1.0e-7  # per client upload
_HE_DECRYPT_S_PER_PARAM = 2.0e-7
_HE_BYTES_PER_PARAM = 8.6
# bfv-masked (every client real): masks mod t expanded per (client, peer), and per
# client and parameter: encryption, decryption, quantisation and the exact-sum check.
_HYBRID_MASK_WORDS_PER_S = 70e6
_HYBRID_S_PER_CLIENT_PARAM = 1.3e-6
_HYBRID_BYTES_PER_CLIENT_PARAM = 45.0  # measured: 0.6 GB peak at N = 10, D = 1e6


@dataclass(frozen=True)
class SuiteOptions:
    """What to sweep and the limits that turn a cell into a recorded skip."""

    out: Path
    clients: tuple[int, ...] = (10, 50, 100)
    dims: tuple[int, ...] = (100_000, 1_000_000, 10_000_000)
    modes: tuple[str, ...] = MODES
    repeat: int = 1
    dropout: float = 0.1
    peers: bool = False
    peers_python: Path = bench_peers.DEFAULT_PEERS_PYTHON
    peers_dir: Path = bench_peers.DEFAULT_PEERS_DIR
    peers_max_dim: int = 1_000_000
    max_cell_s: float = 600.0
    max_memory_gb: float = 4.0
    #: Skip cells that would end after this many seconds of the run (0: no limit).
    max_total_s: float = 0.0
    seed: int = 0
    #: Seconds :func:`calibrate` runs before the sweep (0: use ``slowdown`` as given).
    calibrate_s: float = 1.0
    #: Estimates × this; set by the calibration, 1.0 = the cost model's rates.
    slowdown: float = 1.0
    command: str = "secagg bench suite"

    def __post_init__(self) -> None:
        if not self.clients or any(n < 2 for n in self.clients):
            raise ParameterError("--clients needs values of at least 2")
        if not self.dims or any(d < 1 for d in self.dims):
            raise ParameterError("--dims needs positive values")
        unknown = sorted(set(self.modes) - set(MODES))
        if not self.modes or unknown:
            raise ParameterError(f"unknown mode(s) {unknown}; use some of {', '.join(MODES)}")
        if self.repeat < 1:
            raise ParameterError("--repeat must be at least 1")
        if not 0.0 <= self.dropout < 0.5:
            raise ParameterError("--dropout must be in [0, 0.5)")
        if self.max_cell_s <= 0 or self.max_memory_gb <= 0 or self.max_total_s < 0:
            raise ParameterError("--max-cell-s and --max-memory-gb must be positive")


#: Tiny settings for CI (--quick): every mode, two cohorts, two dimensions, seconds in all.
QUICK_CLIENTS = (3, 5)
QUICK_DIMS = (1000, 3000)


@dataclass(frozen=True)
class Cell:
    """One measurement: ``system`` is ``secagg`` or the peer system."""

    system: str
    mode: str
    clients: int
    dim: int


@dataclass(frozen=True)
class Estimate:
    """Expected seconds and peak bytes of one cell, and the graph it would use."""

    seconds: float
    memory_bytes: float
    degree: int | None = None


@dataclass
class Row:
    """One line of results.csv (``raw`` goes to results.json only)."""

    system: str
    mode: str
    clients: int
    dim: int
    status: str  # ok | skipped | failed
    reason: str = ""
    degree: int | None = None
    threshold: int | None = None
    dropout: float | None = None
    repeat: int | None = None
    client_s: float | None = None
    server_s: float | None = None
    decrypt_s: float | None = None
    bytes_up_per_client: float | None = None
    bytes_per_param: float | None = None
    expansion_vs_fp32: float | None = None
    max_abs_error: float | None = None
    estimate_s: float | None = None
    wall_s: float | None = None
    peak_rss_mb: float | None = None
    load_1min: float | None = None
    method: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def parse_list(text: str, *, name: str) -> tuple[int, ...]:
    """'10,50,100' or '1e5,1e6' → integers (a float form must be a whole number)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            value = float(part)
        except ValueError:
            raise ParameterError(f"{name}: {part!r} is not a number") from None
        if value != int(value) or value < 1:
            raise ParameterError(f"{name}: {part!r} is not a positive whole number")
        out.append(int(value))
    if not out:
        raise ParameterError(f"{name}: give at least one value")
    return tuple(out)


def _secaggplus_degree(clients: int) -> int | None:
    """The SecAgg+ degree `secagg bench round` uses, None for the complete graph."""
    from secagg_bench.grpc_round import secaggplus_graph

    try:
        graph = secaggplus_graph(clients)
    except ParameterError:  # no sparse parameters for so few clients: the complete graph
        return None
    return None if graph is None else graph[0]


def _distinct(options: SuiteOptions, clients: int) -> int:
    """Real HE encryptions per cell: the client time is their median."""
    return min(clients, max(2, options.repeat))


def calibrate(seconds: float = 1.0) -> dict[str, float]:
    """The mask-expansion rate now, over ``seconds`` of wall time, against the cost model.

    A second rather than a few milliseconds, so that on a shared machine the
    rate includes this process's fair share of the CPU, not one lucky slice.
    """
    from secagg.primitives.prg import prg_accumulate

    acc = np.zeros(1_000_000, dtype=np.uint32)
    words = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        prg_accumulate(acc, bytes(32), 32)
        words += acc.size
    rate = words / elapsed
    # Only ever scale up: a short burst of free CPU says little about a long cell.
    return {"prg_mwords_per_s": rate / 1e6, "slowdown": max(1.0, _PRG_WORDS_PER_S / rate)}


def estimate(cell: Cell, options: SuiteOptions) -> Estimate:
    """Seconds and memory of one cell (decides skips only), scaled by ``options.slowdown``."""
    est = _estimate(cell, options)
    return replace(est, seconds=est.seconds * options.slowdown)


def _estimate(cell: Cell, options: SuiteOptions) -> Estimate:
    n, d = cell.clients, cell.dim
    drops = round(options.dropout * n)
    if cell.system != "secagg":
        return _estimate_peer(cell, options)
    if cell.mode in ("secagg", "secagg+"):
        sparse = _secaggplus_degree(n) if cell.mode == "secagg+" else None
        k = n - 1 if sparse is None else sparse
        words = n * (k + 1) * d + ((n - drops) + drops * k) * d
        seconds = words / _PRG_WORDS_PER_S + 2 * n * d / _QUANT_WORDS_PER_S
        seconds += n * k * _PEER_PAIR_S
        return Estimate(seconds * options.repeat, 48.0 * d, k)
    if cell.mode == "plain":
        return Estimate(options.repeat * (n * d * 2e-8 + d * 1e-7), 40.0 * d)
    if cell.mode == "bfv-masked":
        seconds = n * n * d / _HYBRID_MASK_WORDS_PER_S + n * d * _HYBRID_S_PER_CLIENT_PARAM
        memory = n * d * _HYBRID_BYTES_PER_CLIENT_PARAM + 120.0 * d
        return Estimate(seconds + 1.0, memory, n - 1)
    distinct = _distinct(options, n)
    seconds = d * (
        distinct * _HE_ENCRYPT_S_PER_PARAM + n * _HE_ADD_S_PER_PARAM + _HE_DECRYPT_S_PER_PARAM
    )
    memory = d * ((distinct + 2) * _HE_BYTES_PER_PARAM + 40.0)
    return Estimate(seconds + 1.0, memory)


def _estimate_peer(cell: Cell, options: SuiteOptions) -> Estimate:
    """The peers' costs, fitted to benchmarks/peers/results/ and docs/bench-suite/ under load."""
    n, d = cell.clients, cell.dim
    if cell.system == "flower":
        k, t = bench_peers.flower_graph(n, cell.mode)
        seconds = n * (k + 1) * d * 3e-8 + n * (k + 1) * t * 6e-4 + n * t * t * 6e-4
        return Estimate(seconds + 5.0, 100.0 * d, k)
    distinct = _distinct(options, n)
    seconds = d * (distinct * 1.2e-6 + n * 4e-7 + 5e-7)
    return Estimate(seconds + 5.0, d * ((distinct + 2) * 60.0 + 40.0))


def plan(options: SuiteOptions) -> list[Cell]:
    """Every cell in run order: cheapest estimate first, so that a time limit or an
    interrupt costs the most expensive cells, not a whole dimension."""
    cells = []
    for d in sorted(set(options.dims)):
        for n in sorted(set(options.clients)):
            for mode in options.modes:
                cells.append(Cell("secagg", mode, n, d))
                if options.peers and mode in bench_peers.PEER_OF_MODE:
                    cells.append(Cell(bench_peers.PEER_OF_MODE[mode][0], mode, n, d))
    return sorted(cells, key=lambda c: estimate(c, options).seconds)  # stable: ties keep order


def _skip_reason(cell: Cell, est: Estimate, options: SuiteOptions) -> str | None:
    if cell.system != "secagg" and cell.dim > options.peers_max_dim:
        return f"peer cell above --peers-max-dim {dim_label(options.peers_max_dim)}"
    if est.seconds > options.max_cell_s:
        why = (
            " (a full in-memory round runs all N clients)"
            if cell.system == "secagg" and cell.mode in ("secagg", "secagg+")
            else ""
        )
        return f"estimated {est.seconds:.0f} s > --max-cell-s {options.max_cell_s:.0f}{why}"
    if est.memory_bytes > options.max_memory_gb * 1e9:
        return (
            f"estimated {est.memory_bytes / 1e9:.1f} GB > --max-memory-gb {options.max_memory_gb:g}"
        )
    return None


def _plain(clients: int, dim: int, dropout: float, repeat: int, seed: int) -> dict[str, Any]:
    """The unprotected baseline with the plain machines: float32 w·x ‖ w, summed."""
    from protocol.build import make_config
    from protocol.messages import MaskedInput, RoundStart
    from protocol.plain import PlainClient, PlainServer, encode_plain
    from protocol.policy import ClientPolicy
    from secagg.rng import DeterministicRandomSource

    rng = DeterministicRandomSource(seed.to_bytes(8, "little"))
    update = (np.frombuffer(rng.random_bytes(8 * dim), dtype="<u8") / 2.0**64) * 2 - 1
    survivors = clients - round(dropout * clients)
    client_s, server_s = [], []
    payload = b""
    for r in range(repeat):
        config = make_config(clients=clients, dim=dim, profile="plain", round_=r)
        client = PlainClient(1, policy=ClientPolicy().with_opt_in("plain"))
        client.set_input(update, weight=1, model_hash=config.model_hash)
        encode_plain(update, 1)  # warm-up: the first call pays one-off allocation costs
        start = time.perf_counter()
        (msg,) = client.handle(RoundStart(config))
        client_s.append(time.perf_counter() - start)
        assert isinstance(msg, MaskedInput)
        payload = msg.payload
        server = PlainServer(config)
        server.start()
        start = time.perf_counter()
        for c in range(1, survivors + 1):  # one payload reused: content does not change the cost
            server.receive(c, MaskedInput(c, r, payload))
        server.advance()
        server_s.append(time.perf_counter() - start)
        if server.result is None or server.result.weight_sum != survivors:
            raise ParameterError("plain round did not complete")
    return {
        "client_s": statistics.median(client_s),
        "server_s": statistics.median(server_s),
        "bytes_up_per_client": float(len(payload)),
        "survivors": survivors,
    }


def _measure(cell: Cell, options: SuiteOptions, row: Row) -> None:
    """Fill ``row`` with one of our cells' measurements."""
    n, d = cell.clients, cell.dim
    if cell.mode in ("secagg", "secagg+"):
        from secagg_bench import mask as bench_mask

        degree = None if cell.mode == "secagg" else _secaggplus_degree(n)
        raw = bench_mask.measure(
            clients=n,
            dim=d,
            degree=degree,
            dropout=options.dropout,
            repeat=options.repeat,
            seed=options.seed,
        )
        note = (
            " (complete graph: cohort too small for SecAgg+)"
            if (cell.mode == "secagg+" and degree is None)
            else ""
        )
        row.degree, row.threshold, row.dropout = raw["degree"], raw["threshold"], raw["dropout"]
        row.client_s, row.server_s = raw["client_mask_s"], raw["server_total_s"]
        row.bytes_up_per_client = raw["bytes_up_per_client"]
        row.method = f"bench_mask.measure: in-memory round, {raw['profile']} profile{note}"
        row.raw = raw
    elif cell.mode == "plain":
        raw = _plain(n, d, options.dropout, options.repeat, options.seed)
        row.dropout = 1 - raw["survivors"] / n
        row.client_s, row.server_s = raw["client_s"], raw["server_s"]
        row.bytes_up_per_client = raw["bytes_up_per_client"]
        row.method = "protocol.plain machines: float32 update in the clear"
        row.raw = raw
    elif cell.mode == "bfv-masked":
        from secagg_bench import he_masked as bench_he_masked

        raw = bench_he_masked.run(n, d, seed=options.seed)
        if not raw["exact_sum"]:
            raise ParameterError("the hybrid round's decrypted sum is not exact")
        row.dropout, row.degree, row.threshold = 0.0, n - 1, raw["threshold"]
        # Masked phase: mask expansion + encryption + signing; server: checked sum + unmask.
        row.client_s = raw["encrypt_s"]
        row.server_s = raw["aggregate_s"] + raw["unmask_s"]
        row.decrypt_s = raw["decrypt_s"]
        row.bytes_up_per_client = float(raw["upload_bytes_per_client"])
        row.max_abs_error = raw["max_abs_error"]
        row.method = (
            "bench_he_masked.run: the hybrid round (protocol.he_masked), BFV_8192, "
            "every client real, no dropout"
        )
        row.raw = raw
    else:
        from secagg_bench import he as bench_he

        raw = bench_he.run("ckks", n, d, distinct=_distinct(options, n), seed=options.seed)
        row.dropout = 0.0
        row.client_s, row.server_s, row.decrypt_s = (
            raw["encrypt_s"],
            raw["aggregate_s"],
            raw["decrypt_s"],
        )
        row.bytes_up_per_client = float(raw["upload_bytes_per_client"])
        row.max_abs_error = raw["max_abs_error"]
        row.method = (
            f"bench_he.run: CKKS_8192, {raw['distinct_encryptions']} distinct encryptions, "
            "every upload summed"
        )
        row.raw = raw
    row.repeat = options.repeat


def _measure_peer(cell: Cell, options: SuiteOptions, row: Row) -> None:
    env = bench_peers.PeerEnv(options.peers_python, options.peers_dir)
    result = bench_peers.run_cell(
        env,
        cell.mode,
        cell.clients,
        cell.dim,
        dropout=options.dropout,
        distinct=_distinct(options, cell.clients),
        timeout_s=max(120.0, 3 * options.max_cell_s),
    )
    fields = result["fields"]
    for key in (
        "degree",
        "threshold",
        "dropout",
        "client_s",
        "server_s",
        "decrypt_s",
        "bytes_up_per_client",
        "max_abs_error",
        "method",
    ):
        setattr(row, key, fields[key])
    row.raw = {**result["raw"], "argv": result["argv"]}


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_cell(
    cell: Cell, options: SuiteOptions, *, peer_problem: str | None = None, elapsed_s: float = 0.0
) -> Row:
    """Measure one cell, or record why it was skipped or failed.

    ``elapsed_s``: seconds the sweep has run, for ``max_total_s``.
    """
    est = estimate(cell, options)
    row = Row(cell.system, cell.mode, cell.clients, cell.dim, "ok", estimate_s=est.seconds)
    row.degree = est.degree
    reason = peer_problem if cell.system != "secagg" else None
    reason = reason or _skip_reason(cell, est, options)
    if not reason and options.max_total_s and elapsed_s + est.seconds > options.max_total_s:
        reason = (
            f"would end after --max-total-s {options.max_total_s:.0f} "
            f"({elapsed_s:.0f} s elapsed, estimated {est.seconds:.0f} s)"
        )
    if reason:
        row.status, row.reason = "skipped", reason
        return row
    start = time.perf_counter()
    try:
        if cell.system == "secagg":
            _measure(cell, options, row)
        else:
            _measure_peer(cell, options, row)
    except (SecAggError, RuntimeError, MemoryError, OSError) as exc:
        row.status, row.reason = "failed", f"{type(exc).__name__}: {exc}"[:400]
    row.wall_s = time.perf_counter() - start
    row.peak_rss_mb = _peak_rss_mb()
    row.load_1min = os.getloadavg()[0]
    if row.status == "ok" and row.bytes_up_per_client is not None:
        row.bytes_per_param = row.bytes_up_per_client / cell.dim
        row.expansion_vs_fp32 = row.bytes_up_per_client / (4 * cell.dim)
    return row


def machine() -> dict[str, Any]:
    """Where the figures come from (they are only comparable within one run)."""
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def calibrated(options: SuiteOptions) -> tuple[SuiteOptions, dict[str, float] | None]:
    """``options`` with the slowdown measured now (unless ``calibrate_s`` is 0)."""
    if options.calibrate_s <= 0:
        return options, None
    cal = calibrate(options.calibrate_s)
    return replace(options, slowdown=cal["slowdown"]), cal


def describe_plan(options: SuiteOptions) -> list[dict[str, Any]]:
    """The cells with their estimates and skip reasons, without running anything."""
    options, _ = calibrated(options)
    env = bench_peers.PeerEnv(options.peers_python, options.peers_dir)
    out = []
    for cell in plan(options):
        est = estimate(cell, options)
        reason = (env.missing if cell.system != "secagg" else None) or _skip_reason(
            cell, est, options
        )
        out.append({**asdict(cell), "estimate_s": est.seconds, "skip": reason})
    return out


def run(options: SuiteOptions, *, progress: Progress | None = None) -> dict[str, Any]:
    """Run the sweep; writes results.json and results.csv after every cell, then the
    table and the plots; returns the results document."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    options.out.mkdir(parents=True, exist_ok=True)
    env = bench_peers.PeerEnv(options.peers_python, options.peers_dir)
    peer_problem = env.missing if options.peers else None
    if peer_problem:
        say(f"--peers: {peer_problem}; peer rows are recorded as skipped")
    options, cal = calibrated(options)
    if cal is not None:
        say(
            f"calibration: mask expansion at {cal['prg_mwords_per_s']:.0f} Mwords/s now; "
            f"estimates × {cal['slowdown']:.2f}"
        )
    cells = plan(options)
    doc: dict[str, Any] = {
        "suite": "secagg bench suite",
        "command": options.command,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "machine": machine(),
        "calibration": cal,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": [],
    }
    start = time.perf_counter()
    with _interrupt_on_sigterm():
        _sweep(cells, options, doc, say, peer_problem, start)
    doc["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc["outputs"] = [p.name for p in bench_report.write_all(doc, options.out)]
    bench_report.write_results(doc, options.out)
    return doc


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C (a background job ignores SIGINT), in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sweep(
    cells: list[Cell],
    options: SuiteOptions,
    doc: dict[str, Any],
    say: Progress,
    peer_problem: str | None,
    start: float,
) -> None:
    """Measure the cells in order; after an interrupt the rest are recorded as not run."""
    for i, cell in enumerate(cells, 1):
        label = f"[{i}/{len(cells)}] {cell.system} {cell.mode} N={cell.clients} D={cell.dim:.0e}"
        say(f"{label} ...")
        try:
            row = run_cell(
                cell, options, peer_problem=peer_problem, elapsed_s=time.perf_counter() - start
            )
        except KeyboardInterrupt:
            say(f"{label}: interrupted; writing what was measured")
            doc["interrupted"] = True
            for rest in cells[i - 1 :]:
                row = Row(rest.system, rest.mode, rest.clients, rest.dim, "skipped")
                row.reason = "the run was interrupted before this cell finished"
                doc["rows"].append(asdict(row))
            bench_report.write_results(doc, options.out)
            return
        if row.status == "ok":
            say(
                f"{label}: client {row.client_s:.3g} s, server {row.server_s:.3g} s, "
                f"{row.bytes_per_param:.2f} B/param ({row.wall_s:.1f} s)"
            )
        else:
            say(f"{label}: {row.status}: {row.reason}")
        doc["rows"].append(asdict(row))
        doc["elapsed_s"] = time.perf_counter() - start
        bench_report.write_results(doc, options.out)


def options_from(
    *,
    out: str,
    clients: str | None,
    dims: str | None,
    modes: str | None,
    quick: bool,
    **rest: Any,
) -> SuiteOptions:
    """Options from the CLI's strings; --quick sets the tiny CI grid unless overridden."""
    base = SuiteOptions(out=Path(out), **rest)
    if quick:
        base = replace(base, clients=QUICK_CLIENTS, dims=QUICK_DIMS)
    if clients:
        base = replace(base, clients=parse_list(clients, name="--clients"))
    if dims:
        base = replace(base, dims=parse_list(dims, name="--dims"))
    if modes:
        names = tuple(m.strip() for m in modes.split(",") if m.strip())
        base = replace(base, modes=names)
    return replace(base, command=command_line(base))


def command_line(options: SuiteOptions) -> str:
    """The explicit command that reruns these options (recorded with the results)."""
    parts = [
        "secagg bench suite",
        f"--out {options.out}",
        f"--clients {','.join(map(str, options.clients))}",
        f"--dims {','.join(map(dim_label, options.dims))}",
        f"--modes {','.join(options.modes)}",
        f"--repeat {options.repeat}",
        f"--dropout {options.dropout:g}",
        f"--max-cell-s {options.max_cell_s:g}",
        f"--max-memory-gb {options.max_memory_gb:g}",
    ]
    if options.max_total_s:
        parts.append(f"--max-total-s {options.max_total_s:g}")
    if options.peers:
        parts.append(f"--peers --peers-max-dim {dim_label(options.peers_max_dim)}")
    if options.seed:
        parts.append(f"--seed {options.seed}")
    return " ".join(parts)
