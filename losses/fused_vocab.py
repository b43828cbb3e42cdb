"""Token-level LM losses computed from final hidden states, projecting to the vocabulary a chunk at a time.

The chunked losses of losses/token_kd.py start from (B, T, V) logits, so the student's logits, the
teacher's logits and the student's logit gradient (each 785 MiB in float32 at 8 × 512 × 50,257) still
exist in full. Here the loss takes what the logits are made from instead: the student's hidden states
h_s (N, H) at the N scored positions and its output layer (W_s (V_s, H), b_s), and the teacher's h_t
(N, H_t) with (W_t, b_t), or the top-k teacher of the teacher-output cache. For each chunk of n positions

    s = h_s[chunk] · W_s[:V]ᵀ + b_s[:V]        (n, V)   the student's logits, sliced to the vocabulary
    t = h_t[chunk] · W_t[:V]ᵀ + b_t[:V]        (n, V)   the teacher's (constants)

and the wanted terms, summed over the chunk's positions, are the functions of losses/token_kd.py on them:

    kd    Σ D(s, t)       D = token_divergence(divergence, temperature, beta, skew_lambda); no τ² here
    ce    Σ CE(s, y)      at τ = 1, targets y; positions with y = −100 carry no CE (the KD positions
                          of a masked LM include unmasked tokens, which have no label)
    mse   Σ ‖s − t‖²      logit_mse (a live teacher only: the top-k cache keeps probabilities, not logits)

Backward. With g = Σ_k (∂L/∂sum_k) · ∂sum_k/∂s (n, V) on a chunk (autograd on the chunk, so exactly the
gradient of the same formula), the output layer's gradients are two small products per chunk:

    ∂L/∂h_s[chunk] = g · W_s[:V]        (n, H)
    ∂L/∂W_s[:V]   += gᵀ · h_s[chunk]    (V, H)      ∂L/∂b_s[:V] += Σ_rows g

The weights of the terms in L (∂L/∂sum_k, e.g. w_k/count_k of distill/objective.py) are only known in
the backward, so the forward keeps nothing but its inputs and the backward recomputes each chunk's
student and teacher logits: memory is one (n, V) block and its temporaries at a time, plus the weight's
gradient (V_s, H), which the parameter gets anyway; no (N, V) tensor exists in either pass. The price
is time: the two logit products are computed twice. A caller that knows the terms' weights up to a
common factor (`grad_ratios`) avoids it: the forward then computes each chunk's gradient as it goes (the
chunked losses' way) into the (N, H), (V_s, H), (V_s,) accumulators, and the backward scales them.

Rows of W_s past the vocabulary get zero gradient. A weight tied to the input embedding needs nothing
special: the returned ∂L/∂W_s is accumulated into the shared parameter by autograd, like the
embedding's own gradient.

Precision: the products run in the dtype autocast would give (float32 inputs under bf16 autocast: bf16,
as the model's own lm head would), the losses in float32 (losses.numerics.upcast), the sums in float64;
float64 inputs stay float64 throughout (finite-difference tests).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from losses.numerics import upcast
from losses.token_kd import TOKEN_DIVERGENCES, token_divergence

FUSED_TERMS = ("kd", "ce", "mse")
FUSED_DIVERGENCES = (*TOKEN_DIVERGENCES, "logit_mse")
IGNORE_INDEX = -100  # lm.data.IGNORE; F.cross_entropy's default


def topk_teacher_logits(top_logp: torch.Tensor, top_ids: torch.Tensor, vocab_size: int,
                        temperature: float) -> torch.Tensor:
    """(..., V) logits z = τ·log p̂ of the teacher cache's top-k rule (distill/teacher_cache.py): the k stored
    log-probabilities at τ kept, the rest of the mass r = 1 − Σ p spread evenly over the other V − k
    tokens, so that softmax(z/τ) = p̂. `top_logp`, `top_ids`: (..., k)."""
    k = top_logp.shape[-1]
    # (float32's tiny even for float64 inputs: the same floor as the cache's own reconstruction)
    rest = (1.0 - top_logp.exp().sum(-1, keepdim=True)).clamp(min=torch.finfo(torch.float32).tiny)  # (..., 1)
    tail = torch.log(rest / max(vocab_size - k, 1)) if vocab_size > k else torch.full_like(rest, -math.inf)
    dense = tail.expand(*top_logp.shape[:-1], vocab_size).clone()  # (..., V)
    dense.scatter_(-1, top_ids.long(), top_logp)
    return dense * temperature


@dataclass(frozen=True)
class _Spec:
    """Everything that is not a tensor: the terms, their functions and the chunking."""
    terms: tuple[str, ...]
    divergence: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    vocab_size: int
    chunk_size: int
    temperature: float
    device_type: str
    matmul_dtype: torch.dtype  # of the logit products, fixed in the forward so the backward recomputes the same
    grad_ratios: tuple[float, ...] | None  # the announced ∂L/∂sum_k, up to a common factor (None: not known)


def _matmul_dtype(x: torch.Tensor, w: torch.Tensor) -> torch.dtype:
    """The dtype F.linear(x, w) would compute in here: autocast's (it leaves float64 alone) or the
    promoted dtype of the two."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type) and torch.float64 not in (x.dtype, w.dtype):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(x.dtype, w.dtype)


