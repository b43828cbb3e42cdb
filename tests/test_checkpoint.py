"""Checkpoint bookkeeping: listing, rotation, the resume rule, atomic replacement."""
from __future__ import annotations

import os

import pytest
import torch

from distill.checkpoint import list_checkpoints, resolve_resume, rotate_checkpoints
from distill.errors import UsageError
from distill.io_utils import atomic_write_json, replace_dir


def make_checkpoints(root, steps):
    for s in steps:
        (root / f"checkpoint-{s}").mkdir(parents=True)


def test_list_orders_by_step_not_by_name_and_rotation_keeps_the_newest(tmp_path):
    make_checkpoints(tmp_path, [5, 40, 100, 20])
    (tmp_path / "checkpoint-7.tmp").mkdir()  # a save interrupted mid-way is never listed
    assert [os.path.basename(p) for p in list_checkpoints(tmp_path)] == [
        "checkpoint-5", "checkpoint-20", "checkpoint-40", "checkpoint-100"]
    rotate_checkpoints(str(tmp_path), 2)
    assert [os.path.basename(p) for p in list_checkpoints(tmp_path)] == ["checkpoint-40", "checkpoint-100"]


def test_resume_rule(tmp_path):
    assert resolve_resume(str(tmp_path / "new"), True, False, None) is None
    make_checkpoints(tmp_path / "run", [2, 10])
    assert resolve_resume(str(tmp_path / "run"), True, False, None).endswith("checkpoint-10")
    assert resolve_resume(str(tmp_path / "run"), True, True, None) is None  # --overwrite_output_dir
    assert resolve_resume(str(tmp_path / "run"), False, False, None) is None  # eval/predict only
    explicit = str(tmp_path / "run" / "checkpoint-2")
    assert resolve_resume(str(tmp_path / "run"), True, False, explicit) == explicit
    with pytest.raises(UsageError, match="not a directory"):
        resolve_resume(str(tmp_path / "run"), True, False, str(tmp_path / "nope"))


def test_atomic_writes_replace_whole_files_and_dirs(tmp_path):
    atomic_write_json(str(tmp_path / "r.json"), {"a": 1})
    atomic_write_json(str(tmp_path / "r.json"), {"a": 2})
    assert (tmp_path / "r.json").read_text().strip() == '{\n  "a": 2\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "f").write_text("new")
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "f").write_text("old")
    replace_dir(str(tmp_path / "new"), str(tmp_path / "final"))
    assert (tmp_path / "final" / "f").read_text() == "new" and not (tmp_path / "new").exists()


def test_load_model_weights_accepts_tied_keys_and_refuses_a_different_model(tmp_path):
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

    from distill.checkpoint import load_model_weights
    tiny = dict(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    mlm = BertForMaskedLM(BertConfig(**tiny))  # decoder weight tied to the word embeddings
    mlm.save_pretrained(tmp_path / "mlm")
    fresh = BertForMaskedLM(BertConfig(**tiny))
    load_model_weights(fresh, str(tmp_path / "mlm" / "model.safetensors"))
    assert torch.equal(fresh.cls.predictions.decoder.weight, mlm.cls.predictions.decoder.weight)
    other = BertForSequenceClassification(BertConfig(**{**tiny, "num_hidden_layers": 2}))
    with pytest.raises(UsageError, match="does not fit the model"):
        load_model_weights(other, str(tmp_path / "mlm" / "model.safetensors"))
