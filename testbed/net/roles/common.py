"""What every role process shares: bench addresses, the model fingerprint, the node order,
agent configs and radio stats.

Role protocol: every command is a typed message of `testbed.net.schema` (FORWARD, NODE_STEP,
SOUND, SOUNDING_REPORT, PAYLOAD, AGGREGATE_CMD, ROUND_REPORT, CLOCK_QUERY, NEW_REALIZATION,
TRUTH_QUERY, STATS_QUERY, ...); the controller drives everything with requests
(`testbed.net.roles.controller_job`). Besides the controller's sockets a bench has the
receiver's estimates PUB socket (``estimates``) and, with ``--measure-error``, the measurement
sink (``tap``) in the controller process.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from testbed.config.loader import find_config, load_bench
from testbed.errors import ConfigError

CHANNEL_ID = "channel"
#: client key name of the controller process (its measurement sink subscribes to the estimates)
CONTROLLER_KEY = "controller"

#: Environment variable naming the CURVE key directory of a bench with ``controller.curve: true``
#: (the layout `testbed keys --out DIR` writes: server.key[_secret], clients/, allowed/).
KEYS_ENV = "TESTBED_KEYS_DIR"


@dataclass(frozen=True)
class BenchAddresses:
    """ZMQ addresses of one running bench: controller ROUTER/PUB, the channel broker, the
    receiver's estimates PUB socket and the measurement sink (``--measure-error``)."""

    router: str
    pub: str
    broker: str
    estimates: str
    tap: str

    def as_args(self) -> list[str]:
        """Command-line flags that pass these addresses to a role process."""
        return ["--router", self.router, "--pub", self.pub, "--broker", self.broker,
                "--estimates", self.estimates, "--tap", self.tap]


def resolve_bench(spec: str):
    """Load a bench by path or shipped short name (``sim_4node``)."""
    return load_bench(find_config(spec, "benches"))


def default_addresses(bench) -> BenchAddresses:
    """Addresses from the bench: the controller section's ports; the broker listens on
    pub_port + 1 (controller host), the receiver's estimates on pub_port + 2 (receiver host),
    the measurement sink on pub_port + 3 (controller host)."""
    c = bench.controller
    return BenchAddresses(router=f"tcp://{c.host}:{c.router_port}",
                          pub=f"tcp://{c.host}:{c.pub_port}",
                          broker=f"tcp://{c.host}:{c.pub_port + 1}",
                          estimates=f"tcp://{bench.receiver.host}:{c.pub_port + 2}",
                          tap=f"tcp://{c.host}:{c.pub_port + 3}")


def addresses_from_args(bench, args) -> BenchAddresses:
    """Bench defaults overridden by ``--router/--pub/--broker/--estimates/--tap`` when given."""
    d = default_addresses(bench)
    return BenchAddresses(**{k: getattr(args, k, None) or getattr(d, k)
                             for k in ("router", "pub", "broker", "estimates", "tap")})


def resolve_model_dir(spec: str | None) -> Path:
    """``default``/None -> the default model's cache dir (trained once); else an existing dir.
    Either is verified (`testbed.llm.manifest.verify_checkpoint`) before any role uses it."""
    if spec in (None, "default"):
        from testbed.llm.default_model import ensure_default_model
        return ensure_default_model(progress=False)
    p = Path(spec).expanduser()
    if not (p / "config.json").is_file():
        raise ConfigError(f"--model {spec!r}: no config.json there; pass a save_pretrained "
                          "directory or 'default'")
    from testbed.llm.default_model import rebuild_hint
    from testbed.llm.manifest import verify_checkpoint
    verify_checkpoint(p, rebuild_hint(p))
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


def role_fingerprint(model_dir: str | Path | None) -> str:
    """What a role registers with: its checkpoint's `model_fingerprint`, or `NO_CHECKPOINT`
    when it brings none (``model_dir`` None)."""
    from testbed.net.schema import NO_CHECKPOINT
    return NO_CHECKPOINT if model_dir is None else model_fingerprint(model_dir)


def optional_model_dir(spec: str | None) -> Path | None:
    """`resolve_model_dir` of ``--model`` when given, else None (no checkpoint here)."""
    return None if spec is None else resolve_model_dir(spec)


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


#: the stream-health counters of a radio, in the order a summary prints them (`radio_stats`;
#: ``resyncs`` only where the role re-establishes a time base)
HEALTH_COUNTERS = ("underflows", "overflows", "late", "stream_breaks", "resyncs")


def radio_stats(radio, resyncs: int | None = None, before_timebase: dict | None = None) -> dict:
    """A radio's identity and stream counters (JSON-able), for STATS and results.json:
    `StreamCounters` plus ``stream_breaks`` (`Radio.stream_breaks`: underflows, overflows and
    stream restarts -- each a discontinuity of its sample clock) and, when the role counts them,
    ``resyncs`` (time base re-established). ``before_timebase``: the counters when the role's
    first time base was set up (`stream_counters`), reported alongside: what happened before it
    (a start-up glitch while the role loads its model) cannot have hurt a round."""
    ident = radio.identity()
    counters = stream_counters(radio)
    if resyncs is not None:
        counters["resyncs"] = int(resyncs)
    out = {"kind": ident.kind, "serial": ident.serial, "address": ident.address,
           "counters": counters}
    if before_timebase is not None:
        out["before_timebase"] = dict(before_timebase)
    return out


def stream_counters(radio) -> dict:
    """A radio's `StreamCounters` and ``stream_breaks`` now (JSON-able)."""
    counters = radio.counters().as_dict()
    counters["stream_breaks"] = int(radio.stream_breaks())
    return counters


