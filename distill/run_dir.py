"""The output dir of a run: who owns it, which run it holds, and whether a command may start, resume
or must stop. One contract for every entry script (docs/run_lifecycle.md):

- One run at a time. The main process holds an exclusive lock (`flock`) on `.run.lock` in the dir for
  the whole run; the file names its host and pid. A second start is refused; a lock file left by a
  process that died (SIGKILL, OOM, a lost node) holds no lock any more: it is taken over, with a notice.
- A dir is tied to one run. `run_flags.json`, at the top and in every checkpoint, records the flags that
  define the run (what it computes; not where it writes or how often it logs). The same command
  resumes from the last checkpoint; a checkpoint made with other flags is refused, naming them.
- `--overwrite_output_dir` starts over for real: the earlier run's checkpoints, logs and temporary dirs
  are removed, but only once the new run has passed every check and is about to train (bad input
  never costs a finished run).
- What a run killed before its first checkpoint leaves (its run_flags.json, `runs/`, `*.tmp` dirs)
  does not stop the same command: it starts again from scratch.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
from dataclasses import dataclass, fields

from distill.checkpoint import CHECKPOINT_RE, FLAGS_FILE, list_checkpoints
from distill.errors import UsageError
from distill.io_utils import atomic_write_json
from distill.run_record import TRAINING_RECORD, normal_value

logger = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"

# Flags that do not change what a run computes: where it reads caches from or writes to, how often it
# logs or keeps checkpoints, what it does after training (--do_predict), how it is launched, how much memory or
# compile time a step spends for the same result (distill/speed.py). Everything
# else defines the run, and a checkpoint only resumes under the same values.
NOT_DEFINING = frozenset({
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "logging_dir", "report_to", "disable_tqdm",
    "logging_steps", "save_steps", "save_total_limit", "do_predict", "test_file", "ax_file", "max_predict_samples",
    "per_device_eval_batch_size", "cache_dir", "teacher_cache_dir", "data_cache_dir", "overwrite_cache",
    "trust_remote_code", "use_cpu", "local_rank", "n_gpu", "force", "model_type", "teacher_type", "do_lower_case",
    "output_dir_intermed", "gradient_checkpointing", "torch_compile", "torch_compile_backend", "torch_compile_mode",
})


def run_flags(parsed) -> dict:
    """The flags that define a run, from the parsed argument dataclasses. A value naming an existing
    file or dir becomes its absolute path, so `cd` and `./` do not make a run look different."""
    flags = {}
    for args in parsed:
        for f in fields(args):
            if f.name not in NOT_DEFINING:
                flags[f.name] = normal_value(getattr(args, f.name), f.name)
    return flags


def flag_differences(recorded: dict, now: dict, limit: int = 4) -> str:
    """`--lr 0.001 (now 0.002), ...`: the defining flags whose values differ, for a one-line refusal."""
    missing = object()
    changed = [k for k in sorted(recorded.keys() | now.keys()) if recorded.get(k, missing) != now.get(k, missing)]
    shown = [f"--{k} {_show(recorded.get(k, missing), missing)} (now {_show(now.get(k, missing), missing)})"
             for k in changed[:limit]]
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return ", ".join(shown) + more


def _show(value, missing) -> str:
    return "unset" if value is missing else json.dumps(value)


def read_flags(directory: str) -> dict | None:
    path = os.path.join(directory, FLAGS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        recorded = None
    if not isinstance(recorded, dict):
        raise UsageError(f"{path} is unreadable; pass --overwrite_output_dir to start over, or choose another "
                         "--output_dir")
    return recorded


def write_flags(directory: str, flags: dict) -> None:
    atomic_write_json(os.path.join(directory, FLAGS_FILE), flags)


# ---------------------------------------------------------------------------------------------- the lock
class DirLock:
    """An exclusive lock on a dir, held until `release()` or the death of the process (the kernel
    drops a `flock` however the process ends, so a SIGKILL never leaves the dir locked)."""

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, LOCK_FILE)
        self.fd: int | None = None
        self.created_dir = False

    def acquire(self) -> None:
        import fcntl
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise UsageError(f"--output_dir {self.directory} is a file, not a directory; choose another --output_dir")
        try:
            self.created_dir = not os.path.isdir(self.directory)
            os.makedirs(self.directory, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    owner = _read_owner(fd)
                    os.close(fd)
                    raise UsageError(f"output directory {self.directory} is in use by another run ({owner}); wait "
                                     "for it to finish, or choose another --output_dir") from None
                # The holder we waited for may have removed the file after we opened it: lock the file that
                # is there now, or two runs would each hold a lock on a different file.
                with contextlib.suppress(FileNotFoundError):
                    if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                        break
                os.close(fd)
        except OSError as e:
            raise UsageError(f"cannot use --output_dir {self.directory} ({e.strerror}); choose a writable "
                             "directory") from None
        previous = _read_owner(fd)
        if previous:
            logger.warning("took over the lock of %s: the run that held it (%s) is no longer running", self.directory,
                           previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)  # while still locked: a waiting run then locks the new file it makes
        os.close(self.fd)
        self.fd = None
        if self.created_dir:  # a run refused before it wrote anything leaves no empty dir behind
            with contextlib.suppress(OSError):
                os.rmdir(self.directory)


def _read_owner(fd: int) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return os.pread(fd, 200, 0).decode().strip()
    return ""


_HELD: dict[str, DirLock] = {}


def lock_dir(directory: str) -> DirLock:
    """Lock `directory` for this process (again: a no-op) until `release_locks()`."""
    key = os.path.realpath(directory)
    if key not in _HELD:
        lock = DirLock(directory)
        lock.acquire()
        _HELD[key] = lock
    return _HELD[key]


def release_locks() -> None:
    while _HELD:
        _HELD.popitem()[1].release()


# ---------------------------------------------------------------------------------------------- start
@dataclass
class RunStart:
    """What a command does with its output dir: `resume_from` a checkpoint, or start from scratch
    (`fresh`), in which case `claim()` clears what an earlier run left before training writes."""
    output_dir: str
    flags: dict
    resume_from: str | None = None
    fresh: bool = False
    record: dict | None = None  # what it runs with (distill/run_record.py), written with its first file
    task_files: frozenset[str] = frozenset()  # the task's own output names (GLUE's server files), also stale

    def claim(self) -> None:
        """Make the dir this run's, just before training writes into it (main process only)."""
        clear_run_files(self.output_dir, everything=self.fresh, task_files=self.task_files)
        write_flags(self.output_dir, self.flags)
        self.write_record(TRAINING_RECORD)

    def write_record(self, name: str) -> None:
        if self.record is not None:
            atomic_write_json(os.path.join(self.output_dir, name), self.record)


