"""Malformed input at every public entry point: a specific exception whose message names the
offending argument (and its value or shape), never a bare RuntimeError / IndexError from torch,
and never a silently wrong result.

Hypothesis draws the bad values; every call is cheap (the checks run before any search), so the
module runs in seconds. CLI commands are run through ``volbench.cli.main`` and, for the real entry
point, as ``volbench`` / ``python -m volbench.cli`` subprocesses: a non-zero exit status and one
``volbench: error:`` line, no traceback.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import volbench
from volbench import curvature, lab
from volbench import data as vdata
from volbench.costs import ModelCost
from volbench.estimator import preconditioners as pc
from volbench.function_space import boolean, nngp
from volbench.function_space import sharpness as flatness
from volbench.lab import models
from volbench.report import files
from volbench.report.example import example_run
from volbench.store.minima import MinimaStore

REPO = Path(volbench.__file__).resolve().parents[1]
N = 5  # parameters of the toy problems
FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SOME = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def bowl(p: torch.Tensor) -> torch.Tensor:
    return 0.5 * (p * p).sum(dim=1)


ESTIMATORS = {
    "estimate": lambda cost, anchor, **kw: volbench.estimate_log_volume(cost, anchor, **kw),
    "reference": lambda cost, anchor, **kw: volbench.reference_log_volume(cost, anchor, **kw),
}
both = pytest.mark.parametrize("which", sorted(ESTIMATORS))


def call(which: str, cost=bowl, anchor=None, **kw):
    kw.setdefault("threshold", 1.0)
    kw.setdefault("n_directions", 3)
    return ESTIMATORS[which](cost, torch.zeros(N) if anchor is None else anchor, **kw)


def names_value(message: str, value) -> bool:
    """True if the message shows the offending value (its repr, or str for numbers)."""
    return repr(value) in message or str(value) in message


# --------------------------------------------------------------------------- estimator: anchor

bad_shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple).filter(lambda s: len(s) != 1 or s == (0,))


@both
@FEW
@given(shape=bad_shapes)
def test_anchor_of_wrong_shape_names_the_shape(which, shape):
    with pytest.raises(ValueError, match="anchor must be a flat") as info:
        call(which, anchor=torch.zeros(shape))
    assert str(tuple(shape)) in str(info.value), info.value


@both
@FEW
@given(dtype=st.sampled_from([torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64]))
def test_anchor_of_wrong_dtype_names_the_dtype(which, dtype):
    with pytest.raises(TypeError, match="anchor must be a floating-point tensor") as info:
        call(which, anchor=torch.zeros(N, dtype=dtype))
    assert str(dtype) in str(info.value)


@both
@FEW
@given(value=st.one_of(st.none(), st.floats(), st.lists(st.floats(), max_size=3), st.text(max_size=3)))
def test_anchor_that_is_not_a_tensor_names_the_type(which, value):
    with pytest.raises(TypeError, match="anchor must be a flat torch.Tensor") as info:
        call(which, anchor=value) if value is not None else ESTIMATORS[which](bowl, None, threshold=1.0)
    assert type(value).__name__ in str(info.value)


@both
@FEW
@given(position=st.integers(0, N - 1), bad=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_anchor_with_nan_or_inf_is_refused(which, position, bad):
    anchor = torch.zeros(N)
    anchor[position] = bad
    with pytest.raises(ValueError, match=r"anchor has 1 non-finite entries \(NaN/Inf\)"):
        call(which, anchor=anchor)


# --------------------------------------------------------------------------- estimator: threshold

bad_thresholds = st.one_of(
    st.floats(max_value=0.0, allow_nan=False), st.just(math.nan), st.just(math.inf), st.just(-math.inf),
    st.booleans(), st.text(max_size=3), st.none(), st.just(torch.tensor(1.0)), st.just([1.0]),
)


@both
@FEW
@given(threshold=bad_thresholds)
def test_threshold_zero_negative_nan_or_not_a_number(which, threshold):
    with pytest.raises(ValueError, match="threshold must be a finite positive number") as info:
        call(which, threshold=threshold)
    assert repr(threshold) in str(info.value), info.value


@both
@FEW
@given(threshold=st.floats(1e-3, 1e3), factor=st.floats(1.0, 10.0))
def test_anchor_outside_its_own_basin(which, threshold, factor):
    """The anchor's cost is >= the threshold: not inside its own basin."""
    anchor = torch.full((N,), math.sqrt(2 * threshold * factor / N) * 1.01, dtype=torch.float64)
    with pytest.raises(ValueError, match="is not below the threshold") as info:
        call(which, anchor=anchor, threshold=threshold, dtype=torch.float64)
    msg = str(info.value)
    assert f"{threshold:.6g}" in msg and "not inside its own basin" in msg and "raise the threshold" in msg


