"""The operator endpoint: Prometheus metrics and a JSON status, over plain HTTP.

It serves aggregate counters and round state only (never tensors, client
inputs or secrets), is unauthenticated, and therefore binds to loopback by
default; expose it through an authenticating proxy if needed.

- ``GET /metrics``: Prometheus text format (prometheus_client).
- ``GET /status``: rounds, phase, present clients and recent aborts (JSON),
  what `secagg status --aggregator URL` prints.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """The aggregator's metrics, in their own registry (several servers per process in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rounds = Counter("secagg_rounds", "Round attempts finished", ["outcome"], registry=r)
        self.round_seconds = Histogram(
            "secagg_round_seconds",
            "Wall time of completed rounds",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.phase_seconds = Histogram(
            "secagg_phase_seconds", "Wall time of protocol phases", ["phase"], registry=r
        )
        self.messages = Counter(
            "secagg_messages", "Client messages by outcome", ["outcome"], registry=r
        )
        self.bytes_received = Counter(
            "secagg_bytes_received", "Bytes of accepted client messages", registry=r
        )
        self.dropouts = Counter(
            "secagg_dropouts", "Clients that dropped out of a round", registry=r
        )
        self.throttled = Counter(
            "secagg_throttled", "Calls refused by the per-client rate limit", registry=r
        )
        self.refused = Counter(
            "secagg_refused",
            "Calls refused, by the status code answered (rate limits, roster, bad input, ...)",
            ["code"],
            registry=r,
        )
        self.undecodable = Counter(
            "secagg_undecodable", "Request bodies that did not parse (INVALID_ARGUMENT)", registry=r
        )
        self.round = Gauge("secagg_round", "Current round number", registry=r)
        self.clients_present = Gauge("secagg_clients_present", "Clients seen recently", registry=r)

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)


class OperatorServer:
    """A small threaded HTTP server for /metrics and /status."""

    def __init__(
        self, metrics: Metrics, status: Callable[[], dict[str, Any]], *, host: str, port: int
    ) -> None:
        metrics_ref, status_ref = metrics, status

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, metrics_ref.exposition())
                elif self.path == "/status":
                    body = json.dumps(status_ref()).encode()
                    self._send(200, "application/json", body)
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # access logs would only add noise

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="operator", daemon=True
        )

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()
