"""Flags of train_lm_distill.py: the names of HF's research_projects/distillation (train.py) where they
exist, token-level divergence flags for causal LMs, and the map from the original pipeline's flag
names onto ours (`--dump_path` is our `--output_dir`, ...). A command with `--dump_path` runs in that
pipeline's mode (lm/pipeline.py)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from distill.args import TrainingArguments
from distill.errors import UsageError
from losses.token_kd import TOKEN_DIVERGENCES

logger = logging.getLogger(__name__)

# The original pipeline's flags -> ours (same meaning). `--group_by_size` there turned grouping OFF (a
# store_false flag); here it asks for what its name says, which is already the default.
ORIGINAL_FLAGS = {
    "--dump_path": "--output_dir",
    "--force": "--overwrite_output_dir",
    "--n_epoch": "--num_train_epochs",
    "--batch_size": "--per_device_train_batch_size",
    "--warmup_prop": "--warmup_ratio",
    "--teacher_name": "--teacher_name_or_path",
    "--data_file": "--train_file",
    "--log_interval": "--logging_steps",
    "--checkpoint_interval": "--save_steps",
    "--group_by_size": "--group_by_length",
    "--student_name": "--model_name_or_path",
    "--preprocessed_token_counts": "--token_counts",
}


def original_flags_help() -> str:
    """The end of --help: the original pipeline's flag names this script also takes."""
    pairs = ", ".join(f"{old} = {new}" for old, new in ORIGINAL_FLAGS.items())
    return (f"The DistilBERT pipeline's flags are taken too: {pairs}. A command that names its output dir "
            "--dump_path runs in that pipeline's mode (one sequence per line, its files in the dump path; see "
            "docs/papers_commands.md).")


def translate_original_flags(argv: list[str]) -> list[str]:
    """argv with the original pipeline's flag names replaced by ours; a flag given under both names
    is refused (which one should win is the user's call)."""
    out, seen = [], {}
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name in ORIGINAL_FLAGS:
            name = ORIGINAL_FLAGS[name]
        if name.startswith("--"):
            if name in seen and seen[name] != arg.partition("=")[0]:
                raise UsageError(f"{seen[name]} and {arg.partition('=')[0]} are the same flag ({name}); pass it once")
            seen[name] = arg.partition("=")[0]
        out.append(name + eq + value)
    return out


