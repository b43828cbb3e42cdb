#!/usr/bin/env python
"""Training throughput with 1 and 2 processes at the same per-process batch, and on a GPU the
1-GPU throughput and model FLOPs utilisation (MFU).

    .venv/bin/python benchmarks/scaling.py                      # CPU: 1 vs 2 processes (torchrun, gloo)
    .venv/bin/python benchmarks/scaling.py --rounds 3 --steps 8
    python benchmarks/scaling.py --device cuda --shape base --bf16   # GPU: throughput and MFU

Workload: KD from a frozen teacher through the real `DistillationTrainer.optimizer_step` (forward,
loss, backward, DDP all-reduce, clipping, AdamW), random token ids, full attention masks. `small` is
step_cost.py's pair (6 -> 3 layers, hidden 384, batch 16 x 128); `base` a BERT-base teacher (12
layers, 768) and its 6-layer student, batch 32 x 128.

CPU: each configuration runs under `torch.distributed.run` with the machine's cores split evenly
between its processes (OMP threads = cores / processes), so both use the whole machine; 1- and
2-process runs alternate for --rounds rounds and the medians are printed side by side. Perfect
data-parallel scaling doubles examples/s at a constant steps/s; `scaling_efficiency` =
(examples/s with 2) / (2 x examples/s with 1).

GPU: MFU = model FLOPs per second / the device's peak (--peak_tflops; default: the dense bf16 peak
of an H100/H200, 989 TFLOPS). Model FLOPs per step count the student's training (6 per parameter per
token, plus attention scores 12·layers·hidden·seq per token) and the teacher's forward (2 per
parameter per token, plus 4·layers·hidden·seq); embedding lookups are not FLOPs.

Output: one JSON line per measurement on stdout; progress on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {  # teacher layers, student layers, hidden, heads, intermediate, batch, seq
    "small": dict(t_layers=6, s_layers=3, hidden=384, heads=12, intermediate=1536, batch=16, seq=128),
    "base": dict(t_layers=12, s_layers=6, hidden=768, heads=12, intermediate=3072, batch=32, seq=128),
}
VOCAB = 30522


def _log(msg: str) -> None:
    print(f"[scaling] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- worker: one process of one run
def build_kd_trainer(shape: dict, device: str, bf16: bool, seed: int, compile_models: bool = False):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from distill.args import TrainingArguments
    from distill.batching import PaddingCollator
    from distill.objective import SequenceClassificationObjective
    from distill.runtime import make_accelerator
    from distill.teacher import FrozenTeacher
    from distill.trainer import DistillationTrainer

    def bert(layers: int, model_seed: int):
        torch.manual_seed(model_seed)  # every process starts from the same weights, as DDP requires
        return BertForSequenceClassification(BertConfig(
            num_hidden_layers=layers, hidden_size=shape["hidden"], num_attention_heads=shape["heads"],
            intermediate_size=shape["intermediate"], vocab_size=VOCAB, num_labels=2))

    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="scaling_"), report_to="none", disable_tqdm=True,
                             per_device_train_batch_size=shape["batch"], use_cpu=device == "cpu", bf16=bf16, seed=seed,
                             torch_compile=compile_models)
    accelerator = make_accelerator(args)
    trainer = DistillationTrainer(
        args=args, accelerator=accelerator, student=bert(shape["s_layers"], seed), collator=PaddingCollator(0),
        objective=SequenceClassificationObjective(False, True, alpha_kd=1.0, temperature=1.0),
        teacher=FrozenTeacher(bert(shape["t_layers"], seed + 1), accelerator))
    trainer.create_optimizer(total_steps=10_000)
    g = torch.Generator().manual_seed(seed + 100 + accelerator.process_index)  # each process its own data
    batch = {"input_ids": torch.randint(0, VOCAB, (shape["batch"], shape["seq"]), generator=g),
             "attention_mask": torch.ones(shape["batch"], shape["seq"], dtype=torch.long),
             "token_type_ids": torch.zeros(shape["batch"], shape["seq"], dtype=torch.long),
             "labels": torch.randint(0, 2, (shape["batch"],), generator=g)}
    return trainer, batch


def model_flops_per_step(shape: dict, student, teacher, processes: int) -> float:
    def dense_params(model):  # parameters that multiply: all but the embedding tables
        return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    tokens = shape["batch"] * shape["seq"] * processes
    attention = shape["hidden"] * shape["seq"]  # score and weighted-sum FLOPs per token per layer, / 4
    student_flops = 6 * dense_params(student) * tokens + 12 * shape["s_layers"] * attention * tokens
    teacher_flops = 2 * dense_params(teacher) * tokens + 4 * shape["t_layers"] * attention * tokens
    return student_flops + teacher_flops


def run_worker(opts) -> None:
    import torch
    sys.path.insert(0, REPO_ROOT)
    shape = SHAPES[opts.shape] | {k: v for k, v in (("batch", opts.batch), ("seq", opts.seq)) if v}
    trainer, batch = build_kd_trainer(shape, opts.device, opts.bf16, opts.seed, opts.torch_compile)
    acc = trainer.accelerator

    def sync():
        if acc.device.type == "cuda":
            torch.cuda.synchronize()
    for _ in range(opts.warmup):
        trainer.optimizer_step([batch])
    sync()
    acc.wait_for_everyone()
    start = time.perf_counter()
    for _ in range(opts.steps):
        trainer.optimizer_step([batch])
    sync()
    acc.wait_for_everyone()
    elapsed = time.perf_counter() - start
    if acc.is_main_process:
        steps_per_s = opts.steps / elapsed
        result = {"processes": acc.num_processes, "device": acc.device.type, "shape": opts.shape,
                  "per_process_batch": shape["batch"], "seq": shape["seq"], "threads": torch.get_num_threads(),
                  "torch_compile": opts.torch_compile,
                  "steps_per_s": round(steps_per_s, 4),
                  "examples_per_s": round(steps_per_s * shape["batch"] * acc.num_processes, 2)}
        if acc.device.type == "cuda":
            flops = model_flops_per_step(shape, trainer.unwrapped_student, trainer.teacher.model, acc.num_processes)
            achieved = flops * steps_per_s / 1e12
            result |= {"gpu": torch.cuda.get_device_name(), "bf16": opts.bf16,
                       "tokens_per_s": round(steps_per_s * shape["batch"] * shape["seq"] * acc.num_processes),
                       "model_tflops_per_step": round(flops / 1e12, 3), "achieved_tflops": round(achieved, 1),
                       "peak_tflops": opts.peak_tflops, "mfu": round(achieved / opts.peak_tflops, 4),
                       "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
        print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- parent: launch and compare
def launch(processes: int, opts) -> dict:
    cores = opts.cores or os.cpu_count() or 1
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // processes)), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": REPO_ROOT}
    worker = [os.path.abspath(__file__), "--_worker", "--shape", opts.shape, "--steps", str(opts.steps), "--warmup",
              str(opts.warmup), "--device", opts.device, "--seed", str(opts.seed), "--peak_tflops",
              str(opts.peak_tflops)] + (["--bf16"] if opts.bf16 else [])
    worker += ["--torch_compile"] if opts.torch_compile else []
    for flag in ("batch", "seq"):
        if getattr(opts, flag):
            worker += [f"--{flag}", str(getattr(opts, flag))]
    if processes == 1:
        cmd = [sys.executable, *worker]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
               str(opts.port), *worker]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"scaling: the {processes}-process run failed (exit {proc.returncode})")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--shape", choices=list(SHAPES), default="small")
    p.add_argument("--batch", type=int, default=None, help="per-process batch instead of the shape's")
    p.add_argument("--seq", type=int, default=None, help="sequence length instead of the shape's")
    p.add_argument("--steps", type=int, default=6, help="timed steps per run (default %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default %(default)s)")
    p.add_argument("--rounds", type=int, default=2,
                   help="CPU: alternating 1- and 2-process rounds (default %(default)s)")
    p.add_argument("--cores", type=int, default=None, help="CPU cores to split between processes (default: all)")
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")
    p.add_argument("--torch_compile", action="store_true",
                   help="compile the student and the teacher (the trainer's --torch_compile; warm-up steps compile)")
    p.add_argument("--peak_tflops", type=float, default=989.0, help="the device's peak, for MFU (default: "
                                                                      "H100/H200 dense bf16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, default=29517)
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.steps < 1 or opts.warmup < 0 or opts.rounds < 1:
        p.error("--steps >= 1, --warmup >= 0 and --rounds >= 1")
    if opts._worker:
        run_worker(opts)
        return 0
    if opts.device == "cuda":  # one GPU here: throughput and MFU
        print(json.dumps(launch(1, opts)), flush=True)
        return 0
    runs = {1: [], 2: []}
    for r in range(opts.rounds):
        for n in (1, 2):
            _log(f"round {r + 1}/{opts.rounds}: {n} process(es) ...")
            runs[n].append(launch(n, opts))
            print(json.dumps(runs[n][-1]), flush=True)
    med = {n: {k: round(statistics.median(x[k] for x in rs), 4) for k in ("steps_per_s", "examples_per_s")}
           for n, rs in runs.items()}
    print(json.dumps({"side_by_side": {"1_process": med[1], "2_processes": med[2]},
                      "steps_per_s_ratio_2_to_1": round(med[2]["steps_per_s"] / med[1]["steps_per_s"], 3),
                      "scaling_efficiency": round(med[2]["examples_per_s"] / (2 * med[1]["examples_per_s"]), 3),
                      "per_process_batch": runs[1][0]["per_process_batch"],
                      "threads_1_vs_2": [runs[1][0]["threads"], runs[2][0]["threads"]]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
