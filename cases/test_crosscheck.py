"""Claims E4 and E5: the star-domain estimator against answers computed another way.

E4 — the Gaussian-measure estimate of the star domain (isotropic directions; prior-directed rays)
against direct sampling (``volbench.crosscheck.sampling``: draws from the same Gaussian, accepted when their
segment from the anchor stays below the threshold, by the estimator's own first-exit rule, here
with fine_scan = 20 for the ReLU and zero-one nets). Nets: ReLU MLPs 2-4-1 and 2-8-1 on 200 linearly
separable 2-D points (x ~ N(0, I_2), label 1{x1 + x2 > 0}, Adam lr 1e-2, 1,000 full-batch epochs,
BCE) under the prior N(0, I) as in issue Q5, with the issue's thresholds; a 2-5-5-1 MLP on the two
spirals under N(0, I); the digits MLP under S5's prior N(0, 0.3125^2 I) at relaxed thresholds; the
swiss-roll MLP under N(anchor, c^2 I) and the Boolean n = 7 network (7-40-40-1, an NNGP prior draw as
the anchor, cost = fraction of the 128 outputs flipped, no flip allowed) under its NNGP std shape
times c, centred at the anchor. Levels are chosen before any comparison by stated rules on
independent pilot draws (``volbench.crosscheck.sampling.THRESHOLD_RULE`` and ``SCALE_RULE``) for target rates
0.3 and 0.03 (nightly also 0.003); a statement counts only where the sampled rate lies in
[1e-4, 0.5] (``E4_INFORMATIVE``). Each level is judged by ``e4_agreement``; inconclusive ones state
the draws and rays that would decide them. The shared exit rule is checked once per net against a
grid along the accepted segments (``e4_exit_rule``). Where the measure is an isotropic Gaussian
centred at the anchor, prior-directed rays are the isotropic estimator in law and are not counted
twice. At S5's KL cutoff on the digits MLP, where no sampler can count, the isotropic,
prior-directed and preconditioned estimates are ranked (reported).

E5 — lambda-hat, the slope of log mu against log(tau - L(anchor)) over the smallest decade of a
threshold ladder (``volbench.crosscheck.llc.FIT_RULE``), under a Gaussian centred at the anchor (std
``LOCAL_STD`` for (a) and (b); for (c) devinterp's localisation gamma^-1/2, so both localise alike):
(a) regular quadratics against n/2; (b) deep linear networks against Aoyagi's lambda
(``volbench.crosscheck.llc.dln_lambda``), devinterp's SGLD estimate reported beside; (c) the digits MLP and the
MNIST MLP against devinterp's SGLD estimate on the same minimum and data, plus (reported) our slope
over the decade of loss excess devinterp's chains explore. devinterp runs at the step size its
documented calibration heuristics choose (``volbench.crosscheck.devinterp.calibrate_devinterp``) and is an optional
extra (``.[crosscheck]``): without it its statements are "not judged" with the reason.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from _support import cases, finish, judge_each, start, verdicts_hold
from torch import nn

from volbench import estimate_log_volume
from volbench.claims.analysis import bootstrap_log_volume
from volbench.claims.crosscheck import (
    E4_LEVEL,
    e4_agreement,
    e4_exit_rule,
    e4_lower_bounds,
    e4_parting,
    e4_same_law,
    e5_against_estimate,
    e5_against_truth,
    e5_not_judged,
)
from volbench.crosscheck.calibration import SCALE_RULE, THRESHOLD_RULE, calibrate_local_scales, calibrate_thresholds
from volbench.crosscheck.devinterp import (
    DEVINTERP_HEALTH_RULE,
    DEVINTERP_LOCALIZATIONS,
    DEVINTERP_LRS,
    DevinterpSettings,
    calibrate_devinterp,
    devinterp_available,
    devinterp_llc,
)
from volbench.crosscheck.llc import (
    FIT_RULE,
    DeepLinearCost,
    VolumeScalingError,
    dln_lambda,
    epsilon_ladder,
    fit_volume_scaling,
)
from volbench.crosscheck.nets import boolean_net, separable_net, trained_registry_net
from volbench.crosscheck.oracles import QuadraticCost
from volbench.crosscheck.sampling import InsufficientSamplesError, sample_local_scales, sample_star_domain_measure
from volbench.estimator.prior_rays import CALIBRATION_STREAM

_T = {
    "E4": "The star-domain estimate agrees with direct sampling where direct sampling is feasible",
    "E5": "The slope of log V against log(tau - L(anchor)) as tau -> 0 is the local learning coefficient",
}
F64 = torch.float64
LOCAL_STD = 1.0  # E5 localisation: std of the Gaussian centred at the anchor (parameter units)

# E4 budgets. A level with target rate p gets N = min(cap, ceil(count (1 - p) / p)) draws and as many
# prior-directed rays: count = 1,300 expected accepts makes the 97.5% Clopper-Pearson half-width of
# log p about 2.24 / sqrt(1,300) = 0.06 nats, and prior rays of these nets (ESS ~ 1/6 of the rays at
# p ~ 0.14, measured on the 2-4-1 net) about as much, so the two together stay well inside the
# tolerance log 1.25 = 0.223. Caps per level keep smoke within budget (top level 8,192: ~6 s on one
# core for a net of tens of parameters; deeper levels 2,048, which leaves them to the stated power
# estimate; nets with thousands of parameters cost ~5-10 ms per ray, capped at 300).
E4_NETS_SMOKE = dict(
    nets=("sep-2-4-1", "sep-2-8-1", "spirals-2-5-5-1", "swiss-mlp", "digits-mlp", "boolean-7"),
    targets_small=(0.3, 0.03), targets_big=(0.3,), count=1300,
    small=dict(cap=(8192, 2048), K_iso=512, pilot=1024, segment_check=64),
    big=dict(cap=(300,), K_iso=128, pilot=200, segment_check=16), seed=0,
    lower_bounds=dict(K=50, sources=("HesScale", "Adam 2nd moment")))
E4_NETS_NIGHTLY = dict(
    E4_NETS_SMOKE, targets_small=(0.3, 0.03, 0.003), targets_big=(0.3, 0.03, 0.003), count=5000,
    small=dict(cap=(200_000, 500_000, 2_000_000), K_iso=4096, pilot=20_000, segment_check=128),
    big=dict(cap=(20_000, 50_000, 200_000), K_iso=1000, pilot=10_000, segment_check=32),
    lower_bounds=dict(K=3000, sources=("diag(H)", "HesScale", "Adam 2nd moment")))


def e4_draws(count: int, rate: float, cap: int) -> int:
    """N = min(cap, ceil(count (1 - rate) / rate)): draws for ~``count`` expected accepts' precision."""
    return int(min(cap, math.ceil(count * (1 - rate) / rate)))


