"""Run a teacher-assistant chain: the entry script's own `run(argv)` once per stage, with the stage's
teacher, student and output dir swapped into the command line; every other flag applies to every
stage, so each stage is a full run of the chosen method (KD, ProKT, LGTM, OPDF, feature or LM losses).

    output_dir/takd_chain.json          the chain's stages and flags (a rerun must match them)
    output_dir/stage_<k>_<name>/        stage k: best dev model, results, checkpoints, TensorBoard logs,
                                        takd_stage.json once it finished
    output_dir/takd_summary.json        size and dev metric of the teacher and of every stage

A rerun of the same command resumes: finished stages are skipped, the unfinished one continues from
its last checkpoint. Models are selected on the dev set only; the test split is only predicted
(--do_predict), never used to choose a model or a teacher.
"""
from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from distill.args import flag_aliases
from distill.checkpoint import list_checkpoints
from distill.errors import UsageError
from distill.io_utils import atomic_write_json
from distill.modeling import load_source_config
from distill.trainer import process_state
from takd.args import Assistant, TAKDArguments, spread_layers
from takd.summary import format_table, write_summary

logger = logging.getLogger(__name__)

CHAIN_FILE, STAGE_FILE = "takd_chain.json", "takd_stage.json"
PER_STAGE_FLAGS = ("output_dir", "teacher_model", "logging_dir", "resume_from_checkpoint")


@dataclass(frozen=True)
class ChainSpec:
    """What a script's stages change. `student_fields`: the flags that define the student (replaced in
    an assistant's stage); `first_teacher_fields`: flags about the chain's first teacher only;
    `refused`: (field, why) pairs a chain cannot honour."""
    student_fields: tuple[str, ...]
    first_teacher_fields: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()


@dataclass
class Stage:
    index: int  # 1-based
    name: str
    assistant: Assistant | None  # None: the student, as the main flags define it
    dir: str
    layer_ids: list[int] | None = None  # an assistant given as a layer count copies these layers
    budget: tuple[tuple[str, float], ...] = ()  # (flag, value) replacing the main flags in this stage


def run_chain(run: Callable[[list[str]], dict], argv: list[str], flag_types: tuple, parsed: tuple,
              spec: ChainSpec) -> dict:
    """Run every stage of the chain that --ta_models asks for; returns the last stage's results with
    the summary under "takd_summary"."""
    def flag(name):
        return next(getattr(p, name) for p in parsed if hasattr(p, name))

    takd = next(p for p in parsed if isinstance(p, TAKDArguments))
    takd.validate(flag("do_train"), flag("do_eval"), flag("teacher_model") is not None, flag("max_steps"))
    if flag("resume_from_checkpoint"):
        raise UsageError("--resume_from_checkpoint with --ta_models: a chain resumes by itself (finished stages are "
                         "skipped, the current one continues from its last checkpoint); rerun the same command")
    for name, why in spec.refused:
        if flag(name) is not None:
            raise UsageError(f"--{name} with --ta_models: {why}")
    out, overwrite, teacher = flag("output_dir"), flag("overwrite_output_dir"), flag("teacher_model")
    stages = plan_stages(takd, out, teacher, lambda path: load_source_config(path, flag("cache_dir"),
                                                                               flag("trust_remote_code")))
    argv = command_line_tokens(argv)
    state = process_state(flag("use_cpu"))
    settings = chain_settings(argv, flag_types)
    check_output_dir(out, stages, settings, overwrite)
    state.wait_for_everyone()  # every process has read the output dir before the main one writes into it
    if state.is_main_process:
        if overwrite:  # start the chain over: no stage of an earlier chain may be taken as finished
            for stage in stages:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(stage.dir, STAGE_FILE))
        atomic_write_json(os.path.join(out, CHAIN_FILE), {"stages": [s.name for s in stages], "settings": settings})
    state.wait_for_everyone()

    records, results = [], {}
    for stage in stages:
        marker = os.path.join(stage.dir, STAGE_FILE)
        if os.path.isfile(marker):
            with open(marker, encoding="utf-8") as f:
                record = json.load(f)
            logger.info("TAKD stage %d/%d (%s) finished earlier: skipped", stage.index, len(stages), stage.name)
        else:
            stage_args = stage_argv(argv, flag_types, spec, stage, teacher, flag("logging_dir"))
            results = run_stage(run, stage_args, stage, stages, teacher, resume=not overwrite)
            record = stage_record(stage, teacher, stage_args, results)
            if state.is_main_process:
                atomic_write_json(marker, record)
            state.wait_for_everyone()
        records.append(record)
        teacher = stage.dir  # the stage's best dev model teaches the next stage
    summary = write_summary(out, flag("teacher_model"), records) if state.is_main_process else None
    if summary is not None:
        print(format_table(summary), flush=True)
    return {**results, "takd_summary": summary}


def run_stage(run, stage_args: list[str], stage: Stage, stages: list[Stage], teacher: str, resume: bool) -> dict:
    """One stage's run. It resumes from its last checkpoint if it has one; a stage killed before its
    first checkpoint starts over, and the later stages' dirs go (they learnt from an older version)."""
    state = process_state()  # (the chain's, made by run_chain)
    if state.is_main_process:
        if not resume or not list_checkpoints(stage.dir):
            shutil.rmtree(stage.dir, ignore_errors=True)
        for later in stages[stage.index:]:
            shutil.rmtree(later.dir, ignore_errors=True)
    state.wait_for_everyone()
    logger.info("TAKD stage %d/%d (%s), teacher %s: %s", stage.index, len(stages), stage.name, teacher,
                " ".join(stage_args))
    results = run(stage_args)
    gc.collect()  # the stage's models, before the next stage loads its own
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return results


