"""Command-line arguments: the Hugging Face run_glue.py flag names users type from habit, plus ours.

These are our own dataclasses, not transformers.TrainingArguments: transformers 5 dropped flags that
users and the papers' commands still type (`--overwrite_output_dir`, `--warmup_ratio`,
`--evaluation_strategy`, `--per_gpu_*`, `--no_cuda`, `--logging_dir`). We accept them here and never
forward them to transformers.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, fields

from transformers import HfArgumentParser

from distill.errors import UsageError


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "Student: Hub id or local dir (a checkpoint to predict with)."})
    config_name: str | None = field(default=None, metadata={"help": "Config name or path if not the model's."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path if not the model's."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are stored."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    teacher_model: str | None = field(
        default=None,
        metadata={"aliases": ["--teacher_name_or_path"],
                  "help": "Teacher: Hub id or local dir of a model fine-tuned on the task. Omit to fine-tune "
                          "the student alone (this is how teachers are made)."})
    num_layers: int | None = field(
        default=None, metadata={"help": "Build the student from the first N layers of --model_name_or_path."})
    student_layers: str | None = field(
        default=None,
        metadata={"help": "Comma-separated layer ids, e.g. 0,2,4: build the student from these layers (and the "
                          "embeddings) of --model_name_or_path, DistilBERT-style. Pass the teacher checkpoint "
                          "as --model_name_or_path to initialise the student from the teacher."})

    def layer_ids(self) -> list[int] | None:
        """The source layers the student keeps (None: keep the model as it is)."""
        if self.num_layers is not None and self.student_layers is not None:
            raise UsageError("--num_layers and --student_layers both choose the student's layers; pass only one")
        if self.num_layers is not None:
            if self.num_layers < 1:
                raise UsageError(f"--num_layers must be >= 1, got {self.num_layers}")
            return list(range(self.num_layers))
        return parse_layer_ids(self.student_layers)


def parse_layer_ids(spec: str | None) -> list[int] | None:
    """--student_layers "0,2,4" -> [0, 2, 4] (None stays None)."""
    if spec is None:
        return None
    try:
        ids = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--student_layers {spec!r}: expected comma-separated integers such as 0,2,4") from None
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise UsageError(f"--student_layers {spec!r}: need distinct non-negative layer ids such as 0,2,4")
    return ids


@dataclass
class DataArguments:
    task_name: str | None = field(default=None, metadata={"help": "GLUE task: cola, sst2, mrpc, stsb, qqp, "
                                                                   "mnli, qnli, rte, wnli."})
    data_dir: str | None = field(default=None, metadata={"help": "A download_glue_data.py task folder, e.g. "
                                                                 "glue_data/RTE. Without it and without "
                                                                 "--train_file, data comes from the Hub."})
    ax_file: str | None = field(default=None, metadata={"help": "GLUE diagnostic (AX) TSV, predicted with an "
                                                                "MNLI model (default: <data_dir>/../diagnostic/"
                                                                "diagnostic.tsv when present)."})
    train_file: str | None = field(default=None, metadata={"help": "csv/tsv/json training file."})
    validation_file: str | None = field(default=None, metadata={"help": "csv/tsv/json validation file."})
    test_file: str | None = field(default=None, metadata={"help": "csv/tsv/json test file."})
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated."})
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every batch to max_seq_length (the papers' setting) instead of "
                                         "dynamic padding with length-grouped batches."})
    group_by_length: bool = field(
        default=True, metadata={"help": "Batch training examples of similar length (fast); "
                                        "--no_group_by_length for plain shuffling."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N dev examples."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Keep the first N test examples."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-download the Hub dataset."})


@dataclass
class TrainingArguments:
    output_dir: str = field(metadata={"help": "Where models, checkpoints, results and logs are written."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Train into a non-empty output_dir."})
    do_train: bool = field(default=False, metadata={"help": "Train."})
    do_eval: bool = field(default=False, metadata={"help": "Evaluate on the dev set(s)."})
    do_predict: bool = field(default=False, metadata={"help": "Write GLUE test-server files."})
    per_device_train_batch_size: int = field(default=8, metadata={"aliases": ["--per_gpu_train_batch_size"]})
    per_device_eval_batch_size: int = field(default=8, metadata={"aliases": ["--per_gpu_eval_batch_size"]})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak AdamW learning rate of the student."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (not on biases/LayerNorm)."})
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs (fractions allowed)."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps; overrides num_train_epochs when > 0."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Warm-up as a fraction of all steps "
                                                               "(used when --warmup_steps is 0)."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "linear, cosine, constant, "
                                                                       "constant_with_warmup, ..."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (0 disables)."})
    eval_strategy: str | None = field(
        default=None, metadata={"aliases": ["--evaluation_strategy"],
                                "help": "no, steps or epoch. Default: steps when --eval_steps is given, else "
                                        "epoch when --do_eval. The run always evaluates at the end too."})
    eval_steps: int | None = field(default=None, metadata={"help": "Evaluate every N optimizer steps."})
    save_steps: int | None = field(default=None, metadata={"help": "Checkpoint every N steps (default: at "
                                                                   "each evaluation)."})
    save_total_limit: int | None = field(default=None, metadata={"help": "Keep at most N checkpoints "
                                                                         "(the newest)."})
    logging_steps: int = field(default=50, metadata={"help": "Log losses every N optimizer steps."})
    logging_dir: str | None = field(default=None, metadata={"help": "TensorBoard dir (default output_dir/runs)."})
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard or none."})
    seed: int = field(default=42, metadata={"help": "Seed for initialisation, shuffling and dropout."})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision."})
    fp16: bool = field(default=False, metadata={"help": "fp16 mixed precision (CUDA only)."})
    use_cpu: bool = field(default=False, metadata={"aliases": ["--no_cuda"], "help": "Train on the CPU."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint-<step> dir to resume from. Without it, a run with "
                                        "do_train resumes from the last checkpoint in output_dir."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})
    cache_teacher_outputs: bool = field(
        default=False, metadata={"help": "Run a frozen teacher over the training set once, store its outputs on disk "
                                         "by example id and reuse them in every epoch and later runs. A changed "
                                         "teacher, data or tokenisation makes a new cache."})
    teacher_cache_dir: str | None = field(
        default=None, metadata={"help": "Where cached teacher outputs live (default $XDG_CACHE_HOME or "
                                        "~/.cache, then distill/teacher_outputs)."})
    teacher_cache_top_k: int | None = field(
        default=None, metadata={"help": "LM distillation: cache only the k most likely tokens of the teacher's "
                                        "distribution at the KD temperature; the remaining mass spreads evenly "
                                        "over the other tokens."})

    def resolved_eval_strategy(self) -> str:
        if self.eval_strategy is not None:
            if self.eval_strategy not in ("no", "steps", "epoch"):
                raise UsageError(f"--eval_strategy {self.eval_strategy!r}: choose no, steps or epoch")
            return self.eval_strategy
        if self.eval_steps:
            return "steps"
        return "epoch" if self.do_eval else "no"

    def validate(self) -> None:
        if not (self.do_train or self.do_eval or self.do_predict):
            raise UsageError("nothing to do: pass at least one of --do_train, --do_eval, --do_predict")
        if self.fp16 and self.bf16:
            raise UsageError("--fp16 and --bf16 both set; choose one mixed-precision type")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise UsageError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.gradient_accumulation_steps < 1:
            raise UsageError("--gradient_accumulation_steps must be >= 1")
        if self.resolved_eval_strategy() == "steps" and not self.eval_steps:
            raise UsageError("--eval_strategy steps needs --eval_steps N")
        from transformers import SchedulerType
        schedules = [t.value for t in SchedulerType]
        if self.lr_scheduler_type not in schedules:
            raise UsageError(f"--lr_scheduler_type {self.lr_scheduler_type!r}: choose one of {', '.join(schedules)}")
        if not self.cache_teacher_outputs and (self.teacher_cache_dir or self.teacher_cache_top_k is not None):
            raise UsageError("--teacher_cache_dir/--teacher_cache_top_k configure --cache_teacher_outputs; add it")
        if self.teacher_cache_top_k is not None and self.teacher_cache_top_k < 1:
            raise UsageError(f"--teacher_cache_top_k must be >= 1, got {self.teacher_cache_top_k}")
        if self.report_to not in ("tensorboard", "none"):
            raise UsageError(f"--report_to {self.report_to!r}: choose tensorboard or none")


@dataclass
class DistillationArguments:
    alpha_kd: float = field(default=1.0, metadata={"help": "Weight of the KD term; (1 - alpha_kd) weights the "
                                                           "task loss. Ignored without a teacher."})
    temperature: float | None = field(
        default=None, metadata={"help": "Softmax temperature of the KD term (τ² scaled). Default 1.0; 2.0 with the "
                                        "one-to-one paper's flags (--alpha_ce, --alpha_glue, --alpha_corr, ...)."})

    def resolved_temperature(self, default: float = 1.0) -> float:
        return default if self.temperature is None else self.temperature

    def validate(self) -> None:
        if not 0.0 <= self.alpha_kd <= 1.0:
            raise UsageError(f"--alpha_kd must be in [0, 1], got {self.alpha_kd}")
        if self.temperature is not None and self.temperature <= 0:
            raise UsageError(f"--temperature must be > 0, got {self.temperature}")


@dataclass
class ScriptCompatArguments:
    """Flags of the original scripts, kept so their commands run; checked, not obeyed blindly."""
    model_type: str | None = field(default=None, metadata={"help": "Checked against the student's config."})
    teacher_type: str | None = field(default=None, metadata={"help": "Checked against the teacher's config."})
    do_lower_case: bool = field(default=False, metadata={"help": "Checked: the tokenizer must lower-case."})


def changed_flags(args, names) -> list[str]:
    """The fields of dataclass `args` among `names` whose values differ from their defaults (flags the
    user set), in declaration order; for refusing a method's flags without the method."""
    changed = []
    for f in fields(args):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if f.name in names and getattr(args, f.name) != default:
            changed.append(f.name)
    return changed


