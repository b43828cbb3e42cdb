#!/usr/bin/env python
"""Per-process peak memory of LM distillation steps under FSDP2 (`--fsdp full_shard`, distill/sharding.py)
against DDP (the default `Replicated` placement, distill/placement.py), 2 processes each, side by side.

    .venv/bin/python benchmarks/fsdp_memory.py                          # 2 × 128 tokens per process, 3 steps
    .venv/bin/python benchmarks/fsdp_memory.py --batch 4 --seq 256 --steps 4 --no_fused

Workload: a GPT-2-small-shaped student (12 layers, hidden 768, 12 heads) and a GPT-2-medium-shaped teacher (24
layers, hidden 1024, 16 heads), vocabulary 50,257, 1,024 positions, both `GPT2LMHeadModel(GPT2Config(...))` with
random weights (nothing downloaded; dropout on, as in training). The loss is train_lm_distill.py's for
`--kd_loss forward_kl --kd_ratio 0.5`: `LMDistillationObjective` with the weights `LMLossArguments` gives, and
by default (as in train_lm_distill.py) the fused output layers (`fuse_output_layers`: no (B, T, V) logits exist)
in BOTH placements, so the comparison isolates the placement; `--no_fused` runs the models' logits in both.
AdamW (the library's fused one) on the student, gradient clipping at 1.0, random token ids (each process its
own), full attention masks, float32 on the CPU, `--steps` optimizer steps, at least 3: AdamW's moments exist
from the first step's update, and DDP rebuilds its gradient buckets in the second step's forward (freeing the
first ones and making new ones in its backward), so the second step's peak lacks them; from the third on each
step's peak is the same.

Why a worker on the library classes rather than train_lm_distill.py itself: a run of the script also loads a
tokenizer and data, evaluates, and at its end exports and saves the model; the export gathers the full
student onto the main process (a save-time peak of its own), and a tokenizer of GPT-2's 50,257 tokens cannot be
had offline. The worker builds what train_lm_distill.py builds for training and calls the code a training
step runs: `DistillationTrainer(...)`, `create_optimizer` (which calls `Replicated.prepare` = DDP through
accelerate, or `Sharding.prepare` = `shard_student` + `shard_teacher` + AdamW over the shards), then
`optimizer_step([batch])` (teacher forward, student forward, loss, backward with DDP's all-reduce or FSDP's
reduce-scatter, clipping, AdamW). The save-time cost is measured apart: after the steps every process calls
`trainer.plain_student()` (the export a checkpoint or the final save makes) and its own peak is reported
(`export_peak_mb`), outside the headline.

Processes: the parent starts 2 workers with the environment torchrun gives (RANK, WORLD_SIZE, MASTER_ADDR, ...;
as tests/launcher.py does), gloo, OMP_NUM_THREADS=--threads each; DDP's pair first, then FSDP's.

What is measured, per process: the peak resident memory (VmHWM of /proc/self/status) over the optimizer steps
only. Every process first builds the full student and teacher (FSDP then shards them), which is a
construction peak that would dominate; so after
`create_optimizer` (and a garbage collection) the worker writes "5" to /proc/self/clear_refs, which resets
VmHWM to the current RSS (checked at run time: the worker stops if VmHWM is not back near VmRSS), and reads VmHWM
after the steps. As in the other memory benchmarks (benchmarks/measure.py) the workers run with CHILD_ENV:
glibc's mmap threshold fixed at 64 KiB, so freed blocks leave the RSS and the peak follows live memory.
- `peak_mb`: the steps' peak RSS; it includes the ~400 MB the interpreter, torch, transformers, accelerate and
  gloo take before any model exists (`baseline_mb`, read after the process group is made).
- `training_mb` = `peak_mb` - `baseline_mb`: parameters + gradients + AdamW state + activations and buffers at
  the step's peak, roughly what a GPU's max_memory_allocated would count. The headline ratio is FSDP/DDP of this,
  per rank and for the larger rank of each run; the ratio of `peak_mb` is printed too.
- Rank 0 vs rank 1: both hold the same while training (the main process keeps only a weightless skeleton
  of the student, `Sharding.skeleton`, from which each save builds a plain copy and drops it after); a save
  costs the main process one whole student for its duration (`export_adds_mb`).
- `tensors_mb`: the bytes of the tensors each process keeps between steps (its student parameters or shards,
  AdamW's moments, the teacher's parameters or shards), read from the objects.

The analytic expectation printed beside it counts float32 bytes per process (P = student parameters, T =
teacher parameters, R = the student's root unit: token + position embeddings with the tied output layer, final
norm; V·H = an output layer's weight), activations and short-lived buffers left out:
- state between steps (compared with the RSS after the steps): DDP 4P params + 8P AdamW moments + 4P DDP
  gradient buckets (accelerate's DDP keeps gradient_as_bucket_view off) + 4T teacher; FSDP over 2 processes
  (4P + 8P + 4T) / 2.
- at the peak: DDP's comes at the end of the backward, with every gradient whole (+ 4P). FSDP's gradients are
  sharded and appear while the activations are freed, so its peak comes at the loss, after the student's
  forward: + the student's root unit, gathered from its forward to its backward (4R), + the output layer's
  gradient, which the fused loss computes in its forward (4·V·H_s), + the teacher's output weight, gathered
  for the loss's forward (`gathered` in distill/sharding.py; freed after it, the peak's moment) (4·V·H_t; with
  --no_fused the teacher's weight is not gathered, and the output layer's whole
  gradient comes early in the backward). What the measured peak adds on top of that is mostly the student's
  activations, which FSDP's peak holds and DDP's (at the end of the backward) no longer does, so the measured
  ratio sits above the expected one.

Output (stdout): the settings, a table, the ratios, then one JSON line (the last line). The workers' logs are
shown only when one fails.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks.measure import CHILD_ENV, rss_bytes  # noqa: E402

VOCAB = 50257
POSITIONS = 1024
STUDENT = dict(n_layer=12, n_embd=768, n_head=12)
TEACHER = dict(n_layer=24, n_embd=1024, n_head=16)
PROCESSES = 2
TARGET = 0.6  # FSDP / DDP per-process peak
MB = 2**20


# ---------------------------------------------------------------- peak RSS since a reset (Linux)
def status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> None:
    """VmHWM back to the current RSS (clear_refs "5"); refuses to go on when the kernel ignores it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    hwm, rss = status_kb("VmHWM"), status_kb("VmRSS")
    if hwm > rss + 16 * 1024:
        raise SystemExit(f"fsdp_memory: writing 5 to /proc/self/clear_refs did not reset VmHWM ({hwm} kB vs VmRSS "
                         f"{rss} kB); this kernel cannot measure a peak after setup")