def clock_report(radio):
    """A role's `ClockReport` of ``radio``: its sample clock (samples), whether it runs with the
    wall clock, its rate (Hz) and its scheduling latency (samples)."""
    from testbed.net.schema import ClockReport
    return ClockReport(rx_clock=int(radio.now()), realtime=bool(radio.realtime),
                       sample_rate_hz=float(radio.settings.sample_rate_hz),
                       latency_samples=int(radio.schedule_latency_samples()))


def pps_time_sync(radio, msg):
    """The agreed-PPS steps of a TIME_SYNC (`calibration.pps`) on a role's radio: the reply to
    ``pps_edge`` / ``pps_latch``, or None for the other (beacon) steps. Only a single USRP
    (``pps_align: agreed``) takes them; anything else is refused with the reason."""
    from testbed.net.schema import Ack
    if msg.step not in ("pps_edge", "pps_latch"):
        return None
    if not hasattr(radio, "latch_time_at_pps_after"):
        raise ValueError(f"time_sync step {msg.step!r} needs a USRP with pps_align: agreed; this "
                         f"role's radio is a {radio.identity().kind}")
    if msg.step == "pps_edge":
        return Ack(info={"edge_host_s": radio.observe_pps_edge(),
                         "period_s": radio.pps_period_s})
    if msg.latch_host_time_s is None:
        raise ValueError("time_sync step 'pps_latch' needs latch_host_time_s")
    return Ack(info={"edge_host_s": radio.latch_time_at_pps_after(msg.latch_host_time_s)})


def radio_capabilities(radio, n_antennas: int = 1):
    """`Capabilities` a role registers with: its radio's real kind and serial."""
    from testbed.net.schema import Capabilities
    if radio is None:
        return Capabilities(radio_kind="none", n_antennas=max(1, n_antennas))
    ident = radio.identity()
    return Capabilities(radio_kind=str(ident.kind)[:64], radio_serial=str(ident.serial)[:128],
                        n_antennas=max(1, n_antennas))


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
            f"`testbed keys --out DIR --clients <every node id, the receiver id, channel, "
            f"{CONTROLLER_KEY}>`, give "
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


@dataclass(frozen=True)
class RoleKeys:
    """CURVE keys of role ``role_id`` on a CURVE bench for the side sockets of the round: the
    receiver's estimates PUB is a CURVE server with the receiver's own key pair
    (``clients/<receiver>.key_secret``; its subscribers check it against
    ``allowed/<receiver>.key``), the controller's measurement-tap PULL one with the bench's
    server key; both admit only keys of ``allowed/``. Each method takes ``(ctx, sock)`` before
    the socket binds/connects (`testbed.net.roles.estimates`)."""

    keys_dir: Path
    role_id: str
    receiver_id: str

    def _secret(self, role_id: str) -> Path:
        path = self.keys_dir / "clients" / f"{role_id}.key_secret"
        if not path.is_file():
            raise ConfigError(f"no CURVE key for {role_id!r}: {path} is missing; make one with "
                              f"`testbed keys --out {self.keys_dir} --clients {role_id}`")
        return path

    def _server(self, ctx, sock, secret: Path, label: str):
        from testbed.net.transport import CurveServerKeys, CurveServerSecurity
        return CurveServerSecurity(CurveServerKeys(secret, self.keys_dir / "allowed"),
                                   label)(ctx, [sock])

    def estimates_server(self, ctx, sock):
        """The receiver's estimates PUB: CURVE server with the receiver's key."""
        return self._server(ctx, sock, self._secret(self.receiver_id), "estimates")

    def estimates_client(self, ctx, sock) -> None:
        """A subscriber of the estimates: CURVE client with this role's key."""
        from testbed.net.transport import CurveClientKeys, curve_client
        curve_client(sock, CurveClientKeys(self._secret(self.role_id),
                                           self.keys_dir / "allowed" / f"{self.receiver_id}.key"))

    def tap_server(self, ctx, sock):
        """The controller's measurement-tap PULL: CURVE server with the bench's server key."""
        return self._server(ctx, sock, self.keys_dir / "server.key_secret", "measurement tap")

    def tap_client(self, ctx, sock) -> None:
        """A node's tap PUSH: CURVE client with its key."""
        from testbed.net.transport import CurveClientKeys, curve_client
        curve_client(sock, CurveClientKeys(self._secret(self.role_id),
                                           self.keys_dir / "server.key"))


def role_keys(bench, role_id: str) -> RoleKeys | None:
    """`RoleKeys` of ``role_id`` on a CURVE bench, None on a plain one."""
    keys = curve_keys_dir(bench)
    return None if keys is None else RoleKeys(keys, role_id, bench.receiver.id)


#: How long a role process waits for its controller (s): on a bench the roles start first, on
#: their own hosts, and the controller (`testbed controller`, `testbed calibrate`) after them.
ROLE_REGISTER_TIMEOUT_S = 300.0


def agent_config(node_id: str, role: str, addresses: BenchAddresses, fingerprint: str,
                 bench=None, radio=None, n_antennas: int = 1, **overrides):
    """An `AgentConfig` for a role process (controller timeout from the bench's dead_after;
    capabilities from ``radio``'s identity; waits `ROLE_REGISTER_TIMEOUT_S` for the
    controller)."""
    from testbed.net.agent import AgentConfig
    kw = dict(node_id=node_id, role=role, router_address=addresses.router,
              pub_address=addresses.pub, model_fingerprint=fingerprint,
              capabilities=radio_capabilities(radio, n_antennas),
              register_timeout_s=ROLE_REGISTER_TIMEOUT_S)
    if bench is not None:
        kw["heartbeat_interval_s"] = bench.controller.heartbeat_s
        kw["controller_timeout_s"] = bench.controller.dead_after_s
        kw["curve"] = client_curve_keys(bench, node_id)
    kw.update(overrides)
    return AgentConfig(**kw)
