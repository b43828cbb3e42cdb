"""The dry run's time estimate, from a short measured calibration.

For each task (its preparatory run, then each method), the first seed's command runs twice with
`--max_steps k1` and `--max_steps k2` into `.sweep/calibration/`, `concurrency` at a time like the sweep
itself (so the per-step time includes the sharing of the device). From their training clocks R
(train_results.json's train_runtime) and whole wall times T:

    per step  s = (R(k2) − R(k1)) / (k2 − k1)      fixed  f = T(k1) − k1·s   (start-up, loading, evaluation, saving)

and the full run's steps from what its calibration run reported (its training examples, in the run summary
of its log) and its flags (run_args.json: epochs, batch, accumulation, processes; or its own --max_steps).
A run is estimated at f + s·steps; the sweep's wall time is the schedule of those estimates over
`concurrency` slots in the sweep's order (preparatory runs first). Evaluations during training beyond the one
the calibration makes are not in f, so runs that evaluate every epoch take somewhat longer than estimated.
Calibration runs are kept (with their markers), so a second dry run reuses them; --recalibrate measures anew.
The preparatory calibration run's model stands in for the task's prepared model (its teacher) in the
methods' calibration runs, so a dry run needs nothing to exist beforehand.
"""
from __future__ import annotations

import heapq
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, replace

from sweep.manifest import Manifest, Run
from sweep.runner import execute, log_path, marker_path, state_dir

EXAMPLES = re.compile(r"data:\s+(\d+) training examples")


class CalibrationError(RuntimeError):
    """A calibration run failed or did not report what the estimate needs (its log says why)."""


@dataclass(frozen=True)
class Estimate:
    task: str
    method: str
    per_step_s: float
    fixed_s: float
    steps: int

    @property
    def run_s(self) -> float:
        return self.fixed_s + self.per_step_s * self.steps


def _with_steps(run: Run, steps: int, output_dir: str, swaps: dict[str, str]) -> Run:
    argv = [swaps.get(a, a) for a in run.argv]
    argv[argv.index("--output_dir") + 1] = output_dir
    return replace(run, method=f"calibrate.{run.method}.{steps}steps", output_dir=output_dir,
                   argv=tuple(argv) + ("--max_steps", str(steps)))


def _flag(argv: tuple[str, ...], name: str) -> str | None:
    value = None
    for i, a in enumerate(argv):  # (the last occurrence wins, as in the entry scripts)
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def full_steps(manifest: Manifest, run: Run, calibration: Run) -> int:
    """Optimizer steps of `run` (its --max_steps, else epochs × steps per epoch, from its calibration)."""
    if _flag(run.argv, "--max_steps") is not None:
        return int(_flag(run.argv, "--max_steps"))
    with open(os.path.join(calibration.output_dir, "run_args.json"), encoding="utf-8") as f:
        record = json.load(f)
    args = {k: v for group in record["args"].values() for k, v in group.items()} \
        if all(isinstance(v, dict) for v in record["args"].values()) else record["args"]
    with open(log_path(manifest, calibration), encoding="utf-8") as f:
        found = EXAMPLES.findall(f.read())
    if not found:
        raise CalibrationError(f"{calibration.id}: its log has no 'N training examples' line to size the full run "
                               "from")
    batch = args["per_device_train_batch_size"] * record.get("processes", 1) * args["gradient_accumulation_steps"]
    return math.ceil(int(found[-1]) / batch) * math.ceil(float(args["num_train_epochs"]))


def calibrate(manifest: Manifest, concurrency: int, steps: tuple[int, int] = (3, 8), recalibrate: bool = False,
              echo=print) -> list[Estimate]:
    """One Estimate per task and method (and per task's preparatory run), measured as the module says."""
    root = os.path.join(state_dir(manifest), "calibration")
    if recalibrate:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(os.path.join(state_dir(manifest), "done", "_calibration"), ignore_errors=True)
    firsts = [manifest.prepare[t] for t in manifest.tasks if t in manifest.prepare]
    firsts += [manifest.runs_of(t, m)[0] for t in manifest.tasks for m in manifest.methods]
    swaps = {p.output_dir: os.path.join(root, p.task, "prepare", f"{steps[1]}steps") for p in manifest.prepare.values()}
    jobs = {}
    for run in firsts:
        pair = [_with_steps(run, k, os.path.join(root, run.task, run.method, f"{k}steps"), swaps) for k in steps]
        jobs[(run.task, run.method)] = (run, [replace(r, task=f"_calibration/{r.task}") for r in pair])
    echo(f"calibrating: {len(jobs)} commands × {steps} steps, {concurrency} at a time, in {root}")
    prepared = [j for (task, method), (_, pair) in jobs.items() if method == "prepare" for j in pair]
    others = [j for (task, method), (_, pair) in jobs.items() if method != "prepare" for j in pair]
    for batch in (prepared, others):  # (the methods' calibration reads the prepare calibration's model)
        failed = [o for o in execute(manifest, batch, concurrency, echo) if o.status == "failed"]
        if failed:
            raise CalibrationError(f"calibration run {failed[0].run.id} failed (exit status {failed[0].returncode}); "
                                   f"its log: {log_path(manifest, failed[0].run)}")
    estimates = []
    for (task, method), (run, (short, long)) in jobs.items():
        wall, training = [], []
        for r in (short, long):
            with open(marker_path(manifest, r), encoding="utf-8") as f:
                wall.append(json.load(f)["seconds"])
            with open(os.path.join(r.output_dir, "train_results.json"), encoding="utf-8") as f:
                training.append(json.load(f)["train_runtime"])
        # the step's time from the runs' own training clocks (whole-process wall times add start-up noise)
        per_step = max(training[1] - training[0], 0.0) / (steps[1] - steps[0])
        estimates.append(Estimate(task, method, per_step, max(wall[0] - steps[0] * per_step, 0.0),
                                  full_steps(manifest, run, long)))
    return estimates


def makespan(durations: list[float], slots: int) -> float:
    """Wall time of running `durations` in order, each on the first free of `slots` (as the runner does)."""
    free = [0.0] * slots
    end = 0.0
    for d in durations:
        start = heapq.heappop(free)
        end = max(end, start + d)
        heapq.heappush(free, start + d)
    return end


def sweep_estimate(manifest: Manifest, estimates: list[Estimate], concurrency: int, pending: set[str]) -> float:
    """Estimated wall seconds of the runs still `pending` (ids): preparatory runs, then the rest."""
    per = {(e.task, e.method): e.run_s for e in estimates}
    prepare = [per[(r.task, "prepare")] for r in manifest.prepare.values() if r.id in pending]
    runs = [per[(r.task, r.method)] for r in manifest.runs if r.id in pending]
    return makespan(prepare, concurrency) + makespan(runs, concurrency)
