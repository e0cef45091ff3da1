"""Coverage of the claims' intervals, checked by simulation where the answer is known.

A population of quadratic basins stands in for "the minima that training finds": seed s of
replication r draws basin a_s with curvature eigenvalues lambda_i = exp(mu_a + u_s + e_i)
(u_s ~ N(0, seed_sd^2) a seed effect shared by the seed's two basins, e_i ~ N(0, spread^2)
i.i.d. anisotropy) and basin b_s the same way with mu_b. An ellipsoid's exact log-volume is
log V_n + (n/2) log(2 tau) - (1/2) sum_i log lambda_i, so the population mean of
log V_a - log V_b is exactly -(n/2)(mu_a - mu_b) =: effect. Since lambda^b is distributed as
exp(mu_b - mu_a) lambda^a and a scaled ellipsoid scales every radius alike, the estimator's
log-space bias (Jensen; claim S1) has the same distribution for both basins: the per-seed paired
difference targets ``effect`` up to the search's resolution, which the interval's bracket covers.

Each seed measures its two basins with its own direction seed, shared by both (paired), as the
cases do. The interval of :func:`volbench.claims.stats.aggregate` is then formed from S seeds and
the fraction of replications whose interval holds ``effect`` is its coverage. A slope design does
the same for trends: log lambda shifted by beta * x at x = 0, 1, 2 gives a known slope of
log V on x of -(n/2) beta.

Example (few replications: the doctest only shows the call):
    >>> res = simulate_coverage(CoverageDesign(replications=4, n_seeds=3))
    >>> 0.0 <= res.coverage <= 1.0 and res.replications == 4
    True
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from volbench.claims.stats import Terms, aggregate, paired_difference, seed_slope

__all__ = ["CoverageDesign", "CoverageResult", "simulate_coverage"]


@dataclass(frozen=True)
class CoverageDesign:
    """One simulation design (defaults: a small, fast design with visible direction noise).

    Attributes:
        estimator: "principled" (``estimate_log_volume``) or "reference" (the paper's grid).
        kind: "difference" (two basins per seed) or "slope" (three basins at x = 0, 1, 2).
        n: parameters (dimensions).
        n_directions: K per measurement.
        n_seeds: S seeds per replication.
        spread: sd of the log-eigenvalues within a basin (anisotropy: the source of direction noise).
        seed_sd: sd of the seed effect on the mean log-eigenvalue (seed-to-seed variation).
        effect: the true population difference (nats; "difference") or slope per unit x ("slope").
        threshold: tau of every basin.
        rtol: the principled search's rtol (coarse on purpose: its bracket must be in the margin).
        level: nominal coverage of the intervals.
        replications: independent replications (fresh seeds each).
        seed: base seed of the whole simulation.
    """

    estimator: str = "principled"
    kind: str = "difference"
    n: int = 10
    n_directions: int = 24
    n_seeds: int = 4
    spread: float = 0.5
    seed_sd: float = 0.3
    effect: float = 1.5
    threshold: float = 0.5
    rtol: float = 1e-2
    level: float = 0.95
    replications: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.estimator not in ("principled", "reference"):
            raise ValueError(f"estimator must be 'principled' or 'reference', got {self.estimator!r}")
        if self.kind not in ("difference", "slope"):
            raise ValueError(f"kind must be 'difference' or 'slope', got {self.kind!r}")
        if self.n_seeds < 2 or self.replications < 1:
            raise ValueError("need at least 2 seeds and 1 replication")


@dataclass(frozen=True)
class CoverageResult:
    design: CoverageDesign
    replications: int
    covered: int
    coverage: float
    mean_width: float
    wrong_sign_decisions: int  # intervals entirely on the wrong side of 0 (a false pass or fail)

    def as_dict(self) -> dict:
        return {**asdict(self), "design": asdict(self.design)}


def _measure(curvature: torch.Tensor, design: CoverageDesign, direction_seed: int) -> Terms:
    from volbench.crosscheck.oracles import QuadraticCost
    from volbench.estimator import estimate_log_volume
    from volbench.estimator.reference import reference_log_volume

    cost = QuadraticCost(curvature)
    anchor = torch.zeros(design.n, dtype=torch.float64)
    pairing = (design.estimator, "isotropic", direction_seed, design.n_directions)
    if design.estimator == "principled":
        est = estimate_log_volume(cost, anchor, threshold=design.threshold, n_directions=design.n_directions,
                                  rtol=design.rtol, seed=direction_seed, dtype=torch.float64)
        return Terms(est.log_terms.numpy(), est.log_terms.numpy(), est.log_terms_upper.numpy(), pairing=pairing)
    est = reference_log_volume(cost, anchor, threshold=design.threshold, n_directions=design.n_directions,
                               seed=direction_seed, dtype=torch.float64)
    terms = (design.n * est.log_radii).numpy()
    return Terms(terms, (design.n * est.log_radii_lower).numpy(), terms, pairing=pairing)


def _curvature(rng: np.random.Generator, mu: float, seed_effect: float, design: CoverageDesign) -> torch.Tensor:
    return torch.from_numpy(np.exp(mu + seed_effect + rng.normal(0.0, design.spread, size=design.n)))


def simulate_coverage(design: CoverageDesign) -> CoverageResult:
    """Run ``design.replications`` replications and count how often the interval holds the truth."""
    n = design.n
    # Curvatures centred so that radii sqrt(2 tau / lambda) sit mid-grid for the reference
    # (raw directions have norm ~sqrt(n); the grid's coefficients run to 1).
    mu0 = math.log(2 * design.threshold / (0.35 ** 2 * n))
    covered, widths, wrong = 0, [], 0
    for r in range(design.replications):
        rng = np.random.default_rng([design.seed, r])
        estimates = []
        for s in range(design.n_seeds):
            u = rng.normal(0.0, design.seed_sd)
            direction_seed = r * 1000 + s
            if design.kind == "difference":
                # effect = -(n/2)(mu_a - mu_b): basin a is the larger one for effect > 0.
                mu_a, mu_b = mu0 - design.effect / n, mu0 + design.effect / n
                ta = _measure(_curvature(rng, mu_a, u, design), design, direction_seed)
                tb = _measure(_curvature(rng, mu_b, u, design), design, direction_seed)
                estimates.append(paired_difference(ta, tb, seed=direction_seed))
            else:
                beta = -2.0 * design.effect / n  # slope of log V on x is -(n/2) beta = effect
                xs = [0.0, 1.0, 2.0]
                ts = [_measure(_curvature(rng, mu0 + beta * (x - 1.0), u, design), design, direction_seed) for x in xs]
                estimates.append(seed_slope(xs, ts, seed=direction_seed))
        lo, hi = aggregate(estimates).interval(design.level)
        if math.isfinite(lo) and math.isfinite(hi):
            widths.append(hi - lo)
        covered += int(lo <= design.effect <= hi)
        wrong += int((design.effect > 0 and hi < 0) or (design.effect < 0 and lo > 0))
    return CoverageResult(design=design, replications=design.replications, covered=covered,
                          coverage=covered / design.replications,
                          mean_width=float(np.mean(widths)) if widths else math.nan, wrong_sign_decisions=wrong)


def coverage_table(replications: int = 400, seed: int = 0) -> list[dict]:
    """The table of docs/STATISTICS.md: both estimators, difference and slope designs."""
    rows = []
    for estimator in ("principled", "reference"):
        for kind in ("difference", "slope"):
            res = simulate_coverage(CoverageDesign(estimator=estimator, kind=kind, replications=replications,
                                                   seed=seed))
            rows.append({"estimator": estimator, "kind": kind, "replications": res.replications,
                         "coverage": res.coverage, "mean_width": res.mean_width,
                         "wrong_sign_decisions": res.wrong_sign_decisions})
    return rows


if __name__ == "__main__":  # python -m volbench.claims.coverage [replications]
    import sys

    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    print("| design (n = 10, K = 24, S = 4) | replications | coverage | mean width | wrong-sign decisions |")
    print("|---|---|---|---|---|")
    for row in coverage_table(reps):
        print(f"| {row['estimator']}, {row['kind']} | {row['replications']} | {row['coverage']:.3f} | "
              f"{row['mean_width']:.3g} | {row['wrong_sign_decisions']} |")
