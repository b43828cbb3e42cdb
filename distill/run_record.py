"""A run explains itself: what it ran with, in its output dir, and a one-screen summary in its log.

`run_args.json` (a training run) or `eval_run_args.json` (a run that only evaluates or predicts, which
may write into a training run's dir and must not replace that run's record) holds:
- `args`: every flag's resolved value, defaults included, grouped as in --help;
- `command`: a command line that reruns it (the flags that differ from their defaults);
- `versions`: python, torch, transformers, accelerate, datasets, numpy; `git_commit` of this toolkit
  when it runs from a git checkout (with `git_dirty` when it has uncommitted changes);
- `processes`: how many processes ran it.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import shlex
import subprocess

TRAINING_RECORD = "run_args.json"
EVALUATION_RECORD = "eval_run_args.json"
LIBRARIES = ("torch", "transformers", "accelerate", "datasets", "numpy", "safetensors", "tokenizers")
TOOLKIT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


# Flags that name files or dirs: absolute in the record and the fingerprint, so neither depends on the
# directory a command was typed in. Those that may also name a Hub model or dataset become absolute only
# when they exist here; the others always (they may be written by the run). No other value is touched: a
# task called sst2 stays sst2 even next to a folder of that name.
HUB_OR_PATH = frozenset({"model_name_or_path", "teacher_model", "tokenizer_name", "config_name", "dataset_name",
                         "student_config"})
PATHS = frozenset({"output_dir", "logging_dir", "output_dir_intermed", "cache_dir", "data_cache_dir",
                   "teacher_cache_dir", "data_dir", "train_file", "validation_file", "test_file", "predict_file",
                   "ax_file", "data_file", "lm_train_file", "seqkd_file", "preprocessed_data_file", "token_counts",
                   "student_pretrained_weights", "teacher_pretrained", "resume_from_checkpoint"})


def normal_value(value, name: str):
    """A flag's value in the form that does not depend on how it was typed (see PATHS)."""
    if name == "ta_models" and isinstance(value, str):  # models or layer counts: "path/to/ta,4"
        return ",".join(v if v.strip().isdigit() else normal_value(v, "model_name_or_path") for v in value.split(","))
    if isinstance(value, str) and value and (name in PATHS or (name in HUB_OR_PATH and os.path.exists(value))):
        return os.path.realpath(value)
    return value


def resolved_args(parsed) -> dict:
    """Every flag's value, by dataclass group (the --help groups): {group: {flag: value}}."""
    return {group_name(type(args)): {f.name: normal_value(getattr(args, f.name), f.name)
                                     for f in dataclasses.fields(args)}
            for args in parsed}


def flat_args(parsed) -> dict:
    """Every flag's value in one mapping (flag names are unique across a script's groups)."""
    return {name: value for group in resolved_args(parsed).values() for name, value in group.items()}


def group_name(dataclass_type) -> str:
    return getattr(dataclass_type, "_argument_group_name", dataclass_type.__name__)


def command_line(script: str, parsed, spelling: dict[str, str] | None = None) -> str:
    """`python <toolkit>/<script> --flag value ...`: rerunning it, from any directory, parses to the same
    values (see flag_words)."""
    return shlex.join(["python", os.path.join(TOOLKIT_ROOT, script), *flag_words(parsed, spelling)])


def flag_words(parsed, spelling: dict[str, str] | None = None) -> list[str]:
    """The command-line words of every flag whose value differs from its default, in the form that parses
    back to the same values (paths absolute, lists as words, booleans either way). `spelling` renames
    flags (the DistilBERT pipeline's mode is chosen by spelling --output_dir as --dump_path)."""
    words = []
    for args in parsed:
        for f in dataclasses.fields(args):
            value, default = normal_value(getattr(args, f.name), f.name), _default(f)
            if value == default and default is not dataclasses.MISSING:
                continue
            flag = "--" + (spelling or {}).get(f.name, f.name)
            if isinstance(value, bool):
                words += [flag] if value else [flag, "False"]
            elif isinstance(value, (list, tuple)):
                words += [flag, *map(str, value)]
            elif value is not None:
                words += [flag, str(value)]
    return words


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_state(root: str = TOOLKIT_ROOT) -> dict:
    """{"git_commit": sha, "git_dirty": bool} of the toolkit's checkout; {} outside a git checkout or
    without git."""
    def git(*cmd):
        return subprocess.run(["git", "-C", root, *cmd], capture_output=True, text=True, timeout=10, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": dirty}


def run_record(script: str, parsed, processes: int = 1, spelling: dict[str, str] | None = None) -> dict:
    return {"script": script, "command": command_line(script, parsed, spelling), "args": resolved_args(parsed),
            "versions": library_versions(), **git_state(), "processes": processes}


def record_file(do_train: bool) -> str:
    return TRAINING_RECORD if do_train else EVALUATION_RECORD


# ------------------------------------------------------------------------------------- the log's summary
def _size(model) -> str:
    n = sum(p.numel() for p in model.parameters())
    layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    name = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    return (f"{type(model).__name__} {name}".strip() + f", {n / 1e6:.2f}M parameters"
            + (f", {layers} layer{'s' if layers != 1 else ''}" if layers is not None else ""))


def run_summary(trainer, examples: int, epochs: int, steps: int) -> str:
    """What the run is about to do, in a dozen lines: method (teacher strategy and loss), models,
    data, steps and the effective batch."""
    args, acc, objective = trainer.args, trainer.accelerator, trainer.objective
    loss = " + ".join(f"{w:g}·{name}" for name, w in trainer.term_weights.items())
    temperature = getattr(objective, "temperature", None)
    teacher = trainer.teacher if trainer.teacher.model is not None else None
    global_batch = args.per_device_train_batch_size * acc.num_processes * args.gradient_accumulation_steps
    lines = [
        "=" * 30 + " run " + "=" * 30,
        f"method:   {type(teacher).__name__ if teacher is not None else 'no teacher (fine-tuning)'}; "
        f"loss = {loss}" + (f", τ = {temperature:g}" if temperature is not None and teacher is not None else ""),
        f"student:  {_size(trainer.unwrapped_student)}",
        f"teacher:  {_size(teacher.model) + (' (learns)' if teacher.learns else ' (frozen)')}"
        if teacher is not None else "teacher:  none",
        f"data:     {examples} training examples; dev sets: "
        + (", ".join(f"{k or 'dev'} {len(v)}" for k, v in trainer.eval_datasets.items()) or "none"),
        f"steps:    {steps} optimizer steps = {epochs} epoch(s); effective batch {global_batch} = "
        f"{args.per_device_train_batch_size} per process x {acc.num_processes} process(es) x "
        f"{args.gradient_accumulation_steps} accumulation",
        f"optim:    AdamW lr {args.learning_rate:g}, {args.lr_scheduler_type} schedule, weight decay "
        f"{args.weight_decay:g}; precision {'bf16' if args.bf16 else 'fp16' if args.fp16 else 'fp32'} on "
        f"{acc.device}",
        f"evaluate: {args.resolved_eval_strategy()}" + (f" every {args.eval_steps} steps" if args.eval_steps else "")
        + f"; output {args.output_dir}",
        "=" * 65,
    ]
    return "\n".join(lines)