# --------------------------------------------------------------------------- estimator: the cost

@both
@FEW
@given(bad=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_cost_nan_or_inf_at_the_anchor(which, bad):
    with pytest.raises(ValueError, match=f"the cost at the anchor is {bad}"):
        call(which, cost=lambda p: torch.full((p.shape[0],), bad))


@both
@FEW
@given(shape=st.lists(st.integers(0, 3), max_size=3).map(tuple).filter(lambda s: s != (1,)))
def test_cost_of_wrong_shape_names_the_shape(which, shape):
    with pytest.raises(ValueError, match="one cost per parameter vector") as info:
        call(which, cost=lambda p: torch.zeros(shape))
    assert f"cost returned {tuple(shape)}" in str(info.value)


@both
@FEW
@given(out=st.one_of(st.floats(), st.lists(st.floats(), max_size=2), st.none(), st.just(np.zeros(1))))
def test_cost_returning_a_non_tensor_names_the_type(which, out):
    with pytest.raises(ValueError, match="one cost per parameter vector") as info:
        call(which, cost=lambda p: out)
    assert f"cost returned {type(out).__name__}" in str(info.value)


@both
def test_cost_not_callable_and_complex_cost(which):
    with pytest.raises(TypeError, match="cost must be callable .* got int"):
        call(which, cost=3)
    with pytest.raises(TypeError, match="complex64 tensor; a cost must be real"):
        call(which, cost=lambda p: torch.zeros(p.shape[0], dtype=torch.complex64))


def test_nan_costs_away_from_the_anchor_count_as_outside():
    """Not an error: a diverging loss (NaN) beyond some radius is outside the basin."""
    nan_far = lambda p: torch.where(p.norm(dim=1) > 0.5, torch.nan, 0.0)  # noqa: E731
    est = volbench.estimate_log_volume(nan_far, torch.zeros(N), threshold=1.0, n_directions=4, rtol=1e-4,
                                       dtype=torch.float64)
    assert torch.allclose(est.radii, torch.full((4,), 0.5, dtype=torch.float64), rtol=1e-3)


# --------------------------------------------------------------------------- estimator: other knobs

@both
@FEW
@given(K=st.one_of(st.integers(max_value=0), st.floats(), st.booleans(), st.text(max_size=2), st.none()))
def test_bad_number_of_directions(which, K):
    with pytest.raises(ValueError, match="n_directions must be a positive integer") as info:
        call(which, n_directions=K)
    assert repr(K) in str(info.value)


@both
@FEW
@given(seed=st.integers(max_value=-1))
def test_negative_seed(which, seed):
    with pytest.raises(ValueError, match="seed must be a non-negative int") as info:
        call(which, seed=seed)
    assert str(seed) in str(info.value)


@both
@FEW
@given(seed=st.one_of(st.floats(), st.text(max_size=3), st.none(), st.booleans(), st.just(torch.tensor(1))))
def test_seed_of_wrong_type(which, seed):
    """A float seed used to be truncated silently (1.5 -> 1); a string gave int()'s message."""
    with pytest.raises(TypeError, match="seed must be a non-negative int") as info:
        call(which, seed=seed)
    assert type(seed).__name__ in str(info.value)


@both
@FEW
@given(batch_size=st.one_of(st.integers(max_value=0), st.floats(), st.text(max_size=2), st.booleans()))
def test_bad_batch_size(which, batch_size):
    """reference_log_volume used to return a NaN volume for batch_size=-1 and 'range() arg 3 must
    not be zero' for 0."""
    with pytest.raises(ValueError, match="batch_size must be a positive int") as info:
        call(which, batch_size=batch_size)
    assert repr(batch_size) in str(info.value)


@both
@FEW
@given(dtype=st.one_of(st.sampled_from([torch.int32, torch.int64, torch.bool, torch.complex64]),
                       st.sampled_from(["float32", "float64", None, 32])))
def test_bad_dtype(which, dtype):
    """An integer dtype used to run and return a meaningless volume."""
    with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype") as info:
        call(which, dtype=dtype)
    assert repr(dtype) in str(info.value)


@both
@FEW
@given(device=st.one_of(st.sampled_from(["gpu", "nope", "cuda:99", "cpu:x", ""]), st.floats(), st.booleans()))
def test_bad_device(which, device):
    assume(not (device == "cuda:99" and torch.cuda.device_count() > 99))
    with pytest.raises((ValueError, TypeError), match="device") as info:
        call(which, device=device)
    assert type(info.value) in (ValueError, TypeError)
    assert (repr(device) in str(info.value)) or (type(device).__name__ in str(info.value)), info.value


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is missing")
@both
def test_cuda_without_cuda_says_so(which):
    with pytest.raises(ValueError, match="needs CUDA, but torch .* sees no CUDA device; pass device='cpu'"):
        call(which, device="cuda")


@FEW
@given(measure=st.text(max_size=8).filter(lambda m: m not in ("lebesgue", "gaussian")))
def test_unknown_measure_name(measure):
    with pytest.raises(ValueError, match="measure must be 'lebesgue' or 'gaussian'") as info:
        call("estimate", measure=measure)
    assert repr(measure) in str(info.value)


@FEW
@given(directions=st.one_of(st.text(max_size=8).filter(lambda d: d not in ("isotropic", "filter", "prior")), st.none(),
                            st.integers()))
def test_unknown_direction_kind(directions):
    with pytest.raises(ValueError,
                       match="directions must be 'isotropic', 'filter', 'prior' or a \\[K, n\\] tensor") as info:
        call("estimate", directions=directions)
    assert repr(directions) in str(info.value)


@FEW
@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=3).map(tuple).filter(lambda s: s not in ((N,), (N, N))))
def test_preconditioner_of_wrong_shape(shape):
    with pytest.raises(ValueError, match=f"does not match n_params={N}") as info:
        call("estimate", preconditioner=torch.ones(shape))
    assert str(tuple(shape)) in str(info.value)


