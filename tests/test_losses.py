"""KD and task losses: analytic values, the τ² gradient scale, finite differences, gradient flow."""
from __future__ import annotations

import math

import pytest
import torch

from losses import available_losses, get_loss


def test_registry_exact_names_and_clear_error():
    assert {"kd", "kd_mse", "ce", "mse"} <= set(available_losses())
    with pytest.raises(KeyError, match="unknown loss 'KD'.*registered losses: .*kd"):
        get_loss("KD")  # exact-name lookup: no case folding, no guessing


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_kd_zero_on_identical_logits(temperature):
    logits = torch.randn(6, 4)
    assert torch.allclose(get_loss("kd")(logits, logits.clone(), temperature), torch.zeros(6), atol=1e-6)


def test_kd_known_value():
    # p_t = softmax([ln 3, 0]) = [0.75, 0.25], p_s = [0.5, 0.5]
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert get_loss("kd")(s, t, 1.0).item() == pytest.approx(expected, rel=1e-5)
    # τ = 2: both distributions are tempered, and the value is scaled by τ² = 4
    pt = torch.softmax(t / 2, -1)[0]
    expected2 = 4 * float((pt * (pt.log() - torch.log(torch.tensor([0.5, 0.5])))).sum())
    assert get_loss("kd")(s, t, 2.0).item() == pytest.approx(expected2, rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_kd_gradient_is_tau_times_prob_difference(temperature):
    """d/ds [τ² KL(p_t^τ ‖ p_s^τ)] = τ (p_s^τ − p_t^τ): the τ² factor cancels the 1/τ² shrinkage."""
    s = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 3, dtype=torch.float64)
    get_loss("kd")(s, t, temperature).sum().backward()
    expected = temperature * (torch.softmax(s.detach() / temperature, -1) - torch.softmax(t / temperature, -1))
    assert torch.allclose(s.grad.double(), expected, atol=1e-6)


def test_kd_gradient_magnitude_independent_of_high_temperature():
    """At high τ the gradient tends to (s − t)/C for zero-mean logits, whatever τ (Hinton et al.)."""
    g = torch.Generator().manual_seed(0)  # not the global RNG: other tests must not change the inputs
    s = torch.randn(4, 5, dtype=torch.float64, generator=g)
    t = torch.randn(4, 5, dtype=torch.float64, generator=g)
    s, t = s - s.mean(-1, keepdim=True), t - t.mean(-1, keepdim=True)
    grads = []
    for tau in (100.0, 400.0):
        x = s.clone().requires_grad_(True)
        get_loss("kd")(x, t, tau).sum().backward()
        grads.append(x.grad.double())
    limit = (s - t) / s.shape[-1]
    # the deviation from the limit shrinks like 1/τ
    deviations = [(g_ - limit).abs().max().item() for g_ in grads]
    assert deviations[1] < deviations[0] / 3 and deviations[1] < 2e-3, deviations


def test_kd_finite_differences_agree_with_autograd():
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, dtype=torch.float64)
    fn = lambda x: get_loss("kd")(x, t, 2.0).sum().double()  # noqa: E731
    # The loss computes in float32 internally; compare against a float64 central difference loosely.
    fn(s).backward()
    eps = 1e-3
    for i in range(3):
        for j in range(4):
            d = torch.zeros_like(s)
            d[i, j] = eps
            numeric = (fn(s.detach() + d) - fn(s.detach() - d)) / (2 * eps)
            assert s.grad[i, j].item() == pytest.approx(numeric.item(), abs=2e-3)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kd_gradient_with_respect_to_the_teacher_logits_is_analytic(temperature):
    """The losses are pure (LGTM differentiates them through the teacher's logits):
    d/dt [τ² KL(p_t^τ ‖ p_s^τ)] = τ · p_t ⊙ ((log p_t − log p_s) − KL). The trainer itself hands in
    constant teacher logits, so a frozen teacher gets none (tests/test_trainer.py)."""
    s = torch.randn(4, 3, dtype=torch.float64)
    t = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    get_loss("kd")(s, t, temperature).sum().backward()
    log_pt, log_ps = torch.log_softmax(t.detach() / temperature, -1), torch.log_softmax(s / temperature, -1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1, keepdim=True)
    expected = temperature * log_pt.exp() * ((log_pt - log_ps) - kl)
    assert torch.allclose(t.grad, expected, atol=1e-12)
    # float64 stays float64 (finite-difference checks need it); half precision is computed in float32
    assert get_loss("kd")(s, t.detach()).dtype == torch.float64
    assert get_loss("kd")(s.half(), t.detach().half()).dtype == torch.float32


def test_kd_mse_and_task_losses_known_values():
    s = torch.tensor([[1.0], [3.0]])
    t = torch.tensor([[0.5], [3.0]])
    assert get_loss("kd_mse")(s, t).tolist() == pytest.approx([0.25, 0.0])
    assert get_loss("mse")(s, torch.tensor([2.0, 1.0])).tolist() == pytest.approx([1.0, 4.0])
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    ce = get_loss("ce")(logits, torch.tensor([0, 1]))
    assert ce.tolist() == pytest.approx([math.log(2.0), -math.log(0.25)])
