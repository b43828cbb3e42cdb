#!/usr/bin/env python
"""Tokens per second of MiniLLM's teacher-mixed sampling with KV caches vs re-encoding the prefix at
every step (sequence_kd/sampling.py, `use_cache=True/False`), side by side on the same GPT-2 pair.

Both models are built from configs (random weights: speed does not depend on them); no EOS, so every
sequence generates exactly --new_tokens tokens. Runs alternate cached / re-encoded and the medians are
printed with their ratio (the machine is shared and noisy). Target: ≥ 5× at 128 new tokens.

    python benchmarks/generation.py [--new_tokens 128] [--batch 8] [--prompt 32] [--threads 2] [--device cuda]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from sequence_kd.sampling import sample  # noqa: E402


def gpt2(layers: int, hidden: int, heads: int, vocab: int, positions: int, seed: int, device: str):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=hidden, n_layer=layers, n_head=heads,
                     bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).to(device).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--teacher", default="4,256,4", help="layers,hidden,heads")
    parser.add_argument("--student", default="2,128,4", help="layers,hidden,heads")
    parser.add_argument("--alpha", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    positions = args.prompt + args.new_tokens
    teacher = gpt2(*map(int, args.teacher.split(",")), args.vocab, positions, 1, args.device)
    student = gpt2(*map(int, args.student.split(",")), args.vocab, positions, 2, args.device)
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, args.vocab, (args.batch, args.prompt), generator=g).tolist()

    def run(use_cache: bool) -> float:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = sample(student, prompts, teacher=teacher, teacher_mix_alpha=args.alpha, max_new_tokens=args.new_tokens,
                     eos_id=None, pad_id=0, vocab_size=args.vocab, use_cache=use_cache,
                     generator=torch.Generator(args.device).manual_seed(0))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        assert out.tokens.shape == (args.batch, args.new_tokens)
        return time.perf_counter() - start

    run(True), run(False)  # warm-up
    times = {True: [], False: []}
    for _ in range(args.repeats):
        for use_cache in (True, False):
            times[use_cache].append(run(use_cache))
    tokens = args.batch * args.new_tokens
    cached, full = statistics.median(times[True]), statistics.median(times[False])
    print(f"teacher {args.teacher} / student {args.student} (layers,hidden,heads), vocab {args.vocab}, batch "
          f"{args.batch}, prompt {args.prompt}, {args.new_tokens} new tokens, α {args.alpha}, {args.device}, "
          f"threads {torch.get_num_threads()}")
    print(f"{'':12}{'seconds':>10}{'tokens/s':>12}")
    print(f"{'KV cache':12}{cached:10.3f}{tokens / cached:12.1f}")
    print(f"{'re-encoding':12}{full:10.3f}{tokens / full:12.1f}")
    print(f"speed-up: {full / cached:.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