def plan_start(output_dir: str, flags: dict, *, do_train: bool, overwrite: bool,
               resume_from_checkpoint: str | None, task_files: tuple[str, ...] = ()) -> RunStart:
    """Decide, from what `output_dir` holds, how this command starts (see the module docstring);
    refuses with one line when it may not. Reads only: nothing is written or removed here.
    `task_files`: names of files the task writes beside the run files (GLUE's test-server files)."""
    start = RunStart(output_dir, flags, task_files=frozenset(task_files))
    if not do_train:
        check_evaluation_dir(output_dir, flags, overwrite)
        return start
    check_inputs_outside(output_dir, flags)
    if resume_from_checkpoint:
        check_resumable(resume_from_checkpoint, flags)
        start.resume_from = resume_from_checkpoint
    if overwrite or not os.path.isdir(output_dir):
        if overwrite and resume_from_checkpoint and inside(resume_from_checkpoint, output_dir):
            raise UsageError(f"--overwrite_output_dir would remove --resume_from_checkpoint {resume_from_checkpoint} "
                             "with the rest of the earlier run; drop one of the two")
        start.fresh = True
        return start
    checkpoints = list_checkpoints(output_dir)
    if checkpoints:  # this run's, killed or finished: resume (an explicit checkpoint wins)
        check_resumable(checkpoints[-1], flags)
        start.resume_from = start.resume_from or checkpoints[-1]
        return start
    start.fresh = True
    recorded = read_flags(output_dir)
    if recorded is not None:  # this dir's run was killed before its first checkpoint
        if recorded != flags:
            raise UsageError(f"output directory {output_dir} holds a run with other flags: "
                             f"{flag_differences(recorded, flags)}; rerun it with its flags, pass "
                             "--overwrite_output_dir to start over, or choose another --output_dir")
        return start
    if [name for name in os.listdir(output_dir) if name != LOCK_FILE and not TEMPORARY.match(name)]:
        raise UsageError(f"output directory {output_dir} is not empty and holds no checkpoint; pass "
                         "--overwrite_output_dir to train into it, or choose another --output_dir")
    return start


