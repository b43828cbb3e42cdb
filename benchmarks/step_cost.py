#!/usr/bin/env python
"""Wall time and peak memory of one optimizer step, per training method, through the real trainer.

    .venv/bin/python benchmarks/step_cost.py                    # every method (default: --method all)
    .venv/bin/python benchmarks/step_cost.py --method kd --steps 10 --threads 1 --rounds 3

Each method is timed on the same fixed teacher/student pair (random init, no network, CPU) by
building a real `DistillationTrainer` and calling its `optimizer_step([batch])`: the code a training
run executes per step, minus data loading, logging and checkpointing.

Output (stdout, one JSON object per line; progress and library warnings go to stderr):
    {"method", "step_s", "ratio_to_finetune", "peak_rss_mb"}          one line per method
    {"kd_bound_ratio", "teacher_forward_s", "student_step_s", "kd_within_bound"}

The KD bound: a frozen teacher should add no more than one inference-mode forward of the teacher to a
fine-tuning step, so KD's step may cost at most
    1 + teacher_forward_s / finetune_step_s + 0.10       (as a ratio to the fine-tuning step)
where 0.10 is slack for the KD loss itself and timing noise.

See benchmarks/README.md for measured numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# The repository root: `distill` and `losses` are not installed into the venv, they are imported
# from the checkout. Only put on sys.path inside the worker, never at import time.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------- the fixed workload
# A small BERT pair (the shape of a 6-layer MiniLM-style teacher and its 3-layer student) keeps a
# CPU step around a second while still being dominated by the transformer layers, as real runs are.
BERT_SHAPE = dict(hidden_size=384, num_attention_heads=12, intermediate_size=1536, vocab_size=30522, num_labels=2)
TEACHER_LAYERS = 6
STUDENT_LAYERS = 3
BATCH_SIZE = 16
SEQ_LEN = 128
KD_SLACK = 0.10            # allowed extra cost of KD over "student step + teacher forward"
REFERENCE = "finetune"     # every ratio is relative to this method, so it is always measured
MIN_STEPS = 5              # fewer timed steps make the median meaningless on a noisy machine
WARMUP_STEPS = 2           # first steps allocate optimizer state and warm the allocator/kernels


def _make_bert(layers: int, seed: int):
    """A randomly initialised BertForSequenceClassification; the seed makes every worker build
    identical weights, so methods differ only in what they run, not in what they start from."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(num_hidden_layers=layers, **BERT_SHAPE))


# ---------------------------------------------------------------- methods
# A method is a function (accelerator, seed) -> the DistillationTrainer keyword arguments that make it
# that method (student, objective, teacher, and e.g. model_transform later). The common arguments
# (args, accelerator, collator) are added by the worker. To benchmark a new method, write one builder
# and add it to METHODS; it then shows up in --method and in --method all.

def build_finetune(accelerator, seed: int) -> dict:
    """Plain fine-tuning of the student on the labels: the reference cost of a training step."""
    from distill.objective import SequenceClassificationObjective
    return {"student": _make_bert(STUDENT_LAYERS, seed),
            "objective": SequenceClassificationObjective(False, False, alpha_kd=1.0, temperature=1.0),
            "teacher": None}


def build_kd(accelerator, seed: int) -> dict:
    """Hinton KD from a frozen teacher (alpha_kd=1: the KD term only)."""
    from distill.objective import SequenceClassificationObjective
    from distill.teacher import FrozenTeacher
    return {"student": _make_bert(STUDENT_LAYERS, seed),
            "objective": SequenceClassificationObjective(False, True, alpha_kd=1.0, temperature=1.0),
            "teacher": FrozenTeacher(_make_bert(TEACHER_LAYERS, seed + 1), accelerator)}


METHODS = {
    "finetune": build_finetune,
    "kd": build_kd,
}


