"""MPO decomposition (opdf/mpo.py): exact reconstruction, parameter counts, the MPO linear layer."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from opdf.mpo import MPOLinear, bond_dims, central_index, full_bond_dims, mpo_contract, mpo_decompose

PRESET_768 = [32, 1, 1, 1, 24]
PRESET_3072 = [64, 1, 1, 1, 48]


def mpo_param_count(in_shape: list[int], out_shape: list[int], max_bond: int | None = None) -> int:
    """Σ_k d_{k-1} · i_k · j_k · d_k: the number of trainable numbers in the cores (the formula, for reference)."""
    d = bond_dims(in_shape, out_shape, max_bond)
    return sum(d[k] * i * j * d[k + 1] for k, (i, j) in enumerate(zip(out_shape, in_shape)))


def rel_error(a, b):
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


@pytest.mark.parametrize("out_shape,in_shape", [
    (PRESET_768, PRESET_768),            # square, the paper's 5-core preset
    (PRESET_3072, PRESET_768),           # rectangular: intermediate dense (3072 x 768)
    (PRESET_768, PRESET_3072),           # rectangular: output dense (768 x 3072)
    ([2, 3, 4], [3, 2, 2]),              # 24 x 12, three real factors per side
    ([4, 2, 2, 3, 2, 2, 2], [2, 2, 3, 2, 2, 2, 4]),  # 7 cores
])
def test_decompose_then_contract_gives_the_matrix_back(out_shape, in_shape):
    torch.manual_seed(0)
    rows, cols = torch.tensor(out_shape).prod().item(), torch.tensor(in_shape).prod().item()
    w = torch.randn(rows, cols) * 0.05
    cores = mpo_decompose(w, in_shape, out_shape)
    assert [c.shape[1] for c in cores] == out_shape and [c.shape[2] for c in cores] == in_shape
    assert cores[0].shape[0] == cores[-1].shape[-1] == 1
    assert all(a.shape[-1] == b.shape[0] for a, b in zip(cores, cores[1:]))
    assert rel_error(mpo_contract(cores), w) <= 1e-5
    assert sum(c.numel() for c in cores) == mpo_param_count(in_shape, out_shape)


@pytest.mark.parametrize("rank", [0, 1, 5])
def test_rank_deficient_matrices_decompose_exactly(rank):
    torch.manual_seed(1)
    w = torch.randn(96, rank) @ torch.randn(rank, 80) if rank else torch.zeros(96, 80)
    cores = mpo_decompose(w, [4, 5, 4], [4, 6, 4])
    back = mpo_contract(cores)
    assert torch.isfinite(back).all()
    if rank:
        assert rel_error(back, w) <= 1e-5
    else:
        assert back.abs().max() == 0


def test_parameter_counts_follow_the_formula():
    # 5 cores on 768 x 768: 32·32·576 + 4 · 576·576 = 1,916,928 = 3.25 × 589,824
    assert full_bond_dims(PRESET_768, PRESET_768) == [1, 576, 576, 576, 576, 1]
    assert mpo_param_count(PRESET_768, PRESET_768) == 1_916_928 == int(3.25 * 768 * 768)
    seven = [32, 1, 1, 1, 1, 1, 24]
    assert mpo_param_count(seven, seven) == int(4.375 * 768 * 768)
    assert mpo_param_count(PRESET_768, PRESET_768, max_bond=100) < 768 * 768


def test_central_core_holds_the_weight_and_auxiliary_cores_are_orthonormal():
    torch.manual_seed(2)
    w = torch.randn(24, 12)
    cores = mpo_decompose(w, [3, 2, 2], [2, 3, 4])
    c = central_index(3)
    assert c == 1
    left = cores[0].reshape(-1, cores[0].shape[-1]).double()  # left-orthonormal columns
    torch.testing.assert_close(left.T @ left, torch.eye(left.shape[1], dtype=torch.float64), atol=1e-5, rtol=0)
    right = cores[2].reshape(cores[2].shape[0], -1).double()  # right-orthonormal rows
    torch.testing.assert_close(right @ right.T, torch.eye(right.shape[0], dtype=torch.float64), atol=1e-5, rtol=0)
    # all of W's norm sits in the central tensor
    assert float(cores[c].norm()) == pytest.approx(float(w.norm()), rel=1e-5)


def test_bond_cap_truncates_to_the_best_approximation():
    torch.manual_seed(3)
    w = torch.randn(64, 64)
    exact, capped = mpo_decompose(w, [8, 8], [8, 8]), mpo_decompose(w, [8, 8], [8, 8], max_bond=16)
    assert capped[0].shape[-1] == 16 and exact[0].shape[-1] == 64
    # with two cores one cut is one SVD: the error is the discarded singular values' norm
    m = w.reshape(8, 8, 8, 8).permute(0, 2, 1, 3).reshape(64, 64)
    s = torch.linalg.svdvals(m.double())
    expected = float(s[16:].norm() / s.norm())
    assert rel_error(mpo_contract(capped).double(), w.double()) == pytest.approx(expected, rel=1e-4)


def test_shapes_that_do_not_factor_the_matrix_are_refused():
    with pytest.raises(ValueError, match="do not factor"):
        mpo_decompose(torch.zeros(10, 12), [3, 4], [2, 4])
    with pytest.raises(ValueError, match="same number"):
        mpo_decompose(torch.zeros(12, 12), [3, 4], [12])


def test_mpo_linear_equals_the_dense_layer_and_trains_every_core():
    torch.manual_seed(4)
    dense = nn.Linear(12, 24)
    mpo = MPOLinear(dense, in_shape=[3, 2, 2], out_shape=[2, 3, 4])
    x = torch.randn(5, 7, 12)
    torch.testing.assert_close(mpo(x), dense(x), atol=1e-5, rtol=1e-5)
    mpo(x).pow(2).sum().backward()
    assert all(c.grad is not None and c.grad.abs().sum() > 0 for c in mpo.cores) and mpo.bias.grad is not None
    assert sum(c.numel() for c in mpo.cores) > dense.weight.numel()  # over-parameterised
    back = mpo.to_linear()
    assert isinstance(back, nn.Linear)
    torch.testing.assert_close(back(x), mpo(x), atol=1e-6, rtol=1e-6)


def _einsum_contract(cores):
    """Reference: contract the bond indices with einsum, independently of mpo_contract's matrix chain."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    n = len(cores)
    bonds, outs, ins = letters[:n + 1], letters[n + 1:2 * n + 1], letters[2 * n + 1:3 * n + 1]
    spec = ",".join(f"{bonds[k]}{outs[k]}{ins[k]}{bonds[k + 1]}" for k in range(n))
    t = torch.einsum(f"{spec}->{bonds[0]}{outs}{ins}{bonds[n]}", *cores)
    return t.reshape(math.prod(c.shape[1] for c in cores), math.prod(c.shape[2] for c in cores))


@pytest.mark.parametrize("out_shape,in_shape", [([6, 1, 1, 1, 4], [4, 1, 1, 1, 5]),  # matrix-chain path
                                                ([2, 3, 4], [3, 2, 2]), ([4, 2, 1, 3], [2, 1, 3, 4])])
def test_contraction_matches_an_einsum_reference_and_its_gradients(out_shape, in_shape):
    torch.manual_seed(0)
    dims = [1] + [3] * (len(in_shape) - 1) + [1]  # random cores, not from a decomposition
    cores = [torch.randn(dims[k], o, i, dims[k + 1], dtype=torch.float64, requires_grad=True)
             for k, (o, i) in enumerate(zip(out_shape, in_shape))]
    w, ref = mpo_contract(cores), _einsum_contract(cores)
    torch.testing.assert_close(w, ref)
    probe = torch.randn_like(w)
    grads = torch.autograd.grad((w * probe).sum(), cores)
    ref_grads = torch.autograd.grad((_einsum_contract(cores) * probe).sum(), cores)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)
