"""Named fault points: inert unless SECAGG_FAULT names one (tests use them to crash on cue).

``SECAGG_FAULT=before_send_MaskedInput@1`` kills this process with SIGKILL
(like ``kill -9``) just before it sends its masked input in round 1.
"""

from __future__ import annotations

import os
import signal

ENV = "SECAGG_FAULT"


def fault_point(name: str, round_: int) -> None:
    """Die here if the environment selects this point (and round)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, at_round = wanted.partition("@")
    if point == name and (not at_round or int(at_round) == round_):
        os.kill(os.getpid(), signal.SIGKILL)
