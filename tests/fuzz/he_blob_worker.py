"""Fuzz worker (T31): TenSEAL deserialises candidate ciphertexts in this process, not the test's.

Requests on stdin: a 4-byte big-endian length, one byte scheme (0 = BFV,
1 = CKKS), one byte kind (1 = a client's fresh ciphertext, 0 = a sum), then
the blob. One JSON line per request on stdout: ``outcome`` is ``accepted``
(loaded and passed every check), ``rejected`` (InvalidCiphertext, the only
refusal allowed) or ``error`` (any other exception: a finding), with the
seconds the load took. A crash ends the process; the harness sees EOF.
"""

from __future__ import annotations

import json
import struct
import sys
import time

from secagg import he

HEADER = struct.Struct(">IBB")


def main() -> None:
    """Serve requests until stdin closes."""
    secret = {0: he.make_context(he.BFV_8192), 1: he.make_context(he.CKKS_8192)}
    public = {k: he.load_public(he.public_bytes(c), c.params) for k, c in secret.items()}
    stdin, stdout = sys.stdin.buffer, sys.stdout
    stdout.write(json.dumps({"ready": True}) + "\n")
    stdout.flush()
    while True:
        head = stdin.read(HEADER.size)
        if len(head) < HEADER.size:
            return
        size, scheme, fresh = HEADER.unpack(head)
        blob = stdin.read(size)
        length = secret[scheme].params.poly_degree  # one ciphertext's worth of values
        start = time.perf_counter()
        error = None
        try:
            if fresh:
                he.CiphertextSum(public[scheme], length=length).add([blob])
            elif scheme == 0:
                he.decrypt_ints(secret[scheme], [blob], length)
            else:
                he.decrypt(secret[scheme], [blob], length)
            outcome = "accepted"
        except he.InvalidCiphertext:
            outcome = "rejected"
        except Exception as exc:  # any other exception is what we look for
            outcome, error = "error", f"{type(exc).__name__}: {exc}"[:300]
        reply = {"outcome": outcome, "error": error, "seconds": time.perf_counter() - start}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


if __name__ == "__main__":
    main()
