"""Fused vocabulary projection (losses/fused_vocab.py): the per-term sums and the gradients of the student's
hidden states, output weight and bias equal those of full logits fed to losses/token_kd.py's functions."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from distill.teacher_cache import CachedTeacher
from losses.fused_vocab import FUSED_DIVERGENCES, fused_vocab_loss_sums
from losses.token_kd import token_divergence

N, H, H_T, V_S, V_T, VOCAB = 11, 6, 5, 23, 21, 19  # both output layers padded past the 19-token vocabulary
OPTS = dict(temperature=2.0, jsd_beta=0.3, skew_lambda=0.2)
TERM_WEIGHTS = {"kd": 0.7, "ce": 1.3, "mse": 0.05}  # ∂L/∂sum_k: each term's own weight reaches the gradient


def make(dtype=torch.float64, n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    student = dict(h=r(n, H), w=r(V_S, H), b=r(V_S))
    teacher = dict(h=r(n, H_T), w=r(V_T, H_T), b=r(V_T))
    targets = torch.randint(0, VOCAB, (n,), generator=g)
    targets[::3] = -100  # positions scored by KD only (a masked LM's unmasked tokens)
    return student, teacher, targets


def leaves(student):
    return {k: x.clone().requires_grad_(True) for k, x in student.items()}


def reference_sums(student, teacher, targets, terms, divergence, temperature=1.0, jsd_beta=0.5, skew_lambda=0.1,
                   teacher_logits=None, **_):
    """Full (N, V) logits, then today's functions on them."""
    s = F.linear(student["h"], student["w"], student["b"])[:, :VOCAB]  # (N, V)
    t = F.linear(teacher["h"], teacher["w"], teacher["b"])[:, :VOCAB] if teacher_logits is None else teacher_logits
    fn = token_divergence(divergence, temperature=temperature, beta=jsd_beta, skew_lambda=skew_lambda)
    every = {"kd": lambda: fn(s, t).sum(), "mse": lambda: token_divergence("logit_mse")(s, t).sum(),
             "ce": lambda: F.cross_entropy(s, targets, reduction="sum")}
    return {k: every[k]() for k in terms}


def fused_sums(student, teacher, targets, terms, divergence, chunk_size=4, **opts):
    return fused_vocab_loss_sums(student["h"], student["w"], student["b"], teacher_hidden=teacher["h"],
                                 teacher_weight=teacher["w"], teacher_bias=teacher["b"], targets=targets, terms=terms,
                                 divergence=divergence, vocab_size=VOCAB, chunk_size=chunk_size, **opts)


def values_and_grads(fn, student, terms):
    x = leaves(student)
    sums = fn(x)
    sum(TERM_WEIGHTS[k] * sums[k] for k in terms).backward()
    return {k: v.item() for k, v in sums.items()}, {k: x[k].grad for k in x}


@pytest.mark.parametrize("divergence", FUSED_DIVERGENCES)
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("announced", [False, True])
def test_values_and_gradients_equal_full_logits_for_every_divergence(divergence, temperature, announced):
    """`announced`: the terms' weights given as grad_ratios (gradient computed in the forward)."""
    student, teacher, targets = make()
    terms = ("kd", "ce", "mse")
    opts = {**OPTS, "temperature": temperature, "grad_ratios": TERM_WEIGHTS if announced else None}
    want, want_grads = values_and_grads(lambda x: reference_sums(x, teacher, targets, terms, divergence, **opts),
                                        student, terms)
    got, got_grads = values_and_grads(lambda x: fused_sums(x, teacher, targets, terms, divergence, **opts),
                                      student, terms)  # chunks of 4 over 11 positions: the last one short
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    for k in ("h", "w", "b"):
        torch.testing.assert_close(got_grads[k], want_grads[k], rtol=1e-10, atol=1e-12)
    assert got_grads["w"][VOCAB:].abs().max() == 0 and got_grads["b"][VOCAB:].abs().max() == 0  # padding rows


