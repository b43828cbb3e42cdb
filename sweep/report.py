"""A sweep's results: one table (per task and method, mean ± std over seeds and the paired comparison with the
baseline, sweep/stats.py) as Markdown and JSON, and one plot per task, from the runs' own files:
`eval_results.json` (the dev score each run reported) and `eval_predictions.json` (its per-example dev
predictions, written with --save_eval_predictions: the sweep passes it to every run).

Written into the output root, atomically: `results.md`, `results.json`, `<task>.png`. A run that has not
finished is left out and listed under "missing"; nothing is averaged over fewer seeds silently.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from distill import io_utils
from distill.errors import UsageError
from sweep.manifest import Manifest, Run
from sweep.runner import is_finished
from sweep.stats import mean_std, metric_function, paired_bootstrap


def _read(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_result(manifest: Manifest, run: Run) -> dict | None:
    """{score, predictions, labels, metric, regression} of a run that finished with the manifest's command
    (the sweep's marker; files left in its dir by another command are not this run's), None otherwise."""
    if not is_finished(manifest, run):
        return None
    predictions = _read(os.path.join(run.output_dir, "eval_predictions.json"))
    results = _read(os.path.join(run.output_dir, "eval_results.json"))
    if predictions is None or results is None:
        return None
    metric = predictions["main_metric"]
    return {"score": float(results[f"eval_{metric}"]), "metric": metric, "regression": predictions["regression"],
            "predictions": np.asarray(predictions["predictions"]), "labels": np.asarray(predictions["labels"])}


def collect(manifest: Manifest, resamples: int = 10_000, bootstrap_seed: int = 0) -> dict:
    """The table's content: {"rows": [...], "missing": [run ids]} (see the module docstring)."""
    rows, missing = [], []
    for task in manifest.tasks:
        results = {}
        for method in manifest.methods:
            for run in manifest.runs_of(task, method):
                r = run_result(manifest, run)
                if r is None:
                    missing.append(run.id)
                else:
                    results[(method, run.seed)] = r
        base = manifest.baseline
        # a paired comparison needs every run of the task scored on the very same dev examples
        reference = next(iter(results.items()), None)
        for (method, seed), r in results.items():
            if not np.array_equal(r["labels"], reference[1]["labels"]) or r["metric"] != reference[1]["metric"]:
                raise UsageError(f"{task}: {method}/seed{seed} was scored on other dev data (labels or metric) than "
                                 f"{reference[0][0]}/seed{reference[0][1]}; give every run of a task the same dev "
                                 "set (--data_dir, --max_eval_samples)")
        for method in manifest.methods:
            seeds = [s for s in manifest.seeds if (method, s) in results]
            if not seeds:
                continue
            first = results[(method, seeds[0])]
            mean, std = mean_std([results[(method, s)]["score"] for s in seeds])
            std = None if math.isnan(std) else std  # (one seed: no spread; JSON has no NaN)
            row = {"task": task, "method": method, "metric": first["metric"], "seeds": len(seeds), "mean": mean,
                   "std": std, "scores": {str(s): results[(method, s)]["score"] for s in seeds}}
            paired = [s for s in seeds if (base, s) in results]
            if base is not None and method != base and paired:
                labels = first["labels"]
                c = paired_bootstrap(metric_function(first["metric"], first["regression"]),
                                     [results[(method, s)]["predictions"] for s in paired],
                                     [results[(base, s)]["predictions"] for s in paired], labels,
                                     resamples=resamples, seed=bootstrap_seed)
                row["vs_baseline"] = _finite({
                    "baseline": base, "delta": c.delta, "seed_low": c.seed_low, "seed_high": c.seed_high,
                    "seed_p": c.seed_p, "example_low": c.example_low, "example_high": c.example_high,
                    "example_p": c.example_p, "p_value": c.p_value, "beyond_noise": c.beyond_noise,
                    "seeds": c.seeds, "examples": c.examples})
            rows.append(row)
    return {"manifest": os.path.abspath(manifest.path), "baseline": manifest.baseline, "resamples": resamples,
            "bootstrap_seed": bootstrap_seed, "rows": rows, "missing": missing}