@FEW
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=N, max_size=N)
       .filter(lambda v: any(not math.isfinite(x) or x <= 0 for x in v)))
def test_preconditioner_not_positive_or_not_finite(values):
    with pytest.raises(ValueError, match="preconditioner") as info:
        call("estimate", preconditioner=torch.tensor(values, dtype=torch.float64))
    assert "non-finite" in str(info.value) or "strictly positive" in str(info.value)


def test_matrix_preconditioner_asymmetric_or_indefinite():
    asymmetric = torch.eye(N, dtype=torch.float64)
    asymmetric[0, 1] = 0.5
    with pytest.raises(ValueError, match="matrix preconditioner must be symmetric"):
        call("estimate", preconditioner=asymmetric)
    indefinite = torch.eye(N, dtype=torch.float64)
    indefinite[0, 0] = -1.0  # symmetric, one negative eigenvalue: its Cholesky stops at column 0
    with pytest.raises(ValueError, match="must be positive definite .*fails at column 0.*add eps"):
        call("estimate", preconditioner=indefinite)


@FEW
@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=3).map(tuple).filter(lambda s: s != (3, N)))
def test_explicit_directions_of_wrong_shape(shape):
    assume(not (len(shape) == 2 and shape[1] == N))
    with pytest.raises(ValueError, match=f"explicit directions must be \\[K, {N}\\]|directions must be") as info:
        call("estimate", directions=torch.ones(shape))
    assert str(tuple(shape)) in str(info.value) or "directions must be" in str(info.value)


@FEW
@given(std=st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf),
                     st.lists(st.floats(0.1, 1), min_size=1, max_size=4).map(torch.tensor)))
def test_gaussian_prior_std_bad(std):
    with pytest.raises(ValueError, match=f"prior_std must be a positive float or a positive \\[{N}\\] tensor"):
        call("estimate", measure="gaussian", prior_std=std)


@pytest.mark.parametrize("kw, error, fragment", [
    (dict(measure="gaussian", prior_std="wide"), TypeError, "prior_std must be a positive float"),
    (dict(measure="gaussian"), ValueError, "needs prior_std"),
    (dict(prior_std=1.0), ValueError, "prior_std is only used with measure='gaussian'"),
    (dict(rtol="tight"), TypeError, "rtol must be a real number, got 'tight'"),
    (dict(rtol=0.0), ValueError, "rtol must be in \\(0, 1\\), got 0.0"),
    (dict(growth=1.0), ValueError, "growth must be in"),
    (dict(max_radius=math.inf), ValueError, "max_radius < inf"),
    (dict(fine_scan=-1), ValueError, "fine_scan must be >= 0"),
    (dict(directions="filter"), ValueError, "needs a model cost"),
])
def test_other_estimator_knobs(kw, error, fragment):
    with pytest.raises(error, match=fragment):
        call("estimate", **kw)