@dataclass
class LMModelArguments:
    _argument_group_name = "model (student and teacher)"
    teacher_model: str | None = field(
        default=None, metadata={"aliases": ["--teacher_name_or_path"],
                                "help": "Teacher LM: Hub id or local dir (alias of the original --teacher_name). "
                                        "Omit to train the student alone (this is how teachers are made)."})
    teacher_type: str | None = field(default=None, metadata={"help": "bert, roberta, gpt2, llama, ...: checked "
                                                                     "against the teacher's config."})
    teacher_pretrained: str | None = field(
        default=None, metadata={"help": "The teacher's weights, every one of them: a state-dict file (.pth/.pt/.bin, "
                                        "tensors only) or .safetensors, or a dir holding one; --teacher_name then "
                                        "gives only the architecture (its config) and the tokenizer."})
    model_name_or_path: str | None = field(
        default=None, metadata={"aliases": ["--student_name_or_path"],
                                "help": "Pretrained student (Hub id or local dir; alias of the original "
                                        "--student_name). Or build it with --student_config and/or "
                                        "--student_layers."})
    student_type: str | None = field(default=None, metadata={"help": "distilbert, bert, roberta, gpt2, llama, ...: "
                                                                     "checked against the student's config."})
    student_config: str | None = field(default=None, metadata={"help": "Config json (or model dir) of a student "
                                                                       "built from scratch."})
    student_pretrained_weights: str | None = field(
        default=None, metadata={"help": "Weights for the --student_config student, every one of them: a "
                                        ".safetensors/.pth state dict (e.g. made by an extraction script) or a dir "
                                        "holding one."})
    student_layers: str | None = field(
        default=None, metadata={"help": "Comma-separated teacher layer ids, e.g. 0,2,4,7,9,11: the student copies "
                                        "these layers and the embeddings/head of the teacher. A DistilBERT student "
                                        "from a BERT teacher is converted exactly."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer (default: the teacher's, else "
                                                                       "the student's)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are stored."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    freeze_pos_embs: bool = field(default=False, metadata={"help": "Freeze the student's position embeddings."})
    freeze_token_type_embds: bool = field(default=False, metadata={"help": "Freeze the student's token type "
                                                                           "embeddings."})


@dataclass
class LMDataArguments:
    _argument_group_name = "data"
    train_file: str | None = field(default=None, metadata={"help": "Raw text (.txt, documents separated by blank "
                                                                   "lines; with --dump_path one sequence per line) "
                                                                   "or .jsonl with 'text', or 'prompt' and "
                                                                   "'response' fields (loss on responses only). "
                                                                   "Alias: --data_file."})
    validation_file: str | None = field(default=None, metadata={"help": "Held-out text/jsonl for perplexity."})
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Without --validation_file: the LAST this-many percent of the training "
                                       "file's documents are held out (contiguous, so no passage leaks).",
                               "range": "[0, 100)"})
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset with a 'text' column "
                                                                     "(online), e.g. wikitext."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its config, e.g. "
                                                                            "wikitext-2-raw-v1."})
    max_seq_length: int = field(default=512,
                                metadata={"help": "Sequences are chunked to this many tokens.", "range": ">= 2"})
    group_by_length: bool = field(default=True, metadata={"help": "Length-grouped batches (alias of the "
                                                                  "original --group_by_size)."})
    data_cache_dir: str | None = field(
        default=None, metadata={"help": "Where tokenised data and token counts are cached and reused "
                                        "(default $XDG_CACHE_HOME/distill/lm_data, or ~/.cache/distill/lm_data)."})
    preprocessed_data_file: str | None = field(
        default=None, metadata={"help": "Explicit cache file for the tokenised data (.npz): reused when it exists "
                                        "(and was made from the same data and tokenizer), written otherwise. With "
                                        "--dump_path, default <dump_path>/<tokenizer name>.data.npz."})
    token_counts: str | None = field(default=None, metadata={"help": "Token counts for --mlm_smoothing (.npy; alias "
                                                                     "--preprocessed_token_counts): read when it "
                                                                     "exists, written otherwise. Default: computed "
                                                                     "once and cached (with --dump_path, written to "
                                                                     "<dump_path>/<tokenizer name>.token_counts.npy)."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-tokenise even when a cache exists."})
    max_train_samples: int | None = field(default=None,
                                          metadata={"help": "Keep the first N training sequences.", "range": ">= 1"})
    max_eval_samples: int | None = field(default=None,
                                         metadata={"help": "Keep the first N held-out sequences.", "range": ">= 1"})


@dataclass
class LMLossArguments:
    """L = α_ce·τ²·D(p_t^τ, p_s^τ) + α_mlm·MLM + α_clm·CLM + α_mse·MSE(s, t) + α_cos·(1 − cos(h_s, h_t)),
    D = --kd_loss (forward KL: DistilBERT's loss). Or --kd_ratio r: r·D + (1 − r)·LM (MiniLLM's mix)."""
    _argument_group_name = "loss: KD, MLM/CLM and feature terms"
    mlm: bool = field(default=False, metadata={"help": "Masked LM (BERT/RoBERTa/DistilBERT); else causal LM."})
    alpha_ce: float | None = field(default=None,
                                   metadata={"help": "Weight of the distillation term (0.5).", "range": ">= 0"})
    alpha_mlm: float | None = field(default=None,
                                    metadata={"help": "Weight of the MLM loss (needed with --mlm).", "range": ">= 0"})
    alpha_clm: float | None = field(default=None, metadata={"help": "Weight of the causal LM loss (0.5; 1 without "
                                                                    "a teacher).", "range": ">= 0"})
    alpha_mse: float = field(default=0.0, metadata={"range": ">= 0", "help": "Weight of Σ_v (s − t)² per token."})
    alpha_cos: float = field(default=0.0, metadata={"range": ">= 0", "help": "Weight of 1 − cos(last hidden states)."})
    temperature: float | None = field(default=None, metadata={"help": "τ of the distillation term (τ² scaled). "
                                                                      "Default 2.0; 1.0 with --kd_ratio.",
                                                              "range": "[0.01, 1000]"})
    kd_loss: str = field(default="forward_kl", metadata={"help": "Distillation divergence: "
                                                                 + ", ".join(TOKEN_DIVERGENCES) + "."})
    jsd_beta: float = field(default=0.5,
                            metadata={"help": "β of --kd_loss jsd (0: forward KL, 1: reverse KL).", "range": "[0, 1]"})
    skew_lambda: float = field(default=0.1, metadata={"range": "[0, 1)", "help": "λ of the skew KL losses."})
    kd_ratio: float | None = field(default=None, metadata={"help": "r in r·D + (1 − r)·LM (MiniLLM); replaces "
                                                                   "--alpha_ce/--alpha_clm/--alpha_mlm.",
                                                           "range": "[0, 1]"})
    kd_chunk_size: int = field(default=64, metadata={"range": ">= 1", "help": "Positions per chunk of the token-level "
                                                              "divergence (bounds its memory)."})
    fused_output_layer: bool = field(default=True, metadata={
        "help": "The training forwards return what the output layers read (a causal LM's final hidden states, a "
                "masked LM's output-layer input) and the loss projects it to the vocabulary chunk by chunk, so "
                "neither model's full logits nor their gradient exist; with a live teacher, none, or a "
                "--teacher_cache_top_k cache (docs/lm_distillation.md). --no_fused_output_layer scores the models' "
                "own logits."})
    restrict_ce_to_mask: bool = field(default=False, metadata={"help": "MLM: the KD (--alpha_ce) and logit MSE "
                                                                       "(--alpha_mse) terms use the masked positions "
                                                                       "only; the cosine term (--alpha_cos) still "
                                                                       "uses every real token, as in the original "
                                                                       "DistilBERT code."})
    mlm_mask_prop: float = field(default=0.15,
                                 metadata={"help": "Fraction of tokens predicted in MLM.", "range": "(0, 1)"})
    word_mask: float = field(default=0.8, metadata={"range": "[0, 1]", "help": "Of those: replaced by [MASK]."})
    word_keep: float = field(default=0.1, metadata={"range": "[0, 1]", "help": "Of those: kept."})
    word_rand: float = field(default=0.1, metadata={"range": "[0, 1]", "help": "Of those: replaced by a random token."})
    mlm_smoothing: float = field(default=0.7, metadata={"help": "Masking probability ∝ count^(−smoothing): "
                                                                "rare tokens are masked more often.", "range": ">= 0"})

    def validate(self, has_teacher: bool) -> None:
        lm = "alpha_mlm" if self.mlm else "alpha_clm"
        other = "alpha_clm" if self.mlm else "alpha_mlm"
        if getattr(self, other):
            raise UsageError(f"--{other} {getattr(self, other)} with {'--mlm' if self.mlm else 'a causal LM'}: "
                             f"exactly one of MLM/CLM is trained; drop --{other}"
                             + ("" if self.mlm else " or add --mlm"))
        if self.mlm and self.kd_ratio is None and not self.alpha_mlm and has_teacher:
            raise UsageError("--mlm needs --alpha_mlm > 0 (the DistilBERT recipe uses --alpha_mlm 2.0)")
        if self.kd_ratio is not None:
            set_alphas = [f"--{n}" for n in ("alpha_ce", lm) if getattr(self, n) is not None]
            if set_alphas:
                raise UsageError(f"--kd_ratio sets the weights itself; drop {' and '.join(set_alphas)}")
        if self.kd_loss not in TOKEN_DIVERGENCES:
            raise UsageError(f"--kd_loss {self.kd_loss!r} is unknown; choose one of {', '.join(TOKEN_DIVERGENCES)}")
        split = (self.word_mask, self.word_keep, self.word_rand)
        if self.mlm and abs(sum(split) - 1.0) > 1e-6:
            raise UsageError(f"--word_mask/--word_keep/--word_rand {split} must sum to 1")
        if not has_teacher:
            kd_flags = [f"--{n}" for n in ("alpha_ce", "kd_ratio") if getattr(self, n)]
            kd_flags += [f"--{n}" for n in ("alpha_mse", "alpha_cos") if getattr(self, n)]
            if kd_flags:
                raise UsageError(f"{', '.join(kd_flags)} need a teacher; pass --teacher_name, or drop them to "
                                 "train the student on the LM loss alone")

    def weights(self, has_teacher: bool) -> dict[str, float]:
        """Term name -> weight; the LM term is `mlm` or `clm`, the distillation term `kd`."""
        lm = "mlm" if self.mlm else "clm"
        if not has_teacher:
            return {lm: 1.0}
        if self.kd_ratio is not None:
            weights = {"kd": self.kd_ratio, lm: 1.0 - self.kd_ratio}
        else:
            lm_weight = self.alpha_mlm if self.mlm else self.alpha_clm
            weights = {"kd": 0.5 if self.alpha_ce is None else self.alpha_ce,
                       lm: (0.0 if self.mlm else 0.5) if lm_weight is None else lm_weight}
        # The optional terms only when asked for (cos needs equal hidden sizes; mse costs a pass over V).
        weights |= {k: w for k, w in (("mse", self.alpha_mse), ("cos", self.alpha_cos)) if w}
        if not any(weights.values()):
            raise UsageError("every loss weight is 0; set --alpha_ce, --alpha_mlm/--alpha_clm, --alpha_mse or "
                             "--alpha_cos (or --kd_ratio)")
        return weights

    def resolved_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 1.0 if self.kd_ratio is not None else 2.0


@dataclass
class LaunchArguments:
    """The original pipeline's launch flags: processes come from torchrun/accelerate, so these are checked."""
    _argument_group_name = "launch (flags of the original pipeline)"
    n_gpu: int | None = field(default=None, metadata={"help": "0: train on the CPU; N > 1 must match the number "
                                                              "of launched processes.", "range": ">= 0"})
    local_rank: int = field(default=-1,
                            metadata={"help": "Set by the launcher; accepted for old commands.", "range": "-1 or >= 0"})

    def apply(self, train_args: TrainingArguments) -> None:
        if self.n_gpu == 0:
            train_args.use_cpu = True
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if self.n_gpu and self.n_gpu > 1 and self.n_gpu != world:
            raise UsageError(f"--n_gpu {self.n_gpu} but {world} process(es) were launched; run it with "
                             f"torchrun --nproc_per_node {self.n_gpu} (or accelerate launch)")
