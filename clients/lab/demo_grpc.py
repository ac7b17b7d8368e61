"""`secagg demo`: a PKI, an aggregator and client daemons as separate processes.

Mutual TLS on loopback; by default SecAgg with the active profile (signed keys
and a consistency round) trains a face model with FedAvg on the synthetic
identities, and one client is killed with SIGKILL before it sends its masked
input in round 1 to show dropout recovery. Each daemon trains its own shard of
identities with a private head; the demo process, which plays every party's
operator, scores each round's global model on held-out identities.

Parity: the daemons also write their plaintext updates to their own folders
(``dump_updates_dir``, a demo-only switch), so the demo can check every round
exactly: the new global model minus the old one equals the plaintext weighted
mean of the survivors' updates within one quantisation level (plus float32
rounding of the stored model). Everything lands in ``runs/<id>/``.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clients.lab.cluster import LocalCluster
from protocol.build import make_config
from protocol.config import minimum_threshold
from protocol.graph import densest_harary_degree
from protocol.modes import names
from secagg.errors import ParameterError
from secagg.quantization import Quantizer, required_modulus_bits

MODES = names("demo")
#: The face-FL methods the daemons run (fedgc-reference: `secagg experiment` only).
ALGORITHMS = ("fedavg", "projector", "fedface", "fedgc", "privacyface")
TRAINERS = ("face", "synthetic")
LEVELS = 1 << 16
CLIP = 1.0


@dataclass(frozen=True)
class DemoOptions:
    """What `secagg demo` runs."""

    clients: int = 4
    rounds: int = 5
    mode: str = "secagg"
    algorithm: str = "fedavg"
    trainer: str = "face"
    # Face trainer: any dataset spec (folder, .npz, orl). 350 training identities over
    # 4 clients: verification on the 50 held out climbs from ~0.71 to ~0.87 in 5 rounds.
    data: str = "synthetic:400:8"
    test_identities: int = 50
    local_epochs: int = 1
    image_size: int = 32
    dim: int = 20_000  # synthetic trainer only (the face model fixes its own size)
    kill: bool = True
    out: Path = Path("runs")
    phase_timeout_s: float = 8.0
    train_timeout_s: float = 240.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ParameterError(f"--mode must be one of {MODES} over gRPC (ckks: see simulate)")
        if self.algorithm not in ALGORITHMS:
            raise ParameterError(
                f"--algorithm {self.algorithm!r} runs in `secagg experiment` (in memory); "
                f"the daemons run {ALGORITHMS}"
            )
        if self.trainer not in TRAINERS:
            raise ParameterError(f"--trainer must be one of {TRAINERS}")
        if self.algorithm != "fedavg" and self.trainer != "face":
            raise ParameterError(f"--algorithm {self.algorithm} needs --trainer face")
        if self.clients < 3 or self.rounds < 1:
            raise ParameterError("the demo needs at least 3 clients and 1 round")


@dataclass
class RoundView:
    """One round as the live view and the report show it."""

    round: int
    status: str = "waiting"
    survivors: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    loss: float | None = None
    accuracy: float | None = None
    accuracy_std: float | None = None
    tar_at_far_1e2: float | None = None
    train_s: float = 0.0
    crypto_s: float = 0.0
    network_s: float = 0.0
    wall_s: float = 0.0
    bytes_up: float = 0.0
    parity_max_abs_error: float | None = None
    parity_bound: float | None = None


class Evaluator:
    """Scores a global model on the held-out identities (face trainer only)."""

    def __init__(self, options: DemoOptions) -> None:
        from clients.training.data import all_pairs
        from clients.training.face_trainer import build_model, load_split

        self.settings = face_settings(options)
        _, test = load_split(self.settings)
        assert test is not None
        self.test = test
        self.pairs = all_pairs(test, seed=options.seed)
        self.backbone = build_model(self.settings, test.images.shape[1])

    def __call__(self, model: np.ndarray) -> dict[str, Any]:
        from clients.training.evaluate import embed, verification
        from clients.training.flatten import spec_of, unflatten_into

        unflatten_into(self.backbone, spec_of(self.backbone), model.astype(np.float64))
        emb = embed(self.backbone, self.test.images, device="cpu")
        a, b, same = self.pairs
        return verification(emb, a, b, same).to_json()


def face_settings(options: DemoOptions) -> Any:
    """The ``[client.training]`` table every daemon gets (each keeps shard ``id``)."""
    from clients.training.face_trainer import FaceTrainingSettings

    return FaceTrainingSettings(
        data=options.data,
        shards=options.clients,
        test_identities=options.test_identities,
        image_size=options.image_size,
        local_epochs=options.local_epochs,
        clip=CLIP,
        seed=options.seed,
        device="auto",
        threads=1,  # the daemons share this machine's cores
        method=options.algorithm,
        dplc_releases=2 * options.rounds,  # room for retried attempts (each one releases)
    )


def _shard_sizes(options: DemoOptions) -> list[int]:
    from clients.training.data import partition_identities
    from clients.training.face_trainer import load_split

    s = face_settings(options)
    train, _ = load_split(s)
    shards = partition_identities(train, options.clients, seed=s.seed)
    return [len(shard) for shard in shards]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _setup(options: DemoOptions, run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Aggregator and client settings, and the threshold the round will use."""
    degree = densest_harary_degree(options.clients) if options.mode == "secagg+" else None
    aggregator: dict[str, Any] = {
        "rounds": options.rounds,
        "phase_timeout_s": options.phase_timeout_s,
        "train_timeout_s": options.train_timeout_s,
        # A round starts once every client is present; this only bounds the wait for
        # one that never comes (face daemons need a few seconds to load torch and data).
        "start_timeout_s": 3.0 if options.trainer == "synthetic" else 60.0,
        "poll_wait_s": 1.0,
        "clip": CLIP,
        "levels": LEVELS,
        "operator_listen": f"127.0.0.1:{_free_port()}",
        "keep_checkpoints": 0,  # the parity check reads every round's model at the end
    }
    client: dict[str, Any] = {
        "colluders": 0,
        "metrics_file": "clients/{id}/metrics.jsonl",
        "dump_updates_dir": "clients/{id}/updates",
    }
    if options.trainer == "face":
        from clients.training.face_trainer import initial_model

        settings = face_settings(options)
        theta = initial_model(settings)
        np.save(run_dir / "initial_model.npy", theta)
        aggregator |= {
            "dim": int(theta.size),
            "initial_model": "initial_model.npy",
            "max_weight": max(_shard_sizes(options)),
            "method": options.algorithm,
            "embedding_dim": settings.embedding_dim,
        }
        client |= {"trainer": "face", "training": asdict(settings)}
    else:
        aggregator["dim"] = options.dim
    if options.mode == "plain":
        aggregator["profile"] = "plain"
        client["allow_plain"] = True
        threshold = options.clients
    else:
        aggregator["profile"] = "active"
        if degree is None:
            # The client policy's safe minimum with no colluding client assumed (n_C = 0):
            # t = 3 for 4 clients, so one may drop.
            threshold = minimum_threshold(options.clients, profile="active", colluders=0)
            aggregator["threshold"] = threshold
        else:
            aggregator["degree"] = degree
            threshold = make_config(
                clients=options.clients, dim=1, degree=degree, profile="active"
            ).threshold
    return aggregator, client, threshold


