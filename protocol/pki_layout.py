"""Where each file of a ``secagg pki init`` folder lives: names only, no file access.

One layout for both hosts: the aggregator writes and serves from it
(``aggregator/pki.py``, ``aggregator/tls.py``) and the client daemon reads its
own credentials from it (``clients/run.py``, ``clients/transport.py``). They
may not import each other, so the layout sits below both. ``ca.key`` and
``roster.key`` belong to the consortium and live in the sibling
``<folder>-consortium/``, never in the folder the aggregator serves from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
ROSTER = "roster.json"
ROSTER_PUBLIC = "roster.pub"
ROSTER_KEY = "roster.key"
SERVER_DIR = "server"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
CLIENTS_DIR = "clients"
CLIENT_CERT = "client.pem"
CLIENT_KEY = "client.key"
SIGNING_KEY = "signing.key"
CLIENT_STATE_DIR = "state"
CONSORTIUM_SUFFIX = "-consortium"
CONSORTIUM_SECRETS = (CA_KEY, ROSTER_KEY)


@dataclass(frozen=True, slots=True)
class ClientPaths:
    """Files of one client: its TLS certificate and key, and its Ed25519 seed."""

    dir: Path
    cert: Path
    key: Path
    signing_key: Path

    @property
    def state(self) -> Path:
        """The daemon's default ``state_dir`` (ledgers) when it runs from this folder."""
        return self.dir / CLIENT_STATE_DIR


@dataclass(frozen=True, slots=True)
class PkiPaths:
    """Where everything lives in a PKI directory (one layout, used by all hosts)."""

    root: Path
    client_ids: tuple[int, ...] = ()

    @property
    def ca_cert(self) -> Path:
        return self.root / CA_CERT

    @property
    def consortium(self) -> Path:
        """The consortium's secrets (CA key, roster key): beside the PKI folder, never in it."""
        return self.root.parent / f"{self.root.name}{CONSORTIUM_SUFFIX}"

    @property
    def ca_key(self) -> Path:
        return self.consortium / CA_KEY

    @property
    def server_cert(self) -> Path:
        return self.root / SERVER_DIR / SERVER_CERT

    @property
    def server_key(self) -> Path:
        return self.root / SERVER_DIR / SERVER_KEY

    @property
    def roster(self) -> Path:
        return self.root / ROSTER

    @property
    def roster_key(self) -> Path:
        return self.consortium / ROSTER_KEY

    @property
    def roster_public(self) -> Path:
        return self.root / ROSTER_PUBLIC

    @property
    def secrets_in_root(self) -> tuple[Path, ...]:
        """Where consortium secrets would lie if misplaced in the PKI folder itself."""
        return tuple(self.root / name for name in CONSORTIUM_SECRETS)

    @property
    def clients_dir(self) -> Path:
        return self.root / CLIENTS_DIR

    def client(self, client_id: int) -> ClientPaths:
        """The files of ``client_id`` (whether or not they exist)."""
        d = self.clients_dir / str(client_id)
        return ClientPaths(d, d / CLIENT_CERT, d / CLIENT_KEY, d / SIGNING_KEY)

    def as_dict(self) -> dict[str, Any]:
        """Paths as strings, for ``--json`` output."""
        return {
            "root": str(self.root),
            "ca_cert": str(self.ca_cert),
            "ca_key": str(self.ca_key),
            "server_cert": str(self.server_cert),
            "server_key": str(self.server_key),
            "roster": str(self.roster),
            "roster_key": str(self.roster_key),
            "roster_public": str(self.roster_public),
            "clients": {
                str(cid): {
                    "cert": str(c.cert),
                    "key": str(c.key),
                    "signing_key": str(c.signing_key),
                }
                for cid in self.client_ids
                for c in [self.client(cid)]
            },
        }
