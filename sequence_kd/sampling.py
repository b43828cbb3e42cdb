"""Token-by-token sampling from a student, optionally mixed with a teacher, with KV caches.

MiniLLM samples its rollouts from p̃ = α·p_teacher + (1−α)·q_student (teacher-mixed sampling: the
teacher keeps early, poor students from drifting into text it would never write) and needs, for every
sampled token, log q (the old policy), log p (the reward) and log p̃ (the importance weight q/p̃).

Both models keep a KV cache: each step feeds one new token per sequence, so a step costs O(length) in
attention instead of re-encoding the whole prefix (`use_cache=False` does that, for tests and the
benchmark). Prompts are left-padded so every sequence's next token is at the same column; position
ids count real tokens only, so a left-padded prompt gets the same positions as an unpadded one.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distill.sharding import all_processes


@dataclass
class Samples:
    """Generated continuations, (B, N) each, N ≤ max_new_tokens. Positions after a sequence's EOS are
    padding (mask 0). Log-probabilities are of the sampled tokens: under the student at τ = 1
    (`student_logprobs`), the teacher at τ = 1 (`teacher_logprobs`, None without a teacher) and the
    distribution actually sampled from (`sample_logprobs`: the mixture after temperature and top-p)."""
    tokens: torch.Tensor
    mask: torch.Tensor
    student_logprobs: torch.Tensor
    teacher_logprobs: torch.Tensor | None
    sample_logprobs: torch.Tensor

    def responses(self) -> list[list[int]]:
        """Each sequence's generated ids (up to and including its EOS)."""
        return [row[m.bool()].tolist() for row, m in zip(self.tokens.cpu(), self.mask.cpu())]


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, P), attention mask (B, P)) with each prompt right-aligned."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def top_p_filter(log_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Log-probabilities (B, V) restricted to the smallest set of tokens whose mass reaches top_p
    (nucleus sampling), renormalised; tokens outside get -inf. top_p = 1 keeps everything."""
    if top_p >= 1.0:
        return log_probs
    sorted_lp, order = log_probs.sort(dim=-1, descending=True)  # (B, V)
    mass_before = sorted_lp.exp().cumsum(-1) - sorted_lp.exp()  # (B, V) mass of the tokens ranked above
    drop_sorted = mass_before >= top_p  # the top token always stays (mass before it is 0)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return torch.log_softmax(log_probs.masked_fill(drop, float("-inf")), dim=-1)


class _Stepper:
    """One model's next-token logits as the sequences grow, with or without a KV cache."""

    def __init__(self, model, ids: torch.Tensor, mask: torch.Tensor, use_cache: bool, vocab_size: int):
        self.model, self.use_cache, self.vocab_size = model, use_cache, vocab_size
        self.ids, self.mask, self.past = ids, mask, None
        # only the last position's logits are read: (B, 1, V), not (B, T, V), where the forward allows it
        self.last_only = ({"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters
                          else {})

    def _forward(self, ids, mask, positions):
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=self.past,
                         use_cache=self.use_cache, **self.last_only)
        if self.use_cache:
            self.past = out.past_key_values
        return out.logits[:, -1, :self.vocab_size].float()  # (B, V)

    def first(self) -> torch.Tensor:
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
        return self._forward(self.ids, self.mask, positions)

    def next(self, token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits after appending `token` (B,); `mask` is the full attention mask including it."""
        positions = (mask.sum(-1, keepdim=True) - 1)  # (B, 1): the new token's position
        if self.use_cache:
            return self._forward(token[:, None], mask, positions)
        self.ids = torch.cat([self.ids, token[:, None]], dim=1)  # re-encode the whole prefix
        return self._forward(self.ids, mask, (mask.cumsum(-1) - 1).clamp(min=0))


@torch.no_grad()
def sample(student, prompts: list[list[int]], *, max_new_tokens: int, eos_id: int | None, pad_id: int,
           vocab_size: int, teacher=None, teacher_mix_alpha: float = 0.0, temperature: float = 1.0,
           top_p: float = 1.0, generator: torch.Generator | None = None, use_cache: bool = True) -> Samples:
    """Sample continuations of `prompts` (token-id lists) from α·p + (1−α)·q, where q is `student`'s
    next-token distribution and p `teacher`'s (α = `teacher_mix_alpha`; without a teacher, q alone),
    then temperature and top-p. Both models run in eval mode (no dropout) and are restored after."""
    if teacher is None and teacher_mix_alpha > 0:
        raise ValueError("teacher_mix_alpha > 0 needs a teacher")
    models = [m for m in (student, teacher) if m is not None]
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    device = next(student.parameters()).device
    ids, mask = left_pad(prompts, pad_id, device)
    steppers = [_Stepper(m, ids, mask, use_cache, vocab_size) for m in models]
    logits = [s.first() for s in steppers]
    batch = len(prompts)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    columns: dict[str, list[torch.Tensor]] = {"tokens": [], "mask": [], "student": [], "teacher": [], "sample": []}
    log_alpha = math.log(teacher_mix_alpha) if teacher_mix_alpha > 0 else float("-inf")
    log_1m_alpha = math.log1p(-teacher_mix_alpha) if teacher_mix_alpha < 1 else float("-inf")
    for _ in range(max_new_tokens):
        live = ~done
        if not bool(live.any()):  # (--fsdp only: this process's sequences ended, another process's go on)
            token = torch.full((batch,), pad_id, dtype=torch.long, device=device)
            if all_processes(True, models):  # (the same vote as the stop below, once per token)
                break
            mask = torch.cat([mask, live.long()[:, None]], dim=1)
            logits = [s.next(token, mask) for s in steppers]
            continue
        log_q = F.log_softmax(logits[0], dim=-1)  # (B, V)
        log_p = F.log_softmax(logits[1], dim=-1) if teacher is not None else None  # (B, V)
        # log(α p + (1−α) q); exact at the ends: α = 0 gives log q bit for bit, α = 1 log p.
        log_mix = log_q if log_p is None else torch.logaddexp(log_p + log_alpha, log_q + log_1m_alpha)
        log_sample = top_p_filter(F.log_softmax(log_mix / temperature, dim=-1) if temperature != 1.0 else log_mix,
                                  top_p)
        token = torch.multinomial(log_sample.exp(), 1, generator=generator).squeeze(1)  # (B,)
        token = torch.where(live, token, torch.full_like(token, pad_id))
        columns["tokens"].append(token)
        columns["mask"].append(live.long())
        columns["student"].append(log_q.gather(1, token[:, None]).squeeze(1))
        if log_p is not None:
            columns["teacher"].append(log_p.gather(1, token[:, None]).squeeze(1))
        columns["sample"].append(log_sample.gather(1, token[:, None]).squeeze(1))
        if eos_id is not None:
            done = done | (live & (token == eos_id))
        # A sharded model's forward is a collective: processes stop together, when every one's sequences have
        # ended (one that ended first keeps feeding pad tokens, without drawing random numbers or columns).
        if all_processes(bool(done.all()), models):
            break
        mask = torch.cat([mask, live.long()[:, None]], dim=1)  # finished sequences stop attending to pads
        logits = [s.next(token, mask) for s in steppers]
    for m, mode in zip(models, modes):
        m.train(mode)
    stack = lambda k: torch.stack(columns[k], dim=1) if columns[k] else None  # noqa: E731
    live_mask = stack("mask")
    zero = lambda t: t.masked_fill(live_mask == 0, 0.0) if t is not None else None  # noqa: E731
    return Samples(stack("tokens"), live_mask, zero(stack("student")), zero(stack("teacher")), zero(stack("sample")))
