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

import gc
import inspect
import json
import logging
import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, replace

import torch

from distill.entry import on_main_process
from distill.errors import UsageError
from distill.io_utils import atomic_write_json
from distill.modeling import load_source_config
from distill.run_dir import LOCK_FILE, flag_differences, lock_dir, run_flags
from distill.run_record import TRAINING_RECORD, flag_words, run_record
from distill.runtime import process_state
from takd.args import Assistant, TAKDArguments, spread_layers
from takd.summary import format_table, write_summary

logger = logging.getLogger(__name__)

CHAIN_FILE, STAGE_FILE = "takd_chain.json", "takd_stage.json"


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


def run_chain(run: Callable[[list[str]], dict], parsed: tuple, spec: ChainSpec,
              spelling: dict[str, str] | None = None) -> dict:
    """Run every stage of the chain that --ta_models asks for; returns the last stage's results with
    the summary under "takd_summary". `spelling` renames flags in the stages' command lines (a
    DistilBERT-pipeline command's stages keep --dump_path, and so its mode)."""
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
    state = process_state(flag("use_cpu"))
    chain = {"stages": [s.name for s in stages], "settings": run_flags(parsed)}  # the flags that define it

    def claim() -> dict | None:  # one chain per output dir (each stage's run locks its own stage dir)
        lock_dir(out)
        return check_output_dir(out, chain, overwrite)
    recorded = on_main_process(claim, state)
    # what the chain runs with (the stages' own dirs get theirs from their runs)
    record = run_record(os.path.basename(inspect.getfile(run)), parsed, state.num_processes, spelling)

    def write_chain_records():
        atomic_write_json(os.path.join(out, CHAIN_FILE), chain)
        atomic_write_json(os.path.join(out, TRAINING_RECORD), record)
    if recorded is None and state.is_main_process:  # no earlier chain here: record this one at once
        write_chain_records()
    # (an earlier chain's record, under --overwrite_output_dir, is replaced once a stage has trained)
    pending = recorded is not None and recorded != chain

    # Nothing of an earlier chain is removed here: a stage's own run clears its dir at its first write
    # (after its checks), so a chain refused for bad input leaves the earlier chain as it was. Under
    # --overwrite_output_dir no stage counts as finished; once a stage trains, the later ones start over
    # (their teacher changed).
    records, results, retrained = [], {}, overwrite
    for stage in stages:
        marker = os.path.join(stage.dir, STAGE_FILE)
        if os.path.isfile(marker) and not retrained:
            with open(marker, encoding="utf-8") as f:
                stage_result = json.load(f)
            logger.info("TAKD stage %d/%d (%s) finished earlier: skipped", stage.index, len(stages), stage.name)
        else:
            stage_args = stage_argv(parsed, spec, stage, teacher, spelling)
            if retrained and "--overwrite_output_dir" not in stage_args:
                stage_args.append("--overwrite_output_dir")
            results = run_stage(run, stage_args, stage, stages, teacher)
            stage_result = stage_record(stage, teacher, stage_args, results)
            retrained = True
            if state.is_main_process:
                if pending:
                    write_chain_records()
                    pending = False
                atomic_write_json(marker, stage_result)
            state.wait_for_everyone()
        records.append(stage_result)
        teacher = stage.dir  # the stage's best dev model teaches the next stage
    summary = write_summary(out, flag("teacher_model"), records) if state.is_main_process else None
    if summary is not None:
        print(format_table(summary), flush=True)
    return {**results, "takd_summary": summary}


def run_stage(run, stage_args: list[str], stage: Stage, stages: list[Stage], teacher: str) -> dict:
    """One stage's run, by the entry script's own rules: it resumes from its last checkpoint if it has
    one, and starts over with --overwrite_output_dir."""
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


def stage_argv(parsed: tuple, spec: ChainSpec, stage: Stage, teacher: str,
               spelling: dict[str, str] | None = None) -> list[str]:
    """The command line of one stage, built from the chain's parsed flags (not from the words the user
    typed, which may have come from an argument file): this stage's teacher, student, output dir and
    budget replace the chain's; the TA flags, and flags about the chain's first teacher in later stages,
    go back to their defaults."""
    defaults = {f.name for f in fields(TAKDArguments)} | {"resume_from_checkpoint"}
    if stage.index > 1:
        defaults |= set(spec.first_teacher_fields)
    values = {"output_dir": stage.dir, "teacher_model": teacher}
    logging_dir = next((p.logging_dir for p in parsed if hasattr(p, "logging_dir")), None)
    if logging_dir:
        values["logging_dir"] = os.path.join(logging_dir, os.path.basename(stage.dir))
    if stage.assistant is not None:
        defaults |= set(spec.student_fields)
        if stage.layer_ids is not None:  # copied from the previous model of the chain: this stage's teacher
            values |= {"model_name_or_path": teacher, "student_layers": ",".join(map(str, stage.layer_ids))}
        else:
            values["model_name_or_path"] = stage.assistant.path
        values |= dict(stage.budget)
    staged = []
    for args in parsed:
        changes = {f.name: _default(f) for f in fields(args) if f.name in defaults}
        changes |= {name: value for name, value in values.items() if name in {f.name for f in fields(args)}}
        staged.append(replace(args, **changes))
    return flag_words(staged, spelling)


def _default(f):
    return f.default_factory() if f.default_factory is not MISSING else f.default


def check_output_dir(output_dir: str, chain: dict, overwrite: bool) -> dict | None:
    """A non-empty output dir must hold this same chain (to resume it) unless --overwrite_output_dir.
    Returns the dir's record of a chain (takd_chain.json), if it has one."""
    path = os.path.join(output_dir, CHAIN_FILE)
    recorded = None
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
    if overwrite or recorded == chain:
        return recorded
    if recorded is None:
        if os.path.isdir(output_dir) and set(os.listdir(output_dir)) - {LOCK_FILE}:
            raise UsageError(f"output directory {output_dir} is not empty and holds no TA chain; pass "
                             "--overwrite_output_dir to start one there, or choose another --output_dir")
        return None
    if recorded.get("stages") != chain["stages"]:
        raise UsageError(f"output directory {output_dir} holds a TA chain with stages {recorded.get('stages')}, not "
                         f"{chain['stages']}; rerun that chain's command to resume it, pass --overwrite_output_dir to "
                         "start over, or choose another --output_dir")
    settings = recorded.get("settings") if isinstance(recorded.get("settings"), dict) else {}
    raise UsageError(f"output directory {output_dir} holds this TA chain run with other flags: "
                     f"{flag_differences(settings, chain['settings'])}; rerun its command to resume it, pass "
                     "--overwrite_output_dir to start over, or choose another --output_dir")