# --quick: the nightly E4/E5 code paths at tiny scale (the generic shrink in _support.quick_params
# does not reach the nested budgets): one target rate, a few hundred draws and rays per level, a
# handful of directions for the lower bounds; E5 one quadratic, one DLN, one net.
QUICK = {
    "test_sampling_agreement": dict(
        targets_small=(0.3,), targets_big=(0.3,), count=100,
        small=dict(cap=(512,), K_iso=64, pilot=128, segment_check=16),
        big=dict(cap=(48,), K_iso=8, pilot=48, segment_check=8),  # a pilot places rate 0.3 on >= 10 draws
        lower_bounds=dict(K=4, sources=("HesScale",))),
    "test_llc_scaling": dict(quad_ns=(10,), dlns=(((2, 1, 2), 0, "origin"),), K=50, eps_min=1e-6, decades=1.0,
                             nets=("digits-mlp",), net_K=4, net_examples=64,
                             # devinterp's code path only: one (step size, localisation), short chains
                             devinterp=dict(lrs=(1e-2,), localizations=(100.0,), batch_size=64, calib_chains=1,
                                            calib_draws=50, num_chains=2, num_draws=50)),
}


CASES = {
    "test_sampling_agreement": cases(
        "E4", "sampling-agreement", setting="small-nets", smoke=E4_NETS_SMOKE, nightly=E4_NETS_NIGHTLY
    ),
    "test_llc_scaling": cases(
        "E5",
        "llc-scaling",
        setting="quadratic+dln+digits+mnist",
        smoke=dict(
            quad_ns=(10, 50),
            dlns=(((2, 1, 2), 0, "origin"), ((1, 2, 1), 0, "origin"), ((2, 1, 2), 1, "trained")),
            # one decade: FIT_RULE fits the smallest decade only, so smoke walks just those 3 thresholds
            K=100,
            eps_min=1e-6,
            decades=1.0,
            nets=("digits-mlp", "mnist-mlp"),
            net_K=10,
            net_examples=256,
            # smoke sweeps devinterp's step size over 1e-3, 1e-2 and gamma over 1, 100: smaller steps relax
            # in ~2 / (lr gamma) steps or more, beyond a 100-draw calibration chain (they never pass "flat")
            devinterp=dict(
                lrs=(1e-3, 1e-2),
                localizations=(1.0, 100.0),
                batch_size=64,
                calib_chains=1,
                calib_draws=100,
                num_chains=4,
                num_draws=100,
            ),
            seed=0,
        ),
        nightly=dict(
            quad_ns=(10, 50, 500),
            dlns=(
                ((2, 1, 2), 0, "origin"),
                ((1, 2, 1), 0, "origin"),
                ((2, 1, 2), 1, "trained"),
                ((3, 2, 2, 3), 1, "trained"),
            ),
            K=2000,
            eps_min=1e-7,
            decades=3.0,
            nets=("digits-mlp", "mnist-mlp"),
            net_K=500,
            net_examples=None,
            devinterp=dict(
                lrs=DEVINTERP_LRS,
                localizations=DEVINTERP_LOCALIZATIONS,
                batch_size=64,
                calib_chains=2,
                calib_draws=500,
                num_chains=8,
                num_draws=2000,
            ),
            seed=0,
        ),
    ),
}




