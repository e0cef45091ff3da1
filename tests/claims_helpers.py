"""Constructed measurements for the rule tests: Terms with a chosen log-volume per seed."""
from __future__ import annotations

import numpy as np

from volbench.claims.stats import Terms


def terms(log_v: float, seed: int, *, K: int = 30, spread: float = 0.5, resolution: float = 0.0,
          estimator: str = "principled", outside: bool = False, rng_seed: int | None = None) -> Terms:
    """Terms whose log-mean-exp is exactly ``log_v``: per-direction noise of sd ``spread`` (the
    same noise for a given ``rng_seed``, so two Terms of one seed are paired and correlated), and
    a resolution bracket of +-``resolution`` nats per term."""
    if outside:
        return Terms(np.array([]), np.array([]), np.array([]), outside=True,
                     pairing=(estimator, "filter", seed, K), label=f"outside s{seed}")
    rng = np.random.default_rng(seed if rng_seed is None else rng_seed)
    e = rng.normal(0.0, spread, size=K)
    e = e - (np.log(np.mean(np.exp(e - e.max()))) + e.max())
    t = log_v + e
    return Terms(t, t - resolution, t + resolution, pairing=(estimator, "filter", seed, K), label=f"v={log_v} s{seed}")


def per_seed(values: dict[int, float], **kw) -> dict[int, Terms]:
    return {s: terms(v, s, **kw) for s, v in values.items()}
