"""volbench.lab.train: optimisers against hand-computed steps, determinism, checkpoints, history."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from helpers import devices, gamma
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from volbench.lab import models
from volbench.lab.train import EpochRecord, TrainConfig, TrainResult, loss_and_accuracy, paper_recipe, train


def spirals(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two spirals as in Fan et al.: t = sqrt(U) 1.7 2pi, arm (-1.5 t cos t, 1.5 t sin t)
    + N(0, 0.3^2), second class = -arm; BCE targets [N, 1]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.sqrt(torch.rand(n_per_class, generator=g)) * 1.7 * 2 * math.pi
    arm = torch.stack([-1.5 * t * torch.cos(t), 1.5 * t * torch.sin(t)], 1)
    arm = arm + 0.3 * torch.randn(n_per_class, 2, generator=g)
    x = torch.cat([arm, -arm])
    y = torch.cat([torch.zeros(n_per_class), torch.ones(n_per_class)]).unsqueeze(1)
    return x, y


def small_net(seed: int = 0, dtype=torch.float32) -> nn.Sequential:
    return models.build("swiss_mlp", seed=seed, hidden=(16, 16), dtype=dtype)


X, Y = spirals(50, seed=0)  # 100 points, as small as the claim's smallest landscapes


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: intra-op threads only add spin-wait overhead (15x slower on a loaded 2-core
    machine), so these tests run single-threaded and restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_adamw_reduces_loss_and_is_bit_deterministic():
    cfg = TrainConfig(loss="bce", lr=1e-2, epochs=100, batch_size=32, seed=3, checkpoint_epochs=(30,))
    a = train(small_net(), X, Y, cfg)
    b = train(small_net(), X, Y, cfg)
    first = a.history[0].train_loss
    assert a.train_loss < 0.7 * first, \
        f"AdamW must cut the loss by >30% in 100 epochs: {first:.3f} -> {a.train_loss:.3f}"
    assert torch.equal(a.params, b.params), "same seed must give bit-identical final parameters on the CPU"
    assert torch.equal(a.exp_avg_sq, b.exp_avg_sq) and torch.equal(a.checkpoints[30], b.checkpoints[30]), \
        "optimizer state and checkpoints bit-identical too"
    assert [r.train_loss for r in a.history] == [r.train_loss for r in b.history], "history identical"
    c = train(small_net(), X, Y, dataclasses.replace(cfg, seed=4))
    assert not torch.equal(a.params, c.params), "a different minibatch seed must change the result"


def test_adam_moments_and_first_step_match_hand_computation():
    net = small_net(seed=1, dtype=torch.float64)
    x, y = X.double(), Y.double()
    w0 = nn.utils.parameters_to_vector(net.parameters()).detach().clone()
    loss = nn.functional.binary_cross_entropy_with_logits(net(x), y)
    g = torch.cat([gr.reshape(-1) for gr in torch.autograd.grad(loss, list(net.parameters()))])
    cfg = TrainConfig(loss="bce", lr=1e-2, weight_decay=0.1, epochs=1)
    res = train(net, x, y, cfg)
    b1, b2 = cfg.betas
    # The trainer's gradient is this computation (same model, data, loss, full batch); what differs is
    # the optimizer's arithmetic: a few roundings per entry (1 - beta, the product, the moment's
    # update; gamma_4 of each entry), and for the step the decay, the bias corrections, sqrt, the
    # quotient and the two updates (gamma_10 of the terms' magnitudes). float64 throughout.
    torch.testing.assert_close(res.exp_avg, (1 - b1) * g, rtol=gamma(4), atol=0,
                               msg="exp_avg after one step = (1-beta1) g, aligned with the flat order")
    torch.testing.assert_close(res.exp_avg_sq, (1 - b2) * g * g, rtol=gamma(4), atol=0,
                               msg="exp_avg_sq after one step = (1-beta2) g^2")
    # AdamW step 1: bias-corrected m = g, v = g^2; decoupled decay first.
    step = cfg.lr * g / (g.abs() + cfg.eps)
    expected = w0 * (1 - cfg.lr * cfg.weight_decay) - step
    bound = gamma(10) * (w0.abs() + step.abs())
    assert bool(((res.params - expected).abs() <= bound).all()), "first AdamW step equals the closed form"
    assert res.optimizer_steps == 1 and res.exp_avg.shape == (res.n_params,), "one step, [n] moments"


def _bce_grad(net: nn.Module, w: torch.Tensor, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and flat gradient of the BCE loss at flat parameters w (functional, no state)."""
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]

    def f(flat):
        parts, pos = {}, 0
        for name, shape in zip(names, shapes):
            k = math.prod(shape)
            parts[name] = flat[pos:pos + k].reshape(shape)
            pos += k
        out = torch.func.functional_call(net, parts, (x,))
        return nn.functional.binary_cross_entropy_with_logits(out, y)

    return f(w), torch.func.grad(f)(w)


