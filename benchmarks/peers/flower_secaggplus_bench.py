#!/usr/bin/env python3
"""Peer benchmark: Flower (flwr) SecAgg+ cost on this machine.

Times Flower's *own* SecAgg+ code for one FedAvg round with N clients, a
d-dimensional float32 update per client, a neighbour graph of `num_shares`
nodes per client (self included, as in Flower) and a fraction of clients that
drop out after the share-keys stage.

Modes (``--mode``):

* ``stages`` (default) -- drives the four client stage functions of
  ``flwr.client.mod.secure_aggregation.secaggplus_mod`` (``_setup``,
  ``_share_keys``, ``_collect_masked_vectors``, ``_unmask``) exactly as the mod
  does, including the per-stage state round trip, and performs the server side
  with the same Flower helpers, in the same order, as
  ``SecAggPlusWorkflow`` (ring neighbour graph after a shuffle, ciphertext
  forwarding, masked-vector summation, Shamir reconstruction, mask removal,
  dequantisation, FedAvg weighting).
* ``primitives`` -- the same call sequence re-expressed with Flower's public
  primitives (``generate_key_pairs``, ``create_shares``,
  ``generate_shared_key``, ``encrypt``/``decrypt``, ``quantize``,
  ``pseudo_rand_gen``, ``combine_shares``, ``dequantize``) so that the time can
  be broken down per primitive.  Useful if a future flwr renames the private
  stage functions.
* ``fullround`` -- runs the real ``SecAggPlusWorkflow`` (server) against real
  ``ClientApp(mods=[secaggplus_mod])`` instances through an in-process
  loopback ``Grid`` (no sockets, no Ray): Flower's complete message/record
  plumbing for one round, minus transport.
* ``simulation`` -- Flower's own Simulation Runtime (``run_simulation`` with the
  Ray backend, in-memory LinkState, loopback only) running
  ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` for one round.
  Requires ``pip install "flwr[simulation]"``.

Every configuration prints exactly one JSON line on stdout.  Progress/log
messages go to stderr.

Example::

    python flower_secaggplus_bench.py --d 100000 1000000 --N 10 100
    python flower_secaggplus_bench.py --mode fullround --d 100000 --N 10
    python flower_secaggplus_bench.py --mode simulation --d 100000 --N 10
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # never phone home
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import flwr
import numpy as np
from flwr.common import (
    bytes_to_ndarray,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.crypto.shamir import (
    combine_shares,
    create_shares,
)
from flwr.common.secure_aggregation.crypto.symmetric_encryption import (
    decrypt,
    encrypt,
    generate_shared_key,
)
from flwr.common.secure_aggregation.ndarrays_arithmetic import (
    factor_combine,
    factor_extract,
    get_parameters_shape,
    parameters_addition,
    parameters_mod,
    parameters_multiply,
    parameters_subtraction,
)
from flwr.common.secure_aggregation.quantization import (
    dequantize,
    quantize,
)
from flwr.common.secure_aggregation.secaggplus_constants import Key
from flwr.common.secure_aggregation.secaggplus_utils import (
    pseudo_rand_gen,
    share_keys_plaintext_concat,
    share_keys_plaintext_separate,
)

try:  # flwr >= 1.2x moved the EC helpers to supercore
    from flwr.supercore.primitives.asymmetric import (
        bytes_to_private_key,
        bytes_to_public_key,
        generate_key_pairs,
        private_key_to_bytes,
        public_key_to_bytes,
    )
except ImportError:  # older flwr kept them next to the symmetric helpers
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import (  # type: ignore
        bytes_to_private_key,
        bytes_to_public_key,
        generate_key_pairs,
        private_key_to_bytes,
        public_key_to_bytes,
    )

MOD = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")
FLWR_VERSION = getattr(flwr, "__version__", "unknown")

# Flower's SecAggPlusWorkflow defaults
DEF_CLIP = 8.0
DEF_QRANGE = 1 << 22
DEF_MOD = 1 << 32
DEF_MAXW = 1000.0


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


class Timer:
    """Accumulating named stopwatch."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def add(self, name: str, dt: float) -> None:
        self.t[name] = self.t.get(name, 0.0) + dt

    def run(self, name: str, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        self.add(name, time.perf_counter() - t0)
        return out


# --------------------------------------------------------------------------
# Protocol parameters (mirrors SecAggPlusWorkflow.setup_stage)
# --------------------------------------------------------------------------
def resolve_graph(n: int, graph: str, num_shares: int | None, threshold: int | None):
    """Return (num_shares incl. self, threshold) the way the workflow would use them."""
    if num_shares is None:
        if graph == "full":
            num_shares = n
        else:  # sparse SecAgg+: ~2*log2(n)+1 neighbours (incl. self), odd
            num_shares = min(n, 2 * math.ceil(math.log2(max(n, 2))) + 1)
    # the workflow bumps an even share count (below n) to the next odd number
    if num_shares != n and num_shares % 2 == 0:
        num_shares += 1
    num_shares = min(num_shares, n)
    if threshold is None:
        threshold = max(2, num_shares // 2 + 1)
    return num_shares, threshold


def ring_neighbours(node_ids: list[int], num_shares: int, rng: random.Random):
    """Workflow's neighbour graph: shuffle, then +/- num_shares//2 on a ring."""
    ids = list(node_ids)
    rng.shuffle(ids)
    n = len(ids)
    half = num_shares >> 1
    return {
        nid: {ids[(i + off) % n] for off in range(-half, half + 1)} for i, nid in enumerate(ids)
    }


def make_inputs(n: int, d: int, seed: int, max_weight: float):
    """One shared base vector (client i's update = base + small shift, so RAM
    stays O(d) for any N) and a per-client weight (num_examples)."""
    rs = np.random.default_rng(seed)
    weights = {i: int(rs.integers(50, min(500, int(max_weight)) + 1)) for i in range(n)}
    base = (rs.standard_normal(d) * 0.05).astype(np.float32)
    return base, weights


def client_vector(base: np.ndarray, nid: int) -> np.ndarray:
    """Deterministic per-client float32 update (cheap to regenerate)."""
    shift = np.float32(((nid * 2654435761) % 1000) / 1000.0 - 0.5) * np.float32(0.02)
    return base + shift


def expected_average(base, weights, active, target_range, max_weight):
    """Weighted mean the workflow should return (float64 reference)."""
    num = None
    den = 0.0
    for nid in active:
        q = round(weights[nid] / max_weight * target_range)
        dq = q / target_range
        x = client_vector(base, nid).astype(np.float64) * dq
        num = x if num is None else num + x
        den += dq
    return num / den


def summarise(vals: list[float]) -> dict[str, float]:
    vals = sorted(vals)
    return {
        "median": statistics.median(vals),
        "max": vals[-1],
        "mean": sum(vals) / len(vals),
    }


# --------------------------------------------------------------------------
# Server side shared by 'stages' and 'primitives' (mirrors unmask_stage)
# --------------------------------------------------------------------------
def server_unmask(
    agg: list[np.ndarray],
    shares_by_owner: dict[int, list[bytes]],
    active: set[int],
    sampled: set[int],
    neighbours: dict[int, set[int]],
    pk1_of: dict[int, bytes],
    threshold: int,
    cfg: dict[str, Any],
    tm: Timer,
):
    masked = agg
    shapes = get_parameters_shape(masked)
    for nid in sampled:
        share_list = shares_by_owner.get(nid, [])
        if len(share_list) < threshold:
            raise RuntimeError(f"not enough shares for node {nid}")
        secret = tm.run("srv_shamir_combine_s", combine_shares, share_list)
        if nid in active:
            m = tm.run("srv_prg_s", pseudo_rand_gen, secret, cfg["mod"], shapes)
            masked = tm.run("srv_arith_s", parameters_subtraction, masked, m)
        else:
            for other in neighbours[nid] - {nid}:
                t0 = time.perf_counter()
                sk = generate_shared_key(
                    bytes_to_private_key(secret), bytes_to_public_key(pk1_of[other])
                )
                tm.add("srv_ecdh_s", time.perf_counter() - t0)
                m = tm.run("srv_prg_s", pseudo_rand_gen, sk, cfg["mod"], shapes)
                if nid > other:
                    masked = tm.run("srv_arith_s", parameters_addition, masked, m)
                else:
                    masked = tm.run("srv_arith_s", parameters_subtraction, masked, m)
    t0 = time.perf_counter()
    recon = parameters_mod(masked, cfg["mod"])
    q_total, recon = factor_extract(recon)
    inv = cfg["qrange"] / q_total
    out = dequantize(recon, cfg["clip"], cfg["qrange"])
    offset = -(len(active) - 1) * cfg["clip"]
    for v in out:
        v += offset
        v *= inv
    tm.add("srv_dequant_s", time.perf_counter() - t0)
    return out


# --------------------------------------------------------------------------
# Mode 'stages': Flower's own client stage functions
# --------------------------------------------------------------------------
def run_stages(n, d, num_shares, threshold, drop_ids, cfg, seed):
    rng = random.Random(seed)
    node_ids = list(range(1, n + 1))  # Flower node ids are non-zero ints
    base, w0 = make_inputs(n, d, seed, cfg["maxw"])
    weights = {nid: w0[i] for i, nid in enumerate(node_ids)}
    neighbours = ring_neighbours(node_ids, num_shares, rng)
    setup_cfg = {
        Key.SAMPLE_NUMBER: n,
        Key.SHARE_NUMBER: num_shares,
        Key.THRESHOLD: threshold,
        Key.CLIPPING_RANGE: cfg["clip"],
        Key.TARGET_RANGE: cfg["qrange"],
        Key.MOD_RANGE: cfg["mod"],
        Key.MAX_WEIGHT: cfg["maxw"],
    }
    per_client = {nid: Timer() for nid in node_ids}
    states: dict[int, Any] = {}
    bytes_up = {nid: 0 for nid in node_ids}
    bytes_down = {nid: 0 for nid in node_ids}

    def roundtrip(st):
        # the mod persists its state in a ConfigRecord between stages
        return MOD.SecAggPlusState(**st.to_dict())

    # ---- stage 0: setup
    pks: dict[int, tuple[bytes, bytes]] = {}
    for nid in node_ids:
        st = MOD.SecAggPlusState()
        st.nid = nid
        t0 = time.perf_counter()
        res = MOD._setup(st, dict(setup_cfg))
        states[nid] = roundtrip(st)
        per_client[nid].add("setup_s", time.perf_counter() - t0)
        pks[nid] = (res[Key.PUBLIC_KEY_1], res[Key.PUBLIC_KEY_2])
        bytes_up[nid] += len(pks[nid][0]) + len(pks[nid][1])
    active = set(node_ids)
    sampled = set(node_ids)

    # ---- stage 1: share keys
    fwd_ct = {nid: [] for nid in node_ids}
    fwd_src = {nid: [] for nid in node_ids}
    for nid in node_ids:
        conf = {str(j): [pks[j][0], pks[j][1]] for j in neighbours[nid] & active}
        bytes_down[nid] += sum(len(a) + len(b) for a, b in conf.values())
        st = states[nid]
        t0 = time.perf_counter()
        res = MOD._share_keys(st, conf)
        states[nid] = roundtrip(st)
        per_client[nid].add("share_keys_s", time.perf_counter() - t0)
        for dst, ct in zip(res[Key.DESTINATION_LIST], res[Key.CIPHERTEXT_LIST], strict=True):
            fwd_ct[dst].append(ct)
            fwd_src[dst].append(nid)
            bytes_up[nid] += len(ct)

    # ---- stage 2: collect masked vectors (dropouts happen here)
    srv = Timer()
    agg = None
    masked_bytes = {}
    for nid in node_ids:
        if nid in drop_ids:
            continue
        conf = {Key.CIPHERTEXT_LIST: fwd_ct[nid], Key.SOURCE_LIST: fwd_src[nid]}
        bytes_down[nid] += sum(len(c) for c in fwd_ct[nid])
        params = ndarrays_to_parameters([client_vector(base, nid)])
        st = states[nid]
        t0 = time.perf_counter()
        res = MOD._collect_masked_vectors(st, conf, weights[nid], params)
        states[nid] = roundtrip(st)
        per_client[nid].add("collect_masked_vectors_s", time.perf_counter() - t0)
        blobs = res[Key.MASKED_PARAMETERS]
        masked_bytes[nid] = sum(len(b) for b in blobs)
        bytes_up[nid] += masked_bytes[nid]
        # server: deserialize and accumulate as replies arrive
        t0 = time.perf_counter()
        vec = [bytes_to_ndarray(b) for b in blobs]
        agg = vec if agg is None else parameters_addition(agg, vec)
        srv.add("srv_sum_s", time.perf_counter() - t0)
    active = active - set(drop_ids)
    t0 = time.perf_counter()
    agg = parameters_mod(agg, cfg["mod"])
    srv.add("srv_sum_s", time.perf_counter() - t0)

    # ---- stage 3: unmask
    dead = sampled - active
    shares_by_owner: dict[int, list[bytes]] = {nid: [] for nid in sampled}
    for nid in sorted(active):
        conf = {
            Key.ACTIVE_NODE_ID_LIST: list(neighbours[nid] & active),
            Key.DEAD_NODE_ID_LIST: list(neighbours[nid] & dead),
        }
        st = states[nid]
        t0 = time.perf_counter()
        res = MOD._unmask(st, conf)
        per_client[nid].add("unmask_s", time.perf_counter() - t0)
        for owner, share in zip(res[Key.NODE_ID_LIST], res[Key.SHARE_LIST], strict=True):
            shares_by_owner[owner].append(share)
            bytes_up[nid] += len(share)
    t0 = time.perf_counter()
    out = server_unmask(
        agg,
        shares_by_owner,
        active,
        sampled,
        neighbours,
        {j: pks[j][0] for j in node_ids},
        threshold,
        cfg,
        srv,
    )
    srv.add("srv_unmask_total_s", time.perf_counter() - t0)
    ref = expected_average(base, weights, active, cfg["qrange"], cfg["maxw"])
    err = float(np.max(np.abs(out[0].astype(np.float64) - ref)))
    return per_client, srv, bytes_up, bytes_down, masked_bytes, active, err


# --------------------------------------------------------------------------
# Mode 'primitives': same sequence, per-primitive breakdown
# --------------------------------------------------------------------------
def run_primitives(n, d, num_shares, threshold, drop_ids, cfg, seed):
    rng = random.Random(seed)
    node_ids = list(range(1, n + 1))
    base, w0 = make_inputs(n, d, seed, cfg["maxw"])
    weights = {nid: w0[i] for i, nid in enumerate(node_ids)}
    neighbours = ring_neighbours(node_ids, num_shares, rng)
    per_client = {nid: Timer() for nid in node_ids}
    bytes_up = {nid: 0 for nid in node_ids}
    bytes_down = {nid: 0 for nid in node_ids}
    keys = {}
    # stage 0
    for nid in node_ids:
        tm = per_client[nid]
        t0 = time.perf_counter()
        sk1, pk1 = generate_key_pairs()
        sk2, pk2 = generate_key_pairs()
        keys[nid] = {
            "sk1": private_key_to_bytes(sk1),
            "pk1": public_key_to_bytes(pk1),
            "sk2": private_key_to_bytes(sk2),
            "pk2": public_key_to_bytes(pk2),
        }
        tm.add("keygen_s", time.perf_counter() - t0)
        bytes_up[nid] += len(keys[nid]["pk1"]) + len(keys[nid]["pk2"])
    # stage 1
    ss2: dict[int, dict[int, bytes]] = {nid: {} for nid in node_ids}
    own_shares = {}
    seeds = {}
    fwd = {nid: [] for nid in node_ids}
    for nid in node_ids:
        tm = per_client[nid]
        nb = sorted(neighbours[nid])  # dict insertion order in Flower; any order works
        bytes_down[nid] += sum(len(keys[j]["pk1"]) + len(keys[j]["pk2"]) for j in nb)
        seeds[nid] = os.urandom(32)
        b_sh = tm.run("shamir_split_s", create_shares, seeds[nid], threshold, num_shares)
        s_sh = tm.run("shamir_split_s", create_shares, keys[nid]["sk1"], threshold, num_shares)
        own_shares[nid] = {"b": {}, "s": {}}
        for idx, j in enumerate(nb):
            if j == nid:
                own_shares[nid]["b"][nid] = b_sh[idx]
                own_shares[nid]["s"][nid] = s_sh[idx]
                continue
            t0 = time.perf_counter()
            k = generate_shared_key(
                bytes_to_private_key(keys[nid]["sk2"]),
                bytes_to_public_key(keys[j]["pk2"]),
            )
            tm.add("ecdh_s", time.perf_counter() - t0)
            ss2[nid][j] = k
            pt = share_keys_plaintext_concat(nid, j, b_sh[idx], s_sh[idx])
            ct = tm.run("share_encrypt_s", encrypt, k, pt)
            fwd[j].append((nid, ct))
            bytes_up[nid] += len(ct)
    # stage 2
    srv = Timer()
    agg = None
    masked_bytes = {}
    for nid in node_ids:
        if nid in drop_ids:
            continue
        tm = per_client[nid]
        avail = []
        for src, ct in fwd[nid]:
            bytes_down[nid] += len(ct)
            pt = tm.run("share_decrypt_s", decrypt, ss2[nid][src], ct)
            s, dst, b_share, s_share = share_keys_plaintext_separate(pt)
            assert s == src and dst == nid
            own_shares[nid]["b"][src] = b_share
            own_shares[nid]["s"][src] = s_share
            avail.append(src)
        x = [client_vector(base, nid)]
        t0 = time.perf_counter()
        ratio = weights[nid] / cfg["maxw"]
        q_ratio = round(ratio * cfg["qrange"])
        x = parameters_multiply(x, q_ratio / cfg["qrange"])
        q = quantize(x, cfg["clip"], cfg["qrange"])
        q = factor_combine(q_ratio, q)
        tm.add("quantize_s", time.perf_counter() - t0)
        shapes = [a.shape for a in q]
        m = tm.run("prg_s", pseudo_rand_gen, seeds[nid], cfg["mod"], shapes)
        q = tm.run("mask_arith_s", parameters_addition, q, m)
        for j in avail:
            t0 = time.perf_counter()
            k = generate_shared_key(
                bytes_to_private_key(keys[nid]["sk1"]),
                bytes_to_public_key(keys[j]["pk1"]),
            )
            tm.add("ecdh_s", time.perf_counter() - t0)
            m = tm.run("prg_s", pseudo_rand_gen, k, cfg["mod"], shapes)
            if nid > j:
                q = tm.run("mask_arith_s", parameters_addition, q, m)
            else:
                q = tm.run("mask_arith_s", parameters_subtraction, q, m)
        q = tm.run("mask_arith_s", parameters_mod, q, cfg["mod"])
        blobs = tm.run("serialize_s", lambda arrs: [ndarray_to_bytes(a) for a in arrs], q)
        masked_bytes[nid] = sum(len(b) for b in blobs)
        bytes_up[nid] += masked_bytes[nid]
        t0 = time.perf_counter()
        vec = [bytes_to_ndarray(b) for b in blobs]
        agg = vec if agg is None else parameters_addition(agg, vec)
        srv.add("srv_sum_s", time.perf_counter() - t0)
    sampled = set(node_ids)
    active = sampled - set(drop_ids)
    dead = sampled - active
    t0 = time.perf_counter()
    agg = parameters_mod(agg, cfg["mod"])
    srv.add("srv_sum_s", time.perf_counter() - t0)
    # stage 3
    shares_by_owner: dict[int, list[bytes]] = {nid: [] for nid in sampled}
    for nid in sorted(active):
        t0 = time.perf_counter()
        for j in neighbours[nid] & active:
            shares_by_owner[j].append(own_shares[nid]["b"][j])
        for j in neighbours[nid] & dead:
            shares_by_owner[j].append(own_shares[nid]["s"][j])
        per_client[nid].add("unmask_s", time.perf_counter() - t0)
    for nid in active:
        for j in neighbours[nid] & active:
            bytes_up[nid] += len(own_shares[nid]["b"][j])
        for j in neighbours[nid] & dead:
            bytes_up[nid] += len(own_shares[nid]["s"][j])
    t0 = time.perf_counter()
    out = server_unmask(
        agg,
        shares_by_owner,
        active,
        sampled,
        neighbours,
        {j: keys[j]["pk1"] for j in node_ids},
        threshold,
        cfg,
        srv,
    )
    srv.add("srv_unmask_total_s", time.perf_counter() - t0)
    ref = expected_average(base, weights, active, cfg["qrange"], cfg["maxw"])
    err = float(np.max(np.abs(out[0].astype(np.float64) - ref)))
    return per_client, srv, bytes_up, bytes_down, masked_bytes, active, err


# --------------------------------------------------------------------------
# Mode 'fullround': real SecAggPlusWorkflow + real ClientApp, loopback Grid
# --------------------------------------------------------------------------
def _build_apps(d, n, seed, cfg, drop_ids, sleep_dropped=False):
    from flwr.client import ClientApp, NumPyClient
    from flwr.client.mod import secaggplus_mod

    base, w0 = make_inputs(n, d, seed, cfg["maxw"])

    class BenchClient(NumPyClient):
        def __init__(self, pid: int):
            self.pid = pid

        def fit(self, parameters, config):  # no training: fixed update
            return [client_vector(base, self.pid)], int(w0[self.pid % n]), {}

    def client_fn(context):
        pid = int(context.node_config.get("partition-id", context.node_id % n))
        return BenchClient(pid).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod]), base, w0