@pytest.mark.parametrize("kw, error, fragment", [
    (dict(scale=torch.ones(3)), ValueError, f"scale must be a finite \\[{N}\\] tensor"),
    (dict(scale="ones"), TypeError, "scale must be a finite .* got str"),
    (dict(coefficients=torch.tensor([1.0, 0.0])), ValueError, "non-decreasing"),
    (dict(directions=torch.ones(3, N + 1)), ValueError, f"directions must be a \\[K, {N}\\] tensor"),
    (dict(lookahead=0), ValueError, "lookahead must be an int >= 1, got 0"),
    (dict(lookahead=1.5), ValueError, "lookahead must be an int >= 1, got 1.5"),
])
def test_other_reference_knobs(kw, error, fragment):
    with pytest.raises(error, match=fragment):
        call("reference", **kw)


# --------------------------------------------------------------------------- ModelCost

@FEW
@given(width=st.integers(1, 8), features=st.integers(1, 8), n=st.integers(1, 6))
def test_model_cost_with_incompatible_model_and_data(width, features, n):
    """Used to be torch's bare 'mat1 and mat2 shapes cannot be multiplied' RuntimeError."""
    assume(width != features)
    model = nn.Sequential(nn.Linear(width, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match="cannot take inputs of shape") as info:
        ModelCost(model, torch.zeros(n, features), torch.zeros(n, dtype=torch.long))
    msg = str(info.value)
    assert f"({n}, {features})" in msg and f"expects {width} features" in msg and "do not match" in msg, msg


@pytest.mark.parametrize("inputs, fragment", [
    (torch.zeros(4, 16), "expects [N, 1, H, W] images"),  # flat data into a CNN
    (torch.zeros(4, 3, 4, 4), "expects [N, 1, H, W] images"),  # wrong channel count
    (torch.zeros(4, 1, 5, 5), "cannot take inputs of shape (4, 1, 5, 5)"),  # wrong image size
])
def test_model_cost_with_cnn_and_wrong_images(inputs, fragment):
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ValueError) as info:
        ModelCost(cnn, inputs, torch.zeros(4, dtype=torch.long))
    assert fragment in str(info.value), info.value


@FEW
@given(loss=st.text(max_size=8).filter(lambda s: s not in ("ce", "bce", "mse", "kl", "zero_one")))
def test_model_cost_unknown_loss(loss):
    with pytest.raises(ValueError, match="unknown loss") as info:
        ModelCost(nn.Linear(2, 2), torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), loss=loss)
    assert repr(loss) in str(info.value) and "choose one of ce, bce, mse, kl, zero_one" in str(info.value)


@FEW
@given(position=st.integers(0, 5), bad=st.sampled_from([math.nan, math.inf]),
       where=st.sampled_from(["inputs", "anchor"]))
def test_model_cost_with_nan_or_inf_inputs_or_anchor(position, bad, where):
    model = nn.Linear(2, 2)
    x = torch.zeros(3, 2)
    anchor = None
    if where == "inputs":
        x.view(-1)[position] = bad
    else:
        anchor = torch.zeros(6)
        anchor[position] = bad
    with pytest.raises(ValueError, match="1 non-finite values \\(NaN/Inf\\)") as info:
        ModelCost(model, x, torch.zeros(3, dtype=torch.long), anchor=anchor)
    assert where in str(info.value)


@pytest.mark.parametrize("kw, error, fragment", [
    (dict(targets=torch.zeros(2, dtype=torch.long)), ValueError, "targets must have 3 rows"),
    (dict(targets=torch.full((3,), 7)), ValueError, "class labels must lie in \\[0, 2\\), got range \\[7, 7\\]"),
    (dict(targets=torch.zeros(3)), TypeError, "needs integer class labels"),
    (dict(inputs=[[0.0, 0.0]]), TypeError, "inputs must be a torch.Tensor"),
    (dict(model=lambda x: x), TypeError, "model must be a torch.nn.Module, got function"),
    (dict(path="gpu"), ValueError, "unknown path 'gpu'"),
    (dict(device="tpu0"), ValueError, "device 'tpu0' is not a torch device"),
    (dict(dtype=torch.int32), TypeError, "dtype must be a floating-point torch.dtype"),
    (dict(memory_budget_bytes=0), ValueError, "memory_budget_bytes must be a positive int"),
    (dict(data_chunk=-3), ValueError, "data_chunk must be a positive int"),
    (dict(anchor=torch.zeros(5)), ValueError, "anchor must have shape \\[6\\]"),
])
def test_model_cost_bad_construction(kw, error, fragment):
    args = dict(model=nn.Linear(2, 2), inputs=torch.zeros(3, 2), targets=torch.zeros(3, dtype=torch.long))
    args.update(kw)
    with pytest.raises(error, match=fragment):
        ModelCost(args.pop("model"), args.pop("inputs"), args.pop("targets"), **args)


