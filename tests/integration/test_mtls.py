"""Mutual TLS on a real loopback gRPC server (security.md §6 D: T24–T27, T43).

The server runs the production credentials and options from
:mod:`aggregator.tls` with one generic handler that reports the caller's
certificate-derived id. A counter records every handler invocation: for
handshake failures it must stay at 0, i.e. no application code ran.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from aggregator.pki import (
    cert_pem,
    cert_sha256,
    client_id_from_cert,
    init_pki,
    issue_client_cert,
    key_pem,
    load_ca,
    load_roster,
    new_ca,
)
from aggregator.tls import (
    CLIENT_OPTIONS,
    SERVER_OPTIONS,
    InsecureConfiguration,
    PortInUse,
    add_secure_port,
    check_server_security,
    client_credentials,
    peer_identity,
    secure_channel,
)
from protocol.errors import ProtocolError
from protocol.pki_layout import PkiPaths

pytestmark = pytest.mark.integration

DEADLINE = 5.0
METHOD = "/test.Echo/Who"


@dataclass
class Counter:
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self) -> None:
        with self.lock:
            self.calls += 1


@dataclass
class Server:
    port: int
    counter: Counter
    server: grpc.Server

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return init_pki(tmp_path_factory.mktemp("mtls") / "pki", clients=2)


@pytest.fixture(scope="module")
def server(pki: PkiPaths) -> Iterator[Server]:
    check_server_security(False, pki.root, address="127.0.0.1:0")
    roster = load_roster(pki.root)
    counter = Counter()

    def who(request: bytes, context: grpc.ServicerContext) -> bytes:
        counter.hit()
        try:
            peer = peer_identity(context)
            roster.authenticate(peer.client_id, peer.cert_sha256)
        except ProtocolError as exc:
            context.abort(grpc.StatusCode[exc.status], str(exc))
        return str(peer.client_id).encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )
    srv = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), handlers=[handler], options=SERVER_OPTIONS
    )
    port = add_secure_port(srv, "127.0.0.1:0", pki.root)
    srv.start()
    try:
        yield Server(port, counter, srv)
    finally:
        srv.stop(grace=None)


def _call(channel: grpc.Channel) -> bytes:
    with channel:
        stub = channel.unary_unary(METHOD)
        result: bytes = stub(b"", timeout=DEADLINE)
        return result


def _channel(
    target: str, root: bytes, key: bytes | None, cert: bytes | None, **extra: Any
) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=cert
    )
    options = list(CLIENT_OPTIONS) + list(extra.items())
    return grpc.secure_channel(target, creds, options=options)


def _expect_code(channel: grpc.Channel, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _call(channel)
    assert info.value.code() == code, info.value.details()


# ------------------------------------------------------------------- T24 happy path


@pytest.mark.parametrize("client_id", [1, 2])
def test_t24_enrolled_client_is_identified_by_its_certificate(
    pki: PkiPaths, server: Server, client_id: int
) -> None:
    before = server.counter.calls
    reply = _call(secure_channel(server.target, pki.root, client_id))
    assert int(reply) == client_id
    cert = pki.client(client_id).cert.read_bytes()
    assert client_id_from_cert(cert) == client_id
    roster = load_roster(pki.root)
    assert client_id in roster
    assert roster.entries[client_id].cert_sha256 == cert_sha256(cert)
    assert server.counter.calls == before + 1


def test_t24_server_name_override_still_verifies(pki: PkiPaths, server: Server) -> None:
    channel = grpc.secure_channel(
        f"localhost:{server.port}",
        client_credentials(pki.root, 1),
        options=[*CLIENT_OPTIONS, ("grpc.ssl_target_name_override", "localhost")],
    )
    assert _call(channel) == b"1"


# ------------------------------------------------------- T25 unauthenticated clients


@dataclass(frozen=True)
class BadClients:
    """Credentials for every T25 case, made once per module."""

    root: bytes
    key: bytes
    cert: bytes
    foreign_root: bytes
    foreign_key: bytes
    foreign_cert: bytes
    expired_key: bytes
    expired_cert: bytes

    def channel(self, case: str, target: str) -> grpc.Channel:
        if case == "no client certificate":
            return _channel(target, self.root, None, None)
        if case == "foreign CA, same CN and URI":
            return _channel(target, self.root, self.foreign_key, self.foreign_cert)
        if case == "expired certificate":
            return _channel(target, self.root, self.expired_key, self.expired_cert)
        if case == "client trusts the wrong CA":
            return _channel(target, self.foreign_root, self.key, self.cert)
        if case == "wrong server name":
            override = {"grpc.ssl_target_name_override": "wrong.example.org"}
            return _channel(target, self.root, self.key, self.cert, **override)
        if case == "plaintext client":
            return grpc.insecure_channel(target, options=CLIENT_OPTIONS)
        raise AssertionError(case)


CASES = [
    "no client certificate",
    "foreign CA, same CN and URI",
    "expired certificate",
    "client trusts the wrong CA",
    "wrong server name",
    "plaintext client",
]


@pytest.fixture(scope="module")
def bad(pki: PkiPaths) -> BadClients:
    files = pki.client(1)
    foreign = new_ca(common_name="secagg consortium CA")  # same names, different key
    f_cert, f_key = issue_client_cert(foreign, 1)  # same CN and URI SAN as client 1
    now = dt.datetime.now(dt.UTC)
    e_cert, e_key = issue_client_cert(
        load_ca(pki.root),
        1,
        not_valid_before=now - dt.timedelta(days=10),
        not_valid_after=now - dt.timedelta(days=1),
    )
    return BadClients(
        root=pki.ca_cert.read_bytes(),
        key=files.key.read_bytes(),
        cert=files.cert.read_bytes(),
        foreign_root=cert_pem(foreign.cert),
        foreign_key=key_pem(f_key),
        foreign_cert=cert_pem(f_cert),
        expired_key=key_pem(e_key),
        expired_cert=cert_pem(e_cert),
    )


@pytest.mark.parametrize("case", CASES)
def test_t25_handshake_failures_are_unavailable_and_run_no_handler(
    pki: PkiPaths, server: Server, bad: BadClients, case: str
) -> None:
    before = server.counter.calls
    _expect_code(bad.channel(case, server.target), grpc.StatusCode.UNAVAILABLE)
    assert server.counter.calls == before
    # The server is still healthy for an enrolled client afterwards.
    assert _call(secure_channel(server.target, pki.root, 2)) == b"2"


def test_t25_handler_counter_is_zero_after_only_failures(pki: PkiPaths, bad: BadClients) -> None:
    """A fresh server that sees only bad clients never invokes its handler."""
    counter = Counter()

    def who(request: bytes, context: grpc.ServicerContext) -> bytes:
        counter.hit()
        return b""

    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )
    srv = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2), handlers=[handler], options=SERVER_OPTIONS
    )
    port = add_secure_port(srv, "127.0.0.1:0", pki.root)
    srv.start()
    try:
        for case in CASES:
            _expect_code(bad.channel(case, f"127.0.0.1:{port}"), grpc.StatusCode.UNAVAILABLE)
        assert counter.calls == 0
    finally:
        srv.stop(grace=None)


# ----------------------------------------------------------------- T27 authorisation


def test_t27_valid_but_unenrolled_certificate_is_permission_denied(
    pki: PkiPaths, server: Server
) -> None:
    cert, key = issue_client_cert(load_ca(pki.root), 77)  # real CA, id not on the roster
    channel = _channel(server.target, pki.ca_cert.read_bytes(), key_pem(key), cert_pem(cert))
    _expect_code(channel, grpc.StatusCode.PERMISSION_DENIED)


def test_t27_reissued_certificate_not_in_roster_is_unauthenticated(
    pki: PkiPaths, server: Server
) -> None:
    """A CA-valid certificate for an enrolled id, but not the pinned one (e.g. mis-issued)."""
    cert, key = issue_client_cert(load_ca(pki.root), 1)
    channel = _channel(server.target, pki.ca_cert.read_bytes(), key_pem(key), cert_pem(cert))
    _expect_code(channel, grpc.StatusCode.UNAUTHENTICATED)


# --------------------------------------------------- T26 / T43 misconfiguration guard


def test_t26_refuses_without_mtls(tmp_path: Path, pki: PkiPaths) -> None:
    with pytest.raises(InsecureConfiguration, match="mutual TLS"):
        check_server_security(False, None)
    empty = tmp_path / "no-ca"
    empty.mkdir()
    with pytest.raises(InsecureConfiguration, match=r"ca\.pem"):
        check_server_security(False, empty)
    # The explicit development flag is the only way around it, and only on loopback.
    check_server_security(True, None)
    check_server_security(True, None, address="127.0.0.1:50051")
    with pytest.raises(InsecureConfiguration, match="local development"):
        check_server_security(True, None, address="0.0.0.0:50051")


def test_t26_refuses_default_reuseport(pki: PkiPaths) -> None:
    options = [o for o in SERVER_OPTIONS if o[0] != "grpc.so_reuseport"]
    with pytest.raises(InsecureConfiguration, match="so_reuseport"):
        check_server_security(False, pki.root, options=options)
    with pytest.raises(InsecureConfiguration, match="so_reuseport"):
        check_server_security(True, None, options=[*options, ("grpc.so_reuseport", 1)])


def test_t26_refuses_broken_pki(tmp_path: Path, pki: PkiPaths) -> None:
    other = init_pki(tmp_path / "other", clients=1)
    # A server certificate from another CA.
    other.server_cert.write_bytes(pki.server_cert.read_bytes())
    with pytest.raises(InsecureConfiguration, match="not issued"):
        check_server_security(False, other.root)
    # A world-readable server key.
    third = init_pki(tmp_path / "third", clients=1)
    third.server_key.chmod(0o644)
    with pytest.raises(InsecureConfiguration, match="readable"):
        check_server_security(False, third.root)
    # A tampered roster.
    fourth = init_pki(tmp_path / "fourth", clients=1)
    fourth.roster_public.write_text(third.roster_public.read_text())
    with pytest.raises(InsecureConfiguration, match="invalid signature"):
        check_server_security(False, fourth.root)
    # A CA file that is not a certificate.
    fourth.ca_cert.write_bytes(b"garbage")
    with pytest.raises(InsecureConfiguration, match="not a PEM certificate"):
        check_server_security(False, fourth.root)


def test_t43_second_server_on_the_same_port_fails_to_bind(pki: PkiPaths, server: Server) -> None:
    second = grpc.server(futures.ThreadPoolExecutor(max_workers=1), options=SERVER_OPTIONS)
    try:
        with pytest.raises(PortInUse):
            add_secure_port(second, server.target, pki.root)
    finally:
        second.stop(grace=None)
    assert _call(secure_channel(server.target, pki.root, 1)) == b"1"