# ---------------------------------------------------------------- measuring (worker side)
def _make_batch(collator, seed: int) -> dict:
    """One full batch through the real collator: random ids, no padding, random labels."""
    import torch
    g = torch.Generator().manual_seed(seed + 2)
    ids = torch.randint(0, BERT_SHAPE["vocab_size"], (BATCH_SIZE, SEQ_LEN), generator=g).tolist()
    labels = torch.randint(0, BERT_SHAPE["num_labels"], (BATCH_SIZE,), generator=g).tolist()
    items = [{"input_ids": ids[i], "attention_mask": [1] * SEQ_LEN, "token_type_ids": [0] * SEQ_LEN,
              "labels": labels[i]} for i in range(BATCH_SIZE)]
    return collator(items)


def _median_seconds(fn, warmup: int, steps: int) -> tuple[float, list[float]]:
    """Median wall time of `fn` over `steps` calls after `warmup` untimed ones. The median, not the
    mean: on a shared machine single steps get descheduled, and one outlier must not move the result."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _peak_rss_mb() -> float:
    """This process's peak resident set size so far. ru_maxrss is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _log(msg: str) -> None:
    print(f"[step_cost] {msg}", file=sys.stderr, flush=True)


def run_worker(method: str, steps: int, warmup: int, threads: int | None, seed: int) -> dict:
    """Time `method`'s optimizer step in this (fresh) process; returns the result dict."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    sys.path.insert(0, REPO_ROOT)
    from distill.args import TrainingArguments
    from distill.batching import PaddingCollator
    from distill.modeling import forward_input_names, model_inputs
    from distill.trainer import DistillationTrainer, make_accelerator

    with tempfile.TemporaryDirectory(prefix="step_cost_") as tmp:
        # use_cpu: the workload is defined as a CPU benchmark; without it a machine with a GPU would
        # silently time something else.
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=BATCH_SIZE, report_to="none",
                                 disable_tqdm=True, max_grad_norm=1.0, use_cpu=True, seed=seed)
        accelerator = make_accelerator(args)
        collator = PaddingCollator(0)
        trainer = DistillationTrainer(args=args, accelerator=accelerator, collator=collator,
                                      **METHODS[method](accelerator, seed))
        # The optimizer/scheduler exactly as train() makes them; 1000 steps so the linear schedule
        # does not reach lr 0 within the benchmark.
        trainer.create_optimizer(total_steps=1000)
        batch = trainer._to_device(_make_batch(collator, seed))

        last_logs = {}

        def step():
            last_logs.update(trainer.optimizer_step([batch]))

        step_s, times = _median_seconds(step, warmup, steps)
        # Read right after the method's own steps, before anything else is allocated below.
        peak = _peak_rss_mb()
        loss = last_logs.get("loss/total", float("nan"))
        if not loss == loss or loss in (float("inf"), float("-inf")):
            raise RuntimeError(f"{method}: non-finite loss {loss} (the step did not run as intended)")
        _log(f"{method}: threads={torch.get_num_threads()} steps(s)={[round(t, 3) for t in times]} "
             f"median={step_s:.4f}s peak_rss={peak:.0f}MB loss={loss:.4f}")
        result = {"method": method, "step_s": step_s, "peak_rss_mb": peak}

        if method == REFERENCE:
            # The bound's other ingredient, in the same process as the student step it is compared
            # with (same threads, same allocator state, close in time): a plain inference-mode
            # forward of the eval-mode teacher, outside the library, i.e. the ideal cost KD has to add.
            # Built only now, so it does not count in the fine-tuning peak RSS read above.
            teacher = _make_bert(TEACHER_LAYERS, seed + 1).to(accelerator.device).eval()
            inputs = model_inputs(batch, forward_input_names(teacher))

            def teacher_forward():
                with torch.inference_mode():
                    teacher(**inputs)

            result["teacher_forward_s"], t_times = _median_seconds(teacher_forward, warmup, steps)
            _log(f"teacher forward: times(s)={[round(t, 3) for t in t_times]} "
                 f"median={result['teacher_forward_s']:.4f}s")
    return result


# ---------------------------------------------------------------- orchestration (parent side)
def _spawn(method: str, opts: argparse.Namespace) -> dict:
    """Run one method in a fresh interpreter: ru_maxrss is a per-process high-water mark, so only a
    process that ran nothing else reports that method's own peak memory."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", method, "--steps", str(opts.steps),
           "--warmup", str(opts.warmup), "--seed", str(opts.seed)]
    if opts.threads:
        cmd += ["--threads", str(opts.threads)]
    _log(f"running {method} ...")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr passes through
    # The result is the last JSON line: anything a library prints to stdout comes before it.
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue
            if proc.returncode == 0 and result.get("method") == method:
                return result
    sys.stdout.write(proc.stdout)
    raise SystemExit(f"step_cost: worker for {method!r} failed (exit {proc.returncode})")


