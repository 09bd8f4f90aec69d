"""Model assignment under heterogeneous nodes: SSCA vs equal split vs compute-proportional split.

Setting (defaults; `testbed.optim.assign_problem.heterogeneous_4node_problem`): Llama-2-7B (fp16)
on 2x Raspberry Pi 5 + Jetson Orin Nano + Jetson Orin NX, single-antenna nodes, N_r = 2 receive
antennas, sigma^2 = 0.1 (power units), MMSE transceiver per channel draw; each node's transmit
power per channel use is what its per-token energy budget leaves after computing its share m_n.

* SSCA (`ssca_assign`, ``--iters`` iterations): convergence trace of the sampled MSE and the
  running objective estimate, plus the held-out objective at a few iterates along the path.
* The three assignments (SSCA, equal, compute-proportional) are each evaluated by the average
  MSE over the same ``--draws`` (>= 500 by default) held-out channel draws, with the paired
  difference to SSCA and its standard error, and checked against simplex, memory and energy
  constraints.
* Sharding-rounded ratios: each assignment rounded to what the tensor-parallel split can realize
  for Llama-2-7B (whole KV-head groups for attention, columns for the MLP; `testbed.llm.plan`),
  as the fraction of split parameters each node holds, checked and evaluated again.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from testbed.errors import ConfigError

NAME = "assignment"
HELP = "SSCA model assignment vs equal / compute-proportional splits on heterogeneous nodes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options: --iters, --draws, --rx-antennas, --noise-var, --path-draws."""
    parser.add_argument("--iters", type=int, default=300, help="SSCA iterations (default 300)")
    parser.add_argument("--draws", type=int, default=1000, help="held-out channel draws (default 1000)")
    parser.add_argument("--path-draws", type=int, default=200,
                        help="held-out draws per checkpoint of the SSCA path (default 200)")
    parser.add_argument("--rx-antennas", type=int, default=2, dest="n_rx", metavar="N_R",
                        deprecated=("--n-rx",), help="receive antennas N_r (default 2)")
    parser.add_argument("--noise-var", type=float, default=0.1, help="sigma^2, linear power units (default 0.1)")


def llama2_7b_arch():
    """`ArchSpec` of Llama-2-7B built from `LLAMA2_7B` layer shapes (for sharding-plan rounding)."""
    from testbed.llm.plan import ArchSpec
    from testbed.optim.latency_shapes import LLAMA2_7B as s

    return ArchSpec(model_type="llama", hidden_size=s.hidden_size, num_layers=s.num_layers,
                    num_heads=s.num_heads, num_kv_heads=s.num_kv_heads, head_dim=s.head_dim,
                    intermediate_size=s.intermediate_size, vocab_size=s.vocab_size, rms_norm_eps=1e-5,
                    hidden_act="silu", qkv_bias=False, o_bias=False, mlp_bias=False, down_bias=False,
                    tie_word_embeddings=False, sliding_windows=(None,) * s.num_layers)


def sharding_rounded(m: np.ndarray, arch=None) -> tuple[np.ndarray, list[dict]]:
    """Round ratios m (N,) to the split `make_plan` realizes: returns (fractions of split parameters
    held per node (N,), per-node plan rows {kv_groups, query_heads, mlp_columns, params})."""
    from testbed.llm.plan import make_plan

    plan = make_plan(arch or llama2_7b_arch(), np.asarray(m, dtype=float) / np.sum(m))
    counts = np.array([n.param_count for n in plan.nodes], dtype=float)
    rows = [{"kv_groups": len(n.kv_groups), "query_heads": len(n.query_heads),
             "mlp_columns": len(n.mlp_columns),
             "params": n.param_count} for n in plan.nodes]
    return counts / counts.sum(), rows


