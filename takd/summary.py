"""The chain's summary: each stage's model size and dev metric, as takd_summary.json and a table."""
from __future__ import annotations

import json
import math
import os

from distill.io_utils import atomic_write_json, weights_fingerprint

SUMMARY_FILE = "takd_summary.json"


def model_size(model_dir: str) -> dict:
    """{"num_layers", "num_parameters"} of a saved local model dir, read from its config and the
    safetensors headers (no weights loaded); {} for a Hub id or a dir without safetensors."""
    if not os.path.isdir(model_dir):
        return {}
    from safetensors import safe_open
    from transformers import AutoConfig

    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):  # a sharded checkpoint
        with open(index, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"] if os.path.isfile(os.path.join(model_dir, "model.safetensors")) else []
    if not files:
        return {}
    count = 0
    for name in files:
        with safe_open(os.path.join(model_dir, name), framework="pt") as f:
            count += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    layers = AutoConfig.from_pretrained(model_dir).num_hidden_layers
    return {"num_layers": layers, "num_parameters": count}


def model_row(stage: int, name: str, path: str, metric_value: float | None) -> dict:
    return {"stage": stage, "name": name, "path": path, "dev_metric": metric_value,
            "weights_sha256": weights_fingerprint(path) if os.path.isdir(path) else None, **model_size(path)}


def write_summary(output_dir: str, teacher: str, records: list[dict]) -> dict:
    """takd_summary.json from the finished stages' records: row 0 is the chain's teacher (its dev
    metric as measured by stage 1 on the same dev set), then one row per stage. With a teacher that
    learns (ProKT, LGTM) the teacher a stage ends with is not the one it started from: its dev metric
    is that stage's `trained_teacher_dev_metric`, and the chain's first teacher is left unscored."""
    metric, higher = records[0]["main_metric"], records[0]["greater_is_better"]
    teacher_metric = None if records[0]["teacher_learns"] else records[0]["metrics"].get(f"teacher_eval_{metric}")
    rows = [model_row(0, "teacher", teacher, teacher_metric)]
    for r in records:
        row = {**model_row(r["stage"], r["name"], r["dir"], r["metrics"].get(f"eval_{metric}")),
               "teacher": r["teacher"], "train_runtime": r["metrics"].get("train_runtime")}
        if r["teacher_learns"]:
            row["trained_teacher_dev_metric"] = r["metrics"].get(f"teacher_eval_{metric}")
        rows.append(row)
    summary = {"metric": metric, "greater_is_better": higher, "stages": rows}
    atomic_write_json(os.path.join(output_dir, SUMMARY_FILE), summary)
    return summary


def format_table(summary: dict) -> str:
    metric, rows = summary["metric"], summary["stages"]
    learned = any("trained_teacher_dev_metric" in row for row in rows)

    def number(value):
        return f"{value:.4f}" if value is not None else "–"

    header = f"{'stage':<6}{'name':<24}{'layers':>7}{'parameters':>13}{'dev ' + metric:>20}"
    header += f"{'its teacher after':>19}" if learned else ""
    lines = [f"TAKD chain, dev {metric} ({'higher' if summary['greater_is_better'] else 'lower'} is better)",
             header, "-" * len(header)]
    for row in rows:
        params = f"{row['num_parameters'] / 1e6:.2f}M" if row.get("num_parameters") else "–"
        line = f"{row['stage']:<6}{row['name']:<24}{row.get('num_layers', '–'):>7}{params:>13}"
        line += f"{number(row['dev_metric']):>20}"
        if learned and row["stage"] > 0:
            line += f"{number(row.get('trained_teacher_dev_metric')):>19}"
        lines.append(line)
    return "\n".join(lines)
