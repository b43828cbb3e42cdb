"""MiniLLM's batch source: rollouts collected with the current student, then PPO passes over them.

For the trainer an "epoch" here is one collection: `num_rollouts` prompts (over all processes) are
answered by teacher-mixed sampling with the student as it is now (the old policy q_old); rewards,
advantages and importance weights are computed once; then `ppo_epochs` shuffled passes over the
rollouts give the optimizer steps, each micro-batch stacked with a batch of plain text for the LM
term. The rollout buffer is part of the checkpoint, so a run resumed in the middle of a collection
trains on the very same rollouts.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from distill.batching import PaddingCollator, TokenizedDataset, TrainBatchOrder
from distill.errors import UsageError
from distill.plugins import StepContext
from lm.data import IGNORE
from sequence_kd.minillm import returns, token_rewards, whiten
from sequence_kd.sampling import sample

logger = logging.getLogger(__name__)


class RolloutCollator(PaddingCollator):
    """Pads the per-token rollout columns too (with 0: padding is never scored)."""

    PAD_VALUES = PaddingCollator.PAD_VALUES | {"old_logprobs": 0.0, "log_w": 0.0, "advantages": 0.0}


class RolloutSource:
    """A batch source (`BatchSource` in distill/plugins.py) whose training sequences are made while training."""

    dataset = None  # no fixed training set (a teacher-output cache cannot serve it)

    def __init__(self, *, prompts: list[list[int]], teacher, args, sampling: dict, batch_size: int,
                 accumulation_steps: int, seed: int, pad_id: int, world_size: int = 1, rank: int = 0,
                 lm_dataset: TokenizedDataset | None = None, lm_batch_size: int | None = None):
        """`args`: MiniLLMArguments; `sampling`: the keyword arguments of `sample` (max_new_tokens,
        eos_id, pad_id, vocab_size, temperature, top_p)."""
        global_batch = batch_size * accumulation_steps * world_size
        if args.num_rollouts % global_batch:
            raise UsageError(f"--num_rollouts {args.num_rollouts} must be a multiple of the global batch "
                             f"{global_batch} (per-device batch × accumulation × processes)")
        self.prompts, self.teacher, self.args, self.sampling = prompts, teacher, args, sampling
        self.batch_size, self.accumulation, self.seed = batch_size, accumulation_steps, seed
        self.world_size, self.rank = world_size, rank
        self.local_rollouts = args.num_rollouts // world_size
        self.num_examples = args.num_rollouts
        self.collator = RolloutCollator(pad_id)
        self.lm_dataset = lm_dataset
        self.lm_order = None
        if lm_dataset is not None:
            self.lm_order = TrainBatchOrder(lm_dataset.lengths, lm_batch_size or batch_size, seed + 1,
                                            world_size=world_size, rank=rank)
        self._lm_epoch_cache: tuple[int, list] | None = None
        self.buffer: dict | None = None

    # ------------------------------------------------------------------ schedule
    def steps_per_pass(self) -> int:
        return self.local_rollouts // (self.batch_size * self.accumulation)

    def steps_per_epoch(self) -> int:
        return self.args.ppo_epochs * self.steps_per_pass()

    def epoch_prompts(self, collection: int) -> list[int]:
        """This process's prompt indices for a collection: consecutive slices of an endless stream of
        seeded permutations of the prompts (one permutation per pass over them)."""
        n, start = len(self.prompts), collection * self.args.num_rollouts + self.rank * self.local_rollouts
        passes = {}
        out = []
        for k in range(start, start + self.local_rollouts):
            epoch, i = divmod(k, n)
            if epoch not in passes:
                passes[epoch] = np.random.default_rng([self.seed, 7, epoch]).permutation(n)
            out.append(int(passes[epoch][i]))
        return out

    # ------------------------------------------------------------------ collection
    @torch.no_grad()
    def collect(self, collection: int, ctx: StepContext) -> None:
        args, device = self.args, ctx.device
        student = ctx.unwrapped_student
        seed = int(np.random.SeedSequence([self.seed, collection, self.rank]).generate_state(1)[0])
        generator = torch.Generator(device=device).manual_seed(seed)
        rows = []
        indices = self.epoch_prompts(collection)
        for start in range(0, len(indices), args.chunk_size):
            prompts = [self.prompts[i] for i in indices[start:start + args.chunk_size]]
            with ctx.autocast():
                out = sample(student, prompts, teacher=self.teacher, teacher_mix_alpha=args.teacher_mix_alpha,
                             generator=generator, **self.sampling)
            mask = out.mask.float()  # (b, N)
            rewards = token_rewards(out.teacher_logprobs, out.student_logprobs, mask, args.reward_scaling,
                                    args.cliprange_reward)
            adv = returns(rewards, mask, args.gamma, include_current=not args.single_step_reg,
                          length_norm=args.length_norm)
            log_w = (out.student_logprobs - out.sample_logprobs) * mask  # log q_old − log p̃
            for i, prompt in enumerate(prompts):
                n = int(mask[i].sum())
                rows.append({"prompt": prompt, "response": out.tokens[i, :n].tolist(),
                             "old_logprobs": out.student_logprobs[i, :n].tolist(), "log_w": log_w[i, :n].tolist(),
                             "advantages": adv[i, :n].tolist(),
                             "reverse_kl": float(-(out.teacher_logprobs[i, :n] - out.student_logprobs[i, :n]).sum())})
        if args.whiten_advantages:
            self._whiten(rows, ctx)
        self.buffer = {"collection": collection, "rows": rows}
        lengths = [len(r["response"]) for r in rows]
        logger.info("collection %d: %d rollouts, mean response length %.1f, sequence reverse KL %.3f", collection,
                    len(rows), float(np.mean(lengths)), float(np.mean([r["reverse_kl"] for r in rows])))

    def _whiten(self, rows: list[dict], ctx: StepContext) -> None:
        """Advantages whitened with the mean and variance over every process's rollout tokens."""
        values = torch.tensor([a for r in rows for a in r["advantages"]], dtype=torch.float64)
        stats = torch.stack([torch.tensor(float(values.numel()), dtype=torch.float64), values.sum(),
                             (values ** 2).sum()]).to(ctx.device)
        n, total, squares = ctx.reduce_sum(stats).cpu().tolist()
        mean = total / max(n, 1.0)
        var = max(squares / max(n, 1.0) - mean * mean, 0.0)
        out = whiten(values, torch.ones_like(values), torch.tensor(mean, dtype=torch.float64),
                     torch.tensor(var, dtype=torch.float64)).tolist()
        k = 0
        for r in rows:
            r["advantages"] = out[k:k + len(r["advantages"])]
            k += len(r["advantages"])

    # ------------------------------------------------------------------ batches
    def _rollout_item(self, row: dict) -> dict:
        n_prompt, resp = len(row["prompt"]), row["response"]
        ids = row["prompt"] + resp
        zeros = [0.0] * n_prompt
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE] * n_prompt + resp,
                "old_logprobs": zeros + row["old_logprobs"], "log_w": zeros + row["log_w"],
                "advantages": zeros + row["advantages"], "rollout": 1}

    def _lm_items(self, micro_index: int) -> list[dict]:
        order, n = self.lm_order, self.lm_order.num_batches()
        epoch, i = divmod(micro_index, n)
        if self._lm_epoch_cache is None or self._lm_epoch_cache[0] != epoch:
            self._lm_epoch_cache = (epoch, order.epoch_batches(epoch))
        items = []
        for j in self._lm_epoch_cache[1][i]:
            item = self.lm_dataset[j]
            zeros = [0.0] * len(item["input_ids"])
            items.append({"input_ids": item["input_ids"], "attention_mask": item["attention_mask"],
                          "labels": item["labels"], "old_logprobs": zeros, "log_w": zeros, "advantages": zeros,
                          "rollout": 0})
        return items

    def epoch_steps(self, epoch: int, skip: int, ctx: StepContext):
        if self.buffer is None or self.buffer["collection"] != epoch:  # (a resumed run has it from the checkpoint)
            self.collect(epoch, ctx)
        rows, per_pass = self.buffer["rows"], self.steps_per_pass()
        for step in range(skip, self.steps_per_epoch()):
            ppo_epoch, k = divmod(step, per_pass)
            perm = np.random.default_rng([self.seed, 11, epoch, ppo_epoch]).permutation(len(rows))
            micro = []
            for a in range(self.accumulation):
                idx = perm[(k * self.accumulation + a) * self.batch_size:][:self.batch_size]
                items = [self._rollout_item(rows[i]) for i in idx]
                if self.lm_order is not None:
                    items += self._lm_items((epoch * self.steps_per_epoch() + step) * self.accumulation + a)
                micro.append(self.collator(items))
            yield micro

    def state_dict(self) -> dict:
        return {"buffer": self.buffer}

    def load_state_dict(self, state: dict) -> None:
        self.buffer = state.get("buffer")
