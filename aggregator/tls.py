"""Mutual TLS for the gRPC transport, and the guard against running without it.

security.md §4.1: gRPC's default is ``require_client_auth=False``, under which
a client *without* a certificate was served (M10), so this module never
builds server credentials any other way. The client id is taken from the
verified peer certificate (URI SAN), never from ``peer_identities()`` or the
payload. ``("grpc.so_reuseport", 0)`` makes a second aggregator on the same
port fail to bind instead of silently sharing the traffic (grpc#16005, T43).
"""

from __future__ import annotations

import ipaddress
import logging
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from aggregator.pki import (
    InvalidCertificate,
    cert_sha256,
    client_id_from_cert,
    load_certificate,
    load_roster,
    misplaced_secrets,
    verify_issued_by,
)
from protocol.pki_layout import PkiPaths
from secagg.errors import ParameterError, SecAggError

log = logging.getLogger("secagg.aggregator")

MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""Unary cap both ways; bulk tensors travel as ≤ 4 MiB upload chunks."""

CLIENT_KEEPALIVE_MS: Final = 60_000
"""Client ping interval on idle connections: under the ≈4 min idle-TCP cut of some clouds."""

SERVER_OPTIONS: Final[list[tuple[str, int]]] = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Server-side pings find dead clients sooner than the 2 h default.
    ("grpc.keepalive_time_ms", 120_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    # Accept client pings at half their interval, with or without calls in flight,
    # so well-behaved clients never collect too_many_pings strikes.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", CLIENT_KEEPALIVE_MS // 2),
    ("grpc.http2.max_ping_strikes", 2),
]

CLIENT_OPTIONS: Final[list[tuple[str, int]]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", CLIENT_KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),  # keep pinging during long polls
]


class InsecureConfiguration(ParameterError):
    """The server would run without the transport protections of §4.1."""


class PortInUse(ParameterError):
    """The listening address could not be bound (another aggregator holds it)."""


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who is on the other end of a verified mTLS connection."""

    client_id: int
    cert_sha256: bytes


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InsecureConfiguration(
            f"cannot read {path}: {exc.strerror or exc}; run `secagg pki init` or pass "
            "the consortium's PKI directory"
        ) from None


def server_credentials(pki_dir: Path) -> grpc.ServerCredentials:
    """Server credentials that demand a client certificate issued by the consortium CA."""
    paths = PkiPaths(Path(pki_dir))
    return grpc.ssl_server_credentials(
        [(_read(paths.server_key), _read(paths.server_cert))],
        root_certificates=_read(paths.ca_cert),
        require_client_auth=True,
    )


def client_credentials(pki_dir: Path, client_id: int) -> grpc.ChannelCredentials:
    """Channel credentials of ``client_id``: its certificate, pinned to the consortium CA."""
    paths = PkiPaths(Path(pki_dir))
    files = paths.client(client_id)
    return grpc.ssl_channel_credentials(
        root_certificates=_read(paths.ca_cert),
        private_key=_read(files.key),
        certificate_chain=_read(files.cert),
    )


def secure_channel(
    target: str, pki_dir: Path, client_id: int, *, server_name: str | None = None
) -> grpc.Channel:
    """A client channel with mTLS and :data:`CLIENT_OPTIONS`.

    ``server_name`` overrides the name checked against the server certificate
    (when ``target`` is an address the certificate does not list).
    """
    options: list[tuple[str, Any]] = list(CLIENT_OPTIONS)
    if server_name is not None:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, client_credentials(pki_dir, client_id), options=options)


def add_secure_port(server: grpc.Server, address: str, pki_dir: Path) -> int:
    """Bind ``address`` with mTLS; the bound port, or :class:`PortInUse`.

    grpc raises ``RuntimeError`` (or, in older versions, returns 0) when the
    bind fails; with ``so_reuseport`` 0 that is how a second aggregator on the
    same port is stopped (T43).
    """
    try:
        port = int(server.add_secure_port(address, server_credentials(pki_dir)))
    except RuntimeError as exc:
        raise PortInUse(f"cannot bind {address}: {exc}") from None
    if port == 0:
        raise PortInUse(f"cannot bind {address}")
    return port


