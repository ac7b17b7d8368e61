"""Named fault points: when one fires, given the operator's spec. Pure; the hosts kill.

Tests crash a process on cue through ``SECAGG_FAULT``:
``SECAGG_FAULT=before_send_MaskedInput@1`` kills the client daemon with
SIGKILL (like ``kill -9``) just before it sends its masked input in round 1;
``SECAGG_FAULT=after_commit_before_ack`` kills the aggregator right after it
committed a message and before it answered. This module only parses the spec
and counts hits; reading the environment and the kill live in the hosts
(``clients/faults.py``, ``aggregator/faults.py``), so the sans-I/O layer does
neither. The state machines never call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENV = "SECAGG_FAULT"


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """``NAME[@ROUND][#HIT]``: only in that round (when the caller passes one) and
    only on the HIT-th time the point is reached (default the first)."""

    point: str
    round_: int | None = None
    hit: int = 1

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """The spec in ``text``; a malformed round or hit is a ValueError naming the spec."""
        spec, _, hit = text.partition("#")
        point, _, at_round = spec.partition("@")
        try:
            return cls(point, int(at_round) if at_round else None, int(hit or 1))
        except ValueError:
            raise ValueError(f"{ENV}={text!r}: expected NAME[@ROUND][#HIT]") from None

    def matches(self, name: str, round_: int | None) -> bool:
        """Whether reaching ``name`` in ``round_`` counts as a hit."""
        if self.point != name:
            return False
        return self.round_ is None or round_ is None or self.round_ == round_


@dataclass
class FaultCounter:
    """Hits per point over a process's life, so ``#HIT`` can pick the n-th passage."""

    hits: dict[str, int] = field(default_factory=dict)

    def fires(self, wanted: str | None, name: str, round_: int | None = None) -> bool:
        """Whether point ``name`` (in ``round_``) must fire now under spec ``wanted``.

        ``wanted`` is the value of :data:`ENV` (None or empty: never fires).
        """
        if not wanted or wanted.partition("#")[0].partition("@")[0] != name:
            return False  # another point's spec is not even parsed, as before
        spec = FaultSpec.parse(wanted)
        if not spec.matches(name, round_):
            return False
        self.hits[name] = self.hits.get(name, 0) + 1
        return self.hits[name] == spec.hit