def _finite(values: dict) -> dict:
    """NaN (undefined: one seed, constant predictions) as None: JSON has no NaN."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def _interval(low: float | None, high: float | None) -> str:
    return "—" if low is None else f"[{low * 100:+.2f}, {high * 100:+.2f}]"


def _pm(mean: float, std: float | None) -> str:
    scale = 100.0  # GLUE scores are reported ×100
    return f"{mean * scale:.2f} ± {std * scale:.2f}" if std is not None else f"{mean * scale:.2f}"


def markdown(table: dict) -> str:
    base = table["baseline"]
    lines = [f"| task | method | metric | seeds | mean ± std | Δ vs {base} | seeds: 95 % CI (t) | dev set: 95 % CI "
             "(bootstrap) | p | beyond noise |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table["rows"]:
        c = row.get("vs_baseline")
        if c:
            p = "—" if c["p_value"] is None else f"{c['p_value']:.3f}"
            verdict = "**yes**" if c["beyond_noise"] else ("no" if c["seeds"] > 1 else "— (1 seed)")
            comparison = (f"{c['delta'] * 100:+.2f} | {_interval(c['seed_low'], c['seed_high'])} | "
                          f"{_interval(c['example_low'], c['example_high'])} | {p} | {verdict}")
        else:
            comparison = "— | — | — | — | —"
        lines.append(f"| {row['task']} | {row['method']} | {row['metric']} | {row['seeds']} | "
                     f"{_pm(row['mean'], row['std'])} | {comparison} |")
    lines += ["", f"Scores ×100. Δ: mean over the seeds both methods have of (method − {base}) on the same seed. "
              "Beyond noise: both intervals exclude 0, the seeds' (paired t-test) and the dev set's (paired "
              f"bootstrap over examples, {table['resamples']:,} resamples); p: the larger of the two tests' "
              "(docs/sweeps.md)."]
    if table["missing"]:
        lines += ["", f"Missing (not finished with the manifest's command, left out): {', '.join(table['missing'])}"]
    return "\n".join(lines) + "\n"


def plot_task(table: dict, task: str, path: str) -> None:
    """Each seed's score as a dot and the mean ± std as a bar per method; the baseline's mean as a line."""
    import matplotlib
    matplotlib.use("Agg")  # (files only: no display)
    import matplotlib.pyplot as plt

    rows = [r for r in table["rows"] if r["task"] == task]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 + 1.1 * len(rows)), 3.4))
    for i, row in enumerate(rows):
        scores = [v * 100 for v in row["scores"].values()]
        ax.scatter([i] * len(scores), scores, s=14, color="0.45", zorder=3)
        ax.errorbar([i], [row["mean"] * 100], yerr=[(row["std"] or 0.0) * 100],
                    fmt="o", color="C1" if row.get("vs_baseline", {}).get("beyond_noise") else "C0", capsize=4)
        if row["method"] == table["baseline"]:
            ax.axhline(row["mean"] * 100, color="0.7", linestyle="--", zorder=1)
    ax.set_xticks(range(len(rows)), [r["method"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel(f"dev {rows[0]['metric']} (×100)" if rows else "")
    ax.set_title(f"{task}: each seed (dots), mean ± std\norange: beyond noise against {table['baseline']}", fontsize=8)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(manifest: Manifest, resamples: int = 10_000, plots: bool = True) -> dict:
    """results.md, results.json and one <task>.png per task into the output root; returns the table."""
    table = collect(manifest, resamples)
    root = manifest.output_root
    os.makedirs(root, exist_ok=True)
    io_utils.atomic_write_json(os.path.join(root, "results.json"), table)
    io_utils.atomic_write_text(os.path.join(root, "results.md"), markdown(table))
    if plots:
        for task in manifest.tasks:
            if any(r["task"] == task for r in table["rows"]):
                plot_task(table, task, os.path.join(root, f"{task}.png"))
    return table
