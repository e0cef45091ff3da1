"""Result records of the volume estimators.

Both records are frozen dataclasses holding CPU tensors, so they can be pickled, compared and
written into reports without touching the device they were computed on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["VolumeEstimate", "ReferenceEstimate", "CensoredRaysWarning"]


class CensoredRaysWarning(UserWarning):
    """Some rays never left the basin before ``max_radius``: their radii are lower bounds."""

_LOG10_E = 1.0 / math.log(10.0)


@dataclass(frozen=True)
class VolumeEstimate:
    """Monte Carlo estimate of the log-volume of a star-domain basin.

    ``log_volume = log mean_k exp(log_terms[k])`` in nats, unit-ball constant included, so for a
    ball of radius R in n dimensions it equals ``log(pi^(n/2) R^n / Gamma(n/2 + 1))`` exactly.

    Attributes:
        log_volume: natural log of the estimated volume (Lebesgue) or prior mass (Gaussian).
        log10_volume: the same in decimal orders of magnitude.
        log_radii: [K] log of the radius found along each unit search direction v_k (parameter
            space units). The radius was evaluated and found inside the basin.
        log_radii_upper: [K] log of the smallest evaluated radius found outside (inf if censored).
        censored: [K] True where the ray was still inside at ``max_radius``; its radius is then a
            lower bound that is kept (never dropped) and counted in ``n_censored``.
        log_terms: [K] each direction's log-contribution after importance weighting.
        log_terms_upper: [K] the same contribution computed from the outside radius
            (``log_radii_upper``; inf if censored): the true term of a ray whose cost is monotone
            between the two lies in [log_terms, log_terms_upper], so ``log_volume_bracket`` bounds
            what the search's resolution (rtol) allows.
        evals_per_ray: [K] cost evaluations spent on each ray (None for the bit-only search);
            in a shared walk, all questions' together.
        max_log_term: largest entry of ``log_terms``; for large n the estimate sits close to it.
        ess: effective sample size (sum w)^2 / sum w^2 of the weights exp(log_terms).
        n_params, n_directions, n_cost_evals (parameter vectors evaluated, anchor included),
        seconds (wall clock), config (every argument needed to reproduce the estimate).
    """

    log_volume: float
    log_radii: torch.Tensor
    log_radii_upper: torch.Tensor
    censored: torch.Tensor
    log_terms: torch.Tensor
    n_params: int
    n_directions: int
    n_cost_evals: int
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    log_terms_upper: torch.Tensor | None = None
    evals_per_ray: torch.Tensor | None = None

    @property
    def log10_volume(self) -> float:
        return self.log_volume * _LOG10_E

    @property
    def log_volume_bracket(self) -> tuple[float, float]:
        """(log V from the inside radii, log V from the outside radii): the search's resolution."""
        upper = self.log_terms if self.log_terms_upper is None else self.log_terms_upper
        k = math.log(self.n_directions)
        return self.log_volume, float(torch.logsumexp(upper.double(), dim=0)) - k

    @property
    def max_log_term(self) -> float:
        return float(self.log_terms.max())

    @property
    def n_censored(self) -> int:
        return int(self.censored.sum())

    @property
    def ess(self) -> float:
        finite = self.log_terms[torch.isfinite(self.log_terms)]
        if finite.numel() == 0:
            return 0.0
        w = torch.exp(finite.double() - finite.max().double())
        return float(w.sum() ** 2 / (w**2).sum())

    @property
    def radii(self) -> torch.Tensor:
        return self.log_radii.exp()

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no per-direction arrays)."""
        r = self.log_radii[torch.isfinite(self.log_radii)]
        return {
            "log_volume": self.log_volume,
            "log10_volume": self.log10_volume,
            "max_log_term": self.max_log_term,
            "ess": self.ess,
            "n_params": self.n_params,
            "n_directions": self.n_directions,
            "n_censored": self.n_censored,
            "censored_fraction": self.n_censored / self.n_directions if self.n_directions else 0.0,
            "log_volume_bracket": list(self.log_volume_bracket),
            "n_cost_evals": self.n_cost_evals,
            "evals_per_ray_mean": float(self.evals_per_ray.double().mean()) if self.evals_per_ray is not None
            and self.evals_per_ray.numel() else None,
            "evals_per_ray_max": int(self.evals_per_ray.max()) if self.evals_per_ray is not None
            and self.evals_per_ray.numel() else None,
            "seconds": self.seconds,
            "log_radius_min": float(r.min()) if r.numel() else float("-inf"),
            "log_radius_mean": float(r.mean()) if r.numel() else float("-inf"),
            "log_radius_max": float(r.max()) if r.numel() else float("-inf"),
        }


@dataclass(frozen=True)
class ReferenceEstimate:
    """Result of the main paper's fixed-grid procedure (Fan et al., Sec. 4 and App. A.2).

    ``log_volume = log mean_{kept k} r_k^n`` with no unit-ball constant, over the directions that
    crossed the threshold on the grid; directions that never crossed are dropped (``dropped``),
    exactly as the paper's code does; their ``log_radii`` hold NaN.

    Attributes:
        log_volume, log10_volume: as the paper computes them (nats / decades).
        log_radii: [K] log(coefficient of first crossing x norm of the raw Gaussian direction);
            NaN for dropped directions.
        crossing_index: [K] grid index of the first point whose cost exceeded the threshold,
            -1 where none did.
        log_radii_lower: [K] log of the radius of the grid point before the crossing (the last one
            found inside; -inf when that is the anchor), NaN for dropped directions.
        dropped: [K] True where the direction never crossed (excluded from the mean).
        n_params, n_directions, n_cost_evals, seconds, config: as in ``VolumeEstimate``.
        evals_per_ray: [K] grid points evaluated per direction (ray-interface walk; None otherwise).
    """

    log_volume: float
    log_radii: torch.Tensor
    crossing_index: torch.Tensor
    dropped: torch.Tensor
    n_params: int
    n_directions: int
    n_cost_evals: int
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    log_radii_lower: torch.Tensor | None = None
    evals_per_ray: torch.Tensor | None = None

    @property
    def log_volume_bracket(self) -> tuple[float, float]:
        """(log V from the last grid points inside, the paper's log V from the first points
        outside): the grid's resolution. The true first exit of each kept direction lies between
        the two grid points."""
        kept = ~self.dropped
        if self.log_radii_lower is None or not bool(kept.any()):
            return self.log_volume, self.log_volume
        k = math.log(int(kept.sum()))
        low = float(torch.logsumexp(self.n_params * self.log_radii_lower[kept], dim=0)) - k
        return low, self.log_volume

    @property
    def log10_volume(self) -> float:
        return self.log_volume * _LOG10_E

    @property
    def n_dropped(self) -> int:
        return int(self.dropped.sum())

    @property
    def radii(self) -> torch.Tensor:
        return self.log_radii.exp()

    def summary(self) -> dict[str, Any]:
        kept = self.log_radii[~self.dropped]
        return {
            "log_volume": self.log_volume,
            "log10_volume": self.log10_volume,
            "n_params": self.n_params,
            "n_directions": self.n_directions,
            "n_dropped": self.n_dropped,
            "n_cost_evals": self.n_cost_evals,
            "seconds": self.seconds,
            "log_radius_min": float(kept.min()) if kept.numel() else float("nan"),
            "log_radius_mean": float(kept.mean()) if kept.numel() else float("nan"),
            "log_radius_max": float(kept.max()) if kept.numel() else float("nan"),
            "mean_crossing_index": float(self.crossing_index[~self.dropped].float().mean())
            if kept.numel()
            else float("nan"),
        }
