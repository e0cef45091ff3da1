"""A character-level GPT in nanoGPT's shape, for claim F14 (the authors' ``experiments/shakespeare_char``).

Written here from the architecture's description (Radford et al. 2019, as nanoGPT lays it out), not
copied: token and position embeddings, ``n_layer`` pre-LN blocks

    x <- x + Attn(LN_1(x)),    x <- x + MLP(LN_2(x)),    MLP(h) = W_2 act(W_1 h)

with causal multi-head self-attention (one ``[3C, C]`` query/key/value projection and a ``[C, C]``
output projection), a final layer norm, and a language-model head tied to the token embedding
(``lm_head.weight`` is ``wte.weight``: one tensor, so it lies once in ``model.parameters()`` and in
the flat vector, under the name ``wte.weight``). Inputs are token ids ``[N, T]`` (``T <=
block_size``), outputs next-token logits ``[N, T, V]``.

Sizes (:class:`GPTConfig`). The authors' model is nanoGPT's ``shakespeare_char`` configuration: 6
layers, 6 heads, 384 dimensions, a context of 256 characters, a vocabulary of 65, no biases. Its
flat vector holds 10,745,088 parameters; nanoGPT prints "10.65M" because it leaves the position
embeddings out of its count (``get_num_params(non_embedding=True)``: 10,745,088 - 256 * 384 =
10,646,784).

Choices, and why:

* Attention is ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``. Under
  ``torch.func.vmap`` (the cost's engine) torch 2.13 has no batching rule for its CPU kernel and
  runs it once per parameter set (a warning says so; it is silenced here); that loop of the fused
  kernel was faster than an explicitly masked softmax that vmap batches (10.65M model, 4 windows
  of 256, one thread: 607 vs 764 ms per parameter vector), and every parameter set's result is
  what the unbatched forward computes.
* No dropout. nanoGPT's ``shakespeare_char`` config trains with dropout 0.2; the authors' notes do
  not say whether they did. The cost evaluates the model in eval mode either way, and without
  dropout the lab's training stays a deterministic function of its seeds (minibatch order only).
* ``activation``: GELU (exact, nanoGPT's) by default; "relu" makes the MLP block positively
  homogeneous, so that ``(W_1, b_1, W_2) -> (a W_1, a b_1, W_2 / a)`` leaves the function unchanged
  (claim F13's rescaling), which the tests use. With GELU the transformer's exact rescaling
  symmetries are the layer norms' (``(g, beta, W_next) -> (a g, a beta, W_next / a)``) and
  attention's (queries times a, keys over a).
* Initialisation (nanoGPT's scheme): every Linear and Embedding weight ~ N(0, 0.02^2), the two
  residual output projections N(0, (0.02 / sqrt(2 n_layer))^2), biases 0, layer-norm gains 1 and
  biases 0, all drawn from one ``torch.Generator`` seeded by the caller.

Example:
    >>> import torch
    >>> cfg = GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=4)
    >>> net = CharGPT(cfg, generator=torch.Generator().manual_seed(0))
    >>> net(torch.zeros(3, 4, dtype=torch.long)).shape
    torch.Size([3, 4, 65])
    >>> net.lm_head.weight is net.wte.weight, cfg.n_params() == sum(p.numel() for p in net.parameters())
    (True, True)
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GPTConfig", "CharGPT", "AUTHORS_GPT"]

ACTIVATIONS = ("gelu", "relu")
INIT_STD = 0.02  # nanoGPT's weight init


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of a :class:`CharGPT`. Defaults: the authors' model (nanoGPT's ``shakespeare_char``).

    Attributes:
        vocab_size: V, characters in the vocabulary (65: the tiny-shakespeare set the authors'
            nanoGPT run uses; ``volbench.data.text.VOCAB``).
        block_size: the longest context in characters (256); inputs may be shorter.
        n_layer: transformer blocks (6).
        n_head: attention heads per block (6); must divide ``n_embd``.
        n_embd: C, the width of the residual stream (384).
        bias: biases in the Linear and LayerNorm layers (False, nanoGPT's shakespeare_char).
        activation: the MLP's nonlinearity, "gelu" (nanoGPT's) or "relu" (see the module docstring).
    """

    vocab_size: int = 65
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    bias: bool = False
    activation: str = "gelu"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _positive_int(name, getattr(self, name))
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_head={self.n_head} must divide n_embd={self.n_embd} (equal head widths)")
        if not isinstance(self.bias, bool):
            raise ValueError(f"GPTConfig.bias must be True or False, got {self.bias!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"GPTConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    def n_params(self) -> int:
        """Parameters in the flat vector (the tied head counted once), written out from the layers."""
        C, V, T, L = self.n_embd, self.vocab_size, self.block_size, self.n_layer
        b = int(self.bias)
        per_block = 2 * (C + b * C) + (3 * C * C + b * 3 * C) + (C * C + b * C) + (4 * C * C + b * 4 * C) \
            + (4 * C * C + b * C)
        return V * C + T * C + L * per_block + (C + b * C)

    def as_options(self) -> dict[str, object]:
        return asdict(self)


#: The authors' size (``experiments/shakespeare_char``).
AUTHORS_GPT = GPTConfig()


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: ``qkv`` projects to queries, keys and values (rows
    ``[0, C)``, ``[C, 2C)``, ``[2C, 3C)``), ``proj`` mixes the heads back."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        shape = (B, T, self.n_head, C // self.n_head)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
        with warnings.catch_warnings():
            # vmap's per-parameter-set loop over the fused kernel: measured faster than the
            # batchable masked softmax (module docstring), so its "performance drop" note is noise.
            warnings.filterwarnings("ignore", message="There is a performance drop")
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    """The block's feed-forward map ``proj(act(fc(h)))``, 4x wide."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, h: Tensor) -> Tensor:
        return self.proj(self.act(self.fc(h)))


class Block(nn.Module):
    """One pre-LN transformer block."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class CharGPT(nn.Module):
    """Token ids ``[N, T]`` -> next-token logits ``[N, T, V]`` (see the module docstring).

    Args:
        cfg: the sizes.
        generator: the CPU generator the weights are drawn from (nanoGPT's initialisation).
    """

    def __init__(self, cfg: GPTConfig, *, generator: torch.Generator) -> None:
        super().__init__()
        self.config = cfg
        # Registered first, so the tied weight is named "wte.weight" in the flat layout.
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one tensor
        self._init(generator)

    @torch.no_grad()
    def _init(self, gen: torch.Generator) -> None:
        residual_std = INIT_STD / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)) and name != "lm_head":  # the head is wte
                std = residual_std if name.endswith(("attn.proj", "mlp.proj")) else INIT_STD
                module.weight.normal_(0.0, std, generator=gen)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()

    def forward(self, idx: Tensor) -> Tensor:
        if idx.ndim != 2 or idx.dtype.is_floating_point:
            raise ValueError(f"CharGPT takes integer token ids [N, T], got {idx.dtype} {tuple(idx.shape)}")
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"CharGPT: windows of {T} tokens exceed its context block_size={self.config.block_size}")
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))