def peer_identity(context: grpc.ServicerContext) -> PeerIdentity:
    """The client id and certificate fingerprint of the verified peer.

    Raises :class:`InvalidCertificate` (UNAUTHENTICATED) when the connection
    carries no client certificate (an insecure port) or one without an id.
    """
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert") or []
    if len(pems) != 1:
        raise InvalidCertificate("the connection carries no client certificate")
    cert = load_certificate(pems[0])
    return PeerIdentity(client_id_from_cert(cert), cert_sha256(cert))


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server_security(
    insecure: bool,
    pki_dir: Path | None,
    *,
    options: Sequence[tuple[str, Any]] = SERVER_OPTIONS,
    address: str | None = None,
) -> None:
    """Refuse to start a server without mTLS, a valid PKI and exclusive port binding (T26).

    ``insecure=True`` is the explicit development escape hatch: it skips the
    PKI checks, and with ``address`` given it is only allowed on loopback.
    The checks run before binding so a misconfiguration fails with a clear
    message instead of a server that quietly serves anonymous clients.
    """
    if dict(options).get("grpc.so_reuseport") != 0:
        raise InsecureConfiguration(
            'server options must set ("grpc.so_reuseport", 0): otherwise a second '
            "server can bind the same port and silently share the traffic"
        )
    if insecure:
        if address is not None and not _is_loopback(address):
            raise InsecureConfiguration(
                f"--insecure is for local development only; refusing to listen on {address}"
            )
        return
    if pki_dir is None:
        raise InsecureConfiguration(
            "no PKI directory given: the aggregator requires mutual TLS "
            "(pass the PKI directory, or --insecure for local development)"
        )
    paths = PkiPaths(Path(pki_dir))
    ca = _load_cert(paths.ca_cert)
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        is_ca = False
    if not is_ca:
        raise InsecureConfiguration(f"{paths.ca_cert} is not a CA certificate")
    server = _load_cert(paths.server_cert)
    now = datetime.now(UTC)
    for path, cert in ((paths.ca_cert, ca), (paths.server_cert, server)):
        if now > cert.not_valid_after_utc:  # clients would refuse every handshake
            raise InsecureConfiguration(
                f"{path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
                "issue a new one (secagg pki)"
            )
        if now < cert.not_valid_before_utc:
            raise InsecureConfiguration(
                f"{path} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
                "(is this host's clock right?)"
            )
    for secret in misplaced_secrets(paths):
        raise InsecureConfiguration(
            f"{secret} lies in the aggregator's PKI folder: whoever controls the aggregator "
            "could issue certificates or re-sign the roster; keep it with the consortium "
            f"(secagg pki writes it to {paths.consortium})"
        )
    try:
        verify_issued_by(server, ca)
    except InvalidCertificate:
        raise InsecureConfiguration(
            f"{paths.server_cert} was not issued by {paths.ca_cert}"
        ) from None
    try:
        eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        server_auth = ExtendedKeyUsageOID.SERVER_AUTH in eku
    except (x509.ExtensionNotFound, ValueError):
        server_auth = False
    if not server_auth:
        raise InsecureConfiguration(f"{paths.server_cert} lacks the serverAuth key usage")
    key_mode = paths.server_key.stat().st_mode if paths.server_key.exists() else 0
    if key_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureConfiguration(
            f"{paths.server_key} is readable by other users (mode {key_mode & 0o777:o}); "
            "chmod 600 it"
        )
    try:
        key = serialization.load_pem_private_key(_read(paths.server_key), password=None)
    except (ValueError, TypeError) as exc:
        raise InsecureConfiguration(f"{paths.server_key} is not a usable private key") from exc
    if key.public_key() != server.public_key():
        raise InsecureConfiguration(f"{paths.server_key} does not match {paths.server_cert}")
    try:  # identities must be checkable against a verified roster
        load_roster(paths.root)
    except SecAggError as exc:
        raise InsecureConfiguration(
            f"{paths.roster} does not verify against {paths.roster_public}: {exc}"
        ) from None


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return load_certificate(_read(path))
    except InvalidCertificate:
        raise InsecureConfiguration(f"{path} is not a PEM certificate") from None
