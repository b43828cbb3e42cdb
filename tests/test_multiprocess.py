"""Two CPU processes (torchrun, gloo): teachers that learn (ProKT, LGTM) get the 1-process updates. The
1-vs-2-process equivalence of every entry script under torchrun and accelerate (the same student, logs, dev
metrics and predictions, every example once and in file order): test_two_process_equivalence.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, free_port
from transformers import AutoTokenizer


@pytest.mark.parametrize("extra", [[], ["--use_lgtm"], ["--use_lgtm", "--use_opdf", "--opdf_align_weight", "10"]],
                         ids=["prokt", "lgtm", "lgtm+opdf"])
def test_two_processes_give_the_one_process_teacher_and_student_updates(toy, launch, tmp_path, extra):
    """ProKT and LGTM (also with OPDF's MPO student and its alignment loss, added once per process and
    step): with the same global batch, 2 processes reach the same student AND teacher as 1 process.
    LGTM's inner passes run on the unwrapped models and reduce their gradients themselves (lgtm/).
    Dropout is off so that both runs compute the same function."""
    from safetensors.torch import load_file
    from transformers import BertForSequenceClassification

    models = {}
    for name in ("student", "teacher"):
        models[name] = str(tmp_path / f"{name}_no_dropout")
        model = BertForSequenceClassification.from_pretrained(toy[name], hidden_dropout_prob=0.0,
                                                              attention_probs_dropout_prob=0.0)
        model.save_pretrained(models[name])
        AutoTokenizer.from_pretrained(toy[name]).save_pretrained(models[name])
    common = ["--model_name_or_path", models["student"], "--teacher_model", models["teacher"], "--task_name", "sst2",
              "--data_dir", toy["task"], "--do_train", "--do_eval", "--max_steps", "3", "--eval_steps", "3",
              "--train_teacher", "--learning_rate", "1e-3", "--t_learning_rate", "1e-3",
              "--alpha_kd", "0.5", "--disable_tqdm", "--report_to", "none", "--max_seq_length", "48", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    two = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           os.path.join(REPO_ROOT, "run_glue.py"), *common, "--per_device_train_batch_size", "8",
           "--output_dir", str(tmp_path / "two")]
    proc = subprocess.run(two, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, log = launch.run(["run_glue.py", *common, "--per_device_train_batch_size", "16", "--output_dir",
                            tmp_path / "one"])
    assert code == 0, log[-3000:]
    for name in ("model.safetensors", "teacher/model.safetensors"):
        a, b = load_file(tmp_path / "one" / name), load_file(tmp_path / "two" / name)
        moved = load_file(os.path.join(models["teacher" if "teacher" in name else "student"], "model.safetensors"))
        assert any(not torch.equal(a[k], moved[k]) for k in a)  # training changed the model
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=f"{name}:{key}")
    one_log = json.loads((tmp_path / "one" / "trainer_state.json").read_text())["log_history"]
    two_log = json.loads((tmp_path / "two" / "trainer_state.json").read_text())["log_history"]
    for a, b in zip(one_log, two_log):
        assert ("loss/opdf_align" in a) == ("--use_opdf" in extra and "loss/total" in a)
        for key in ("loss/total", "loss/teacher_aux", "lgtm/quiz_loss", "lgtm/influence_norm", "loss/opdf_align"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-8), key
