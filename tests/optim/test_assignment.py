"""Model assignment: power gradients vs finite differences, surrogate/projection vs cvxpy,
step-size conditions, constraints, and SSCA vs the equal and compute-proportional splits."""
import cvxpy as cp
import numpy as np
import pytest

from testbed.optim.assign_gradient import (mmse_value_and_power_gradient, power_constrained_ls,
                                           project_capped_simplex, zf_value_and_power_gradient)
from testbed.optim.assign_problem import (AssignmentProblem, check_constraints,
                                          compute_proportional_split, equal_split,
                                          heterogeneous_4node_problem)
from testbed.optim.assignment import (evaluate_average_mse, fast_problem, check_step_sizes,
                                      ssca_assign, step_sizes)
from testbed.optim.nodes import NodeModel, heterogeneous_4node
from testbed.optim.transceiver import design_transceiver


def crandn(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)


def test_power_constrained_ls_matches_cvxpy():
    rng = np.random.default_rng(1)
    M = crandn(rng, 2, 3)
    for power in (0.05, 0.5, 50.0):                      # binding, binding, slack
        value, mu, B = power_constrained_ls(M, power)
        X = cp.Variable((3, 2), complex=True)
        prob = cp.Problem(cp.Minimize(cp.sum_squares(M @ X - np.eye(2))), [cp.sum_squares(X) <= power])
        prob.solve(solver="CLARABEL")
        assert value == pytest.approx(prob.value, rel=1e-5, abs=1e-7)
        assert np.sum(np.abs(B) ** 2) <= power * (1 + 1e-9)
        assert mu == pytest.approx(prob.constraints[0].dual_value, rel=1e-3, abs=1e-6)


def test_mmse_value_gradient_matches_finite_differences_for_fixed_receiver():
    rng = np.random.default_rng(2)
    H = crandn(rng, 3, 4, 2)
    A = crandn(rng, 4, 2)
    P = np.array([0.3, 1.0, 2.5])
    _, g = mmse_value_and_power_gradient(H, A, P, 0.2)
    assert np.all(g <= 0) and np.any(g < 0)
    for n in range(3):
        h = 1e-6 * P[n]
        Pp, Pm = P.copy(), P.copy()
        Pp[n] += h
        Pm[n] -= h
        fd = (mmse_value_and_power_gradient(H, A, Pp, 0.2)[0]
              - mmse_value_and_power_gradient(H, A, Pm, 0.2)[0]) / (2 * h)
        assert g[n] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_envelope_gradient_of_the_siso_optimum_matches_re_solved_finite_differences():
    # the SISO optimum is global and closed-form (Cao et al. 2020), so V(P) is exact
    rng = np.random.default_rng(3)
    H = crandn(rng, 4, 1, 1)
    P = np.array([0.5, 1.0, 2.0, 4.0])
    d = design_transceiver(H, P, 0.3, method="siso-optimal")
    _, g = mmse_value_and_power_gradient(H, d.A, P, 0.3)
    assert np.allclose(-g, d.info["power_multipliers"], rtol=1e-8, atol=1e-12)
    for n in range(4):
        h = 1e-6 * P[n]
        Pp, Pm = P.copy(), P.copy()
        Pp[n] += h
        Pm[n] -= h
        fd = (design_transceiver(H, Pp, 0.3, method="siso-optimal").mse
              - design_transceiver(H, Pm, 0.3, method="siso-optimal").mse) / (2 * h)
        assert g[n] == pytest.approx(fd, rel=1e-4, abs=1e-8)


def test_envelope_gradient_of_mmse_design_matches_finite_differences_of_the_design():
    problem = heterogeneous_4node_problem(n_rx=2, n_tx=1, noise_var=0.1,
                                          design_options={"init": "channel-inversion", "tol": 1e-13})
    rng = np.random.default_rng(4)
    H = problem.draw_channel(rng)
    P = problem.power(equal_split(4))
    _, g_env = fast_problem(problem, H, P, np.random.default_rng(0), gradient="envelope")
    _, g_fd = fast_problem(problem, H, P, np.random.default_rng(0), gradient="fd", fd_rel_step=1e-5)
    assert np.allclose(g_env, g_fd, rtol=1e-3, atol=1e-6 * np.abs(g_fd).max())


def test_zf_gradient_matches_finite_differences_for_fixed_direction():
    rng = np.random.default_rng(5)
    H = crandn(rng, 3, 3, 1)
    A = crandn(rng, 3, 1)
    P = np.array([1.0, 2.0, 0.7])
    v, g = zf_value_and_power_gradient(H, A, P, 0.5)
    assert np.count_nonzero(g) == 1
    for n in range(3):
        h = 1e-7
        Pp, Pm = P.copy(), P.copy()
        Pp[n] += h
        Pm[n] -= h
        fd = (zf_value_and_power_gradient(H, A, Pp, 0.5)[0] - zf_value_and_power_gradient(H, A, Pm, 0.5)[0]) / (2 * h)
        assert g[n] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_chain_rule_through_the_energy_to_power_map():
    problem = heterogeneous_4node_problem()
    m = np.array([0.2, 0.1, 0.3, 0.4])
    rng = np.random.default_rng(6)
    H, A = problem.draw_channel(rng), crandn(rng, 2, 1)

    def f(mm):
        return mmse_value_and_power_gradient(H, A, problem.power(mm), problem.noise_var)[0]

    _, gP = mmse_value_and_power_gradient(H, A, problem.power(m), problem.noise_var)
    g = gP * problem.power_slope(m)
    for n in range(4):
        e = np.zeros(4)
        e[n] = 1e-7
        assert g[n] == pytest.approx((f(m + e) - f(m - e)) / 2e-7, rel=1e-4, abs=1e-9)
    assert np.all(g >= 0)          # more load -> less transmit power -> higher MSE


