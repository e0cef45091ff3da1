"""volbench.lab.models: parameter counts, shapes, seeded init, NNGP init, alpha-scaling."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import devices, gamma, output_rounding_bound
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from volbench.lab import models


def _mlp_count(*widths: int) -> int:
    """Plain count of a dense net: sum of (fan_in + 1) * fan_out."""
    return sum((a + 1) * b for a, b in zip(widths, widths[1:]))


# Expected counts written out independently of the builder (layer arithmetic by hand).
EXPECTED = {
    "mnist_mlp": 235_146,
    "mnist_mlp_deep": _mlp_count(784, 256, 256, 128, 10),
    "cifar_mlp": _mlp_count(3072, 512, 256, 10),
    # conv 1->32 (3x3) + conv 32->64 (3x3) + 64*7*7 -> 128 -> 10
    "mnist_cnn": (9 * 1 + 1) * 32 + (9 * 32 + 1) * 64 + _mlp_count(64 * 7 * 7, 128, 10),
    # conv 3->32, 32->64, 64->128 (3x3) + 128*4*4 -> 512 -> 256 -> 10
    "cifar_cnn": (9 * 3 + 1) * 32 + (9 * 32 + 1) * 64 + (9 * 64 + 1) * 128 + _mlp_count(2048, 512, 256, 10),
    "swiss_mlp": 4_353,
    "swiss_mlp_deep": _mlp_count(2, 32, 32, 32, 32, 32, 32, 1),
    "modular_mlp": 73_097,
    "modular_mlp_47": 35_547,
    "digits_mlp": 4_810,
    "boolean_fcn": _mlp_count(7, 40, 40, 1),
    "binary_fcn": _mlp_count(784, 40, 40, 1),
    # token (65 x 384) and position (256 x 384) embeddings, 6 blocks of two layer-norm gains (2 x 384),
    # qkv (3 x 384^2), attention output (384^2) and the 4x MLP (2 x 4 x 384^2), no biases, a final gain;
    # the head is the token embedding (tied): nanoGPT's "10.65M" is this less the 98,304 position weights
    "char_gpt": 65 * 384 + 256 * 384 + 6 * (2 * 384 + 12 * 384**2) + 384,
}


def test_registry_lists_every_model():
    assert models.names() == sorted(EXPECTED), "names() must list exactly the registered architectures"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_counts_and_forward_shape(name):
    s = models.spec(name)
    net = models.build(name, seed=0)
    n = sum(p.numel() for p in net.parameters())
    assert n == EXPECTED[name], f"{name}: {n} parameters, expected exactly {EXPECTED[name]}"
    assert models.model_info(net)["n_params"] == n, "model_info must count the same parameters"
    if s.kind == "sequence":  # token ids in, next-token logits at every position out
        out = net(torch.randint(0, s.n_outputs, (3, *s.input_shape)))
        assert out.shape == (3, *s.input_shape, s.n_outputs), f"{name}: logits shape {tuple(out.shape)}"
        return
    out = net(torch.randn(3, *s.input_shape))
    assert out.shape == (3, s.n_outputs), f"{name}: logits shape {tuple(out.shape)} != (3, {s.n_outputs})"
    assert type(net) is nn.Sequential and all(
        not any(True for _ in m.children()) for m in net.children()
    ), "models must be flat nn.Sequential (the cost module walks their layers)"


def test_paper_counts_from_the_papers():
    # The three counts the papers state in words.
    assert EXPECTED["mnist_mlp"] == _mlp_count(784, 256, 128, 10), "Fan et al.: 235,146 parameters"
    assert EXPECTED["swiss_mlp"] == _mlp_count(2, 32, 32, 32, 32, 32, 1), "Fan et al.: 2-32x5-1 = 4,353"
    assert EXPECTED["digits_mlp"] == _mlp_count(64, 64, 10), "Scherlis & Belrose: 4,810 parameters"


def test_mlps_accept_flat_inputs_too():
    net = models.build("mnist_mlp", seed=1)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(net(x), net(x.reshape(2, 784)), rtol=0, atol=0,
                               msg="flattening inside must make [N,1,28,28] and [N,784] identical (exact)")


def test_unknown_name_lists_names():
    with pytest.raises(ValueError, match="mnist_mlp"):
        models.build("resnet50", seed=0)


def test_bad_options_are_refused():
    with pytest.raises(TypeError, match="unknown option"):
        models.build("mnist_mlp", seed=0, widht=3)
    with pytest.raises(TypeError, match="unknown option"):
        models.build("mnist_cnn", seed=0, hidden=(3,))
    with pytest.raises(ValueError, match="init='nngp'"):
        models.build("boolean_fcn", seed=0, sigma_w=2.0)
    with pytest.raises(ValueError, match="init must be"):
        models.build("boolean_fcn", seed=0, init="xavier")
    with pytest.raises(ValueError, match="non-negative"):
        models.build("boolean_fcn", seed=-1)
    with pytest.raises(TypeError, match="seed"):
        models.build("boolean_fcn", seed=1.5)
    with pytest.raises(ValueError, match="hidden"):
        models.build("swiss_mlp", seed=0, hidden=())


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = models.build("mnist_cnn", seed=7)
    b = models.build("mnist_cnn", seed=7)
    c = models.build("mnist_cnn", seed=8)
    assert torch.equal(torch.get_rng_state(), state), "build() must not advance the global RNG"
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb), "same seed must give bit-identical parameters"
    assert not torch.equal(a[0].weight, c[0].weight), "different seeds must give different weights"


def test_default_init_is_torch_default():
    # PyTorch's default: weights and biases within +-1/sqrt(fan_in) (Kaiming-uniform, a=sqrt(5)).
    net = models.build("mnist_mlp", seed=0)
    for layer in models.weight_layers(net):
        bound = 1 / math.sqrt(layer.in_features)
        assert layer.weight.abs().max() <= bound, "default init: |W| <= 1/sqrt(fan_in)"
        assert layer.bias.abs().max() <= bound, "default init: |b| <= 1/sqrt(fan_in)"
        # Uniform(-B, B) has std B/sqrt(3); 200k draws in the first layer pin it to ~1%.
    w = net[1].weight
    assert abs(w.std().item() / (1 / math.sqrt(784) / math.sqrt(3)) - 1) < 0.02, \
        "first-layer weight std within 2% of U(-1/sqrt(784), 1/sqrt(784))'s"


def test_dtype_and_cpu_device():
    a = models.build("swiss_mlp", seed=3)
    b = models.build("swiss_mlp", seed=3, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in b.parameters()), "dtype must be applied"
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa.double(), pb), "a float64 build holds the float32 draw exactly"
    with pytest.raises(TypeError, match="dtype"):
        models.build("swiss_mlp", seed=0, dtype=torch.int64)


@pytest.mark.parametrize("device", devices())
def test_same_network_on_every_device(device):
    cpu = models.build("digits_mlp", seed=5)
    dev = models.build("digits_mlp", seed=5, device=device)
    assert next(dev.parameters()).device.type == device, "device must be applied"
    for pa, pb in zip(cpu.parameters(), dev.parameters()):
        assert torch.equal(pa, pb.cpu()), "weights are drawn on the CPU, so identical on every device"


def test_nngp_init_statistics():
    # Wide layers so the sample std pins sigma: 3000 x 3000 weights (rel. s.e. ~0.02%),
    # 3000 biases (rel. s.e. 1/sqrt(2*3000) = 1.3%, tolerance 6% = 4.6 s.e.).
    net = models.build("boolean_fcn", seed=0, init="nngp", hidden=(3000, 3000))
    w1, b1, w2, b2 = net[1].weight, net[1].bias, net[3].weight, net[3].bias
    assert abs(w1.std().item() / (1.0 / math.sqrt(7)) - 1) < 0.03, "W1 std = sigma_w/sqrt(7) within 3%"
    assert abs(w2.std().item() / (1.0 / math.sqrt(3000)) - 1) < 0.01, "W2 std = sigma_w/sqrt(3000) within 1%"
    for b in (b1, b2):
        assert abs(b.std().item() / 0.1 - 1) < 0.06, "bias std = sigma_b = 0.1 within 6%"
        assert abs(b.mean().item()) < 5 * 0.1 / math.sqrt(3000), "bias mean 0 within 5 s.e."
    custom = models.build("binary_fcn", seed=0, init="nngp", sigma_w=2.0, sigma_b=0.5, hidden=(3000, 10))
    assert abs(custom[1].weight.std().item() / (2.0 / 28) - 1) < 0.01, "sigma_w=2 over fan_in 784 within 1%"
    assert abs(custom[1].bias.std().item() / 0.5 - 1) < 0.06, "sigma_b=0.5 within 6% (3000 draws)"


def test_nngp_init_is_seeded():
    a = models.build("boolean_fcn", seed=2, init="nngp")
    b = models.build("boolean_fcn", seed=2, init="nngp")
    c = models.build("boolean_fcn", seed=2)
    assert torch.equal(a[1].weight, b[1].weight), "same seed, same NNGP draw"
    assert not torch.equal(a[1].weight, c[1].weight), "NNGP and torch inits differ"


def test_digits_mlp_uses_tanh_gelu():
    net = models.build("digits_mlp", seed=0)
    x = torch.linspace(-4, 4, 101, dtype=torch.float64).unsqueeze(1)
    gelu = [m for m in net if isinstance(m, nn.GELU)]
    assert len(gelu) == 1, "one hidden GELU layer"
    k = math.sqrt(2 / math.pi)
    t = torch.tanh(k * (x + 0.044715 * x ** 3))
    expected = 0.5 * x * (1 + t)
    # Both evaluate this formula in float64, in whatever order: the cubic (4 roundings) and k times it
    # (2) reach tanh (1-Lipschitz, a few ulp of its own), then 1 + t and the product (2); derived per
    # evaluation as gamma_6 of each stage's magnitudes, twice for two evaluations. (The exact GELU
    # differs from this approximation by up to 4.7e-4: far outside.)
    e = 0.5 * x.abs() * (gamma(6) * k * (x.abs() + 0.044715 * x.abs() ** 3) + gamma(6) * (1 + t.abs()))
    assert bool(((gelu[0](x) - expected).abs() <= 2 * e).all()), "GELU must be the tanh approximation (JAX default)"


def test_model_info_offsets_match_flat_vector():
    net = models.build("mnist_cnn", seed=0)
    info = models.model_info(net)
    flat = nn.utils.parameters_to_vector(net.parameters())
    assert [layer["type"] for layer in info["layers"]] == ["Conv2d", "Conv2d", "Linear", "Linear"], \
        "layer list in forward order"
    for entry, layer in zip(info["layers"], models.weight_layers(net)):
        w = flat[entry["offset"]: entry["offset"] + layer.weight.numel()]
        assert torch.equal(w, layer.weight.reshape(-1)), f"offset of {entry['name']} points at its weight"
        assert entry["weight_shape"] == list(layer.weight.shape), "weight shape recorded"
    assert info["modules"][:3] == ["Conv2d", "ReLU", "MaxPool2d"], "leaf module list in order"


def _plain_forward(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Slow oracle for an MLP: explicit per-example, per-unit loops over model_info's layers."""
    info = models.model_info(net)
    flat = nn.utils.parameters_to_vector(net.parameters()).detach()
    outs = []
    for xi in x.reshape(x.shape[0], -1):
        h = xi
        for j, entry in enumerate(info["layers"]):
            n_out, n_in = entry["weight_shape"]
            off = entry["offset"]
            W = flat[off: off + n_out * n_in].reshape(n_out, n_in)
            b = flat[off + n_out * n_in: off + n_out * n_in + n_out]
            h = torch.stack([sum(W[u, v] * h[v] for v in range(n_in)) + b[u] for u in range(n_out)])
            if j < len(info["layers"]) - 1:
                h = torch.clamp_min(h, 0)
        outs.append(h)
    return torch.stack(outs)


