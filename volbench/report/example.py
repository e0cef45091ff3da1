"""A synthetic run with realistic numbers and every series kind, for documentation, renderer
tests and looking at the report (``volbench report`` on its saved JSON).

The numbers are made up but shaped like the papers': the MNIST MLP of Fan et al. (n = 235,146,
alpha = -0.1835, Table 1), log V = n * log r_max - log K (their eq. 3 with K directions), the
mod-97 MLP (n = 73,097) for grokking checkpoints, and the digits MLP of Scherlis & Belrose
(n = 4,810) whose log V against log cutoff has slope n/2 (claim S8). Nothing here was measured.

Example:
    >>> run = example_run(seed=0)
    >>> sorted({s["kind"] for r in run.results for s in r.series})[:3]
    ['radius_hist', 'volume_vs_checkpoint', 'volume_vs_data']
"""
from __future__ import annotations

import math

from volbench.results import CaseResult, RunReport, Statement, Statistic

__all__ = ["example_run", "example_environment"]

_N_MNIST = 235_146  # 784*256 + 256 + 256*128 + 128 + 128*10 + 10
_N_MOD97 = 73_097  # 194*250 + 250 + 250*97 + 97
_N_DIGITS = 4_810  # 64*64 + 64 + 64*10 + 10 (Scherlis & Belrose's digits MLP)
_K = 500


def example_environment(device: str = "cpu") -> dict:
    """An environment block like :func:`~volbench.report.envinfo.collect_environment`'s."""
    gpu = device.startswith("cuda")
    return {
        "volbench": "0.1.0", "python": "3.11.7", "platform": "Linux-6.8-x86_64-with-glibc2.39",
        "torch": "2.13.0+cu128" if gpu else "2.13.0+cpu", "numpy": "2.4.6",
        "cuda_available": gpu, "cuda": "12.8" if gpu else None, "cudnn": 91002 if gpu else None,
        "cuda_driver": "570.124.06" if gpu else None,
        "devices": ([{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.19,
                      "capability": "9.0"}] if gpu else []),
        "tf32_matmul": False, "tf32_cudnn": True, "float32_matmul_precision": "highest",
        "torch_threads": 16 if gpu else 2, "cpu": "AMD EPYC 7B13", "cpu_count": 16 if gpu else 2,
        "hostname": "bench-h100" if gpu else "laptop", "git_commit": "0" * 40, "git_dirty": False,
        "command": "python -m pytest cases/ --tier smoke", "cuda_visible_devices": None,
        "tier": "smoke", "seeds": {"model": [0, 1, 2], "data": [10, 11, 12], "directions": [0]},
    }


