#!/usr/bin/env python
"""Peak memory and time of the whole KD + CE objective with the output layers included: full logits,
today's chunked losses, and the fused vocabulary projection (losses/fused_vocab.py).

Random float32 final hidden states of batch × length positions (default 8 × 512) for the student (hidden
768, with gradient) and the teacher (hidden 1024, constant), and output layers of 50,257 rows (GPT-2's
vocabulary; the student's with gradient). One step is the teacher's projection, the student's, KD + CE
summed over every position, and the backward into the student's hidden states and output weight:

    full    logits (N, V) of both from the lm heads, the divergence and CE on the whole tensors, autograd
    today   the same logits, then losses/token_kd.py's chunked_divergence_sum + chunked_cross_entropy_sum
            (what lm/objective.py does now)
    fused   hidden states and weights into losses/fused_vocab.fused_vocab_loss_sums: no (N, V) tensor;
            the backward recomputes both models' logits chunk by chunk (the terms' weights unknown)
    fused_r the same with grad_ratios={"kd": 1, "ce": 1} announced (what the loss is): the gradient is
            computed in the forward, the backward only scales it

Peak memory is what the step adds on top of its inputs (hidden states and weights); the student weight's
gradient (V × 768) is part of every variant's peak. On a GPU torch.cuda.max_memory_allocated; on the CPU
the peak RSS, each measurement in a fresh subprocess with glibc's mmap threshold fixed (as in
lm_kd_memory.py). Times are medians of alternating runs in one process. Targets (issue 23): fused peak
≤ 0.35× today's and ≤ 0.15× full's, at ≤ 1.2× today's time.

    python benchmarks/lm_kd_fused_memory.py [--batch 8 --length 512] [--loss forward_kl] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.measure import peak_bytes_of, run_child, timed  # noqa: E402
from losses.fused_vocab import fused_vocab_loss_sums  # noqa: E402
from losses.token_kd import chunked_cross_entropy_sum, chunked_divergence_sum, token_divergence  # noqa: E402

METHODS = ("full", "today", "fused", "fused_r")


def make_inputs(args):
    g = torch.Generator(device=args.device).manual_seed(0)
    n = args.batch * args.length

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, device=args.device).mul_(scale)

    # weights scaled so that logits have a standard deviation of about 2, as in lm_kd_memory.py
    return {"h_s": randn(n, args.hidden).requires_grad_(True),
            "w_s": randn(args.vocab, args.hidden, scale=2 / args.hidden**0.5).requires_grad_(True),
            "h_t": randn(n, args.teacher_hidden),
            "w_t": randn(args.vocab, args.teacher_hidden, scale=2 / args.teacher_hidden**0.5),
            "targets": torch.randint(0, args.vocab, (n,), generator=g, device=args.device)}


def loss_step(method: str, x: dict, args) -> float:
    """One forward + backward of KD + CE; returns the loss value."""
    if method.startswith("fused"):
        ratios = {"kd": 1.0, "ce": 1.0} if method == "fused_r" else None
        sums = fused_vocab_loss_sums(x["h_s"], x["w_s"], teacher_hidden=x["h_t"], teacher_weight=x["w_t"],
                                     targets=x["targets"], terms=("kd", "ce"), divergence=args.loss,
                                     chunk_size=args.chunk_size, grad_ratios=ratios)
        loss = sums["kd"] + sums["ce"]
    else:
        s = F.linear(x["h_s"], x["w_s"])  # (N, V)
        with torch.no_grad():
            t = F.linear(x["h_t"], x["w_t"])  # (N, V)
        divergence = token_divergence(args.loss)
        if method == "full":
            loss = divergence(s, t).sum() + F.cross_entropy(s, x["targets"], reduction="sum")
        else:
            positions = torch.arange(s.shape[0], device=s.device)
            b, length = args.batch, args.length
            s, t = s.view(b, length, -1), t.view(b, length, -1)  # (B, T, V), as the objective gets them
            loss = (chunked_divergence_sum(s, t, positions, divergence, args.chunk_size)
                    + chunked_cross_entropy_sum(s, positions, x["targets"].view(b, length), args.chunk_size))
        del s, t
    loss.backward()
    x["h_s"].grad = x["w_s"].grad = None
    return loss.item()


def measure_peak(args) -> None:
    """Child process: print the peak bytes one step adds on top of its inputs."""
    x = make_inputs(args)
    print(json.dumps({"peak_bytes": peak_bytes_of(lambda: loss_step(args.measure, x, args), args.device)}))


def peak_in_subprocess(args, method: str) -> int:
    return run_child(__file__, ["--measure", method, "--loss", args.loss, "--batch", str(args.batch),
                                "--length", str(args.length), "--vocab", str(args.vocab), "--hidden", str(args.hidden),
                                "--teacher_hidden", str(args.teacher_hidden), "--chunk_size", str(args.chunk_size),
                                "--threads", str(args.threads), "--device", args.device])["peak_bytes"]


def timed_step(method: str, x: dict, args) -> float:
    return timed(lambda: loss_step(method, x, args), args.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="forward_kl")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--teacher_hidden", type=int, default=1024)
    parser.add_argument("--chunk_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant; 0: peak memory only")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--measure", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure:
        measure_peak(args)
        return

    mib = 2**20
    logits_mib = args.batch * args.length * args.vocab * 4 / mib
    print(f"KD ({args.loss}) + CE over {args.batch}×{args.length} positions, vocabulary {args.vocab}, hidden "
          f"{args.hidden} (teacher {args.teacher_hidden}); float32 logits {logits_mib:.0f} MiB per model; "
          f"device {args.device}, {args.threads} thread(s), chunk {args.chunk_size}, median of {args.repeats}")
    # Peaks first, while this process is small (Linux carries the peak RSS over fork + exec).
    peaks = {m: peak_in_subprocess(args, m) for m in METHODS}
    x = make_inputs(args) if args.repeats else None
    times = {m: [] for m in METHODS}
    for _ in range(args.warmup if args.repeats else 0):
        for m in METHODS:
            timed_step(m, x, args)
    for _ in range(args.repeats):  # alternate, so all see the same machine load
        for m in METHODS:
            times[m].append(timed_step(m, x, args))
    t = {m: statistics.median(v) if v else math.nan for m, v in times.items()}
    print(f"{'':<8} {'peak MiB':>9} {'time s':>8}")
    for m in METHODS:
        print(f"{m:<8} {peaks[m] / mib:>9.0f} {t[m]:>8.2f}")
    checks = []  # (name, ratio, target)
    for m in ("fused", "fused_r"):
        for kind, base, target in (("peak", "today", 0.35), ("peak", "full", 0.15), ("time", "today", 1.2),
                                   ("time", "full", None)):
            measured = peaks if kind == "peak" else t
            if not math.isnan(measured[base]):
                checks.append((f"{kind} {m}/{base}", measured[m] / measured[base], target))
    for name, ratio, target in checks:
        verdict = "" if target is None else f"  target ≤ {target}: {'met' if ratio <= target else 'MISSED'}"
        print(f"{name:<20} {ratio:6.3f}{verdict}")
    print(json.dumps({"peak_mib": {m: peaks[m] / mib for m in METHODS}, "time_s": t,
                      "ratios": {name: ratio for name, ratio, _ in checks}}))


if __name__ == "__main__":
    main()