@dataclass(frozen=True)
class E4Setting:
    """A net, its cost and the family of Gaussian measures E4 compares on it.

    kind "prior": a fixed Gaussian N(0, prior_std^2 I); levels are thresholds (the issue's, where
    it gave one, then ``calibrate_thresholds`` for each target rate). kind "local": the Gaussian
    N(anchor, c^2 diag(shape^2)) at a fixed threshold; levels are scales c from
    ``calibrate_local_scales``. Search settings are shared by the estimator and the sampler.
    """

    net: str
    cost: object
    dtype: torch.dtype
    kind: str
    std: object  # prior std (kind "prior") or the shape s (kind "local"): a float or an [n] tensor
    threshold: float | None = None  # kind "local"
    fixed_thresholds: tuple = ()  # kind "prior": thresholds fixed before calibration (issue Q5's)
    fine_scan: int = 20
    description: str = ""

    @property
    def isotropic_local(self) -> bool:
        return self.kind == "local" and not isinstance(self.std, torch.Tensor)


def e4_setting(net: str) -> E4Setting:
    """The measure family and search settings of each E4 net, fixed here before any comparison.
    fine_scan = 20 (as in issue Q5's measurements): with the default 0, the bracketing search steps
    over exits on ~55% of the accepted segments of the 2-4-1 net (measured with segment_check)."""
    if net in ("sep-2-4-1", "sep-2-8-1"):
        hidden, top = (4, 0.65) if net == "sep-2-4-1" else (8, 0.68)  # issue Q5's thresholds
        return E4Setting(net, separable_net(hidden), F64, "prior", 1.0, fixed_thresholds=(top,),
                         description="prior N(0, I)")
    if net == "spirals-2-5-5-1":
        cost, *_ = trained_registry_net("swiss_mlp", hidden=(5, 5))
        return E4Setting(net, cost, F64, "prior", 1.0, description="prior N(0, I)")
    if net == "boolean-7":
        cost, std = boolean_net()
        return E4Setting(net, cost, torch.float32, "local", std, threshold=0.5 / 128,
                         description="NNGP prior std shape (sigma_w / sqrt(fan_in), sigma_b = 0.1) x c, centred at "
                                     "the anchor; threshold: no output of 128 flipped")
    if net == "swiss-mlp":
        cost, *_ = trained_registry_net("swiss_mlp")
        L0 = float(cost(cost.anchor[None])[0])
        return E4Setting(net, cost, torch.float32, "local", 1.0, threshold=L0 + 0.1,
                         description="N(anchor, c^2 I), threshold L(anchor) + 0.1")
    if net == "digits-mlp":
        cost, *_ = trained_registry_net("digits_mlp", examples=256)
        # S5's prior std 1/sqrt(weight decay 0.01 x 1,024 train) = 0.3125 (cases/test_scherlis.py); the
        # relaxed thresholds put a few tenths of it in the star domain. GELU: smooth, fine_scan 0
        # (segment_check measures what that misses).
        return E4Setting(net, cost, torch.float32, "prior", 0.3125, fine_scan=0,
                         description="prior N(0, 0.3125^2 I) (S5's), relaxed thresholds")
    raise ValueError(f"unknown E4 net {net!r}")


def _estimator_triple(est, level: float) -> tuple[float, float, float]:
    """(log mu, lower, upper): percentile bootstrap at ``level`` over rays, lower end from the
    inside-radius terms, upper end from the outside-radius terms (the search's resolution)."""
    lo, _ = bootstrap_log_volume(est.log_terms.numpy(), n_boot=1000, level=level)
    upper_terms = est.log_terms_upper if est.log_terms_upper is not None else est.log_terms
    _, hi = bootstrap_log_volume(upper_terms.numpy(), n_boot=1000, level=level)
    return est.log_volume, min(lo, est.log_volume), max(hi, est.log_volume)


def _sampled_triple(s) -> tuple[float, float, float]:
    low, high = s.log_interval(E4_LEVEL)
    return s.log_p, min(low, s.log_p), max(high, s.log_p)


