#!/usr/bin/env python
"""Wall time and peak memory of one optimizer step, per training method, through the real trainer.

    .venv/bin/python benchmarks/step_cost.py                    # every method (default: --method all)
    .venv/bin/python benchmarks/step_cost.py --method kd --steps 10 --threads 1

Each method is timed on the same fixed teacher/student pair (random init, no network, CPU) by
building a real `DistillationTrainer` and calling its `optimizer_step([batch])`: the code a training
run executes per step, minus data loading, logging and checkpointing. All methods, and each kind of
pass on its own (student/teacher forward, forward+backward, AdamW update), are timed in ONE process,
interleaved step by step, so the ratios are measured side by side; peak memory comes from a fresh
process per method.

Output (stdout, one JSON object per line; progress and library warnings go to stderr):
    {"method", "step_s", "ratio_to_finetune", "peak_rss_mb", "passes", "bound_s", "ratio_to_bound",
     "within_bound", "ratio_to_kd", "bound_ratio_to_kd"}                   one line per method
    {"method", ..., "base", "ratio_to_base", "limit", "within_limit", "minus_base_mb"}
                                                              for opdf, lgtm_opdf, one_to_one
    {"pass_cost_s", "teacher_to_student_pass"}                             the measured pass costs
    {"kd_bound_ratio", "teacher_forward_s", "student_step_s", "kd_within_bound"}
    {"lgtm_minus_kd_mb", "lgtm_minus_prokt_mb", "student_params_mb", ...}  when lgtm and kd ran

Bounds: PASSES counts the passes each method's step makes; bound_s = Σ count × that pass's measured
cost, i.e. the method with no wasted work. `within_bound`: step_s ≤ 1.10 × bound_s. The KD bound
(kept from before): a frozen teacher adds at most one inference forward to a fine-tuning step,
    1 + teacher_forward_s / finetune_step_s + 0.10       (as a ratio to the fine-tuning step).

OPDF (`opdf` = KD + OPDF, `lgtm_opdf` = LGTM + OPDF) changes what a student pass costs (one MPO
contraction per forward), so it has no pass-count bound: it is timed against its base method in the
same interleaved loop, target ≤ 1.5× (`within_limit`). `one_to_one` (KD + the one-to-one paper's
feature losses) is compared with KD, target ≤ 1.1×.

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


def build_kd_cached(accelerator, seed: int) -> dict:
    """KD with --cache_teacher_outputs: the teacher ran once over the training set (here: the benchmark
    batch, when the trainer is made; not timed), so a step only looks its logits up by example id."""
    from distill.teacher_cache import CachedTeacher
    method = build_kd(accelerator, seed)
    cache = tempfile.mkdtemp(prefix="step_cost_cache_")
    return {**method, "teacher": CachedTeacher(method["teacher"].model, accelerator, cache_root=cache),
            "train_dataset": _batch_dataset(seed)}


def _batch_dataset(seed: int):
    """The benchmark batch as a training set of its own (the rows the cache is built from)."""
    from distill.batching import PaddingCollator, TokenizedDataset
    batch = _make_batch(PaddingCollator(0), seed)
    return TokenizedDataset({k: batch[k].tolist() for k in ("input_ids", "attention_mask", "token_type_ids",
                                                            "labels")})


def _quiz(seed: int):
    """LGTM's quiz batches: the benchmark batch's shape, other random examples."""
    from distill.batching import PaddingCollator, TokenizedDataset
    from lgtm.quiz import QuizBatches
    batch = _make_batch(PaddingCollator(0), seed + 10)
    columns = {k: batch[k].tolist() for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}
    return QuizBatches(TokenizedDataset(columns), BATCH_SIZE, seed, PaddingCollator(0))


def build_prokt(accelerator, seed: int) -> dict:
    """ProKT: the teacher takes one AdamW step toward the student before each KD step."""
    from distill.objective import SequenceClassificationObjective
    from lgtm.objectives import TeacherAuxObjective
    from lgtm.teachers import ProKTTeacher
    return {"student": _make_bert(STUDENT_LAYERS, seed),
            "objective": SequenceClassificationObjective(False, True, alpha_kd=1.0, temperature=1.0),
            "teacher": ProKTTeacher(_make_bert(TEACHER_LAYERS, seed + 1), accelerator,
                                    TeacherAuxObjective(False, 0.4), 3e-5)}


def build_lgtm(accelerator, seed: int) -> dict:
    """LGTM (paper defaults: student_kd influence, finite difference) with a quiz batch of the same shape."""
    from distill.objective import SequenceClassificationObjective
    from lgtm.objectives import TeacherAuxObjective
    from lgtm.teachers import LGTMTeacher
    objective = SequenceClassificationObjective(False, True, alpha_kd=1.0, temperature=1.0)
    return {"student": _make_bert(STUDENT_LAYERS, seed), "objective": objective,
            "teacher": LGTMTeacher(_make_bert(TEACHER_LAYERS, seed + 1), accelerator, TeacherAuxObjective(False, 0.4),
                                   3e-5, student_objective=objective, quiz=_quiz(seed))}


def _with_opdf(method: dict) -> dict:
    """OPDF on top of a method: the paper's MPO shapes on every default target of the student, and the
    tensor alignment to the teacher (default layer map: student layer i -> teacher layer 2i+1)."""
    from opdf.args import OPDFArguments
    from opdf.build import make_opdf
    transform, align = make_opdf(OPDFArguments(use_opdf=True), method["student"], method["teacher"].model)
    return {**method, "model_transform": transform, "param_loss": align}


def build_opdf(accelerator, seed: int) -> dict:
    """KD + OPDF: the KD step with an over-parameterised (MPO) student and the alignment loss."""
    return _with_opdf(build_kd(accelerator, seed))


def build_lgtm_opdf(accelerator, seed: int) -> dict:
    """LGTM + OPDF."""
    return _with_opdf(build_lgtm(accelerator, seed))


def build_one_to_one(accelerator, seed: int) -> dict:
    """KD + the one-to-one paper's feature terms with its GLUE weights: masked cross-correlation,
    hidden-state MSE and cosine on the last hidden states (both models run with hidden states)."""
    from feature_kd.objective import FeatureTerms, WithFeatureTerms
    method = build_kd(accelerator, seed)
    features = FeatureTerms({"corr": 0.005, "hidden_mse": 0.5, "hidden_cos": 0.5}, do_mask=True)
    return {**method, "objective": WithFeatureTerms(method["objective"], features)}


METHODS = {
    "finetune": build_finetune,
    "kd": build_kd,
    "kd_cached": build_kd_cached,
    "prokt": build_prokt,
    "lgtm": build_lgtm,
    "opdf": build_opdf,
    "lgtm_opdf": build_lgtm_opdf,
    "one_to_one": build_one_to_one,
}
# OPDF changes the cost of the student's passes themselves (a contraction per forward, 3× the
# parameters in AdamW), and feature losses add work that is not a pass, so these are not bounded by
# pass counts: each is compared with its base method, against the limit.
# A cached teacher costs a lookup, so KD with it is held to fine-tuning's cost (issue 9: <= 1.05x).
BASE = {"opdf": ("kd", 1.5), "lgtm_opdf": ("lgtm", 1.5), "one_to_one": ("kd", 1.1), "kd_cached": ("finetune", 1.05)}

# The passes one optimizer step of each method makes, by kind (what the implementation does, counted
# from lgtm/teachers.py and distill/trainer.py). Each kind's cost is measured on its own in the same
# interleaved loop, so  bound(method) = Σ count × measured cost  is "this method with no wasted work".
#   s_fwd: student forward without graph     s_fwd_bwd: student forward + backward
#   t_fwd: teacher forward without graph     t_fwd_bwd: teacher forward + backward
#   t_fwd_train: teacher forward without graph in TRAIN mode (dropout on: LGTM's first pass, whose
#                dropout masks its teacher backward replays)
#   s_adamw / t_adamw: an AdamW update of the student's / teacher's parameters (LGTM's virtual step
#   is one more student update, computed out of place)
PASSES = {
    "finetune": {"s_fwd_bwd": 1, "s_adamw": 1},
    "kd": {"t_fwd": 1, "s_fwd_bwd": 1, "s_adamw": 1},
    # + the teacher's step: student logits (eval), teacher forward/backward, teacher AdamW
    "prokt": {"t_fwd": 1, "s_fwd_bwd": 1, "s_adamw": 1, "s_fwd": 1, "t_fwd_bwd": 1, "t_adamw": 1},
    # + teacher logits (train mode), virtual student step (fwd/bwd + update), quiz fwd/bwd at θ',
    #   student logits at θ, θ + εv, θ − εv; ONE teacher fwd/bwd carries both L_T and the influence
    "lgtm": {"t_fwd": 1, "t_fwd_train": 1, "s_fwd_bwd": 3, "s_adamw": 2, "s_fwd": 3, "t_fwd_bwd": 1, "t_adamw": 1},
}
BOUND_SLACK = 0.10  # a method may cost at most 10 % more than its bound


# ---------------------------------------------------------------- measuring (worker side)
def _make_batch(collator, seed: int) -> dict:
    """One full batch through the real collator: random ids, no padding, random labels."""
    import torch
    g = torch.Generator().manual_seed(seed + 2)
    ids = torch.randint(0, BERT_SHAPE["vocab_size"], (BATCH_SIZE, SEQ_LEN), generator=g).tolist()
    labels = torch.randint(0, BERT_SHAPE["num_labels"], (BATCH_SIZE,), generator=g).tolist()
    items = [{"input_ids": ids[i], "attention_mask": [1] * SEQ_LEN, "token_type_ids": [0] * SEQ_LEN,
              "labels": labels[i], "example_id": i} for i in range(BATCH_SIZE)]
    return collator(items)


def _peak_rss_mb() -> float:
    """This process's peak resident set size so far. ru_maxrss is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _log(msg: str) -> None:
    print(f"[step_cost] {msg}", file=sys.stderr, flush=True)


