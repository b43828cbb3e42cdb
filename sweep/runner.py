"""Runs a manifest's runs, N processes at a time, so that a sweep can be stopped and started again at will.

- A run that finished (exit status 0) gets a marker, `<output_root>/.sweep/done/<task>/<method>/seed<k>.json`,
  holding its command; a later sweep skips it while its command is unchanged.
- Any other run is started again with its very command. The entry scripts' run lifecycle does the rest
  (docs/run_lifecycle.md): a run killed mid-way resumes from its last checkpoint and ends exactly where an
  uninterrupted run ends; a run refused for bad input is refused again, naming the problem.
- A failed run (exit status ≠ 0) does not stop the others; the sweep ends with status 1 and lists them.
- Each run's output goes to `.sweep/logs/<task>__<method>__seed<k>.log` (appended: one header per attempt);
  `.sweep/running.json` lists the runs in flight with their process ids.
- Children die with the sweep (Linux: PR_SET_PDEATHSIG). Each run is its own process group, listed in
  `running.json`; a sweep started again first kills what a killed one left (a launcher's workers, which
  outlive the launcher), so no orphan holds a run's dir.
- One sweep per output root at a time: a second one is refused while the first holds `.sweep/lock`.

Preparatory runs (a task's teacher, `[prepare]`) go first; a task whose preparation failed has its runs
reported as blocked, not started.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass

from distill import io_utils
from distill.errors import UsageError
from sweep.manifest import Manifest, Run

STATE_DIR = ".sweep"


@dataclass(frozen=True)
class Outcome:
    run: Run
    status: str  # finished, skipped (finished earlier), failed, blocked (its task's preparation failed)
    returncode: int | None = None
    seconds: float = 0.0


def state_dir(manifest: Manifest) -> str:
    return os.path.join(manifest.output_root, STATE_DIR)


def marker_path(manifest: Manifest, run: Run) -> str:
    return os.path.join(state_dir(manifest), "done", run.task, f"{run.method}__seed{run.seed}.json")


def log_path(manifest: Manifest, run: Run) -> str:
    return os.path.join(state_dir(manifest), "logs", f"{run.task}__{run.method}__seed{run.seed}.log")


def is_finished(manifest: Manifest, run: Run) -> bool:
    """Finished earlier with this very command (the launcher may differ: it does not change the result), and
    what it made is still there (a deleted run dir runs again)."""
    try:
        with open(marker_path(manifest, run), encoding="utf-8") as f:
            same = json.load(f).get("argv") == list(run.argv)
    except (OSError, ValueError):
        return False
    made = "eval_predictions.json" if "--save_eval_predictions" in run.argv else "config.json"
    return same and os.path.isfile(os.path.join(run.output_dir, made))


def reap_stale(manifest: Manifest) -> list[int]:
    """Kill what an earlier sweep, killed itself, left running: each run was started as the leader of its own
    process group (its launcher's workers too, e.g. torchrun's), listed in `.sweep/running.json`; a group is
    killed only when one of its processes still names that run's output dir (a reused process id is left
    alone). Linux (/proc); elsewhere nothing. Returns the process ids killed."""
    try:
        with open(os.path.join(state_dir(manifest), "running.json"), encoding="utf-8") as f:
            running = json.load(f)
    except (OSError, ValueError):
        return []
    killed = []
    for entry in running.values():
        if not isinstance(entry, dict):
            continue
        group, marker = entry.get("pid"), os.path.abspath(entry.get("output_dir", ""))
        for pid in _group_members(group):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    words = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if any(marker == os.path.abspath(w) for w in words if w):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
    return killed


def _group_members(group) -> list[int]:
    if not isinstance(group, int) or not os.path.isdir("/proc"):
        return []
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 2 and fields[2] == str(group):  # (state, ppid, pgrp, ...)
                members.append(int(name))
    return members


@contextlib.contextmanager
def sweep_lock(manifest: Manifest):
    """Held for the whole sweep; the kernel releases it when the process ends, however it ends."""
    os.makedirs(state_dir(manifest), exist_ok=True)
    path = os.path.join(state_dir(manifest), "lock")
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise UsageError(f"another sweep is running on {manifest.output_root} (pid {f.read().strip() or '?'}); "
                             "wait for it, or give this one another output_root") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield


def _die_with_parent() -> None:  # (in the child, before exec)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def popen(run: Run, log: str) -> subprocess.Popen:
    """How a run starts: its command as a child process, its output appended to `log`."""
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(run.command)}\n")
        f.flush()
        # its own process group (start_new_session), so that a launcher's workers can be found and killed with it
        return _Group(run.command, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                      preexec_fn=_die_with_parent, start_new_session=True)


class _Group(subprocess.Popen):
    """A run's process and its process group: `kill` kills them all (torchrun's workers with torchrun)."""

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        super().kill()


def execute(manifest: Manifest, runs: list[Run], concurrency: int, echo=print, poll_s: float = 0.2,
            spawn=popen) -> list[Outcome]:
    """Run `runs` (those not finished before), `concurrency` at a time; one Outcome per run, in order.
    `spawn(run, log_path)` starts one and returns its process (`pid`, `poll()`, `kill()`, `wait()`)."""
    outcomes: dict[str, Outcome] = {}
    pending = []
    for run in runs:
        if is_finished(manifest, run):
            outcomes[run.id] = Outcome(run, "skipped")
        else:
            pending.append(run)
    active: dict[str, tuple[Run, subprocess.Popen, float]] = {}
    running_file = os.path.join(state_dir(manifest), "running.json")
    try:
        while pending or active:
            while pending and len(active) < concurrency:
                run = pending.pop(0)
                os.makedirs(os.path.dirname(log_path(manifest, run)), exist_ok=True)
                process = spawn(run, log_path(manifest, run))
                active[run.id] = (run, process, time.perf_counter())
                echo(f"started  {run.id} (pid {process.pid})")
            io_utils.atomic_write_json(running_file, {rid: {"pid": p.pid, "output_dir": r.output_dir}
                                                      for rid, (r, p, _) in active.items()})
            time.sleep(poll_s)
            for rid, (run, process, start) in list(active.items()):
                code = process.poll()
                if code is None:
                    continue
                seconds = time.perf_counter() - start
                del active[rid]
                if code == 0:
                    io_utils.atomic_write_json(marker_path(manifest, run), {"argv": list(run.argv),
                                                                            "seconds": round(seconds, 1)})
                    outcomes[rid] = Outcome(run, "finished", code, seconds)
                    echo(f"finished {rid} in {seconds:.0f} s")
                else:
                    outcomes[rid] = Outcome(run, "failed", code, seconds)
                    echo(f"FAILED   {rid}: exit status {code}; log: {log_path(manifest, run)}")
    finally:
        for _, process, _ in active.values():  # (the sweep itself is stopping: its runs with it)
            process.kill()
            process.wait()
        io_utils.atomic_write_json(running_file, {})
    return [outcomes[run.id] for run in runs]


def run_sweep(manifest: Manifest, concurrency: int | None = None, echo=print, spawn=popen) -> list[Outcome]:
    """Every run of the manifest: the tasks' preparatory runs first, then the rest; one sweep at a time."""
    concurrency = concurrency or manifest.concurrency
    with sweep_lock(manifest):
        for pid in reap_stale(manifest):
            echo(f"killed pid {pid}, left running by an earlier sweep")
        prepared = execute(manifest, list(manifest.prepare.values()), concurrency, echo, spawn=spawn)
        failed_tasks = {o.run.task for o in prepared if o.status == "failed"}
        runnable = [r for r in manifest.runs if r.task not in failed_tasks]
        done = {o.run.id: o for o in execute(manifest, runnable, concurrency, echo, spawn=spawn)}
        blocked = [Outcome(r, "blocked") for r in manifest.runs if r.task in failed_tasks]
    return prepared + [done[r.id] for r in runnable] + blocked
