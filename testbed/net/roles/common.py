"""What every role process shares: bench addresses, the model fingerprint, the node order,
agent configs, and the RESULT-carried command names of the role protocol.

Role protocol (on top of `testbed.net.schema`): the controller drives everything with
requests; commands without a dedicated message type travel as RESULT with ``info["op"]``:

* ``forward`` (to nodes; tensor = input ids int64 ``(batch, tokens)``; info ``reset``,
  ``use_cache``, ``last_only``) -> the node starts a forward pass and replies with its first
  PARTIAL (controller-side all-reduce) or, when the all-reduce is node-to-node (gloo), a RESULT
  ``done`` carrying the logits (output node only).
* AGGREGATE (to nodes) -> the node continues the layer and replies with the next PARTIAL or
  the final RESULT ``done``.
* ``aircomp_tx`` (to nodes; tensor = B_n ``(N_t, L)``) -> transmit the last partial over the
  air at ``start``, then declare ``tx_until``; reply RESULT.
* ``aircomp_rx`` (to the receiver; tensor = A ``(N_r, L)``) -> receive, aggregate, reply
  RESULT with the de-normalized sum (float64).
* ``new_realization`` / ``true_channels`` (to the channel agent) -> RESULT with H ``(N, N_r,
  N_t)`` complex128 and the bench clock (`ChannelBroker.common_now`: the latest of the air
  clock and every node clock, so ``now + lead`` is in the future for every radio).
* ``stats`` (to anyone) -> RESULT with ``rss_bytes`` and role-specific counters.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from testbed.config.loader import find_config, load_bench
from testbed.errors import ConfigError

CHANNEL_ID = "channel"

#: Environment variable naming the CURVE key directory of a bench with ``controller.curve: true``
#: (the layout `testbed keys --out DIR` writes: server.key[_secret], clients/, allowed/).
KEYS_ENV = "TESTBED_KEYS_DIR"


@dataclass(frozen=True)
class BenchAddresses:
    """ZMQ addresses of one running bench: controller ROUTER/PUB and the channel broker."""

    router: str
    pub: str
    broker: str

    def as_args(self) -> list[str]:
        """Command-line flags that pass these addresses to a role process."""
        return ["--router", self.router, "--pub", self.pub, "--broker", self.broker]


def resolve_bench(spec: str):
    """Load a bench by path or shipped short name (``sim_4node``)."""
    return load_bench(find_config(spec, "benches"))


def default_addresses(bench) -> BenchAddresses:
    """Addresses from the bench's controller section; the broker listens on pub_port + 1."""
    c = bench.controller
    return BenchAddresses(router=f"tcp://{c.host}:{c.router_port}",
                          pub=f"tcp://{c.host}:{c.pub_port}",
                          broker=f"tcp://{c.host}:{c.pub_port + 1}")


def addresses_from_args(bench, args) -> BenchAddresses:
    """Bench defaults overridden by ``--router/--pub/--broker`` flags when given."""
    d = default_addresses(bench)
    return BenchAddresses(router=getattr(args, "router", None) or d.router,
                          pub=getattr(args, "pub", None) or d.pub,
                          broker=getattr(args, "broker", None) or d.broker)


def add_address_args(parser) -> None:
    """Add ``--bench``, ``--router``, ``--pub``, ``--broker`` and ``--model`` to a role parser."""
    parser.add_argument("--bench", required=True, help="bench YAML path or shipped name")
    parser.add_argument("--router", help="controller ROUTER address (default: from the bench)")
    parser.add_argument("--pub", help="controller PUB address (default: from the bench)")
    parser.add_argument("--broker", help="channel broker address (default: bench pub_port+1)")
    parser.add_argument("--model", default="default",
                        help="checkpoint directory or 'default' (the cached default model)")


