"""The OPDF model transform: MPO student at initialisation = dense student; export = plain HF model."""
from __future__ import annotations

import pytest
import torch
from conftest import no_dropout_bert, toy_dataset
from torch import nn
from transformers import AutoModelForSequenceClassification

from distill.batching import PaddingCollator
from opdf.mpo import MPOLinear
from opdf.transform import MPOTransform, default_shape, target_modules


def _batch(toy):
    dataset, tok = toy_dataset(toy, 6)
    batch = PaddingCollator(tok.pad_token_id)([dataset[i] for i in range(6)])
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}, batch["labels"]


def test_default_shapes():
    assert default_shape(768) == [32, 1, 1, 1, 24] and default_shape(3072) == [64, 1, 1, 1, 48]
    assert default_shape(384) == [24, 1, 1, 1, 16] and default_shape(32) == [8, 1, 1, 1, 4]
    assert default_shape(7) == [7, 1, 1, 1, 1]


def test_mpo_student_equals_the_dense_student_then_exports_to_a_plain_model(toy, tmp_path):
    torch.manual_seed(0)
    inputs, labels = _batch(toy)
    dense = no_dropout_bert(toy["student"]).eval()
    with torch.no_grad():
        expected = dense(**inputs).logits
    model = MPOTransform().apply(no_dropout_bert(toy["student"])).eval()
    mpo_layers = [m for m in model.modules() if isinstance(m, MPOLinear)]
    assert len(mpo_layers) == 6 * model.config.num_hidden_layers
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, expected, atol=1e-5, rtol=1e-5)
    # a few training steps on the cores, then export: the dense copy computes the same function
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        torch.nn.functional.cross_entropy(model(**inputs).logits, labels).backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    with torch.no_grad():
        trained = model(**inputs).logits
    assert not torch.allclose(trained, expected, atol=1e-3)
    exported = MPOTransform.export(model)
    assert not any(isinstance(m, MPOLinear) for m in exported.modules())
    assert any(isinstance(m, MPOLinear) for m in model.modules())  # the training model is untouched
    exported.save_pretrained(tmp_path / "dense")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "dense").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, trained, atol=1e-5, rtol=1e-5)
    # and the dense state loads back into a fresh MPO student (re-decomposed) with the same function
    fresh = MPOTransform().apply(no_dropout_bert(toy["student"])).eval()
    MPOTransform.load_dense_state(fresh, exported.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(**inputs).logits, trained, atol=1e-5, rtol=1e-5)


def test_targets_select_layers_by_name_per_architecture():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification
    bert_names = target_modules(no_dropout_bert_from_config(), ("query", "output"))
    assert bert_names == ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.output.dense"]
    distil = DistilBertForSequenceClassification(DistilBertConfig(n_layers=2, dim=16, n_heads=2, hidden_dim=32,
                                                                  vocab_size=50))
    assert len(target_modules(distil)) == 12
    with pytest.raises(ValueError, match="unknown --mpo_targets"):
        target_modules(distil, ("qkv",))


def no_dropout_bert_from_config():
    from transformers import BertConfig, BertForSequenceClassification
    return BertForSequenceClassification(BertConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2,
                                                    intermediate_size=32, vocab_size=50))


def test_bond_cap_round_trips_through_the_dense_state(toy):
    inputs, _ = _batch(toy)
    transform = MPOTransform(max_bond=3)
    model = transform.apply(no_dropout_bert(toy["student"])).eval()
    assert all(max(c.shape[-1] for c in m.cores) <= 3 for m in model.modules() if isinstance(m, MPOLinear))
    with torch.no_grad():
        before = model(**inputs).logits
    fresh = transform.apply(no_dropout_bert(toy["student"])).eval()
    MPOTransform.load_dense_state(fresh, MPOTransform.export(model).state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(**inputs).logits, before, atol=1e-5, rtol=1e-5)
    assert isinstance(MPOTransform.export(model).bert.encoder.layer[0].attention.self.query, nn.Linear)
