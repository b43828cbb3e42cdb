"""Two CPU processes (torchrun, gloo): training syncs, and evaluation/prediction gather every example
exactly once, in test-file order. (The full 1-vs-2-process equivalence suite belongs to the scale issue.)"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import torch
from conftest import REPO_ROOT
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def test_two_processes_train_evaluate_and_predict_in_order(toy, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           os.path.join(REPO_ROOT, "run_glue.py"), "--model_name_or_path", toy["student"], "--teacher_model",
           toy["teacher"], "--task_name", "sst2", "--data_dir", toy["task"], "--do_train", "--do_eval",
           "--do_predict", "--max_steps", "4", "--eval_steps", "2", "--per_device_train_batch_size", "8",
           "--per_device_eval_batch_size", "5", "--output_dir", str(out), "--disable_tqdm", "--report_to", "none"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "global batch 16" in proc.stderr  # 2 processes x 8
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_samples"] == 40
    with open(out / "SST-2.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    with open(os.path.join(toy["task"], "test.tsv"), encoding="utf-8") as f:
        test_rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    assert [r[0] for r in rows] == [r[0] for r in test_rows]  # every example once, in file order
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    enc = AutoTokenizer.from_pretrained(out)([r[1] for r in test_rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert [int(r[1]) for r in rows] == model(**enc).logits.argmax(-1).tolist()
