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
    metric as measured by stage 1 on the same dev set), then one row per stage."""
    metric, higher = records[0]["main_metric"], records[0]["greater_is_better"]
    teacher_metric = records[0]["metrics"].get(f"teacher_eval_{metric}")
    rows = [model_row(0, "teacher", teacher, teacher_metric)]
    for r in records:
        rows.append({**model_row(r["stage"], r["name"], r["dir"], r["metrics"].get(f"eval_{metric}")),
                     "teacher": r["teacher"], "train_runtime": r["metrics"].get("train_runtime")})
    summary = {"metric": metric, "greater_is_better": higher, "stages": rows}
    atomic_write_json(os.path.join(output_dir, SUMMARY_FILE), summary)
    return summary


def format_table(summary: dict) -> str:
    metric = summary["metric"]
    header = f"{'stage':<6}{'name':<24}{'layers':>7}{'parameters':>13}{'dev ' + metric:>20}"
    lines = [f"TAKD chain, dev {metric} ({'higher' if summary['greater_is_better'] else 'lower'} is better)",
             header, "-" * len(header)]
    for row in summary["stages"]:
        layers = row.get("num_layers", "–")
        params = f"{row['num_parameters'] / 1e6:.2f}M" if row.get("num_parameters") else "–"
        value = f"{row['dev_metric']:.4f}" if row["dev_metric"] is not None else "–"
        lines.append(f"{row['stage']:<6}{row['name']:<24}{layers:>7}{params:>13}{value:>20}")
    return "\n".join(lines)
