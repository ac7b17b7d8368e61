"""The client's own security policy: every rule a round must meet before a secret leaves.

The aggregator is the adversary this system exists to resist. It announces
each round (mode, profile, cohort, threshold, SecAgg+ degree, HE key holder)
and may announce anything; the client believes none of it. This module is
the whole of what a client insists on, in one place, so that a reader can
check the policy without reading the machines:

- **mode and profile** (:meth:`ClientPolicy.mode_problem`): by default only
  SecAgg / SecAgg+ with the active profile and the bfv-masked hybrid. Plain
  rounds, plain CKKS / BFV (every member holds the secret key, so the key
  holder the server names can decrypt any upload) and the semi-honest profile
  (nothing signed, nothing checked) are opt-ins, each with a warning that
  says what it gives up (:meth:`ClientPolicy.warnings`);
- **n_C, the colluders assumed**: a fact about the consortium, never the
  announced cohort. The client's own setting, or fewer than a third of the
  signed roster it holds;
- **cohort and k_min**: every aggregate must hold at least k_min honest
  inputs beside n_C colluders, so the cohort has at least n_C + k_min members
  and the threshold is at least n_C + k_min, uncapped;
- **threshold**: above (n + n_C)/2 with the active profile (two disjoint
  honest views cannot both reach t) or above n_C when semi-honest (Bonawitz
  et al. 2017); on a SecAgg+ graph the statistical bound of Bell et al. 2020
  computed here with the client's own n_C and its k + 1 shareholders
  (:func:`protocol.params.secure_threshold`);
- **SecAgg+ graph**: an even degree the client accepts, a threshold no
  larger than the k + 1 holders, and (checked by the machine) every cohort
  member's signed key in U1, so the server cannot pick which keys seed the
  graph; round attempts per base model are capped, which bounds re-drawing
  the graph by restarting rounds;
- **differencing**: a client contributes at most once per base model (the
  model hash of the round), so a server cannot subtract two sums over the
  same model that differ by one client (the host keeps the ledger,
  :mod:`clients.ledger`).

A round that breaks a rule is refused before any key is generated: the
machine sends a :class:`protocol.messages.ClientAbort` naming the rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from protocol.config import (
    MIN_HONEST,
    SECURE_PROFILES,
    RoundConfig,
    default_colluders,
    minimum_threshold,
)
from protocol.params import AdversaryClass, secure_threshold
from secagg.errors import ParameterError

Mode = Literal["plain", "secagg", "secagg+", "ckks", "bfv", "bfv-masked"]
MODES: tuple[Mode, ...] = get_args(Mode)
#: Modes a client joins without opting in: no single party can read an update.
SAFE_MODES: tuple[Mode, ...] = ("secagg", "secagg+", "bfv-masked")
SAFE_PROFILES: tuple[str, ...] = ("active",)
#: σ of the SecAgg+ statistical threshold (Bell et al.; FCP's default).
SECURITY_BITS = 40
#: Round attempts a client joins per base model (bounds graph re-draws by restarts).
MAX_ATTEMPTS = 3

#: What each opt-in gives up, logged once when a daemon starts with it.
OPT_IN_WARNINGS: dict[str, str] = {
    "plain": "plain rounds send this client's update in the clear to the aggregator",
    "ckks": "plain CKKS: every member holds the secret key, so the key holder the "
    "aggregator names can decrypt this client's upload if it colludes",
    "bfv": "plain BFV: every member holds the secret key, so the key holder the "
    "aggregator names can decrypt this client's upload if it colludes",
    "semi-honest": "the semi-honest profile signs and checks nothing: a malicious "
    "aggregator can split views or add Sybil peers and recover this client's update",
}


def mode_of(config: RoundConfig) -> Mode:
    """The mode a SecAgg round config amounts to (the degree decides SecAgg against SecAgg+)."""
    if config.profile == "plain":
        return "plain"
    if config.degree is None or config.degree >= config.n - 1:
        return "secagg"
    return "secagg+"


def consortium_colluders(roster_size: int) -> int:
    """Default n_C: fewer than a third of the consortium (the signed roster), never the cohort."""
    return max(0, (roster_size - 1) // 3)


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """What this client insists on; the server can change none of it.

    ``colluders`` is n_C (None: fewer than a third of the roster the client
    holds). ``degrees`` lists the SecAgg+ degrees accepted (empty: any even
    degree the threshold check allows). ``max_attempts`` caps the round
    attempts joined per base model.
    """

    modes: tuple[str, ...] = SAFE_MODES
    profiles: tuple[str, ...] = SAFE_PROFILES
    colluders: int | None = None
    min_cohort: int = MIN_HONEST
    min_honest: int = MIN_HONEST
    degrees: tuple[int, ...] = ()
    security_bits: int = SECURITY_BITS
    max_attempts: int = MAX_ATTEMPTS

    def __post_init__(self) -> None:
        unknown = set(self.modes) - set(MODES)
        if unknown:
            raise ParameterError(f"unknown modes {sorted(unknown)} (known: {list(MODES)})")
        if set(self.profiles) - set(SECURE_PROFILES):
            raise ParameterError(f"profiles must be among {list(SECURE_PROFILES)}")
        if self.colluders is not None and (_not_int(self.colluders) or self.colluders < 0):
            raise ParameterError("colluders must be a non-negative int")
        for name in ("min_cohort", "min_honest", "security_bits", "max_attempts"):
            value = getattr(self, name)
            if _not_int(value) or value < 1:
                raise ParameterError(f"{name} must be a positive int")
        if any(_not_int(k) or k < 2 or k % 2 for k in self.degrees):
            raise ParameterError("SecAgg+ degrees must be even ints of at least 2")

    @classmethod
    def from_settings(cls, values: dict[str, object]) -> ClientPolicy:
        """Build from a ``[client.policy]`` table; unknown keys are errors."""
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ParameterError(f"unknown policy settings: {sorted(unknown)}")
        args = dict(values)
        for key in ("modes", "profiles", "degrees"):
            if key in args:
                args[key] = _as_tuple(args[key], key)
        if args.get("colluders") == -1:
            args["colluders"] = None
        return cls(**args)  # type: ignore[arg-type]

    def with_opt_in(self, *modes_or_profiles: str) -> ClientPolicy:
        """This policy with more modes or profiles accepted (tests, labs, benchmarks)."""
        modes = [m for m in modes_or_profiles if m in MODES]
        profiles = [p for p in modes_or_profiles if p in SECURE_PROFILES]
        return dataclasses.replace(
            self,
            modes=tuple(dict.fromkeys([*self.modes, *modes])),
            profiles=tuple(dict.fromkeys([*self.profiles, *profiles])),
        )

    def warnings(self) -> list[str]:
        """One line per opt-in, saying what it gives up."""
        chosen = [*self.modes, *self.profiles]
        return [OPT_IN_WARNINGS[k] for k in OPT_IN_WARNINGS if k in chosen]

    def assumed_colluders(self, roster_size: int) -> int | None:
        """n_C: the client's setting, else a third of the roster; None when neither exists."""
        if self.colluders is not None:
            return self.colluders
        if roster_size < 1:
            return None
        return consortium_colluders(roster_size)

    def min_survivors(self, roster_size: int) -> int:
        """Fewest inputs an aggregate this client is in may hold: n_C + k_min."""
        colluders = self.assumed_colluders(roster_size) or 0
        return colluders + self.min_honest

    # ------------------------------------------------------------------ the checks

    def mode_problem(self, mode: str, profile: str | None) -> str | None:
        """Why this client refuses ``mode`` (and ``profile``), or None."""
        if mode not in self.modes:
            return (
                f"mode {mode!r} is not in this client's policy (accepted: {list(self.modes)}; "
                "opting in needs policy.modes)"
            )
        if profile is not None and mode != "plain" and profile not in self.profiles:
            return (
                f"profile {profile!r} is not in this client's policy (accepted: "
                f"{list(self.profiles)}; opting in needs policy.profiles)"
            )
        return None

    def cohort_problem(self, n: int, roster_size: int) -> str | None:
        """Why a cohort of ``n`` is too small for this client, or None."""
        if n < self.min_cohort:
            return f"cohort of {n} is below this client's minimum {self.min_cohort}"
        colluders = self.assumed_colluders(roster_size)
        if colluders is None:
            return "no roster and no policy.colluders: n_C is unknown"
        if n < colluders + self.min_honest:
            return (
                f"cohort of {n} cannot hold k_min = {self.min_honest} honest inputs beside "
                f"n_C = {colluders} colluders"
            )
        return None

    def check(self, config: RoundConfig, *, roster_size: int, hybrid: bool = False) -> str | None:
        """Why this client refuses the SecAgg round ``config``, or None.

        ``hybrid``: the config is the SecAgg half of a bfv-masked round, which
        is accepted as that mode; its threshold rules are SecAgg's.
        """
        mode = mode_of(config)
        problem = self.mode_problem("bfv-masked" if hybrid else mode, config.profile)
        if problem or mode == "plain":
            return problem
        n = config.n
        problem = self.cohort_problem(n, roster_size)
        if problem:
            return problem
        colluders = self.assumed_colluders(roster_size)
        assert colluders is not None
        if mode == "secagg":
            needed = minimum_threshold(
                n, profile=config.profile, colluders=colluders, min_honest=self.min_honest
            )
        else:
            degree = config.degree
            assert degree is not None
            if degree < 2 or degree % 2:
                return f"SecAgg+ degree {degree} is not an even number of at least 2"
            if self.degrees and degree not in self.degrees:
                return f"SecAgg+ degree {degree} is not among this client's {list(self.degrees)}"
            needed = sparse_threshold(
                n,
                degree,
                profile=config.profile,
                colluders=colluders,
                min_honest=self.min_honest,
                security_bits=self.security_bits,
            )
            if needed > degree + 1:
                return (
                    f"degree {degree} is too small for n_C = {colluders} colluders "
                    f"(needs a threshold of {needed} among {degree + 1} holders)"
                )
        if config.threshold < needed:
            return f"threshold {config.threshold} is below this client's safe minimum {needed}"
        return None


