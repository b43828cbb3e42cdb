"""The MiniLLM loss: reverse KL(q_θ ‖ p) over sequences sampled by the student,
minimised by policy gradient.

With per-token rewards r_t = log p(y_t|y<t) − log q(y_t|y<t), the exact gradient splits into
(Gu et al. 2024, Eq. 5)

    ∇KL = E[ Σ_t ∇ KL(q_θ(·|y<t) ‖ p(·|y<t)) ]  −  E[ Σ_t R_{t+1} ∇ log q_θ(y_t|y<t) ]
            single step: exact, over the vocabulary    long term: R_{t+1} = Σ_{t'>t} r_{t'}

so with `--single_step_reg` the advantage holds the FUTURE rewards only. (The released code adds the
single-step term and still puts r_t into the advantage, counting the current step twice; without the
single-step term the advantage must include r_t: R_t.) Both choices are unbiased estimates of ∇KL when
γ = 1 and nothing is normalised, clipped or whitened (tested by enumerating every sequence of a tiny
vocabulary). The variance reductions of the paper then apply: rewards scaled and clipped, discount γ,
length normalisation (R divided by the number of tokens it sums), whitening over the rollout batch,
and PPO's clipped ratio ρ·w, with ρ = q_θ/q_old and w = q_old/p̃ the single-step importance weight of
teacher-mixed sampling.
"""
from __future__ import annotations

import torch

from distill.objective import Objective
from distill.sharding import gathered
from lm.data import IGNORE
from losses.fused_logprobs import fused_token_logprobs
from losses.fused_vocab import fused_vocab_loss_sums
from losses.token_kd import chunked_cross_entropy_sum, chunked_divergence_sum, token_divergence


# ---------------------------------------------------------------------------------------------- rewards
def token_rewards(teacher_logprobs: torch.Tensor, student_logprobs: torch.Tensor, mask: torch.Tensor,
                  reward_scaling: float = 1.0, cliprange_reward: float | None = None) -> torch.Tensor:
    """r_t = (log p − log q) / reward_scaling, clipped to ±cliprange_reward; 0 where mask is 0. (B, N)."""
    rewards = (teacher_logprobs - student_logprobs) / reward_scaling
    if cliprange_reward:
        rewards = rewards.clamp(-cliprange_reward, cliprange_reward)
    return rewards * mask


def returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, include_current: bool = False,
            length_norm: bool = False) -> torch.Tensor:
    """Per position t (B, N): R_t = Σ_{t'≥t} γ^{t'−t} r_{t'} (include_current) or
    R_{t+1} = Σ_{t'>t} γ^{t'−t−1} r_{t'}; with length_norm divided by the number of tokens summed
    (at least 1). 0 where mask is 0."""
    mask = mask.to(rewards.dtype)
    future = torch.zeros_like(rewards[:, 0])  # (B,) R_{t+1} while walking backwards
    count = torch.zeros_like(future)  # (B,) tokens after t
    out = torch.zeros_like(rewards)
    for t in reversed(range(rewards.shape[1])):
        if include_current:
            future = rewards[:, t] + gamma * future
            count = count + mask[:, t]
            out[:, t] = future / count.clamp(min=1) if length_norm else future
        else:
            out[:, t] = future / count.clamp(min=1) if length_norm else future
            future = rewards[:, t] + gamma * future
            count = count + mask[:, t]
    return out * mask


