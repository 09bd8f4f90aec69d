"""Role process entry points and the local bench runner (`testbed up` / `testbed run --up`).

`serve_node` / `serve_receiver` / `serve_channel` build a role's agent from the bench and run it
until SHUTDOWN. `start_bench` starts channel broker, receiver and nodes as supervised child
processes on loopback (free ports, logs in ``<run_dir>/logs``). `run_on_bench` is the
controller: registration, assignment, the scale statistics pass, the job (generation or
perplexity), results.json with per-process RSS, per-token latency, logits hash, the design's
predicted all-reduce error, the traffic table of every socket and (``--measure-error``) the
measurement tap's error; on a lost peer it saves what it has and returns exit code 1 with a
message naming the peer.
A round that does not finish is blamed on the node, receiver, radio or broker it waits on,
and a user's Ctrl-C is recorded as ``interrupted``. Only the controller side imports torch
(inside `run_on_bench`): the channel and receiver processes never load the model libraries.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import socket
import signal
import sys
import time
from pathlib import Path

import numpy as np

from testbed.errors import ConfigError
from testbed.net.controller import Controller, ControllerConfig
from testbed.net.errors import PeerLostError, RemoteError, RequestTimeout
from testbed.net.results import JsonlRecorder
from testbed.net.roles.common import (CHANNEL_ID, CONTROLLER_KEY, KEYS_ENV, BenchAddresses,
                                      agent_config, model_fingerprint, node_ids, role_fingerprint,
                                      role_keys, rss_bytes)
from testbed.net.supervisor import ChildExitedError, Supervisor

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- role processes
def serve_node(bench, node_id: str, addresses: BenchAddresses, model_dir=None) -> str:
    """Run node ``node_id`` of ``bench`` until shutdown; returns the exit reason. model_dir:
    its own checkpoint, or None to load the slice the controller sends."""
    from testbed.net.roles.node import NodeAgent
    ids = node_ids(bench)
    if node_id not in ids:
        raise ConfigError(f"--id {node_id!r} is not a node of bench {bench.name!r}; nodes: {ids}")
    index = ids.index(node_id)
    radio = None
    if bench.simulated:
        import sim_backend.remote_radio  # noqa: F401  (registers the sim kind)
        from testbed.radio.factory import open_radio
        radio = open_radio(bench.nodes[index].radio, role="node", node_id=node_id,
                           broker=addresses.broker, node_index=index,
                           **broker_client_options(bench, node_id))
    else:
        # hardware bench: open the node's radio before registering, so a missing device
        # fails at start with a message naming the node, its address and the check to run
        from testbed.radio.factory import open_radio
        radio = open_radio(bench.nodes[index].radio, role="node", node_id=node_id)
    cfg = agent_config(node_id, "node", addresses, role_fingerprint(model_dir), bench,
                       radio=radio)
    try:
        return NodeAgent(cfg, model_dir, index, ids, radio=radio,
                         estimates_address=addresses.estimates,
                         keys=role_keys(bench, node_id)).run()
    finally:
        if radio is not None:
            radio.close()


def serve_receiver(bench, addresses: BenchAddresses, model_dir=None) -> str:
    """Run the bench's receiver until shutdown (it needs no checkpoint; given one, it
    registers with its fingerprint)."""
    from testbed.net.roles.receiver import ReceiverAgent
    radio = None
    if bench.simulated:
        import sim_backend.remote_radio  # noqa: F401
        from testbed.radio.factory import open_radio
        radio = open_radio(bench.receiver.primary_radio, role="receiver",
                           node_id=bench.receiver.id, broker=addresses.broker,
                           **broker_client_options(bench, bench.receiver.id))
    else:
        radio = open_receiver_radios(bench)
    cfg = agent_config(bench.receiver.id, "receiver", addresses, role_fingerprint(model_dir),
                       bench, radio=radio, n_antennas=bench.receiver.n_antennas)
    try:
        return ReceiverAgent(cfg, radio=radio,
                             estimates_address=_bind_address(addresses.estimates),
                             keys=role_keys(bench, bench.receiver.id)).run()
    finally:
        if radio is not None:
            radio.close()


def interrupt_underway(exc: BaseException, supervisor=None) -> bool:
    """True when ``exc`` (a lost peer, a failed or timed-out request) comes from a Ctrl-C: the
    local bench's `Supervisor` caught SIGINT (and stopped the roles, so the run's next message
    finds them gone), or a KeyboardInterrupt is in the exception's chain (raised while one
    was being handled). Such a run is "interrupted", not "failed"."""
    if supervisor is not None and getattr(supervisor, "stop_signal", None) == signal.SIGINT:
        return True
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def _interrupt_wins(supervisor=None):
    """Inside: an error that a Ctrl-C caused (`interrupt_underway`: e.g. the teardown of the
    roles reaching the run first as a lost peer) is raised as the KeyboardInterrupt it is."""
    try:
        yield
    except Exception as exc:
        if interrupt_underway(exc, supervisor):
            raise KeyboardInterrupt from exc
        raise


def open_receiver_radios(bench):
    """The receiver's radio of a hardware/emulated bench: its radio, or every radio of its
    list as one `testbed.radio.array.ArrayRadio` (aligned by the time base's sync). A radio
    that fails to open closes the ones already open."""
    from testbed.radio.factory import open_radio
    rx = bench.receiver.radio
    if not isinstance(rx, list):
        return open_radio(rx, role="receiver", node_id=bench.receiver.id)
    from testbed.radio.array import ArrayRadio
    radios = []
    try:
        for i, cfg in enumerate(rx):
            radios.append(open_radio(cfg, role="receiver", node_id=f"{bench.receiver.id}-{i}"))
    except BaseException:
        for r in radios:
            r.close()
        raise
    return ArrayRadio(radios) if len(radios) > 1 else radios[0]


def serve_channel(bench, addresses: BenchAddresses, model_dir=None) -> str:
    """Run the channel broker (radio side) and its control-plane agent until shutdown."""
    from sim_backend.broker import BrokerRoles, ChannelBroker, air_from_bench
    from testbed.net.roles.channel import ChannelAgent
    from testbed.net.roles.common import server_curve_keys
    from testbed.net.transport import CurveServerSecurity
    keys = server_curve_keys(bench)
    security = None if keys is None else CurveServerSecurity(keys, "channel broker")
    roles = BrokerRoles(tuple(node_ids(bench)), bench.receiver.id)
    with ChannelBroker(air_from_bench(bench), addresses.broker, security=security,
                       roles=roles) as broker:
        log.info("channel broker serving at %s", broker.address)
        cfg = agent_config(CHANNEL_ID, "channel", addresses, role_fingerprint(model_dir), bench)
        return ChannelAgent(cfg, broker).run()


def _bind_address(address: str) -> str:
    """A connect address made bindable: a host name other than an IP binds on all of that
    host's interfaces is not what we want, so keep the host as given (ZMQ resolves it)."""
    return address


def broker_client_options(bench, role_id: str) -> dict:
    """Extra `open_radio` options of role ``role_id``'s channel-broker radio: on a CURVE bench
    its own key (the broker admits bench keys only and binds each to its radio)."""
    from testbed.net.roles.common import client_curve_keys
    from testbed.net.transport import curve_client
    keys = client_curve_keys(bench, role_id)
    if keys is None:
        return {}
    return {"secure": lambda sock: curve_client(sock, keys)}


#: the digital method's gloo rendezvous port on a multi-host bench: controller pub_port + this
GLOO_PORT_OFFSET = 4


def gloo_rendezvous(bench, addresses: BenchAddresses) -> tuple[str, int]:
    """(host, port) where node0 listens for the digital method's gloo rendezvous: loopback
    (a free port) when the bench runs on this host's loopback, else node0's bench ``host`` and
    the controller's pub_port + 4 (+1..+3 are the broker, the receiver's estimates and the
    measurement sink, `default_addresses`; node0 may share the receiver's host)."""
    from urllib.parse import urlsplit

    from testbed.llm.tp_gloo import free_port
    router_host = urlsplit(addresses.router).hostname or ""
    if router_host.startswith("127.") or router_host in ("localhost", "::1"):
        return "127.0.0.1", free_port("127.0.0.1")
    return bench.nodes[0].host, bench.controller.pub_port + GLOO_PORT_OFFSET


# ---------------------------------------------------------------------- local bench
def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def loopback_addresses() -> BenchAddresses:
    """Fresh loopback addresses for a local bench (avoids clashes with other benches)."""
    return local_addresses()


def local_addresses(router: str | None = None, pub: str | None = None, broker: str | None = None,
                    estimates: str | None = None, tap: str | None = None) -> BenchAddresses:
    """Addresses of a local bench (`testbed up`): the given ones, fresh loopback ports for the
    others."""
    given = (router, pub, broker, estimates, tap)
    return BenchAddresses(*(g or f"tcp://127.0.0.1:{port}"
                            for g, port in zip(given, free_ports(5))))


def start_bench(sup: Supervisor, bench_spec: str, bench, addresses: BenchAddresses,
                model: str | None = None) -> list[str]:
    """Start channel broker (simulated benches) or the emulated radios (emulated benches),
    receiver and every node as children of ``sup``; returns the process names. The broker or
    radios start first (the roles connect to them). model: a checkpoint every node loads itself
    (``--model``); None: no role gets one and each node loads the slice the controller sends
    it, as on a multi-host bench."""
    from testbed.net.roles.emulated_radios import start_emulated_radios
    common = ["--bench", str(bench_spec), *addresses.as_args()]
    node_args = [] if model is None else ["--model", str(model)]
    names = start_emulated_radios(sup, bench_spec, bench)
    if bench.simulated:
        sup.start_python(CHANNEL_ID, "testbed.cli", ["channel", *common])
        names.append(CHANNEL_ID)
    sup.start_python(bench.receiver.id, "testbed.cli", ["receiver", *common])
    names.append(bench.receiver.id)
    for nid in node_ids(bench):
        sup.start_python(nid, "testbed.cli", ["node", "--id", nid, *common, *node_args])
        names.append(nid)
    return names


def controller_config(bench, addresses: BenchAddresses, fingerprint: str) -> ControllerConfig:
    """`ControllerConfig.from_bench` bound at ``addresses`` instead of the bench ports."""
    from testbed.net.roles.common import server_curve_keys
    base = ControllerConfig.from_bench(bench, fingerprint, curve=server_curve_keys(bench))
    return dataclasses.replace(base, router_endpoint=addresses.router,
                               pub_endpoint=addresses.pub)


@dataclasses.dataclass
class JobSpec:
    """What to run: ``kind`` "generate" (prompt_ids, max_new_tokens) or "perplexity"
    (eval_ids, window, n_windows), or "none" (stay up until Ctrl-C)."""

    kind: str = "none"
    prompt_ids: list[int] | None = None
    max_new_tokens: int = 8
    eval_ids: list[int] | None = None
    window: int = 64
    n_windows: int = 2
    prompt_text: str | None = None
    save_logits: bool = False  #: write the per-step logits to ``run_dir/logits.npy``


def load_controller_code() -> None:
    """Import what the controller runs (torch, transformers through the sharding code: seconds
    on a loaded machine) up front: before the role processes start (`up_and_run`), so they do
    not wait for a controller that is still importing, and before the controller exists, so
    it never stalls its heartbeats mid-assignment. Role processes never call this."""
    import testbed.llm.sharding  # noqa: F401
    import testbed.net.roles.controller_job  # noqa: F401


def run_on_bench(bench, addresses: BenchAddresses, model_dir, method: str, job: JobSpec,
                 run_dir: str | Path, *, supervisor: Supervisor | None = None,
                 register_timeout_s: float = 120.0, n_streams: int | None = None,
                 csi: str = "estimated", calibration=None, measure_error: bool = False,
                 csi_interval_samples: int = 0) -> int:
    """Be the controller of a running bench: wait for every role, assign shards, run the scale
    statistics pass (analog methods), run ``job`` with ``method``; write
    ``run_dir/steps.jsonl`` (each step at once) and ``run_dir/results.json``. Returns 0 on
    success, 1 if a peer was lost (message printed). calibration: a checked
    `testbed.net.roles.bench_calibration.BenchCalibration` (each node transmits through its
    correction; results.json records the file) or None (raw radios). measure_error: nodes copy
    their partials to a measurement sink in this process (results.json: ``measurement_tap``).
    csi_interval_samples: one sounding and design per interval of the receiver clock
    (`AnalogRoundDriver`; 0: every round). supervisor: the local bench's `Supervisor` (`up_and_run`): a child that exits before
    registering ends the wait at once (`ChildExitedError` quoting its log).
    A lost peer or a round that times out is named at once (printed; ``detected_unix`` in
    results.json) and saved as status "failed" with ``culprit`` = {"kind": node | receiver |
    radio | broker, "id": peer} and the counters of the roles that still answer; Ctrl-C as "interrupted"
    (also when the Ctrl-C's teardown of the roles surfaces first as a lost peer, `interrupt_underway`; re-raised,
    except for ``job.kind == "none"``, where it is the normal way to stop: returns 0)."""
    import torch

    load_controller_code()
    from testbed.experiments.runs import write_json
    from testbed.llm.textdata import train_tokens
    from testbed.net.roles.controller_job import (BenchSession, generate_job, perplexity_job,
                                                  stats_after_failure)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = model_fingerprint(model_dir)
    recorder = JsonlRecorder(run_dir / "steps.jsonl")
    results: dict = {"bench": bench.name, "method": method, "csi": csi, "job": job.kind,
                     "model_fingerprint": fingerprint, "status": "running",
                     "addresses": dataclasses.asdict(addresses),
                     "measure_error": measure_error,
                     "csi_interval_samples": int(csi_interval_samples),
                     "calibration": None if calibration is None else calibration.record}
    steps: list[dict] = []
    sink = None

    def save(status: str, error: str | None = None, session=None,
             stats: dict | None = None, culprit: dict | None = None) -> None:
        results["status"] = status
        if error:
            results["error"] = error
        if culprit:
            results["culprit"] = culprit
        results["steps_completed"] = len(steps)
        if job.kind == "generate":
            results["prompt_ids"] = job.prompt_ids
            results["generated_ids"] = [s["token"] for s in steps]
            lat = [s["latency_s"] for s in steps]
            results["per_token_latency_s"] = lat
            if len(lat) > 1:
                results["tokens_per_s_decode"] = float((len(lat) - 1) / sum(lat[1:]))
            h = hashlib.sha256()
            for s in steps:
                h.update(bytes.fromhex(s["logits_sha256"]))
            results["logits_hash"] = h.hexdigest()
        elif job.kind == "perplexity":
            nll = sum(s["nll_sum"] for s in steps)
            n = sum(s["n_tokens"] for s in steps)
            results["windows_evaluated"] = len(steps)
            results["nll_per_token"] = nll / n if n else None
            results["ppl"] = float(np.exp(nll / n)) if n else None
            results["per_window_latency_s"] = [s["latency_s"] for s in steps]
        if session is not None:
            results["allreduce"] = session.summary()
            if session.spec.transport == "quantized":
                results["allreduce"]["modelled_airtime"] = modelled_digital_airtime(
                    model_dir, len(node_ids(bench)), session.spec.bits)
        traffic = {"controller": ctl.transport.traffic.table()}
        if sink is not None:
            results["measurement_tap"] = sink.summary()
            traffic["measurement-sink"] = results["measurement_tap"].pop("traffic")
        results["controller_rss_bytes"] = rss_bytes()
        results["ended_unix"] = time.time()
        if job.save_logits and steps:
            np.save(run_dir / "logits.npy", np.stack([s["logits"] for s in steps]))
        if stats is not None:
            results["process_rss_bytes"] = {p: s.get("rss_bytes") for p, s in stats.items()}
            for p, s in stats.items():
                traffic[p] = s.pop("traffic", {})
            results["radios"] = {p: s.pop("radio") for p, s in stats.items() if "radio" in s}
            results["radios_unreported"] = sorted(
                p for p, info in ctl.peers.items()
                if info.capabilities.radio_kind != "none" and p not in results["radios"])
            results["process_stats"] = stats
        results["traffic"] = traffic_table(traffic)
        write_json(run_dir / "results.json", results)

    def on_step(item: dict) -> None:
        steps.append(item)
        recorder({k: v for k, v in item.items() if k != "logits"})

    session = None

    with Controller(controller_config(bench, addresses, fingerprint)) as ctl:
        try:
            with _interrupt_wins(supervisor):
                t0 = time.perf_counter()
                ctl.wait_for_peers(timeout_s=register_timeout_s, watch=None if supervisor is None
                                   else supervisor.raise_if_exited)
                results["registration_s"] = time.perf_counter() - t0
                results["registered"] = {p: info.capabilities.model_dump()
                                         for p, info in ctl.peers.items()}
                if calibration is not None:      # the file's radios are these roles' radios
                    try:
                        calibration.check_registered(ctl, bench)
                    except ConfigError as exc:
                        ctl.shutdown(f"run refused: {exc}")
                        raise
                if measure_error:
                    from testbed.net.roles.estimates import MeasurementSink
                    sink = MeasurementSink(addresses.tap, addresses.estimates, len(node_ids(bench)),
                                           keys=role_keys(bench, CONTROLLER_KEY))
                session = BenchSession(ctl, bench, fingerprint, method, n_streams=n_streams,
                                       csi=csi, model_dir=model_dir,
                                       corrections=None if calibration is None
                                       else calibration.corrections,
                                       measure_error=measure_error,
                                       tap_address=None if sink is None else sink.address,
                                       csi_interval_samples=csi_interval_samples)
                host, port = (gloo_rendezvous(bench, addresses)
                              if session.spec.transport == "quantized" else ("127.0.0.1", None))
                t0 = time.perf_counter()
                results["assignment"] = session.assign(gloo_port=port, gloo_host=host)
                results["load_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                results["scales"] = session.statistics_pass(train_tokens(), window=job.window)
                results["statistics_pass_s"] = time.perf_counter() - t0
                if job.kind == "none":
                    print(f"bench {bench.name} is up ({len(ctl.peers)} peers registered); "
                          "Ctrl-C tears it down", flush=True)
                    while True:
                        ctl.pump(0.5)
                if job.kind == "generate":
                    fn = generate_job(session, torch.tensor([job.prompt_ids]), job.max_new_tokens,
                                      keep_logits=job.save_logits)
                else:
                    fn = perplexity_job(session, torch.tensor(job.eval_ids), job.window,
                                        job.n_windows)
                run_t0 = time.perf_counter()
                before = ctl.transport.traffic.snapshot()
                gen = fn(ctl)
                for item in gen:
                    on_step(item)
                results["run_s"] = time.perf_counter() - run_t0
                # what the controller exchanged during the job alone (no set-up, no stats pass)
                results["controller_traffic_job"] = ctl.transport.traffic.since(before)
                stats = session.stats()
                ctl.shutdown("run finished")
                save("ok", session=session, stats=stats)
        except PeerLostError as exc:
            # named at once (before the up-to-2-s collection of the survivors' counters)
            results["detected_unix"] = time.time()
            who = "the channel broker" if exc.role == "channel" else f"{exc.role or 'peer'}"
            msg = (f"run stopped: {who} {exc.node_id!r} was lost ({exc.detail}, last heard "
                   f"{exc.last_seen_age_s:.1f} s ago). Saved {len(steps)} completed step(s) to "
                   f"{run_dir}. Restart that role (or `testbed up` again) and rerun.")
            print(msg, file=sys.stderr, flush=True)
            stats = stats_after_failure(ctl)
            ctl.shutdown(f"run aborted: {exc}")
            save("failed", error=msg, session=session, stats=stats,
                 culprit={"kind": exc.culprit, "id": exc.node_id})
            return 1
        except RemoteError as exc:
            # a role's command failed; a radio error (unplugged, stalled for good) names it
            results["detected_unix"] = time.time()
            role = ctl.peers[exc.node_id].role if exc.node_id in ctl.peers else "peer"
            kind = "radio" if exc.code == "radio_error" else role
            what = f"the radio of {role} {exc.node_id!r}" if kind == "radio" else \
                f"{role} {exc.node_id!r}"
            msg = (f"run stopped: {what} failed ({exc}). Saved {len(steps)} completed step(s) "
                   f"to {run_dir}." + (" Check its cable/USB and power, then restart that role "
                                       "and rerun." if kind == "radio" else ""))
            print(msg, file=sys.stderr, flush=True)
            stats = stats_after_failure(ctl)
            ctl.shutdown(f"run aborted: {exc}")
            save("failed", error=msg, session=session, stats=stats,
                 culprit={"kind": kind, "id": exc.node_id})
            return 1
        except RequestTimeout as exc:
            results["detected_unix"] = time.time()
            msg = f"run stopped: {exc} Saved {len(steps)} completed step(s) to {run_dir}."
            print(msg, file=sys.stderr, flush=True)
            stats = stats_after_failure(ctl)
            ctl.shutdown(f"run aborted: {exc}")
            save("failed", error=msg, session=session, stats=stats,
                 culprit={"kind": exc.culprit, "id": exc.culprit_id, "waiting": exc.waiting})
            return 1
        except KeyboardInterrupt:
            ctl.shutdown("interrupted by the user (Ctrl-C)")
            what = (f"{len(steps)} completed step(s), results.json and steps.jsonl"
                    if job.kind != "none" else "the bench's registration and assignment")
            save("interrupted", error=f"interrupted by the user (Ctrl-C); saved {what}",
                 session=session)
            print(f"interrupted: saved {what} in {run_dir}", file=sys.stderr, flush=True)
            if job.kind == "none":
                return 0
            raise
        except BaseException as exc:
            stats = None if isinstance(exc, KeyboardInterrupt) else stats_after_failure(ctl)
            ctl.shutdown(f"run aborted: {type(exc).__name__}: {exc}")
            save("failed", error=f"{type(exc).__name__}: {exc}", session=session, stats=stats)
            raise
        finally:
            if sink is not None:
                sink.close()
    return 0


def modelled_digital_airtime(model_dir, n_nodes: int, bits: int) -> dict:
    """The OFDMA airtime the ``digital`` method would take on the air (the bench runs it over
    gloo): per decode token, 2 all-reduces per layer of ``hidden`` values, with the latency
    model's defaults (`testbed.optim.latency`, star pattern, 1 MHz, 20 dB), seconds."""
    from testbed.llm.checkpoint_slices import load_config
    from testbed.optim.latency import LinkConfig, allreduce_time
    cfg = load_config(model_dir)
    link = LinkConfig(bits=bits)
    per = allreduce_time("digital", float(cfg.hidden_size), n_nodes, link)
    return {"per_allreduce_decode_s": per,
            "per_token_decode_s": 2 * cfg.num_hidden_layers * per,
            "model": "testbed.optim.latency defaults: OFDMA star, B = 1 MHz, 20 dB, "
                     f"{bits}-bit values; compare with per_token_latency_s (measured wall)"}


def traffic_table(per_process: dict) -> list[dict]:
    """Flatten {process: {socket: rows}} into rows {process, socket, direction, type, count,
    bytes, max_bytes} (results.json's ``traffic``)."""
    rows = []
    for proc, sockets in sorted(per_process.items()):
        if isinstance(sockets, list):       # a bare table
            sockets = {"": sockets}
        for sock, table in sorted(sockets.items()):
            for r in table:
                rows.append({"process": proc, **r, "socket": r.get("socket") or sock})
    return rows


def up_and_run(bench_spec: str, bench, model: str, method: str, job: JobSpec, run_dir,
               register_timeout_s: float = 120.0, n_streams: int | None = None,
               sup_hook=None, csi: str = "estimated", calibration=None,
               measure_error: bool = False, nodes_bring_model: bool = False,
               addresses: BenchAddresses | None = None, csi_interval_samples: int = 0) -> int:
    """Start the whole bench locally under a `Supervisor` (children torn down on exit, error
    or Ctrl-C) and be its controller (`run_on_bench`). ``sup_hook(sup)`` is called once the
    processes started (tests use it to kill a node mid-run). calibration: as `run_on_bench`
    (checked before any process starts). nodes_bring_model: every node loads ``model`` itself
    (default: the controller sends each node its slice). addresses: where the roles meet
    (default: fresh loopback ports, `local_addresses`); printed with the run directory. A
    child that dies before registering stops everything with `ChildExitedError` (its log's
    last lines)."""
    from testbed.net.roles.common import resolve_model_dir
    load_controller_code()
    model_dir = resolve_model_dir(model)
    addresses = addresses or local_addresses()
    run_dir = Path(run_dir)
    print(f"bench {bench.name}: controller ROUTER {addresses.router}, PUB {addresses.pub}"
          + (f", channel broker {addresses.broker}" if bench.simulated else "")
          + f", receiver estimates {addresses.estimates}, measurement sink {addresses.tap}"
          + f"; run directory {run_dir} (role logs in {run_dir / 'logs'})", flush=True)
    if bench.controller.curve and not os.environ.get(KEYS_ENV):
        # a local CURVE bench: fresh keys for every role in the run dir, inherited by children
        from testbed.net.transport import generate_keys
        ids = [*node_ids(bench), bench.receiver.id, CONTROLLER_KEY] + \
            ([CHANNEL_ID] if bench.simulated else [])
        generate_keys(run_dir / "keys", clients=ids)
        os.environ[KEYS_ENV] = str(run_dir / "keys")
    with Supervisor(run_dir) as sup:
        start_bench(sup, bench_spec, bench, addresses,
                    str(model_dir) if nodes_bring_model else None)
        if sup_hook is not None:
            sup_hook(sup)
        try:
            code = run_on_bench(bench, addresses, model_dir, method, job, run_dir,
                                supervisor=sup, register_timeout_s=register_timeout_s,
                                n_streams=n_streams, csi=csi, calibration=calibration,
                                measure_error=measure_error,
                                csi_interval_samples=csi_interval_samples)
        except ChildExitedError as exc:
            print(f"bench {bench.name} did not start: {exc}", file=sys.stderr, flush=True)
            return 1
        for name in sup.alive():  # give agents a moment to act on SHUTDOWN
            sup.wait(name, 3.0)
    return code