def run(
    options: DemoOptions, *, progress: Callable[[str], None] = print, live: bool = False
) -> dict[str, Any]:
    """Run the demo; returns the report (also written to runs/<id>/report.json).

    ``live``: a rich table redrawn as the run goes (on a terminal); otherwise one
    ``progress`` line per finished round.
    """
    run_dir = options.out / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    aggregator, client, threshold = _setup(options, run_dir)
    degree = aggregator.get("degree")
    survivable = options.clients - 1 >= threshold and (degree is None or degree >= threshold)
    kill = options.kill and options.mode != "plain" and survivable
    evaluator = Evaluator(options) if options.trainer == "face" else None
    views = [RoundView(r) for r in range(options.rounds)]
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    with LocalCluster(run_dir, options.clients) as cluster:
        cluster.start(
            aggregator,
            client,
            faults={options.clients: "before_send_MaskedInput@1"} if kill else None,
        )
        progress(
            f"aggregator on 127.0.0.1:{cluster.port} (mTLS, {options.mode}, "
            f"{aggregator['profile']} profile, t={threshold}), model of {aggregator['dim']} "
            f"parameters"
        )
        if kill:
            progress(f"client {options.clients} will be killed before its masked input in round 1")
        follower = _Follower(run_dir, aggregator["operator_listen"], evaluator, views, records)
        with _live_view(views, follower, progress, live) as refresh:
            while True:
                follower.poll()
                refresh()
                done = sum(r["completed"] for r in records) >= options.rounds
                if done or cluster.aggregator is None or cluster.aggregator.poll() is not None:
                    break
                time.sleep(0.5)
        cluster.wait()
        follower.poll()  # the last client metrics lines
    wall = time.monotonic() - started
    parity = _parity(run_dir, records, views)
    report = _report(options, threshold, kill, records, views, parity, wall)
    report["plots"] = _plots(run_dir, report, views)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    (run_dir / "report.md").write_text(_markdown(report))
    report["run_dir"] = str(run_dir)
    return report