def whiten(values: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor | None = None,
           var: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """(values − mean) / std over the masked entries (or the given global mean/var); 0 where masked."""
    mask = mask.to(values.dtype)
    if mean is None:
        n = mask.sum().clamp(min=1)
        mean = (values * mask).sum() / n
        var = (((values - mean) * mask) ** 2).sum() / n
    return (values - mean) * torch.rsqrt(var + eps) * mask


# ---------------------------------------------------------------------------------------------- policy term
class _TokenLogProbs(torch.autograd.Function):
    """log softmax(logits[i])[targets[i]] for the flat `positions`, chunk by chunk: only (chunk, V)
    temporaries; the backward recomputes each chunk's softmax from the logits and the saved logsumexp."""

    @staticmethod
    def forward(ctx, logits, positions, targets, chunk_size, vocab_size):
        rows = logits.detach().reshape(-1, logits.shape[-1])  # (B*T, V')
        y = targets.reshape(-1).index_select(0, positions)  # (n,)
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        out = torch.empty(positions.numel(), dtype=dtype, device=logits.device)
        lse = torch.empty_like(out)
        for start in range(0, positions.numel(), chunk_size):
            s = rows.index_select(0, positions[start:start + chunk_size])[:, :vocab_size].to(dtype)  # (c, V)
            lse[start:start + chunk_size] = torch.logsumexp(s, dim=-1)
            out[start:start + chunk_size] = s.gather(1, y[start:start + chunk_size, None]).squeeze(1)
        ctx.save_for_backward(logits, positions, y, lse)
        ctx.chunk_size, ctx.vocab_size = chunk_size, vocab_size
        return out - lse

    @staticmethod
    def backward(ctx, grad_out):
        logits, positions, y, lse = ctx.saved_tensors
        rows = logits.detach().reshape(-1, logits.shape[-1])
        grad = torch.zeros_like(rows)  # (B*T, V')
        v, c = ctx.vocab_size, ctx.chunk_size
        for start in range(0, positions.numel(), c):
            idx, g = positions[start:start + c], grad_out[start:start + c].to(lse.dtype)  # (c,), (c,)
            s = rows.index_select(0, idx)[:, :v].to(lse.dtype)  # (c, V)
            chunk = -g[:, None] * torch.exp(s - lse[start:start + c, None])  # −g·softmax
            chunk.scatter_add_(1, y[start:start + c, None], g[:, None])  # + g at the target
            grad[:, :v].index_copy_(0, idx, chunk.to(rows.dtype))  # padding columns stay 0
        return grad.view_as(logits), None, None, None, None


def token_logprobs(logits: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor, chunk_size: int = 64,
                   vocab_size: int | None = None) -> torch.Tensor:
    """log q(target) at the flat `positions` of (B, T, V) logits, (n,), differentiable w.r.t. the logits."""
    return _TokenLogProbs.apply(logits, positions, targets, chunk_size, vocab_size or logits.shape[-1])


def clipped_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, log_w: torch.Tensor,
                        advantages: torch.Tensor, cliprange: float) -> torch.Tensor:
    """Per token: max(−A·ρw, −A·clip(ρw, 1−ε, 1+ε)), ρ = exp(log q − log q_old), w = exp(log_w)."""
    ratio = torch.exp(logprobs - old_logprobs + log_w)
    return torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange))


