"""An enrolled client that floods the aggregator (T35), run as its own process.

``python -m tests.integration.flooder TARGET PKI_DIR CLIENT RATE NICE`` calls
Submit and Upload alternately at RATE per second over mutual TLS as CLIENT
(after a SIGSTOP it resumes at RATE rather than catching up in a burst),
unsigned (so an admitted call is still refused: UNAUTHENTICATED), until its
standard input closes; it then prints one JSON line: calls sent, seconds,
and the count of each status code. A separate process with a lower CPU
priority (NICE) stands in for an attacker on another machine: on a shared
2-core CI box the flooder's own client-side work would otherwise be charged
to the aggregator's round times.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aggregator.tls import secure_channel
from protocol.messages import ClientAbort
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from secagg_pb.v1 import secagg_pb2_grpc as pb_grpc


def flood(
    target: str, pki: Path, client: int, rate: float, stop: threading.Event
) -> dict[str, Any]:
    """Call at ``rate`` until ``stop``; then wait for the answers and count their codes."""
    channel = secure_channel(target, pki, client)
    stub = pb_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
    abort = codec.signed_client_to_proto(ClientAbort(client, 0, "flood"), None)
    data = b"\x01" * 1024
    chunk = pb.UploadChunk(
        client=client,
        round=0,
        upload_id="flood",
        offset=0,
        total_length=len(data),
        data=data,
        sha256=hashlib.sha256(data).digest(),
    )
    codes: Counter[str] = Counter()
    lock = threading.Lock()

    def done(call: Any) -> None:
        with lock:
            codes[call.code().name] += 1

    sent, start = 0, time.monotonic()
    began = start
    while not stop.is_set():
        due = start + sent / rate
        now = time.monotonic()
        if now - due > 0.1:  # resumed after SIGSTOP: go on at the rate, no catch-up burst
            start, due = now - sent / rate, now
        if due > now:
            time.sleep(min(due - now, 0.01))
            continue
        if sent % 2:
            call = stub.Submit.future(abort, timeout=10)
        else:
            call = stub.Upload.future(iter([chunk]), timeout=10)
        call.add_done_callback(done)
        sent += 1
    seconds = time.monotonic() - began  # wall time, pauses included (the bucket refills)
    end = time.monotonic() + 15
    while sum(codes.values()) < sent and time.monotonic() < end:
        time.sleep(0.05)
    channel.close()
    return {"sent": sent, "seconds": seconds, "codes": dict(codes)}


def main(argv: list[str]) -> int:
    target, pki, client, rate, nice = argv
    os.nice(int(nice))
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    result = flood(target, Path(pki), int(client), float(rate), stop)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