def run_fullround(
    n, d, num_shares, threshold, drop_ids, cfg, seed, drop_stage="collect_masked_vectors"
):
    import uuid

    import flwr.compat.common.recorddict_compat as compat
    from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
    from flwr.server import ServerConfig
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WKey
    from flwr.serverapp.grid import Grid

    client_app, base, w0 = _build_apps(d, n, seed, cfg, drop_ids)
    node_ids = list(range(1, n + 1))
    node_ctx = {
        nid: Context(
            run_id=1,
            node_id=nid,
            node_config={"partition-id": nid - 1, "num-partitions": n},
            state=RecordDict(),
            run_config={},
        )
        for nid in node_ids
    }
    drop_nids = {nid for nid in node_ids if (nid - 1) in drop_ids}
    stats = {
        "client_s": 0.0,
        "client_calls": 0,
        "bytes_up": 0,
        "bytes_down": 0,
        "serde_s": 0.0,
        "client_errors": 0,
        "last_error": None,
    }
    order = ["setup", "share_keys", "collect_masked_vectors", "unmask"]
    dropped_from = set(order[order.index(drop_stage) :])
    from flwr.common.serde import message_from_proto, message_to_proto

    def over_the_wire(msg, direction):
        """Emulate transport: protobuf round trip (as SuperLink/SuperNode do)."""
        t0 = time.perf_counter()
        proto = message_to_proto(msg)
        size = proto.ByteSize()
        blob = proto.SerializeToString()
        back = message_from_proto(type(proto).FromString(blob))
        stats["serde_s"] += time.perf_counter() - t0
        stats[direction] += size
        return back

    class LoopbackGrid(Grid):
        def set_run(self, run):
            self._run = run

        @property
        def run(self):
            return getattr(self, "_run", None)

        def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
            return Message(
                content=content,
                dst_node_id=dst_node_id,
                message_type=message_type,
                group_id=group_id,
                ttl=ttl,
            )

        def get_node_ids(self):
            return list(node_ids)

        def push_messages(self, messages):
            raise NotImplementedError

        def pull_messages(self, message_ids):
            raise NotImplementedError

        def send_and_receive(self, messages, *, timeout=None):
            replies = []
            for msg in messages:
                # the SuperLink would assign an id; Metadata exposes no setter
                msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
                nid = msg.metadata.dst_node_id
                stage = None
                if RECORD_KEY_CONFIGS in msg.content.config_records:
                    stage = msg.content.config_records[RECORD_KEY_CONFIGS].get("stage")
                if nid in drop_nids and stage in dropped_from:
                    continue  # dropped client never answers (workflow sees a timeout)
                inbound = over_the_wire(msg, "bytes_down")
                t0 = time.perf_counter()
                try:
                    rep = client_app(inbound, node_ctx[nid])
                except Exception as exc:  # a SuperNode turns this into an error reply
                    stats["client_errors"] += 1
                    stats["last_error"] = f"{type(exc).__name__}: {exc}"[:200]
                    rep = Message(Error(code=0, reason=str(exc)), reply_to=inbound)
                stats["client_s"] += time.perf_counter() - t0
                stats["client_calls"] += 1
                replies.append(over_the_wire(rep, "bytes_up"))
            return replies

    try:  # flwr >= 1.2x: instruction messages read the run/task identity here
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id = 1
        TaskIdentity.node_id = 0
        TaskIdentity.task_id = 1
    except ImportError:
        pass
    grid = LoopbackGrid()
    cm = SimpleClientManager()
    for nid in node_ids:
        cm.register(GridClientProxy(nid, grid, 1))
    init = ndarrays_to_parameters([np.zeros(d, dtype=np.float32)])
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=n,
        min_available_clients=n,
        initial_parameters=init,
    )
    ctx = LegacyContext(
        context=Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
        config=ServerConfig(num_rounds=1),
        strategy=strategy,
        client_manager=cm,
    )
    ctx.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(init, True)
    ctx.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
        {WKey.CURRENT_ROUND: 1, WKey.START_TIME: time.time()}
    )
    wf = SecAggPlusWorkflow(
        num_shares=num_shares,
        reconstruction_threshold=threshold,
        max_weight=cfg["maxw"],
        clipping_range=cfg["clip"],
        quantization_range=cfg["qrange"],
        modulus_range=cfg["mod"],
    )
    t0 = time.perf_counter()
    wf(grid, ctx)
    total = time.perf_counter() - t0
    arrs = ctx.state.array_records[MAIN_PARAMS_RECORD]
    out = compat.arrayrecord_to_parameters(arrs, keep_input=True)
    vec = parameters_to_ndarrays(out)[0]
    stats["aggregated"] = bool(np.any(vec != 0))  # still the zero init => halted
    # reference: survivors' weighted mean (ids map nid -> partition nid-1)
    weights = {nid: int(w0[(nid - 1) % n]) for nid in node_ids}
    # a client that drops only in the unmask stage has already been summed
    excluded = drop_nids if drop_stage != "unmask" else set()
    active = [nid for nid in node_ids if nid not in excluded]
    num = 0.0
    den = 0.0
    for nid in active:
        q = round(weights[nid] / cfg["maxw"] * cfg["qrange"]) / cfg["qrange"]
        num = num + client_vector(base, nid - 1).astype(np.float64) * q
        den += q
    err = float(np.max(np.abs(vec.astype(np.float64) - num / den)))
    if not stats["aggregated"]:
        err = None
    return total, stats, err, len(active)