@pytest.mark.parametrize("terms", [("ce",), ("kd",), ("mse", "ce")])
def test_each_term_alone_and_the_unused_terms_gradient(terms):
    """Terms asked for but not back-propagated (weight 0 in the objective) add nothing to the gradient."""
    student, teacher, targets = make(seed=1)
    want, want_grads = values_and_grads(lambda x: reference_sums(x, teacher, targets, terms, "jsd", **OPTS),
                                        student, terms)
    x = leaves(student)
    sums = fused_sums(x, teacher, targets, ("kd", "ce", "mse"), "jsd", chunk_size=5, **OPTS)
    sum(TERM_WEIGHTS[k] * sums[k] for k in terms).backward()
    for k in terms:
        assert sums[k].item() == pytest.approx(want[k], rel=1e-12)
    for k in x:
        torch.testing.assert_close(x[k].grad, want_grads[k], rtol=1e-10, atol=1e-12)


def test_float32_agrees_with_float64_and_returns_float32():
    student, teacher, targets = make()
    terms = ("kd", "ce")
    want, want_grads = values_and_grads(lambda x: reference_sums(x, teacher, targets, terms, "forward_kl"), student,
                                        terms)
    f32 = lambda d: {k: x.float() for k, x in d.items()}  # noqa: E731
    x = leaves(f32(student))
    sums = fused_sums(x, f32(teacher), targets, terms, "forward_kl", chunk_size=3)
    assert all(v.dtype == torch.float32 for v in sums.values())
    sum(TERM_WEIGHTS[k] * sums[k] for k in terms).backward()
    assert {k: v.item() for k, v in sums.items()} == pytest.approx(want, rel=1e-5)
    for k in x:
        torch.testing.assert_close(x[k].grad.double(), want_grads[k], rtol=1e-4, atol=1e-5)


def test_no_positions_give_zero_sums_and_zero_gradients():
    student, teacher, targets = make(n=0)
    x = leaves(student)
    sums = fused_sums(x, teacher, targets, ("kd", "ce", "mse"), "reverse_kl")
    assert [v.item() for v in sums.values()] == [0.0, 0.0, 0.0]
    sum(sums.values()).backward()
    assert x["h"].grad.shape == (0, H) and x["w"].grad.abs().max() == 0 and x["b"].grad.abs().max() == 0


def test_identical_student_and_teacher_give_zero_kd():
    student, _, targets = make()
    for divergence in FUSED_DIVERGENCES:
        x = leaves(student)
        sums = fused_sums(x, {k: v.detach().clone() for k, v in student.items()}, targets, ("kd",), divergence)
        sums["kd"].backward()
        assert abs(sums["kd"].item()) < 1e-12 and x["h"].grad.abs().max() < 1e-12, divergence


def test_gradcheck():
    g = torch.Generator().manual_seed(3)
    h, w, b = (torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
               for shape in ((3, 2), (6, 2), (6,)))
    h_t, w_t = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([1, -100, 4])
    fn = lambda h, w, b: tuple(fused_vocab_loss_sums(  # noqa: E731
        h, w, b, teacher_hidden=h_t, teacher_weight=w_t, targets=y, terms=("kd", "ce", "mse"), divergence="jsd",
        vocab_size=5, chunk_size=2, **OPTS).values())
    assert torch.autograd.gradcheck(fn, (h, w, b))


def test_top_k_teacher_equals_the_teacher_caches_dense_logits():
    """The cache's top-k path turns (ids, log-probs) into dense logits (CachedTeacher._dense_logits) before
    the loss; the fused loss builds the same rows per chunk."""
    student, teacher, targets = make(seed=4)
    tau = OPTS["temperature"]
    t_full = F.linear(teacher["h"], teacher["w"], teacher["b"])[:, :VOCAB]  # (N, V)
    cache = SimpleNamespace(vocab_size=VOCAB, temperature=tau)
    for k, divergence in ((4, "forward_kl"), (VOCAB, "jsd")):
        top = torch.log_softmax(t_full / tau, -1).topk(k, dim=-1)  # as the cache stores it: (N, k) each
        dense = CachedTeacher._dense_logits(cache, top.values[None], top.indices.int()[None])[0]  # (N, V)
        want, want_grads = values_and_grads(lambda x: reference_sums(  # noqa: B023
            x, None, targets, ("kd", "ce"), divergence, teacher_logits=dense, **OPTS), student, ("kd", "ce"))
        got, got_grads = values_and_grads(lambda x: fused_vocab_loss_sums(  # noqa: B023
            x["h"], x["w"], x["b"], teacher_topk=(top.indices.int(), top.values), targets=targets,
            terms=("kd", "ce"), divergence=divergence, vocab_size=VOCAB, chunk_size=3, **OPTS),
            student, ("kd", "ce"))
        assert got == pytest.approx(want, rel=1e-12)
        for name in got_grads:
            torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-10, atol=1e-12)
        if k == VOCAB:  # all tokens kept: the live teacher's value
            live = fused_sums(student, teacher, targets, ("kd",), divergence, **OPTS)["kd"].item()
            assert got["kd"] == pytest.approx(live, rel=1e-10)


