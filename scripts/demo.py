"""`make demo`: the main job end to end, offline, on CPU, in a few minutes.

1. Makes a learnable GLUE-format task (toy sentiment with negation, SST-2 layout; 15% of the
   training labels flipped, as annotation noise; dev labels clean), a word-level tokenizer and
   randomly initialised BERT configs (distill/toy.py).
2. Fine-tunes a 4-layer teacher (hidden 128) with run_glue.py.
3. Distils a 2-layer student (hidden 64) from it with KD, and trains the same student without KD.
4. Prints a table of dev metrics.

Every step is a real `run_glue.py` command line (printed), so the demo doubles as a usage example.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys

from distill.toy import build_bert, build_tokenizer, write_toy_sst2

COMMON = ["--task_name", "sst2", "--do_train", "--do_eval", "--per_device_train_batch_size", "32",
          "--per_device_eval_batch_size", "128", "--max_seq_length", "64", "--eval_strategy", "epoch",
          "--warmup_ratio", "0.1", "--logging_steps", "20", "--seed", "1", "--overwrite_output_dir"]


def run_step(title: str, argv: list[str]) -> dict:
    import run_glue

    print(f"\n=== {title}\n$ python run_glue.py {shlex.join(argv)}", flush=True)
    if run_glue.main(argv) != 0:
        raise SystemExit(f"demo step failed: {title}")
    out_dir = argv[argv.index("--output_dir") + 1]
    with open(os.path.join(out_dir, "all_results.json"), encoding="utf-8") as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="demo_work", help="where data, models and runs are written")
    parser.add_argument("--train_examples", type=int, default=8000)
    parser.add_argument("--label_noise", type=float, default=0.15, help="fraction of training labels flipped")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)

    import torch
    # The demo's models are tiny: thread hand-offs cost more than they save (measured 4x slower with
    # 2 threads on a 2-vCPU machine), so one thread while it runs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_demo(args)
    finally:
        torch.set_num_threads(threads)


MARKER = ".made_by_demo"  # a work dir the demo made; it removes only its own entries from it
MADE = ("glue_data", "tokenizer", "teacher_init", "student_init", "teacher", "student_kd", "student_no_kd")


def claim_work_dir(work: str) -> bool:
    """Make `work` the demo's: a new or empty dir, or one an earlier demo made (its entries are removed,
    anything else stays). False for a dir with other contents: it is never emptied."""
    if os.path.isdir(work) and os.listdir(work) and not os.path.isfile(os.path.join(work, MARKER)):
        return False
    os.makedirs(work, exist_ok=True)
    for name in MADE:
        shutil.rmtree(os.path.join(work, name), ignore_errors=True)
    open(os.path.join(work, MARKER), "w").close()
    return True


def run_demo(args: argparse.Namespace) -> int:
    work = args.work_dir
    if os.path.exists(work) and not os.path.isdir(work):
        print(f"error: --work_dir {work} is a file; pass a new or empty dir", file=sys.stderr)
        return 2
    if not claim_work_dir(work):
        print(f"error: --work_dir {work} holds files the demo did not make; choose another --work_dir (the demo "
              "writes its data, models and runs there)", file=sys.stderr)
        return 2
    data_dir = write_toy_sst2(os.path.join(work, "glue_data", "SST-2"), n_train=args.train_examples, n_dev=1000,
                              label_noise=args.label_noise)
    tokenizer = build_tokenizer(os.path.join(work, "tokenizer"))
    teacher_init = build_bert(os.path.join(work, "teacher_init"), tokenizer, layers=4, hidden=128, heads=4,
                              intermediate=512, seed=0)
    student_init = build_bert(os.path.join(work, "student_init"), tokenizer, layers=2, hidden=64, heads=2,
                              intermediate=128, seed=0)
    epochs = str(args.epochs)
    teacher = run_step("1/3 fine-tune the teacher (4 layers, hidden 128)", [
        "--model_name_or_path", teacher_init, "--data_dir", data_dir, "--output_dir", os.path.join(work, "teacher"),
        "--learning_rate", "5e-4", "--num_train_epochs", epochs, *COMMON])
    kd = run_step("2/3 distil the student (2 layers, hidden 64) with KD", [
        "--model_name_or_path", student_init, "--teacher_model", os.path.join(work, "teacher"),
        "--data_dir", data_dir, "--output_dir", os.path.join(work, "student_kd"), "--alpha_kd", "0.7",
        "--temperature", "2.0", "--learning_rate", "1e-3", "--num_train_epochs", epochs, *COMMON])
    plain = run_step("3/3 train the same student without KD", [
        "--model_name_or_path", student_init, "--data_dir", data_dir, "--output_dir",
        os.path.join(work, "student_no_kd"), "--learning_rate", "1e-3", "--num_train_epochs", epochs, *COMMON])

    print(f"\nDev accuracy on the toy sentiment task ({args.train_examples} training examples with "
          f"{args.label_noise:.0%} flipped labels, 1000 clean dev examples):")
    print(f"{'model':<34}{'dev accuracy':>14}{'train time (s)':>16}")
    for name, res in (("teacher (4 layers, fine-tuned)", teacher), ("student (2 layers) + KD", kd),
                      ("student (2 layers), no KD", plain)):
        print(f"{name:<34}{res['eval_accuracy']:>14.4f}{res['train_runtime']:>16.1f}")
    print(f"\nEverything is under {work}/ (models, checkpoints, TensorBoard logs in */runs).")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
