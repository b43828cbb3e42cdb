"""Flags of the generation-based methods of train_lm_distill.py (`--method minillm|seqkd`) and of
generation evaluation. Names follow the MiniLLM scripts (`--reward-scaling` is `--reward_scaling`,
...); defaults are the paper's (the released scripts differ in `--gamma`: 0.95)."""
from __future__ import annotations

from dataclasses import dataclass, field

from distill.errors import UsageError

METHODS = ("kd", "minillm", "seqkd")
EVAL_METRICS = ("perplexity", "rougeL")


@dataclass
class MiniLLMArguments:
    _argument_group_name = "MiniLLM and SeqKD"
    method: str = field(default="kd", metadata={"help": "kd: token-level distillation (or, without a teacher, "
                                                        "plain LM / SFT training); minillm: reverse KL by policy "
                                                        "gradient; seqkd: fine-tune on the teacher's responses."})
    teacher_mix_alpha: float = field(default=0.2, metadata={"range": "[0, 1]", "aliases": ["--teacher_mixed_alpha"],
                                                            "help": "α of rollouts sampled from α·p + (1−α)·q."})
    reward_scaling: float = field(default=0.5,
                                  metadata={"help": "Rewards log p − log q are divided by this.", "range": "> 0"})
    cliprange_reward: float = field(default=100.0,
                                    metadata={"help": "Rewards are clipped to ± this (0: off).", "range": ">= 0"})
    gamma: float = field(default=1.0, metadata={"help": "Discount of future rewards (the paper: 1; the released "
                                                        "code: 0.95).", "range": "(0, 1]"})
    length_norm: bool = field(default=True, metadata={"help": "Divide each return by the number of tokens it "
                                                              "sums (--no_length_norm: off)."})
    single_step_reg: bool = field(default=True, metadata={"help": "Add the exact per-token reverse KL over the "
                                                                  "vocabulary (the gradient's single-step part)."})
    whiten_advantages: bool = field(default=True, metadata={"help": "Whiten advantages over the rollout batch."})
    cliprange: float = field(default=0.2, metadata={"range": ">= 0", "help": "PPO clip of the ratio ρ·w to 1 ± this."})
    ppo_epochs: int = field(default=4, metadata={"range": ">= 1", "help": "Passes over each collection of rollouts."})
    num_rollouts: int = field(default=256,
                              metadata={"help": "Rollouts per collection (all processes).", "range": ">= 1"})
    chunk_size: int = field(default=16,
                            metadata={"help": "Prompts sampled together (generation batch).", "range": ">= 1"})
    lm_coef: float = field(default=1.0, metadata={"help": "Weight of the plain-text term (1 − kd_ratio)·CE + "
                                                          "kd_ratio·KL(p‖q) (--kd_ratio, default 0.5).",
                                                  "range": ">= 0"})
    lm_train_file: str | None = field(default=None, metadata={"help": "Plain-text corpus (.txt/.jsonl 'text') of "
                                                                      "the LM term; none: no LM term."})
    lm_batch_size: int | None = field(default=None, metadata={"help": "Plain-text sequences per micro-batch "
                                                                      "(default: the per-device batch).",
                                                              "range": ">= 1"})
    max_prompt_length: int = field(default=256, metadata={"range": ">= 1", "help": "Prompts keep their last N tokens."})
    seqkd_file: str | None = field(default=None, metadata={"help": "jsonl of the teacher's responses (SeqKD): "
                                                                   "reused when it matches, else written; default: in "
                                                                   "--data_cache_dir, keyed by teacher, prompts and "
                                                                   "sampling."})

    def validate(self, has_teacher: bool) -> None:
        if self.method not in METHODS:
            raise UsageError(f"--method {self.method!r} is unknown; choose one of {', '.join(METHODS)}")
        if self.method != "kd" and not has_teacher:
            raise UsageError(f"--method {self.method} needs a teacher (--teacher_name_or_path)")


@dataclass
class GenerationArguments:
    """Sampling (MiniLLM rollouts, SeqKD responses, evaluation) and generation evaluation."""
    _argument_group_name = "generation and Rouge-L evaluation"
    max_new_tokens: int = field(default=128,
                                metadata={"help": "Tokens generated per response at most.", "range": ">= 1"})
    gen_temperature: float = field(default=1.0,
                                   metadata={"help": "Sampling temperature (the paper: 1).", "range": "[0.01, 1000]"})
    top_p: float = field(default=1.0, metadata={"range": "(0, 1]", "help": "Nucleus sampling mass (the paper: 1)."})
    eval_metric: str | None = field(default=None, metadata={"help": "perplexity or rougeL (Rouge-L F of sampled "
                                                                     "responses, ×100). Default: rougeL for minillm "
                                                                     "and seqkd, perplexity for kd."})
    eval_seeds: str = field(default="10,20,30", metadata={"help": "Sampling seeds of the Rouge-L evaluation; the "
                                                                  "metrics are averaged over them."})

    def validate(self) -> None:
        if self.eval_metric is not None and self.eval_metric not in EVAL_METRICS:
            raise UsageError(f"--eval_metric {self.eval_metric!r} is unknown; choose one of {', '.join(EVAL_METRICS)}")
        self.seeds()

    def seeds(self) -> list[int]:
        try:
            return [int(s) for s in self.eval_seeds.split(",") if s.strip()] or [0]
        except ValueError:
            raise UsageError(f"--eval_seeds {self.eval_seeds!r}: give comma-separated integers, e.g. 10,20,30"
                             ) from None

    def resolved_metric(self, method: str) -> str:
        return self.eval_metric or ("perplexity" if method == "kd" else "rougeL")