def e4_levels(setting: E4Setting, targets, n_pilot: int, seed: int):
    """[(label, threshold, std, mean, target)] and the calibration records, by the stated rules.
    A net with a fixed top threshold (issue Q5's, p ~ 0.1-0.2) skips the first (largest) target."""
    cost, anchor = setting.cost, setting.cost.anchor
    if setting.kind == "prior":
        targets = targets[1:] if setting.fixed_thresholds and len(targets) > 1 else targets
        cal = calibrate_thresholds(cost, anchor, prior_std=setting.std, targets=targets, n_pilot=n_pilot,
                                   grid=32 if cost.n_params < 1000 else 8, seed=seed, dtype=setting.dtype,
                                   rates_at=setting.fixed_thresholds)
        # A fixed threshold is configured, so its value names it; a calibrated one is measured (it
        # moves with the machine's rounding and the trained net), so its target rate names it and
        # the threshold itself goes into the statement's text and numbers.
        fixed = [(f"tau-{float(t):g}", t, cal.config["pilot_rates_at"][f"{float(t):.6g}"])
                 for t in setting.fixed_thresholds]
        calibrated = list(zip(cal.names, cal.levels, cal.targets))
        return [(label, tau, setting.std, None, target) for label, tau, target in fixed + calibrated], cal
    cal = calibrate_local_scales(cost, anchor, threshold=setting.threshold, shape_std=setting.std, targets=targets,
                                 n_pilot=n_pilot, seed=seed, dtype=setting.dtype, fine_scan=setting.fine_scan)
    return [(name, setting.threshold, c * setting.std, anchor, target)
            for name, c, target in zip(cal.names, cal.levels, cal.targets)], cal