def flag_aliases(dataclass_types) -> dict[str, str]:
    """Alias (without dashes) -> field name, from the fields' `aliases` metadata."""
    table = {}
    for dc in dataclass_types:
        for f in fields(dc):
            for alias in f.metadata.get("aliases", []):
                table[alias.lstrip("-")] = f.name
    return table


def parse_command_line(dataclass_types, argv: list[str] | None = None):
    """Parse argv (or a single .json file of arguments, HF style) into the given dataclasses."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser(dataclass_types)
    if len(argv) == 1 and argv[0].endswith(".json"):
        if not os.path.isfile(argv[0]):
            raise UsageError(f"argument file not found: {argv[0]}")
        with open(argv[0], encoding="utf-8") as f:
            try:
                raw = json.load(f)
            except json.JSONDecodeError as e:
                raise UsageError(f"{argv[0]} is not valid JSON ({e.msg} at line {e.lineno})") from None
        aliases = flag_aliases(dataclass_types)
        raw = {aliases.get(k, k): v for k, v in raw.items()}
        known = {f.name for dc in dataclass_types for f in fields(dc)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise UsageError(f"{argv[0]}: unknown argument(s) {', '.join(unknown)}")
        return parser.parse_dict(raw)
    return parser.parse_args_into_dataclasses(args=argv)