def sparse_threshold(
    n: int,
    degree: int,
    *,
    profile: str,
    colluders: int,
    min_honest: int = MIN_HONEST,
    security_bits: int = SECURITY_BITS,
) -> int:
    """Safe threshold on a SecAgg+ graph of ``degree``: statistical, over k + 1 holders."""
    adversary: AdversaryClass = "semi-malicious" if profile == "active" else "curious"
    t = secure_threshold(
        n,
        degree,
        colluders=min(colluders, n),
        adversary=adversary,
        security_parameter=security_bits,
    )
    return max(t, min(degree + 1, min_honest))


def lab_policy(config: RoundConfig) -> ClientPolicy:
    """The policy the in-memory lab gives its clients for ``config``.

    One party writes both the config and the clients here, so the policy
    accepts every mode and profile and assumes the colluders
    :func:`make_config` planned for (k_min lowered to what the cohort holds).
    A daemon never does this: its policy is its own (:mod:`protocol.policy`).
    """
    sparse = config.degree is not None and config.degree < config.n - 1
    colluders = default_colluders(config.n, sparse=sparse)
    return ClientPolicy(
        modes=MODES,
        profiles=SECURE_PROFILES,
        colluders=colluders,
        min_cohort=1,
        min_honest=max(1, min(MIN_HONEST, config.threshold - colluders)),
    )


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _as_tuple(value: object, key: str) -> tuple[object, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ParameterError(f"policy.{key} must be a list")
    return tuple(value)
