"""Wire a daemon together from settings: credentials, roster, signing key, trainer."""

from __future__ import annotations

from pathlib import Path

from clients.daemon import Daemon, DaemonStats
from clients.settings import ClientSettings
from clients.training.synthetic import SyntheticTrainer
from clients.transport import Transport, client_credentials, open_channel
from protocol.config import ClientPolicy
from protocol.roster import parse_roster
from secagg.primitives.signing import SigningKey


def run_client(settings: ClientSettings) -> DaemonStats:
    """Run the daemon until the aggregator finishes training."""
    signing: SigningKey | None = None
    roster: dict[int, bytes] = {}
    credentials = None
    if settings.pki_dir:
        pki = Path(settings.pki_dir)
        roster = parse_roster(
            (pki / "roster.json").read_bytes(),
            bytes.fromhex((pki / "roster.pub").read_text().strip()),
        ).signing_keys()
        own = pki / "clients" / str(settings.id)
        signing = SigningKey(bytes.fromhex((own / "signing.key").read_text().strip()))
        if not settings.insecure:
            credentials = client_credentials(pki, settings.id)
    channel = open_channel(settings.aggregator, credentials)
    policy = ClientPolicy(
        colluders=None if settings.colluders < 0 else settings.colluders,
        allow_plain=settings.allow_plain,
    )
    daemon = Daemon(
        settings.id,
        Transport(channel, settings.id),
        SyntheticTrainer(settings.id, weight=settings.weight, exact=settings.exact_levels),
        signing_key=signing,
        roster=roster,
        policy=policy,
        poll_timeout=settings.poll_timeout_s,
    )
    try:
        return daemon.run()
    finally:
        channel.close()
