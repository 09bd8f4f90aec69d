"""Channel broker + RemoteSimRadio against the in-process SimAir (no model, fast)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sim_backend.broker import ChannelBroker, air_from_bench
from sim_backend.channel import ChannelModel
from sim_backend.remote_radio import RemoteSimRadio
from sim_backend.sim_allreduce import build_sim_bench
from testbed.config.loader import find_config, load_bench
from testbed.errors import ConfigError, StreamError
from testbed.radio.factory import open_radio


@pytest.fixture()
def bench():
    return load_bench(find_config("sim_4node", "benches"))


def _inproc(bench):
    ch = bench.channel
    model = ChannelModel(4, 4, 1, path_loss_db=np.array([ch.path_loss_db[f"node{i}"]
                                                         for i in range(4)]))
    return build_sim_bench(4, 4, 1, snr_db=ch.snr_db, seed=ch.seed, channel_model=model)


def _bursts(rng, n=4, k=200):
    return [(0.1 * (rng.standard_normal((1, k)) + 1j * rng.standard_normal((1, k))))
            .astype(np.complex64) for _ in range(n)]


def test_remote_windows_equal_inprocess_air(bench):
    ref = _inproc(bench)
    bursts = _bursts(np.random.default_rng(0))
    with ChannelBroker(air_from_bench(bench)) as broker:
        np.testing.assert_array_equal(broker.true_channels()[0], ref.air.true_channels())
        txs = [RemoteSimRadio(broker.address, i) for i in range(4)]
        rx = RemoteSimRadio(broker.address, receiver=True)
        for rnd in range(2):
            H, now = broker.new_realization()
            np.testing.assert_array_equal(H, ref.air.new_realization())
            start = now + 50 + 7 * rnd
            for i, (t, b) in enumerate(zip(txs, bursts)):
                t.transmit(b, start + i)
                ref.tx_radios[i].transmit(b, start + i)
                t.done_until(start + 300)
            y = rx.receive(240, start - 10)
            y_ref = ref.rx_radio.receive(240, start - 10)
            np.testing.assert_array_equal(y, y_ref)  # same seed -> same channels and noise
            assert rx.now() == ref.rx_radio.now()
        for r in (*txs, rx):
            r.close()


def test_window_waits_for_every_transmitter(bench):
    with ChannelBroker(air_from_bench(bench)) as broker:
        txs = [RemoteSimRadio(broker.address, i) for i in range(4)]
        rx = RemoteSimRadio(broker.address, receiver=True)
        got = {}

        def receive():
            got["y"] = rx.receive(100, 0)
            got["t"] = time.monotonic()

        th = threading.Thread(target=receive)
        th.start()
        x = np.full((1, 20), 0.5, dtype=np.complex64)
        for t in txs[:3]:
            t.transmit(x, 10)
            t.done_until(100)
        time.sleep(0.3)
        assert "y" not in got  # node 3 has not declared yet: the window is held
        txs[3].transmit(x, 40)
        t_last = time.monotonic()
        txs[3].done_until(100)
        th.join(5)
        assert got["t"] >= t_last
        H = broker.true_channels()[0]
        # noise std ~0.025 at 20 dB: nodes 0-2 overlap at sample 15, node 3 alone at 45
        assert np.allclose(got["y"][:, 15], sum(H[i][:, 0] * 0.5 for i in range(3)), atol=0.15)
        assert np.allclose(got["y"][:, 45], H[3][:, 0] * 0.5, atol=0.15)
        assert broker.stats.waited_windows == 1
        for r in (*txs, rx):
            r.close()


def test_window_timeout_names_silent_transmitters_and_late_burst(bench):
    with ChannelBroker(air_from_bench(bench), window_timeout_s=0.3) as broker:
        tx0 = RemoteSimRadio(broker.address, 0)
        rx = RemoteSimRadio(broker.address, receiver=True)
        tx0.done_until(1000)
        with pytest.raises(StreamError, match=r"\[1, 2, 3\]"):
            rx.receive(50, 0)
        for i in (1, 2, 3):
            RemoteSimRadio(broker.address, i).done_until(1000)
        rx.receive(50, 0)  # clock now 50
        with pytest.raises(StreamError, match="late"):
            tx0.transmit(np.zeros((1, 4), np.complex64), 10)
        assert tx0.counters().late == 1
        with pytest.raises(ConfigError, match="not on this air"):
            RemoteSimRadio(broker.address, 7)
        tx0.close()
        rx.close()


def test_open_radio_sim_kind_inprocess_and_remote(bench):
    from sim_backend.remote_radio import open_sim_radio
    from testbed.radio import factory
    # another test may have removed the registration made at import time
    factory.register_radio_kind("sim", open_sim_radio, replace=True)
    ref = _inproc(bench)
    cfg = bench.nodes[0].radio
    with pytest.raises(ConfigError, match="broker"):
        open_radio(cfg, role="node", node_id="node0", node_index=0)
    from sim_backend.air import SimAir
    air = SimAir(1)
    r = open_radio(cfg, role="node", node_id="node0", node_index=0, air=air)
    assert r.settings.n_tx_channels == 1 and air.node_ids == [0]
    with ChannelBroker(air_from_bench(bench)) as broker:
        r = open_radio(bench.receiver.radio, role="receiver", node_id="receiver",
                       broker=broker.address)
        assert isinstance(r, RemoteSimRadio) and r.settings.n_rx_channels == 4
        r.close()
    assert ref.air.n_rx == 4