# --------------------------------------------------------------------------
# Mode 'simulation': Flower Simulation Runtime (Ray backend), loopback only
# --------------------------------------------------------------------------
_SIM_RESULT: dict[str, Any] = {}


def run_simulation_mode(n, d, num_shares, threshold, cfg, seed, cpus):
    from flwr.app import Context
    from flwr.server import LegacyContext, ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.simulation import run_simulation

    client_app, base, w0 = _build_apps(d, n, seed, cfg, set())
    server_app = ServerApp()

    @server_app.main()
    def _main(grid, context: Context) -> None:
        init = ndarrays_to_parameters([np.zeros(d, dtype=np.float32)])
        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=n,
            min_available_clients=n,
            initial_parameters=init,
        )
        lctx = LegacyContext(context=context, config=ServerConfig(num_rounds=1), strategy=strategy)
        wf = DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(
                num_shares=num_shares,
                reconstruction_threshold=threshold,
                max_weight=cfg["maxw"],
                clipping_range=cfg["clip"],
                quantization_range=cfg["qrange"],
                modulus_range=cfg["mod"],
            )
        )
        t0 = time.perf_counter()
        wf(grid, lctx)
        _SIM_RESULT["round_incl_node_wait_s"] = time.perf_counter() - t0
        import flwr.compat.common.recorddict_compat as compat
        from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

        p = compat.arrayrecord_to_parameters(lctx.state.array_records[MAIN_PARAMS_RECORD], True)
        _SIM_RESULT["vec"] = parameters_to_ndarrays(p)[0]

    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "log_to_driver": False},
    }
    t0 = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=n,
        backend_config=backend_config,
    )
    wall = time.perf_counter() - t0
    err = None
    if "vec" in _SIM_RESULT:
        # partition-id of supernode i is i (0..n-1) in the simulation engine
        num = 0.0
        den = 0.0
        for pid in range(n):
            q = round(int(w0[pid]) / cfg["maxw"] * cfg["qrange"]) / cfg["qrange"]
            num = num + client_vector(base, pid).astype(np.float64) * q
            den += q
        err = float(np.max(np.abs(_SIM_RESULT["vec"].astype(np.float64) - num / den)))
    return wall, _SIM_RESULT.get("round_incl_node_wait_s"), err


