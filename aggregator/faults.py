"""Fault points of this host: SIGKILL on cue when ``SECAGG_FAULT`` names one.

The decision (spec, round, hit count) is :mod:`protocol.faults`; this host
reads the environment and dies, as ``kill -9`` would, so tests can crash it
at a chosen point.
"""

from __future__ import annotations

import os
import signal

from protocol.faults import ENV, FaultCounter

_counter = FaultCounter()


def fault_point(name: str, round_: int | None = None) -> None:
    """Die here if ``SECAGG_FAULT`` selects this point (see :class:`protocol.faults.FaultSpec`)."""
    if _counter.fires(os.environ.get(ENV), name, round_):
        os.kill(os.getpid(), signal.SIGKILL)