def peak_bytes() -> int:
    return status_kb("VmHWM") * 1024


# ---------------------------------------------------------------- the models
def gpt2_config(shape: dict):
    from transformers import GPT2Config
    return GPT2Config(vocab_size=VOCAB, n_positions=POSITIONS, **shape)


def param_counts() -> dict:
    """P, T, R (see the docstring) and the output layers' sizes, from meta-device models (no memory)."""
    import torch
    from transformers import GPT2LMHeadModel
    with torch.device("meta"):
        student, teacher = GPT2LMHeadModel(gpt2_config(STUDENT)), GPT2LMHeadModel(gpt2_config(TEACHER))
    return {"P": sum(p.numel() for p in student.parameters()), "T": sum(p.numel() for p in teacher.parameters()),
            "R": sum(p.numel() for n, p in student.named_parameters() if ".h." not in n),  # the root unit
            "out_s": student.get_output_embeddings().weight.numel(),
            "out_t": teacher.get_output_embeddings().weight.numel()}


def tensor_bytes(tensors) -> int:
    from torch.distributed.tensor import DTensor
    return sum((t.to_local() if isinstance(t, DTensor) else t).numel() * t.element_size() for t in tensors)


# ---------------------------------------------------------------- worker: one process of one run
def run_worker(opts) -> None:
    import torch
    from transformers import GPT2LMHeadModel

    from distill.args import TrainingArguments
    from distill.batching import PaddingCollator
    from distill.runtime import make_accelerator
    from distill.sharding import is_sharded, transformer_blocks
    from distill.teacher_cache import make_frozen_teacher
    from distill.trainer import DistillationTrainer
    from lm.args import LMLossArguments
    from lm.models import fused_output_layer_applies
    from lm.objective import LMDistillationObjective

    fsdp = opts._worker == "fsdp"
    start = time.perf_counter()
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="fsdp_memory_"), do_train=True, report_to="none",
                             disable_tqdm=True, per_device_train_batch_size=opts.batch, use_cpu=True,
                             learning_rate=1e-4, seed=opts.seed, fsdp="full_shard" if fsdp else None)
    args.validate()
    accelerator = make_accelerator(args)
    rank, world = accelerator.process_index, accelerator.num_processes
    gc.collect()
    baseline = rss_bytes()

    # ---- what train_lm_distill.py builds: the teacher, the student, the objective, the trainer
    torch.manual_seed(opts.seed)  # the same weights on every process (DDP requires it; FSDP shards its copy)
    teacher = GPT2LMHeadModel(gpt2_config(TEACHER))
    student = GPT2LMHeadModel(gpt2_config(STUDENT))
    loss_args = LMLossArguments(kd_loss="forward_kl", kd_ratio=0.5, fused_output_layer=opts.fused)
    loss_args.validate(True)
    weights, temperature = loss_args.weights(True), loss_args.resolved_temperature()
    objective = LMDistillationObjective(weights, mlm=False, vocab_size=VOCAB, kd_loss=loss_args.kd_loss,
                                        temperature=temperature, jsd_beta=loss_args.jsd_beta,
                                        skew_lambda=loss_args.skew_lambda, chunk_size=loss_args.kd_chunk_size)
    if fused_output_layer_applies(loss_args, args, False, student, teacher):
        objective.fuse_output_layers(student.get_output_embeddings(), teacher.get_output_embeddings())
    trainer = DistillationTrainer(args=args, accelerator=accelerator, student=student, objective=objective,
                                  collator=PaddingCollator(0), teacher=make_frozen_teacher(
                                      teacher, accelerator, args, temperature=temperature, vocab_size=VOCAB))
    units = len(transformer_blocks(student)) if fsdp else 0  # (before fully_shard renames their classes)
    trainer.create_optimizer(total_steps=1000)  # DDP wrap, or shard_student and shard_teacher
    del student, teacher  # (the trainer holds them)

    g = torch.Generator().manual_seed(opts.seed + 100 + rank)  # each process its own data
    ids = torch.randint(0, VOCAB, (opts.batch, opts.seq), generator=g).tolist()
    batch = PaddingCollator(0)([{"input_ids": s, "attention_mask": [1] * len(s), "labels": s} for s in ids])
    torch.manual_seed(opts.seed + 1000 + rank)  # dropout
    setup_s = time.perf_counter() - start
    gc.collect()
    accelerator.wait_for_everyone()
    setup_peak, after_setup = peak_bytes(), rss_bytes()

    # ---- the steps: the peak since the reset
    reset_peak()
    step_peaks, step_s, losses = [], [], []
    for _ in range(opts.steps):
        t = time.perf_counter()
        logs = trainer.optimizer_step([batch])
        step_s.append(time.perf_counter() - t)
        step_peaks.append(peak_bytes())
        losses.append(logs["loss/total"])
    gc.collect()
    after_steps = rss_bytes()
    peak = peak_bytes()

    # ---- what each process keeps between steps
    optimizer = trainer.optimizer
    kept = {"student_params": tensor_bytes(trainer.unwrapped_student.parameters()),
            "adamw_state": tensor_bytes(v for s in optimizer.state.values() for v in s.values()
                                        if isinstance(v, torch.Tensor) and v.numel() > 1),
            "teacher_params": tensor_bytes(trainer.teacher.model.parameters())}

    # ---- apart from the headline: the export a checkpoint or the final save makes (every process calls it)
    accelerator.wait_for_everyone()
    reset_peak()
    before_export = rss_bytes()
    trainer.plain_student()
    export_peak = peak_bytes()

    result = {"placement": opts._worker, "rank": rank, "processes": world, "threads": torch.get_num_threads(),
              "sharded": is_sharded(trainer.student), "fsdp_block_units": units,
              "fused_output_layers": objective.output_layers is not None,
              "baseline_mb": baseline / MB, "setup_peak_mb": setup_peak / MB, "after_setup_mb": after_setup / MB,
              "step_peak_mb": [p / MB for p in step_peaks], "peak_mb": peak / MB,
              "training_mb": (peak - baseline) / MB, "after_steps_mb": after_steps / MB,
              "tensors_mb": {k: v / MB for k, v in kept.items()},
              "export_peak_mb": export_peak / MB, "export_adds_mb": (export_peak - before_export) / MB,
              "setup_s": setup_s, "step_s": step_s, "loss": losses}
    print(json.dumps(result), flush=True)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------- parent: launch and compare
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(placement: str, opts) -> list[dict]:
    """One 2-process run: [result of rank 0, result of rank 1]."""
    port = free_port()
    argv = [sys.executable, os.path.abspath(__file__), "--_worker", placement, "--batch", str(opts.batch),
            "--seq", str(opts.seq), "--steps", str(opts.steps), "--seed", str(opts.seed),
            *([] if opts.fused else ["--no_fused"])]
    procs, outs, logs = [], [], []
    for rank in range(PROCESSES):
        env = {**os.environ, **CHILD_ENV, "OMP_NUM_THREADS": str(opts.threads), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": str(PROCESSES), "LOCAL_WORLD_SIZE": str(PROCESSES),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        outs.append(tempfile.TemporaryFile(mode="w+"))
        logs.append(tempfile.TemporaryFile(mode="w+"))
        procs.append(subprocess.Popen(argv, stdout=outs[-1], stderr=logs[-1], text=True, env=env, cwd=REPO_ROOT))
    # a process that fails leaves the other waiting in a collective: stop it (only the workers started here)
    killed = set()
    while any(proc.poll() is None for proc in procs):
        if any(proc.poll() not in (None, 0) for proc in procs):
            for rank, proc in enumerate(procs):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                    killed.add(rank)
            break
        time.sleep(0.5)
    results = []
    for rank in sorted(range(PROCESSES), key=lambda i: i in killed):  # the rank that failed first, first
        outs[rank].seek(0)
        lines = [line for line in outs[rank].read().splitlines() if line.startswith("{")]
        if procs[rank].returncode != 0 or not lines:
            logs[rank].seek(0)
            sys.stderr.write(logs[rank].read()[-4000:])
            raise SystemExit(f"fsdp_memory: rank {rank} of the {placement} run failed (exit "
                             f"{procs[rank].returncode})")
        results.append(json.loads(lines[-1]))
    return sorted(results, key=lambda r: r["rank"])


def expectation(counts: dict, fused: bool) -> dict:
    """Float32 MiB each process holds (see the docstring): `state` between steps, `peak` at its step's peak."""
    p, t, r, out_s, out_t = (4 * counts[k] / MB for k in ("P", "T", "R", "out_s", "out_t"))
    ddp = {"params": p, "adamw": 2 * p, "ddp_buckets": p, "teacher": t, "grads": p, "gathered": 0.0}
    fsdp = {"params": p / 2, "adamw": p, "ddp_buckets": 0.0, "teacher": t / 2, "grads": out_s,
            "gathered": r + (out_t if fused else 0.0)}
    out = {"ddp": ddp, "fsdp_rank0": fsdp, "fsdp_rank1": dict(fsdp)}
    for row in out.values():
        row["state"] = sum(row[k] for k in ("params", "adamw", "ddp_buckets", "teacher"))
        row["peak"] = row["state"] + row["grads"] + row["gathered"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=2, help="sequences per process (default %(default)s)")
    p.add_argument("--seq", type=int, default=128, help="tokens per sequence (default %(default)s)")
    p.add_argument("--steps", type=int, default=3, help="optimizer steps, >= 3 (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="OMP threads per process (default %(default)s)")
    p.add_argument("--no_fused", dest="fused", action="store_false",
                   help="the models' logits instead of the fused output layers (in both placements)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--_worker", choices=["ddp", "fsdp"], default=None, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.steps < 3 or opts.batch < 1 or opts.seq < 2 or opts.seq > POSITIONS:
        p.error(f"--steps >= 3 (see the docstring), --batch >= 1, 2 <= --seq <= {POSITIONS}")
    if opts._worker:
        run_worker(opts)
        return 0

    start = time.perf_counter()
    counts = param_counts()
    print(f"settings: {PROCESSES} processes (gloo, {opts.threads} thread(s) each); student GPT-2 {STUDENT['n_layer']} "
          f"layers x {STUDENT['n_embd']} ({counts['P'] / 1e6:.1f} M params), teacher {TEACHER['n_layer']} x "
          f"{TEACHER['n_embd']} ({counts['T'] / 1e6:.1f} M), vocab {VOCAB}; {opts.batch} x {opts.seq} tokens per "
          f"process; forward KL, --kd_ratio 0.5, {'fused output layers' if opts.fused else 'full logits'}; AdamW; "
          f"{opts.steps} steps; fp32, CPU", flush=True)
    runs = {}
    for placement in ("ddp", "fsdp"):
        t = time.perf_counter()
        runs[placement] = launch(placement, opts)
        print(f"{placement}: done in {time.perf_counter() - t:.0f} s", flush=True)
    ddp, fsdp = runs["ddp"], runs["fsdp"]
    if not all(r["sharded"] for r in fsdp) or any(r["sharded"] for r in ddp):
        raise SystemExit("fsdp_memory: the FSDP run's student is not sharded (or the DDP run's is)")

    def ratio(key: str, i: int | None) -> float:
        if i is None:  # the larger process of each run
            return max(r[key] for r in fsdp) / max(r[key] for r in ddp)
        return fsdp[i][key] / ddp[i][key]

    exp = expectation(counts, opts.fused)
    print()
    print("per process, MiB (training = peak - baseline; the expected columns leave out activations and buffers)")
    print(f"{'run':<13}{'baseline':>9}{'setup pk':>9}{'state':>7}{'expected':>9}{'peak':>7}{'training':>9}"
          f"{'expected':>9}{'export+':>8}")
    for placement, results in runs.items():
        for r in results:
            e = exp["ddp" if placement == "ddp" else f"fsdp_rank{r['rank']}"]
            print(f"{placement + ' rank ' + str(r['rank']):<13}{r['baseline_mb']:>9.0f}{r['setup_peak_mb']:>9.0f}"
                  f"{r['after_steps_mb'] - r['baseline_mb']:>7.0f}{e['state']:>9.0f}{r['peak_mb']:>7.0f}"
                  f"{r['training_mb']:>9.0f}{e['peak']:>9.0f}{r['export_adds_mb']:>8.0f}")
    print("baseline: RSS before the models (interpreter, libraries, gloo); setup pk: the construction peak, not "
          "counted;\nstate: RSS after the steps - baseline; peak: the steps' peak RSS; export+: what plain_student() "
          "adds (a save), not counted")
    print()
    print(f"expected, MiB of fp32: P = {counts['P']:,} student params, T = {counts['T']:,} teacher params, "
          f"R = {counts['R']:,} in the student's root unit")
    cols = ("params", "adamw", "ddp_buckets", "teacher", "state", "grads", "gathered", "peak")
    print(f"{'':<11}" + "".join(f"{c:>12}" for c in cols))
    for name, row in exp.items():
        print(f"{name:<11}" + "".join(f"{row[c]:>12.0f}" for c in cols))
    print("(DDP's peak: the end of the backward, every gradient whole; FSDP's: the loss, with the student's root "
          "unit gathered,\nand its output-layer gradient whole" + (" (made in the fused loss's forward), and the "
                                                                   "teacher's output weight gathered for the loss)"
                                                                   if opts.fused else ")"))
    print()
    ratios = {f"rank{i}": round(ratio("training_mb", i), 3) for i in range(PROCESSES)}
    ratios["larger_rank"] = round(ratio("training_mb", None), 3)
    rss_ratios = {f"rank{i}": round(ratio("peak_mb", i), 3) for i in range(PROCESSES)}
    rss_ratios["larger_rank"] = round(ratio("peak_mb", None), 3)
    expected = {f"rank{i}": round(exp[f"fsdp_rank{i}"]["peak"] / exp["ddp"]["peak"], 3) for i in range(PROCESSES)}
    print(f"FSDP / DDP, training memory: rank 0 {ratios['rank0']:.3f}, rank 1 "
          f"{ratios['rank1']:.3f}, larger process {ratios['larger_rank']:.3f}  (target <= {TARGET})")
    print(f"FSDP / DDP, whole peak RSS:  rank 0 {rss_ratios['rank0']:.3f}, rank 1 {rss_ratios['rank1']:.3f}, "
          f"larger process {rss_ratios['larger_rank']:.3f}")
    print(f"expected (no activations):   rank 0 {expected['rank0']:.3f}, rank 1 {expected['rank1']:.3f}")
    losses = {k: [round(x, 4) for x in v[0]["loss"]] for k, v in runs.items()}
    print(f"losses per step (same data and weights): ddp {losses['ddp']}, fsdp {losses['fsdp']}")
    runtime = time.perf_counter() - start
    print(f"runtime {runtime:.0f} s")

    def rounded(x):
        if isinstance(x, float):
            return round(x, 1) if abs(x) >= 10 else round(x, 4)
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        if isinstance(x, list):
            return [rounded(v) for v in x]
        return x
    print(json.dumps(rounded({
        "settings": {"processes": PROCESSES, "threads": opts.threads, "batch": opts.batch, "seq": opts.seq,
                     "steps": opts.steps, "fused_output_layers": opts.fused, "student": STUDENT, "teacher": TEACHER,
                     "vocab": VOCAB, "params": counts},
        "ratio_training_mb": ratios, "ratio_peak_rss": rss_ratios, "expected_ratio": expected, "target": TARGET,
        "within_target": ratios["larger_rank"] <= TARGET, "expected_mb": exp,
        "runs": {k: [{f: r[f] for f in r if f not in ("placement", "processes", "threads", "sharded")}
                     for r in v] for k, v in runs.items()},
        "runtime_s": runtime})), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