class _Follower:
    """Reads what the run leaves on disk and the operator /status, into ``views``."""

    def __init__(
        self,
        run_dir: Path,
        operator: str,
        evaluator: Evaluator | None,
        views: list[RoundView],
        records: list[dict[str, Any]],
    ) -> None:
        self.run_dir = run_dir
        self.operator = operator
        self.evaluator = evaluator
        self.views = views
        self.records = records
        self.phase = "starting"
        self.waiting_for: list[int] = []

    def poll(self) -> None:
        path = self.run_dir / "state" / "rounds.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines[len(self.records) :]:
            record = json.loads(line)
            self.records.append(record)
            self._on_record(record)
        self._client_metrics()
        try:
            with urllib.request.urlopen(f"http://{self.operator}/status", timeout=0.5) as reply:
                status = json.loads(reply.read())
            self.phase = str(status["phase"])
            self.waiting_for = list(status["waiting_for"])
            current = int(status["round"])
            if current < len(self.views) and self.views[current].status in ("waiting", "running"):
                self.views[current].status = "running"
        except (OSError, ValueError, KeyError):
            pass

    def _on_record(self, record: dict[str, Any]) -> None:
        r = int(record["round"])
        if r >= len(self.views):
            return
        view = self.views[r]
        dropped = sorted(set(record["cohort"]) - set(record["survivors"]))
        if not record["completed"]:
            view.status = "retrying"
            view.dropped = dropped
            return
        view.status = "completed"
        view.survivors, view.dropped = record["survivors"], dropped
        view.wall_s = float(record["wall_s"])
        checkpoint = self.run_dir / "state" / "checkpoints" / f"model-{r + 1:06d}.npy"
        if self.evaluator is not None and checkpoint.exists():
            metrics = self.evaluator(np.load(checkpoint))
            view.accuracy = float(metrics["accuracy_mean"])
            view.accuracy_std = float(metrics["accuracy_std"])
            view.tar_at_far_1e2 = float(metrics["tar_at_far"].get("1e-2", float("nan")))

    def _client_metrics(self) -> None:
        rows: dict[int, list[dict[str, Any]]] = {}
        for path in sorted((self.run_dir / "clients").glob("*/metrics.jsonl")):
            for line in path.read_text().splitlines():
                row = json.loads(line)
                rows.setdefault(int(row["round"]), []).append(row)
        for r, got in rows.items():
            if r >= len(self.views):
                continue
            view = self.views[r]
            view.train_s = float(np.mean([g["train_s"] for g in got]))
            view.crypto_s = float(np.mean([g["crypto_s"] for g in got]))
            view.network_s = float(np.mean([g["network_s"] for g in got]))
            view.bytes_up = float(np.mean([g["bytes_up"] for g in got]))
            losses = [g["loss"] for g in got if "loss" in g]
            view.loss = float(np.mean(losses)) if losses else None


class _LineView:
    """For logs and pipes: one line per finished round."""

    def __init__(self, views: list[RoundView], progress: Callable[[str], None]) -> None:
        self.views = views
        self.progress = progress
        self.shown: set[int] = set()

    def __call__(self) -> None:
        for view in self.views:
            if view.status == "completed" and view.round not in self.shown:
                self.shown.add(view.round)
                self.progress(_describe(view))