@FEW
@given(shape=st.lists(st.integers(0, 7), max_size=3).map(tuple).filter(lambda s: len(s) != 2 or s[1] != 6))
def test_model_cost_called_with_wrong_params_shape(shape):
    cost = ModelCost(nn.Linear(2, 2), torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="params must have shape \\[B, 6\\]") as info:
        cost(torch.zeros(shape))
    assert str(tuple(shape)) in str(info.value)


# --------------------------------------------------------------------------- models, data

@FEW
@given(name=st.text(max_size=12).filter(lambda s: s not in models.names()))
def test_unknown_model_name(name):
    with pytest.raises(ValueError, match="unknown model") as info:
        models.build(name, seed=0)
    assert repr(name) in str(info.value) and "mnist_mlp" in str(info.value), "names the valid models"


@FEW
@given(name=st.text(max_size=12).filter(lambda s: s not in vdata.names()))
def test_unknown_dataset_name(name):
    with pytest.raises(ValueError, match="unknown data set") as info:
        vdata.load(name)
    assert repr(name) in str(info.value) and "swiss_roll" in str(info.value)


@pytest.mark.parametrize("call_, error, fragment", [
    (lambda: models.build(3, seed=0), TypeError, "model name must be a str, got int"),
    (lambda: models.build("swiss_mlp", seed=-1), ValueError, "seed must be a non-negative int, got -1"),
    (lambda: models.build("swiss_mlp", seed=0, widht=3), TypeError, "unknown option\\(s\\) \\['widht'\\]"),
    (lambda: vdata.load(3), TypeError, "name must be a str, got int"),
    (lambda: vdata.load("swiss_roll", n_trian=3), TypeError, "unknown option\\(s\\) n_trian"),
    (lambda: vdata.load("swiss_roll", seed=-1), ValueError, "seed must be a non-negative int, got -1"),
    (lambda: vdata.load("mnist", variant="20k"), ValueError, "variant must be one of .* got '20k'"),
    (lambda: vdata.load("swiss_roll", dtype=torch.int32), TypeError, "dtype must be a floating torch.dtype"),
])
def test_models_and_data_bad_arguments(call_, error, fragment):
    with pytest.raises(error, match=fragment):
        call_()