def check_resumable(checkpoint: str, flags: dict) -> None:
    if not os.path.isdir(checkpoint):
        raise UsageError(f"--resume_from_checkpoint {checkpoint} is not a directory; pass a checkpoint-<step> dir")
    recorded = read_flags(checkpoint)
    if recorded is None:
        raise UsageError(f"{checkpoint} holds no {FLAGS_FILE}: it is corrupt, incomplete or from an older version; "
                         "resume from another checkpoint-<step> dir, or start over with --overwrite_output_dir")
    if recorded != flags:
        raise UsageError(f"{checkpoint} was made with other flags: {flag_differences(recorded, flags)}; rerun with "
                         "that run's flags to resume it, or pass --overwrite_output_dir to start over")


# The flags that name models a run reads: a training run must not write over them.
MODEL_INPUTS = ("model_name_or_path", "teacher_model", "tokenizer_name", "config_name", "student_config",
                "student_pretrained_weights", "teacher_pretrained")


def inside(path: str, directory: str) -> bool:
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory + os.sep)


def check_inputs_outside(output_dir: str, flags: dict) -> None:
    """A training run writes its model into the output dir and may remove its checkpoints and logs: a
    model it reads must not live there (equal to it, or in a dir the run owns)."""
    for name in MODEL_INPUTS:
        path = flags.get(name)
        if not isinstance(path, str) or not os.path.exists(path) or not inside(path, output_dir):
            continue
        relative = os.path.relpath(os.path.realpath(path), os.path.realpath(output_dir))
        if relative == "." or CHECKPOINT_RE.match(relative.split(os.sep)[0]) or relative.split(os.sep)[0] in (
                "runs", "logs", "teacher", "best_checkpoint"):
            raise UsageError(f"--{name} {path} is in --output_dir {output_dir}, which this run writes over; choose "
                             "another --output_dir (or copy the model elsewhere first)")


def check_evaluation_dir(output_dir: str, flags: dict, overwrite: bool) -> None:
    """An evaluation-only run writes results, not a model: into a training run's dir only for that run's
    own model (or one of its checkpoints), so results and model never describe different models."""
    model = flags.get("model_name_or_path")
    if overwrite or read_flags(output_dir) is None or (isinstance(model, str) and inside(model, output_dir)):
        return
    raise UsageError(f"output directory {output_dir} holds a training run and {model} is not its model: its results "
                     "would be mixed with that run's; choose another --output_dir, evaluate the run's own model "
                     f"(--model_name_or_path {output_dir}), or pass --overwrite_output_dir")


# What runs write besides their final model. A fresh start removes all of it (an earlier run's
# checkpoints, logs, results and predictions must not pass for the new run's); every start removes the
# temporary files a killed write left.
TEMPORARY = re.compile(r"^(checkpoint-\d+|best_checkpoint|teacher)\.(tmp|old)$|^\.model\.tmp$|^\.tmp-")
RUN_FILES = re.compile("|".join([
    r"^best_checkpoint$", r"^runs$", r"^logs$", r"^(all|train|eval|test|teacher_eval)_results\.json$",
    r"^trainer_state\.json$", r"^(eval_)?run_args\.json$", r"^predictions\.(json|tsv)$", r"^eval_generations\.jsonl$",
    r"^takd_stage\.json$", "^" + re.escape(FLAGS_FILE) + "$",
    # the DistilBERT pipeline's own files (train_lm_distill.py --dump_path, lm/pipeline.py)
    r"^checkpoint\.pth$", r"^model_epoch_\d+\.pth$", r"^parameters\.json$", r"^.+\.data\.npz$",
    r"^.+\.token_counts\.npy$"]))


def clear_run_files(output_dir: str, everything: bool = True, task_files: frozenset[str] = frozenset()) -> None:
    """Remove the temporary files of killed writes and, with `everything`, what an earlier run of this
    dir left that a new one could mistake for its own: checkpoints, logs, results, predictions (the
    task's own `task_files` too, e.g. GLUE server files) and the record of its flags. Its model and
    `teacher/` stay until this run writes its own; files the user put there always stay."""
    for name in os.listdir(output_dir):
        stale = TEMPORARY.match(name) or (everything and (CHECKPOINT_RE.match(name) or RUN_FILES.match(name)
                                                          or name in task_files))
        if not stale:
            continue
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