def test_sampling_agreement(case, device, record_case, strict):
    """E4: for each net and level, log mu of the estimator (isotropic; prior-directed) against
    direct sampling's log p, judged by equivalence within log 1.25 where the sampled rate is in the
    informative range (volbench.claims.crosscheck); levels chosen by volbench.crosscheck.sampling's rules
    from independent pilot draws; the shared first-exit rule checked by a segment grid; at the
    S5 cutoff on the digits MLP, where no sampler can count, the estimators are ranked."""
    statements = {"isotropic": [], "prior": []}
    clocks = {"isotropic": start(), "prior": start()}
    series, parting, calibrations, table = [], {"isotropic": {}, "prior": {}}, {}, []
    seed = case["seed"]
    for net in case["nets"]:
        setting = e4_setting(net)
        cost, anchor, n = setting.cost, setting.cost.anchor, setting.cost.n_params
        small = n < 1000
        budget = case["small"] if small else case["big"]
        targets = case["targets_small"] if small else case["targets_big"]
        levels, cal = e4_levels(setting, targets, budget["pilot"], seed)
        calibrations[net] = cal.as_dict()
        search = dict(dtype=setting.dtype, seed=seed, device=device, fine_scan=setting.fine_scan)
        if setting.kind == "local":  # one set of draws serves every scale: sized for the smallest rate
            N0 = max(e4_draws(case["count"], lv[4], budget["cap"][min(i, len(budget["cap"]) - 1)])
                     for i, lv in enumerate(levels))
            shared = sample_local_scales(cost, anchor, threshold=setting.threshold, n_samples=N0, shape_std=setting.std,
                                         scales=cal.levels, segment_check=budget["segment_check"], **search)
        per = {"isotropic": [], "prior": []}
        curve = {"sampled": [], "isotropic": [], "prior": []}
        for i, (label, tau, std, mean, target) in enumerate(levels):
            # the fixed thresholds' "target" is the pilot's rate there (the same pilot, before any comparison)
            cap = budget["cap"][min(i, len(budget["cap"]) - 1)]
            N = K = e4_draws(case["count"], max(target, 1.0 / budget["pilot"]), cap)
            level_text = (f"tau = {tau:g}, fixed" if label.startswith("tau-") else
                          f"tau = {tau:.4g}, calibrated to rate {target:g}" if setting.kind == "prior" else
                          f"scale c = {float(cal.levels[i - len(setting.fixed_thresholds)]):.4g}, calibrated to "
                          f"rate {target:g}")
            base = {"net": net, "n_params": n, "level": label, "level_text": level_text, "threshold": tau,
                    "target_rate": target,
                    "measure": setting.description, "fine_scan": setting.fine_scan}
            if setting.kind == "local":
                s = shared[i]
                N = s.n_samples
            else:
                try:
                    # the exit rule is checked at the top level only (G evaluations per accept)
                    s = sample_star_domain_measure(cost, anchor, threshold=tau, n_samples=N, prior_std=std, pilot=0,
                                                   segment_check=budget["segment_check"] if i == 0 else 0, **search)
                except InsufficientSamplesError as err:
                    s = err.result
            sampled = _sampled_triple(s) if s.n_accepted else None
            curve["sampled"].append(sampled[0] if sampled else math.nan)
            nums_s = dict(base, n_samples=N, n_accepted=s.n_accepted, n_ambiguous=s.n_ambiguous,
                          n_missed_exits=s.n_missed_exits, sampling_evals=s.n_cost_evals,
                          sampling_seconds=s.seconds)
            if i == 0 and s.n_accepted:  # the shared first-exit rule, checked once per net at its top level
                ex = e4_exit_rule(f"{net}.exit-rule", f"{net}: the first-exit rule (fine_scan {setting.fine_scan}) "
                                  f"misses few exits that a {budget['segment_check']}-point segment grid finds",
                                  n_accepted=s.n_accepted, n_missed=s.n_missed_exits, grid=budget["segment_check"],
                                  numbers=dict(base))
                for name in statements:
                    statements[name].append(ex)
            row = {"net": net, "n": n, "level": label, "target": target, "sampled": sampled, "N": N,
                   "sampling_seconds": s.seconds}
            for name, K_est in (("isotropic", budget["K_iso"]), ("prior", K)):
                sid = f"{net}@{label}"  # a name: configured values only (issue R1)
                text = (f"{net} (n = {n}, {setting.description}, {level_text}): {name} estimate agrees with "
                        "direct sampling")
                if name == "prior" and setting.isotropic_local:
                    st = e4_same_law(sid, text, numbers=nums_s)
                    curve[name].append(math.nan)
                else:
                    est = estimate_log_volume(cost, anchor, threshold=tau, n_directions=K_est, directions=name,
                                              measure="gaussian", prior_std=std, prior_mean=mean, **search)
                    triple = _estimator_triple(est, E4_LEVEL)
                    curve[name].append(triple[0])
                    nums = dict(nums_s, n_directions=K_est, ess=est.ess, estimator_evals=est.n_cost_evals,
                                estimator_seconds=est.seconds)
                    if sampled is None:
                        st = e5_not_judged(sid, text, f"no draw of {N} was accepted: direct sampling cannot resolve "
                                           f"this level in its budget", estimate=list(triple), **nums)
                    else:
                        st = e4_agreement(sid, text, estimate=triple, sampled=sampled, numbers=nums)
                    row[name], row[f"{name}_seconds"], row[f"{name}_K"] = triple, est.seconds, K_est
                row[f"{name}_verdict"] = st.verdict
                per[name].append(st)
                statements[name].append(st)
            table.append(row)
        for name in per:
            judged = [(lv[0], st) for lv, st in zip(levels, per[name]) if st.verdict != "not-judged"]
            parting[name][net] = e4_parting([lab for lab, _ in judged], [st for _, st in judged])
        xs = [lv[1] if setting.kind == "prior" else float(lv[2] if not isinstance(lv[2], torch.Tensor)
                                                            else lv[2].max()) for lv in levels]
        for label, ys in curve.items():
            series.append({"kind": "xy", "x": xs, "y": ys, "label": f"{net}: {label}",
                           "x_label": "threshold tau" if setting.kind == "prior" else "measure scale (max std)",
                           "y_label": "log mu (nats)", "title": f"E4 {net}: measure vs level"})
    t_lb = time.perf_counter()
    lb = e4_digits_lower_bounds(case, device, seed)
    table.append({"net": "digits-mlp@S5-cutoff", "seconds": time.perf_counter() - t_lb})
    statements["isotropic"].append(lb)
    statements["prior"].append(lb)
    # Both estimators are measured from one set of draws above, so each is timed from the start
    # (its clock) and recorded here rather than through judge_each.
    for name, sts in statements.items():
        label = "principled" if name == "isotropic" else "principled-prior-rays"
        res = finish(record_case, case, label, statements=sts, started=clocks[name], device=device,
                     seeds={"seed": seed, "calibration_stream": CALIBRATION_STREAM},
                     numbers={"parting": parting[name], "directions": name, "calibrations": calibrations,
                              "table": [_jsonable(r) for r in table], "threshold_rule": THRESHOLD_RULE,
                              "scale_rule": SCALE_RULE},
                     series=series if name == "isotropic" else ())
        assert verdicts_hold([res], strict)


def _jsonable(row):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()}


