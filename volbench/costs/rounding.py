"""How far two evaluations of the same cost can differ by rounding alone.

A batched search and a scalar oracle, a CPU and a GPU, one thread and two, MKL's AVX2 and AVX-512
kernels: each evaluates ``cost(theta)`` with the same arithmetic in another order, so their values
differ in the last bits, and a point whose cost lies that close to a threshold may fall on either
side of it. Comparisons across kernels therefore need a tolerance, and it must be *derived* (from
the network, the data and the point), never an ulp count observed on one machine.

The bound is the probabilistic forward-error analysis of Higham & Mary (2019, "A new approach to
probabilistic rounding error analysis", SIAM J. Sci. Comput. 41(5), A2815-A2835): each floating-point
operation f returns ``fl(x) = x (1 + d_f)`` with ``|d_f| <= u`` (the unit roundoff), the ``d_f``
independent and of mean zero. To first order the cost's error is ``sum_f c_f d_f`` with
``c_f = (d cost / d result_f) * |result_f|``, and Hoeffding's inequality gives

    P( |error| > lam * u * sqrt(sum_f c_f^2) ) <= 2 exp(-lam^2 / 2)

(lam = 8: 2.5e-14 per comparison). The terms, computed in float64 at the exact forward pass:

* ``Linear`` / ``Conv``: ``z_j = sum_i w_ji h_i + b_j`` over ``K`` inputs takes at most ``2K + 1``
  roundings (products and sums; a fused multiply-add rounds fewer), each of a value no larger than
  ``M_j = (|W| |h| + |b|)_j``. When the point is ``origin + t * d`` the parameters are formed in
  the working precision too (``t * d``, then ``+ origin``: two roundings per parameter, and the ray
  interface's ``A + t B`` two more per output), so ``|W|`` becomes ``|W_origin| + |t d_W|`` and each
  output gets 6 more roundings. Term: ``(d cost / d z_j)^2 (2K + 1 [+ 6]) M_j^2``.
* ``ReLU``, ``Flatten``, ``Identity``, ``Dropout`` (eval), max pooling: exact.
* Smooth elementwise activations (GELU, tanh, sigmoid, SiLU, softplus, ELU, leaky ReLU): ATen's
  vectorised transcendental functions are within a few ulp; counted as 8 roundings of ``|y|``.
* The per-example loss, bounded by the sum of its operations' ``|c_f|`` (worst case within one
  example; examples independent), see :func:`example_loss_terms`.
* The mean: the per-example losses are summed in float64 and the mean rounded to the working
  precision once: ``u |cost|`` per evaluation, added deterministically.

Two evaluations each within ``e`` of the exact value differ by at most ``2 e``; that is what
:func:`cost_rounding_bound` returns: the tolerance on ``|cost_A(theta) - cost_B(theta)|``, and on
``|cost_A(theta) - tau|`` for a point that one kernel may put on either side of ``tau``. Worst-case
(deterministic) bounds are 10-1,000x larger here: they add every error with the same sign.

Example:
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> x, y = torch.randn(64, 20, generator=g), torch.randint(0, 3, (64,), generator=g)
    >>> theta = nn.utils.parameters_to_vector(model.parameters()).detach()[None]
    >>> tol = cost_rounding_bound(model, x, y, "ce", theta, dtype=torch.float32)
    >>> eps = torch.finfo(torch.float32).eps
    >>> bool(eps < tol[0] < 1e4 * eps)  # tens to hundreds of ulp of a cost of ~1
    True
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CONFIDENCE_LAMBDA", "unit_roundoff", "gamma", "cost_rounding_bound", "example_loss_terms",
           "output_rounding_bound"]

#: Hoeffding's lambda: a bound exceeded with probability <= 2 exp(-lam^2 / 2) = 2.5e-14 per point.
CONFIDENCE_LAMBDA = 8.0

#: Roundings counted for one smooth elementwise activation (a few ulp for ATen's vectorised
#: exp/erf/tanh plus the multiplies around them).
SMOOTH_ACTIVATION_ROUNDINGS = 8

_EXACT = (nn.ReLU, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.MaxPool1d, nn.MaxPool2d, nn.ReLU6)
_SMOOTH = (nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.Softplus, nn.ELU, nn.LeakyReLU, nn.Mish, nn.Hardtanh)
_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def unit_roundoff(dtype: torch.dtype, *, tf32: bool = False) -> float:
    """u = eps / 2 of ``dtype``; with ``tf32`` (CUDA matmuls on TF32 tensor cores) the products'
    10-bit mantissa, u = 2^-11.

    >>> unit_roundoff(torch.float32), unit_roundoff(torch.float32, tf32=True)
    (5.960464477539063e-08, 0.00048828125)
    """
    if tf32 and dtype == torch.float32:
        return 2.0 ** -11
    return torch.finfo(dtype).eps / 2


def gamma(n: int | float, dtype: torch.dtype = torch.float64, *, u: float | None = None) -> float:
    """Higham's gamma_n = n u / (1 - n u): the worst-case relative error of a product of n factors
    (1 + d_i), |d_i| <= u; e.g. a sum of n + 1 terms, or an inner product of n terms plus one
    rounding (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., Lemma 3.1).
    ``u`` overrides ``unit_roundoff(dtype)``; ValueError when n u >= 1 (no bound).

    >>> round(gamma(10) / unit_roundoff(torch.float64), 9), gamma(0)
    (10.0, 0.0)
    """
    u = unit_roundoff(dtype) if u is None else float(u)
    if n < 0 or n * u >= 1:
        raise ValueError(f"gamma_n needs 0 <= n u < 1, got n = {n}, u = {u:.3g}")
    return n * u / (1 - n * u)


def example_loss_terms(loss: str, out: Tensor, targets: Tensor | None, anchor_logp: Tensor | None = None) -> Tensor:
    """Per example, ``sum_f |c_f| / u`` over the operations of its loss (float64 ``[N]``).

    ``out`` ``[N, k]`` float64 outputs. The operations and the size of what each rounds:

    * "ce" (``logsumexp(z) - z_y``, ``C`` classes, ``m = max z``): ``C`` subtractions ``z_i - m``
      (weight ``p_i``), ``C`` exponentials (2 ulp each, weight ``p_i``), ``C - 1`` additions, one
      log (2 ulp of ``log S``), adding ``m`` and subtracting ``z_y``; all bounded by
      ``2 (5 |z|_inf + 4 log C + C + 1)``.
    * "kl": the same log-softmax plus ``C`` products and sums with the anchor's probabilities:
      ``2 (5 |z|_inf + 4 log C + 2 C + 1)``.
    * "bce" (per output element, ATen's ``binary_cross_entropy_with_logits``): at most 6
      operations, each within 1 ulp (2u) of a value no larger than ``2 |z| + 1``: ``12 (2 |z| + 1)``.
    * "mse": ``(z - t)^2``: the difference and its square, ``4 ((z - t)^2 + |z - t|)`` per element.

    "zero_one" is a step function: no rounding bound bounds a flip of it (ValueError).
    """
    z = out.double()
    if loss in ("ce", "kl"):
        z = z if z.shape[-1] > 1 else torch.cat([torch.zeros_like(z), z], dim=-1)  # one logit: (0, z)
        C = z.shape[-1]
        zmax = z.abs().amax(-1)
        per_class = 1 if loss == "ce" else 2
        return 2 * (5 * zmax + 4 * math.log(C) + per_class * C + 1)
    if loss == "bce":
        return (12 * (2 * z.abs() + 1)).sum(-1)
    if loss == "mse":
        d = (z - targets.double().reshape(z.shape)).abs()
        return (4 * (d * d + d)).sum(-1)
    why = "a step function: a flip of it is not a rounding error" if loss == "zero_one" else "unknown loss"
    raise ValueError(f"no rounding bound for loss {loss!r}: {why}")


def _exact_loss(loss: str, out: Tensor, targets: Tensor | None, anchor_logp: Tensor | None) -> Tensor:
    """The per-example loss in float64, differentiable (mirrors ``costs.losses.ExampleLoss``)."""
    if loss == "ce":
        z = out if out.shape[-1] > 1 else torch.cat([torch.zeros_like(out), out], dim=-1)
        return torch.logsumexp(z, -1) - z.gather(-1, targets.view(-1, 1)).squeeze(-1)
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(out, targets.double().reshape(out.shape), reduction="none").sum(-1)
    if loss == "mse":
        return (out - targets.double().reshape(out.shape)).square().sum(-1)
    if loss == "kl":
        z = out if out.shape[-1] > 1 else torch.cat([torch.zeros_like(out), out], dim=-1)
        p = anchor_logp.double().exp()
        return (torch.special.xlogy(p, p) - p * torch.log_softmax(z, -1)).sum(-1)
    raise ValueError(f"no rounding bound for loss {loss!r}")


def _affine_magnitude(module: nn.Module, h: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, int]:
    """(M = |W| |h| + |b| per output element, K inputs per output) of a Linear or Conv module."""
    if isinstance(module, nn.Linear):
        return F.linear(h.abs(), weight, bias), weight.shape[1]
    conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
    M = conv(h.abs(), weight, bias, module.stride, module.padding, module.dilation, module.groups)
    return M, int(weight[0].numel())


def cost_rounding_bound(model: nn.Module, inputs: Tensor, targets: Tensor | None, loss: str, points: Tensor, *,
                        dtype: torch.dtype, origin: Tensor | None = None, normaliser: float | None = None,
                        anchor_logp: Tensor | None = None, lam: float = CONFIDENCE_LAMBDA,
                        roundoff: float | None = None) -> Tensor:
    """Tolerance on ``|cost_A(p) - cost_B(p)|`` for two evaluations in ``dtype`` of the mean loss
    of ``model`` over ``(inputs, targets)`` at each row ``p`` of ``points`` ``[B, n]`` (flat
    parameters in ``model.parameters()`` order) that run the same arithmetic in different orders
    (see the module docstring). Returns float64 ``[B]``.

    Args:
        origin: ``[n]`` when the points are formed as ``origin + t * d`` in ``dtype`` (a ray), so the
            formation's roundings are counted and ``|W|`` is ``|origin| + |p - origin|``.
        normaliser: M of the mean (default N; ``N * k`` for "bce" and "mse", as ``ModelCost``).
        anchor_logp: ``[N, C]`` the anchor's log-probabilities ("kl" only).
        roundoff: the unit roundoff (default ``unit_roundoff(dtype)``; 2^-11 for TF32 matmuls).

    Raises TypeError naming a module whose rounding is not derived here (normalisation layers,
    embeddings, attention): the bound covers Linear / Conv layers with elementwise activations.
    """
    if loss not in ("ce", "bce", "mse", "kl"):
        example_loss_terms(loss, torch.zeros(1, 1), None)  # raises, naming why
    u = unit_roundoff(dtype) if roundoff is None else float(roundoff)
    net = copy.deepcopy(model).to(device=points.device, dtype=torch.float64).eval()
    params = list(net.parameters())
    sizes = [p.numel() for p in params]
    n = sum(sizes)
    if points.ndim != 2 or points.shape[1] != n:
        raise ValueError(f"points must be [B, {n}] flat parameter vectors, got {tuple(points.shape)}")
    leaves = [(name, m) for name, m in net.named_modules() if not list(m.children())]
    for name, m in leaves:
        if not isinstance(m, _EXACT + _SMOOTH + _AFFINE):
            raise TypeError(f"cost_rounding_bound: module {name or '(root)'} ({type(m).__name__}) has no derived "
                            "rounding bound here (Linear and Conv layers with elementwise activations are covered); "
                            "compare such a model's costs in float64, or extend volbench.costs.rounding")
    x = inputs.double().to(points.device)
    t = None if targets is None else targets.to(points.device)
    o64 = None if origin is None else origin.double().to(points.device)
    bounds = [_point_bound(net, params, leaves, sizes, row, o64, x, t, loss, normaliser, anchor_logp, lam, u)
              for row in points.double()]
    return torch.tensor(bounds, dtype=torch.float64)


def _point_bound(net: nn.Module, params: list, leaves: list, sizes: list, row: Tensor, origin: Tensor | None,
                 x: Tensor, targets: Tensor | None, loss: str, normaliser: float | None, anchor_logp: Tensor | None,
                 lam: float, u: float) -> float:
    """The bound of :func:`cost_rounding_bound` at one flat point ``row`` (float64)."""
    N = x.shape[0]
    pieces = torch.split(row, sizes)
    # |W| of each parameter: with a ray, |origin| + |t d| (the formed parameter's parts)
    mags = pieces if origin is None else torch.split(origin.abs() + (row - origin).abs(), sizes)
    mags = [m.abs() for m in mags]
    with torch.no_grad():
        for p, piece in zip(params, pieces):
            p.copy_(piece.view_as(p))
    index = {id(p): i for i, p in enumerate(params)}
    extra = 6 if origin is not None else 0  # formation t * d + origin, and the ray's A + t B
    recorded = []  # (output tensor, weight of each output element's squared term / u^2)

    def hook(module, args, output):
        if isinstance(module, _AFFINE):
            w = mags[index[id(module.weight)]].view_as(module.weight)
            b = None if module.bias is None else mags[index[id(module.bias)]].view_as(module.bias)
            M, K = _affine_magnitude(module, args[0].detach(), w, b)
            recorded.append((output, (2 * K + 1 + extra) * M * M))
        elif isinstance(module, _SMOOTH):
            y = output.detach().abs()
            recorded.append((output, SMOOTH_ACTIVATION_ROUNDINGS ** 2 * y * y))

    handles = [m.register_forward_hook(hook) for _, m in leaves]
    try:
        for p in params:
            p.requires_grad_(True)
        out = net(x).reshape(N, -1)
        per_example = _exact_loss(loss, out, targets, anchor_logp)
        M_norm = normaliser if normaliser is not None else float(N * (out.shape[1] if loss in ("bce", "mse") else 1))
        cost = per_example.sum() / M_norm
        grads = torch.autograd.grad(cost, [o for o, _ in recorded], allow_unused=True) if recorded else []
    finally:
        for h in handles:
            h.remove()
    variance = sum(float((g.detach() ** 2 * w).sum()) for g, (_, w) in zip(grads, recorded) if g is not None)
    variance += float((example_loss_terms(loss, out.detach(), targets, anchor_logp) ** 2).sum()) / M_norm ** 2
    return 2 * lam * u * math.sqrt(variance) + 2 * u * abs(float(cost.detach()))


#: Lipschitz constants (sup |f'|) of the smooth elementwise activations, rounded up: what an error
#: in an activation's input can become in its output.
_LIPSCHITZ = {nn.Tanh: 1.0, nn.Sigmoid: 0.25, nn.GELU: 1.13, nn.SiLU: 1.1, nn.Softplus: 1.0, nn.Mish: 1.2,
              nn.Hardtanh: 1.0}


def _lipschitz(module: nn.Module) -> float:
    if isinstance(module, nn.ELU):
        return max(1.0, float(module.alpha))
    if isinstance(module, nn.LeakyReLU):
        return max(1.0, abs(float(module.negative_slope)))
    if isinstance(module, nn.Softplus):
        return 1.0  # sup of sigmoid(beta x) for every beta
    return next(v for k, v in _LIPSCHITZ.items() if isinstance(module, k))


def output_rounding_bound(model: nn.Module, inputs: Tensor, *, dtype: torch.dtype, roundoff: float | None = None,
                          parameter_roundings: int = 0) -> Tensor:
    """Worst-case bound on ``|f_computed(x) - f(x)|`` per output element of a sequential network
    ``model`` evaluated in ``dtype`` on ``inputs`` (float64, the shape of ``model(inputs)``), for
    any order of the arithmetic: a deterministic forward-error bound (Higham, Sec. 3.5), so
    ``2 x`` it bounds two evaluations in different orders (another kernel, batch shape, thread
    count, device). Where a cost's value is compared, :func:`cost_rounding_bound` is the tighter
    (probabilistic) tool; this one is for the outputs themselves (argmax and sign decisions, a
    function's invariance under a reparameterisation).

    Propagated layer by layer with the computed value ``h`` (in float64) and the error bound ``e``:

    * ``Linear`` / ``Conv`` (``K`` inputs per output): ``e' = (1 + g) |W| e + g (|W| |h| + |b|)``
      with ``g = gamma_{K + 1 + p}``: ``K`` products and sums plus the bias, and ``p =
      parameter_roundings`` roundings carried by each parameter (1 for parameters that were
      computed, e.g. rescaled by a non-power of two);
    * ReLU, ReLU6, max pooling, Flatten, Identity, Dropout (eval): exact and 1-Lipschitz in each
      output: ``e' = e`` (pooled: the window's largest ``e``);
    * smooth activations: ``e' = L (1 + 8 u) e + 8 u |y|`` with ``L = sup |f'|`` (``SMOOTH_ACTIVATION_ROUNDINGS``
      ulps for the transcendental function, as in :func:`cost_rounding_bound`).

    Inputs in another dtype than ``dtype`` carry one rounding (``u |x|``). Raises TypeError for a
    module it does not cover (it must be an ``nn.Sequential``, possibly nested, of these).

    Example (an MLP whose top-2 logit gap exceeds twice the bound decides its argmax identically
    under every kernel):
        >>> g = torch.Generator().manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> x = torch.randn(8, 20, generator=g)
        >>> e = output_rounding_bound(net, x, dtype=torch.float32)
        >>> e.shape, bool((e < 1e-4).all()), bool((e > 0).all())
        (torch.Size([8, 3]), True, True)
    """
    u = unit_roundoff(dtype) if roundoff is None else float(roundoff)
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"output_rounding_bound needs an nn.Sequential, got {type(model).__name__}")
    leaves = [m for m in model.modules() if not list(m.children())]
    net = copy.deepcopy(model).to(dtype=torch.float64).eval()
    leaves64 = [m for m in net.modules() if not list(m.children())]
    h = inputs.detach().to(torch.float64)
    e = torch.zeros_like(h) if inputs.dtype == dtype else u * h.abs()
    with torch.no_grad():
        for orig, m in zip(leaves, leaves64):
            if isinstance(m, _AFFINE):
                w = m.weight.abs()
                b = None if m.bias is None else m.bias.abs()
                M, K = _affine_magnitude(m, h, w, b)
                g = gamma(K + 1 + parameter_roundings, u=u)
                prop, _ = _affine_magnitude(m, e, w, None)
                e = (1 + g) * prop + g * M
                h = m(h)
            elif isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
                e = m(e)  # e >= 0: the window's largest error
                h = m(h)
            elif isinstance(m, (nn.ReLU, nn.ReLU6, nn.Identity, nn.Dropout)):
                h = m(h)
            elif isinstance(m, (nn.Flatten, nn.Unflatten)):
                h, e = m(h), m(e)
            elif isinstance(m, _SMOOTH):
                h = m(h)
                lip = _lipschitz(m) * (1 + SMOOTH_ACTIVATION_ROUNDINGS * u)
                e = lip * e + SMOOTH_ACTIVATION_ROUNDINGS * u * h.abs()
            else:
                raise TypeError(f"output_rounding_bound: module {type(orig).__name__} has no derived rounding bound "
                                "here (Linear / Conv, elementwise activations, max pooling, Flatten)")
    return e