def _build_trainers(methods: list[str], seed: int):
    """One real DistillationTrainer per method (optimizer made exactly as train() makes it), plus a
    bare teacher and the shared batch."""
    from distill.args import TrainingArguments
    from distill.batching import PaddingCollator
    from distill.runtime import make_accelerator
    from distill.trainer import DistillationTrainer

    tmp = tempfile.mkdtemp(prefix="step_cost_")
    # use_cpu: the workload is defined as a CPU benchmark; without it a GPU machine would time
    # something else.
    args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=BATCH_SIZE, report_to="none",
                             disable_tqdm=True, max_grad_norm=1.0, use_cpu=True, seed=seed)
    accelerator = make_accelerator(args)
    collator = PaddingCollator(0)
    trainers = {}
    for method in methods:
        trainers[method] = DistillationTrainer(args=args, accelerator=accelerator, collator=collator,
                                                **METHODS[method](accelerator, seed))
        # (a method given a training set, kd_cached, prepares from it: the trainer's default batch source)
        # 1000 steps so that the linear schedule does not reach lr 0 within the benchmark.
        trainers[method].create_optimizer(total_steps=1000)
    return trainers, _make_batch(collator, seed), accelerator


def _step_fn(trainer, batch, method: str):
    logs = {}

    def step():
        logs.update(trainer.optimizer_step([batch]))
        loss = logs["loss/total"]
        if not loss == loss or loss in (float("inf"), float("-inf")):
            raise RuntimeError(f"{method}: non-finite loss {loss} (the step did not run as intended)")
    return step