def example_run(seed: int = 0, *, device: str = "cpu", time_scale: float = 1.0,
                run_id: str = "20250101T120000Z-5eed00") -> RunReport:
    """A complete synthetic run (deterministic given ``seed``).

    Args:
        seed: seed of the numpy generator drawing the noise.
        device: device written into every result and the environment ("cpu" or "cuda:0").
        time_scale: multiplies every result's seconds (to fake faster hardware).
        run_id: the run's id.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    seeds = {"model": [0, 1, 2], "data": [10, 11, 12], "directions": 0}
    results = []

    def add(**kwargs):
        kwargs.setdefault("device", device)
        kwargs.setdefault("seeds", seeds)
        kwargs.setdefault("outcome", "passed")
        if kwargs.get("seconds"):
            # where the seconds went (cases/_support.finish fills this from volbench.lab.LEDGER): 70%
            # in measurements computed now, 20% training, 10% other; one measurement served from the
            # cache. The cost evaluations do not depend on the hardware, the seconds do.
            secs = kwargs["seconds"]
            kwargs.setdefault("timing", {
                "wall_seconds": round(secs * time_scale, 3),
                "measured_seconds": round(0.7 * secs * time_scale, 3),
                "measured_cost_evals": int(round(400 * secs)),
                "measurements_computed": 3, "measurements_served": 1,
                "served_seconds": round(0.25 * secs, 3),
                "trained_seconds": round(0.2 * secs * time_scale, 3), "minima_trained": 1, "minima_served": 2,
            })
        if kwargs.get("seconds") is not None:
            kwargs["seconds"] = round(kwargs["seconds"] * time_scale, 3)
        results.append(CaseResult(**kwargs))

    # F5: power law between the found minimum's volume and D, both estimators.
    sizes = np.array([60, 600, 6_000, 60_000], dtype=float)
    for estimator, alpha, secs in (("principled", -0.181, 41.2), ("reference", -0.176, 118.5)):
        log_r = -0.9 + alpha * np.log(sizes / 60)
        per_seed = log_r[:, None] + rng.normal(0, 0.012, size=(sizes.size, 3))
        log_v = _N_MNIST * per_seed - math.log(_K)
        mean = log_v.mean(axis=1)
        half = 4.30 * log_v.std(axis=1, ddof=1) / math.sqrt(3)  # t(0.975, 2 dof) = 4.30
        slope, intercept = np.polyfit(np.log(sizes), mean, 1)
        resid = mean - (slope * np.log(sizes) + intercept)
        se = math.sqrt(resid @ resid / (sizes.size - 2) / np.sum((np.log(sizes)
                                                                     - np.log(sizes).mean()) ** 2))
        low, high = slope - 4.30 * se, slope + 4.30 * se
        r2 = 1 - resid @ resid / np.sum((mean - mean.mean()) ** 2)
        alpha_stat = Statistic("alpha", slope / _N_MNIST, low=low / _N_MNIST, high=high / _N_MNIST,
                               level=0.95)
        statements = [
            Statement("a", "alpha < 0 and log V linear in log D", "pass", alpha_stat,
                      rule="pass if the 95% interval of alpha lies below 0 and R^2 >= 0.9",
                      paper="alpha = -0.1835 (Table 1, MNIST MLP)", numbers={"r2": float(r2)}),
            Statement("b.tau", "tau 0.01 steeper than tau 0.1", "not-judged",
                      reason="a second threshold doubles the measurements (~40 min on 2 cores); nightly tier",
                      paper="alpha = -0.2647 at tau 0.01 (Table 2)"),
        ]
        add(claim="F5", case_id="F5-power-law[mnist-mlp]", estimator=estimator,
            title="Power law between volume and dataset size", verdict="pass",
            statements=statements, statistic=alpha_stat,
            rule="pass if the 95% interval of alpha lies below 0 and R^2 >= 0.9",
            paper_value=-0.1835, seconds=secs,
            numbers={"n_params": _N_MNIST, "r2": float(r2), "dataset_sizes": sizes.tolist(),
                     "log_volume_mean": mean.tolist()},
            series=[{"kind": "volume_vs_data", "x": sizes.tolist(), "y": mean.tolist(),
                     "y_low": (mean - half).tolist(), "y_high": (mean + half).tolist(),
                     "points_x": np.repeat(sizes, 3).tolist(),
                     "points_y": log_v.ravel().tolist(),
                     "fit": {"slope": float(slope), "intercept": float(intercept),
                             "slope_low": float(low), "slope_high": float(high),
                             "r2": float(r2), "level": 0.95},
                     "n_params": _N_MNIST, "paper_alpha": -0.1835, "label": estimator}])

    # F2: radius distributions of minima trained on more data, in the 60-example landscape.
    hist = []
    for i, d in enumerate((60, 600, 6_000)):
        log_radii = rng.normal(-0.9 - 0.35 * i, 0.08 + 0.02 * i, size=_K)
        if i == 0:
            log_radii[:3] = math.inf  # censored: still inside at max_radius
        hist.append({"kind": "radius_hist", "minimum": f"trained on D={d}",
                     "landscape": "D=60", "log_radii": log_radii.tolist()})
    add(claim="F2", case_id="F2-more-data-smaller[mnist-mlp]", estimator="principled",
        title="Minima trained on more data are smaller in the small-data landscape",
        verdict="pass",
        statistic=Statistic("min gap in mean log radius", 0.35, low=0.33, high=0.37, level=0.95),
        rule="pass if the own-data minimum's mean, max and min log radius exceed every larger-data "
             "minimum's", seconds=12.4, series=hist,
        numbers={"censored_directions": 3, "directions": _K})

    # F6: each minimum across growing landscapes; the D=60 minimum leaves the threshold.
    landscapes = [60.0, 600.0, 6_000.0, 60_000.0]
    curves = []
    for i, d in enumerate((60, 600, 6_000)):
        # in landscape j the minimum trained on it (i == j) is the largest; a minimum shrinks
        # fast in landscapes holding data it was not trained on (j > i)
        y = [_N_MNIST * (-0.9 - 0.3 * j - (0.2 * (i - j) if i >= j else 0.4 * (j - i) ** 1.3))
             for j in range(4)]
        if i == 0:
            y[2:] = [-math.inf, -math.inf]
        curves.append({"kind": "volume_vs_landscape", "minimum": f"trained on D={d}",
                       "x": landscapes, "y": y, "own_x": float(d)})
    add(claim="F6", case_id="F6-shrink-with-data[mnist-mlp]", estimator="reference",
        title="Minima shrink when data is added", verdict="pass",
        statistic=Statistic("ordering violations", 0.0), rule="pass if no minimum's log V rises "
        "across landscapes and the ordering holds until volume 0", seconds=33.0, series=curves)

    # F10: grokking checkpoints on mod-97 (volume falls, test accuracy rises late).
    epochs = [200, 500, 1_000, 2_000, 3_000, 4_000, 5_000]
    log_r = np.array([-0.30, -0.38, -0.45, -0.55, -0.63, -0.70, -0.74])
    add(claim="F10", case_id="F10-grokking[mod97]", estimator="principled",
        title="Grokking: volume shrinks while test accuracy jumps", verdict="inconclusive",
        statistic=Statistic("Spearman rho(epoch, log V)", -1.0),
        rule="pass if log V decreases monotonically and held-out accuracy rises above 0.9",
        reason="held-out accuracy reached 0.62 by epoch 5,000 at smoke size (30% of pairs); the "
               "jump is not complete", seconds=75.3,
        series=[{"kind": "volume_vs_checkpoint", "x": epochs,
                 "y": (_N_MOD97 * log_r - math.log(_K)).tolist(),
                 "test_accuracy": [0.02, 0.03, 0.05, 0.12, 0.31, 0.50, 0.62],
                 "train_accuracy": [1.0] * 7,
                 "train_loss": [3.1e-4, 2.2e-4, 1.8e-4, 1.5e-4, 1.4e-4, 1.2e-4, 1.1e-4]}])

    # E1: more directions, larger log-estimate (smooth max over more samples).
    ks = [10, 20, 50, 100, 200, 500]
    base = _N_MNIST * -0.9
    y = [base + 1_100 * math.log(k) for k in ks]
    add(claim="E1", case_id="E1-more-directions[mnist-mlp]", estimator="principled",
        title="The log-volume estimate grows with the number of directions", verdict="pass",
        statistic=Statistic("log V(500) - log V(50)", y[-1] - y[2], low=1_800.0, high=3_200.0,
                            level=0.95, unit="nats"),
        rule="pass if the 95% interval of log V(500) - log V(50) lies above 0", seconds=9.8,
        series=[{"kind": "volume_vs_directions", "x": ks, "y": y,
                 "y_low": [v - 900 / math.sqrt(k) * 10 for v, k in zip(y, ks)],
                 "y_high": [v + 900 / math.sqrt(k) * 10 for v, k in zip(y, ks)]}])

    # S8: log V against log cutoff has slope n/2 on a quadratic cost.
    cut = [-6.0, -5.0, -4.0, -3.0, -2.0]
    add(claim="S8", case_id="S8-cutoff-slope[quadratic]", estimator="principled",
        title="Cutoff scaling: slope n/2 for a quadratic cost", verdict="pass",
        statistic=Statistic("slope / (n/2)", 1.0004, low=0.998, high=1.003, level=0.95),
        rule="pass if the 95% interval of slope/(n/2) contains 1", seconds=3.1,
        series=[{"kind": "xy", "x": cut, "y": [_N_DIGITS / 2 * c - 1234.5 for c in cut],
                 "x_label": "log cutoff (nats)", "y_label": "log V (nats)",
                 "label": "quadratic, n = 4,810"}])

    add(claim="F12", case_id="F12-toy-scale-invariance", estimator="principled",
        title="2-D basin area independent of b", verdict="pass",
        statistic=Statistic("max relative error", 2.1e-4),
        rule="pass if the area matches the closed form within 1e-3 for every b and s",
        seconds=0.4, numbers={"b": [0.5, 1.0, 2.0, 4.0], "s": [0.1, 0.5]})
    rho = Statistic("Spearman rho(poison, log V)", -0.4, low=-0.9, high=0.5, level=0.95)
    add(claim="F1", case_id="F1-poison-smaller[swiss-mlp]", estimator="reference",
        title="Poisoned minima are smaller", verdict="fail",
        statements=[
            Statement("a", "clean minimum larger than every poisoned one", "fail",
                      Statistic("min log V difference (clean - poisoned)", -20.0, low=-60.0, high=-5.0,
                                level=0.95, unit="nats"),
                      rule="pass if the 95% interval lies above 0", paper="Fig 6"),
            Statement("b", "log V decreases with the poison fraction", "inconclusive", rho,
                      rule="pass if the 95% interval of rho lies below 0",
                      reason="the interval [-0.9, 0.5] straddles 0 with 3 seeds"),
        ],
        statistic=rho,
        rule="pass if the 95% interval of rho lies below 0", seconds=6.2,
        series=[{"kind": "xy", "x": [0.0, 0.03, 0.1, 0.3], "y": [-2510.0, -2490.0, -2630.0,
                                                                 -2580.0],
                 "x_label": "poisoned fraction", "y_label": "log V (nats)"}])
    add(claim="Z4", case_id="Z4-boolean-sampling", title="Sharpness tracks sampled volume",
        verdict="skip", reason="nightly tier only: needs 1e8 sampled networks", outcome="skipped",
        seconds=0.0, device="")
    add(claim="S5", case_id="S5-preconditioners[digits-mlp]", estimator="principled",
        verdict="error", outcome="failed", seconds=2.7,
        reason="failed before recording a result: RuntimeError: Hessian diagonal has NaN entries")
    return RunReport(run_id=run_id, started="2025-01-01T12:00:00Z",
                     finished="2025-01-01T12:05:12Z", status="complete", exit_status=1,
                     environment=example_environment(device), results=tuple(results))
