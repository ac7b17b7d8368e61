"""The mode registry: every way this system aggregates a round, one entry each.

A mode (plain, secagg, secagg+, ckks, bfv, bfv-masked) is one :class:`Mode`:
its config type and builder (:mod:`protocol.build`), its client and server
machines, what a client's policy must allow for it (:mod:`protocol.policy`
holds the rules; the facet only names them) and the wire messages that carry
it (by name: ``protocol`` cannot import the generated code; the codec maps
them). Hosts read the registry instead of keeping their own lists: CLI
choices (:func:`names` with the host's tag), the aggregator's settings, the
benchmark suite and its plots, and the one in-process round runner
(:mod:`protocol.runner`).

Adding a mode: its own module (config, messages, machines, an in-memory
runner), one entry here, and its wire message (proto + codec).

The machines are imported when a factory is called, so reading the registry
never loads TenSEAL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocol import build
from protocol.config import SECURE_PROFILES, Profile, RoundConfig
from protocol.graph import densest_harary_degree
from protocol.he_messages import HEConfig, HEMaskedConfig
from protocol.policy import MODES as POLICY_MODES
from protocol.policy import OPT_IN_WARNINGS, SAFE_MODES, ClientPolicy
from secagg.errors import ParameterError

if TYPE_CHECKING:
    from secagg.primitives.signing import SigningKey
    from secagg.rng import RandomSource

ModeConfig = RoundConfig | HEConfig | HEMaskedConfig
#: client(id, rng=, signing_key=, roster=, policy=) → a client machine.
ClientFactory = Callable[..., Any]
#: server(config, roster=) → a server machine.
ServerFactory = Callable[..., Any]
#: run(entry, config, inputs) → a protocol.runner.RoundReport: the mode's in-memory round.
RoundRunner = Callable[..., Any]

#: The hosts that read the registry, by tag (see :func:`names`).
HOSTS = ("simulate", "experiment", "demo", "dp", "service", "bench-round", "suite")


@dataclass(frozen=True, slots=True)
class PolicyFacet:
    """What a client's :class:`protocol.policy.ClientPolicy` must allow for a mode.

    ``opt_in``: the mode is outside the policy's safe default
    (:data:`protocol.policy.SAFE_MODES`) and ``warning`` says what it gives
    up. ``profiles``: the SecAgg profiles the mode runs (empty: none applies).
    """

    opt_in: bool
    warning: str | None
    profiles: tuple[Profile, ...]


@dataclass(frozen=True, slots=True)
class Wire:
    """The protobuf messages (secagg.v1) that carry a mode: start, config and upload."""

    start: str
    config: str
    upload: str


@dataclass(frozen=True, slots=True)
class Mode:
    """One aggregation mode (see the module docstring)."""

    name: str
    summary: str
    config_type: type
    builder: Callable[..., ModeConfig]
    client: ClientFactory
    server: ServerFactory
    #: The in-memory round (an adapter in :mod:`protocol.runner` around the mode's own runner).
    run: RoundRunner
    wire: Wire
    hosts: frozenset[str]
    #: Phases a client can drop at in the in-memory runner, in order.
    drop_phases: tuple[str, ...]
    #: The sum is exact (integers), not approximate (CKKS, plain floats).
    exact: bool

    @property
    def policy(self) -> PolicyFacet:
        """The policy facet, read from :mod:`protocol.policy` (never restated here)."""
        profiles: tuple[Profile, ...] = ()
        if self.name in ("secagg", "secagg+"):
            profiles = SECURE_PROFILES
        elif self.name == "bfv-masked":
            profiles = ("active",)
        return PolicyFacet(
            opt_in=self.name not in SAFE_MODES,
            warning=OPT_IN_WARNINGS.get(self.name),
            profiles=profiles,
        )

    def build(self, **options: Any) -> ModeConfig:
        """This mode's config (``clients``, ``dim`` and the builder's options)."""
        return self.builder(**options)

    def policy_problem(self, policy: ClientPolicy, profile: str | None = None) -> str | None:
        """Why ``policy`` refuses this mode, or None (:meth:`ClientPolicy.mode_problem`)."""
        return policy.mode_problem(self.name, profile)


# ---------------------------------------------------------------- builders and machines


def _plain_config(**options: Any) -> RoundConfig:
    return build.make_config(profile="plain", **options)


def _secagg_config(**options: Any) -> RoundConfig:
    return build.make_config(degree=None, **options)


def _secaggplus_config(*, clients: int, degree: int | None = None, **options: Any) -> RoundConfig:
    return build.make_config(
        clients=clients, degree=degree or densest_harary_degree(clients), **options
    )


def _ckks_config(**options: Any) -> HEConfig:
    return build.he_config(scheme="ckks", **options)


def _bfv_config(**options: Any) -> HEConfig:
    return build.he_config(scheme="bfv", **options)


def _plain_client(
    cid: int,
    *,
    rng: RandomSource,
    signing_key: SigningKey,
    roster: Mapping[int, bytes],
    policy: ClientPolicy | None = None,
) -> Any:
    from protocol.plain import PlainClient

    return PlainClient(cid, policy=policy)


def _plain_server(config: RoundConfig, *, roster: Mapping[int, bytes]) -> Any:
    from protocol.plain import PlainServer

    return PlainServer(config)


def _secagg_client(
    cid: int,
    *,
    rng: RandomSource,
    signing_key: SigningKey,
    roster: Mapping[int, bytes],
    policy: ClientPolicy | None = None,
) -> Any:
    from protocol.client import ClientMachine

    return ClientMachine(cid, rng=rng, signing_key=signing_key, roster=roster, policy=policy)


def _secagg_server(config: RoundConfig, *, roster: Mapping[int, bytes]) -> Any:
    from protocol.server import ServerMachine

    return ServerMachine(config, roster=roster)


def _he_client(
    cid: int,
    *,
    rng: RandomSource,
    signing_key: SigningKey,
    roster: Mapping[int, bytes],
    policy: ClientPolicy | None = None,
) -> Any:
    from protocol.he_flow import HEClientMachine

    return HEClientMachine(cid, rng=rng, signing_key=signing_key, roster=roster)


def _he_server(config: HEConfig, *, roster: Mapping[int, bytes]) -> Any:
    from protocol.he_flow import HEServerMachine

    return HEServerMachine(config, roster=roster)


def _he_masked_client(
    cid: int,
    *,
    rng: RandomSource,
    signing_key: SigningKey,
    roster: Mapping[int, bytes],
    policy: ClientPolicy | None = None,
) -> Any:
    from protocol.he_masked import HEMaskedClientMachine

    return HEMaskedClientMachine(
        cid, rng=rng, signing_key=signing_key, roster=roster, policy=policy
    )


def _he_masked_server(config: HEMaskedConfig, *, roster: Mapping[int, bytes]) -> Any:
    from protocol.he_masked import HEMaskedServerMachine

    return HEMaskedServerMachine(config, roster=roster)


def _run_secagg(entry: Mode, config: RoundConfig, inputs: Any) -> Any:
    from protocol.runner import run_secagg

    return run_secagg(entry, config, inputs)


def _run_plain(entry: Mode, config: RoundConfig, inputs: Any) -> Any:
    from protocol.runner import run_plain

    return run_plain(entry, config, inputs)


def _run_he(entry: Mode, config: HEConfig, inputs: Any) -> Any:
    from protocol.runner import run_he

    return run_he(entry, config, inputs)


def _run_he_masked(entry: Mode, config: HEMaskedConfig, inputs: Any) -> Any:
    from protocol.runner import run_he_masked

    return run_he_masked(entry, config, inputs)


_SECAGG_PHASES = ("advertise", "graph", "share", "masked", "consistency", "unmask")
_SECAGG_WIRE = Wire(start="RoundStart", config="RoundConfig", upload="MaskedInput")
_HE_WIRE = Wire(start="HEStart", config="HEConfig", upload="HEUpload")
_ALL_LAB = frozenset({"simulate", "experiment", "bench-round", "suite"})

REGISTRY: tuple[Mode, ...] = (
    Mode(
        name="plain",
        summary="FedAvg with updates in the clear: the baseline, protects nothing",
        config_type=RoundConfig,
        builder=_plain_config,
        client=_plain_client,
        server=_plain_server,
        run=_run_plain,
        wire=_SECAGG_WIRE,
        hosts=_ALL_LAB | {"demo", "dp"},
        drop_phases=("masked",),
        exact=False,
    ),
    Mode(
        name="secagg",
        summary="SecAgg (Bonawitz et al. 2017): pairwise masks on the complete graph",
        config_type=RoundConfig,
        builder=_secagg_config,
        client=_secagg_client,
        server=_secagg_server,
        run=_run_secagg,
        wire=_SECAGG_WIRE,
        hosts=_ALL_LAB | {"demo", "dp", "service"},
        drop_phases=_SECAGG_PHASES,
        exact=True,
    ),
    Mode(
        name="secagg+",
        summary="SecAgg+ (Bell et al. 2020): pairwise masks on a sparse Harary graph",
        config_type=RoundConfig,
        builder=_secaggplus_config,
        client=_secagg_client,
        server=_secagg_server,
        run=_run_secagg,
        wire=_SECAGG_WIRE,
        hosts=_ALL_LAB | {"demo", "dp"},
        drop_phases=_SECAGG_PHASES,
        exact=True,
    ),
    Mode(
        name="ckks",
        summary="CKKS: the aggregator adds ciphertexts; every member holds the key",
        config_type=HEConfig,
        builder=_ckks_config,
        client=_he_client,
        server=_he_server,
        run=_run_he,
        wire=_HE_WIRE,
        hosts=_ALL_LAB | {"service"},
        drop_phases=("join", "upload"),
        exact=False,
    ),
    Mode(
        name="bfv",
        summary="BFV: exact integer sums of quantised updates; every member holds the key",
        config_type=HEConfig,
        builder=_bfv_config,
        client=_he_client,
        server=_he_server,
        run=_run_he,
        wire=_HE_WIRE,
        hosts=frozenset({"simulate"}),
        drop_phases=("join", "upload"),
        exact=True,
    ),
    Mode(
        name="bfv-masked",
        summary="SecAgg's masks inside BFV plaintexts: no single member can read an upload",
        config_type=HEMaskedConfig,
        builder=build.he_masked_config,
        client=_he_masked_client,
        server=_he_masked_server,
        run=_run_he_masked,
        wire=Wire(start="HEMaskedStart", config="HEMaskedConfig", upload="MaskedInput"),
        hosts=_ALL_LAB | {"service"},
        drop_phases=("advertise", "share", "masked", "consistency", "unmask"),
        exact=True,
    ),
)

_BY_NAME: dict[str, Mode] = {m.name: m for m in REGISTRY}
#: Old names still accepted where users' scripts pass them (``secagg simulate --mode mask``).
ALIASES: dict[str, str] = {"mask": "secagg"}

if tuple(_BY_NAME) != POLICY_MODES:  # the policy's Literal and the registry name the same modes
    raise AssertionError(f"registry {tuple(_BY_NAME)} differs from policy {POLICY_MODES}")


def mode(name: str | Mode) -> Mode:
    """The registry entry for ``name`` (or an alias); a clear error naming the modes otherwise."""
    if isinstance(name, Mode):
        return name
    entry = _BY_NAME.get(ALIASES.get(name, name))
    if entry is None:
        raise ParameterError(f"unknown mode {name!r} (known: {', '.join(_BY_NAME)})")
    return entry


def names(host: str | None = None) -> tuple[str, ...]:
    """Every mode's name in registry order, or those ``host`` runs (one of :data:`HOSTS`)."""
    if host is None:
        return tuple(_BY_NAME)
    if host not in HOSTS:
        raise ParameterError(f"unknown host {host!r} (known: {', '.join(HOSTS)})")
    return tuple(m.name for m in REGISTRY if host in m.hosts)


def opt_ins() -> tuple[str, ...]:
    """Modes a client joins only when its policy opts in (``secagg client --allow``)."""
    return tuple(m.name for m in REGISTRY if m.policy.opt_in)


def mode_of_config(config: ModeConfig) -> Mode:
    """The mode a config amounts to (a RoundConfig's profile and degree decide among three)."""
    if isinstance(config, HEMaskedConfig):
        return mode("bfv-masked")
    if isinstance(config, HEConfig):
        return mode(config.scheme)
    from protocol.policy import mode_of

    return mode(mode_of(config))


def build_config(name: str | Mode, **options: Any) -> ModeConfig:
    """``mode(name)``'s config from ``clients``, ``dim`` and the builder's options."""
    return mode(name).build(**options)