# ---------------------------------------------------------------------------------------------- objective
class MiniLLMObjective(Objective):
    """Terms of one micro-batch that stacks rollout rows (`rollout` True: prompt + sampled response,
    with `old_logprobs`, `log_w` and `advantages` per response token) and plain-text rows (LM loss):

        pg   Σ clipped policy loss over response tokens             (weight 1)
        reg  Σ KL(q_θ(·|y<t) ‖ p(·|y<t)) over response tokens       (weight 1 with --single_step_reg, else
                                                                     logged only: the rollouts' reverse KL)
        lm   Σ −log q on the plain text                             (weight lm_coef·(1 − kd_ratio))
        kd   Σ KL(p ‖ q) on the plain text                          (weight lm_coef·kd_ratio)

    each averaged over its tokens of the whole optimizer step (rollout tokens for pg/reg, text for lm/kd).
    All per-token tensors are aligned with `labels`: the logit at t scores the label at t+1."""

    forward_kwargs = {"use_cache": False}

    def __init__(self, *, vocab_size: int, single_step_reg: bool = True, cliprange: float = 0.2,
                 lm_coef: float = 1.0, kd_ratio: float = 0.5, has_lm_data: bool = True, chunk_size: int = 64):
        self.weights = {"pg": 1.0, "reg": 1.0 if single_step_reg else 0.0}
        if has_lm_data and lm_coef > 0:
            self.weights |= {"lm": lm_coef * (1.0 - kd_ratio)} | ({"kd": lm_coef * kd_ratio} if kd_ratio > 0 else {})
        self.vocab_size, self.cliprange, self.chunk_size = vocab_size, cliprange, chunk_size
        self.reverse_kl = token_divergence("reverse_kl")
        self.forward_kl = token_divergence("forward_kl")
        self.output_layers = None  # (student's, teacher's): set by `fuse_output_layers`

    def fuse_output_layers(self, student_layer, teacher_layer) -> None:
        """As lm/objective.py's: the training forwards return final hidden states (and the last position's
        logits only), and every term projects them through the output layers chunk by chunk, so neither
        model's (B, T, V) logits nor the student's logit gradient exist."""
        self.output_layers = (student_layer, teacher_layer)
        self.forward_kwargs = self.forward_kwargs | {"output_hidden_states": True, "logits_to_keep": 1}

    @staticmethod
    def _shift(x: torch.Tensor, fill) -> torch.Tensor:
        return torch.cat([x[:, 1:], torch.full_like(x[:, :1], fill)], dim=1)  # (B, T): value for logit t

    def positions(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(flat rollout positions, flat plain-text positions, targets (B, T))."""
        labels = self._shift(batch["labels"], IGNORE)  # (B, T)
        scored = labels != IGNORE
        rollout = batch["rollout"].bool()[:, None]  # (B, 1)
        flat = lambda m: m.flatten().nonzero().squeeze(1)  # noqa: E731
        return flat(scored & rollout), flat(scored & ~rollout), labels.clamp(min=0)

    def counts(self, batch):
        rl, lm, _ = self.positions(batch)
        return {k: float(rl.numel() if k in ("pg", "reg") else lm.numel()) for k in self.weights}

    def loss_sums(self, batch, student_outputs, teacher_outputs):
        if self.output_layers is not None:
            return self._fused_loss_sums(batch, student_outputs, teacher_outputs)
        s_logits = student_outputs.logits  # (B, T, V')
        t_logits = teacher_outputs.logits  # (B, T, V'')
        rl, lm, targets = self.positions(batch)
        at = lambda key: self._shift(batch[key], 0.0).flatten().index_select(0, rl)  # noqa: E731  (n,)
        def policy_sum(s):
            logq = token_logprobs(s, rl, targets, self.chunk_size, self.vocab_size)  # (n,)
            return clipped_policy_loss(logq, at("old_logprobs"), at("log_w"), at("advantages"), self.cliprange).sum()

        # Every term through `self.term`: one of weight 0 is computed for the logs without autograd (reg
        # without --single_step_reg: the rollouts' reverse KL; lm at --kd_ratio 1), so its chunked loss makes
        # no gradient pass over the vocabulary.
        sums = {"pg": self.term("pg", policy_sum, s_logits),
                "reg": self.term("reg", chunked_divergence_sum, s_logits, t_logits, rl, self.reverse_kl,
                                 self.chunk_size, self.vocab_size)}
        if "lm" in self.weights:
            sums["lm"] = self.term("lm", chunked_cross_entropy_sum, s_logits, lm, targets, self.chunk_size,
                                   self.vocab_size)
        if "kd" in self.weights:
            sums["kd"] = self.term("kd", chunked_divergence_sum, s_logits, t_logits, lm, self.forward_kl,
                                   self.chunk_size, self.vocab_size)
        return sums

    def _fused_loss_sums(self, batch, student_outputs, teacher_outputs):
        """The same four sums from final hidden states. pg needs log q per rollout token (its weight on a token
        depends on log q through the PPO ratio): losses/fused_logprobs.py. reg (reverse KL on the rollout
        tokens) and lm + kd (CE and forward KL on the text tokens, which share their count, so their weights
        are known up to that common count) are losses/fused_vocab.py sums, gradient computed in the forward."""
        rl, lm, targets = self.positions(batch)
        student_layer, teacher_layer = self.output_layers
        h_s = student_outputs.hidden_states[-1].flatten(0, 1)  # (B*T, H)
        h_t = teacher_outputs.hidden_states[-1].flatten(0, 1)  # (B*T, H_t)
        w_t, b_t = gathered(teacher_layer.weight, h_t), gathered(teacher_layer.bias, h_t)  # (whole under --fsdp)
        y = targets.flatten()  # (B*T,)
        at = lambda key: self._shift(batch[key], 0.0).flatten().index_select(0, rl)  # noqa: E731  (n,)

        def policy_sum():
            logq = fused_token_logprobs(h_s.index_select(0, rl), student_layer.weight, student_layer.bias,
                                        y.index_select(0, rl), self.vocab_size, self.chunk_size)  # (n,)
            return clipped_policy_loss(logq, at("old_logprobs"), at("log_w"), at("advantages"), self.cliprange).sum()

        def vocab_sums(positions, terms, divergence, ratios):
            # (under logged_term's no_grad, for a term of weight 0, the ratios are ignored; they are exact: the
            # call's terms share their count, so the teacher's tensors need not outlive the forward)
            return fused_vocab_loss_sums(h_s.index_select(0, positions), student_layer.weight, student_layer.bias,
                                         teacher_hidden=h_t.index_select(0, positions), teacher_weight=w_t,
                                         teacher_bias=b_t, targets=y.index_select(0, positions), terms=terms,
                                         divergence=divergence, vocab_size=self.vocab_size,
                                         chunk_size=self.chunk_size, grad_ratios=ratios, keep_teacher=False)

        sums = {"pg": self.term("pg", policy_sum),
                "reg": self.term("reg", lambda: vocab_sums(rl, ("kd",), "reverse_kl", {"kd": 1.0})["kd"])}
        text_terms = {"lm": "ce", "kd": "kd"}
        wanted = {name: term for name, term in text_terms.items() if name in self.weights}
        if wanted:
            weights = {term: self.weights[name] for name, term in wanted.items()}
            if any(weights.values()):
                text = vocab_sums(lm, tuple(wanted.values()), "forward_kl", {k: w for k, w in weights.items() if w})
            else:  # (every text term logged only)
                with torch.no_grad():
                    text = vocab_sums(lm, tuple(wanted.values()), "forward_kl", None)
            sums |= {name: text[term].detach() if self.weights[name] == 0 else text[term]
                     for name, term in wanted.items()}
        return sums