@pytest.mark.parametrize("name, expected_files", [
    ("mnist", ["t10k-images-idx3-ubyte", "train-labels-idx1-ubyte", "mnist-10k/"]),
    ("cifar10", ["data_batch_1", "test_batch", "cifar-10-batches-py/"]),
    ("svhn", ["train_32x32.mat", "test_32x32.mat"]),
])
def test_missing_data_set_names_the_data_root_variable_and_the_files(name, expected_files, tmp_path, monkeypatch):
    monkeypatch.setenv("VOLBENCH_DATA", str(tmp_path / "env-root"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(vdata.DatasetNotFoundError) as info:
        vdata.load(name, root=tmp_path / "arg-root")
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    assert "VOLBENCH_DATA" in msg and "root=" in msg, f"the fix must name the data root variable: {msg}"
    assert str(tmp_path / "arg-root") in msg and str(tmp_path / "env-root") in msg, "the folders searched"
    for expected in expected_files:
        assert expected in msg, f"the message must list the expected file {expected!r}: {msg}"


# --------------------------------------------------------------------------- lab and store

@pytest.fixture(scope="module")
def fake_minimum():
    """A Minimum record whose checks come before any data or training is touched."""
    spec = lab.MinimumSpec("swiss_roll", "swiss_mlp", train_size=40, seed=0, base=20)
    return lab.Minimum(spec=spec, params=torch.zeros(4353), metrics={}, key="0" * 64, trained_now=False)


@FEW
@given(threshold=bad_thresholds)
def test_lab_measure_refuses_bad_thresholds_before_caching(fake_minimum, tmp_path_factory, threshold):
    """Used to record (and cache) threshold <= 0 or NaN as a minimum outside its basin."""
    store = MinimaStore(tmp_path_factory.mktemp("store"))
    with pytest.raises(ValueError, match="threshold must be a finite positive number") as info:
        lab.measure(fake_minimum, 20, estimator="reference", n_directions=4, threshold=threshold, store=store)
    assert repr(threshold) in str(info.value)
    assert not (store.root / "measurements").exists(), "nothing may be cached for a refused call"


@FEW
@given(estimator=st.text(max_size=10), directions=st.text(max_size=10))
def test_lab_measure_unknown_estimator_or_directions(fake_minimum, estimator, directions):
    valid = {"reference": ("filter", "plain"), "principled": ("filter", "isotropic")}
    assume(estimator not in valid or directions not in valid[estimator])
    with pytest.raises(ValueError) as info:
        lab.measure(fake_minimum, 20, estimator=estimator, n_directions=4, threshold=0.5, directions=directions)
    msg = str(info.value)
    if estimator not in valid:
        assert "estimator must be 'reference' or 'principled'" in msg and repr(estimator) in msg
    else:
        assert f"directions for estimator={estimator!r} must be one of" in msg and repr(directions) in msg


@pytest.mark.parametrize("dataset, model, fragment", [
    ("swiss_roll", "mnist_mlp", "model 'mnist_mlp' takes inputs of shape (1, 28, 28) but data set 'swiss_roll' "
                                "has inputs of shape (2,)"),
    ("digits", "swiss_mlp", "model 'swiss_mlp' takes inputs of shape (2,) but data set 'digits'"),
    ("imagenet", "swiss_mlp", "unknown data set 'imagenet'"),
    ("swiss_roll", "resnet", "unknown model 'resnet'"),
])
def test_lab_incompatible_or_unknown_model_and_dataset(dataset, model, fragment, tmp_path):
    """Used to surface as 'mat1 and mat2 shapes cannot be multiplied' from inside training."""
    spec = lab.MinimumSpec(dataset, model, train_size=10, seed=0)
    with pytest.raises(ValueError) as info:
        lab.train_minimum(spec, MinimaStore(tmp_path))
    assert fragment in str(info.value), info.value
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused spec"


@FEW
@given(key=st.text(max_size=70).filter(lambda k: re.fullmatch("[0-9a-f]{64}", k) is None))
def test_store_bad_keys(tmp_path_factory, key):
    store = MinimaStore(tmp_path_factory.mktemp("s"))
    with pytest.raises(ValueError, match="store key must be 64 lowercase hex digits") as info:
        store.get(key)
    assert repr(key) in str(info.value)


@pytest.mark.parametrize("call_, error, fragment", [
    (lambda s: s.key({"lr": math.nan}), ValueError, "config\\['config'\\]\\['lr'\\] is nan"),
    (lambda s: s.key({"x": torch.ones(2)}), TypeError, "is an array; put its fingerprint"),
    (lambda s: s.key({}), ValueError, "config must be a non-empty dict"),
    (lambda s: s.put(s.key({"a": 1}), {"params": [1.0]}, {}), TypeError,
     "tensors\\['params'\\] must be a torch.Tensor"),
    (lambda s: s.put(s.key({"a": 1}), {"params": torch.ones(1)}, {"loss": math.inf}), TypeError, "without NaN/inf"),
    (lambda s: s.get_or_train({"a": 2}, "train"), TypeError, "train_fn must be callable, got str"),
    (lambda s: s.get_or_train({"a": 3}, lambda: None), TypeError, "train_fn must return \\(tensors"),
])
def test_store_bad_arguments_leave_no_entry(call_, error, fragment, tmp_path):
    store = MinimaStore(tmp_path)
    with pytest.raises(error, match=fragment):
        call_(store)
    assert store.keys() == []


def test_store_root_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        MinimaStore(tmp_path / "file")


# --------------------------------------------------------------------------- nngp, flatness, boolean, preconditioners

@FEW
@given(shape=st.lists(st.integers(0, 4), max_size=3).map(tuple).filter(lambda s: len(s) != 2 or s[1] == 0))
def test_nngp_kernel_bad_input_shape(shape):
    with pytest.raises(ValueError, match="X1") as info:
        nngp.nngp_kernel(torch.zeros(shape), depth=1, sigma_w=1.0, sigma_b=1.0)
    assert str(tuple(shape)) in str(info.value)


@FEW
@given(depth=st.one_of(st.integers(max_value=-1), st.floats(), st.booleans()),
       sigma=st.one_of(st.floats(max_value=-1e-9), st.just(math.nan), st.just(math.inf)))
def test_nngp_kernel_bad_hyperparameters(depth, sigma):
    with pytest.raises(ValueError, match="depth must be a non-negative int") as info:
        nngp.nngp_kernel(torch.zeros(2, 2), depth=depth, sigma_w=1.0, sigma_b=1.0)
    assert repr(depth) in str(info.value)
    with pytest.raises(ValueError, match="sigma_w must be a finite non-negative number") as info:
        nngp.nngp_kernel(torch.zeros(2, 2), depth=1, sigma_w=sigma, sigma_b=1.0)
    assert repr(sigma) in str(info.value)


@pytest.mark.parametrize("K, y, fragment", [
    (torch.eye(2, dtype=torch.float64), torch.tensor([0.0, 1.0]), "labels in \\{-1, \\+1\\}"),
    (torch.eye(2, dtype=torch.float64), torch.ones(3), "y must have shape \\[2\\]"),
    (torch.ones(2, 3, dtype=torch.float64), torch.ones(2), "non-empty square"),
    (torch.tensor([[1.0, math.nan], [math.nan, 1.0]], dtype=torch.float64), torch.ones(2), "NaN or Inf"),
    (torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64), torch.ones(2), "must be symmetric"),
    # not positive semi-definite: EP used to return a NaN log marginal marked converged
    (torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64), torch.ones(2), "smallest eigenvalue -1"),
])
def test_ep_bad_kernel_or_labels(K, y, fragment):
    with pytest.raises(ValueError, match=fragment):
        nngp.ep_log_marginal(K, y)