def e4_digits_lower_bounds(case, device, seed):
    """Issue Q5 item: on the digits MLP at S5's setting (KL from the anchor's predictions on the
    773 held-out digits, cutoff 1e-2 nats, prior N(0, 0.3125^2 I)), where direct sampling cannot
    count, the isotropic, prior-directed and preconditioned estimates side by side (reported)."""
    from test_scherlis import CUTOFF, digits_net, kl_cost, prior_std

    from volbench.claims.analysis import bootstrap_difference
    from volbench.curvature import FlatLoss, adam_second_moment, hesscale_diagonal, hessian_diagonal
    from volbench.estimator.preconditioners import PAPER, make_preconditioner

    cfg = case["lower_bounds"]
    model, result, ds = digits_net(seed)
    cost = kl_cost(seed, device)
    x = ds.test_inputs.to(cost.anchor.device)
    sources = {}
    if "HesScale" in cfg["sources"]:
        sources["HesScale"] = make_preconditioner(hesscale_diagonal(model, x, None, "kl"), **PAPER.hesscale.as_kwargs())
    if "Adam 2nd moment" in cfg["sources"]:
        sources["Adam 2nd moment"] = make_preconditioner(adam_second_moment(result.exp_avg_sq).to(cost.anchor.device),
                                                         **PAPER.adam_second_moment.as_kwargs())
    if "diag(H)" in cfg["sources"]:
        h = hessian_diagonal(FlatLoss(model, x, None, "kl"), cost.anchor.detach())
        sources["diag(H)"] = make_preconditioner(h, **PAPER.hessian_diagonal.as_kwargs())
    common = dict(threshold=CUTOFF, n_directions=cfg["K"], measure="gaussian", prior_std=prior_std(), seed=seed,
                  device=device)
    ests = {"isotropic": estimate_log_volume(cost, cost.anchor, **common),
            "prior": estimate_log_volume(cost, cost.anchor, directions="prior", **common)}
    for name, P in sources.items():
        ests[name] = estimate_log_volume(cost, cost.anchor, preconditioner=P, **common)
    triples = {k: _estimator_triple(e, 0.95) for k, e in ests.items()}
    diffs = {k: bootstrap_difference(ests["prior"].log_terms, e.log_terms, n_boot=1000, seed=seed)
             for k, e in ests.items() if k != "prior"}
    text = ("digits MLP (n = 4,810) at S5's KL cutoff 1e-2 under N(0, 0.3125^2 I): prior-directed, isotropic and "
            "preconditioned estimates (which is the tightest lower bound)")
    return e4_lower_bounds("digits-mlp@S5-cutoff", text,
                           estimates=triples, differences=diffs, reference="prior",
                           numbers={"K": cfg["K"], "ess": {k: e.ess for k, e in ests.items()},
                                    "preconditioner_eps": {k: getattr(PAPER, {"HesScale": "hesscale",
                                                                              "Adam 2nd moment": "adam_second_moment",
                                                                              "diag(H)": "hessian_diagonal"}[k]).eps
                                                           for k in sources}})


# ----------------------------------------------------------------------------- E5

def ladder_terms(cost, anchor, L0, eps, K, seed, dtype=F64, local_std=LOCAL_STD):
    """Per-direction log-terms at each eps of the ladder, the same directions at every threshold
    (one walk per threshold until the multi-threshold walk of issue Q3 lands)."""
    return [estimate_log_volume(cost, anchor, threshold=L0 + e, n_directions=K, measure="gaussian",
                                prior_std=local_std, prior_mean=anchor, rtol=1e-4, dtype=dtype,
                                seed=seed).log_terms.double().numpy() for e in eps]


