"""Curvature for free from Adam's buffers (Scherlis & Belrose Sec. 3.2: "use Adam's second moment
buffers to estimate diag(H)"; their "Adam first moment" preconditioner, Sec. 4.1)."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from volbench._checks import check_flat

__all__ = ["adam_second_moment", "adam_first_moment", "adam_state_vectors"]


def adam_second_moment(exp_avg_sq: Tensor) -> Tensor:
    """Curvature from Adam's second-moment buffer: h = sqrt(exp_avg_sq), [n].

    Why the square root: Adam steps by m / (sqrt(v) + eps_adam), the diagonal analogue of a Newton
    step H^(-1) g, so sqrt(v) is the curvature Adam itself acts on. The paper (Sec. 3.2: "use
    Adam's second moment buffers to estimate diag(H)") reads v itself as the curvature instead
    (v ~ E[g^2], the diagonal empirical Fisher ~ H at a minimum): its code computes
    p = 1 / (v^0.5 + eps). With h = sqrt(v) that is ``make_preconditioner(h, exponent=1.0, eps)``,
    which ``PAPER.adam_second_moment`` encodes; the default exponent 0.5 gives the milder
    p = 1 / (v^0.25 + eps). Both are unit-determinant, so both are unbiased; which has the smaller
    variance is an empirical question (claim S5).

    The raw (not bias-corrected) buffer is used, as in the paper; bias correction only rescales v
    by 1 / (1 - beta2^t), which the determinant normalisation removes except through eps
    (after 5,000 steps with beta2 = 0.999 the factor is 1.007).

    Example:
        >>> import torch
        >>> adam_second_moment(torch.tensor([4.0, 0.25])).tolist()
        [2.0, 0.5]
    """
    return torch.sqrt(check_flat(exp_avg_sq, "exp_avg_sq", nonnegative=True).detach())


def adam_first_moment(exp_avg: Tensor) -> Tensor:
    """Curvature proxy from Adam's first-moment buffer: h = |exp_avg|, [n] (the paper's "Adam
    first moment (mu)" preconditioner, Sec. 4.1; its code feeds the buffer to
    p = 1 / (|m|^0.5 + eps), i.e. ``make_preconditioner(h, **PAPER.adam_first_moment.as_kwargs())``).

    Example:
        >>> import torch
        >>> adam_first_moment(torch.tensor([-3.0, 2.0])).tolist()
        [3.0, 2.0]
    """
    return check_flat(exp_avg, "exp_avg").detach().abs()


def adam_state_vectors(optimizer: torch.optim.Optimizer, parameters: Iterable[Tensor]) -> tuple[Tensor, Tensor]:
    """Flatten a live Adam/AdamW optimiser's buffers into (exp_avg [n], exp_avg_sq [n]) in the
    order of ``parameters`` (pass ``model.parameters()`` so it matches the flat parameter vector).

    Example:
        >>> import torch
        >>> m = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.AdamW(m.parameters())
        >>> m(torch.ones(1, 2)).sum().backward(); opt.step()
        >>> [t.shape for t in adam_state_vectors(opt, m.parameters())]
        [torch.Size([3]), torch.Size([3])]
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    m, v = [], []
    for k, p in enumerate(parameters):
        state = optimizer.state.get(p, {})
        if "exp_avg" not in state or "exp_avg_sq" not in state:
            raise ValueError(f"parameter {k} (shape {tuple(p.shape)}) has no Adam state: the optimiser is not "
                             f"Adam/AdamW, has not stepped yet, or was built over other parameters")
        m.append(state["exp_avg"].detach().reshape(-1))
        v.append(state["exp_avg_sq"].detach().reshape(-1))
    if not m:
        raise ValueError("parameters is empty")
    return torch.cat(m), torch.cat(v)
