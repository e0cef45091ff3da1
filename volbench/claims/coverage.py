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

At the scale of the verdicts (n = 235,146, the MNIST MLP) :func:`simulate_scale` does the same
with radii in closed form (diagonal quadratics with log-normal spectra calibrated to the MNIST
MLP's spread of n log r, a fresh spectrum per seed), for both estimators, an effect and a null
design, and every margin fraction of the paper's grid; :func:`choose_margin` is the rule that set
``stats.REFERENCE_MARGIN_FRACTION`` (docs/STATISTICS.md, "Coverage where the verdicts live").

Example (few replications: the doctest only shows the call):
    >>> res = simulate_coverage(CoverageDesign(replications=4, n_seeds=3))
    >>> 0.0 <= res.coverage <= 1.0 and res.replications == 4
    True
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from volbench.claims.stats import Terms, aggregate, margin_fraction_for, paired_difference, seed_slope

__all__ = ["CoverageDesign", "CoverageResult", "simulate_coverage", "coverage_table", "MNIST_MLP_PARAMS", "MNIST_SIGMA",
           "ScaleDesign", "simulate_scale", "choose_margin", "quadratic_forms", "exit_log_radii", "grid_crossing",
           "principled_terms", "reference_terms", "direction_spread", "simulated_spread", "calibrate_sigma",
           "mnist_spread", "format_scale_table"]


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
    # The margin the cases' reference intervals use (Terms.from_measurement).
    return Terms(terms, (design.n * est.log_radii_lower).numpy(), terms, pairing=pairing,
                 margin_fraction=margin_fraction_for("reference"))


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


# ============================================================================ at the scale of the verdicts
#
# The small design above runs the real estimators at n = 10. The verdicts live at n = 235,146 (the
# MNIST MLP 784-256-128-10) with K = 64..500 directions, where log V is the log-mean-exp of terms
# n log r that differ by tens of thousands of nats from ray to ray, so it sits near its largest
# term, and where one step of the paper's grid is ~15,000-27,000 nats. There the same intervals
# are checked with radii in closed form: for the cost 1/2 sum_i lambda_i theta_i^2 and threshold
# tau, the exit radius along a unit direction u is exactly r = sqrt(2 tau / sum_i lambda_i u_i^2),
# and the paper's grid crosses along a raw Gaussian g at the first c_j with 1/2 c_j^2 g^T Lambda g
# > tau. The terms go through the same Terms / paired_difference / aggregate code as the cases.

#: Parameters of the MNIST MLP 784-256-128-10, where the main paper's verdicts live.
MNIST_MLP_PARAMS = 235_146
#: sigma of the log-normal curvature spectrum at n = 235,146 whose direction-to-direction spread
#: of n log r (sd over K = 64 directions, and largest minus median term) matches the MNIST MLP's
#: (``calibrate_sigma`` against ``mnist_spread``; docs/STATISTICS.md, "Coverage where the verdicts
#: live").
MNIST_SIGMA = 4.875


def quadratic_forms(spectra: np.ndarray, n_directions: int, rng: np.random.Generator, *,
                    exact_top: int | None = None, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """For K raw Gaussian directions g_k ~ N(0, I_n), shared by every spectrum (paired):
    (||g_k||^2 [K], g_k^T diag(w) g_k [m, K] for each row w of ``spectra`` [m, n]).

    ``exact_top`` None draws every coordinate (float32 draws, float64 sums, ``chunk`` directions
    at a time: K x n floats would be 60 MB at K = 64, n = 235,146). ``exact_top`` M draws the
    coordinates among the M largest entries of any row; the other coordinates (the bulk)
    contribute through their sums, drawn jointly normal with their exact means sum_i w_i and
    covariances 2 sum_i w_i w'_i (the central limit theorem over ~n bulk terms, each far below the
    sum's standard deviation; ``tests/test_claims_stats.py`` compares both ways). Heavy-tailed
    spectra put the quadratic form's fluctuations in their top eigenvalues, which are drawn.
    """
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    m, n = spectra.shape
    K = int(n_directions)
    weights = np.concatenate([np.ones((1, n)), spectra], axis=0)  # row 0: ||g||^2
    out = np.zeros((m + 1, K), dtype=np.float64)
    if exact_top is None or exact_top * m >= n:
        exact = np.arange(n)
    else:
        top = np.unique(np.concatenate([np.argpartition(w, n - exact_top)[n - exact_top:] for w in spectra]))
        bulk = np.ones(n, dtype=bool)
        bulk[top] = False
        wb = weights[:, bulk]
        mean = wb.sum(axis=1)
        cov = 2.0 * (wb @ wb.T)
        scale = np.sqrt(np.diag(cov))
        corr = cov / np.outer(scale, scale)
        e, v = np.linalg.eigh(corr)
        root = (v * np.sqrt(np.clip(e, 0.0, None))) * scale[:, None]  # root @ root.T == cov
        out += mean[:, None] + root @ rng.standard_normal((m + 1, K))
        exact = top
    w_exact = weights[:, exact].T  # [E, m + 1]
    for k0 in range(0, K, chunk):
        g = rng.standard_normal((min(K, k0 + chunk) - k0, len(exact)), dtype=np.float32).astype(np.float64)
        out[:, k0:k0 + len(g)] += ((g * g) @ w_exact).T
    return out[0], out[1:]


def exit_log_radii(norm2: np.ndarray, q: np.ndarray, threshold: float) -> np.ndarray:
    """log r of the exit from {1/2 theta^T Lambda theta < tau} along the unit direction g/||g||:
    r = sqrt(2 tau ||g||^2 / g^T Lambda g) (``norm2`` = ||g||^2, ``q`` = g^T Lambda g)."""
    return 0.5 * (math.log(2.0 * threshold) + np.log(norm2) - np.log(q))


def grid_crossing(q: np.ndarray, threshold: float, coefficients: np.ndarray | None = None) -> np.ndarray:
    """The paper's crossing index along a raw direction g with g^T Lambda g = ``q``: the first grid
    point j with 1/2 c_j^2 q > tau, i.e. c_j > sqrt(2 tau / q); -1 where no grid point crosses
    (the paper drops that direction)."""
    from volbench.estimator.reference import paper_coefficients

    coef = paper_coefficients().numpy() if coefficients is None else np.asarray(coefficients, dtype=np.float64)
    j = np.searchsorted(coef, np.sqrt(2.0 * threshold / np.asarray(q, dtype=np.float64)), side="right")
    return np.where(j < len(coef), j, -1)


def principled_terms(log_r: np.ndarray, n: int, rtol: float, rng: np.random.Generator, *,
                     pairing: tuple = ()) -> Terms:
    """The principled search's terms for exact exit radii ``log_r``: the search ends with an
    inside radius r_in and an outside radius r_out = r_in (1 + rtol) (its widest bracket) around
    the exit, which sits at a uniformly random position (in log) inside it; the term is
    log(unit ball) + n log r_in, its bracket [that, log(unit ball) + n log r_out], as
    ``Terms.from_measurement`` reads a measurement."""
    from volbench.estimator.measures import log_unit_ball_volume

    log_in = np.asarray(log_r, dtype=np.float64) - rng.random(np.shape(log_r)) * math.log1p(rtol)
    c = log_unit_ball_volume(n)
    terms = c + n * log_in
    return Terms(terms, terms, c + n * (log_in + math.log1p(rtol)), pairing=pairing)


def reference_terms(norm2: np.ndarray, q: np.ndarray, threshold: float, n: int, *, pairing: tuple = (),
                    margin_fraction: float = 1.0, coefficients: np.ndarray | None = None) -> Terms:
    """The paper's terms along raw directions g (||g||^2 = ``norm2``, g^T Lambda g = ``q``): radius
    c_j ||g|| at the crossing index j (:func:`grid_crossing`), bracket [c_(j-1) ||g||, c_j ||g||],
    term n log r (no unit-ball constant), NaN for a direction that never crosses (dropped); with
    ``margin_fraction`` f as ``Terms.from_measurement`` gives a reference measurement."""
    from volbench.estimator.reference import paper_coefficients

    coef = paper_coefficients().numpy() if coefficients is None else np.asarray(coefficients, dtype=np.float64)
    j = grid_crossing(q, threshold, coef)
    kept = j > 0
    log_g = 0.5 * np.log(norm2)
    with np.errstate(divide="ignore"):
        log_c = np.log(coef)
    terms = np.where(kept, n * (log_c[np.where(kept, j, 1)] + log_g), np.nan)
    low = np.where(kept, n * (log_c[np.where(kept, j - 1, 0)] + log_g), np.nan)
    return Terms(terms, low, terms, pairing=pairing, margin_fraction=margin_fraction)


def direction_spread(log_terms: np.ndarray) -> tuple[float, float]:
    """(sd over directions, largest minus median) of one measurement's per-direction terms n log r
    (NaN = dropped, ignored): how far log V's largest term stands out of the rest."""
    t = np.asarray(log_terms, dtype=np.float64)
    t = t[np.isfinite(t)]
    return float(np.std(t, ddof=1)), float(t.max() - np.median(t))


@dataclass(frozen=True)
class ScaleDesign:
    """The closed-form coverage simulation at the scale of the verdicts.

    Per seed: minimum A has curvature eigenvalues lambda_i = exp(mu + sigma z_i), z_i ~ N(0, 1)
    i.i.d. (a fresh spectrum per seed: seed-to-seed variation included); minimum B is A with a
    fraction ``sharp_fraction`` of its eigen-directions ``sharp_factor`` times sharper (effect
    design: the exact log V_A - log V_B is (1/2) m log(factor), m = round(fraction n)); minimum N
    is A re-drawn from the same law (null design: the difference is 0 in distribution). The
    seed's K directions are shared by its three minima (paired) and by both estimators (each is
    judged on its own). mu puts the paper's median crossing index of A at ``crossing_index``
    (Fan et al.: usually 15-20).

    Attributes:
        directions: the K values; a seed draws max(K) directions and smaller K use a prefix.
        seeds: the S values; replication r uses the first S of its max(S) seeds.
        margins: the reference's margin fractions f to evaluate.
        replications: independent replications (intervals) per design.
        expectation_seeds: seeds of the independent simulation that estimates each procedure's
            own expectation E[d] at each K.
        exact_top: coordinates drawn per spectrum (the rest through their joint-normal sums;
            None draws all, see :func:`quadratic_forms`).
    """

    n: int = MNIST_MLP_PARAMS
    directions: tuple[int, ...] = (64, 128)
    seeds: tuple[int, ...] = (5, 10)
    margins: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
    replications: int = 300
    expectation_seeds: int = 4000
    sigma: float = MNIST_SIGMA
    sharp_fraction: float = 0.02
    sharp_factor: float = 4.0
    threshold: float = 0.1
    crossing_index: float = 18.0
    rtol: float = 1e-4
    exact_top: int | None = 2048
    level: float = 0.95
    seed: int = 0

    @property
    def n_sharp(self) -> int:
        return int(round(self.sharp_fraction * self.n))

    @property
    def exact_difference(self) -> float:
        """log V_A - log V_B of the effect design, exactly: (1/2) sum_i log(lambda_B,i / lambda_A,i)."""
        return 0.5 * self.n_sharp * math.log(self.sharp_factor)


def scale_mu(design: ScaleDesign, pilot_seeds: int = 16) -> float:
    """The log-curvature offset mu that puts the median crossing index of minimum A (over a pilot
    of seeds and directions) at ``design.crossing_index``: the exact crossing ratio
    sqrt(2 tau / g^T Lambda g) at its median sits halfway (in j) between grid points j* - 1 and j*."""
    rng = np.random.default_rng([design.seed, 0])
    log_x0 = []
    for _ in range(pilot_seeds):
        lam = np.exp(design.sigma * rng.standard_normal(design.n))
        _, q = quadratic_forms(lam[None], 64, rng, exact_top=design.exact_top)
        log_x0.append(0.5 * (math.log(2 * design.threshold) - np.log(q[0])))
    target = 2.0 * math.log((design.crossing_index - 0.5) / 99.0)  # c = (j / 99)^2 on the paper's grid
    return 2.0 * (float(np.median(np.concatenate(log_x0))) - target)


def _seed_draw(design: ScaleDesign, mu: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One seed: (||g||^2 [K], g^T Lambda g [3, K] for minima A, B (sharper) and N (re-drawn))."""
    n = design.n
    z = rng.standard_normal((2, n))
    lam = np.exp(mu + design.sigma * z)
    lam_b = lam[0].copy()
    # The eigenvalues are i.i.d., so the first m eigen-directions are a uniformly random subset.
    lam_b[:design.n_sharp] *= design.sharp_factor
    return quadratic_forms(np.stack([lam[0], lam_b, lam[1]]), max(design.directions), rng,
                           exact_top=design.exact_top)


def _prefix(t: Terms, k: int, seed_id: int) -> Terms:
    return Terms(t.log_terms[:k], t.low[:k], t.high[:k], pairing=(t.pairing[0], t.pairing[1], seed_id, k),
                 margin_fraction=t.margin_fraction)


def _seed_estimates(design: ScaleDesign, mu: float, rng: np.random.Generator, seed_id: int,
                    margins: tuple[float, ...]) -> dict[tuple, Any]:
    """Every per-seed paired difference of one seed: keys (estimator, "effect" | "null", K, f);
    f is None for the principled search (whole bracket)."""
    norm2, q = _seed_draw(design, mu, rng)
    n, tau, K = design.n, design.threshold, max(design.directions)
    log_r = exit_log_radii(norm2[None], q, tau)
    pr = [principled_terms(log_r[i], n, design.rtol, rng, pairing=("principled", "isotropic", seed_id, K))
          for i in range(3)]
    out: dict[tuple, Any] = {}
    for k in design.directions:
        a, b, nul = (_prefix(t, k, seed_id) for t in pr)
        # n_boot only feeds boot_sd (the power estimate), never the interval.
        out[("principled", "effect", k, None)] = paired_difference(a, b, n_boot=2, seed=seed_id)
        out[("principled", "null", k, None)] = paired_difference(a, nul, n_boot=2, seed=seed_id)
        for f in margins:
            a, b, nul = (reference_terms(norm2[:k], q[i, :k], tau, n, pairing=("reference", "plain", seed_id, k),
                                         margin_fraction=f) for i in range(3))
            out[("reference", "effect", k, f)] = paired_difference(a, b, n_boot=2, seed=seed_id)
            out[("reference", "null", k, f)] = paired_difference(a, nul, n_boot=2, seed=seed_id)
    return out


def _binomial_not_below(covered: int, replications: int, level: float, alpha: float = 0.05) -> bool:
    """True unless the coverage is significantly below ``level``: the one-sided exact binomial test
    of coverage >= level at ``alpha`` does not reject (P(X <= covered) >= alpha)."""
    from scipy import stats

    return bool(stats.binom.cdf(covered, replications, level) >= alpha)


def simulate_scale(design: ScaleDesign, *, progress=None) -> dict[str, Any]:
    """Run the closed-form simulation: the expectations (independent seeds), then
    ``design.replications`` intervals per (estimator, K, S, f) for the effect and the null design.

    Returns {"design", "mu", "median_crossing_index", "expectation": {(estimator, K): (mean, mcse)},
    "rows": [...], "seconds"}; every row holds the coverage of the procedure's own expectation
    and of the exact difference, the decision rate (interval on the side of the own expectation),
    the null's false-decision rate (interval excluding 0) and the mean width.
    """
    import time

    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    mu = scale_mu(design)
    # The expectations: each procedure's point estimate averaged over independent seeds.
    points: dict[tuple, list[float]] = {}
    crossing = []
    for i in range(design.expectation_seeds):
        rng = np.random.default_rng([design.seed, 1, i])
        if i < 16:
            norm2, q = _seed_draw(design, mu, np.random.default_rng([design.seed, 1, i]))
            crossing.append(grid_crossing(q[0], design.threshold))
        est = _seed_estimates(design, mu, rng, i, margins=(1.0,))
        for (e, kind, k, _f), s in est.items():
            points.setdefault((e, kind, k), []).append(s.point)
        if (i + 1) % 250 == 0:
            say(f"expectation seeds {i + 1}/{design.expectation_seeds} ({time.perf_counter() - start:.0f} s)")
    expectation = {key: (float(np.mean(v)), float(np.std(v, ddof=1) / math.sqrt(len(v))), float(np.std(v, ddof=1)))
                   for key, v in points.items()}
    # The replications.
    S_max = max(design.seeds)
    reps: list[list[dict]] = []
    for r in range(design.replications):
        seeds = [_seed_estimates(design, mu, np.random.default_rng([design.seed, 2, r, s]), r * S_max + s,
                                 design.margins) for s in range(S_max)]
        reps.append(seeds)
        if (r + 1) % 10 == 0:
            say(f"replication {r + 1}/{design.replications} ({time.perf_counter() - start:.0f} s)")
    rows = []
    configs = [("principled", None)] + [("reference", f) for f in design.margins]
    for est_name, f in configs:
        for k in design.directions:
            own, own_mcse, _ = expectation[(est_name, "effect", k)]
            for S in design.seeds:
                cov_own = cov_exact = decided = wrong = false_null = 0
                widths = []
                for seeds in reps:
                    lo, hi = aggregate([s[(est_name, "effect", k, f)] for s in seeds[:S]]).interval(design.level)
                    nlo, nhi = aggregate([s[(est_name, "null", k, f)] for s in seeds[:S]]).interval(design.level)
                    cov_own += int(lo <= own <= hi)
                    cov_exact += int(lo <= design.exact_difference <= hi)
                    decided += int(lo > 0 if own > 0 else hi < 0)
                    wrong += int(hi < 0 if own > 0 else lo > 0)
                    false_null += int(nlo > 0 or nhi < 0)
                    widths.append(hi - lo)
                R = design.replications
                rows.append({"estimator": est_name, "margin_fraction": f, "K": k, "S": S, "replications": R,
                             "own_expectation": own, "own_expectation_mcse": own_mcse,
                             "exact_difference": design.exact_difference,
                             "coverage_own": cov_own / R, "coverage_exact": cov_exact / R,
                             "own_not_below": _binomial_not_below(cov_own, R, design.level),
                             "decision_rate": decided / R, "wrong_side": wrong / R,
                             "null_false_decisions": false_null / R, "null_coverage": 1 - false_null / R,
                             "null_not_below": _binomial_not_below(R - false_null, R, design.level),
                             "mean_width": float(np.mean(widths))})
    return {"design": asdict(design), "mu": mu,
            "median_crossing_index": float(np.median(np.concatenate(crossing))),
            "expectation": {f"{e} {kind} K={k}": {"mean": m, "mcse": se, "sd_over_seeds": sd}
                            for (e, kind, k), (m, se, sd) in expectation.items()},
            "rows": rows, "seconds": time.perf_counter() - start}


def choose_margin(rows: list[dict], *, designs: list[tuple[int, int]]) -> float | None:
    """The decision rule for the reference's margin fraction, fixed before the decision rates were
    looked at: the smallest f such that, at every (S, K) of ``designs``, neither the coverage of
    the reference's own expectation (effect design) nor its coverage of 0 (null design) is
    significantly below the nominal level (one-sided exact binomial test at 5%, ``*_not_below``).
    None if no f qualifies."""
    fs = sorted({r["margin_fraction"] for r in rows if r["estimator"] == "reference"})
    for f in fs:
        cells = [r for r in rows if r["estimator"] == "reference" and r["margin_fraction"] == f
                 and (r["S"], r["K"]) in designs]
        if len(cells) == len(designs) and all(r["own_not_below"] and r["null_not_below"] for r in cells):
            return f
    return None


def simulated_spread(sigma: float, *, n: int = MNIST_MLP_PARAMS, n_directions: int = 64, seeds: int = 128,
                     exact_top: int | None = 2048, seed: int = 0) -> dict[str, float]:
    """Direction-to-direction spread of n log r for log-normal spectra with ``sigma`` (a fresh
    spectrum per seed): medians over seeds of the sd and of largest minus median, and the sd over
    seeds of log V (the log-mean-exp). mu only shifts every term alike, so it is left at 0."""
    sds, tops, lvs = [], [], []
    for s in range(seeds):
        rng = np.random.default_rng([seed, 3, s])
        lam = np.exp(sigma * rng.standard_normal(n))
        norm2, q = quadratic_forms(lam[None], n_directions, rng, exact_top=exact_top)
        terms = n * exit_log_radii(norm2, q[0], 0.5)
        sd, top = direction_spread(terms)
        sds.append(sd)
        tops.append(top)
        lvs.append(_lme_np(terms))
    return {"sigma": sigma, "sd": float(np.median(sds)), "max_minus_median": float(np.median(tops)),
            "sd_over_seeds_log_v": float(np.std(lvs, ddof=1))}


def _lme_np(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.mean(np.exp(x - m))))


def calibrate_sigma(target_sd: float, target_max_minus_median: float, sigmas=None, **kwargs) -> tuple[float, list]:
    """The sigma (on a grid) whose simulated spread best matches a measured one: the smallest sum
    of squared log-ratios of (sd, largest minus median) to their targets."""
    sigmas = np.round(np.arange(4.0, 5.51, 0.125), 3) if sigmas is None else sigmas
    rows = [simulated_spread(float(s), **kwargs) for s in sigmas]
    loss = [math.log(r["sd"] / target_sd) ** 2 + math.log(r["max_minus_median"] / target_max_minus_median) ** 2
            for r in rows]
    return float(rows[int(np.argmin(loss))]["sigma"]), rows


def mnist_spread(store_root: str, *, sizes=(60, 240, 960), seeds=(0, 1, 2, 3, 4), n_directions: int = 64,
                 threshold: float = 0.1, epochs: int = 300, rtol: float = 1e-4, device=None) -> list[dict]:
    """The direction-to-direction spread of n log r on real MNIST MLP minima: the smoke tier's
    recipe (AdamW lr 1e-3, full batch, ``epochs`` epochs, base 60) trained (or reused) in the store
    at ``store_root`` on ``sizes`` examples of the shipped MNIST test split, each measured in its
    own landscape by the principled search (filter directions, K = ``n_directions``, tau =
    ``threshold``, rtol 1e-4, direction seed = model seed) and by the paper's grid (filter
    directions; the crossing index read from its bracket). Measurements are cached in the store."""
    from volbench.lab import MinimumSpec, measure, train_minimum
    from volbench.lab.train import TrainConfig
    from volbench.store.minima import MinimaStore

    store = MinimaStore(store_root)
    recipe = TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.01, batch_size=None, epochs=epochs, loss="ce",
                         history_every=max(1, epochs // 10))
    rows = []
    for D in sizes:
        for s in seeds:
            m = train_minimum(MinimumSpec("mnist", "mnist_mlp", train_size=D, seed=s, base=60, train=recipe), store,
                              device=device)
            p = measure(m, D, estimator="principled", n_directions=n_directions, threshold=threshold, store=store,
                        direction_seed=s, directions="filter", rtol=rtol, device=device)
            ref = measure(m, D, estimator="reference", n_directions=n_directions, threshold=threshold, store=store,
                          direction_seed=s, directions="filter", device=device)
            if p.outside or ref.outside:
                continue
            sd, top = direction_spread(np.asarray(p.log_terms))
            step = (np.asarray(ref.log_terms_high) - np.asarray(ref.log_terms_low)) / (2 * p.n_params)
            j = 1.0 / -np.expm1(-step)  # step = log(j / (j - 1)) on c_j = (j / 99)^2
            rows.append({"train_size": D, "seed": s, "n_params": p.n_params, "sd": sd, "max_minus_median": top,
                         "log_volume": p.log_volume, "reference_log_volume": ref.log_volume,
                         "reference_median_crossing": float(np.nanmedian(j))})
    return rows


def format_scale_table(result: dict[str, Any]) -> str:
    """The table of docs/STATISTICS.md for :func:`simulate_scale`'s result."""
    d = result["design"]
    lines = ["| estimator | S | K | f | replications | coverage of own expectation | coverage of exact | "
             "decision rate | null false decisions | mean width (nats) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        f = "full" if r["margin_fraction"] is None else f"{r['margin_fraction']:g}"
        lines.append(f"| {r['estimator']} | {r['S']} | {r['K']} | {f} | {r['replications']} | "
                     f"{r['coverage_own']:.3f} | {r['coverage_exact']:.3f} | {r['decision_rate']:.3f} | "
                     f"{r['null_false_decisions']:.3f} | "
                     f"{r['mean_width']:,.0f} |")
    lines.append("")
    lines.append(f"n = {d['n']:,}, sigma = {d['sigma']}, {d['sharp_fraction']:.1%} of eigen-directions x"
                 f"{d['sharp_factor']:g}; mu = {result['mu']:.3f} (median crossing index "
                 f"{result['median_crossing_index']:.0f}); exact difference "
                 f"{0.5 * round(d['sharp_fraction'] * d['n']) * math.log(d['sharp_factor']):,.0f} nats")
    for key, e in result["expectation"].items():
        lines.append(f"- E[d] {key}: {e['mean']:,.0f} +- {e['mcse']:,.0f} "
                     f"(MC se; sd over seeds {e['sd_over_seeds']:,.0f})")
    lines.append(f"- {result['seconds']:.0f} s")
    return "\n".join(lines)


def _main(argv=None) -> None:
    import argparse
    import json
    import time

    ap = argparse.ArgumentParser(prog="python -m volbench.claims.coverage",
                                 description="Coverage of the claims' intervals, by simulation (docs/STATISTICS.md).")
    ap.add_argument("replications", nargs="?", type=int, default=None,
                    help="replications per design (default: 400 for the small design, 300 at --scale mnist)")
    ap.add_argument("--scale", choices=("small", "mnist"), default="small",
                    help="small: the real estimators at n = 10; mnist: closed-form radii at n = 235,146")
    ap.add_argument("--seeds", default="5,10", help="S values (mnist scale)")
    ap.add_argument("--directions", default="64,128", help="K values (mnist scale)")
    ap.add_argument("--margins", default="0,0.1,0.25,0.5,0.75,1", help="the reference's margin fractions f")
    ap.add_argument("--expectation-seeds", type=int, default=4000)
    ap.add_argument("--sigma", type=float, default=MNIST_SIGMA)
    ap.add_argument("--sharp-fraction", type=float, default=0.02, help="fraction of B's eigen-directions sharpened")
    ap.add_argument("--sharp-factor", type=float, default=4.0, help="how much sharper")
    ap.add_argument("--crossing-index", type=float, default=18.0)
    ap.add_argument("--exact-top", type=int, default=2048, help="0: draw every coordinate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--calibrate", metavar="STORE",
                    help="measure the MNIST MLP's spread of n log r (minima trained or reused in STORE) and fit sigma")
    args = ap.parse_args(argv)
    if args.calibrate:
        rows = mnist_spread(args.calibrate)
        for r in rows:
            print(json.dumps(r))
        sd = float(np.median([r["sd"] for r in rows]))
        top = float(np.median([r["max_minus_median"] for r in rows]))
        print(f"MNIST MLP, K = 64, {len(rows)} minima: median sd over directions {sd:,.0f} nats, "
              f"median largest - median {top:,.0f} nats")
        sigma, table = calibrate_sigma(sd, top)
        for t in table:
            print(json.dumps(t))
        print(f"sigma = {sigma}")
        return
    if args.scale == "small":
        reps = args.replications or 400
        print("| design (n = 10, K = 24, S = 4) | replications | coverage | mean width | wrong-sign decisions |")
        print("|---|---|---|---|---|")
        for row in coverage_table(reps):
            print(f"| {row['estimator']}, {row['kind']} | {row['replications']} | {row['coverage']:.3f} | "
                  f"{row['mean_width']:.3g} | {row['wrong_sign_decisions']} |")
        return
    design = ScaleDesign(directions=tuple(int(x) for x in args.directions.split(",")),
                         seeds=tuple(int(x) for x in args.seeds.split(",")),
                         margins=tuple(float(x) for x in args.margins.split(",")),
                         replications=args.replications or 300, expectation_seeds=args.expectation_seeds,
                         sigma=args.sigma, crossing_index=args.crossing_index,
                         sharp_fraction=args.sharp_fraction, sharp_factor=args.sharp_factor,
                         exact_top=args.exact_top or None, seed=args.seed)
    t0 = time.perf_counter()
    result = simulate_scale(design, progress=lambda msg: print(msg, flush=True))
    print(format_scale_table(result))
    designs = [(S, K) for S in design.seeds for K in design.directions if K <= 128]
    print(f"chosen f (rule of choose_margin at {designs}): {choose_margin(result['rows'], designs=designs)}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":  # python -m volbench.claims.coverage [replications] [--scale mnist ...]
    _main()