def trained_dln(widths, rank, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(1000, widths[0], generator=g, dtype=F64)
    if rank:
        W = torch.randn(widths[-1], rank, generator=g, dtype=F64) @ torch.randn(rank, widths[0], generator=g, dtype=F64)
        Y = X @ W.T
    else:
        Y = torch.zeros(1000, widths[-1], dtype=F64)
    cost = DeepLinearCost(widths, X, Y)
    if rank == 0:
        return cost, torch.zeros(cost.n_params, dtype=F64), X, Y
    p = (0.5 * torch.randn(cost.n_params, generator=g, dtype=F64)).requires_grad_()
    opt = torch.optim.Adam([p], lr=1e-2)
    for _ in range(3000):
        opt.zero_grad()
        cost(p[None])[0].backward()
        opt.step()
    return cost, p.detach(), X, Y


def _devinterp(model, X, Y, loss, case, null_loss=math.inf):
    """devinterp's LLC at the step size its calibration heuristics choose (``calibrate_devinterp``:
    the weakest localisation, then the largest step size, of the sweep whose chains pass
    ``DEVINTERP_HEALTH_RULE``), with n_beta = n / log n (the WBIC temperature of Lau et al.).
    Returns (result or None, calibration or None, reason when None)."""
    import copy
    from dataclasses import replace

    ok, why = devinterp_available()
    if not ok:
        return None, None, why
    di = case["devinterp"]
    model = copy.deepcopy(model).float()
    Xf, Yf = X.float(), (Y.float() if Y.is_floating_point() else Y)
    base = DevinterpSettings(batch_size=di["batch_size"], num_chains=di["calib_chains"], num_draws=di["calib_draws"])
    cal = calibrate_devinterp(model, Xf, Yf, loss, settings=base, lrs=di["lrs"], localizations=di["localizations"],
                              null_loss=null_loss)
    if cal.chosen_lr is None:
        sweep = "; ".join(f"lr {r['lr']:g}, gamma {r['localization']:g}: llc {r['llc']:.3g}, flat {r['flat']}, "
                          f"above init {r['above_initial_loss']}, below null {r['below_null_loss']}" for r in cal.sweep)
        return None, cal, (f"no (step size, localisation) in {list(di['lrs'])} x {list(di['localizations'])} passed "
                           f"devinterp's calibration heuristics ({DEVINTERP_HEALTH_RULE}); sweep: {sweep}")
    final = replace(base, lr=cal.chosen_lr, localization=cal.chosen_localization, num_chains=di["num_chains"],
                    num_draws=di["num_draws"])
    return devinterp_llc(copy.deepcopy(model), Xf, Yf, loss, settings=final, level=E4_LEVEL, null_loss=null_loss), \
        cal, ""


def _devinterp_numbers(res, cal, why):
    return {"devinterp": None if res is None else [res.llc, res.low, res.high],
            "devinterp_settings": None if res is None else res.settings,
            "devinterp_health": None if res is None else res.health,
            "devinterp_calibration": None if cal is None else cal.as_dict(), "devinterp_missing": why}


def test_llc_scaling(case, device, record_case, strict):
    """E5 (a) quadratics vs n/2, (b) deep linear networks vs Aoyagi's lambda, (c) trained nets vs
    devinterp's SGLD estimate; lambda-hat by FIT_RULE with a paired bootstrap interval."""
    def judge(est):
        eps = epsilon_ladder(case["eps_min"], case["decades"], 2)
        statements, points = [], []
        has_devinterp, version = devinterp_available()
        version = version if has_devinterp else None
        needs = "" if has_devinterp else "crosscheck"  # the extra its devinterp statements need
        mse = lambda o, y: ((o - y) ** 2).mean(dim=1)  # noqa: E731  (DeepLinearCost's per-example loss)
        ce = lambda o, t: nn.functional.cross_entropy(o, t, reduction="none")  # noqa: E731
        # (a) regular quadratics: lambda = n/2
        for n in case["quad_ns"]:
            q = QuadraticCost(torch.exp(torch.linspace(-1.0, 1.0, n, dtype=F64)))
            fit = fit_volume_scaling(eps, ladder_terms(q, torch.zeros(n, dtype=F64), 0.0, eps, case["K"], case["seed"]))
            statements.append(e5_against_truth(f"a.quadratic-n{n}", f"regular quadratic, n = {n}: lambda_hat = n/2",
                                               fit=(fit.slope, fit.low, fit.high), true_lambda=n / 2,
                                               numbers={"local_slopes": list(fit.local_slopes)}))
            points.append((f"quadratic n={n}", n / 2, fit.slope, None))
        # (b) deep linear networks: Aoyagi's lambda
        for widths, rank, where in case["dlns"]:
            cost, anchor, X, Y = trained_dln(widths, rank, case["seed"])
            L0 = float(cost(anchor[None])[0])
            lam = dln_lambda(widths, rank)
            sid = f"b.dln-{'-'.join(map(str, widths))}-r{rank}-{where}"
            text = f"deep linear network {widths}, true rank {rank}, anchor {where}: lambda_hat = Aoyagi's lambda"
            # null loss: predicting 0 (mean y^2); for zero targets that is the minimum itself, so no divergence check
            null = float((Y ** 2).mean()) if rank else math.inf
            di, cal, why = _devinterp(cost.module(anchor), X, Y, mse, case, null_loss=null)
            di_nums = dict(_devinterp_numbers(di, cal, why), devinterp_version=version)
            # devinterp against the closed form: reported beside ours (E5 judges our slope), always listed
            di_text = f"{text.split(':')[0]}: devinterp's SGLD LLC beside Aoyagi's lambda"
            if di is not None:
                ratio = [math.log(v / lam) if v > 0 else -math.inf for v in (di.llc, di.low, di.high)]
                why = (f"reported: devinterp's estimate is the independent answer, not our claim; "
                       f"log(llc_devinterp / lambda) = {ratio[0]:.3g} [{ratio[1]:.3g}, {ratio[2]:.3g}]")
            statements.append(e5_not_judged(f"{sid}.devinterp", di_text, why, needs=needs, true_lambda=lam,
                                            **di_nums))
            try:
                fit = fit_volume_scaling(eps, ladder_terms(cost, anchor, L0, eps, case["K"], case["seed"]))
            except VolumeScalingError as err:
                statements.append(e5_not_judged(sid, text, str(err), true_lambda=lam, **di_nums))
                continue
            statements.append(e5_against_truth(sid, text, fit=(fit.slope, fit.low, fit.high), true_lambda=lam,
                                               numbers={"n_params": cost.n_params, "anchor_loss": L0,
                                                        "local_slopes": list(fit.local_slopes), **di_nums}))
            points.append((f"DLN {widths} r{rank} {where}", lam, fit.slope, None if di is None else di.llc))
        # (c) trained nets: ours beside devinterp's
        for net in case["nets"]:
            name = net.replace("-", "_")
            sid = f"c.{net}"
            text = f"{net}: lambda_hat beside devinterp's SGLD LLC on the same minimum and data"
            try:
                cost, model, x, y = trained_registry_net(name, examples=case["net_examples"])
            except Exception as err:  # data not found at this tier
                statements.append(e5_not_judged(sid, text, f"could not build {net}: {type(err).__name__}: {err}"))
                continue
            anchor = cost.anchor
            L0 = float(cost(anchor[None])[0])
            null = math.log(int(y.max()) + 1)  # uniform prediction over the classes
            di, cal, why = _devinterp(model, x, y, ce, case, null_loss=null)
            # our measure: devinterp's localisation prior N(anchor, gamma^-1 I) at its chosen gamma (LOCAL_STD
            # without devinterp), so both localise alike
            gamma = cal.chosen_localization if cal is not None and cal.chosen_localization else None
            loc_std = 1.0 / math.sqrt(gamma) if gamma else LOCAL_STD
            try:
                fit = fit_volume_scaling(eps, ladder_terms(cost, anchor, L0, eps, case["net_K"], case["seed"],
                                                           dtype=torch.float32, local_std=loc_std))
            except VolumeScalingError as err:
                statements.append(e5_not_judged(sid, text, str(err), **_devinterp_numbers(di, cal, why)))
                continue
            nums = {"n_params": cost.n_params, "anchor_loss": L0, "local_slopes": list(fit.local_slopes),
                    "half_n": cost.n_params / 2, "local_std": loc_std, "epsilons": list(fit.epsilons),
                    **_devinterp_numbers(di, cal, why), "devinterp_version": version}
            if di is not None:
                # devinterp's chains explore the loss excess e* = mean(L) - L(anchor) (its second half); the
                # slope of our log V over the decade around e* is the like-for-like number (reported)
                e_star = di.health.get("excess_second_half", math.nan)
                if e_star > 0:
                    around = [e_star / math.sqrt(10.0), e_star, e_star * math.sqrt(10.0)]
                    try:
                        at = fit_volume_scaling(
                            around,
                            ladder_terms(
                                cost,
                                anchor,
                                L0,
                                around,
                                case["net_K"],
                                case["seed"],
                                dtype=torch.float32,
                                local_std=loc_std,
                            ),
                        )
                        nums["slope_at_devinterp_scale"] = [at.slope, at.low, at.high]
                        nums["devinterp_scale_epsilons"] = around
                    except VolumeScalingError as err:
                        nums["slope_at_devinterp_scale"] = str(err)
            if di is None:
                statements.append(e5_not_judged(sid, text, why, needs=needs, lambda_hat=[fit.slope, fit.low, fit.high],
                                                **nums))
            else:
                statements.append(e5_against_estimate(sid, text, fit=(fit.slope, fit.low, fit.high),
                                                      other=(di.llc, di.low, di.high), numbers=nums))
            points.append((net, None, fit.slope, None if di is None else di.llc))
        series = [{"kind": "xy", "x": list(range(len(points))), "y": [p[2] for p in points], "label": "our lambda_hat",
                   "x_label": "case: " + "; ".join(p[0] for p in points), "y_label": "lambda", "y_scale": "log",
                   "title": "E5: lambda_hat vs true lambda and devinterp"},
                  {"kind": "xy", "x": [i for i, p in enumerate(points) if p[1] is not None],
                   "y": [p[1] for p in points if p[1] is not None], "label": "true lambda (n/2, Aoyagi)",
                   "x_label": "case", "y_label": "lambda", "y_scale": "log"}]
        if any(p[3] is not None for p in points):
            series.append({"kind": "xy", "x": [i for i, p in enumerate(points) if p[3] is not None],
                           "y": [p[3] for p in points if p[3] is not None], "label": f"devinterp {version} SGLD",
                           "x_label": "case", "y_label": "lambda", "y_scale": "log"})
        return dict(statements=statements, seeds={"seed": case["seed"]}, series=series,
                 numbers={"fit_rule": FIT_RULE, "local_std": LOCAL_STD, "epsilons": eps,
                          "devinterp_version": version})

    assert judge_each(("principled",), case, judge, record_case=record_case, strict=strict, device=device)
