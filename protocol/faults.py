"""Named fault points for the hosts: inert unless SECAGG_FAULT names one.

Tests use them to crash a process on cue: ``SECAGG_FAULT=before_send_MaskedInput@1``
kills the client daemon with SIGKILL (like ``kill -9``) just before it sends
its masked input in round 1; ``SECAGG_FAULT=after_commit_before_ack`` kills
the aggregator right after it committed a message and before it answered.
The state machines never call this; the daemon and the aggregator do.
"""

from __future__ import annotations

import os
import signal

ENV = "SECAGG_FAULT"
_hits: dict[str, int] = {}


def fault_point(name: str, round_: int | None = None) -> None:
    """Die here if the environment selects this point.

    Format: ``NAME[@ROUND][#HIT]``: only in that round (when the caller passes
    one) and only on the HIT-th time the point is reached (default the first).
    """
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    spec, _, hit = wanted.partition("#")
    point, _, at_round = spec.partition("@")
    if point != name or (at_round and round_ is not None and int(at_round) != round_):
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(hit or 1):
        os.kill(os.getpid(), signal.SIGKILL)
