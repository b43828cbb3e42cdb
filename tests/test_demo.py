"""`make demo` in miniature: the same code path, a few hundred examples and one epoch."""
from __future__ import annotations

import json
import os

from distill import demo


def test_demo_runs_end_to_end_and_prints_the_table(tmp_path, capsys):
    work = tmp_path / "demo"
    assert demo.main(["--work_dir", str(work), "--train_examples", "200", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "student (2 layers) + KD" in out and "student (2 layers), no KD" in out
    for run in ("teacher", "student_kd", "student_no_kd"):
        with open(os.path.join(work, run, "eval_results.json"), encoding="utf-8") as f:
            assert 0.0 <= json.load(f)["eval_accuracy"] <= 1.0
    # the KD run really distilled from the fine-tuned teacher
    with open(os.path.join(work, "student_kd", "trainer_state.json"), encoding="utf-8") as f:
        assert any("loss/kd" in e for e in json.load(f)["log_history"])
