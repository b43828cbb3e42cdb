"""Feature losses, analytically: the one-to-one cross-correlation loss with Barlow-Twins
normalisation, its masked variant, hidden-state MSE and cosine."""
from __future__ import annotations

import math

import pytest
import torch

from losses import get_loss
from losses.hidden import LAMBDA_OFF, cross_correlation, random_feature_mask, standardize


def _features(n=50, d=6, seed=0, dtype=torch.float64):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_identical_features_give_unit_diagonal_and_near_zero_loss():
    z = _features()
    c = cross_correlation(z, z.clone())
    assert torch.allclose(torch.diagonal(c), torch.ones(6, dtype=z.dtype), atol=1e-5)  # not 1/d (released defect)
    # only the off-diagonal redundancy of z with itself remains, weighted by λ_off
    loss = get_loss("corr")(z, z.clone())
    assert float(loss) == pytest.approx(LAMBDA_OFF * float((c.pow(2).sum() - torch.diagonal(c).pow(2).sum())),
                                        rel=1e-6)
    decorrelated = torch.linalg.qr(standardize(z))[0] * math.sqrt(50)  # orthogonal, standardised columns: C = I
    assert float(get_loss("corr")(decorrelated, decorrelated.clone())) < 1e-3


def test_correlation_loss_matches_a_hand_computation():
    # 4 tokens, 2 features; hand-standardised columns
    z_s = torch.tensor([[1.0, 2.0], [2.0, 0.0], [3.0, 2.0], [4.0, 0.0]], dtype=torch.float64)
    z_t = torch.tensor([[2.0, 1.0], [4.0, 1.0], [6.0, -1.0], [8.0, -1.0]], dtype=torch.float64)
    s0 = torch.tensor([-1.5, -0.5, 0.5, 1.5]) / math.sqrt(1.25)  # mean 2.5, population var 1.25
    s1 = torch.tensor([1.0, -1.0, 1.0, -1.0])
    t0 = s0.clone()  # t0 = 2·s0 before standardising
    t1 = torch.tensor([1.0, 1.0, -1.0, -1.0])
    c = [[float(a @ b) / 4 for b in (t0, t1)] for a in (s0, s1)]  # C_ij = <s_i, t_j> / N
    expected = (1 - c[0][0]) ** 2 + (1 - c[1][1]) ** 2 + LAMBDA_OFF * (c[0][1] ** 2 + c[1][0] ** 2)
    assert c[0][0] == pytest.approx(1.0) and c[1][1] == pytest.approx(0.0)
    assert float(get_loss("corr")(z_s, z_t)) == pytest.approx(expected, rel=1e-4)


def test_masked_loss_uses_only_the_kept_features_and_replaces_the_full_loss():
    z_s, z_t = _features(seed=1), _features(seed=2)
    keep = torch.tensor([True, False, True, True, False, False])
    masked = get_loss("corr")(z_s, z_t, keep=keep)
    assert float(masked) == pytest.approx(float(get_loss("corr")(z_s[:, keep], z_t[:, keep])), rel=1e-12)
    assert float(masked) < float(get_loss("corr")(z_s, z_t))  # fewer terms; not full + masked
    # the dropped features receive no gradient
    z = z_s.clone().requires_grad_(True)
    get_loss("corr")(z, z_t, keep=keep).backward()
    assert torch.all(z.grad[:, ~keep] == 0) and torch.all(z.grad[:, keep].abs().sum(0) > 0)


def test_feature_mask_keeps_about_half_and_never_nothing():
    g = torch.Generator().manual_seed(0)
    kept = torch.stack([random_feature_mask(384, generator=g) for _ in range(200)]).float()
    assert kept.mean().item() == pytest.approx(0.5, abs=0.01)
    assert all(random_feature_mask(1, keep_prob=0.0, generator=g).sum() == 1 for _ in range(5))


def test_correlation_gradient_agrees_with_finite_differences():
    z_s = _features(n=12, d=3, seed=3).requires_grad_(True)
    z_t = _features(n=12, d=3, seed=4)
    assert torch.autograd.gradcheck(lambda x: get_loss("corr")(x, z_t), (z_s,), eps=1e-6, atol=1e-6)


def test_correlation_is_invariant_to_feature_scale_and_shift():
    z_s, z_t = _features(seed=5), _features(seed=6)
    scaled = z_s * torch.tensor([3.0, 0.5, 2.0, 1.0, 7.0, 0.1], dtype=z_s.dtype) + 4.0
    # up to the eps of the standardisation (1e-5 against the variance 0.01 of the 0.1-scaled feature)
    assert float(get_loss("corr")(scaled, z_t)) == pytest.approx(float(get_loss("corr")(z_s, z_t)), rel=1e-4)


def test_hidden_mse_and_cosine_known_values_and_zero_on_identical():
    h_s = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    h_t = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert torch.allclose(get_loss("hidden_mse")(h_s, h_t), torch.tensor([1.0, 1.0]))  # mean over features
    assert torch.allclose(get_loss("hidden_cos")(h_s, h_t), torch.tensor([1.0, 0.0]), atol=1e-6)  # ⟂, parallel
    z = _features(dtype=torch.float32)
    assert torch.all(get_loss("hidden_mse")(z, z.clone()) == 0)
    assert torch.allclose(get_loss("hidden_cos")(z, z.clone()), torch.zeros(50), atol=1e-6)


def test_mismatched_feature_shapes_are_refused():
    with pytest.raises(ValueError, match="differ"):
        get_loss("corr")(_features(d=4), _features(d=6))