def _selected_methods(requested: list[str] | None) -> list[str]:
    """Requested methods in table order, de-duplicated, the reference always first."""
    wanted = set(METHODS) if not requested or "all" in requested else set(requested)
    wanted.add(REFERENCE)
    return [m for m in METHODS if m in wanted]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Per-step wall time and peak RSS of each training method "
                                            "(fixed 6->3 layer BERT pair, batch 16 x 128, CPU).")
    p.add_argument("--method", action="append", choices=[*METHODS, "all"],
                   help="method to time; repeat for several (default: all). "
                        f"{REFERENCE!r} is always measured as the reference.")
    p.add_argument("--steps", type=int, default=MIN_STEPS,
                   help=f"timed optimizer steps per method, median reported (>= {MIN_STEPS}; default %(default)s)")
    p.add_argument("--warmup", type=int, default=WARMUP_STEPS, help="untimed steps first (default %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat every method's worker this many times, alternating, and report the median "
                        "(peak RSS: the maximum); for noisy machines (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="weights and batch seed (default %(default)s)")
    p.add_argument("--_worker", metavar="METHOD", choices=list(METHODS), help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.steps < MIN_STEPS:
        p.error(f"--steps must be >= {MIN_STEPS}, got {opts.steps}")
    if opts.warmup < 0:
        p.error("--warmup must be >= 0")
    if opts.rounds < 1:
        p.error("--rounds must be >= 1")
    if opts.threads is not None and opts.threads < 1:
        p.error("--threads must be >= 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts._worker:
        result = run_worker(opts._worker, opts.steps, opts.warmup, opts.threads, opts.seed)
        print(json.dumps(result), flush=True)
        return 0

    # Methods run one after another, never in parallel: they would compete for the same cores.
    # With --rounds R the whole sequence is repeated R times (finetune, kd, finetune, kd, ...) and the
    # median over rounds is kept: on a shared machine the speed drifts over minutes, and alternating
    # keeps a slow spell from landing on one method only.
    methods = _selected_methods(opts.method)
    runs = {m: [] for m in methods}
    for _ in range(opts.rounds):
        for m in methods:
            runs[m].append(_spawn(m, opts))
    results = {m: {"step_s": statistics.median(r["step_s"] for r in rs),
                   "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)} for m, rs in runs.items()}
    ref = results[REFERENCE]
    ref["teacher_forward_s"] = statistics.median(r["teacher_forward_s"] for r in runs[REFERENCE])
    for method, r in results.items():
        print(json.dumps({"method": method, "step_s": round(r["step_s"], 4),
                          "ratio_to_finetune": round(r["step_s"] / ref["step_s"], 3),
                          "peak_rss_mb": round(r["peak_rss_mb"], 1)}), flush=True)
    bound = 1.0 + ref["teacher_forward_s"] / ref["step_s"] + KD_SLACK
    within = results["kd"]["step_s"] / ref["step_s"] <= bound if "kd" in results else None
    print(json.dumps({"kd_bound_ratio": round(bound, 3), "teacher_forward_s": round(ref["teacher_forward_s"], 4),
                      "student_step_s": round(ref["step_s"], 4), "kd_within_bound": within}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