def test_tied_output_weight_gets_the_embeddings_and_the_heads_gradient():
    """A GPT-2 whose lm_head.weight is its token embedding: the shared parameter's gradient (and every
    other parameter's) equals the one through the model's own full logits."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(5)
    config = GPT2Config(vocab_size=VOCAB + 3, n_embd=8, n_layer=1, n_head=2, n_positions=16, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)  # embedding rows past the tokenizer: padding
    model = GPT2LMHeadModel(config).double()
    assert model.lm_head.weight is model.transformer.wte.weight
    ids = torch.randint(0, VOCAB, (2, 7))
    positions = torch.tensor([0, 1, 2, 4, 6, 7, 8, 9, 12])  # flat positions into 2 × 7
    targets = torch.randint(0, VOCAB, (positions.numel(),))
    teacher = dict(h=torch.randn(positions.numel(), H_T, dtype=torch.float64), w=torch.randn(VOCAB, H_T).double())

    def grads(loss_sums):
        model.zero_grad()
        sums = loss_sums()
        (0.6 * sums["kd"] + 1.4 * sums["ce"]).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    def reference():
        s = model(ids).logits.flatten(0, 1)[positions][:, :VOCAB]  # (n, V)
        t = F.linear(teacher["h"], teacher["w"])
        return {"kd": token_divergence("reverse_kl", temperature=2.0)(s, t).sum(),
                "ce": F.cross_entropy(s, targets, reduction="sum")}

    def fused():
        hidden = model.transformer(ids).last_hidden_state.flatten(0, 1).index_select(0, positions)  # (n, d)
        return fused_vocab_loss_sums(hidden, model.lm_head.weight, teacher_hidden=teacher["h"],
                                     teacher_weight=teacher["w"], targets=targets, terms=("kd", "ce"),
                                     divergence="reverse_kl", temperature=2.0, vocab_size=VOCAB, chunk_size=4)

    want, got = grads(reference), grads(fused)
    assert "transformer.wte.weight" in got and "lm_head.weight" not in got  # one shared parameter
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-12)


class _LargestOutput(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for x in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(x, torch.Tensor):
                self.largest = max(self.largest, x.numel())
        return out


def test_no_tensor_of_positions_by_vocabulary_is_made_in_the_forward_or_the_backward():
    n, chunk = 40, 8
    student, teacher, targets = make(dtype=torch.float32, n=n)
    x = leaves(student)
    with _LargestOutput() as mode:
        sums = fused_sums(x, teacher, targets, ("kd", "ce", "mse"), "jsd", chunk_size=chunk)
        sum(sums.values()).backward()
    assert x["h"].grad.abs().max() > 0
    # every op's result is at most a chunk's logits (8 × 19), a weight (23 × 6) or the hidden states (40 × 6)
    assert mode.largest <= max(chunk * V_S, V_S * H, n * H) < n * VOCAB


@pytest.mark.parametrize("ratios", [None, {"kd": 2.0, "ce": 1.0}])
def test_backward_twice_adds_up(ratios):
    """Without grad_ratios every backward recomputes; with them the first scales what the forward computed
    and a second one recomputes."""
    student, teacher, targets = make()
    x = leaves(student)
    sums = fused_sums(x, teacher, targets, ("kd", "ce"), "forward_kl", grad_ratios=ratios)
    (2 * sums["kd"] + sums["ce"]).backward(retain_graph=True)
    once = x["w"].grad.clone()
    (2 * sums["kd"] + sums["ce"]).backward()
    torch.testing.assert_close(x["w"].grad, 2 * once)


class _CountProducts(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.products = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.products += func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default,
                                  torch.ops.aten.addmm_.default)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("weights, recomputes", [((0.7 * 3, 1.3 * 3), False), ((1.3, 0.7), True), ((0.7, 0.0), True)])
def test_announced_ratios_skip_the_second_pass_only_when_they_hold(weights, recomputes):
    """grad_ratios kd : ce = 0.7 : 1.3. Back-propagated in those proportions (any common factor), the backward
    makes no product; in others (or with a term left out) it recomputes, and the gradient is right either way."""
    student, teacher, targets = make(seed=6)
    terms = ("kd", "ce")
    x_ref = leaves(student)
    ref = reference_sums(x_ref, teacher, targets, terms, "jsd", **OPTS)
    sum(w * ref[k] for w, k in zip(weights, terms)).backward()
    x = leaves(student)
    sums = fused_sums(x, teacher, targets, terms, "jsd", **OPTS, grad_ratios={"kd": 0.7, "ce": 1.3})
    with _CountProducts() as mode:
        sum(w * sums[k] for w, k in zip(weights, terms) if w).backward()
    assert (mode.products > 0) == recomputes
    for k in x:
        torch.testing.assert_close(x[k].grad, x_ref[k].grad, rtol=1e-10, atol=1e-12)
    with torch.no_grad(), _CountProducts() as mode:  # a forward for the logs only: no gradient computed
        fused_sums(x, teacher, targets, terms, "jsd", chunk_size=4, **OPTS, grad_ratios={"kd": 0.7, "ce": 1.3})
    assert mode.products == 2 * 3  # the student's and the teacher's logits of 3 chunks


def test_keep_teacher_false_frees_the_teacher_after_the_forward_and_refuses_a_recompute():
    """keep_teacher=False with grad_ratios: the teacher's tensors are not held by the graph (a weight gathered
    for the loss is freed as soon as the caller drops it), the gradient is the same when the ratios hold, and a
    backward in other proportions raises rather than recomputing without the teacher."""
    import weakref
    student, teacher, targets = make(seed=7)
    terms, ratios = ("kd", "ce"), {"kd": 0.7, "ce": 1.3}
    x_ref = leaves(student)
    ref = reference_sums(x_ref, teacher, targets, terms, "jsd", **OPTS)
    (0.7 * ref["kd"] + 1.3 * ref["ce"]).backward()
    x = leaves(student)
    weight = teacher["w"].clone()  # as gathered for the loss
    alive = weakref.ref(weight)
    sums = fused_sums(x, {**teacher, "w": weight}, targets, terms, "jsd", **OPTS, grad_ratios=ratios,
                      keep_teacher=False)
    del weight
    assert alive() is None  # nothing of the graph keeps it
    (2 * (0.7 * sums["kd"] + 1.3 * sums["ce"])).backward(retain_graph=True)
    for k in x:
        torch.testing.assert_close(x[k].grad, 2 * x_ref[k].grad, rtol=1e-10, atol=1e-12)
    with pytest.raises(RuntimeError, match="keep_teacher=True"):
        sums["kd"].backward()


def test_bf16_autocast_computes_the_products_like_the_models_lm_head():
    student, teacher, targets = make(dtype=torch.float32)
    x = leaves(student)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = reference_sums(student, teacher, targets, ("kd", "ce"), "forward_kl")  # bf16 logits, as a model's
        got = fused_sums(x, teacher, targets, ("kd", "ce"), "forward_kl")
    for k in want:
        assert got[k].dtype == torch.float32
        assert got[k].item() == pytest.approx(want[k].item(), rel=1e-5)
    sum(got.values()).backward()
    assert x["w"].grad.dtype == torch.float32 and torch.isfinite(x["w"].grad).all()


def test_refusals():
    student, teacher, targets = make()
    base = dict(teacher_hidden=teacher["h"], teacher_weight=teacher["w"], targets=targets, vocab_size=VOCAB)
    call = lambda **kw: fused_vocab_loss_sums(student["h"], student["w"], **{**base, **kw})  # noqa: E731
    with pytest.raises(ValueError, match="terms"):
        call(terms=("kd", "cos"))
    with pytest.raises(ValueError, match="targets"):
        call(terms=("ce",), targets=None)
    with pytest.raises(ValueError, match="need a teacher"):
        call(teacher_hidden=None)
    with pytest.raises(ValueError, match="detached"):
        call(teacher_weight=teacher["w"].clone().requires_grad_(True))
    with pytest.raises(ValueError, match="vocab_size"):
        call(vocab_size=V_S)  # larger than the teacher's 21 rows
    with pytest.raises(ValueError, match="top-k"):
        call(terms=("mse",), teacher_hidden=None, teacher_topk=(targets[:, None].clamp(min=0), student["h"][:, :1]))