class _live_view:  # noqa: N801 - used as a context manager, reads like a function
    """A rich live table on a terminal; plain lines otherwise."""

    def __init__(
        self,
        views: list[RoundView],
        follower: _Follower,
        progress: Callable[[str], None],
        wanted: bool,
    ) -> None:
        self.views = views
        self.follower = follower
        self.progress = progress
        self.wanted = wanted
        self.live: Any = None

    def __enter__(self) -> Callable[[], None]:
        from rich.console import Console

        console = Console()
        if not self.wanted or not console.is_terminal:
            return _LineView(self.views, self.progress)
        from rich.live import Live

        self.live = Live(self._table(), console=console, refresh_per_second=4)
        self.live.__enter__()
        return lambda: self.live.update(self._table())

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(*exc)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title="secagg demo: rounds", caption=self._caption())
        for name in ("round", "status", "survivors", "dropped", "loss", "verif. acc.", "kB up"):
            table.add_column(name, justify="right")
        for name in ("train s", "crypto s", "network s", "round s"):
            table.add_column(name, justify="right")
        for v in self.views:
            table.add_row(
                str(v.round),
                v.status,
                ",".join(map(str, v.survivors)) or "-",
                ",".join(map(str, v.dropped)) or "-",
                _fmt(v.loss, ".3f"),
                _fmt(v.accuracy, ".3f"),
                _fmt(v.bytes_up / 1e3 if v.bytes_up else None, ".0f"),
                _fmt(v.train_s or None, ".1f"),
                _fmt(v.crypto_s or None, ".2f"),
                _fmt(v.network_s or None, ".2f"),
                _fmt(v.wall_s or None, ".1f"),
            )
        return table

    def _caption(self) -> str:
        waiting = ",".join(map(str, self.follower.waiting_for)) or "-"
        return f"phase: {self.follower.phase}; waiting for clients: {waiting}"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _parity(run_dir: Path, records: list[dict[str, Any]], views: list[RoundView]) -> dict[str, Any]:
    """Each round's model step against the plaintext weighted mean of the same updates."""
    step = Quantizer(CLIP, LEVELS).step
    checkpoints = run_dir / "state" / "checkpoints"
    initial = run_dir / "initial_model.npy"
    previous: np.ndarray | None = np.load(initial) if initial.exists() else None
    errors: list[float] = []
    bounds: list[float] = []
    for record in (r for r in records if r["completed"]):
        r = int(record["round"])
        model = np.load(checkpoints / f"model-{r + 1:06d}.npy").astype(np.float64)
        before = np.zeros_like(model) if previous is None else previous.astype(np.float64)
        total = np.zeros_like(model)
        weight = 0
        for c in record["survivors"]:
            folder = run_dir / "clients" / str(c) / "updates"
            w = int((folder / f"weight-{r:06d}.txt").read_text())
            total += w * np.load(folder / f"update-{r:06d}.npy")[: model.size]  # θ's part
            weight += w
        error = float(np.max(np.abs((model - before) - total / weight)))
        # One quantisation level (Σ w·err / Σ w), plus the float32 rounding of the stored model.
        bound = step + float(np.max(np.spacing(np.abs(model).astype(np.float32))))
        errors.append(error)
        bounds.append(bound)
        if r < len(views):
            views[r].parity_max_abs_error, views[r].parity_bound = error, bound
        previous = model
    ok = bool(errors) and all(e <= b for e, b in zip(errors, bounds, strict=True))
    return {
        "max_abs_error": max(errors, default=float("nan")),
        "bound": max(bounds, default=float("nan")),
        "ok": ok,
        "per_round": [{"error": e, "bound": b} for e, b in zip(errors, bounds, strict=True)],
    }


def _report(
    options: DemoOptions,
    threshold: int,
    kill: bool,
    records: list[dict[str, Any]],
    views: list[RoundView],
    parity: dict[str, Any],
    wall: float,
) -> dict[str, Any]:
    completed = [v for v in views if v.status == "completed"]
    dim = _dim(options)
    bytes_up = float(np.mean([v.bytes_up for v in completed])) if completed else 0.0
    final = completed[-1] if completed else None
    return {
        "mode": options.mode,
        "algorithm": options.algorithm,
        "trainer": options.trainer,
        "data": options.data if options.trainer == "face" else "synthetic updates",
        "profile": "plain" if options.mode == "plain" else "active",
        "transport": "grpc+mtls",
        "clients": options.clients,
        "dim": dim,
        "threshold": threshold,
        "killed": [options.clients] if kill else [],
        "rounds": records,
        "per_round": [asdict(v) for v in views],
        "final_accuracy": final.accuracy if final else None,
        "wall_s": wall,
        "parity": parity,
        "bytes_up_per_client_per_round": bytes_up,
        "fp32_bytes_per_client_per_round": 4 * dim,
        "modulus_bits": required_modulus_bits(options.clients, LEVELS, 1),
    }


