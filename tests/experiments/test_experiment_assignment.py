"""`testbed experiment assignment --quick`: trace, constraints, held-out comparison, rounding."""
from __future__ import annotations

import json

import numpy as np
import pytest

from testbed.cli import main
from testbed.experiments.assignment import sharding_rounded


@pytest.mark.slow
def test_assignment_quick(tmp_path):
    assert main(["experiment", "assignment", "--quick", "--out", str(tmp_path)]) == 0
    (run_dir,) = list(tmp_path.iterdir())
    for name in ("assignment_convergence.png", "assignment_mse.png"):
        assert (run_dir / name).stat().st_size > 10_000
    res = json.loads((run_dir / "results.json").read_text())["results"]
    assert len(res["trace"]["objective_estimate"]) == res["iters"]
    a = res["assignments"]
    for name, r in a.items():
        assert r["constraints"]["ok"], name
        assert sum(r["ratios"]) == pytest.approx(1.0)
        assert sum(r["rounded_ratios"]) == pytest.approx(1.0)
        assert np.max(np.abs(np.subtract(r["rounded_ratios"], r["ratios"]))) < 1 / 32
        assert all(row["mlp_columns"] >= 0 and row["kv_groups"] >= 0 for row in r["rounded_plan"])
    assert sum(row["kv_groups"] for row in a["equal"]["rounded_plan"]) == 32
    assert a["ssca"]["avg_mse"] < a["equal"]["avg_mse"]
    assert a["equal"]["minus_ssca"]["mean"] > 0


def test_sharding_rounding_equal_split_is_exact():
    m, rows = sharding_rounded(np.full(4, 0.25))
    np.testing.assert_allclose(m, 0.25)
    assert [r["kv_groups"] for r in rows] == [8] * 4 and [r["mlp_columns"] for r in rows] == [2752] * 4