def test_flatness_bad_input():
    f = lambda w: (w ** 2).sum()  # noqa: E731
    with pytest.raises(ValueError, match="theta has 1 non-finite entries"):
        curvature.hessian_spectral_norm(f, torch.tensor([math.nan, 1.0]))
    with pytest.raises(ValueError,
                       match="theta must be a flat \\[n\\] tensor \\(1-D, non-empty\\), got shape \\(2, 2\\)"):
        curvature.hessian_spectral_norm(f, torch.ones(2, 2))
    with pytest.raises(ValueError, match="f must return a 0-dim tensor .* got \\(2,\\)"):
        curvature.hessian_spectral_norm(lambda w: w ** 2, torch.ones(2))
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        curvature.hessian_spectral_norm(f, torch.ones(2), seed=-1)
    with pytest.raises(ValueError, match="eps must be a positive finite number .* got 0"):
        flatness.SharpnessConfig(eps=0)
    with pytest.raises(ValueError, match="loss 'mse' needs targets of shape \\[4, 2\\] like the outputs"):
        curvature.FlatLoss(nn.Linear(3, 2), torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), "mse")
    # incompatible model and data: used to be torch's RuntimeError at the first Hessian product
    with pytest.raises(ValueError, match="cannot take inputs of shape \\(4, 3\\).*expects 5 features"):
        curvature.FlatLoss(nn.Linear(5, 2), torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), "ce")


@pytest.mark.parametrize("call_, error, fragment", [
    (lambda: boolean.boolean_inputs(11), ValueError, "n_inputs must be an int in 1..10, got 11"),
    (lambda: boolean.sample_function_counts(0, seed=0), ValueError, "n_samples must be a positive int, got 0"),
    (lambda: boolean.sample_function_counts(8, seed=-2), ValueError, "seed must be a non-negative int, got -2"),
    (lambda: boolean.sample_function_counts(8, seed=0, dtype="float32"), TypeError, "dtype must be a floating-point"),
    (lambda: boolean.draw_network_block(0, seed=0, block_size=-1), ValueError, "block_size must be a non-negative int"),
    (lambda: boolean.evaluate_networks([], torch.zeros(4, 7)), ValueError, "layers must be a non-empty list"),
    (lambda: boolean.evaluate_networks(boolean.draw_network_block(0, seed=0, block_size=2), torch.zeros(4, 3)),
     ValueError, "inputs must be \\[M, 7\\]"),
    (lambda: boolean.log_volume_of_function("zz", {5: 3}, 10), ValueError, "function 'zz' is not a hexadecimal"),
    (lambda: boolean.log_volume_of_function(-1, {5: 3}, 10), ValueError, "got -1"),
    (lambda: boolean.log_volume_of_function(5, {5: 3}, 10, confidence=1.5), ValueError, "confidence must be"),
])
def test_boolean_bad_input(call_, error, fragment):
    with pytest.raises(error, match=fragment):
        call_()


@FEW
@given(eps=st.one_of(st.floats(max_value=-1e-12), st.just(math.nan), st.just(math.inf), st.text(max_size=2)),
       shape=st.lists(st.integers(1, 3), min_size=2, max_size=3).map(tuple)
       .filter(lambda s: s[0] != s[-1] or len(s) == 3))
def test_make_preconditioner_bad_eps_and_shape(eps, shape):
    with pytest.raises(ValueError, match="eps must be a finite number >= 0") as info:
        pc.make_preconditioner(torch.ones(3), eps=eps)
    assert repr(eps) in str(info.value)
    with pytest.raises(ValueError, match="curvature must be \\[n\\] or \\[n, n\\]") as info:
        pc.make_preconditioner(torch.ones(shape), eps=0.1)
    assert str(tuple(shape)) in str(info.value)


