"""How a command starts in its output dir (distill/run_dir.py): the decision table, what
--overwrite_output_dir clears, the flags record and the lock. The same rules end to end, with real
kills and two processes: test_run_lifecycle.py."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import pytest

from distill.errors import UsageError
from distill.run_dir import (
    LOCK_FILE,
    DirLock,
    clear_run_files,
    flag_differences,
    plan_start,
    run_flags,
    write_flags,
)

FLAGS = {"learning_rate": 0.001, "seed": 42}


def start(out, flags=FLAGS, do_train=True, overwrite=False, resume=None):
    return plan_start(str(out), flags, do_train=do_train, overwrite=overwrite, resume_from_checkpoint=resume)


def checkpoint(out, step, flags=FLAGS):
    path = out / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if flags is not None:
        write_flags(str(path), flags)
    return str(path)


def test_a_new_or_empty_dir_starts_fresh_and_an_eval_only_run_never_resumes(tmp_path):
    assert start(tmp_path / "new").fresh and start(tmp_path / "new").resume_from is None
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / LOCK_FILE).write_text("host h pid 1\n")  # a dead run's lock file alone
    assert start(tmp_path / "locked").fresh
    checkpoint(tmp_path / "run", 3)
    decision = start(tmp_path / "run", do_train=False)
    assert decision.resume_from is None and not decision.fresh


def test_the_newest_checkpoint_of_the_same_flags_is_resumed_and_other_flags_are_refused(tmp_path):
    checkpoint(tmp_path, 3)
    newest = checkpoint(tmp_path, 12)
    decision = start(tmp_path)
    assert decision.resume_from == newest and not decision.fresh
    with pytest.raises(UsageError, match=r"checkpoint-12 was made with other flags: --learning_rate 0.001 "
                                         r"\(now 0.002\); rerun with that run's flags"):
        start(tmp_path, {**FLAGS, "learning_rate": 0.002})
    with pytest.raises(UsageError, match="--new_flag unset \\(now 1\\)"):  # a flag the checkpoint did not know
        start(tmp_path, {**FLAGS, "new_flag": 1})


def test_an_explicit_checkpoint_is_checked_too(tmp_path):
    ckpt = checkpoint(tmp_path / "a", 6)
    assert start(tmp_path / "b", resume=ckpt).resume_from == ckpt
    with pytest.raises(UsageError, match="made with other flags: --seed 42 \\(now 7\\)"):
        start(tmp_path / "b", {**FLAGS, "seed": 7}, resume=ckpt)
    with pytest.raises(UsageError, match="is not a directory"):
        start(tmp_path / "b", resume=str(tmp_path / "nope"))
    bare = checkpoint(tmp_path / "c", 2, flags=None)  # a checkpoint of an older version, or damaged
    with pytest.raises(UsageError, match="checkpoint-2 holds no run_flags.json: it is corrupt"):
        start(tmp_path / "c", resume=bare)


def test_leftovers_of_a_run_killed_before_its_first_checkpoint(tmp_path):
    (tmp_path / "runs").mkdir()
    write_flags(str(tmp_path), FLAGS)
    assert start(tmp_path).fresh  # the same command starts again
    with pytest.raises(UsageError, match="holds a run with other flags: --learning_rate"):
        start(tmp_path, {**FLAGS, "learning_rate": 1.0})
    assert start(tmp_path, {**FLAGS, "learning_rate": 1.0}, overwrite=True).fresh


def test_a_dir_with_other_files_needs_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="is not empty and holds no checkpoint; pass --overwrite_output_dir"):
        start(tmp_path)
    assert start(tmp_path, overwrite=True).fresh


RUN_WROTE = ("checkpoint-3/", "checkpoint-6.tmp/", "best_checkpoint/", "runs/", ".model.tmp/", "run_flags.json",
             ".tmp-abc-eval_results.json", "eval_results.json", "all_results.json", "teacher_eval_results.json",
             "trainer_state.json", "predictions.json", "SST-2.tsv", "AX.tsv", "predictions.tsv", "takd_stage.json")
STAYS = ("data/", "teacher/", "notes.tmp", "model.safetensors", "config.json", "checkpoint-notes.txt", "train.tsv")


def make(root, names):
    for name in names:
        if name.endswith("/"):
            (root / name).mkdir()
            (root / name / "f").write_text("x")
        else:
            (root / name).write_text("x")


def test_claiming_a_fresh_start_clears_what_runs_wrote_and_nothing_else(tmp_path):
    make(tmp_path, RUN_WROTE + STAYS)
    plan_start(str(tmp_path), FLAGS, do_train=True, overwrite=True, resume_from_checkpoint=None,
               task_files=("SST-2.tsv", "AX.tsv")).claim()
    assert sorted(os.listdir(tmp_path)) == sorted([n.rstrip("/") for n in STAYS] + ["run_flags.json"])
    assert json.loads((tmp_path / "run_flags.json").read_text()) == FLAGS  # now this run's record


def test_a_resume_clears_only_the_temporary_files_of_killed_writes(tmp_path):
    make(tmp_path, (".tmp-x1-SST-2.tsv", "checkpoint-6.tmp/", ".model.tmp/", "eval_results.json", "runs/"))
    checkpoint(tmp_path, 3)
    decision = start(tmp_path)
    assert decision.resume_from.endswith("checkpoint-3")
    decision.claim()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-3", "eval_results.json", "run_flags.json", "runs"]


def test_temporary_files_of_a_killed_first_write_do_not_block_the_same_command(tmp_path):
    make(tmp_path, (".tmp-k2j4run_flags.json", LOCK_FILE))
    assert start(tmp_path).fresh


def test_a_training_run_never_writes_over_a_model_it_reads(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(UsageError, match="--model_name_or_path .* is in --output_dir .*, which this run writes over"):
        start(model, {**FLAGS, "model_name_or_path": str(model)})
    checkpoint(tmp_path / "out", 3)
    with pytest.raises(UsageError, match="--teacher_model .*checkpoint-3 is in --output_dir"):
        start(tmp_path / "out", {**FLAGS, "teacher_model": str(tmp_path / "out" / "checkpoint-3")}, overwrite=True)
    (tmp_path / "out" / "my_teacher").mkdir()  # a model the user keeps in the dir, outside what runs own
    assert start(tmp_path / "out", {**FLAGS, "teacher_model": str(tmp_path / "out" / "my_teacher")}, overwrite=True)
    assert start(model, do_train=False).resume_from is None  # predicting with a model into its own dir is fine


def test_an_evaluation_only_run_into_a_training_runs_dir_must_evaluate_that_runs_model(tmp_path):
    out = tmp_path / "out"
    checkpoint(out, 3)
    write_flags(str(out), FLAGS)
    with pytest.raises(UsageError, match="holds a training run and .*other is not its model"):
        start(out, {"model_name_or_path": str(tmp_path / "other")}, do_train=False)
    start(out, {"model_name_or_path": str(out)}, do_train=False)
    start(out, {"model_name_or_path": str(out / "checkpoint-3")}, do_train=False)
    start(out, {"model_name_or_path": str(tmp_path / "other")}, do_train=False, overwrite=True)


def test_an_explicit_checkpoint_into_a_dir_of_another_run_is_refused(tmp_path):
    ckpt = checkpoint(tmp_path / "a", 6)
    checkpoint(tmp_path / "b", 2, flags={**FLAGS, "seed": 1})
    with pytest.raises(UsageError, match="checkpoint-2 was made with other flags: --seed 1"):
        start(tmp_path / "b", resume=ckpt)
    with pytest.raises(UsageError, match="would remove --resume_from_checkpoint"):
        start(tmp_path / "a", resume=ckpt, overwrite=True)
    decision = start(tmp_path / "b", resume=ckpt, overwrite=True)
    assert decision.fresh and decision.resume_from == ckpt


def test_clear_run_files_on_an_empty_dir(tmp_path):
    clear_run_files(str(tmp_path))
    assert os.listdir(tmp_path) == []


@dataclass
class _Args:
    output_dir: str = "out"
    data_dir: str | None = None
    learning_rate: float = 1e-3
    logging_steps: int = 50
    layers: list = field(default_factory=list)


def test_run_flags_leave_out_what_does_not_change_the_run_and_normalise_paths(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    relative = run_flags([_Args(output_dir="a", data_dir="./data", logging_steps=10)])
    absolute = run_flags([_Args(output_dir="b", data_dir=str(tmp_path / "data"))])
    assert relative == absolute == {"data_dir": str(tmp_path / "data"), "learning_rate": 1e-3, "layers": []}
    assert flag_differences({"a": 1, "b": [1]}, {"a": 2, "c": "x"}) == \
        '--a 1 (now 2), --b [1] (now unset), --c unset (now "x")'


def test_the_lock_is_reentrant_and_a_dead_runs_lock_is_taken_over(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("host elsewhere pid 99999\n")  # a SIGKILLed run's: the file, no lock
    lock = DirLock(str(out))
    with caplog.at_level(logging.WARNING):
        lock.acquire()
    assert "took over the lock" in caplog.text and "host elsewhere pid 99999" in caplog.text
    assert (out / LOCK_FILE).read_text().startswith("host ")
    lock.release()
    assert not (out / LOCK_FILE).exists() and out.is_dir()  # a dir it did not create stays


def test_a_lock_on_a_file_is_one_line_and_a_dir_it_made_goes_with_it(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a directory"):
        DirLock(str(tmp_path / "file")).acquire()
    lock = DirLock(str(tmp_path / "made"))
    lock.acquire()
    lock.release()
    assert not (tmp_path / "made").exists()  # a run refused after it made the dir leaves no empty dir