def test_sam_step_matches_hand_computation():
    net = small_net(seed=2, dtype=torch.float64)
    x, y = X.double(), Y.double()
    w0 = nn.utils.parameters_to_vector(net.parameters()).detach().clone()
    _, g = _bce_grad(net, w0, x, y)
    rho, lr = 0.05, 0.1
    e = rho * g / g.norm()
    _, g_adv = _bce_grad(net, w0 + e, x, y)
    expected = w0 - lr * g_adv  # SGD base, no momentum, no decay, applied at w0
    cfg = TrainConfig(optimizer="sam", sam_base="sgd", sam_rho=rho, lr=lr, weight_decay=0.0, loss="bce", epochs=1)
    res = train(net, x, y, cfg)
    torch.testing.assert_close(res.params, expected, rtol=1e-12, atol=1e-12,
                               msg="SAM = SGD step at w0 with the gradient at w0 + rho g/||g|| (1e-12)")
    assert res.exp_avg is None, "SAM on SGD has no Adam moments"


@pytest.mark.parametrize("cfg, factor", [
    (TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, loss="bce", epochs=150), 0.85),
    (TrainConfig(optimizer="sam", sam_base="adamw", lr=1e-2, loss="bce", epochs=150), 0.7),
], ids=["sgd", "sam-adamw"])
def test_sgd_and_sam_improve(cfg, factor):
    res = train(small_net(), X, Y, cfg)
    first = res.history[0].train_loss
    assert res.train_loss < factor * first, \
        f"{cfg.optimizer}: loss must fall below {factor} x initial: {first:.3f} -> {res.train_loss:.3f}"
    assert (res.exp_avg is not None) == (cfg.optimizer == "sam"), "Adam moments only with an AdamW base"
    assert res.optimizer_steps == 150, "full batch: one step per epoch"


@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 12), epochs=st.integers(1, 3))
def test_minibatch_order_matches_plain_loop_oracle(seed, batch, epochs):
    """The documented contract: each epoch one torch.randperm(N, generator=g) from one CPU
    generator seeded with config.seed, consecutive slices, last one smaller."""
    n, lr = 10, 0.1
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(n, 2, generator=g, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(3, 2).double())
    W = net[0].weight.detach().clone()
    b = net[0].bias.detach().clone()
    order_gen = torch.Generator().manual_seed(seed)
    steps = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order_gen)
        for idx in perm.split(min(batch, n)):
            xb, yb = x[idx], y[idx]
            r = xb @ W.T + b - yb  # MSE = mean of r^2 over all elements
            scale = 2.0 / r.numel()
            gW, gb = scale * r.T @ xb, scale * r.sum(0)
            W, b = W - lr * gW, b - lr * gb
            steps += 1
    cfg = TrainConfig(optimizer="sgd", lr=lr, weight_decay=0.0, loss="mse", batch_size=batch, epochs=epochs, seed=seed)
    res = train(net, x, y, cfg)
    torch.testing.assert_close(res.params, torch.cat([W.reshape(-1), b]), rtol=1e-12, atol=1e-12,
                               msg="minibatch SGD equals the plain-loop oracle with the same permutations (1e-12)")
    assert res.optimizer_steps == steps, "one step per slice of each permutation"


