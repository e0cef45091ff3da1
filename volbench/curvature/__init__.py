"""Curvature of the loss at a minimum: the one loss at flat parameters (:class:`FlatLoss`), the one
Hessian-vector product, the Hessian and its diagonal (exact, Hutchinson), HesScale, Adam's buffers,
and the spectrum (spectral norm, top eigenvalues).

The estimator's preconditioners (``volbench.estimator.preconditioners``) turn this curvature into a
unit-determinant P; the flatness measures of Zhang et al. (``volbench.function_space.sharpness``)
read it too.

Modules: ``flat_loss``, ``hessian``, ``hesscale``, ``adam``, ``spectrum``.
"""
from volbench.curvature.adam import adam_first_moment, adam_second_moment, adam_state_vectors
from volbench.curvature.flat_loss import FlatLoss
from volbench.curvature.hesscale import hesscale_diagonal
from volbench.curvature.hessian import (
    HESSIAN_MAX_PARAMS,
    hessian,
    hessian_diagonal,
    hessian_vector_product,
    hutchinson_diagonal,
)
from volbench.curvature.spectrum import hessian_spectral_norm, hessian_top_eigenvalues

__all__ = ["FlatLoss", "HESSIAN_MAX_PARAMS", "hessian", "hessian_diagonal", "hessian_vector_product",
           "hutchinson_diagonal", "hesscale_diagonal", "adam_first_moment", "adam_second_moment",
           "adam_state_vectors", "hessian_spectral_norm", "hessian_top_eigenvalues"]