def test_forward_matches_plain_loop_oracle():
    net = models.build("boolean_fcn", seed=4, dtype=torch.float64, hidden=(5, 4))
    x = torch.randint(0, 2, (6, 7), generator=torch.Generator().manual_seed(0)).double()
    # Two evaluations in other orders: each within the derived worst-case forward error.
    bound = 2 * output_rounding_bound(net, x, dtype=torch.float64)
    assert bool(((net(x) - _plain_forward(net, x)).abs() <= bound).all()), "ReLU MLP forward equals the loop oracle"


@given(seed=st.integers(0, 2**31 - 1), layer=st.integers(0, 5), log_alpha=st.floats(-3, 3))
def test_alpha_scale_preserves_function_and_changes_weights(seed, layer, log_alpha):
    alpha = math.exp(log_alpha)
    net = models.build("swiss_mlp_deep", seed=seed, dtype=torch.float64)
    before = [p.clone() for p in net.parameters()]
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 5
    scaled = models.alpha_scale(net, layer, alpha)
    # The same function: each net within its derived worst-case forward error of it, the scaled one's
    # parameters carrying one more rounding (alpha W, alpha b, W / alpha).
    bound = (output_rounding_bound(net, x, dtype=torch.float64)
             + output_rounding_bound(scaled, x, dtype=torch.float64, parameter_roundings=1))
    assert bool(((scaled(x) - net(x)).abs() <= bound).all()), "alpha-scaling a ReLU net must leave outputs unchanged"
    for p, q in zip(before, net.parameters()):
        assert torch.equal(p, q), "alpha_scale must not modify its input model"
    a, b = models.weight_layers(net)[layer], models.weight_layers(scaled)[layer]
    a2, b2 = models.weight_layers(net)[layer + 1], models.weight_layers(scaled)[layer + 1]
    assert torch.equal(b.weight, a.weight * alpha) and torch.equal(b.bias, a.bias * alpha), "W_i, b_i times alpha"
    assert torch.equal(b2.weight, a2.weight / alpha), "W_{i+1} divided by alpha"
    assert torch.equal(b2.bias, a2.bias), "b_{i+1} unchanged"