def _project(spec: _Spec, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """h (n, H) · w (V, H)ᵀ + b: one chunk's logits (n, V); w and b are already sliced and cast."""
    return F.linear(h.to(spec.matmul_dtype), w, b)


def _teacher_chunk(spec: _Spec, start: int, stop: int, h_t, w_t, b_t, top_logp, top_ids) -> torch.Tensor:
    if top_logp is not None:
        return topk_teacher_logits(top_logp[start:stop], top_ids[start:stop], spec.vocab_size, spec.temperature)
    return _project(spec, h_t[start:stop], w_t, b_t)  # (n, V)


def _chunk_sums(spec: _Spec, s: torch.Tensor, t: torch.Tensor | None, y: torch.Tensor | None,
                terms: Iterable[str]) -> list[torch.Tensor]:
    """The chunk's sum of each term in `terms` (scalars, float32 or float64)."""
    sums = []
    for term in terms:
        if term == "kd":
            sums.append(spec.divergence(s, t).sum())
        elif term == "mse":
            sums.append(token_divergence("logit_mse")(s, t).sum())
        else:  # ce: rows with the ignore index give 0
            sums.append(F.cross_entropy(upcast(s), y, reduction="none", ignore_index=IGNORE_INDEX).sum())
    return sums


def _sweep(spec: _Spec, saved: tuple, terms: tuple[str, ...], weights=None, grads=None) -> torch.Tensor:
    """One pass over the chunks: the sums of `terms` (float64, (len(terms),)). With `weights` (one scalar
    per term), also the gradient of Σ_k weights[k]·sum_k, added into `grads` = (∂h_s, ∂W_s, ∂b_s)
    accumulators (None: not wanted)."""
    h_s, w_s, b_s, h_t, w_t, b_t, top_logp, top_ids, targets = saved
    grad_h, grad_w, grad_b = grads or (None, None, None)
    v, m = spec.vocab_size, spec.matmul_dtype
    totals = torch.zeros(len(terms), dtype=torch.float64, device=h_s.device)  # (terms,)
    needs_teacher = any(term in ("kd", "mse") for term in terms)
    with torch.autocast(spec.device_type, enabled=False):  # the casts are made here, explicitly
        w_s_v, b_s_v = w_s[:v].to(m), None if b_s is None else b_s[:v].to(m)  # (V, H), (V,): views unless cast
        w_t_v = None if w_t is None else w_t[:v].to(m)  # (V, H_t)
        b_t_v = None if b_t is None else b_t[:v].to(m)
        for start in range(0, h_s.shape[0], spec.chunk_size):
            stop = min(start + spec.chunk_size, h_s.shape[0])
            h_c = h_s[start:stop].to(m)  # (n, H)
            s = _project(spec, h_c, w_s_v, b_s_v)  # (n, V)
            t = _teacher_chunk(spec, start, stop, h_t, w_t_v, b_t_v, top_logp, top_ids) if needs_teacher else None
            y = None if targets is None else targets[start:stop]  # (n,)
            if weights is None:
                totals += torch.stack(_chunk_sums(spec, s, t, y, terms)).double()
                continue
            with torch.enable_grad():
                s.requires_grad_(True)  # a leaf: the chunk's autograd stops here
                sums = _chunk_sums(spec, s, t, y, terms)
                total = sum(w * x for w, x in zip(weights, sums))
                (g,) = torch.autograd.grad(total, s)  # (n, V): ∂L/∂s on this chunk
            totals += torch.stack(sums).detach().double()
            g = g.to(m)
            if grad_h is not None:
                grad_h[start:stop] = g @ w_s_v  # (n, H)
            if grad_w is not None:
                if grad_w.dtype == m:  # in place: no (V, H) temporary per chunk
                    grad_w[:v].addmm_(g.T, h_c)
                else:
                    grad_w[:v] += g.T @ h_c  # (V, H) in the autocast dtype
            if grad_b is not None:
                grad_b[:v] += g.sum(0).to(grad_b.dtype)  # (V,)
    return totals


def _accumulators(saved: tuple, needs: tuple[bool, bool, bool]) -> tuple:
    """Zero gradients of h_s (N, H), W_s (V_s, H), b_s (V_s,) where needed, in float32 (float64 for float64
    inputs): the sum over chunks is kept in full precision, cast to the inputs' dtypes at the end."""
    return tuple(torch.zeros(x.shape, dtype=upcast(x).dtype, device=x.device) if need else None
                 for x, need in zip(saved[:3], needs))


def _common_scale(ratios: tuple[float, ...], grad_outputs) -> torch.Tensor | None:
    """c with grad_outputs[k] = c·ratios[k] for every term (None counts as 0), to a relative 1e-6; None when
    the incoming gradients are not in the announced proportions. (On a GPU: one synchronisation.)"""
    ref = next(g for g in grad_outputs if g is not None)
    d = torch.stack([torch.zeros_like(ref) if g is None else g.to(ref.dtype) for g in grad_outputs])  # (terms,)
    r = torch.tensor(ratios, dtype=d.dtype, device=d.device)  # (terms,)
    j = max(range(len(ratios)), key=lambda k: abs(ratios[k]))
    c = d[j] / ratios[j]
    return c if bool((d - c * r).abs().max() <= 1e-6 * d.abs().max()) else None


class _FusedVocabSums(torch.autograd.Function):
    """Per-term sums (one scalar output per term of spec.terms) from hidden states and output layers.
    Gradients flow to the student's hidden states, weight and bias; the teacher's tensors are constants."""

    @staticmethod
    def forward(ctx, spec: _Spec, h_s, w_s, b_s, h_t, w_t, b_t, top_logp, top_ids, targets, keep_teacher):
        ctx.spec = spec
        ctx.set_materialize_grads(False)  # an unused term's gradient arrives as None: its work is skipped
        saved = (h_s, w_s, b_s, h_t, w_t, b_t, top_logp, top_ids, targets)
        needs = tuple(ctx.needs_input_grad[1:4])
        precompute = spec.grad_ratios is not None and any(needs)
        # Only a recomputing backward reads the teacher's tensors (and the targets): released when the caller
        # vouches for its ratios, so that e.g. a teacher weight gathered for this loss is freed after it.
        ctx.released = precompute and not keep_teacher
        ctx.save_for_backward(*(saved[:3] + (None,) * 6 if ctx.released else saved))
        ctx.precomputed = None
        if precompute:  # the gradient now, for the announced weights
            ctx.precomputed = _accumulators(saved, needs)
            totals = _sweep(spec, saved, spec.terms, spec.grad_ratios, ctx.precomputed)
        else:
            totals = _sweep(spec, saved, spec.terms)
        out_dtype = torch.float64 if h_s.dtype == torch.float64 else torch.float32
        return tuple(x.clone() for x in totals.to(out_dtype).unbind())  # separate tensors, not views of one

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs):
        spec, saved = ctx.spec, ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[1:4])
        used = [(term, g) for term, g in zip(spec.terms, grad_outputs) if g is not None]
        if not used or not any(needs):
            return (None,) * 11
        grads, ctx.precomputed = ctx.precomputed, None  # (scaled in place below: usable once)
        scale = None if grads is None else _common_scale(spec.grad_ratios, grad_outputs)
        if scale is not None:
            grads = tuple(None if x is None else x.mul_(scale.to(x.dtype)) for x in grads)
        elif ctx.released:
            raise RuntimeError("fused_vocab_loss_sums: the incoming gradients are not in the proportions of "
                               f"grad_ratios {spec.grad_ratios} (or this is a second backward), and keep_teacher=False "
                               "released what recomputing needs; pass keep_teacher=True")
        else:  # recompute each chunk's logits (both models') and weigh the terms by their incoming gradients
            grads = _accumulators(saved, needs)
            terms, weights = tuple(term for term, _ in used), [g for _, g in used]
            _sweep(spec, saved, terms, weights, grads)
        grads = tuple(None if x is None else x.to(inp.dtype) for x, inp in zip(grads, saved[:3]))
        return None, *grads, None, None, None, None, None, None, None


