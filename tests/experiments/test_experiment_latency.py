"""`testbed experiment latency --quick`: speed-ups agree with `speedup()` and the 5x/crossover marks."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from testbed.cli import main
from testbed.optim.latency import LinkConfig, first_crossing, speedup
from testbed.optim.latency_shapes import LLAMA2_7B, TINYLLAMA_1_1B
from testbed.optim.nodes import jetson_orin_nano


@pytest.mark.slow
def test_latency_quick(tmp_path):
    assert main(["experiment", "latency", "--quick", "--out", str(tmp_path)]) == 0
    (run_dir,) = list(tmp_path.iterdir())
    for name in ("latency_Llama-2-7B.png", "latency_TinyLlama-1.1B.png"):
        assert (run_dir / name).stat().st_size > 10_000
    res = json.loads((run_dir / "results.json").read_text())["results"]
    link = LinkConfig()  # the experiment's defaults are the latency model's defaults
    for shapes in (LLAMA2_7B, TINYLLAMA_1_1B):
        entry = res[shapes.name]
        ns = np.array(res["nodes"])
        star = np.array(entry["vs_nodes"]["digital-star"]["speedup"])
        direct = [speedup(np.full(n, 1 / n), [jetson_orin_nano(str(i)) for i in range(n)], shapes, link)
                  for n in ns]
        np.testing.assert_allclose(star, direct, rtol=1e-12)
        assert np.all(np.diff(star) > 0)   # digital star slows linearly with N, AirComp does not
        assert entry["vs_nodes"]["digital-star"]["five_x_at"] == pytest.approx(first_crossing(ns, star, 5.0))
        bws = np.array(res["bandwidth_hz"])
        b = np.array(entry["vs_bandwidth"]["digital-star"]["speedup"])
        nodes4 = [jetson_orin_nano(str(i)) for i in range(4)]
        np.testing.assert_allclose(b[[0, -1]], [speedup(np.full(4, .25), nodes4, shapes,
                                                        replace(link, bandwidth_hz=float(x))) for x in bws[[0, -1]]],
                                   rtol=1e-12)
        assert b[-1] < b[0]                # compute-bound at large bandwidth: the ratio tends to 1
        snr = entry["vs_snr_n2_no_downlink"]["digital-star"]
        assert snr["crossover_at"] is not None and np.array(snr["speedup"])[-1] < 1.0
