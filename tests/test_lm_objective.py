"""The LM objective (lm/objective.py) against direct computations; accumulation = one big batch."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from distill.objective import weighted_loss
from lm.objective import LMDistillationObjective


def outputs(logits, hidden=None):
    return SimpleNamespace(logits=logits, hidden_states=(hidden,) if hidden is not None else None)


def causal_batch():
    labels = torch.tensor([[5, 6, 7, 8, 9], [1, 2, 3, -100, -100]])  # second row: 2 padding positions
    return {"input_ids": labels.clamp(min=0), "attention_mask": (labels != -100).long(), "labels": labels}


def test_causal_terms_score_the_next_token_at_labelled_positions():
    torch.manual_seed(0)
    batch = causal_batch()
    s = torch.randn(2, 5, 12, requires_grad=True)  # 12 logits, tokenizer has 10 (padded vocab)
    t = torch.randn(2, 5, 12)
    obj = LMDistillationObjective({"kd": 0.5, "clm": 0.5}, mlm=False, vocab_size=10, kd_loss="reverse_kl",
                                  temperature=2.0, chunk_size=3)
    sums = obj.loss_sums(batch, outputs(s), outputs(t))
    # position t predicts label t+1: row 0 positions 0..3, row 1 positions 0..1 (6 in all)
    rows = [(0, 0, 6), (0, 1, 7), (0, 2, 8), (0, 3, 9), (1, 0, 2), (1, 1, 3)]
    assert obj.counts(batch) == {"kd": 6.0, "clm": 6.0}
    ce = sum(F.cross_entropy(s[b, i, :10], torch.tensor(y)) for b, i, y in rows)
    log_q = [F.log_softmax(s[b, i, :10] / 2, -1) for b, i, _ in rows]
    log_p = [F.log_softmax(t[b, i, :10] / 2, -1) for b, i, _ in rows]
    rkl = sum((lq.exp() * (lq - lp)).sum() for lq, lp in zip(log_q, log_p)) * 4  # τ² = 4
    assert sums["clm"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert sums["kd"].item() == pytest.approx(rkl.item(), rel=1e-5)


def test_masked_lm_terms_use_masked_positions_for_mlm_and_all_real_tokens_for_kd():
    torch.manual_seed(1)
    labels = torch.tensor([[-100, 4, -100, -100], [-100, -100, 7, -100]])
    batch = {"input_ids": torch.tensor([[1, 3, 5, 2], [1, 6, 3, 2]]), "attention_mask": torch.tensor([[1, 1, 1, 1],
                                                                                                      [1, 1, 1, 0]]),
             "labels": labels}
    weights = {"kd": 1.0, "mlm": 1.0, "mse": 1.0, "cos": 1.0}
    s, t = torch.randn(2, 4, 9), torch.randn(2, 4, 9)
    hs, ht = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    obj = LMDistillationObjective(weights, mlm=True, vocab_size=9, temperature=1.0)
    assert obj.counts(batch) == {"kd": 7.0, "mlm": 2.0, "mse": 7.0, "cos": 7.0}
    sums = obj.loss_sums(batch, outputs(s, hs), outputs(t, ht))
    real = batch["attention_mask"].bool()
    assert sums["mse"].item() == pytest.approx((s - t)[real].pow(2).sum().item(), rel=1e-5)
    cos = (1 - F.cosine_similarity(hs[real], ht[real], dim=-1)).sum()
    assert sums["cos"].item() == pytest.approx(cos.item(), rel=1e-5)
    mlm = F.cross_entropy(s[labels != -100], labels[labels != -100], reduction="sum")
    assert sums["mlm"].item() == pytest.approx(mlm.item(), rel=1e-5)
    restricted = LMDistillationObjective(weights, mlm=True, vocab_size=9, restrict_ce_to_mask=True)
    assert restricted.counts(batch)["kd"] == 2.0


def test_accumulated_micro_batches_give_the_gradient_of_one_big_batch():
    torch.manual_seed(2)
    big = {"input_ids": torch.randint(0, 8, (5, 6)), "attention_mask": torch.ones(5, 6, dtype=torch.long)}
    big["labels"] = big["input_ids"].clone()
    big["labels"][0, 3:] = -100  # different numbers of tokens per micro-batch
    big["labels"][4, 1:] = -100
    s = torch.randn(5, 6, 8, requires_grad=True)
    t = torch.randn(5, 6, 8)
    obj = LMDistillationObjective({"kd": 0.3, "clm": 0.7}, mlm=False, vocab_size=8, kd_loss="jsd", chunk_size=4)

    def grad(parts):
        s.grad = None
        counts = {k: sum(obj.counts(p)[k] for p, _ in parts) for k in obj.weights}
        for p, rows in parts:
            loss = weighted_loss(obj.weights, obj.loss_sums(p, outputs(s[rows]), outputs(t[rows])), counts)
            loss.backward()
        return s.grad.clone()

    one = grad([(big, slice(0, 5))])
    split = [({k: v[r] for k, v in big.items()}, r) for r in (slice(0, 2), slice(2, 5))]
    torch.testing.assert_close(grad(split), one)


def test_eval_predictions_are_per_sequence_nll_sums_and_token_counts():
    torch.manual_seed(3)
    batch = causal_batch()
    s = torch.randn(2, 5, 10)
    obj = LMDistillationObjective({"clm": 1.0}, mlm=False, vocab_size=10)
    pred = obj.predictions(outputs(s), batch)
    assert pred[:, 1].tolist() == [4.0, 2.0]
    nll_row1 = F.cross_entropy(s[1, :2], torch.tensor([2, 3]), reduction="sum")
    assert pred[1, 0].item() == pytest.approx(nll_row1.item(), rel=1e-5)
    assert obj.eval_loss(pred.numpy(), None) == pytest.approx(pred[:, 0].sum().item() / 6, rel=1e-6)


def test_restrict_ce_to_mask_restricts_kd_and_mse_but_cosine_keeps_every_real_token():
    """As in the original DistilBERT distiller.py: with restrict_ce_to_mask the KD (CE) and MSE terms use
    the MLM-predicted positions (mlm_labels > -1); the cosine term uses every real token (attention mask)."""
    torch.manual_seed(4)
    labels = torch.tensor([[-100, 4, -100, -100], [-100, -100, 7, -100]])
    batch = {"input_ids": torch.tensor([[1, 3, 5, 2], [1, 6, 3, 2]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]), "labels": labels}
    weights = {"kd": 1.0, "mlm": 1.0, "mse": 1.0, "cos": 1.0}
    s, t = torch.randn(2, 4, 9), torch.randn(2, 4, 9)
    hs, ht = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    plain = LMDistillationObjective(weights, mlm=True, vocab_size=9, temperature=2.0)
    restricted = LMDistillationObjective(weights, mlm=True, vocab_size=9, temperature=2.0, restrict_ce_to_mask=True)
    real, masked = batch["attention_mask"].bool(), labels != -100
    cos = (1 - F.cosine_similarity(hs[real], ht[real], dim=-1)).sum()
    assert plain.counts(batch) == {"kd": 7.0, "mlm": 2.0, "mse": 7.0, "cos": 7.0}
    assert restricted.counts(batch) == {"kd": 2.0, "mlm": 2.0, "mse": 2.0, "cos": 7.0}
    for obj in (plain, restricted):
        sums = obj.loss_sums(batch, outputs(s, hs), outputs(t, ht))
        assert sums["cos"].item() == pytest.approx(cos.item(), rel=1e-5)
    sums = restricted.loss_sums(batch, outputs(s, hs), outputs(t, ht))
    assert sums["mse"].item() == pytest.approx((s - t)[masked].pow(2).sum().item(), rel=1e-5)
    kl = F.kl_div(F.log_softmax(s[masked] / 2, -1), F.log_softmax(t[masked] / 2, -1), log_target=True,
                  reduction="sum") * 4  # τ² = 4
    assert sums["kd"].item() == pytest.approx(kl.item(), rel=1e-5)
