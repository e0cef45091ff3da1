"""Tests of volbench.function_space.boolean: direct sampling of Boolean function volumes (Zhang et al. Sec. 5.1)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from volbench.function_space.boolean import (
    FunctionCounts,
    bits_to_function,
    block_generator_seed,
    boolean_inputs,
    constant_functions,
    draw_network_block,
    encode_functions,
    function_to_bits,
    log_volume_of_function,
    sample_function_counts,
)

F64 = torch.float64


def test_counts_sum_to_n_samples_and_record_settings():
    res = sample_function_counts(1000, seed=3, batch_size=512, block_size=256)
    assert isinstance(res, FunctionCounts)
    assert sum(res.counts.values()) == 1000 == res.n_samples, "counts must sum to n_samples (last block truncated)"
    assert (res.seed, res.block_size, res.n_inputs, res.widths) == (3, 256, 7, (40, 40))
    assert (res.sigma_w, res.sigma_b, res.device, res.dtype) == (1.0, 0.1, "cpu", "float32"), "paper defaults recorded"
    assert all(0 <= f < 2**128 for f in res.counts), "functions are 128-bit ints"


def test_same_seed_same_counts_and_different_seed_different_counts():
    a = sample_function_counts(600, seed=11, batch_size=256, block_size=128)
    b = sample_function_counts(600, seed=11, batch_size=256, block_size=128)
    c = sample_function_counts(600, seed=12, batch_size=256, block_size=128)
    assert a == b, "same seed and settings must give identical counts"
    assert a.counts != c.counts, "a different seed must draw different networks"


def test_counts_do_not_depend_on_batch_size():
    sizes = (128, 384, 1024, 2048)
    runs = [sample_function_counts(1300, seed=5, batch_size=bs, block_size=128) for bs in sizes]
    for bs, r in zip(sizes[1:], runs[1:]):
        assert r.counts == runs[0].counts, f"batch_size {bs} changed the counts; blocks fix the networks drawn"


def _slow_function(layers, i: int, X: torch.Tensor) -> int:
    """Network i of a block, evaluated input by input with plain loops; bit j = output_j > 0."""
    f = 0
    for j in range(X.shape[0]):
        h = X[j]
        for k, (W, b) in enumerate(layers):
            h = h @ W[i] + b[i]
            if k < len(layers) - 1:
                h = torch.clamp(h, min=0.0)
        if float(h[0]) > 0:
            f |= 1 << j
    return f


def test_counts_match_a_direct_slow_loop():
    seed, block, n = 21, 64, 150  # three blocks, the last one truncated to 22 networks
    X = boolean_inputs(7, dtype=F64)
    oracle: dict[int, int] = {}
    for k in range(-(-n // block)):
        layers = draw_network_block(k, seed=seed, block_size=block, dtype=F64)
        for i in range(min(block, n - k * block)):
            f = _slow_function(layers, i, X)
            oracle[f] = oracle.get(f, 0) + 1
    res = sample_function_counts(n, seed=seed, batch_size=128, block_size=block, dtype=F64)
    assert res.counts == oracle, "batched sampler must reproduce the per-network loop exactly (float64)"
    zero, ones = constant_functions(7)
    for f in (zero, ones):
        assert res.probability(f) == oracle.get(f, 0) / n, "P(constant function) equals the loop's frequency"


def test_draw_follows_the_documented_recipe():
    seed, k, block = 7, 4, 32
    layers = draw_network_block(k, seed=seed, block_size=block, widths=(40, 40), sigma_w=1.0, sigma_b=0.1)
    g = torch.Generator().manual_seed(block_generator_seed(seed, k))
    flat = torch.randn(block, 7 * 40 + 40 + 40 * 40 + 40 + 40 + 1, generator=g)
    assert torch.equal(layers[0][0], flat[:, :280].reshape(block, 7, 40) * (1.0 / math.sqrt(7))), "W1 layout/scale"
    assert torch.equal(layers[0][1], flat[:, 280:320] * 0.1), "b1 = sigma_b * N(0, 1)"
    assert torch.equal(layers[2][0], flat[:, -41:-1].reshape(block, 40, 1) * (1.0 / math.sqrt(40))), "W3"
    assert block_generator_seed(seed, k) != block_generator_seed(seed, k + 1) != block_generator_seed(seed + 1, k)
    assert 0 <= block_generator_seed(2**40, 10**9) < 2**63


def test_linear_model_matches_exact_orthant_probability():
    """widths=() is a linear model: on the inputs 0 and 1 of n = 1 it outputs (b, w + b), so
    P(f = both positive) = 1/4 + arcsin(rho) / (2 pi), rho = sigma_b / sqrt(sigma_w^2 + sigma_b^2)."""
    sw, sb, n = 1.0, 0.7, 40000
    res = sample_function_counts(n, seed=1, n_inputs=1, widths=(), sigma_w=sw, sigma_b=sb, batch_size=8192,
                                 block_size=8192)
    rho = sb / math.sqrt(sw**2 + sb**2)
    exact = 0.25 + math.asin(rho) / (2 * math.pi)
    iv = log_volume_of_function(0b11, res, confidence=0.999)
    assert iv.log_lower <= math.log(exact) <= iv.log_upper, (
        f"P(f=11) = {exact:.4f} outside the 99.9% Wilson interval [{math.exp(iv.log_lower):.4f}, "
        f"{math.exp(iv.log_upper):.4f}] of {n} samples"
    )


def test_complement_symmetry_of_constant_functions():
    # Negating the last layer maps f to its complement and leaves the prior unchanged, so
    # P(all zeros) = P(all ones). Two-sided binomial test of their split; fails with prob 1e-3.
    res = sample_function_counts(16384, seed=2, batch_size=4096)
    zero, ones = constant_functions(7)
    a, b = res.counts.get(zero, 0), res.counts.get(ones, 0)
    assert a + b > 1000, f"constant functions are frequent for sigma_b = 0.1 (got {a} + {b} of 16384)"
    p = binomtest(a, a + b, 0.5).pvalue
    assert p > 1e-3, f"P(0...0) vs P(1...1): {a} vs {b}, binomial p = {p:.2e} (threshold 1e-3)"


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), n_inputs=st.integers(1, 9))
def test_encoding_round_trips(seed, n_inputs):
    g = torch.Generator().manual_seed(seed)
    bits = torch.rand(5, 2**n_inputs, generator=g) < 0.5
    words = encode_functions(bits)
    assert words.shape == (5, max(1, 2**n_inputs // 64)) and words.dtype == torch.int64
    for row, w in zip(bits, words.tolist()):
        f = sum((x % 2**64) << (64 * k) for k, x in enumerate(w))  # two's complement words -> int
        assert f == bits_to_function(row), "packed words must equal the function's int"
        assert torch.equal(function_to_bits(f, n_inputs), row), "function_to_bits inverts bits_to_function"
        assert torch.equal(function_to_bits(format(f, "x"), n_inputs), row), "hex strings are accepted"


def test_boolean_inputs_layout():
    X = boolean_inputs(7)
    assert X.shape == (128, 7) and X.dtype == torch.float32
    assert X[5].tolist() == [0, 0, 0, 0, 1, 0, 1], "row j is j in binary, most significant bit first"
    assert len({tuple(r) for r in X.tolist()}) == 128
    assert constant_functions(7) == (0, 2**128 - 1) and constant_functions(2) == (0, 15)


@pytest.mark.parametrize("method, scipy_method", [("wilson", "wilson"), ("clopper-pearson", "exact")])
def test_log_volume_interval_matches_scipy(method, scipy_method):
    counts, n = {3: 17, 8: 983}, 1000
    iv = log_volume_of_function(3, counts, n, confidence=0.9, method=method)
    ci = binomtest(17, 1000).proportion_ci(confidence_level=0.9, method=scipy_method)
    assert iv.count == 17 and math.isclose(iv.log_volume, math.log(0.017), rel_tol=1e-15)
    assert math.isclose(iv.log_lower, math.log(ci.low), rel_tol=1e-12)
    assert math.isclose(iv.log_upper, math.log(ci.high), rel_tol=1e-12)
    unseen = log_volume_of_function(5, counts, n, method=method)
    assert unseen.log_volume == -math.inf and unseen.log_lower == -math.inf, "unseen function: log V = -inf"
    assert math.log(1e-4) < unseen.log_upper < math.log(1e-2), "but a finite upper bound ~3/n"


def test_log_volume_accepts_function_counts_and_rejects_bad_input():
    res = sample_function_counts(512, seed=0, batch_size=512, block_size=256)
    f, c = res.most_common(1)[0]
    iv = log_volume_of_function(function_to_bits(f), res)
    assert iv.count == c and iv.n_samples == 512 and iv.function == f
    with pytest.raises(ValueError, match="contradicts"):
        log_volume_of_function(f, res, 100)
    with pytest.raises(ValueError, match="n_samples is required"):
        log_volume_of_function(f, {f: 1})
    with pytest.raises(ValueError, match="method"):
        log_volume_of_function(f, res, method="jeffreys")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exceeds"):
        log_volume_of_function(1, {1: 5}, 3)
    with pytest.raises(ValueError, match="multiple of block_size"):
        sample_function_counts(100, seed=0, batch_size=1000, block_size=256)
    with pytest.raises(ValueError, match="n_samples"):
        sample_function_counts(0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        sample_function_counts(10, seed=-1)
    with pytest.raises(ValueError, match="widths"):
        sample_function_counts(10, seed=0, widths=(40, 0))
    with pytest.raises(ValueError, match="n_inputs"):
        boolean_inputs(11)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sampling_on_cuda_is_reproducible_and_batch_invariant():
    runs = [sample_function_counts(20000, seed=9, device="cuda", batch_size=bs, block_size=1024) for bs in (1024, 8192)]
    assert runs[0].device == "cuda" and sum(runs[0].counts.values()) == 20000
    assert runs[0].counts == runs[1].counts, "batch size must not change counts on CUDA either"
    zero, ones = constant_functions(7)
    cpu = sample_function_counts(20000, seed=9, batch_size=8192, block_size=1024)
    # Different generator streams, same distribution: constant-function frequencies agree within
    # 5 binomial standard errors (p ~ 0.08, n = 20000: SE ~ 0.0027 each).
    for f in (zero, ones):
        p, q = runs[0].probability(f), cpu.probability(f)
        se = math.sqrt(p * (1 - p) / 20000 + q * (1 - q) / 20000)
        assert abs(p - q) < 5 * se, f"CUDA vs CPU P(constant) {p:.4f} vs {q:.4f} (5 SE = {5 * se:.4f})"
