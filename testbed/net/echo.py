"""A diagnostic agent that answers every request by echoing it: PARTIAL -> AGGREGATE with the
same tensor, anything else -> the same message back. Used to measure control-plane round
trips and to exercise liveness handling with real processes.

Run as ``python -m testbed.net.echo --node-id n0 --router tcp://... --pub tcp://...``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from testbed.net.agent import Agent, AgentConfig
from testbed.net.errors import ControllerLostError, RegistrationError
from testbed.net.schema import Aggregate, Message, Partial, next_msg_id
from testbed.net.transport import CurveClientKeys


class EchoAgent(Agent):
    """Echoes requests; ``delay_s`` seconds of simulated work per request."""

    def __init__(self, config: AgentConfig, delay_s: float = 0.0):
        super().__init__(config)
        self.delay_s = delay_s

    def handle(self, message: Message) -> Message | None:
        """PARTIAL -> AGGREGATE (same layer/site/round/tensor); other types echoed as-is."""
        if self.delay_s:
            time.sleep(self.delay_s)
        if isinstance(message, Partial):
            return Aggregate(layer=message.layer, site=message.site, round_id=message.round_id,
                             tensor=message.tensor)
        return message.model_copy(update={"msg_id": next_msg_id()})


def build_parser() -> argparse.ArgumentParser:
    """Arguments shared by agent processes (node id, addresses, fingerprint, CURVE keys)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--node-id", required=True)
    p.add_argument("--role", default="node", choices=["node", "receiver", "channel"])
    p.add_argument("--router", required=True, help="controller ROUTER address")
    p.add_argument("--pub", required=True, help="controller PUB address")
    p.add_argument("--fingerprint", default="", help="model fingerprint to report")
    p.add_argument("--curve-secret", type=Path, help="this client's .key_secret file")
    p.add_argument("--curve-server", type=Path, help="the controller's public .key file")
    p.add_argument("--controller-timeout", type=float, default=3.0, help="seconds")
    p.add_argument("--delay", type=float, default=0.0, help="seconds of work per request")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one echo agent; exit code 0 on shutdown, 1 on registration/controller loss."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    curve = None
    if args.curve_secret or args.curve_server:
        if not (args.curve_secret and args.curve_server):
            print("--curve-secret and --curve-server go together", file=sys.stderr)
            return 2
        curve = CurveClientKeys(args.curve_secret, args.curve_server)
    cfg = AgentConfig(node_id=args.node_id, role=args.role, router_address=args.router,
                      pub_address=args.pub, model_fingerprint=args.fingerprint, curve=curve,
                      controller_timeout_s=args.controller_timeout)
    try:
        reason = EchoAgent(cfg, delay_s=args.delay).run()
    except (RegistrationError, ControllerLostError) as exc:
        print(f"echo agent {args.node_id}: {exc}", file=sys.stderr)
        return 1
    print(f"echo agent {args.node_id}: exiting ({reason})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