def resolve_model_dir(spec: str | None) -> Path:
    """``default``/None -> the default model's cache dir (trained once); else an existing dir."""
    if spec in (None, "default"):
        from testbed.llm.default_model import ensure_default_model
        return ensure_default_model(progress=False)
    p = Path(spec).expanduser()
    if not (p / "config.json").is_file():
        raise ConfigError(f"--model {spec!r}: no config.json there; pass a save_pretrained "
                          "directory or 'default'")
    return p


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 over config.json and every *.safetensors file (names and bytes), hex. Every
    process of a bench must load the very same checkpoint, or registration is refused."""
    d = Path(model_dir)
    files = [d / "config.json", *sorted(d.glob("*.safetensors"))]
    if not files[1:]:
        raise ConfigError(f"{d}: no *.safetensors weights; save the model with "
                          "save_pretrained(safe_serialization=True)")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()


def node_ids(bench) -> list[str]:
    """Node ids in bench order (= shard index order)."""
    return [n.id for n in bench.nodes]


def bench_ratios(bench) -> dict[str, float]:
    """Model share per node id: the given ratios, or equal shares for other policies
    (compute_proportional: proportional to ``flops``)."""
    ids = node_ids(bench)
    if bench.assignment == "given":
        return {n.id: float(n.ratio) for n in bench.nodes}
    if bench.assignment == "compute_proportional":
        total = sum(n.flops for n in bench.nodes)
        return {n.id: n.flops / total for n in bench.nodes}
    if bench.assignment == "ssca":
        raise ConfigError("assignment 'ssca' needs the optimizer's output; run the assignment "
                          "command and put the ratios into the bench (assignment: given)")
    return {i: 1.0 / len(ids) for i in ids}


def rss_bytes() -> int:
    """Resident set size of this process, bytes."""
    import psutil
    return int(psutil.Process(os.getpid()).memory_info().rss)


def curve_keys_dir(bench) -> Path | None:
    """The CURVE key directory when the bench requires CURVE (``controller.curve: true``),
    from $TESTBED_KEYS_DIR; None for a plain-TCP bench. Raises ConfigError saying how to make
    keys when the bench wants CURVE and no directory is given."""
    if bench is None or not bench.controller.curve:
        return None
    value = os.environ.get(KEYS_ENV)
    if not value:
        raise ConfigError(
            f"bench {bench.name!r} sets controller.curve: true but ${KEYS_ENV} is not set; run "
            f"`testbed keys --out DIR --clients <every node id, the receiver id, channel>`, give "
            f"each machine DIR (nodes need only clients/<id>.key_secret and server.key) and set "
            f"{KEYS_ENV}=DIR for every role (`testbed up` makes keys in its run dir by itself)")
    path = Path(value).expanduser()
    if not (path / "server.key").is_file():
        raise ConfigError(f"${KEYS_ENV}={value!r} has no server.key; make it with "
                          "`testbed keys --out DIR`")
    return path


def client_curve_keys(bench, node_id: str):
    """`CurveClientKeys` of agent ``node_id`` for a CURVE bench, else None."""
    from testbed.net.transport import CurveClientKeys
    keys = curve_keys_dir(bench)
    if keys is None:
        return None
    secret = keys / "clients" / f"{node_id}.key_secret"
    if not secret.is_file():
        raise ConfigError(f"no CURVE key for {node_id!r}: {secret} is missing; make one with "
                          f"`testbed keys --out {keys} --clients {node_id}`")
    return CurveClientKeys(secret_file=secret, server_public_file=keys / "server.key")


def server_curve_keys(bench):
    """`CurveServerKeys` of the controller for a CURVE bench, else None."""
    from testbed.net.transport import CurveServerKeys
    keys = curve_keys_dir(bench)
    if keys is None:
        return None
    secret = keys / "server.key_secret"
    if not secret.is_file():
        raise ConfigError(f"{secret} is missing; the controller needs the server secret key")
    return CurveServerKeys(secret_file=secret, allowed_clients_dir=keys / "allowed")


def agent_config(node_id: str, role: str, addresses: BenchAddresses, fingerprint: str,
                 bench=None, **overrides):
    """An `AgentConfig` for a role process (controller timeout from the bench's dead_after)."""
    from testbed.net.agent import AgentConfig
    from testbed.net.schema import Capabilities
    kw = dict(node_id=node_id, role=role, router_address=addresses.router,
              pub_address=addresses.pub, model_fingerprint=fingerprint,
              capabilities=Capabilities(radio_kind="sim"))
    if bench is not None:
        kw["heartbeat_interval_s"] = bench.controller.heartbeat_s
        kw["controller_timeout_s"] = bench.controller.dead_after_s
        kw["curve"] = client_curve_keys(bench, node_id)
    kw.update(overrides)
    return AgentConfig(**kw)
