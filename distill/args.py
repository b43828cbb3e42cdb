"""Command-line arguments: the Hugging Face run_glue.py flag names users type from habit, plus ours.

These are our own dataclasses, not transformers.TrainingArguments: transformers 5 dropped flags that
users and the papers' commands still type (`--overwrite_output_dir`, `--warmup_ratio`,
`--evaluation_strategy`, `--per_gpu_*`, `--no_cuda`, `--logging_dir`). We accept them here and never
forward them to transformers.

Every numeric flag declares its valid values in its metadata (`"range": ">= 1"`, `"[0, 1)"`,
`"-1 or >= 1"`); `check_flag_values` checks them, and the types of an argument file's values, as the
flags are parsed, so a bad value is refused before anything is loaded.
"""
from __future__ import annotations

import argparse
import copy
import difflib
import json
import logging
import math
import os
import re
import sys
import types
import typing
from dataclasses import dataclass, field, fields

from transformers import HfArgumentParser

from distill.errors import UsageError

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    _argument_group_name = "model (student and teacher)"
    model_name_or_path: str = field(
        metadata={"aliases": ["--student_model_name_or_path", "--model"],
                  "help": "Student: Hub id or local dir (a checkpoint to predict with). The one-to-one paper's "
                          "--student_model_name_or_path and --model name it too."})
    config_name: str | None = field(default=None, metadata={"help": "Config name or path if not the model's."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path if not the model's."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are stored."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    teacher_model: str | None = field(
        default=None,
        metadata={"aliases": ["--teacher_name_or_path", "--teacher_model_name_or_path"],
                  "help": "Teacher: Hub id or local dir of a model fine-tuned on the task. Omit to fine-tune "
                          "the student alone (this is how teachers are made)."})
    num_layers: int | None = field(
        default=None,
        metadata={"help": "Build the student from the first N layers of --model_name_or_path.", "range": ">= 1"})
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
    _argument_group_name = "data"
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
    max_seq_length: int = field(default=128, metadata={"range": ">= 8", "help": "Longer inputs are truncated."})
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every batch to max_seq_length (the papers' setting) instead of "
                                         "dynamic padding with length-grouped batches."})
    group_by_length: bool = field(
        default=True, metadata={"help": "Batch training examples of similar length (fast); "
                                        "--no_group_by_length for plain shuffling."})
    max_train_samples: int | None = field(default=None, metadata={"range": ">= 1",
                                                                      "help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"range": ">= 1",
                                                                     "help": "Keep the first N dev examples."})
    max_predict_samples: int | None = field(default=None, metadata={"range": ">= 1",
                                                                        "help": "Keep the first N test examples."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-download the Hub dataset."})
    save_eval_predictions: bool = field(default=False, metadata={
        "help": "With --do_eval, also write each dev set's per-example predictions and gold labels "
                "(eval_predictions.json; MNLI's mismatched set: eval_predictions_mm.json), for paired comparisons "
                "between runs (scripts/sweep.py)."})


@dataclass
class TrainingArguments:
    _argument_group_name = "training, evaluation and output"
    output_dir: str = field(metadata={"help": "Where models, checkpoints, results and logs are written."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Train into a non-empty output_dir."})
    do_train: bool = field(default=False, metadata={"help": "Train."})
    do_eval: bool = field(default=False, metadata={"help": "Evaluate on the dev set(s)."})
    do_predict: bool = field(default=False, metadata={"help": "Write GLUE test-server files."})
    per_device_train_batch_size: int = field(
        default=8, metadata={"aliases": ["--per_gpu_train_batch_size"], "range": ">= 1",
                             "help": "Training examples per process and micro-batch (the global batch is this x "
                                     "processes x --gradient_accumulation_steps)."})
    per_device_eval_batch_size: int = field(default=8, metadata={"aliases": ["--per_gpu_eval_batch_size"],
                                                                    "range": ">= 1",
                                                                    "help": "Evaluation examples per process and "
                                                                            "batch."})
    learning_rate: float = field(default=5e-5,
                                 metadata={"help": "Peak AdamW learning rate of the student.", "range": ">= 0"})
    weight_decay: float = field(default=0.0,
                                metadata={"help": "AdamW weight decay (not on biases/LayerNorm).", "range": ">= 0"})
    adam_beta1: float = field(default=0.9, metadata={"range": "[0, 1)", "help": "AdamW β1."})
    adam_beta2: float = field(default=0.999, metadata={"range": "[0, 1)", "help": "AdamW β2."})
    adam_epsilon: float = field(default=1e-8, metadata={"range": "> 0", "help": "AdamW ε."})
    num_train_epochs: float = field(default=3.0, metadata={"range": "> 0", "help": "Epochs (fractions allowed)."})
    max_steps: int = field(
        default=-1, metadata={"help": "Optimizer steps; overrides num_train_epochs when > 0.", "range": "-1 or >= 1"})
    warmup_steps: int = field(default=0, metadata={"range": ">= 0", "help": "Linear warm-up steps."})
    warmup_ratio: float = field(default=0.0, metadata={"range": "[0, 1)", "help": "Warm-up as a fraction of all steps "
                                                               "(used when --warmup_steps is 0)."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "linear, cosine, constant, "
                                                                       "constant_with_warmup, ..."})
    gradient_accumulation_steps: int = field(default=1,
                                             metadata={"help": "Micro-batches per optimizer step.", "range": ">= 1"})
    max_grad_norm: float = field(default=1.0, metadata={"range": ">= 0", "help": "Gradient clipping (0 disables)."})
    eval_strategy: str | None = field(
        default=None, metadata={"aliases": ["--evaluation_strategy"],
                                "help": "no, steps or epoch. Default: steps when --eval_steps is given, else "
                                        "epoch when --do_eval. The run always evaluates at the end too."})
    eval_steps: int | None = field(default=None,
                                   metadata={"help": "Evaluate every N optimizer steps.", "range": ">= 1"})
    save_steps: int | None = field(default=None, metadata={"help": "Checkpoint every N steps (default: at "
                                                                   "each evaluation).", "range": ">= 1"})
    save_total_limit: int | None = field(default=None, metadata={"range": ">= 1", "help": "Keep at most N checkpoints "
                                                                         "(the newest)."})
    logging_steps: int = field(default=50, metadata={"range": ">= 1", "help": "Log losses every N optimizer steps."})
    logging_dir: str | None = field(default=None, metadata={"help": "TensorBoard dir (default output_dir/runs)."})
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard or none."})
    seed: int = field(default=42,
                      metadata={"help": "Seed for initialisation, shuffling and dropout.", "range": "[0, 4294967295]"})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision."})
    fp16: bool = field(default=False, metadata={"help": "fp16 mixed precision (CUDA only)."})
    use_cpu: bool = field(default=False, metadata={"aliases": ["--no_cuda"], "help": "Train on the CPU."})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute the student's layer activations in the backward instead of keeping "
                                         "them: less memory, a third more compute, the same gradients."})
    torch_compile: bool = field(
        default=False, metadata={"help": "torch.compile the student's and the teacher's forward passes (the first "
                                         "steps are slow while it compiles). Same losses up to float rounding."})
    torch_compile_backend: str | None = field(
        default=None, metadata={"help": "torch.compile backend (default inductor; aot_eager needs no C++ compiler). "
                                        "Implies --torch_compile."})
    torch_compile_mode: str | None = field(
        default=None, metadata={"help": "Inductor mode: default, reduce-overhead, max-autotune or "
                                        "max-autotune-no-cudagraphs. Implies --torch_compile."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint-<step> dir to resume from. Without it, a run with "
                                        "do_train resumes from the last checkpoint in output_dir."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})
    cache_teacher_outputs: bool = field(
        default=False, metadata={"help": "Run a frozen teacher over the training set once, store its outputs on disk "
                                         "by example id and reuse them in every epoch and later runs. A changed "
                                         "teacher, data or tokenisation makes a new cache."})
    teacher_cache_dir: str | None = field(
        default=None, metadata={"help": "Where cached teacher outputs live (default $XDG_CACHE_HOME/distill/"
                                        "teacher_outputs, or ~/.cache/distill/teacher_outputs)."})
    teacher_cache_top_k: int | None = field(
        default=None, metadata={"help": "LM distillation: cache only the k most likely tokens of the teacher's "
                                        "distribution at the KD temperature; the remaining mass spreads evenly "
                                        "over the other tokens.", "range": ">= 1"})
    fsdp: str | None = field(
        default=None, metadata={"help": "full_shard or shard_grad_op: shard the student (parameters, gradients, "
                                        "AdamW moments) and a frozen teacher over the processes with PyTorch FSDP2, "
                                        "one unit per transformer block; full_shard also frees the gathered "
                                        "weights after each forward. See docs/multiprocess_slurm.md."})
    fsdp_offload: bool = field(default=False, metadata={"help": "--fsdp: keep the shards and AdamW's moments in CPU "
                                                                "memory."})
    fsdp_transformer_layer_cls_to_wrap: str | None = field(
        default=None, metadata={"help": "--fsdp: the block class(es) that become FSDP units, comma-separated "
                                        "(default: the model's own, e.g. GPT2Block, LlamaDecoderLayer)."})

    def resolved_eval_strategy(self) -> str:
        if self.eval_strategy is not None:
            if self.eval_strategy not in ("no", "steps", "epoch"):
                raise UsageError(f"--eval_strategy {self.eval_strategy!r}: choose no, steps or epoch")
            return self.eval_strategy
        if self.eval_steps:
            return "steps"
        return "epoch" if self.do_eval else "no"

    def default_actions(self, evaluate: bool = True, predict: bool = False) -> None:
        """No --do_train/--do_eval/--do_predict: train, and `evaluate` and `predict`, as the papers'
        scripts do when given no such flag."""
        if not (self.do_train or self.do_eval or self.do_predict):
            self.do_train, self.do_eval, self.do_predict = True, evaluate, predict
            logger.info("no --do_train/--do_eval/--do_predict given: training%s%s, as the papers' scripts do",
                        " and evaluating" if evaluate else "", " and testing" if predict else "")

    def validate(self) -> None:
        if not (self.do_train or self.do_eval or self.do_predict):
            raise UsageError("nothing to do: pass at least one of --do_train, --do_eval, --do_predict")
        if self.fp16 and self.bf16:
            raise UsageError("--fp16 and --bf16 both set; choose one mixed-precision type")
        self._check_compile_flags()
        if self.resolved_eval_strategy() == "steps" and not self.eval_steps:
            raise UsageError("--eval_strategy steps needs --eval_steps N")
        from transformers import SchedulerType
        schedules = [t.value for t in SchedulerType]
        if self.lr_scheduler_type not in schedules:
            raise UsageError(f"--lr_scheduler_type {self.lr_scheduler_type!r}: choose one of {', '.join(schedules)}")
        if not self.cache_teacher_outputs and (self.teacher_cache_dir or self.teacher_cache_top_k is not None):
            raise UsageError("--teacher_cache_dir/--teacher_cache_top_k configure --cache_teacher_outputs; add it")
        if self.report_to not in ("tensorboard", "none"):
            raise UsageError(f"--report_to {self.report_to!r}: choose tensorboard or none")
        from distill.sharding import check_fsdp_flags
        check_fsdp_flags(self)

    def _check_compile_flags(self) -> None:
        """As in Hugging Face's TrainingArguments, a backend or mode implies --torch_compile."""
        if self.torch_compile_backend is None and self.torch_compile_mode is None:
            return
        self.torch_compile = True
        from distill.speed import COMPILE_MODES, compile_backends
        backend = self.torch_compile_backend or "inductor"
        if backend not in (backends := compile_backends()):
            raise UsageError(f"--torch_compile_backend {backend!r}: choose one of {', '.join(backends)}")
        if self.torch_compile_mode is not None and self.torch_compile_mode not in COMPILE_MODES:
            raise UsageError(f"--torch_compile_mode {self.torch_compile_mode!r}: choose one of "
                             f"{', '.join(COMPILE_MODES)}")
        if self.torch_compile_mode is not None and backend != "inductor":
            raise UsageError(f"--torch_compile_mode is an inductor setting; drop it with --torch_compile_backend "
                             f"{backend}")


@dataclass
class DistillationArguments:
    _argument_group_name = "KD (Hinton et al.)"
    alpha_kd: float = field(default=1.0, metadata={"help": "Weight of the KD term; (1 - alpha_kd) weights the "
                                                           "task loss. Ignored without a teacher.", "range": "[0, 1]"})
    temperature: float | None = field(
        default=None, metadata={"help": "Softmax temperature of the KD term (τ² scaled). Default 1.0; 2.0 with the "
                                        "one-to-one paper's flags (--alpha_ce, --alpha_glue, --alpha_corr, ...).",
                                "range": "[0.01, 1000]"})

    def resolved_temperature(self, default: float = 1.0) -> float:
        return default if self.temperature is None else self.temperature

    def validate(self) -> None:
        """(Its ranges are checked when the flags are parsed.)"""


@dataclass
class ScriptCompatArguments:
    """Flags of the original scripts, kept so their commands run; checked, not obeyed blindly."""
    _argument_group_name = "flags of the papers' scripts (checked or ignored)"
    model_type: str | None = field(default=None, metadata={"help": "bert, distilbert, roberta, ...: the model class "
                                                                   "comes from the checkpoint's config; checked "
                                                                   "against it."})
    teacher_type: str | None = field(default=None, metadata={"help": "Checked against the teacher's config."})
    do_lower_case: bool = field(default=False, metadata={"help": "Checked: the tokenizer must lower-case (an uncased "
                                                                 "model's tokenizer does it itself)."})
    output_dir_intermed: str | None = field(
        default=None, metadata={"help": "The one-to-one paper's dir for intermediate checkpoints: ignored, a run "
                                        "keeps its checkpoints in --output_dir/checkpoint-<step> (one dir per run)."})

    def log_ignored(self, output_dir: str) -> None:
        if self.output_dir_intermed is not None:
            logger.info("--output_dir_intermed %s is ignored: checkpoints go to %s/checkpoint-<step>",
                        self.output_dir_intermed, output_dir)


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


class _Parser(HfArgumentParser):
    """HfArgumentParser whose own errors (a value of the wrong type, a flag without its value) are one
    UsageError line, and which never takes an abbreviation for a flag (`--learn` is not
    `--learning_rate`: a typo must not silently set another flag)."""

    def __init__(self, dataclass_types, argv: list[str], epilog: str | None = None):
        super().__init__(dataclass_types, allow_abbrev=False, epilog=epilog)
        self.argv = argv

    @staticmethod
    def _parse_dataclass_field(parser, dataclass_field):
        # HfArgumentParser hands a field's metadata to argparse as keywords: keep ours ("range") out of it
        bare = copy.copy(dataclass_field)
        metadata = {k: v for k, v in dataclass_field.metadata.items() if k != "range"}
        if "range" in dataclass_field.metadata:  # --help shows the valid values
            valid = describe_range(dataclass_field.metadata["range"])
            metadata["help"] = f"{metadata.get('help', '')} [{valid}]".strip()
        bare.metadata = types.MappingProxyType(metadata)
        HfArgumentParser._parse_dataclass_field(parser, bare)

    def error(self, message):
        flag = re.match(r"argument (--\w+)", message)
        if message.endswith("expected one argument") and flag and flag.group(1) in self.argv[:-1]:
            # `--learning_rate -1e-5`: argparse takes the value for a flag
            message += " (a value starting with '-' goes as --flag=value)"
        raise UsageError(f"{message.rstrip('.')}; see --help")


def parse_command_line(dataclass_types, argv: list[str] | None = None, epilog: str | None = None):
    """Parse argv (or a single .json file of arguments, HF style) into the given dataclasses, refusing
    unknown flags (with the closest known ones) and values out of their range. `epilog` ends --help."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _Parser(dataclass_types, argv, epilog)
    if len(argv) > 1 and argv[0].endswith(".json") and not argv[0].startswith("-"):
        raise UsageError(f"an argument file ({argv[0]}) must be the only argument; put {argv[1]} in the file, or pass "
                         "every flag on the command line")
    if len(argv) == 1 and argv[0].endswith(".json"):
        parsed = parser.parse_dict(read_argument_file(argv[0], dataclass_types))
    else:
        *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
        if unknown:
            raise UsageError(unknown_flags_message(unknown, parser))
    check_flag_values(parsed)
    return tuple(parsed)


def read_argument_file(path: str, dataclass_types) -> dict:
    if not os.path.isfile(path):
        raise UsageError(f"argument file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text; save the argument file as UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path} must hold one JSON object of flags, e.g. {{\"learning_rate\": 2e-5}}")
    aliases = flag_aliases(dataclass_types)
    raw = {aliases.get(k, k): v for k, v in raw.items()}
    known = {f.name for dc in dataclass_types for f in fields(dc)}
    unknown = sorted(set(raw) - known)
    if unknown:
        hints = [f"{name} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(name, known, 1)) else name
                 for name in unknown]
        raise UsageError(f"{path}: unknown argument(s) {', '.join(hints)}; see --help")
    missing = [f.name for dc in dataclass_types for f in fields(dc) if f.name not in raw and _required(f)]
    if missing:
        raise UsageError(f"{path} lacks the required argument(s) {', '.join(missing)}")
    return raw


def _required(f) -> bool:
    from dataclasses import MISSING
    return f.default is MISSING and f.default_factory is MISSING


def unknown_flags_message(unknown: list[str], parser: argparse.ArgumentParser) -> str:
    """One line for the arguments no flag took: each unknown flag with the closest known ones."""
    known = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    flags = [token.partition("=")[0] for token in unknown if token.startswith("-")]
    if not flags:
        return (f"unexpected argument(s) {' '.join(unknown)} (a value without its flag, or one value too many?); "
                "see --help")
    parts = []
    for name in flags:
        close = difflib.get_close_matches(name, known, n=2, cutoff=0.75) or [k for k in known if k.startswith(name)][:2]
        parts.append(f"{name} (did you mean {' or '.join(close)}?)" if close else name)
    return f"unknown flag{'s' if len(parts) > 1 else ''} {', '.join(parts)}; see --help for the flags"


# ---------------------------------------------------------------------------------------------- values
_BOUND = re.compile(r"^(>=|>|<=|<)\s*(\S+)$")
_INTERVAL = re.compile(r"^([\[(])\s*(\S+),\s*(\S+)\s*([\])])$")


def in_range(value: float, spec: str) -> bool:
    """Whether `value` satisfies a range spec: ">= 1", "> 0", "[0, 1)", "-1 or >= 1", ..."""
    *sentinels, condition = [part.strip() for part in spec.split(" or ")]
    if any(value == float(v) for v in sentinels):
        return True
    if m := _BOUND.match(condition):
        op, bound = m.group(1), float(m.group(2))
        return {">=": value >= bound, ">": value > bound, "<=": value <= bound, "<": value < bound}[op]
    m = _INTERVAL.match(condition)
    if m is None:
        raise ValueError(f"bad range spec {spec!r}")
    low, high = float(m.group(2)), float(m.group(3))
    return ((value >= low) if m.group(1) == "[" else (value > low)) and ((value <= high) if m.group(4) == "]"
                                                                        else (value < high))


def describe_range(spec: str) -> str:
    *sentinels, condition = [part.strip() for part in spec.split(" or ")]
    text = f"in {condition}" if condition[0] in "[(" else condition
    return " or ".join([*sentinels, text])


def scalar_kind(annotation) -> type | None:
    """int, float, bool or str for `T` and `T | None`; None for anything else."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    return annotation if annotation in (int, float, bool, str) else None


def check_flag_values(parsed) -> None:
    """Every value of the right type (argument files are not typed by argparse), every number finite
    and in its declared range."""
    for args in parsed:
        hints = typing.get_type_hints(type(args))
        for f in fields(args):
            value, kind = getattr(args, f.name), scalar_kind(hints[f.name])
            if value is None or kind is None:
                continue
            if kind is bool and not isinstance(value, bool):
                raise UsageError(f"--{f.name} must be true or false, got {value!r}")
            if kind is str and not isinstance(value, str):
                raise UsageError(f"--{f.name} must be a string, got {value!r}")
            if kind in (int, float):
                if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)):
                    raise UsageError(f"--{f.name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
                if not math.isfinite(value):
                    raise UsageError(f"--{f.name} must be a finite number, got {value}")
                spec = f.metadata.get("range")
                if spec is not None and not in_range(value, spec):
                    raise UsageError(f"--{f.name} must be {describe_range(spec)}, got {value}")
