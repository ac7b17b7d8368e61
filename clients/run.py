"""Wire a daemon together from settings: credentials, roster, signing key, trainer."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clients.daemon import Daemon, DaemonStats, RoundReport, Trainer
from clients.ledger import ContributionLedger
from clients.settings import ClientSettings
from clients.training.synthetic import LocalUpdate, SyntheticTrainer
from clients.transport import Transport, client_credentials, open_channel
from protocol.method_messages import MethodState
from protocol.pki_layout import PkiPaths
from protocol.roster import parse_roster
from secagg.primitives.signing import SigningKey
from secagg_pb import codec

log = logging.getLogger("secagg.client")

if TYPE_CHECKING:
    from clients.dp import ClientDp


def run_client(settings: ClientSettings) -> DaemonStats:
    """Run the daemon until the aggregator finishes training."""
    signing: SigningKey | None = None
    roster: dict[int, bytes] = {}
    credentials = None
    if settings.pki_dir:
        pki = PkiPaths(Path(settings.pki_dir))
        roster = parse_roster(
            pki.roster.read_bytes(),
            bytes.fromhex(pki.roster_public.read_text().strip()),
        ).signing_keys()
        own = pki.client(settings.id)
        signing = SigningKey(bytes.fromhex(own.signing_key.read_text().strip()))
        if not settings.insecure:
            credentials = client_credentials(pki.root, settings.id)
    channel = open_channel(settings.aggregator, credentials)
    policy = settings.client_policy()
    for warning in policy.warnings():
        log.warning("client %d: policy opt-in: %s", settings.id, warning)
    if not settings.state_dir:
        log.warning(
            "client %d: no state_dir: the contribution ledger (differencing rule) lasts only "
            "as long as this process",
            settings.id,
        )
    trainer = make_trainer(settings)
    daemon = Daemon(
        settings.id,
        Transport(channel, settings.id, signing_key=signing),  # signs requests (T28)
        trainer,
        signing_key=signing,
        roster=roster,
        policy=policy,
        ledger=ContributionLedger(Path(settings.state_dir) if settings.state_dir else None),
        poll_timeout=settings.poll_timeout_s,
        on_round=_metrics_writer(settings.metrics_file),
        dump_dir=Path(settings.dump_updates_dir) if settings.dump_updates_dir else None,
        dp=_client_dp(settings),
        method=str(getattr(trainer, "method", "fedavg")),  # face trainer: [client.training]
    )
    try:
        return daemon.run()
    finally:
        channel.close()


def make_trainer(settings: ClientSettings) -> Trainer:
    """The training hook the settings name (torch is imported only for ``face``)."""
    trainer: Trainer
    if settings.trainer == "face":
        from clients.training.face_trainer import FaceTrainer, FaceTrainingSettings

        state = Path(settings.state_dir) if settings.state_dir else None  # the DP ledgers
        trainer = FaceTrainer(settings.id, FaceTrainingSettings(**settings.training), state)
    else:
        trainer = SyntheticTrainer(settings.id, weight=settings.weight, exact=settings.exact_levels)
    if settings.dump_updates_dir:
        return _Dumping(trainer, Path(settings.dump_updates_dir))
    return trainer


class _Dumping:
    """Writes each plaintext update to the client's own disk (debugging, demo parity).

    With a face-FL method it also writes the method state each round started
    from (``state-R.bin``) and the DP release it sent (``release-R.bin``), as
    their wire encodings.
    """

    def __init__(self, inner: Trainer, folder: Path) -> None:
        self.inner = inner
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def last(self) -> object:
        return getattr(self.inner, "last", None)

    @property
    def method(self) -> str:
        return str(getattr(self.inner, "method", "fedavg"))

    def receive(self, state: MethodState) -> None:
        receive = getattr(self.inner, "receive", None)
        if receive is not None:
            receive(state)
        raw = codec.method_state_to_proto(state).SerializeToString()
        (self.folder / f"state-{state.round:06d}.bin").write_bytes(raw)

    def __call__(self, model: np.ndarray, round_: int) -> LocalUpdate:
        update = self.inner(model, round_)
        if update.vector is not None:
            np.save(self.folder / f"update-{round_:06d}.npy", update.vector)
            (self.folder / f"weight-{round_:06d}.txt").write_text(str(update.weight))
        if update.release is not None:
            raw = codec.client_to_proto(update.release).SerializeToString()
            (self.folder / f"release-{round_:06d}.bin").write_bytes(raw)
        return update


def _metrics_writer(path: str) -> RoundReport | None:
    if not path:
        return None
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)

    def write(record: dict[str, object]) -> None:
        with target.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    return write


def _client_dp(settings: ClientSettings) -> ClientDp | None:
    if settings.dp_noise_multiplier <= 0:
        return None
    from clients.dp import LEDGER_FILE, ClientDp

    return ClientDp(
        settings.dp_noise_multiplier,
        settings.dp_clip,
        colluders=settings.colluders,
        delta=settings.dp_delta,
        epsilon_budget=settings.dp_epsilon_budget,
        path=Path(settings.state_dir) / LEDGER_FILE if settings.state_dir else None,
    )
