"""Matrix product operator (MPO) decomposition: W (I × J) = contraction of n cores.

With I = Π i_k and J = Π j_k, W is reshaped to (i_1..i_n, j_1..j_n), interleaved to
(i_1 j_1, …, i_n j_n) and split by sequential SVDs into cores C_k of shape (d_{k-1}, i_k, j_k, d_k),
d_0 = d_n = 1. Without a bond cap the contraction gives W back exactly; the middle core (the
"central tensor") carries the singular values, the others (the "auxiliary tensors") are orthonormal:
the sweep goes left-to-right up to the centre and right-to-left down to it. Only SVDs are used, no
division by singular values, so rank-deficient (even all-zero) matrices decompose exactly too.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def full_bond_dims(in_shape: list[int], out_shape: list[int]) -> list[int]:
    """d_0..d_n without truncation: d_k = min(Π_{m≤k} i_m j_m, Π_{m>k} i_m j_m)."""
    sizes = [i * j for i, j in zip(out_shape, in_shape)]
    return [1] + [min(math.prod(sizes[:k]), math.prod(sizes[k:])) for k in range(1, len(sizes))] + [1]


def bond_dims(in_shape: list[int], out_shape: list[int], max_bond: int | None = None) -> list[int]:
    dims = full_bond_dims(in_shape, out_shape)
    return dims if max_bond is None else [min(d, max_bond) for d in dims]


def central_index(n_cores: int) -> int:
    return n_cores // 2


def _check_shapes(weight: torch.Tensor, in_shape: list[int], out_shape: list[int]) -> None:
    if len(in_shape) != len(out_shape) or not in_shape:
        raise ValueError(f"input and output shapes need the same number (≥ 1) of factors: {in_shape} vs {out_shape}")
    if math.prod(out_shape) != weight.shape[0] or math.prod(in_shape) != weight.shape[1]:
        raise ValueError(f"shapes {out_shape} x {in_shape} do not factor a {tuple(weight.shape)} weight "
                         "(output factors multiply to the rows, input factors to the columns)")


@torch.no_grad()
def mpo_decompose(weight: torch.Tensor, in_shape: list[int], out_shape: list[int],
                  max_bond: int | None = None) -> list[torch.Tensor]:
    """Cores C_k (d_{k-1}, out_k, in_k, d_k) of `weight` (out × in, a Linear's layout). Exact without
    `max_bond`; with it, each bond keeps its largest singular values (the best approximation per cut).
    Computed in float64, returned in the weight's dtype."""
    _check_shapes(weight, in_shape, out_shape)
    n = len(in_shape)
    dtype = weight.dtype
    # (o_1..o_n, i_1..i_n) -> (o_1, i_1, o_2, i_2, ...): each core's pair of indices side by side
    t = weight.detach().double().reshape(*out_shape, *in_shape)
    t = t.permute([p for k in range(n) for p in (k, n + k)])
    c = central_index(n)
    cores: list[torch.Tensor | None] = [None] * n
    left_dim = 1
    rest = t.reshape(-1)
    for k in range(c):  # left-to-right: U's become left-orthonormal cores, S·Vh moves on
        m = rest.reshape(left_dim * out_shape[k] * in_shape[k], -1)
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        r = s.shape[0] if max_bond is None else min(s.shape[0], max_bond)
        cores[k] = u[:, :r].reshape(left_dim, out_shape[k], in_shape[k], r)
        rest = s[:r, None] * vh[:r]
        left_dim = r
    right_dim = 1
    for k in range(n - 1, c, -1):  # right-to-left down to the centre: Vh's become right-orthonormal
        m = rest.reshape(-1, out_shape[k] * in_shape[k] * right_dim)
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        r = s.shape[0] if max_bond is None else min(s.shape[0], max_bond)
        cores[k] = vh[:r].reshape(r, out_shape[k], in_shape[k], right_dim)
        rest = u[:, :r] * s[:r]
        right_dim = r
    cores[c] = rest.reshape(left_dim, out_shape[c], in_shape[c], right_dim)  # the central tensor
    return [core.to(dtype).contiguous() for core in cores]


def mpo_contract(cores: list[torch.Tensor]) -> torch.Tensor:
    """The (out × in) matrix the cores represent; differentiable in every core."""
    n = len(cores)
    out_shape = [core.shape[1] for core in cores]
    in_shape = [core.shape[2] for core in cores]
    if n > 2 and all(o * i == 1 for o, i in zip(out_shape[1:-1], in_shape[1:-1])):
        # The paper's shapes ([a,1,…,1,b]): the inner cores are plain d×d matrices, so W is a matrix
        # chain, and multi_dot's order (inner products first) costs ~40 % fewer FLOPs than left to right.
        chain = [cores[0].reshape(-1, cores[0].shape[-1])]  # (o_1 i_1, d_1)
        chain += [core.reshape(core.shape[0], core.shape[-1]) for core in cores[1:-1]]  # (d_k, d_{k+1})
        chain.append(cores[-1].reshape(cores[-1].shape[0], -1))  # (d_{n-1}, o_n i_n)
        t = torch.linalg.multi_dot(chain).reshape(out_shape[0], in_shape[0], out_shape[-1], in_shape[-1])
        return t.permute(0, 2, 1, 3).reshape(math.prod(out_shape), math.prod(in_shape))
    x = cores[0].reshape(-1, cores[0].shape[-1])  # (o_1 i_1, d_1)
    for core in cores[1:]:
        x = x @ core.reshape(core.shape[0], -1)  # (o_1 i_1 … o_k i_k, d_k) after the reshape below
        x = x.reshape(-1, core.shape[-1])
    t = x.reshape([d for k in range(n) for d in (out_shape[k], in_shape[k])])
    t = t.permute([2 * k for k in range(n)] + [2 * k + 1 for k in range(n)])  # (o_1..o_n, i_1..i_n)
    return t.reshape(math.prod(out_shape), math.prod(in_shape))


class MPOLinear(nn.Module):
    """A Linear layer whose weight is the contraction of trainable MPO cores (the over-parameterised
    form). The weight is contracted once per forward, then one `F.linear`: the cost over a dense layer
    is one contraction per call, independent of the batch and sequence length."""

    def __init__(self, linear: nn.Linear, in_shape: list[int], out_shape: list[int], max_bond: int | None = None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.in_shape, self.out_shape = list(in_shape), list(out_shape)
        self.max_bond = max_bond
        self.cores = nn.ParameterList(nn.Parameter(c) for c in mpo_decompose(linear.weight, in_shape, out_shape,
                                                                            max_bond))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    @property
    def central(self) -> int:
        return central_index(len(self.cores))

    def weight(self) -> torch.Tensor:
        return mpo_contract(list(self.cores))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.bias)

    @torch.no_grad()
    def to_linear(self) -> nn.Linear:
        """The dense Linear with the contracted weight (what a saved student contains)."""
        weight = self.weight()
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=weight.device, dtype=weight.dtype)
        linear.weight.copy_(weight)
        if self.bias is not None:
            linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        dims = [self.cores[0].shape[0]] + [c.shape[-1] for c in self.cores]
        return f"in={self.in_shape}, out={self.out_shape}, bonds={dims}"
