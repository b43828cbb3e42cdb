"""The run lifecycle (docs/run_lifecycle.md), with the real SIGKILL: a run killed at any moment and
started again with the same command ends with the uninterrupted run's final files, byte for byte; a
finished command run again changes nothing; an output dir is owned by one run at a time; checkpoints
of other flags are refused; --overwrite_output_dir starts over for real; a full disk loses nothing.

The runs are real processes, forked from a pre-warmed launcher (the `launch` fixture, tests/launcher.py)
and killed from inside at the chosen moment (tests/kill_at.py). Dropout is on: the RNG states are part of a checkpoint.
"""
from __future__ import annotations

import os
import pickle
import shutil
import time

import pytest
from conftest import REPO_ROOT, snapshot

# Final files that must be byte-identical; the other JSON results differ only in their timings.
FINAL = ("model.safetensors", "config.json", "tokenizer.json", "eval_results.json", "SST-2.tsv")
TIMINGS = ("train_runtime", "train_steps_per_second")


def kd(toy, out, *extra) -> list[str]:
    return ["run_glue.py", "--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name",
            "sst2", "--data_dir", toy["task"], "--do_train", "--do_eval", "--do_predict", "--max_steps", "8",
            "--eval_steps", "3", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--alpha_kd", "0.5",
            "--logging_steps", "1", "--disable_tqdm", "--output_dir", str(out), *extra]


def lgtm(toy, out, *extra) -> list[str]:
    return kd(toy, out, "--train_teacher", "--use_lgtm", "--t_learning_rate", "1e-3", *extra)


def ok(launch, argv, kill=None) -> str:
    code, log = launch.run(argv, kill)
    assert code == 0, log[-3000:]
    return log


def killed(launch, argv, kill) -> str:
    code, log = launch.run(argv, kill)
    assert code == -9, (kill, log[-3000:])  # it died where asked, not earlier and not by an error
    return log


