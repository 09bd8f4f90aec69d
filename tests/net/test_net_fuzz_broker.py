"""Live fuzz of the channel broker (issue 16): a stranger's hostile requests -- ``{"op":[1]}``,
``"node": Infinity``, deep nesting, 5000-digit integers, well-formed ``tx_until``/``receive``
for radios it does not hold, random mutations -- are each answered with an error, never kill
the serving thread and never touch the air: a round afterwards is bit-identical to the same
round on a broker nobody attacked."""
from __future__ import annotations

import json

import numpy as np
import pytest
import zmq

from hostile import BROKER_CRASHERS, hostile_frames
from sim_backend.broker import ChannelBroker, air_from_bench
from sim_backend.remote_radio import RemoteSimRadio
from testbed.config.loader import find_config, load_bench
from testbed.errors import ConfigError

N_FRAMES = 2000


@pytest.fixture()
def bench():
    return load_bench(find_config("sim_4node", "benches"))


def _templates() -> list[list[bytes]]:
    def h(**kw):
        return json.dumps({"seq": 5, **kw}).encode()
    burst = np.full((1, 16), 0.25 + 0.5j, dtype="<c8").tobytes()
    return [[h(op="hello", node=2, receiver=False)], [h(op="hello", receiver=True)],
            [h(op="transmit", node=1, at=500, shape=[1, 16]), burst],
            [h(op="tx_until", node=3, until=900)], [h(op="receive", n=64, at=100)],
            [h(op="now", node=1)], [h(op="now")], [h(op="tune", node=0, receiver=False)],
            [h(op="info")]]


def _round(broker, txs, rx, seed: int = 3) -> np.ndarray:
    """One clean round: every node transmits a burst, declares tx_until, the receiver reads."""
    rng = np.random.default_rng(seed)
    start = broker.common_now() + 40
    for i, t in enumerate(txs):
        b = (0.1 * (rng.standard_normal((1, 100)) + 1j * rng.standard_normal((1, 100))))
        t.transmit(b.astype(np.complex64), start + 3 * i)
        t.done_until(start + 200)
    return rx.receive(180, start - 5)


def _open(broker):
    return ([RemoteSimRadio(broker.address, i) for i in range(4)],
            RemoteSimRadio(broker.address, receiver=True))


def test_broker_survives_a_strangers_hostile_requests_and_the_air_is_untouched(bench):
    with ChannelBroker(air_from_bench(bench)) as ref_broker:
        txs, rx = _open(ref_broker)
        y_ref = _round(ref_broker, txs, rx)
        for r in (*txs, rx):
            r.close()

    with ChannelBroker(air_from_bench(bench)) as broker:
        txs, rx = _open(broker)
        before = (broker.air.now, dict(broker.tx_until), broker.air.pending_bursts())
        ctx = zmq.Context()
        stranger = ctx.socket(zmq.DEALER)
        stranger.setsockopt(zmq.LINGER, 0)
        stranger.connect(broker.address)
        replies = []
        try:
            frames = list(hostile_frames(np.random.default_rng(7), _templates(), N_FRAMES,
                                         crashers=BROKER_CRASHERS))
            for start in range(0, N_FRAMES, 100):
                for f in frames[start:start + 100]:
                    stranger.send_multipart(f)
                while len(replies) < start + len(frames[start:start + 100]):
                    assert stranger.poll(5000), f"broker stopped answering after " \
                                                f"{len(replies)} requests"
                    replies.append(json.loads(stranger.recv_multipart()[0]))
        finally:
            stranger.close()
            ctx.term()
        assert len(replies) == N_FRAMES  # every request answered: the thread survived
        refused = [r for r in replies if not r["ok"]]
        assert len(refused) == broker.stats.refused > N_FRAMES // 2
        assert all(r["kind"] == "config" and len(r["error"]) < 1200 for r in refused)
        held = [r["error"] for r in refused if "held by another connection" in r["error"]]
        assert len(held) >= 6  # the stranger's tx_until / receive / hello / tune
        assert (broker.air.now, dict(broker.tx_until), broker.air.pending_bursts()) == before
        y = _round(broker, txs, rx)
        for r in (*txs, rx):
            r.close()
    np.testing.assert_array_equal(y, y_ref)


def test_a_radio_claimed_by_one_connection_cannot_be_driven_by_another(bench):
    with ChannelBroker(air_from_bench(bench), window_timeout_s=0.5) as broker:
        tx0 = RemoteSimRadio(broker.address, 0)
        rx = RemoteSimRadio(broker.address, receiver=True)
        with pytest.raises(ConfigError, match="held by another connection"):
            RemoteSimRadio(broker.address, 0)
        with pytest.raises(ConfigError, match="held by another connection"):
            RemoteSimRadio(broker.address, receiver=True)
        tx0.done_until(10)  # the holder still can
        assert broker.tx_until[0] == 10
        tx0.close()
        rx.close()
