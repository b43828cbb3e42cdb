#!/usr/bin/env python
"""Peak memory and time of the token-level KD loss (forward + backward), chunked vs full-tensor.

Random float32 logits of batch × length × vocab (default 8 × 512 × 50,257, GPT-2's vocabulary) for
the student (with gradient) and the teacher (constant). "naive" computes the divergence on the whole
(B·T, V) tensors with autograd (what most trainers do); "chunked" is losses/token_kd.py's
chunked_divergence_sum, the path train_lm_distill.py uses. Target: chunked peak ≤ 0.25× naive at
≤ 1.2× the time.

Peak memory is what the loss adds on top of the two logit tensors, including the student's gradient
(which both produce): on a GPU torch.cuda.max_memory_allocated; on the CPU the process's peak RSS,
each measurement in a fresh subprocess so one cannot inherit the other's high-water mark, with
glibc's mmap threshold fixed so that freed blocks leave the RSS. Times are
medians of alternating runs in one process, printed side by side (the machine is shared and noisy).

    python benchmarks/lm_kd_memory.py [--losses forward_kl,reverse_kl,jsd] [--threads 2] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.measure import peak_bytes_of, run_child, timed  # noqa: E402
from losses.token_kd import chunked_divergence_sum, token_divergence  # noqa: E402


def make_inputs(args):
    g = torch.Generator(device=args.device).manual_seed(0)
    shape = (args.batch, args.length, args.vocab)
    student = torch.randn(shape, generator=g, device=args.device).mul_(2).requires_grad_(True)
    teacher = torch.randn(shape, generator=g, device=args.device).mul_(2)
    return student, teacher


def loss_step(method: str, name: str, student, teacher, chunk_size: int) -> float:
    """One forward + backward; returns the loss value."""
    divergence = token_divergence(name)
    if method == "naive":
        v = student.shape[-1]
        loss = divergence(student.reshape(-1, v), teacher.reshape(-1, v)).sum()
    else:
        positions = torch.arange(student.shape[0] * student.shape[1], device=student.device)
        loss = chunked_divergence_sum(student, teacher, positions, divergence, chunk_size=chunk_size)
    loss.backward()
    student.grad = None
    loss = loss.detach()
    return loss.item()


def measure_peak(args) -> None:
    """Child process: print the peak bytes one loss step adds on top of its inputs."""
    student, teacher = make_inputs(args)
    step = lambda: loss_step(args.measure, args.loss, student, teacher, args.chunk_size)  # noqa: E731
    print(json.dumps({"peak_bytes": peak_bytes_of(step, args.device)}))


def peak_in_subprocess(args, method: str, name: str) -> int:
    return run_child(__file__, ["--measure", method, "--loss", name, "--batch", str(args.batch), "--length",
                                str(args.length), "--vocab", str(args.vocab), "--chunk_size", str(args.chunk_size),
                                "--threads", str(args.threads), "--device", args.device])["peak_bytes"]


def timed_step(method, name, student, teacher, args) -> float:
    return timed(lambda: loss_step(method, name, student, teacher, args.chunk_size), args.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", default="forward_kl,reverse_kl,jsd")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--chunk_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--measure", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    parser.add_argument("--loss", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure:
        measure_peak(args)
        return

    mib = 2**20
    tensor_mib = args.batch * args.length * args.vocab * 4 / mib
    print(f"logits {args.batch}×{args.length}×{args.vocab} float32 = {tensor_mib:.0f} MiB each; device {args.device}, "
          f"{args.threads} thread(s), chunk {args.chunk_size} positions, median of {args.repeats}")
    print(f"{'loss':<12} {'naive MiB':>10} {'chunked MiB':>12} {'ratio':>6} {'target':>7}   "
          f"{'naive s':>8} {'chunked s':>10} {'ratio':>6} {'target':>7}")
    names = args.losses.split(",")
    # Peaks first, while this process is small: Linux carries a process's peak RSS over fork + exec,
    # so a child started after the timing runs would report this process's peak, not its own.
    all_peaks = {name: {m: peak_in_subprocess(args, m, name) for m in ("naive", "chunked")} for name in names}
    student, teacher = make_inputs(args)
    rows = []
    for name in names:
        peaks = all_peaks[name]
        for m in ("naive", "chunked"):  # warm-up (allocator, kernels)
            timed_step(m, name, student, teacher, args)
        times = {"naive": [], "chunked": []}
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            for m in ("naive", "chunked"):
                times[m].append(timed_step(m, name, student, teacher, args))
        t = {m: statistics.median(v) for m, v in times.items()}
        mem_ratio, time_ratio = peaks["chunked"] / peaks["naive"], t["chunked"] / t["naive"]
        rows.append({"loss": name, "naive_peak_mib": peaks["naive"] / mib, "chunked_peak_mib": peaks["chunked"] / mib,
                     "peak_ratio": mem_ratio, "naive_s": t["naive"], "chunked_s": t["chunked"],
                     "time_ratio": time_ratio})
        print(f"{name:<12} {peaks['naive'] / mib:>10.0f} {peaks['chunked'] / mib:>12.0f} {mem_ratio:>6.3f} "
              f"{'met' if mem_ratio <= 0.25 else 'MISSED':>7}   {t['naive']:>8.3f} {t['chunked']:>10.3f} "
              f"{time_ratio:>6.3f} {'met' if time_ratio <= 1.2 else 'MISSED':>7}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
