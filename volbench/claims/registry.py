"""What each paper says, claim by claim: the text the claim-level report puts beside our verdicts.

One :class:`ClaimInfo` per claim of ``../shared/CLAIMS.md`` (F1-F13, S1-S10, Z1-Z6, E1-E5): the
paper's statement (quoted where the paper states it in one sentence, otherwise a close
paraphrase, marked by the absence of quotes), the paper's number or figure, where it is in the
paper, and what a figure of the case shows if the claim holds (used in figure captions).

Sources (``../shared/papers/``):

* ``fan``: Fan, Sandlund, Ko, "Sharp minima can generalize: a loss landscape perspective on data".
* ``scherlis``: Scherlis, Belrose, "Estimating the probability of sampling a trained network".
* ``zhang``: Zhang, Reid, Valle-Pérez, Louis, "Why flatness correlates with generalization for
  deep neural networks" (2021).
* the E claims are estimator behaviour; E3 and E4 are cross-checks no paper made.

Example:
    >>> info = CLAIMS["F5"]
    >>> info.paper, "-0.1835" in info.number
    ('fan', True)
    >>> sorted(CLAIMS) == sorted(CLAIM_IDS)
    True
    >>> claim_info("X9") is None
    True
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["ClaimInfo", "CLAIMS", "CLAIM_IDS", "PAPERS", "claim_info"]

#: Paper keys -> short citation.
PAPERS: Mapping[str, str] = MappingProxyType({
    "fan": "Fan, Sandlund, Ko: Sharp minima can generalize",
    "scherlis": "Scherlis, Belrose: Estimating the probability of sampling a trained network",
    "zhang": "Zhang, Reid, Valle-Pérez, Louis: Why flatness correlates with generalization (2021)",
    "none": "no paper (a cross-check volbench adds)",
})


@dataclass(frozen=True)
class ClaimInfo:
    """One claim as the paper states it.

    Attributes:
        id: claim id (``"F5"``).
        title: one line (the CLAIMS.md title).
        paper: key of :data:`PAPERS`.
        statement: the paper's statement; text in double quotes is quoted verbatim.
        number: the paper's number(s) or figure the claim is anchored to (empty if none).
        source: section / figure / table / equation in the paper.
        predicts: what one sees in the case's figures if the claim holds.
    """

    id: str
    title: str
    paper: str
    statement: str
    number: str
    source: str
    predicts: str

    def __post_init__(self) -> None:
        if self.paper not in PAPERS:
            raise ValueError(f"{self.id}: paper {self.paper!r} is not one of {sorted(PAPERS)}")
        for name in ("title", "statement", "source", "predicts"):
            if not getattr(self, name).strip():
                raise ValueError(f"{self.id}: {name} must not be empty")

    @property
    def citation(self) -> str:
        return f"{PAPERS[self.paper]}, {self.source}" if self.paper != "none" else PAPERS["none"]


_FAN_TABLE1 = ("Table 1 alphas (r_max ∝ D^alpha): MNIST MLP -0.1835, MLP (Deep) -0.1804, MLP (SGD) -0.1447, "
               "MLP (SAM) -0.1485, CNN -0.0853; CIFAR10 MLP -0.3394, CNN -0.2339; Fashion-MNIST MLP -0.3747. "
               "Table 2 (MNIST MLP variants): 50 perturbations -0.1892, loss threshold 0.01 -0.2647, 5000 epochs "
               "-0.2116, no filter norm -0.0863; CIFAR10 MLP 50 perturbations -0.3301, threshold 0.01 -0.3858")

_CLAIMS = (
    # ------------------------------------------------------------------ Fan, Sandlund, Ko
    ClaimInfo(
        "F1", "Poisoned minima are smaller", "fan",
        '"Minima from training on datasets with additional incorrectly labeled samples are significantly smaller '
        'in volume. Even very small amounts of additional poisoned data (≈ 3% of the original training dataset) '
        'result in noticeably smaller minima."',
        "≈3% poisoned extras already visible; MNIST base 6,000, CIFAR10 base 5,000 (Fig 7); a minor exception for "
        "small poison on CIFAR10 for some seeds",
        "Sec. 5.1, Fig. 6 (swiss roll), Fig. 7 (MNIST, CIFAR10)",
        "the clean minimum's log V lies above every poisoned minimum's in the clean base landscape, and log V "
        "falls as the poisoned fraction grows"),
    ClaimInfo(
        "F2", "Minima trained on more data are smaller in the small-data landscape", "fan",
        '"Minima found from training on the small dataset (red triangle) consistently have larger volumes"; '
        '"in the 60 example loss landscape, MNIST minima trained on 60,000 examples are smaller than minima '
        'trained on 60 examples for most distance metrics (e.g., max, mean, min), regardless of loss threshold."',
        "small-data landscapes: MNIST 60, CIFAR10 50, swiss roll 20, mod-97 188 examples; averages of 10 seeds "
        "(Fig 8)",
        "Sec. 5.2, Fig. 8, Fig. 9, App. B.1",
        "the minimum trained on the landscape's own data has the largest log V, and its radius distribution lies "
        "to the right of (above) every larger-data minimum's in max, mean and min"),
    ClaimInfo(
        "F3", "In image tasks the minimum found at each size is the largest in its own landscape", "fan",
        '"In MNIST and CIFAR10 (also SVHN and Fashion MNIST, see Appendix E), minima found in a given loss '
        'landscape are always larger than minima from larger datasets."',
        "landscape sizes from 0.1% to 100% of the training set (Fig 10 left)",
        "Sec. 5.3, Fig. 10 (left), Fig. 30 (App. E)",
        "in every landscape the minimum trained on that landscape's data (its own point) sits above the minima "
        "trained on larger sets"),
    ClaimInfo(
        "F4", "Not universal: swiss roll and mod-97", "fan",
        '"In swiss roll and modulo arithmetic, at sufficiently large dataset sizes we find minima from training '
        'that are no longer the largest by volume"; "the variation in volume from different seeds is comparable '
        'to the variation between minima from different data settings."',
        "mod-97: 2,822 examples = 33% of the pairs; no sign of a power law (Fig 11 right)",
        "Sec. 5.3, Fig. 11",
        "on swiss roll and mod-97 the gaps between sizes are comparable to the seed-to-seed spread, while the "
        "same rule on MNIST finds the ordering (a positive control)"),
    ClaimInfo(
        "F5", "Power law between volume and data", "fan",
        "log V ≈ n log r_max(θ) (eq. 3) and r_max(θ) ∝ D^alpha with alpha < 0 (eq. 4): log V of the minimum "
        'found at each size is linear in log D "across three orders of magnitude"; "models which perform better '
        'on low data settings seem to have smaller scaling constants."',
        _FAN_TABLE1,
        "Sec. 5.3, eq. (3)-(4), Table 1, Table 2 (App. F), Fig. 10",
        "log V / n of the found minimum falls on a straight line in log D with a negative slope alpha close to "
        "the paper's (the dashed line)"),
    ClaimInfo(
        "F6", "Minima shrink when data is added", "fan",
        '"In almost all experiments, the volume of minima shrink as dataset sizes are increased"; "the relative '
        'ordering of minima sizes generally remains the same in different landscapes except for the minima which '
        'vanish as they encounter data not seen in their training."',
        "",
        "Sec. 5.4, Fig. 10 (right)",
        "each minimum's log V falls as its landscape grows (lines slope down to the right) and the lines do not "
        "cross until a minimum leaves the threshold (volume zero, drawn as down triangles)"),
    ClaimInfo(
        "F7", "Class imbalance can make volume grow", "fan",
        '"A model trained on an imbalanced dataset taken to a smaller, evenly class-balanced dataset shrunk in '
        'volume. Conversely, the volume increases as the dataset is increased in an imbalanced way."',
        "MNIST base 1,500 balanced, extras 90% one class (CLAIMS.md setting)",
        "Sec. 5.4, Fig. 12",
        "the imbalanced minimum's log V rises as the landscape moves toward its own imbalanced training "
        "distribution"),
    ClaimInfo(
        "F8", "SAM finds larger minima with better accuracy", "fan",
        '"SAM achieves improved test accuracy and finds larger minima than vanilla AdamW."',
        "SAM rho 0.05; Table 1: SAM alpha -0.1485, test accuracy 97.8% / 67.8% (100% / 0.1% of MNIST) vs AdamW "
        "-0.1835, 97.7% / 67.5%: \"modest improvements in test accuracy\" (Fig 13)",
        "Sec. 6.1, Fig. 13, Table 1",
        "at equal data the SAM minimum's log V and test accuracy lie above AdamW's"),
    ClaimInfo(
        "F9", "Small batches find larger minima with better accuracy", "fan",
        '"Large batch gradient descent tends to find smaller minima. We also find the test accuracy is inversely '
        'correlated with batch size."',
        "MNIST 6,000 examples, batch sizes 100 to 6,000, 10 model and data seeds",
        "App. D, Fig. 26",
        "log V and test accuracy both fall as the batch size grows"),
    ClaimInfo(
        "F10", "Grokking: volume shrinks steadily while accuracy jumps", "fan",
        '"In modulo arithmetic, extending training from 500 epochs to 5,000 epochs produces almost no change in '
        'training loss, but volumes shrink significantly and test accuracy increases dramatically. Plotting '
        'volumes across training epochs reveals a steady and consistent decrease."',
        "mod-97 with ≈33% of the pairs (also 31% and 30%, Fig 25), checkpoints 200 to 5,000 epochs; MNIST barely "
        "changes with more epochs (Fig 24)",
        "Sec. 6.2, Fig. 14, Fig. 24, Fig. 25",
        "log V falls across checkpoints while the training loss stays flat and held-out accuracy stays low, then "
        "rises late"),
    ClaimInfo(
        "F11", "Robustness of the trends", "fan",
        "The data-volume trends hold with 50 instead of 500 perturbations (App. B.2), a loss threshold of 0.01 "
        '(App. B.3), CNNs (C.1), larger networks, no filter normalisation and SGD (C.2): "Our results are robust '
        'to all these cases."',
        "Table 2 alphas of the variants: 50 perturbations -0.1892, threshold 0.01 -0.2647, no filter norm -0.0863 "
        "(MNIST MLP; base -0.1835)",
        "App. B.2, B.3, C.1, C.2, Table 2",
        "the F2/F3 ordering (own-data minimum largest) is kept under every variant"),
    ClaimInfo(
        "F12", "Toy scale invariance", "fan",
        "For the 2-D basin 1 - s < xy < 1 + s seen from (b, 1/b), the star-domain area has a closed form in s with "
        "no dependence on the scale factor b (the b-dependent terms cancel).",
        "closed form of App. A.1 (depends on s only)",
        "App. A.1, Fig. 5",
        "the estimated area equals the closed form for every b and s (errors at numerical precision)"),
    ClaimInfo(
        "F13", "Filter normalisation makes radii invariant to layer rescaling", "fan",
        "Perturbations W = W0 + c·P∘F with F the norm of each layer or filter (eq. 8-9): \"Filter-normalization "
        'solves this issue"; rescaling one layer by alpha and the next by 1/alpha leaves the network unchanged '
        "(Fig. 5).",
        "",
        "App. A.2, eq. (8)-(9), Fig. 5",
        "filter-normalised radii and log V are unchanged by the rescaling, while plain isotropic radii change"),
    ClaimInfo(
        "F14", "The orderings hold for a character-level transformer", "fan",
        "Beyond the paper: the authors' repository (experiments/shakespeare_char) measures a nanoGPT-shaped "
        "character model (about 10.65M parameters) trained on nested sets of fixed-length text windows, with "
        "200 directions and a loss-threshold ladder 2.0, 1.0, 0.5, 0.1, 0.05; the F2/F3 orderings are the "
        "claim carried over.",
        "log E[r^n] of 2.8e7-4.6e7 nats on the 20k-window landscape (their logs); 4,122 s per 25 directions "
        "per model on one GPU",
        "authors' repository, experiments/shakespeare_char (not in the paper)",
        "in the smallest window landscape the minimum trained on it is the largest, and at every size the "
        "minimum found beats those trained on more windows, at each threshold of the ladder the minima reach"),
    # ------------------------------------------------------------------ Scherlis, Belrose
    ClaimInfo(
        "S1", "Jensen: the log of the unbiased volume estimator is biased low", "scherlis",
        '"The logarithm of an unbiased estimator is a downwardly biased estimator for the logarithm of the '
        'population parameter": log vol(S) ≥ E[log vol-hat(S)].',
        "eq. (11); the gap is sigma²/2 for a normal log-estimator with standard deviation sigma",
        "Sec. 3.1, eq. (10)-(11)",
        "the mean of the log-estimates lies below the true log V, by more where the estimator's variance is "
        "larger"),
    ClaimInfo(
        "S2", "Smooth max: for large n the log-estimate is the largest sample", "scherlis",
        "In the large-n limit the normalised log-volume estimate (1/n) E[log vol(S)] \"will be proportional to the "
        "maximum of our log-radius samples. Empirically, we find that this is already very nearly true for tiny "
        "networks of a few thousand parameters.\"",
        "eq. (12)-(13); digits MLP (4,810 parameters), k = 3000: the estimate sits at the largest sample (Fig 1)",
        "Sec. 3.1, eq. (12)-(13), Fig. 1",
        "(log-estimate - largest sample log-term) / n shrinks toward 0 as n grows"),
    ClaimInfo(
        "S3", "Markov: overestimating by log k has probability at most 1/k", "scherlis",
        "P(log vol-hat(S) - log vol(S) ≥ log k) ≤ 1/k: the log-estimate is a high-confidence approximate lower "
        "bound of the true log-volume.",
        "probability of overestimating by log k at most 1/k (1/2 at k = 2, 1/10 at k = 10); with k = 10^m: "
        "m orders of magnitude at most once in 10^m",
        "Sec. 3.1, eq. (14)",
        "the observed frequency of overestimates by log k stays at or below 1/k for every k"),
    ClaimInfo(
        "S4", "A perfect preconditioner gives zero variance", "scherlis",
        'For a perfectly ellipsoidal neighbourhood a perfect preconditioner "would result in an estimator with '
        'zero variance, returning the exact volume every time"; for a quadratic cost P ∝ H^(-1/2) (eq. 16).',
        "zero variance: every direction's estimate is the exact volume",
        "Sec. 3.2, eq. (15)-(16)",
        "every direction's log-term equals the exact log V (spread at float precision)"),
    ClaimInfo(
        "S5", "Preconditioner ranking on the digits MLP", "scherlis",
        'The diag(H), HesScale and Adam second-moment (nu) preconditioners "perform much better, and very '
        'similarly to each other"; the Adam first-moment (mu) preconditioner "is somewhere in between"; '
        '"results when preconditioning with the Hessian of the KL (the Fisher matrix) are very similar to the '
        'unpreconditioned ones."',
        "digits MLP, 4,810 parameters, k = 3000 (Fig 1); eps 0.1 for H, 0.01 for diag(H) and HesScale, 0.001 for "
        "both Adam preconditioners",
        "Sec. 4.1, Fig. 1",
        "log-estimates: diag(H) ≈ HesScale ≈ Adam nu far above none ≈ full Hessian, Adam mu in between"),
    ClaimInfo(
        "S6", "Poisoned networks have smaller KL volume", "scherlis",
        '"For ConvNeXt, we find that the poisoned network has a smaller local volume (with or without '
        'preconditioning)"; during training it is larger at first and drops below the unpoisoned network '
        "around 30,000 steps (Fig. 5).",
        "ConvNeXt V2 Atto on CIFAR-10 (Fig 3, Fig 5)",
        "Sec. 3.5, Sec. 4, Fig. 3, Fig. 5",
        "the poisoned network's log V lies below the clean network's"),
    ClaimInfo(
        "S7", "Local volume falls during training", "scherlis",
        '"As expected, local volume tends to decrease during training"; for Pythia "this decrease is smooth and '
        'approximately exponential after an rapid drop early in training" [sic].',
        "Pythia 31M checkpoints (Fig 4), ConvNeXt V2 Atto (Fig 5)",
        "Sec. 4, Fig. 4, Fig. 5",
        "log V decreases across training checkpoints"),
    ClaimInfo(
        "S8", "Cutoff scaling: log V against log cutoff has slope n/2 for a quadratic cost", "scherlis",
        '"The log-log slope is consistent with n/2, where n is the model dimension; this is what would be expected '
        'for a purely quadratic cost function"; "at very high cutoffs (≥ 10 nats), the Adam preconditioner begins '
        'to fail."',
        "slope n/2 (Pythia 31M, Fig 6; ConvNeXt, Fig 7)",
        "Sec. 4, Fig. 6, Fig. 7",
        "log V against log cutoff is a straight line of slope n/2 on a quadratic cost"),
    ClaimInfo(
        "S9", "Ellipsoid variance law", "scherlis",
        "For u uniform on the unit sphere, Var(uᵀAu) = 2/(n+2) Var(lambda), lambda the eigenvalues of A; the "
        "log-estimator's variance is then ≈ n³/(2(n+2)) · Var(lambda)/E[lambda]².",
        "factor 2/(n+2) between Var(uᵀAu) and Var(lambda)",
        "App. A, eq. (21)",
        "Monte Carlo variances of uᵀAu agree with 2/(n+2) Var(lambda) across spectra (|z| small)"),
    ClaimInfo(
        "S10", "Gaussian measure is finite where Lebesgue volume is infinite", "scherlis",
        '"If there is any direction along which perturbations have precisely zero effect on the model\'s behavior '
        'on the validation set, that direction will have an infinite radius"; "several pixel locations are never '
        'used in the digits validation set"; the Gaussian initialisation measure keeps the measure finite.',
        "Lebesgue radius infinite along unused-pixel weights; Gaussian measure finite",
        "Sec. 3.3, eq. (19)",
        "the radius along the unused pixel's input weight is infinite, while the Gaussian-measure estimate is "
        "finite"),
    # ------------------------------------------------------------------ Zhang, Reid, Valle-Pérez, Louis
    ClaimInfo(
        "Z1", "log V(f) correlates tightly with generalization error", "zhang",
        '"The correlation with between volume and generalization error is excellent over this range" [sic]; log '
        "V(f) is expected to correlate linearly with generalization (after Mingard et al., 2020).",
        "FCN on MNIST, |S| = 500, |E| = 1,000, attack set |A| from 0 to |S| (Fig 3a)",
        "Sec. 3, Sec. 5.2, Fig. 3",
        "test error falls on a tight, decreasing line against log V(f) across attack-set sizes"),
    ClaimInfo(
        "Z2", "Sharpness correlates for SGD but Adam breaks it", "zhang",
        '"The generalization-flatness correlation can be broken by using these optimizers, whereas the '
        'volume-generalization correlation remains intact" (Adam, Entropy-SGD).',
        "FCN on MNIST with Adam and Entropy-SGD, CIFAR-10 with Adam (Fig 4); SGD in Fig 3",
        "Sec. 5.3, Fig. 3, Fig. 4",
        "the sharpness-error correlation is weaker under Adam than under SGD, the volume-error one about equal"),
    ClaimInfo(
        "Z3", "Alpha-scaling changes sharpness, not the function or its volume", "zhang",
        '"Alpha scaling indeed leads to a spike in the sharpness"; "the volume is initially invariant upon '
        'alpha-scaling" because the function f(w) is unchanged.',
        "alpha = 5.9 at epoch 639 (Fig 5); alpha = 5.0 leaves the volume unchanged throughout (Fig S5)",
        "Sec. 1 eq. (1), Sec. 5.4, Fig. 5, Fig. S5, App. C",
        "after (W_i, b_i, W_i+1) -> (a W_i, a b_i, W_i+1 / a) the outputs and log V(f) are unchanged and the "
        "sharpness rises"),
    ClaimInfo(
        "Z4", "Boolean n = 7 system: sharpness tracks sampled volume", "zhang",
        'For the n = 7 Boolean system "sharpness and volume correlate relatively well" for the 1000 functions SGD '
        "finds most often.",
        "FCN 7-40-40-1, sigma_w = 1.0, sigma_b = 0.1, V(f) from 10^8 random parameter samples, eps = 1e-4 (Fig 2)",
        "Sec. 5.1, Fig. 2, Fig. S1, Fig. S2",
        "log sharpness falls as the sampled log V(f) grows"),
    ClaimInfo(
        "Z5", "Sharpness ≈ Hessian spectral norm · eps² / (2 (1 + L)) · 100", "zhang",
        "In the limit of small eps, sharpness ≈ ‖∇²L(w)‖₂ eps² / (2(1 + L(w))) × 100 (after Dinh et al., 2017).",
        "slope eps² / (2 (1 + L)) x 100 of sharpness against ‖∇²L‖₂; box eps = 1e-4 for the Boolean and MNIST "
        "FCNs, 1e-5 for CIFAR10 (Table 1 of the appendix)",
        "Sec. 2.2, Fig. S1",
        "measured sharpness against the power-iteration spectral norm lies on the line the formula predicts"),
    ClaimInfo(
        "Z6", "After zero training error, volume stays while sharpness keeps falling", "zhang",
        '"Subsequently, volume stays constant, but the cross-entropy loss continues to decrease ... This leads to '
        'a reduction in sharpness, even though the function, its volume, and the training error don\'t change."',
        "zero training error at epoch 140, then 1000 epochs of overtraining (Fig 5)",
        "Sec. 5.4, Fig. 5, Fig. S10-S15",
        "after the zero-error epoch, log V(f) stays flat while sharpness falls"),
    # ------------------------------------------------------------------ estimator behaviour
    ClaimInfo(
        "E1", "The log-volume estimate grows with the number of directions", "fan",
        'Fan et al.: absolute volume "almost always increases with more perturbation directions in our Monte '
        'Carlo estimate"; with 50 perturbations "all volumes are smaller than with 500 ... which is to be '
        "expected\" (the estimate is a smooth max over directions, Scherlis & Belrose eq. 13).",
        "K = 50 against K = 500 (Fan App. B.2, Fig 17, Fig 18)",
        "Fan Sec. 5, App. B.2; Scherlis & Belrose Sec. 3.1",
        "log V rises with the number of directions K (independent direction sets per K)"),
    ClaimInfo(
        "E2", "Relative ordering is stable with few directions", "fan",
        '"Our experimental trends are also observed when using as few as 50 perturbation directions"; "similar '
        'trends are present as before."',
        "Table 2: alpha with 50 perturbations -0.1892 vs -0.1835 with 500 (MNIST MLP), -0.3301 vs -0.3394 "
        "(CIFAR10 MLP)",
        "Fan Sec. 5, App. B.2, Table 2",
        "the F2/F3 orderings at K = 50 equal those at K = 500"),
    ClaimInfo(
        "E3", "Batched, chunked, CPU and GPU evaluation give the same radii", "none",
        "A cross-check: the same seed gives the same radii whatever the batch or chunk size and device, against "
        "an independent oracle (the paper's sequential loop; a scalar per-ray bisection), in float32 and float64.",
        "",
        "volbench (no paper)",
        "radius differences stay at the dtype's rounding level"),
    ClaimInfo(
        "E4", "The star-domain estimate agrees with direct sampling where that is feasible", "none",
        "A cross-check: on small real networks, the Gaussian-measure estimate of the star domain against the "
        "acceptance rate of parameters drawn from the same Gaussian whose segment from the anchor stays below "
        "the threshold, with intervals.",
        "",
        "volbench (no paper)",
        "the estimate's interval overlaps the direct-sampling interval where sampling is feasible"),
    ClaimInfo(
        "E5", "The slope of log V against log(tau - L) as tau -> 0 is the local learning coefficient", "scherlis",
        '"The slope of n/2 is somewhat in conflict with empirical results for the Local Learning Coefficient '
        '(Hoogland et al., 2024; Wang et al., 2024), which we suspect may be an artifact of the Monte Carlo local '
        'volume estimator."',
        "slope n/2 for regular quadratics; the known lambda of deep linear networks (Aoyagi); devinterp's SGLD "
        "estimate on trained nets",
        "Scherlis & Belrose Sec. 4 (cutoff discussion)",
        "log V against log(tau - L) has slope n/2 on regular quadratics and the known lambda elsewhere"),
)

#: Claim id -> :class:`ClaimInfo`, in CLAIMS.md order.
CLAIMS: Mapping[str, ClaimInfo] = MappingProxyType({info.id: info for info in _CLAIMS})
#: Every claim id of CLAIMS.md.
CLAIM_IDS = (tuple(f"F{i}" for i in range(1, 15)) + tuple(f"S{i}" for i in range(1, 11))
             + tuple(f"Z{i}" for i in range(1, 7)) + tuple(f"E{i}" for i in range(1, 6)))


def claim_info(claim: str) -> ClaimInfo | None:
    """The registry entry of ``claim`` (e.g. ``"F5"``), or None for an id it does not know."""
    return CLAIMS.get(claim)