def time_side_by_side(methods: list[str], steps: int, warmup: int, seed: int) -> dict[str, float]:
    """Median step time of every method, and of a bare teacher forward, measured in ONE process with
    the methods interleaved step by step (finetune, kd, teacher, finetune, kd, ...): on a shared,
    noisy machine a slow spell then hits every method alike, so the ratios are trustworthy even when
    the absolute times drift."""
    import torch


    trainers, batch, accelerator = _build_trainers(methods, seed)
    fns = {m: _step_fn(trainers[m], batch, m) for m in methods}
    fns.update(_pass_fns(batch, accelerator, seed))
    times = {name: [] for name in fns}
    for i in range(warmup + steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    for name, ts in times.items():
        _log(f"{name}: threads={torch.get_num_threads()} times(s)={[round(t, 3) for t in ts]}")
    return {name: statistics.median(ts) for name, ts in times.items()}


def _pass_fns(batch, accelerator, seed: int) -> dict:
    """One function per kind of pass (see PASSES), on the same batch and models as the methods, made
    outside the library so they are the ideal costs."""
    import torch

    from distill.args import TrainingArguments
    from distill.modeling import forward_input_names, model_inputs
    from distill.optim import make_adamw

    device_batch = {k: v.to(accelerator.device) for k, v in batch.items()}
    fns = {}
    args = TrainingArguments(output_dir="unused")
    for prefix, layers in (("s", STUDENT_LAYERS), ("t", TEACHER_LAYERS)):
        model = _make_bert(layers, seed).to(accelerator.device)
        inputs = model_inputs(device_batch, forward_input_names(model))
        optimizer = make_adamw(model, 1e-5, args, accelerator.device)

        def forward(model=model, inputs=inputs):
            model.eval()
            with torch.inference_mode():
                model(**inputs)

        def forward_train(model=model, inputs=inputs):
            model.train()
            with torch.no_grad():
                model(**inputs)

        def forward_backward(model=model, inputs=inputs):
            model.train()
            model(**inputs).logits.sum().backward()

        def adamw(model=model, optimizer=optimizer):
            for p in model.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            optimizer.step()
        fns.update({f"{prefix}_fwd": forward, f"{prefix}_fwd_bwd": forward_backward, f"{prefix}_adamw": adamw})
        if prefix == "t":
            fns["t_fwd_train"] = forward_train
    return fns


def run_memory_worker(method: str, steps: int, warmup: int, seed: int) -> dict:
    """Peak RSS of `method` alone: in a fresh process, since ru_maxrss is a per-process high-water mark."""
    trainers, batch, _ = _build_trainers([method], seed)
    step = _step_fn(trainers[method], batch, method)
    for _ in range(warmup + steps):
        step()
    return {"method": method, "peak_rss_mb": _peak_rss_mb()}


def _param_mb(layers: int) -> float:
    """fp32 parameter memory of the benchmark BERT with `layers` layers, in MiB."""
    return sum(p.numel() for p in _make_bert(layers, 0).parameters()) * 4 / 2**20


# ---------------------------------------------------------------- orchestration (parent side)
def _spawn(method: str, opts: argparse.Namespace) -> dict:
    """The memory worker of one method, in a fresh interpreter."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", method, "--steps", str(opts.steps),
           "--warmup", str(opts.warmup), "--seed", str(opts.seed)]
    if opts.threads:
        cmd += ["--threads", str(opts.threads)]
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
    raise SystemExit(f"step_cost: memory worker for {method!r} failed (exit {proc.returncode})")


def _selected_methods(requested: list[str] | None) -> list[str]:
    """Requested methods in table order, de-duplicated, the reference always first."""
    wanted = set(METHODS) if not requested or "all" in requested else set(requested)
    wanted.add(REFERENCE)
    wanted |= {BASE[m][0] for m in wanted if m in BASE}  # compared with its base method
    if wanted & {"prokt", "lgtm"}:
        wanted.add("kd")  # teachers that learn are compared with KD
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
    p.add_argument("--seed", type=int, default=0, help="weights and batch seed (default %(default)s)")
    p.add_argument("--_worker", metavar="METHOD", choices=list(METHODS), help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.steps < MIN_STEPS:
        p.error(f"--steps must be >= {MIN_STEPS}, got {opts.steps}")
    if opts.warmup < 0:
        p.error("--warmup must be >= 0")
    if opts.threads is not None and opts.threads < 1:
        p.error("--threads must be >= 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    sys.path.insert(0, REPO_ROOT)  # distill/ and losses/ come from the checkout, not the venv
    if opts.threads:
        import torch
        torch.set_num_threads(opts.threads)
    if opts._worker:
        print(json.dumps(run_memory_worker(opts._worker, opts.steps, opts.warmup, opts.seed)), flush=True)
        return 0

    methods = _selected_methods(opts.method)
    memory = {m: _spawn(m, opts)["peak_rss_mb"] for m in methods}  # one at a time, never in parallel
    _log(f"timing {', '.join(methods)} side by side ...")
    step_s = time_side_by_side(methods, opts.steps, opts.warmup, opts.seed)
    ref = step_s[REFERENCE]
    bounds = {m: sum(n * step_s[kind] for kind, n in PASSES[m].items()) for m in methods if m in PASSES}
    for method in methods:
        line = {"method": method, "step_s": round(step_s[method], 4),
                "ratio_to_finetune": round(step_s[method] / ref, 3), "peak_rss_mb": round(memory[method], 1)}
        if method in PASSES:
            line.update({"passes": PASSES[method], "bound_s": round(bounds[method], 4),
                         "ratio_to_bound": round(step_s[method] / bounds[method], 3),
                         "within_bound": step_s[method] <= (1 + BOUND_SLACK) * bounds[method]})
        else:
            base, limit = BASE[method]
            line.update({"base": base, "ratio_to_base": round(step_s[method] / step_s[base], 3), "limit": limit,
                         "within_limit": step_s[method] <= limit * step_s[base],
                         "minus_base_mb": round(memory[method] - memory[base], 1)})
        if "kd" in step_s and method in PASSES:
            line["ratio_to_kd"] = round(step_s[method] / step_s["kd"], 3)
            line["bound_ratio_to_kd"] = round(bounds[method] / bounds["kd"], 3)
        print(json.dumps(line), flush=True)
    passes = {k: round(step_s[k], 4) for k in ("s_fwd", "s_fwd_bwd", "s_adamw", "t_fwd", "t_fwd_train", "t_fwd_bwd",
                                               "t_adamw")}
    print(json.dumps({"pass_cost_s": passes,
                      "teacher_to_student_pass": round(step_s["t_fwd_bwd"] / step_s["s_fwd_bwd"], 3)}), flush=True)
    bound = 1.0 + step_s["t_fwd"] / ref + KD_SLACK
    within = step_s["kd"] / ref <= bound if "kd" in step_s else None
    print(json.dumps({"kd_bound_ratio": round(bound, 3), "teacher_forward_s": round(step_s["t_fwd"], 4),
                      "student_step_s": round(ref, 4), "kd_within_bound": within}), flush=True)
    if "lgtm" in memory and "kd" in memory:
        student_mb = _param_mb(STUDENT_LAYERS)
        extra = {"lgtm_minus_kd_mb": round(memory["lgtm"] - memory["kd"], 1),
                 "student_params_mb": round(student_mb, 1), "limit_4x_student_mb": round(4 * student_mb, 1),
                 "teacher_adamw_state_mb": round(3 * _param_mb(TEACHER_LAYERS), 1)}
        if "prokt" in memory:
            extra["lgtm_minus_prokt_mb"] = round(memory["lgtm"] - memory["prokt"], 1)
        print(json.dumps(extra), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