def stage_record(stage: Stage, teacher: str, stage_args: list[str], results: dict) -> dict:
    """What takd_stage.json keeps of a finished stage (the summary is built from these)."""
    return {"stage": stage.index, "name": stage.name, "dir": stage.dir, "teacher": teacher, "argv": stage_args,
            "main_metric": results["main_metric"], "greater_is_better": results["greater_is_better"],
            "teacher_learns": results["teacher_learns"],
            "metrics": {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}}


def plan_stages(takd: TAKDArguments, output_dir: str, teacher: str, load_config) -> list[Stage]:
    """The stages, with the layers each layer-count assistant copies (checked before anything trains:
    an assistant cannot have more layers than the model before it)."""
    assistants = takd.assistants()
    budgets = takd.stage_budgets(len(assistants))
    previous_layers = load_config(teacher).num_hidden_layers
    stages = []
    for i, ta in enumerate([*assistants, None]):
        layer_ids = None
        if ta is not None and ta.num_layers is not None:
            layer_ids = spread_layers(previous_layers, ta.num_layers)
            previous_layers = ta.num_layers
        elif ta is not None:
            previous_layers = load_config(ta.path).num_hidden_layers
        name = ta.name if ta is not None else "student"
        stages.append(Stage(i + 1, name, ta, os.path.join(output_dir, f"stage_{i + 1}_{name}"), layer_ids,
                            budgets[i] if ta is not None else ()))
    return stages


def stage_argv(argv: list[str], flag_types: tuple, spec: ChainSpec, stage: Stage, teacher: str,
               logging_dir: str | None) -> list[str]:
    """The command line of one stage: the chain's, with this stage's teacher, student, output dir
    and budget."""
    drop = set(PER_STAGE_FLAGS) | {f.name for f in fields(TAKDArguments)}
    add = ["--output_dir", stage.dir, "--teacher_model", teacher]
    if logging_dir:
        add += ["--logging_dir", os.path.join(logging_dir, os.path.basename(stage.dir))]
    if stage.index > 1:
        drop |= set(spec.first_teacher_fields)
    if stage.assistant is not None:
        drop |= set(spec.student_fields)
        if stage.layer_ids is not None:  # copied from the previous model of the chain: this stage's teacher
            add += ["--model_name_or_path", teacher, "--student_layers", ",".join(map(str, stage.layer_ids))]
        else:
            add += ["--model_name_or_path", stage.assistant.path]
        for name, value in stage.budget:
            drop.add(name)
            add += [f"--{name}", str(value)]
    return strip_flags(argv, flag_spellings(flag_types, drop)) + add


def command_line_tokens(argv: list[str]) -> list[str]:
    """argv, or the flags of a single .json argument file (HF style) as argv."""
    if not (len(argv) == 1 and argv[0].endswith(".json")):
        return argv
    with open(argv[0], encoding="utf-8") as f:
        raw = json.load(f)
    tokens = []
    for key, value in raw.items():
        if value is not None:
            tokens += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return tokens


def flag_spellings(flag_types: tuple, names: set[str]) -> set[str]:
    """Every command-line spelling of the fields `names`: --name and its aliases."""
    aliases = flag_aliases(flag_types)
    return {f"--{n}" for n in names} | {f"--{alias}" for alias, n in aliases.items() if n in names}


def flag_groups(argv: list[str]) -> list[tuple[str, ...]]:
    """argv as (flag, value, ...) groups: a flag with its values (`--a=1` is the group ('--a', '1'))."""
    groups = []
    for token in argv:
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            groups.append((name, value) if eq else (name,))
        elif groups:
            groups[-1] = (*groups[-1], token)
        else:
            groups.append(("", token))
    return groups


def strip_flags(argv: list[str], spellings: set[str]) -> list[str]:
    return [token for group in flag_groups(argv) if group[0] not in spellings for token in group]


def chain_settings(argv: list[str], flag_types: tuple) -> list[list[str]]:
    """The chain's flags in a canonical order, without those that do not change what it computes
    (where it writes, whether it may overwrite): what a rerun must repeat to resume."""
    ignored = flag_spellings(flag_types, {"output_dir", "logging_dir", "overwrite_output_dir"})
    return sorted(list(g) for g in flag_groups(argv) if g[0] not in ignored)


def check_output_dir(output_dir: str, stages: list[Stage], settings: list[list[str]], overwrite: bool) -> None:
    """A non-empty output dir must hold this same chain (to resume it) unless --overwrite_output_dir."""
    if overwrite or not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return
    path = os.path.join(output_dir, CHAIN_FILE)
    if not os.path.isfile(path):
        raise UsageError(f"output directory {output_dir} is not empty and holds no TA chain; pass "
                         "--overwrite_output_dir to start one there, or choose another --output_dir")
    with open(path, encoding="utf-8") as f:
        recorded = json.load(f)
    names = [s.name for s in stages]
    if recorded["stages"] != names:
        raise UsageError(f"output directory {output_dir} holds a TA chain with stages {recorded['stages']}, not "
                         f"{names}; rerun that chain's command to resume it, pass --overwrite_output_dir to start "
                         "over, or choose another --output_dir")
    if recorded["settings"] != settings:
        before, now = ({g[0]: g[1:] for g in s} for s in (recorded["settings"], settings))
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        raise UsageError(f"output directory {output_dir} holds this TA chain run with other flags "
                         f"({', '.join(changed)}); rerun its command to resume it, pass --overwrite_output_dir to "
                         "start over, or choose another --output_dir")
