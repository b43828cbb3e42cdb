"""`make demo` in miniature: the same code path, a few hundred examples and one epoch."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from scripts import demo


def test_demo_runs_end_to_end_and_prints_the_table(tmp_path, capsys):
    work = tmp_path / "demo"
    assert demo.main(["--work_dir", str(work), "--train_examples", "200", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "student (2 layers) + KD" in out and "student (2 layers), no KD" in out
    # each run's dev accuracy is its saved model's: reloaded with plain transformers, scored on the dev file
    with open(os.path.join(work, "glue_data", "SST-2", "dev.tsv"), encoding="utf-8") as f:
        dev = [line.rstrip("\n").split("\t") for line in f][1:]
    labels = np.array([int(label) for _, label in dev])
    for run in ("teacher", "student_kd", "student_no_kd"):
        with open(os.path.join(work, run, "eval_results.json"), encoding="utf-8") as f:
            reported = json.load(f)["eval_accuracy"]
        model = AutoModelForSequenceClassification.from_pretrained(os.path.join(work, run)).eval()
        enc = AutoTokenizer.from_pretrained(os.path.join(work, run))([text for text, _ in dev], padding=True,
                                                                      truncation=True, max_length=64,
                                                                      return_tensors="pt")
        with torch.no_grad():
            preds = model(**enc).logits.argmax(-1).numpy()
        assert reported == pytest.approx(float(np.mean(preds == labels))), run
        assert f"{reported:>14.4f}" in out  # and the printed table shows it
    # the KD run really distilled from the fine-tuned teacher
    with open(os.path.join(work, "student_kd", "trainer_state.json"), encoding="utf-8") as f:
        assert any("loss/kd" in e for e in json.load(f)["log_history"])


def test_the_demo_never_empties_a_dir_it_did_not_make(tmp_path, capsys):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work")
    assert demo.main(["--work_dir", str(mine), "--train_examples", "50", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --work_dir") and "did not make" in err[0]
    assert os.listdir(mine) == ["chapter1.tex"] and (mine / "chapter1.tex").read_text() == "years of work"


def test_a_rerun_replaces_what_the_demo_made_and_keeps_the_rest(tmp_path, monkeypatch):
    work = tmp_path / "demo"
    monkeypatch.setattr(demo, "run_step", lambda title, argv: {"eval_accuracy": 0.5, "train_runtime": 0.0})
    assert demo.main(["--work_dir", str(work), "--train_examples", "50", "--epochs", "1"]) == 0
    (work / "tokenizer" / "stale.txt").write_text("from the first run")
    (work / "notes.txt").write_text("the user's")
    assert demo.main(["--work_dir", str(work), "--train_examples", "50", "--epochs", "1"]) == 0
    assert not (work / "tokenizer" / "stale.txt").exists() and (work / "notes.txt").read_text() == "the user's"