def logged_steps(log_dir, tag) -> list[int]:
    """The steps of `tag` in the TensorBoard logs, as TensorBoard shows them (purged events dropped)."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    events = EventMultiplexer().AddRunsFromDirectory(str(log_dir))
    events.Reload()
    return sorted(e.step for run in events.Runs() for e in events.Scalars(run, tag))


def read_without_timings(path) -> dict:
    import json
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return {k: v for k, v in data.items() if k not in TIMINGS}


def assert_same_final_files(full, other, extra=()):
    for name in (*FINAL, *extra):
        with open(os.path.join(full, name), "rb") as a, open(os.path.join(other, name), "rb") as b:
            assert a.read() == b.read(), name
    for name in ("train_results.json", "all_results.json", "trainer_state.json"):
        assert read_without_timings(os.path.join(full, name)) == read_without_timings(os.path.join(other, name)), name


@pytest.fixture(scope="module")
def full_kd(toy, launch, tmp_path_factory):
    out = tmp_path_factory.mktemp("full_kd")
    ok(launch, kd(toy, out))
    return str(out)


# ---------------------------------------------------------------------------------------------- kills
def test_kd_killed_in_every_phase_ends_byte_for_byte_like_the_uninterrupted_run(toy, launch, full_kd, tmp_path):
    out = tmp_path / "out"
    # before the first checkpoint: logs and the run's record exist, no checkpoint
    killed(launch, kd(toy, out), ("step", 2))
    assert "runs" in os.listdir(out) and not any(n.startswith("checkpoint-") for n in os.listdir(out))
    assert (out / ".run.lock").read_text().startswith("host ")  # the dead run's lock file stays behind
    log = killed(launch, kd(toy, out), ("step", 5))  # mid-training (checkpoint-3 exists)
    assert "took over the lock" in log and "resumed from" not in log  # started again from scratch
    killed(launch, kd(toy, out), ("rename", "checkpoint-6"))  # while a checkpoint is saved
    assert "checkpoint-6.tmp" in os.listdir(out) and "checkpoint-6" not in os.listdir(out)
    killed(launch, kd(toy, out), ("final_save", 1))  # the final model half in place
    for name in ("train_results.json", "eval_results.json", "teacher_eval_results.json", "SST-2.tsv"):
        killed(launch, kd(toy, out), ("write", name))  # final metrics, evaluation, prediction
    log = ok(launch, kd(toy, out))
    assert "resumed from" in log and "at step 8" in log
    assert_same_final_files(full_kd, out, extra=("teacher_eval_results.json",))
    assert logged_steps(out / "runs", "loss/total") == list(range(1, 9))  # what killed runs logged is dropped

    # The finished command again (flags spelled differently: an alias, a relative path): nothing changes.
    before = snapshot(out)
    again = kd(toy, out)
    again[again.index("--per_device_train_batch_size")] = "--per_gpu_train_batch_size"
    again[again.index("--data_dir") + 1] = os.path.relpath(toy["task"], REPO_ROOT)
    ok(launch, again)
    assert snapshot(out) == before


def test_lgtm_killed_in_every_phase_ends_byte_for_byte_like_the_uninterrupted_run(toy, launch, tmp_path):
    """Student AND teacher: the best student and the best teacher are restored from the checkpoints of
    their steps, which --save_total_limit 1 never rotates away; the teacher is saved as teacher/."""
    full, out = tmp_path / "full", tmp_path / "out"
    ok(launch, lgtm(toy, full, "--save_total_limit", "1"))
    for kill in (("step", 5), ("rename", "checkpoint-6"), ("rename", "teacher"), ("final_save", 2),
                 ("write", "eval_results.json"), ("write", "teacher_eval_results.json"), ("write", "SST-2.tsv")):
        killed(launch, lgtm(toy, out, "--save_total_limit", "1"), kill)
    ok(launch, lgtm(toy, out, "--save_total_limit", "1"))
    teacher_files = ("teacher/model.safetensors", "teacher/config.json", "teacher_eval_results.json")
    assert_same_final_files(str(full), str(out), extra=teacher_files)
    before = snapshot(out)
    ok(launch, lgtm(toy, out, "--save_total_limit", "1"))
    assert snapshot(out) == before


# ---------------------------------------------------------------------------------------------- ownership
def test_a_second_run_on_a_busy_output_dir_is_refused_and_the_first_is_unharmed(toy, launch, full_kd, tmp_path):
    out, go = tmp_path / "out", str(tmp_path / "go")
    first = launch.start(kd(toy, out), ("hold", go))
    deadline = time.time() + 120
    while not os.path.exists(go + ".reached"):  # the first run holds the dir and is training
        assert time.time() < deadline, open(first.log).read()[-3000:]
        time.sleep(0.05)
    code, log = launch.run(kd(toy, out))
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "in use by another run" in errors[0] and "pid" in errors[0], log
    open(go, "w").close()
    code, log = first.wait()
    assert code == 0, log[-3000:]
    assert_same_final_files(full_kd, out)


def test_overwrite_starts_over_and_checkpoints_of_other_flags_are_never_resumed(toy, launch, tmp_path):
    out = tmp_path / "out"
    ok(launch, kd(toy, out))  # run A: lr 1e-3, finished
    other = ["--learning_rate", "2e-3"]
    reference = tmp_path / "b"
    ok(launch, kd(toy, reference, *other))  # run B, uninterrupted
    # B into A's dir with --overwrite_output_dir, killed: A's checkpoints are gone, B's own remain
    killed(launch, kd(toy, out, *other, "--overwrite_output_dir"), ("step", 5))
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint-")) == ["checkpoint-3"]
    # A's command now: refused, naming the flag; B's command without --overwrite_output_dir resumes B
    code, log = launch.run(kd(toy, out))
    assert code == 2 and "--learning_rate 0.002 (now 0.001)" in log.splitlines()[-1], log[-2000:]
    log = ok(launch, kd(toy, out, *other))
    assert "checkpoint-3 at step 3" in log
    assert_same_final_files(str(reference), str(out))
    # an explicit checkpoint of other flags is refused too
    code, log = launch.run(kd(toy, tmp_path / "c", "--resume_from_checkpoint", out / "checkpoint-6"))
    assert code == 2 and "made with other flags: --learning_rate" in log.splitlines()[-1]


def test_a_checkpoint_beyond_the_end_of_the_run_is_refused(toy, launch, tmp_path):
    """Same flags, but the training file shrank: the last checkpoint is past the new end."""
    data = tmp_path / "SST-2"
    shutil.copytree(toy["task"], data)
    argv = kd(toy, tmp_path / "out", "--max_steps", "-1", "--num_train_epochs", "1")
    argv[argv.index("--data_dir") + 1] = str(data)
    ok(launch, argv)  # 96 examples / 8 = 12 steps
    lines = (data / "train.tsv").read_text().splitlines(keepends=True)
    (data / "train.tsv").write_text("".join(lines[:49]))  # 48 examples: 6 steps
    code, log = launch.run(argv)
    assert code == 2 and "is at step 12, beyond this run's 6 steps" in log.splitlines()[-1], log[-2000:]


# ---------------------------------------------------------------------------------------------- files handed over
class Payload:
    """Unpickling this runs code (it creates `marker`): what a planted checkpoint would do."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_pickle_in_a_checkpoint_does_not_run_and_the_resume_is_refused(toy, launch, full_kd, tmp_path):
    marker = tmp_path / "code_ran"
    for where in ("output dir", "--resume_from_checkpoint"):
        out = tmp_path / where.strip("-")
        shutil.copytree(full_kd, out)
        with open(out / "checkpoint-6" / "training_state.pt", "wb") as f:
            pickle.dump({"optimizer": Payload(str(marker))}, f)
        shutil.rmtree(out / "checkpoint-8")  # so the auto-resume picks checkpoint-6
        extra = ["--resume_from_checkpoint", str(out / "checkpoint-6")] if where != "output dir" else []
        code, log = launch.run(kd(toy, out, *extra))
        errors = [line for line in log.splitlines() if line.startswith("error: ")]
        assert code == 2 and len(errors) == 1 and "could run code" in errors[0], log[-2000:]
        assert not marker.exists()


# ---------------------------------------------------------------------------------------------- disk
def test_a_disk_that_fills_up_mid_save_gives_one_line_and_keeps_the_last_checkpoint(toy, launch, full_kd,
                                                                                  tmp_path):
    """From step 4 on no file may grow past 40 kB (the kernel refuses the write, as a full disk does): the
    save of checkpoint-6 fails; checkpoint-3 stays usable and the same command then finishes the run."""
    out = tmp_path / "out"
    code, log = launch.run(kd(toy, out), ("fsize", "4:40000"))
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1, log[-3000:]
    assert "could not write checkpoint" in errors[0] and "checkpoint-6" in errors[0] and "Traceback" not in log
    assert sorted(n for n in os.listdir(out) if "checkpoint" in n) == ["checkpoint-3"]  # no half-written one
    log = ok(launch, kd(toy, out))
    assert "checkpoint-3 at step 3" in log
    assert_same_final_files(full_kd, out)


def test_result_files_are_readable_as_the_umask_allows(full_kd):
    modes = {name: os.stat(os.path.join(full_kd, name)).st_mode & 0o777 for name in
             ("model.safetensors", "eval_results.json", "SST-2.tsv", "config.json", "checkpoint-8/model.safetensors",
              "checkpoint-8/training_state.pt")}
    assert len(set(modes.values())) == 1, modes  # all as config.json, which transformers writes with open()