def test_alpha_scale_through_conv_and_pool():
    net = models.build("mnist_cnn", seed=0, dtype=torch.float64)
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for layer in (0, 1, 2):
        scaled = models.alpha_scale(net, layer, 3.7)
        bound = (output_rounding_bound(net, x, dtype=torch.float64)
                 + output_rounding_bound(scaled, x, dtype=torch.float64, parameter_roundings=1))
        assert bool(((scaled(x) - net(x)).abs() <= bound).all()), f"CNN layer {layer}: outputs unchanged"
        assert not torch.equal(models.weight_layers(scaled)[layer].weight,
                               models.weight_layers(net)[layer].weight), "weights must change"


def test_alpha_scale_refuses_what_it_cannot_do():
    net = models.build("swiss_mlp", seed=0)
    with pytest.raises(ValueError, match="positive"):
        models.alpha_scale(net, 0, -2.0)
    with pytest.raises(ValueError, match="positive"):
        models.alpha_scale(net, 0, 0.0)
    with pytest.raises(ValueError, match="layer_index"):
        models.alpha_scale(net, 5, 2.0)  # the output layer has no next layer
    with pytest.raises(ValueError, match="GELU"):
        models.alpha_scale(models.build("digits_mlp", seed=0), 0, 2.0)
    with pytest.raises(TypeError, match="Sequential"):
        models.alpha_scale(nn.Linear(2, 2), 0, 2.0)