def test_checkpoints_history_and_test_metrics():
    net = small_net()
    init = nn.utils.parameters_to_vector(net.parameters()).detach().clone()
    xt, yt = spirals(20, seed=1)
    cfg = TrainConfig(loss="bce", lr=1e-2, epochs=5, checkpoint_epochs=(5, 0, 2), history_every=2)
    res = train(net, X, Y, cfg, test_inputs=xt, test_targets=yt)
    assert cfg.checkpoint_epochs == (0, 2, 5), "checkpoint epochs normalised to a sorted tuple"
    assert sorted(res.checkpoints) == [0, 2, 5], "checkpoints exactly at the requested epochs"
    assert torch.equal(res.checkpoints[0], init), "checkpoint 0 is the initial parameters"
    assert torch.equal(res.checkpoints[5], res.params), "checkpoint at the last epoch is the final parameters"
    assert not torch.equal(res.checkpoints[2], res.checkpoints[5]), "checkpoints differ across epochs"
    assert [r.epoch for r in res.history] == [2, 4, 5], "history every 2 epochs and at the end"
    assert all(r.test_loss is not None and 0 <= r.test_accuracy <= 1 for r in res.history), "test metrics recorded"
    exact = loss_and_accuracy(net.eval(), xt, yt, "bce")
    assert (res.test_loss, res.test_accuracy) == exact, "final test metrics are the exact evaluation"
    assert res.epochs_run == 5 and not res.stopped_early and res.seed == 0, "bookkeeping"
    assert res.params.device.type == "cpu" and res.seconds > 0, "CPU copies, timed"


def test_stop_criteria():
    cfg = TrainConfig(loss="bce", lr=2e-2, epochs=400, stop_at_train_loss=0.6)
    res = train(small_net(), X, Y, cfg)
    assert res.stopped_early and res.epochs_run < 400, "must stop once the train loss is below 0.6"
    assert res.train_loss < 0.6, f"final train loss {res.train_loss:.3f} must satisfy the stop rule (< 0.6)"
    # A linearly separable problem reaches zero training error (Zhang et al.'s stopping rule).
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 7, generator=g)
    y = (x[:, 0] > 0).float()
    res = train(models.build("boolean_fcn", seed=0), x, y,
                TrainConfig(loss="bce", lr=1e-2, epochs=500, stop_at_train_accuracy=1.0))
    assert res.stopped_early and res.train_accuracy == 1.0, "stops at the first epoch with zero training error"
    assert res.history[-1].epoch == res.epochs_run, "the stopping epoch is recorded in the history"


def test_accuracy_conventions_exact():
    ident = nn.Sequential(nn.Identity())  # logits = inputs, so accuracies are known exactly
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])
    assert loss_and_accuracy(ident, logits, torch.tensor([[1.0], [0.0], [0.0], [1.0]]), "bce")[1] == 0.5, \
        "BCE accuracy = sign agreement: 2 of 4"
    multi = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    onehot = torch.eye(3)[[1, 2, 2]]
    assert loss_and_accuracy(ident, multi, onehot, "mse")[1] == pytest.approx(2 / 3, abs=0), \
        "MSE with one-hot targets: argmax agreement 2 of 3"
    assert loss_and_accuracy(ident, multi, torch.tensor([1, 0, 0]), "ce")[1] == pytest.approx(2 / 3, abs=0), \
        "CE: argmax agreement 2 of 3"
    assert math.isnan(loss_and_accuracy(ident, logits, torch.zeros(4, 1), "mse")[1]), \
        "one-output MSE has no accuracy (NaN)"
    loss = loss_and_accuracy(ident, multi, onehot, "mse")[0]
    # float32, two evaluations of a mean of 9 non-negative squares: gamma_{9+2} relative each
    assert loss == pytest.approx(((multi - onehot) ** 2).mean().item(), rel=2 * gamma(11, torch.float32)), \
        "MSE mean over all elements"