# --------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--mode", choices=["stages", "primitives", "fullround", "simulation"], default="stages"
    )
    ap.add_argument("--d", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--N", type=int, nargs="+", default=[10, 100])
    ap.add_argument(
        "--graph",
        nargs="+",
        choices=["sparse", "full"],
        default=["sparse"],
        help="neighbour graph(s): sparse = SecAgg+ ring with ~2log2(N)+1 "
        "members, full = complete graph (original SecAgg)",
    )
    ap.add_argument(
        "--num-shares",
        type=int,
        default=None,
        help="override: neighbourhood size incl. self (Flower semantics)",
    )
    ap.add_argument("--threshold", type=int, default=None)
    ap.add_argument(
        "--dropout",
        type=float,
        default=0.1,
        help="fraction of clients silent in the collect-masked-vectors stage",
    )
    ap.add_argument(
        "--drop-stage",
        default="collect_masked_vectors",
        choices=["setup", "share_keys", "collect_masked_vectors", "unmask"],
        help="--mode fullround only: first stage the dropped clients miss",
    )
    ap.add_argument("--clip", type=float, default=DEF_CLIP)
    ap.add_argument("--qrange", type=int, default=DEF_QRANGE)
    ap.add_argument("--modulus", type=int, default=DEF_MOD)
    ap.add_argument("--max-weight", type=float, default=DEF_MAXW)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--cpus", type=int, default=os.cpu_count() or 1, help="Ray CPUs for --mode simulation"
    )
    args = ap.parse_args()
    cfg = {"clip": args.clip, "qrange": args.qrange, "mod": args.modulus, "maxw": args.max_weight}

    for d in args.d:
        for n in args.N:
            for graph in args.graph:
                num_shares, thr = resolve_graph(n, graph, args.num_shares, args.threshold)
                n_drop = math.floor(args.dropout * n)
                drop_rng = random.Random(args.seed + 7)
                drop_idx = set(drop_rng.sample(range(n), n_drop)) if n_drop else set()
                row: dict[str, Any] = {
                    "peer": "flwr",
                    "version": FLWR_VERSION,
                    "mode": args.mode,
                    "d": d,
                    "N": n,
                    "graph": graph,
                    "num_shares": num_shares,
                    "k": num_shares - 1,
                    "threshold": thr,
                    "clipping_range": cfg["clip"],
                    "quantization_range": cfg["qrange"],
                    "modulus_range": cfg["mod"],
                    "python": sys.version.split()[0],
                    "cpus": os.cpu_count(),
                }
                if args.mode == "simulation":
                    n_drop, drop_idx = 0, set()  # no dropout injection in the runtime
                log(
                    f"[flwr {args.mode}] d={d} N={n} graph={graph} "
                    f"num_shares={num_shares} t={thr} drop={n_drop}"
                )
                t_wall = time.perf_counter()
                if args.mode in ("stages", "primitives"):
                    fn = run_stages if args.mode == "stages" else run_primitives
                    drop_ids = {i + 1 for i in drop_idx}
                    per_client, srv, b_up, b_down, mb, active, err = fn(
                        n, d, num_shares, thr, drop_ids, cfg, args.seed
                    )
                    surv = sorted(active)
                    totals = [sum(per_client[c].t.values()) for c in surv]
                    row["dropouts"] = n_drop
                    row["client_mask_s"] = statistics.median(totals)
                    row["client_mask_s_max"] = max(totals)
                    keys = sorted({k for c in surv for k in per_client[c].t})
                    row["client_breakdown_s"] = {
                        k: round(statistics.median(per_client[c].t.get(k, 0.0) for c in surv), 6)
                        for k in keys
                    }
                    row["server_sum_s"] = srv.t.get("srv_sum_s", 0.0)
                    row["server_unmask_s"] = srv.t.get("srv_unmask_total_s", 0.0)
                    row["server_total_s"] = row["server_sum_s"] + row["server_unmask_s"]
                    row["server_breakdown_s"] = {k: round(v, 6) for k, v in srv.t.items()}
                    row["bytes_per_client"] = int(statistics.median(mb[c] for c in surv))
                    row["bytes_up_total_per_client"] = int(statistics.median(b_up[c] for c in surv))
                    row["bytes_down_protocol_per_client"] = int(
                        statistics.median(b_down[c] for c in surv)
                    )
                    row["expansion_vs_fp32"] = round(row["bytes_up_total_per_client"] / (4 * d), 4)
                    row["max_abs_err"] = err
                elif args.mode == "fullround":
                    total, stats, err, _n_act = run_fullround(
                        n, d, num_shares, thr, drop_idx, cfg, args.seed, args.drop_stage
                    )
                    row["dropouts"] = n_drop
                    row["drop_stage"] = args.drop_stage
                    row["aggregation_completed"] = stats["aggregated"]
                    row["client_errors"] = stats["client_errors"]
                    row["last_client_error"] = stats["last_error"]
                    row["round_s"] = total
                    row["clients_cumulative_s"] = stats["client_s"]
                    row["client_mask_s"] = stats["client_s"] / n  # avg per client, all stages
                    row["serde_s"] = stats["serde_s"]
                    row["server_s"] = total - stats["client_s"] - stats["serde_s"]
                    row["bytes_up_avg_per_client"] = int(stats["bytes_up"] / max(n, 1))
                    row["bytes_down_avg_per_client"] = int(stats["bytes_down"] / max(n, 1))
                    row["max_abs_err"] = err
                else:
                    wall, rnd, err = run_simulation_mode(
                        n, d, num_shares, thr, cfg, args.seed, args.cpus
                    )
                    row["dropouts"] = 0
                    row["simulation_wall_s"] = wall
                    row["round_s"] = rnd
                    row["max_abs_err"] = err
                row["wall_s"] = time.perf_counter() - t_wall
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
