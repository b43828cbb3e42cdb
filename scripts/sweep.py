"""Run a multi-seed sweep (task × method × seed, each an ordinary entry-script command) and write one results
table: mean ± std over seeds and a paired comparison with the baseline method that says whether each
difference is beyond noise. Stop it at any time and start it again: finished runs are skipped, killed ones
resume. docs/sweeps.md explains the manifest, the statistics and the files.

    python scripts/sweep.py sweeps/glue_minilm.toml                    # run what is left, then the table
    python scripts/sweep.py sweeps/glue_minilm.toml --dry_run          # the commands and a measured time estimate
    python scripts/sweep.py sweeps/glue_minilm.toml --report_only      # the table from what has finished
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # (run as a file, not -m)

from distill.errors import UsageError  # noqa: E402
from sweep.calibrate import CalibrationError, calibrate, sweep_estimate  # noqa: E402
from sweep.manifest import load_manifest  # noqa: E402
from sweep.report import write_report  # noqa: E402
from sweep.runner import is_finished, run_sweep, sweep_lock  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", help="the sweep's TOML manifest (docs/sweeps.md)")
    p.add_argument("--concurrency", type=int, default=None, help="runs at a time (default: the manifest's)")
    p.add_argument("--dry_run", action="store_true",
                   help="print every command and an estimated wall time from a short measured calibration")
    p.add_argument("--list", action="store_true", help="print every command and whether it finished; run nothing")
    p.add_argument("--calibration_steps", default="3,8",
                   help="the two --max_steps of each calibration command (default %(default)s)")
    p.add_argument("--recalibrate", action="store_true", help="measure the calibration anew (default: reuse it)")
    p.add_argument("--report_only", action="store_true", help="write the table from the finished runs; run nothing")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default %(default)s)")
    p.add_argument("--no_plots", action="store_true", help="no <task>.png")
    args = p.parse_args(argv)
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError(f"--concurrency {args.concurrency}: give 1 or more")
    if args.resamples < 100:
        raise UsageError(f"--resamples {args.resamples}: give at least 100 (10,000 for a table to publish)")
    try:
        args.calibration_steps = tuple(int(k) for k in args.calibration_steps.split(","))
    except ValueError:
        args.calibration_steps = ()
    if len(args.calibration_steps) != 2 or not 0 < args.calibration_steps[0] < args.calibration_steps[1]:
        raise UsageError(f"--calibration_steps {args.calibration_steps}: give two increasing step counts, e.g. 3,8")
    return args


def list_runs(manifest) -> set[str]:
    """Print every command with its state; the ids of the runs still pending."""
    pending = {r.id for r in [*manifest.prepare.values(), *manifest.runs] if not is_finished(manifest, r)}
    for run in [*manifest.prepare.values(), *manifest.runs]:
        state = "pending " if run.id in pending else "finished"
        print(f"[{state}] {run.id}: {shlex.join(run.command)}")
    return pending


def dry_run(manifest, args, concurrency: int) -> None:
    pending = list_runs(manifest)
    estimates = calibrate(manifest, concurrency, args.calibration_steps, args.recalibrate)
    print(f"\n{'task':<10}{'method':<16}{'s/step':>9}{'fixed s':>9}{'steps':>8}{'run s':>9}")
    for e in estimates:
        print(f"{e.task:<10}{e.method:<16}{e.per_step_s:>9.3f}{e.fixed_s:>9.1f}{e.steps:>8}{e.run_s:>9.0f}")
    total = sweep_estimate(manifest, estimates, concurrency, pending)
    print(f"\n{len(pending)} runs pending; estimated wall time at {concurrency} at a time: {total / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
        manifest = load_manifest(args.manifest)
        concurrency = args.concurrency or manifest.concurrency
        if args.list:
            list_runs(manifest)
            return 0
        if args.dry_run:
            with sweep_lock(manifest):  # (its calibration runs beside no sweep: timings of a shared device lie)
                dry_run(manifest, args, concurrency)
            return 0
        outcomes = [] if args.report_only else run_sweep(manifest, concurrency)
        table = write_report(manifest, args.resamples, plots=not args.no_plots)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except CalibrationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the runs in flight were stopped; the same command continues where this one stopped",
              file=sys.stderr)
        return 130
    print(open(os.path.join(manifest.output_root, "results.md"), encoding="utf-8").read())
    bad = [o for o in outcomes if o.status in ("failed", "blocked")]
    for o in bad:
        print(f"{o.status}: {o.run.id}" + (f" (exit status {o.returncode})" if o.returncode is not None else ""))
    return 1 if bad or table["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