def test_preconditioners_bad_input():
    with pytest.raises(ValueError, match="f must return a 0-dim tensor"):
        curvature.hessian(lambda w: w ** 2, torch.ones(3))
    with pytest.raises(ValueError, match="n = 100000 parameters exceeds max_params"):
        curvature.hessian(lambda w: (w ** 2).sum(), torch.ones(100_000))
    with pytest.raises(ValueError, match="loss must be one of ce, bce, mse, kl .* got 'hinge'"):
        curvature.FlatLoss(nn.Linear(3, 2), torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), "hinge")
    # incompatible model and data: used to be torch's RuntimeError inside the Hessian
    with pytest.raises(ValueError, match="cannot take inputs of shape \\(4, 3\\)"):
        curvature.FlatLoss(nn.Linear(5, 2), torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), "ce")
    with pytest.raises(ValueError, match="cannot take inputs of shape \\(4, 3\\)"):
        curvature.hesscale_diagonal(nn.Sequential(nn.Linear(5, 2)), torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="hutchinson|n_samples must be a positive integer, got 0"):
        curvature.hutchinson_diagonal(lambda w: (w ** 2).sum(), torch.ones(3), n_samples=0, seed=0)


# --------------------------------------------------------------------------- CLI

@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reports") / "r1"
    run_dir.mkdir()
    files.save_run(example_run(seed=0), run_dir / "results.json")
    return run_dir


def run_main(argv: list[str]) -> tuple[int, str]:
    from volbench.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


@FEW
@given(name=st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=12)
       .filter(lambda s: s.strip() and s not in ("latest", ".", "..") and not s.startswith("-") and "\x00" not in s))
def test_cli_report_and_compare_with_a_missing_run(tmp_path_factory, saved_run, name):
    root = tmp_path_factory.mktemp("root")
    assume(not (Path.cwd() / name).exists())
    for argv in (["report", name], ["compare", str(saved_run), name]):
        code, err = run_main([*argv, "--report-dir", str(root)])
        assert code == 1, (argv, err)
        assert err.startswith("volbench: error: no results.json at") and err.count("\n") == 1, err
        assert repr(name) in err and "Traceback" not in err, err


@FEW
@given(command=st.sampled_from(["report", "compare", "env"]),
       option=st.text(st.characters(whitelist_categories=("Ll",)), min_size=1, max_size=8).map(lambda s: "--" + s))
def test_cli_unknown_options_are_usage_errors(saved_run, command, option):
    known = {"report": ["--out", "--report-dir", "--help"], "compare": ["--markdown", "--fail-on-regression",
                                                                         "--report-dir", "--help"],
             "env": ["--json", "--help"]}[command]
    assume(not any(k.startswith(option) for k in known))  # argparse accepts unique prefixes
    args = {"report": [str(saved_run)], "compare": [str(saved_run), str(saved_run)], "env": []}[command]
    code, err = run_main([command, *args, option])
    assert code == 2, err
    assert option in err and "error:" in err and "Traceback" not in err, err


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("volbench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "volbench.cli"]


@pytest.mark.parametrize("argv, code, fragment", [
    (["bogus"], 2, "invalid choice: 'bogus'"),
    (["report"], 2, "the following arguments are required: RUN"),
    (["report", "{missing}"], 1, "no results.json at {missing}"),
    (["report", "{run}", "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["report", "{run}", "--out", "{blocker}/out"], 1, "cannot write the report into {blocker}/out"),
    (["report", "{notjson}"], 1, "is not valid JSON"),
    (["compare", "{run}"], 2, "compare needs at least two runs"),
    (["compare", "{run}", "{missing}"], 1, "no results.json at {missing}"),
    (["env", "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["run", "--tier", "weekly"], 2, "invalid choice: 'weekly'"),
    (["run", "--cases", "{missing}"], 2, "no case directory {missing}"),
])
def test_cli_entry_point_errors_are_one_line_without_traceback(argv, code, fragment, saved_run, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    notjson = tmp_path / "notjson.json"
    notjson.write_text("{not json")
    subs = {"run": str(saved_run), "missing": str(tmp_path / "missing"), "blocker": str(blocker),
            "notjson": str(notjson)}
    argv = [a.format(**subs) for a in argv]
    proc = subprocess.run([*_cli(), *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert fragment.format(**subs) in errors[0], proc.stderr
    assert not (blocker.is_dir()), "nothing may be created in place of the blocking file"
