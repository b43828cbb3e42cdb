"""Exact resume after SIGKILL: a run killed at an arbitrary step (or while it saves a checkpoint) and
started again with the same command ends with the same weights, metrics and log history as a run never
interrupted: for KD and for LGTM, whose teacher learns. Dropout is ON: the RNG states are part of the
checkpoint. The kill comes from inside the process (tests/kill_at.py), so nothing gets to clean up."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, assert_same_run

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def glue_flags(toy, out, *extra):
    return [str(a) for a in [
        "run_glue.py", "--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name",
        "sst2", "--data_dir", toy["task"], "--do_train", "--do_eval", "--max_steps", 8, "--eval_steps", 3,
        "--per_device_train_batch_size", 8, "--learning_rate", 1e-3, "--alpha_kd", 0.5, "--logging_steps", 1,
        "--report_to", "none", "--disable_tqdm", "--output_dir", out, *extra]]


def run(argv, kill: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    prefix = [os.path.join(REPO_ROOT, "tests", "kill_at.py"), kill[0], str(kill[1])] if kill else []
    if not kill:
        argv = [os.path.join(REPO_ROOT, argv[0]), *argv[1:]]
    return subprocess.run([sys.executable, *prefix, *argv], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)


def killed_then_resumed(argv_of, tmp_path, kill) -> str:
    out = tmp_path / f"killed_{kill[0]}"
    proc = run(argv_of(out), kill)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not os.path.exists(out / "eval_results.json")  # it really died mid-run
    proc = run(argv_of(out))  # the same command again
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resumed from" in proc.stderr
    return str(out)


@pytest.fixture(scope="module")
def full_kd(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("full_kd")
    proc = run(glue_flags(toy, out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return str(out)


def test_kd_killed_at_step_7_resumes_from_checkpoint_6_exactly(toy, tmp_path, full_kd):
    resumed = killed_then_resumed(lambda out: glue_flags(toy, out), tmp_path, ("step", 7))
    assert_same_run(full_kd, resumed)


def test_a_kill_while_saving_leaves_the_previous_checkpoint_usable(toy, tmp_path, full_kd):
    """Killed while checkpoint-6 is written: checkpoint-3 is intact, the half-saved one is never read."""
    out = tmp_path / "killed_save"
    assert run(glue_flags(toy, out), ("save", 6)).returncode == -signal.SIGKILL
    assert sorted(os.listdir(out)).count("checkpoint-3") == 1 and "checkpoint-6" not in os.listdir(out)
    assert "checkpoint-6.tmp" in os.listdir(out)  # what the kill left
    proc = run(glue_flags(toy, out))
    assert proc.returncode == 0 and "resumed from" in proc.stderr and "checkpoint-3 at step 3" in proc.stderr
    assert_same_run(full_kd, str(out))


def test_lgtm_killed_mid_run_resumes_student_and_teacher_exactly(toy, tmp_path):
    def lgtm(out):
        return glue_flags(toy, out, "--train_teacher", "--use_lgtm", "--t_learning_rate", "1e-3")
    full = tmp_path / "full"
    assert run(lgtm(full)).returncode == 0
    resumed = killed_then_resumed(lgtm, tmp_path, ("step", 5))
    assert_same_run(str(full), resumed, model_files=("model.safetensors", "teacher/model.safetensors"),
                    result_files=("eval_results.json", "teacher_eval_results.json"),
                    state_keys=("best_step", "teacher_best_step"))
