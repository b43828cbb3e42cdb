#!/usr/bin/env python
"""One LM-distillation optimizer step, ours vs TRL's GKD trainer, side by side: CPU time and peak memory.

The setting: tiny GPT-2 pair built from configs (teacher 4 layers × 256, student 2 layers × 256, GPT-2's
vocabulary of 50,257), a batch of 8 × 256 random tokens, every next token scored, forward KL at τ 1 with no
other term. TRL: `GKDTrainer` with λ 0 (no on-policy sampling) and β 0 (its generalised JSD at β 0 is forward
KL), its own `training_step` then AdamW. Ours: `DistillationTrainer.optimizer_step` with the objective that
`train_lm_distill.py --kd_loss forward_kl --kd_ratio 1.0` builds (the LM term has weight 0).

TRL is a benchmark-only extra, never a dependency of the project: the script runs TRL when `trl` imports
(e.g. `pip install --target /tmp/trl_extra --no-deps trl==1.16.0` and `PYTHONPATH=/tmp/trl_extra`) and says so
when it does not. Each (method, repeat) runs in a fresh subprocess, alternating the methods, so that one
cannot inherit the other's high-water mark and both see the same machine load; printed are medians and
their ratios. Peak memory is the process's peak RSS after the step minus its RSS before the first step (models,
optimizer state and batch already built), with glibc's mmap threshold fixed so that freed blocks leave RSS.

    python benchmarks/trl_comparison.py [--steps 3] [--repeats 3] [--threads 2] [--batch 8] [--length 256]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
VOCAB = 50257

from benchmarks.measure import rss_bytes, run_child  # noqa: E402


def gpt2(layers: int, seed: int, length: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=layers, n_embd=256, n_head=4, vocab_size=VOCAB, n_positions=max(length, 256),
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config)


def make_batch(args) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (args.batch, args.length), generator=g)  # (B, T)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def ours_step_fn(args):
    """Our trainer's optimizer step on the batch, as train_lm_distill.py builds it."""
    from distill.args import TrainingArguments
    from distill.runtime import make_accelerator
    from distill.teacher import FrozenTeacher
    from distill.trainer import DistillationTrainer
    from lm.objective import LMDistillationObjective

    targs = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="trl_cmp_"), report_to="none", disable_tqdm=True,
                              per_device_train_batch_size=args.batch, use_cpu=True, learning_rate=1e-4)
    accelerator = make_accelerator(targs)
    objective = LMDistillationObjective({"kd": 1.0, "clm": 0.0}, mlm=False, vocab_size=VOCAB, kd_loss="forward_kl")
    trainer = DistillationTrainer(args=targs, accelerator=accelerator, student=gpt2(2, 1, args.length),
                                  objective=objective, collator=lambda rows: rows[0],
                                  teacher=FrozenTeacher(gpt2(4, 2, args.length).eval(), accelerator))
    trainer.create_optimizer(total_steps=1000)
    batch = make_batch(args)
    return lambda: trainer.optimizer_step([batch])["loss/total"]


def trl_step_fn(args):
    """TRL GKDTrainer.training_step (forward, loss, backward) then its AdamW step."""
    import warnings

    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1},
                                                                                    unk_token="<unk>")),
                                        pad_token="<pad>", unk_token="<unk>")
    config = GKDConfig(output_dir=tempfile.mkdtemp(prefix="trl_cmp_"), per_device_train_batch_size=args.batch,
                       lmbda=0.0, beta=0.0, temperature=1.0, learning_rate=1e-4, report_to="none", use_cpu=True,
                       max_length=args.length, disable_dropout=True, bf16=False, fp16=False)
    batch = make_batch(args)
    dataset = Dataset.from_dict({"input_ids": batch["input_ids"].tolist()})
    trainer = GKDTrainer(model=gpt2(2, 1, args.length), teacher_model=gpt2(4, 2, args.length), args=config,
                         train_dataset=dataset, processing_class=tokenizer, data_collator=lambda rows: batch)
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    trainer.current_gradient_accumulation_steps = 1  # (set by Trainer.train's loop, which we do not run)
    model = trainer.model

    def step():
        loss = trainer.training_step(model, dict(batch), num_items_in_batch=None)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        return float(loss)
    return step


def measure(args) -> None:
    """Child process: build one method, run warm-up + timed steps, print CPU time per step and peak."""
    import torch

    torch.set_num_threads(args.threads)
    step = ours_step_fn(args) if args.measure == "ours" else trl_step_fn(args)
    base = rss_bytes()  # (models, optimizer state and batch built)
    step()  # warm-up (allocator, AdamW state)
    cpu, wall = [], []
    for _ in range(args.steps):
        c0, w0 = time.process_time(), time.perf_counter()
        step()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall),
                      "peak_mib": (peak - base) / 2**20}))


def child(args, method: str) -> dict:
    return run_child(__file__, ["--measure", method, "--steps", str(args.steps), "--threads", str(args.threads),
                                "--batch", str(args.batch), "--length", str(args.length)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="processes per method, alternating")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--measure", choices=["ours", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        measure(args)
        return
    try:
        import trl
        methods = ["ours", "trl"]
        print(f"TRL {trl.__version__} found: measuring both")
    except ImportError:
        methods = ["ours"]
        print("TRL is not installed: measuring ours only (pip install trl into a separate path to compare)")
    runs = {m: [] for m in methods}
    for _ in range(args.repeats):
        for m in methods:
            runs[m].append(child(args, m))
    med = {m: {k: statistics.median(r[k] for r in rs) for k in ("cpu_s", "wall_s", "peak_mib")}
           for m, rs in runs.items()}
    print(f"batch {args.batch}×{args.length}, vocab {VOCAB}, {args.threads} thread(s), median of {args.repeats} "
          f"processes × {args.steps} steps")
    for m, v in med.items():
        print(json.dumps({"method": m, **{k: round(x, 4) for k, x in v.items()}}))
    if "trl" in med:
        ratio = {k: round(med["ours"][k] / med["trl"][k], 3) for k in ("cpu_s", "wall_s", "peak_mib")}
        print(json.dumps({"ours/trl": ratio, "target": "cpu_s <= 0.5 and peak_mib <= 0.5",
                          "met": ratio["cpu_s"] <= 0.5 and ratio["peak_mib"] <= 0.5}))


if __name__ == "__main__":
    main()
