"""Checkpoint bookkeeping: listing, rotation, atomic replacement (the resume rule: test_run_dir.py)."""
from __future__ import annotations

import os

import pytest
import torch

from distill.checkpoint import list_checkpoints, rotate_checkpoints
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


def test_list_and_rotation_keep_the_best_checkpoints(tmp_path):
    make_checkpoints(tmp_path, [1, 2, 3, 4, 5])
    rotate_checkpoints(str(tmp_path), 2, keep=(1, None))
    assert [os.path.basename(p) for p in list_checkpoints(tmp_path)] == ["checkpoint-1", "checkpoint-4",
                                                                         "checkpoint-5"]


def test_atomic_files_get_the_mode_of_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_json(str(tmp_path / "r.json"), {"a": 1})
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o640


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


def test_a_failed_write_is_one_line_and_gives_its_space_back(tmp_path):
    """Storage failures, however a library words them, become a UsageError; the block's temporary dir is
    removed; any other error is a bug and passes through unchanged."""
    import errno

    from distill.io_utils import writing
    tmp = tmp_path / "checkpoint-6.tmp"
    failures = [OSError(errno.ENOSPC, "No space left on device"), PermissionError(errno.EACCES, "Permission denied"),
                OSError(errno.EROFS, "Read-only file system"),
                RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                             "data/0: file write failed"),
                Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                          'left on device" })')]
    for failure in failures:
        tmp.mkdir()
        (tmp / "model.safetensors").write_bytes(b"half")
        with pytest.raises(UsageError, match=r"could not write checkpoint-6 \(.+\); free disk space"):
            with writing("checkpoint-6", cleanup=str(tmp)):
                raise failure
        assert not tmp.exists()
    with pytest.raises(KeyError):
        with writing("checkpoint-6"):
            raise KeyError("a bug, not the disk")