def test_bad_inputs_are_refused():
    net = small_net()
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match="checkpoint_epochs"):
        TrainConfig(epochs=5, checkpoint_epochs=(6,))
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="like the outputs"):
        train(net, X, torch.zeros(100, 2), TrainConfig(loss="bce", epochs=1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train(net, X, 2 * Y, TrainConfig(loss="bce", epochs=1))
    with pytest.raises(ValueError, match="100 rows"):
        train(net, X, Y[:50], TrainConfig(loss="bce", epochs=1))
    with pytest.raises(ValueError, match="use 'bce'"):
        train(net, X, Y.squeeze(1).long(), TrainConfig(loss="ce", epochs=1))
    digits = models.build("digits_mlp", seed=0)
    with pytest.raises(TypeError, match="integer class labels"):
        train(digits, torch.zeros(4, 1, 8, 8), torch.zeros(4, 10), TrainConfig(loss="ce", epochs=1))
    with pytest.raises(TypeError, match="TrainConfig"):
        train(net, X, Y, {"epochs": 1})
    with pytest.raises(ValueError, match="both test_inputs and test_targets"):
        train(net, X, Y, TrainConfig(loss="bce", epochs=1), test_inputs=X)


def test_paper_recipes():
    for name in models.names():
        cfg = paper_recipe(name)
        assert cfg.loss == models.spec(name).loss, f"{name}: recipe loss must match the model's task"
    mnist = paper_recipe("mnist_mlp")
    assert (mnist.optimizer, mnist.lr, mnist.weight_decay, mnist.batch_size, mnist.epochs, mnist.stop_at_train_loss) \
        == ("adamw", 1e-3, 0.01, None, 500, None), "Fan et al.: AdamW defaults, full batch, 500 epochs, no stop"
    assert paper_recipe("cifar_mlp").epochs == 400, "Fan et al.: CIFAR MLP 400 epochs"
    assert paper_recipe("modular_mlp").loss == "mse", "modular addition trains with MSE"
    assert paper_recipe("mnist_mlp", optimizer="sam").sam_rho == 0.05, "SAM rho 0.05"
    with pytest.raises(ValueError, match="known models"):
        paper_recipe("vgg")
    with pytest.raises(TypeError, match="field"):
        paper_recipe("mnist_mlp", learning_rate=1.0)


def test_result_round_trips_through_tensors_and_metadata():
    cfg = TrainConfig(loss="bce", lr=1e-2, epochs=4, checkpoint_epochs=(1, 3))
    res = train(small_net(), X, Y, cfg, test_inputs=X[:10], test_targets=Y[:10])
    meta = json.loads(json.dumps(res.metadata(), allow_nan=False))  # must be strict JSON
    back = TrainResult.from_stored(res.tensors(), meta)
    assert back.config == cfg, "config survives the round trip"
    assert torch.equal(back.params, res.params) and torch.equal(back.exp_avg, res.exp_avg), "tensors survive"
    assert back.checkpoints.keys() == res.checkpoints.keys(), "checkpoint epochs survive"
    assert back.history == res.history and back.train_loss == res.train_loss, "history and metrics survive"
    with pytest.raises(ValueError, match="malformed"):
        TrainResult.from_stored(res.tensors(), {"history": []})


def test_zero_epochs_and_progress_bar(capsys):
    net = small_net()
    init = nn.utils.parameters_to_vector(net.parameters()).detach().clone()
    res = train(net, X, Y, TrainConfig(loss="bce", epochs=0), progress=True)
    assert torch.equal(res.params, init) and res.history == (), "zero epochs: initial parameters, no history"
    assert torch.count_nonzero(res.exp_avg_sq) == 0, "no step taken: zero Adam moments"
    train(small_net(), X, Y, TrainConfig(loss="bce", epochs=3), progress=True)
    assert "train" in capsys.readouterr().err, "progress=True draws a tqdm bar on stderr"


def test_epoch_record_is_frozen():
    r = EpochRecord(1, 0.5, 0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.epoch = 2  # type: ignore[misc]


@pytest.mark.parametrize("device", devices())
def test_trains_on_device(device):
    net = small_net()
    res = train(net, X, Y, TrainConfig(loss="bce", lr=1e-2, epochs=30), device=device)
    assert next(net.parameters()).device.type == device, "the model is trained where asked"
    assert res.params.device.type == "cpu", "results come back on the CPU"
    assert res.train_loss < res.history[0].train_loss, "loss falls on every device"