def _dim(options: DemoOptions) -> int:
    if options.trainer != "face":
        return options.dim
    from clients.training.face_trainer import initial_model

    return int(initial_model(face_settings(options)).size)


def _plots(run_dir: Path, report: dict[str, Any], views: list[RoundView]) -> list[str]:
    """Accuracy, the time split and the parity gap per round; bytes against fp32."""
    from clients.lab import plots

    done = [v for v in views if v.status == "completed"]
    paths = [
        plots.time_split(
            [v.round for v in done],
            {
                "training": [v.train_s for v in done],
                "crypto": [v.crypto_s for v in done],
                "network": [v.network_s for v in done],
                "waiting for others": [
                    max(0.0, v.wall_s - v.train_s - v.crypto_s - v.network_s) for v in done
                ],
            },
            run_dir / "time_per_round.png",
        ),
        plots.bytes_vs_plain(
            report["bytes_up_per_client_per_round"],
            report["fp32_bytes_per_client_per_round"],
            run_dir / "bytes_per_client.png",
            label=f"upload ({report['mode']})",
        ),
        plots.metric_per_round(
            [p["error"] for p in report["parity"]["per_round"]],
            "max |secure step − plaintext step|",
            run_dir / "parity_per_round.png",
            bound=[p["bound"] for p in report["parity"]["per_round"]],
            rounds=[v.round for v in done],
        ),
    ]
    if any(v.accuracy is not None for v in done):
        paths.append(
            plots.metric_per_round(
                [v.accuracy if v.accuracy is not None else float("nan") for v in done],
                "verification accuracy (held-out identities)",
                run_dir / "accuracy_per_round.png",
                rounds=[v.round for v in done],
            )
        )
    return [str(p) for p in paths]


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# secagg demo",
        "",
        f"{report['clients']} client daemons, mutual TLS, {report['mode']} "
        f"({report['profile']} profile), t = {report['threshold']}, {report['algorithm']} with "
        f"the {report['trainer']} trainer on {report['data']}, model of {report['dim']} "
        f"parameters; killed: {report['killed'] or 'none'}.",
        "",
        "| round | survivors | dropped | loss | verification acc. | train s | crypto s "
        "| network s | round s | kB up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in report["per_round"]:
        if v["status"] != "completed":
            continue
        cells = [
            v["round"],
            v["survivors"],
            v["dropped"] or "-",
            _fmt(v["loss"], ".3f"),
            _fmt(v["accuracy"], ".3f"),
            f"{v['train_s']:.1f}",
            f"{v['crypto_s']:.2f}",
            f"{v['network_s']:.2f}",
            f"{v['wall_s']:.1f}",
            f"{v['bytes_up'] / 1e3:.0f}",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    aborted = [r for r in report["rounds"] if not r["completed"]]
    parity = report["parity"]
    lines += [
        "",
        f"Aborted attempts (retried): {len(aborted)}.",
        "",
        f"Parity with plaintext FedAvg of the same updates, every round: max |err| "
        f"{parity['max_abs_error']:.2e} ≤ bound {parity['bound']:.2e}: "
        f"{'yes' if parity['ok'] else 'NO'}.",
        "",
        f"Upload per client per round: {report['bytes_up_per_client_per_round'] / 1e3:.0f} kB, "
        f"against {report['fp32_bytes_per_client_per_round'] / 1e3:.0f} kB for the fp32 update.",
        "",
        *(f"![{Path(p).stem}]({Path(p).name})" for p in report["plots"]),
        "",
    ]
    return "\n".join(lines)


def _describe(view: RoundView) -> str:
    acc = "" if view.accuracy is None else f"; verification {view.accuracy:.3f}"
    loss = "" if view.loss is None else f"; loss {view.loss:.3f}"
    return (
        f"round {view.round}: completed; survivors {view.survivors}; dropped "
        f"{view.dropped or '-'}{loss}{acc}; train {view.train_s:.1f}s crypto "
        f"{view.crypto_s:.2f}s network {view.network_s:.2f}s; round {view.wall_s:.1f}s"
    )