def fused_vocab_loss_sums(student_hidden: torch.Tensor, student_weight: torch.Tensor,
                          student_bias: torch.Tensor | None = None, *, teacher_hidden: torch.Tensor | None = None,
                          teacher_weight: torch.Tensor | None = None, teacher_bias: torch.Tensor | None = None,
                          teacher_topk: tuple[torch.Tensor, torch.Tensor] | None = None,
                          targets: torch.Tensor | None = None, terms: Iterable[str] = ("kd",),
                          divergence: str = "forward_kl", temperature: float = 1.0, jsd_beta: float = 0.5,
                          skew_lambda: float = 0.1, vocab_size: int | None = None, chunk_size: int = 64,
                          grad_ratios: dict[str, float] | None = None,
                          keep_teacher: bool = True) -> dict[str, torch.Tensor]:
    """{term: Σ over the N positions} for each of `terms` ("kd", "ce", "mse"), computed from the student's
    hidden states (N, H) at the scored positions and its output layer (weight (V_s, H), bias (V_s,)),
    never materialising (N, V) logits (see the module docstring).

    The teacher: `teacher_hidden` (N, H_t) with `teacher_weight` (V_t, H_t) and `teacher_bias` (constants),
    or `teacher_topk` = (ids (N, k), log-probabilities at `temperature` (N, k)) as the teacher cache stores
    them. `targets` (N,): token ids for "ce" (−100: no CE at that position). `vocab_size`: the tokenizer's
    vocabulary; logits past it (padding rows of the weights) are sliced off. Defaults to the smaller
    output layer. "kd" is Σ D without the τ² factor (the caller scales it, as with the chunked losses).
    Returns float32 scalars (float64 for float64 inputs) with gradient to the student's three tensors.

    `grad_ratios` {term: r_k}: when the caller knows in which proportions the sums will be back-propagated
    (∂L/∂sum_k = c·r_k for some c, e.g. a causal LM's w_kd·τ² : w_clm, whose terms share their positions),
    the gradient of Σ r_k·sum_k is computed in the forward, chunk by chunk, and the backward only scales it
    by c: no second pass over the vocabulary. Should the incoming gradients not be in those proportions
    (or on a second backward), the backward recomputes as without them: the gradient is right either way.
    `keep_teacher=False` (with `grad_ratios`): the teacher's tensors and the targets are not kept for that
    recomputation, so they can be freed right after the forward (a teacher weight all-gathered for this loss
    under FSDP: its vocabulary × hidden floats); a backward in other proportions then raises instead."""
    terms = tuple(terms)
    if not terms or any(term not in FUSED_TERMS for term in terms) or len(set(terms)) != len(terms):
        raise ValueError(f"terms must be distinct names among {FUSED_TERMS}, got {terms}")
    if divergence not in FUSED_DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; one of {', '.join(FUSED_DIVERGENCES)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n, hidden = student_hidden.shape
    v_s = student_weight.shape[0]
    if student_weight.shape[1] != hidden or (student_bias is not None and student_bias.shape != (v_s,)):
        raise ValueError(f"output layer {tuple(student_weight.shape)} does not fit hidden states {(n, hidden)}")
    if "ce" in terms and (targets is None or targets.shape != (n,)):
        raise ValueError(f"the ce term needs targets of shape ({n},)")
    top_logp = top_ids = None
    if "kd" in terms or "mse" in terms:
        if (teacher_hidden is None) == (teacher_topk is None):
            raise ValueError("kd and mse need a teacher: either teacher_hidden with teacher_weight, or teacher_topk")
        if teacher_topk is not None:
            if "mse" in terms:
                raise ValueError("mse compares raw logits, which a top-k teacher does not keep")
            top_ids, top_logp = teacher_topk
            if top_ids.shape != top_logp.shape or top_ids.shape[0] != n:
                raise ValueError(f"top-k ids {tuple(top_ids.shape)} and log-probs {tuple(top_logp.shape)} must both "
                                 f"be ({n}, k)")
        elif (teacher_weight is None or teacher_hidden.shape[0] != n
              or teacher_hidden.shape[1] != teacher_weight.shape[1]):
            raise ValueError("teacher_hidden (N, H_t) needs teacher_weight (V_t, H_t) at the same N positions")
    else:  # no teacher term: do not carry the teacher's tensors
        teacher_hidden = teacher_weight = teacher_bias = None
    widths = [v_s] + ([teacher_weight.shape[0]] if teacher_weight is not None else [])
    v = vocab_size or min(widths)
    if v > min(widths) or (top_ids is not None and top_ids.shape[1] > v):
        raise ValueError(f"vocab_size {v} is larger than an output layer ({widths}) or smaller than top-k")
    if any(x is not None and x.requires_grad for x in (teacher_hidden, teacher_weight, teacher_bias, top_logp)):
        raise ValueError("the fused loss does not differentiate the teacher: pass its tensors detached")
    ratios = None
    if grad_ratios is not None:
        if set(grad_ratios) - set(terms) or not any(grad_ratios.values()):
            raise ValueError(f"grad_ratios {grad_ratios} must weigh some of the terms {terms}")
        # (under no_grad nothing will be back-propagated, but the Function still sees inputs that require grad)
        ratios = tuple(float(grad_ratios.get(term, 0.0)) for term in terms) if torch.is_grad_enabled() else None
    spec = _Spec(terms, token_divergence(divergence, temperature=temperature, beta=jsd_beta, skew_lambda=skew_lambda),
                 v, chunk_size, temperature, student_hidden.device.type, _matmul_dtype(student_hidden, student_weight),
                 ratios)
    sums = _FusedVocabSums.apply(spec, student_hidden, student_weight, student_bias, teacher_hidden, teacher_weight,
                                 teacher_bias, top_logp, top_ids, targets, keep_teacher)
    return dict(zip(terms, sums))