def run(args: argparse.Namespace, run_dir: Path) -> dict:
    """Run SSCA, evaluate the three assignments (raw and sharding-rounded), plot, return results."""
    from testbed.optim.assign_problem import (check_constraints, compute_proportional_split, equal_split,
                                              heterogeneous_4node_problem)
    from testbed.optim.assignment import evaluate_average_mse, ssca_assign

    iters, draws, path_draws = (30, 40, 20) if args.quick else (args.iters, args.draws, args.path_draws)
    if iters < 1 or draws < 2 or path_draws < 2:
        raise ConfigError("need --iters >= 1, --draws >= 2 and --path-draws >= 2")
    problem = heterogeneous_4node_problem(n_rx=args.n_rx, n_tx=1, noise_var=args.noise_var)
    result = ssca_assign(problem, n_iter=iters, seed=args.seed)
    cands = {"ssca": result.ratios, "equal": equal_split(problem.n_nodes),
             "compute-proportional": compute_proportional_split(problem.nodes)}
    out, evals = {}, {}
    for name, m in cands.items():
        rep = check_constraints(m, problem)
        ev = evaluate_average_mse(problem, m, draws, seed=args.seed + 1) if rep.ok else None
        evals[name] = ev
        mr, plan_rows = sharding_rounded(m)
        rep_r = check_constraints(mr, problem)
        ev_r = evaluate_average_mse(problem, mr, draws, seed=args.seed + 1) if rep_r.ok else None
        out[name] = {"ratios": m, "power": rep.power, "constraints": _report(rep),
                     "avg_mse": None if ev is None else ev.mean, "stderr": None if ev is None else ev.stderr,
                     "rounded_ratios": mr, "rounded_plan": plan_rows, "rounded_constraints": _report(rep_r),
                     "rounded_avg_mse": None if ev_r is None else ev_r.mean}
    for name in ("equal", "compute-proportional"):
        if evals[name] is not None and evals["ssca"] is not None:
            d = evals[name].values - evals["ssca"].values
            out[name]["minus_ssca"] = {"mean": float(d.mean()), "stderr": float(d.std(ddof=1) / np.sqrt(d.size)),
                                       "percent_lower_with_ssca": float(100 * d.mean() / evals[name].mean)}
    checkpoints = sorted({0, iters // 10, iters // 3, iters - 1})
    trace_m = result.ratio_trace()
    path = [evaluate_average_mse(problem, trace_m[t], path_draws, seed=args.seed + 2).mean for t in checkpoints]
    _plot(run_dir, result, checkpoints, path, out, draws)
    summary = [f"{name}: m={np.round(r['ratios'], 3).tolist()} avg MSE={r['avg_mse']:.4f}"
               f" (rounded {np.round(r['rounded_ratios'], 3).tolist()}: {r['rounded_avg_mse']}) "
               f"constraints {'ok' if r['constraints']['ok'] else r['constraints']['violations']}"
               for name, r in out.items()]
    summary += [f"{n} - ssca = {out[n]['minus_ssca']['mean']:.4f} +- {out[n]['minus_ssca']['stderr']:.4f} "
                f"({out[n]['minus_ssca']['percent_lower_with_ssca']:.1f}% lower with SSCA)"
                for n in ("equal", "compute-proportional") if "minus_ssca" in out[n]]
    return {"nodes": [nd.name for nd in problem.nodes], "n_rx": problem.n_rx, "noise_var": problem.noise_var,
            "method": problem.method, "upper_bounds": problem.upper_bounds(), "iters": iters, "draws": draws,
            "ssca_wall_time_s": result.wall_time_s, "tau": result.tau,
            "trace": {"sample_mse": [e.sample_mse for e in result.trace],
                      "objective_estimate": result.objective_trace(), "ratios": trace_m},
            "path_checkpoints": checkpoints, "path_heldout_mse": path, "assignments": out, "summary": summary}


def _report(rep) -> dict:
    return {"ok": rep.ok, "violations": list(rep.violations), "memory_slack_bytes": rep.memory_slack_bytes,
            "energy_slack_j": rep.energy_slack_j, "simplex_error": rep.simplex_error}


def _plot(run_dir: Path, result, checkpoints, path, out, draws) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(1, result.n_iter + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    ax1.plot(t, [e.sample_mse for e in result.trace], alpha=0.3, label="sampled MSE at m_t")
    ax1.plot(t, result.objective_trace(), label="running objective estimate")
    ax1.plot(np.array(checkpoints) + 1, path, "ks--", label="held-out average MSE at m_t")
    for name, style in (("equal", "r:"), ("compute-proportional", "g:")):
        if out[name]["avg_mse"] is not None:
            ax1.axhline(out[name]["avg_mse"], linestyle=style[1], color=style[0],
                        label=f"{name} split ({draws} held-out draws)")
    ax1.set_yscale("log")
    ax1.set_xlabel("SSCA iteration t")
    ax1.set_ylabel("MSE per channel use (linear)")
    ax1.set_title("SSCA convergence")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=7)
    for i, row in enumerate(result.ratio_trace().T):
        ax2.plot(t, row, label=f"node {i}")
    ax2.set_xlabel("SSCA iteration t")
    ax2.set_ylabel("assignment fraction m_n")
    ax2.set_title("assignment iterates")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "assignment_convergence.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    names = list(out)
    vals = [out[n]["avg_mse"] or np.nan for n in names]
    errs = [out[n]["stderr"] or 0.0 for n in names]
    ax.bar(names, vals, yerr=errs, capsize=4, color=["C0", "C3", "C2"])
    ax.set_ylabel(f"average MSE over {draws} held-out draws (linear)")
    ax.set_title("assignments on the heterogeneous 4-node preset")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "assignment_mse.png", dpi=120)
    plt.close(fig)
