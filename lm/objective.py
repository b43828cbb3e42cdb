"""The LM distillation objective, for masked and causal LMs:

    L = w_kd·τ²·D(p_t^τ, p_s^τ) + w_lm·LM + w_mse·Σ_v(s − t)² + w_cos·(1 − cos(h_s, h_t))

each term averaged over its own positions of the whole optimizer step:
- causal LM: position t predicts token t+1; every term uses the positions whose next token has a
  label (not padding; not the prompt when the data has prompts);
- masked LM: the LM term uses the masked positions; the others all real tokens, except that with
  `restrict_ce_to_mask` the KD and MSE terms use the masked positions only; the cosine term keeps
  every real token, as in the original DistilBERT code (distiller.py: `mlm_labels > -1` selects the
  logits of the CE and MSE terms, the attention mask the hidden states of the cosine term).
Logit terms run chunk by chunk over positions (losses/token_kd.py), so no (B, T, V) float32
temporaries of either model are materialised; logits are sliced to the tokenizer's vocabulary. With
`fuse_output_layers` (the default in train_lm_distill.py) not even the models' logits exist: the loss
projects what the output layers read, a chunk at a time (losses/fused_vocab.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distill.objective import Objective, logged_term
from distill.sharding import gathered, is_shard
from lm.data import IGNORE
from lm.output_layer import OUTPUT_LAYER_INPUT
from losses.fused_vocab import fused_vocab_loss_sums
from losses.token_kd import chunked_cross_entropy_sum, chunked_divergence_sum, token_divergence


class LMDistillationObjective(Objective):
    def __init__(self, weights: dict[str, float], *, mlm: bool, vocab_size: int, kd_loss: str = "forward_kl",
                 temperature: float = 1.0, jsd_beta: float = 0.5, skew_lambda: float = 0.1,
                 restrict_ce_to_mask: bool = False, chunk_size: int = 64):
        self.weights = dict(weights)
        self.mlm = mlm
        self.lm_term = "mlm" if mlm else "clm"
        self.vocab_size = vocab_size
        self.temperature = temperature
        self.divergence = token_divergence(kd_loss, temperature=temperature, beta=jsd_beta, skew_lambda=skew_lambda)
        self.divergence_options = dict(divergence=kd_loss, temperature=temperature, jsd_beta=jsd_beta,
                                       skew_lambda=skew_lambda)
        self.output_layers = None  # (student's, teacher's or None): set by `fuse_output_layers`
        self.logit_mse = token_divergence("logit_mse")
        self.restrict_ce_to_mask = restrict_ce_to_mask
        self.chunk_size = chunk_size
        # No KV cache in training (nothing generates); hidden states only for the cosine term.
        self.forward_kwargs = ({} if mlm else {"use_cache": False}) | (
            {"output_hidden_states": True} if "cos" in self.weights else {})
        self.plain_forward_kwargs = self.forward_kwargs  # (the forward that returns full logits)
        self.teacher_topk = False

    def fuse_output_layers(self, student_layer: nn.Module, teacher_layer: nn.Module | None, *,
                           teacher_topk: bool = False) -> None:
        """The training forwards return what the output layers read instead of (B, T, V) logits, and
        `loss_sums` projects it through the layers chunk by chunk (losses/fused_vocab.py): no (B, T, V) logits or
        logit gradient of either model exist. Causal LMs: the final hidden states (`output_hidden_states`; the
        last position's logits only, `logits_to_keep=1`); masked LMs: the output layer's input, returned in
        `logits` (`OUTPUT_LAYER_INPUT`; the models must have gone through lm/output_layer.emit_output_layer_input).
        The layers' weights are read at loss time (the modules DDP wraps). Evaluation still scores full logits.

        `teacher_topk`: the teacher is a top-k teacher-output cache (`teacher_layer` None): the loss reads its
        stored ids and log-probabilities (`logits_topk`), and the teacher's forward (which builds the cache) keeps
        the plain arguments (`teacher_forward_kwargs`), so a fused and a non-fused run make and read one cache."""
        self.output_layers = (student_layer, teacher_layer)
        self.teacher_topk = teacher_topk
        fused = {OUTPUT_LAYER_INPUT: True} if self.mlm else {"output_hidden_states": True, "logits_to_keep": 1}
        self.forward_kwargs = self.plain_forward_kwargs | fused

    @property
    def teacher_forward_kwargs(self) -> dict:
        return self.plain_forward_kwargs if self.teacher_topk else self.forward_kwargs

    # ------------------------------------------------------------------ positions
    def lm_targets(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(flat positions (n,) into B*T whose logits are scored, targets (B, T) aligned with the logits)."""
        labels = batch["labels"]  # (B, T)
        if not self.mlm:  # the logit at t scores the label at t+1
            labels = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE)], dim=1)  # (B, T)
        return (labels != IGNORE).flatten().nonzero().squeeze(1), labels.clamp(min=0)

    def kd_positions(self, batch, lm_positions: torch.Tensor) -> torch.Tensor:
        """Positions of the logit terms (KD, MSE)."""
        if self.mlm and not self.restrict_ce_to_mask:
            return self.cos_positions(batch, lm_positions)
        return lm_positions

    def cos_positions(self, batch, lm_positions: torch.Tensor) -> torch.Tensor:
        """Positions of the hidden-state cosine term: every real token for masked LMs, whatever
        `restrict_ce_to_mask` says (as in the original DistilBERT code)."""
        if self.mlm:
            return batch["attention_mask"].flatten().nonzero().squeeze(1)  # every real token
        return lm_positions

    def counts(self, batch):
        lm_positions, _ = self.lm_targets(batch)
        n_kd = float(self.kd_positions(batch, lm_positions).numel())
        n_cos = float(self.cos_positions(batch, lm_positions).numel()) if "cos" in self.weights else 0.0
        return {k: float(lm_positions.numel()) if k == self.lm_term else n_cos if k == "cos" else n_kd
                for k in self.weights}

    # ------------------------------------------------------------------ training loss
    def loss_sums(self, batch, student_outputs, teacher_outputs):
        if self.output_layers is not None:
            return self._fused_loss_sums(batch, student_outputs, teacher_outputs)
        # Every term goes through `self.term`: one of weight 0 (the LM term at --kd_ratio 1) is computed for
        # the logs without autograd, so its chunked loss builds no (B, T, V) gradient buffer.
        s_logits = student_outputs.logits  # (B, T, V')
        lm_positions, targets = self.lm_targets(batch)
        sums = {self.lm_term: self.term(self.lm_term, chunked_cross_entropy_sum, s_logits, lm_positions, targets,
                                        self.chunk_size, self.vocab_size)}
        if teacher_outputs is None:
            return sums
        t_logits = teacher_outputs.logits  # (B, T, V'')
        positions = self.kd_positions(batch, lm_positions)
        if "kd" in self.weights:
            kd = self.term("kd", chunked_divergence_sum, s_logits, t_logits, positions, self.divergence,
                           self.chunk_size, self.vocab_size)
            sums["kd"] = kd * self.temperature**2
        if "mse" in self.weights:
            sums["mse"] = self.term("mse", chunked_divergence_sum, s_logits, t_logits, positions, self.logit_mse,
                                    self.chunk_size, self.vocab_size)
        if "cos" in self.weights:
            cos_positions = self.cos_positions(batch, lm_positions)
            h_s = student_outputs.hidden_states[-1].flatten(0, 1)  # (B*T, d)
            h_t = teacher_outputs.hidden_states[-1].flatten(0, 1)  # (B*T, d)
            sums["cos"] = self.term("cos", _cosine_distance_sum, h_s, h_t, cos_positions)
        return sums

    def _fused_loss_sums(self, batch, student_outputs, teacher_outputs):
        """The LM, KD and MSE terms from what the output layers read (`fuse_output_layers`).

        Each fused call is given the terms' weights as `grad_ratios`, so its gradient is computed in its forward
        (no second pass over the vocabulary in the backward). The step's ∂L/∂sum_k = w_k/count_k are then known
        up to one factor only when the call's terms share their count: a causal LM's terms all share their
        positions (one call), but a masked LM's KD/MSE positions (every real token) are not its LM positions
        (the masked ones): two calls, KD (+ MSE) over theirs and the LM term over the masked tokens (with
        `restrict_ce_to_mask` they coincide: one call)."""
        lm_positions, targets = self.lm_targets(batch)  # (n_lm,), (B, T)
        student_layer, teacher_layer = self.output_layers
        if is_shard(student_layer.weight):
            raise RuntimeError("the student's output layer is sharded at loss time; its FSDP root unit must keep "
                               "its weights gathered until the backward (distill/sharding.py)")
        teacher_terms = [k for k in ("kd", "mse") if k in self.weights] if teacher_outputs is not None else []
        if not self.mlm or self.restrict_ce_to_mask:
            calls = [(lm_positions, ["ce", *teacher_terms])]
        else:
            calls = [(lm_positions, ["ce"])] + ([(self.kd_positions(batch, lm_positions), teacher_terms)]
                                                if teacher_terms else [])
        ratio = {"ce": self.weights[self.lm_term], "kd": self.weights.get("kd", 0.0) * self.temperature**2,
                 "mse": self.weights.get("mse", 0.0)}
        h_s = self._layer_input(student_outputs)  # (B*T, H)
        teacher = {}
        if teacher_terms and self.teacher_topk:  # the cache's rows: ids and log-probabilities at τ
            teacher = {"topk": tuple(x.flatten(0, 1) for x in teacher_outputs.logits_topk)}  # (B*T, k) each
        elif teacher_terms:  # (a collective under --fsdp: once per micro-batch, on every process)
            h_t = self._layer_input(teacher_outputs)  # (B*T, H_t)
            teacher = {"hidden": h_t, "weight": gathered(teacher_layer.weight, h_t),
                       "bias": gathered(teacher_layer.bias, h_t)}  # (V_t, H_t), (V_t,) or None
        sums = {}
        for positions, terms in calls:
            ratios = {k: ratio[k] for k in terms}
            rows = _teacher_rows(teacher, positions) if "kd" in terms or "mse" in terms else {}
            if "ce" in terms:
                rows["targets"] = targets.flatten().index_select(0, positions)  # (n,)
            # a call whose terms all weigh 0 is only logged: no graph (logged_term), no gradient. The ratios are
            # exact (the call's terms share their count), so the teacher's tensors need not outlive the forward.
            weighted = any(ratios.values())
            sums |= logged_term(1.0 if weighted else 0.0, fused_vocab_loss_sums, h_s.index_select(0, positions),
                                student_layer.weight, student_layer.bias, **rows, terms=tuple(terms),
                                vocab_size=self.vocab_size, chunk_size=self.chunk_size,
                                grad_ratios=ratios if weighted else None, keep_teacher=False,
                                **self.divergence_options)
        out = {self.lm_term if k == "ce" else k: v for k, v in sums.items()}
        if "kd" in out:
            out["kd"] = out["kd"] * self.temperature**2
        if "cos" in self.weights and teacher_outputs is not None:  # the encoders' last hidden states
            cos_positions = self.cos_positions(batch, lm_positions)
            out["cos"] = self.term("cos", _cosine_distance_sum, student_outputs.hidden_states[-1].flatten(0, 1),
                                   teacher_outputs.hidden_states[-1].flatten(0, 1), cos_positions)
        # a term of weight 0 is only logged (its sum has no gradient in the ratios above)
        return {k: v.detach() if self.weights[k] == 0 else v for k, v in out.items()}

    def _layer_input(self, outputs) -> torch.Tensor:
        """(B*T, H): what the output layer reads. A masked LM's training forward returns it in place of the
        logits (lm/output_layer.py); a causal LM's is its last hidden state."""
        x = outputs.logits if self.mlm else outputs.hidden_states[-1]  # (B, T, H)
        return x.flatten(0, 1)

    # ------------------------------------------------------------------ evaluation
    def predictions(self, outputs, batch):
        """Per sequence (B, 2): [summed negative log-likelihood of its scored tokens, their number]."""
        logits = outputs.logits[..., :self.vocab_size].float()  # (B, T, V)
        positions, targets = self.lm_targets(batch)
        nll = torch.zeros(logits.shape[:2], device=logits.device).flatten()  # (B*T,)
        rows = logits.flatten(0, 1).index_select(0, positions)  # (n, V)
        nll[positions] = F.cross_entropy(rows, targets.flatten()[positions], reduction="none")
        nll = nll.view(logits.shape[:2])  # (B, T)
        n = torch.zeros_like(nll).flatten().index_fill_(0, positions, 1.0).view_as(nll)
        return torch.stack([nll.sum(1), n.sum(1)], dim=1)

    def eval_loss(self, predictions: np.ndarray, dataset) -> float:
        """Mean negative log-likelihood per scored token (not per sequence)."""
        return float(predictions[:, 0].astype(np.float64).sum() / max(predictions[:, 1].sum(), 1.0))