def test_projection_equals_the_cvxpy_surrogate_solution_and_is_feasible():
    rng = np.random.default_rng(7)
    upper = np.array([0.5, 0.3, 0.45, 1.0])
    for _ in range(5):
        m_t = project_capped_simplex(rng.random(4), upper)
        u = rng.standard_normal(4) * 3
        tau = 0.7
        m_hat = project_capped_simplex(m_t - u / (2 * tau), upper)
        x = cp.Variable(4)
        cp.Problem(cp.Minimize(u @ (x - m_t) + tau * cp.sum_squares(x - m_t)),
                   [cp.sum(x) == 1, x >= 0, x <= upper]).solve(solver="CLARABEL")
        assert np.allclose(m_hat, x.value, atol=1e-6)
        assert m_hat.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(m_hat >= 0) and np.all(m_hat <= upper)
    with pytest.raises(ValueError, match="empty"):
        project_capped_simplex(np.ones(2), np.array([0.2, 0.3]))


def test_step_size_conditions():
    check_step_sizes(0.6, 0.9, 0.5)
    for a_rho, a_gamma in [(0.4, 0.9), (0.9, 0.6), (0.6, 1.1), (0.7, 0.7)]:
        with pytest.raises(ValueError, match="a_rho"):
            check_step_sizes(a_rho, a_gamma)
    t = np.array([1, 10, 100, 10_000, 1_000_000])
    rho, gamma = step_sizes(t)
    assert np.all(np.diff(rho) < 0) and np.all(np.diff(gamma / rho) < 0)   # gamma/rho -> 0
    assert rho[0] == 1.0 and 0 < gamma[0] <= 1


def test_infeasible_setups_raise_clear_errors():
    nodes = heterogeneous_4node()
    with pytest.raises(ValueError, match="memory"):
        AssignmentProblem(nodes, split_params=1e10, model_bytes=1e11, channel_uses_per_token=1e5).validate()
    poor = [n.with_budget(0.05) for n in nodes]
    with pytest.raises(ValueError, match="energy"):
        AssignmentProblem(poor, split_params=6.5e9, model_bytes=1.3e10, channel_uses_per_token=1.3e5).validate()
    tiny = [NodeModel("a", 1e10, 1e10, 1e-10, 1e-3)] * 2
    with pytest.raises(ValueError, match="replicated"):
        AssignmentProblem(tiny, split_params=1e9, model_bytes=1e9, channel_uses_per_token=10,
                          replicated_params=1e8).validate()


def test_check_constraints_reports_each_violation():
    problem = heterogeneous_4node_problem()
    assert check_constraints(equal_split(4), problem).ok
    rep = check_constraints(np.array([0.9, 0.05, 0.03, 0.02]), problem)
    assert not rep.ok
    text = " ".join(rep.violations)
    assert "pi5-a" in text and "memory" in text and "energy" in text
    assert rep.memory_slack_bytes[0] < 0 and rep.power[0] < problem.min_power
    assert "sum" in " ".join(check_constraints(np.full(4, 0.3), problem).violations)


def test_training_and_held_out_streams_are_independent():
    problem = heterogeneous_4node_problem()
    from testbed.optim.assignment import TRAIN_STREAM, EVAL_STREAM, _rng
    a = problem.draw_channel(_rng(0, TRAIN_STREAM))
    b = problem.draw_channel(_rng(0, EVAL_STREAM))
    assert not np.allclose(a, b)


@pytest.mark.slow
def test_ssca_converges_and_beats_equal_and_compute_proportional_splits():
    problem = heterogeneous_4node_problem(n_rx=2, n_tx=1, noise_var=0.1)
    kv_groups = 32        # Llama-2-7B: 32 KV heads -> a stand-in rounding to whole head groups
    result = ssca_assign(problem, n_iter=300, seed=0,
                         rounding=lambda m: np.round(m * kv_groups) / kv_groups)
    assert result.constraints.ok, result.constraints.violations
    assert result.constraints_rounded is not None
    ms = result.ratio_trace()
    assert np.abs(ms[-1] - ms[-30]).max() < 0.02          # iterates settle
    # objective along the path, on a fixed held-out set: decreases then settles
    path = [evaluate_average_mse(problem, ms[t], 150, seed=11).mean for t in (0, 100, 200, 299)]
    assert path[-1] < path[0]
    assert abs(path[-1] - path[-2]) < 0.5 * (path[0] - path[-1])
    evals = {name: evaluate_average_mse(problem, m, 500, seed=1) for name, m in
             [("ssca", result.ratios), ("equal", equal_split(4)),
              ("proportional", compute_proportional_split(problem.nodes))]}
    for base in ("equal", "proportional"):
        diff = evals[base].values - evals["ssca"].values   # paired: same held-out channels
        assert diff.mean() > 3 * diff.std(ddof=1) / np.sqrt(diff.size), base
