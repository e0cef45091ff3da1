"""The bridge to devinterp (an optional extra, ``.[crosscheck]``): its SGLD estimate of the local
learning coefficient on the same minimum and data, the independent answer of claim E5, with the
step size chosen by its own documented calibration heuristics (``calibrate_devinterp``) and every
setting recorded. Without devinterp, ``devinterp_available()`` says why and how to install it."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def devinterp_available() -> tuple[bool, str]:
    """(True, version) when devinterp imports, else (False, the reason)."""
    try:
        from importlib.metadata import version

        import devinterp.slt.llc  # noqa: F401

        return True, version("devinterp")
    except Exception as exc:  # ImportError, or a broken dependency chain
        return False, f"devinterp is not installed or does not import ({type(exc).__name__}: {str(exc)[:120]}); " \
                      f"install the extra: pip install -e '.[crosscheck]'"

__all__ = ["devinterp_available", "DEVINTERP_LRS", "DEVINTERP_LOCALIZATIONS", "DEVINTERP_HEALTH_RULE",
           "DevinterpSettings", "DevinterpLLC", "devinterp_health", "devinterp_llc", "DevinterpCalibration",
           "calibrate_devinterp"]


#: Step sizes and localisations swept by ``calibrate_devinterp``: devinterp's SGLD calibration
#: notebook (examples/sgld_calibration.ipynb) sweeps epsilon in [1e-5, 1e-4, 1e-3] and gamma in
#: [1, 10, 100]; its epsilon-beta notebook warns that epsilon > 1e-2 "typically leads to
#: instability", so 1e-2 closes the sweep.
DEVINTERP_LRS = (1e-5, 1e-4, 1e-3, 1e-2)


DEVINTERP_LOCALIZATIONS = (1.0, 10.0, 100.0)


#: The health rule ``calibrate_devinterp`` applies, from the same notebook's heuristics ("optimal
#: traces should converge"; "a good set of loss traces should stay above the initial loss value ...
#: and should not diverge"; MALA acceptance is not exposed by devinterp 2.0.1).
DEVINTERP_HEALTH_RULE = ("a step size is healthy when every chain's loss trace is finite, each chain's mean loss over "
                         "its second half is at or above the initial loss (not continued training) and below the null "
                         "loss of a predictor that knows nothing (log C for C classes, mean y^2 for regression: not "
                         "diverged), and the trace has flattened: the chain-mean loss excess over the last quarter "
                         "differs from that over the third quarter by at most 10% of the second half's, or by at most "
                         "twice the standard error of that difference (steps taken as independent, which understates "
                         "it). Among healthy settings the weakest localisation gamma is chosen (the LLC is the "
                         "local, gamma -> 0 quantity; gamma only keeps chains near the anchor), then the largest step "
                         "size (the notebook: 'the higher learning rate is generally preferred')")


@dataclass(frozen=True)
class DevinterpSettings:
    """devinterp's SGLD hyperparameters (``devinterp.slt.llc.llc``), recorded with every result.

    lr: SGLD step size epsilon. n_beta: inverse temperature n*beta; None: n / log n for n training
    examples, the WBIC temperature beta* = 1 / log n of Watanabe (2013) that Lau et al. (2023), the
    estimator devinterp implements, use. (devinterp's ``default_nbeta`` takes the minibatch size m
    for n; on the deep linear networks of claim E5 that gave LLCs 100-200x below Aoyagi's lambda.)
    localization: gamma, the pull towards the anchor (100: the default of devinterp's calibration
    tooling). num_chains, num_draws, num_burnin_steps, batch_size: as in devinterp (devinterp 2.0.1
    averages the loss over every step, burn-in included). seed: its init_seed.
    """

    lr: float = 1e-4
    n_beta: float | None = None
    localization: float = 100.0
    num_chains: int = 4
    num_draws: int = 200
    num_burnin_steps: int = 0
    batch_size: int = 64
    seed: int = 100

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("lr", "n_beta", "localization", "num_chains", "num_draws",
                                              "num_burnin_steps", "batch_size", "seed")}


@dataclass(frozen=True)
class DevinterpLLC:
    """devinterp's LLC estimate: mean over chains with a Student-t interval across chains, the
    per-step chain-mean loss trace and the initial loss (for ``devinterp_health``)."""

    llc: float
    low: float
    high: float
    level: float
    per_chain: tuple[float, ...]
    version: str
    settings: dict[str, Any]
    seconds: float
    loss_trace: tuple[tuple[float, ...], ...] = ()
    init_loss: float = math.nan
    health: dict[str, Any] = field(default_factory=dict)


def devinterp_health(loss_trace, init_loss: float, null_loss: float = math.inf) -> dict[str, Any]:
    """``DEVINTERP_HEALTH_RULE`` on a [chains, steps] loss trace (``null_loss``: the loss of a
    predictor that knows nothing; a chain above it has diverged).

    Example (a trace that rises to a plateau is healthy; one that sinks below the start, or
    climbs past the null loss, is not):
        >>> import numpy as np
        >>> up = 1.0 + 0.1 * (1 - np.exp(-np.arange(200) / 10.0))
        >>> [devinterp_health(np.stack([t]), 1.0, 1.05)["healthy"] for t in (up - 0.06, 2 - up, up)]
        [True, False, False]
    """
    t = np.asarray(loss_trace, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] < 8:
        raise ValueError(f"need a [chains, steps >= 8] loss trace, got shape {t.shape}")
    steps = t.shape[1]
    q = steps // 4
    finite = bool(np.isfinite(t).all())
    second = t[:, steps // 2:].mean(axis=1) - init_loss if finite else np.full(t.shape[0], np.nan)
    above = bool(finite and (second >= 0).all())
    below_null = bool(finite and (second + init_loss < null_loss).all())
    excess = t.mean(axis=0) - init_loss
    q3, q4 = float(excess[2 * q:3 * q].mean()), float(excess[3 * q:].mean())
    half = float(excess[steps // 2:].mean())
    se = float(math.sqrt(excess[2 * q:3 * q].var(ddof=1) / q + excess[3 * q:].var(ddof=1) / (steps - 3 * q)))
    flat = bool(finite and half > 0 and abs(q4 - q3) <= max(0.1 * half, 2.0 * se))
    return {"healthy": finite and above and below_null and flat, "finite": finite, "above_initial_loss": above,
            "below_null_loss": below_null, "null_loss": null_loss, "flat": flat,
            "excess_second_half": half, "excess_q3": q3, "excess_q4": q4, "excess_quarter_se": se}


def devinterp_llc(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                  loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                  settings: DevinterpSettings = DevinterpSettings(), level: float = 0.95,
                  device: str = "cpu", null_loss: float = math.inf) -> DevinterpLLC:
    """devinterp's SGLD LLC of ``model`` at its current parameters on (inputs, targets).

    devinterp 2.x samples language models: its dataset is a HuggingFace ``Dataset`` of
    ``input_ids`` and its loss a per-token loss ``(model, input_ids) -> [batch, seq - 1]``. The
    public entry point takes a custom ``loss_fn``, so each example i is passed as the sequence
    [i, i] and the loss looks the example up: ``loss(model(x_i), y_i)`` per example, shape
    [batch, 1]; devinterp's LLC is n_beta (mean sampled loss - loss at the anchor), the mean over
    examples being our cost. The model is sampled in place: pass a copy to keep it.

    Args:
        loss: elementwise loss (prediction [b, k], target [b, k] or class labels [b]) -> [b].
        null_loss: the loss of a predictor that knows nothing, for ``devinterp_health``.
    """
    ok, why = devinterp_available()
    if not ok:
        raise ImportError(why)
    from datasets import Dataset
    from devinterp.slt.llc import llc as devinterp_llc_fn
    from scipy import stats

    t0 = time.perf_counter()
    n = inputs.shape[0]
    n_beta = settings.n_beta if settings.n_beta is not None else n / math.log(n)
    X, Y = inputs.detach().to(device), targets.detach().to(device)
    dataset = Dataset.from_dict({"input_ids": [[i, i] for i in range(n)]}).with_format("torch")

    def loss_fn(net: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        idx = input_ids[:, 0].to(X.device)
        x = X[idx].to(next(net.parameters()).dtype)
        y = Y[idx]
        return loss(net(x), y.to(x.dtype) if y.is_floating_point() else y)[:, None]  # class labels stay integers

    import tempfile
    import warnings

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = devinterp_llc_fn(model, dataset, {}, lr=settings.lr, n_beta=n_beta, loss_fn=loss_fn,
                                  localization=settings.localization, num_chains=settings.num_chains,
                                  num_draws=settings.num_draws, num_burnin_steps=settings.num_burnin_steps,
                                  batch_size=settings.batch_size, init_seed=settings.seed, device=device,
                                  output_path=f"{tmp}/samples.zarr")
        per_chain = tuple(float(v) for v in np.asarray(result["llc_per_chain"].values).ravel())
        trace = np.asarray(result["loss_trace"].values, dtype=np.float64)
        init_loss = float(np.asarray(result["init_loss"].values))
    mean = float(np.mean(per_chain))
    if len(per_chain) > 1:
        half = float(stats.t.ppf(0.5 + level / 2, len(per_chain) - 1) * np.std(per_chain, ddof=1)
                     / math.sqrt(len(per_chain)))
    else:
        half = math.inf
    recorded = dict(settings.as_dict(), n_beta=n_beta, entry_point="devinterp.slt.llc.llc",
                    sampling_method="sgmcmc_sgld", n_examples=n)
    _, version = devinterp_available()
    health = devinterp_health(trace, init_loss, null_loss) if trace.ndim == 2 and trace.shape[1] >= 8 else {}
    return DevinterpLLC(llc=mean, low=mean - half, high=mean + half, level=level, per_chain=per_chain,
                        version=version, settings=recorded, seconds=time.perf_counter() - t0,
                        loss_trace=tuple(tuple(float(v) for v in row) for row in trace), init_loss=init_loss,
                        health=health)


@dataclass(frozen=True)
class DevinterpCalibration:
    """The sweep of ``calibrate_devinterp``: per (step size, localisation) its LLC and health, the
    chosen pair (None: none was healthy) and the rule."""

    chosen_lr: float | None
    chosen_localization: float | None
    sweep: tuple[dict[str, Any], ...]
    rule: str = DEVINTERP_HEALTH_RULE
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"chosen_lr": self.chosen_lr, "chosen_localization": self.chosen_localization,
                "sweep": [dict(r) for r in self.sweep], "rule": self.rule,
                "seconds": self.seconds}


def calibrate_devinterp(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                        settings: DevinterpSettings = DevinterpSettings(num_chains=2, num_draws=100),
                        lrs: Sequence[float] = DEVINTERP_LRS,
                        localizations: Sequence[float] = DEVINTERP_LOCALIZATIONS, device: str = "cpu",
                        null_loss: float = math.inf) -> DevinterpCalibration:
    """Sweep devinterp's step size ``lrs`` x localisation ``localizations`` (its other settings
    from ``settings``) on copies of ``model`` and choose by ``DEVINTERP_HEALTH_RULE``."""
    import copy
    from dataclasses import replace

    t0 = time.perf_counter()
    rows = []
    for gamma in sorted(float(v) for v in localizations):
        for lr in sorted(float(v) for v in lrs):
            res = devinterp_llc(copy.deepcopy(model), inputs, targets, loss,
                                settings=replace(settings, lr=lr, localization=gamma), device=device,
                                null_loss=null_loss)
            rows.append({"lr": lr, "localization": gamma, "llc": res.llc, "per_chain": list(res.per_chain),
                         **res.health, "seconds": res.seconds})
    healthy = [r for r in rows if r.get("healthy")]
    best = min(healthy, key=lambda r: (r["localization"], -r["lr"])) if healthy else None
    return DevinterpCalibration(chosen_lr=None if best is None else best["lr"],
                                chosen_localization=None if best is None else best["localization"],
                                sweep=tuple(rows), seconds=time.perf_counter() - t0)