def _teacher_rows(teacher: dict, positions: torch.Tensor) -> dict:
    """The fused loss's teacher arguments at the flat `positions`: a top-k cache's rows (ids, log-probabilities),
    or the live teacher's output-layer inputs with its layer."""
    if "topk" in teacher:
        return {"teacher_topk": tuple(x.index_select(0, positions) for x in teacher["topk"])}  # (n, k) each
    return {"teacher_hidden": teacher["hidden"].index_select(0, positions),  # (n, H_t)
            "teacher_weight": teacher["weight"], "teacher_bias": teacher["bias"]}


def _cosine_distance_sum(h_s: torch.Tensor, h_t: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Σ over the flat `positions` of 1 − cos(h_s, h_t), for (B*T, d) hidden states."""
    h_s, h_t = h_s.index_select(0, positions), h_t.index_select(0, positions)  # (n, d) each
    return (1.0 - F.cosine_similarity(h_s.float(), h_t.float(), dim=-1)).sum()


def perplexity_metrics(predictions: np.ndarray, dataset) -> dict[str, float]:
    nll = float(predictions[:, 0].astype(np.float64).sum())
    n_tokens = float(predictions[:, 1].sum())
    return {"perplexity": math.exp(nll / max(n_tokens, 1.0)), "tokens": n_tokens}
