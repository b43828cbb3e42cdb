"""A sweep's manifest: which runs (task × method × seed), each an ordinary entry-script command line.

A TOML file (docs/sweeps.md explains it; sweeps/glue_minilm.toml is a full one):

    script = "run_glue.py"                       # the entry script every run calls
    output_root = "sweep_runs/glue"              # a run's --output_dir: <output_root>/<task>/<method>/seed<seed>
    seeds = [1, 2, 3]
    baseline = "kd"                              # the method every other is compared with
    concurrency = 4                              # runs at a time (scripts/sweep.py --concurrency overrides)
    launcher = []                                # prefix of every command, e.g. ["torchrun", "--nproc_per_node", "2"]
    common = ["--do_train", "--do_eval", "--max_seq_length", "128"]                       # every run
    methods_common = ["--model_name_or_path", "{prepared}", "--student_layers", "0,2,4"]   # every run but prepare

    [prepare]                                    # optional: one run per task before its methods (the task's
    args = ["--model_name_or_path", "{env[MINILM]}"]   # fine-tuned teacher), into <output_root>/<task>/prepare
    [tasks.rte]
    args = ["--task_name", "rte", "--data_dir", "{env[GLUE]}/RTE"]
    [methods.kd]
    args = ["--teacher_model", "{prepared}", "--alpha_kd", "0.5"]
    launcher = ["torchrun", "--nproc_per_node", "2"]   # optional, per method (or per task)

A run's command: launcher (default: this interpreter) + script + common + task args + methods_common +
method args + `--seed S --output_dir D --save_eval_predictions` (the per-example dev predictions the
comparisons need). A prepare run's: common + task args + prepare args, with the first seed, into
<output_root>/<task>/prepare. A flag given twice counts with its last value, as in every entry script.
In the args, `{task}`, `{method}`, `{seed}`, `{root}` (output_root), `{prepared}` (the task's prepare dir)
and `{env[NAME]}` (an environment variable, e.g. a model's local path) are replaced; `{python}` in a
launcher is this interpreter. Relative paths stay relative to the directory the sweep is started from, as
on a command line.
"""
from __future__ import annotations

import os
import re
import sys
import tomllib
from dataclasses import dataclass, field

from distill.errors import UsageError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # task and method names become directory names
MANAGED_FLAGS = ("--seed", "--output_dir", "--save_eval_predictions")  # the sweep sets them
KEYS = {"script", "output_root", "seeds", "baseline", "concurrency", "launcher", "common", "methods_common",
        "prepare", "tasks", "methods"}


@dataclass(frozen=True)
class Run:
    """One entry-script run of the sweep."""
    task: str
    method: str  # "prepare" for a task's preparatory run
    seed: int
    output_dir: str
    argv: tuple[str, ...]  # the entry script and its flags (what the run's own record holds)
    launcher: tuple[str, ...] = ()  # what runs it (default: this interpreter)

    @property
    def id(self) -> str:
        return f"{self.task}/{self.method}/seed{self.seed}"

    @property
    def command(self) -> list[str]:
        return [*(self.launcher or (sys.executable,)), *self.argv]


@dataclass(frozen=True)
class Manifest:
    path: str
    script: str
    output_root: str
    seeds: tuple[int, ...]
    baseline: str | None
    concurrency: int
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    prepare: dict[str, Run] = field(default_factory=dict)  # task -> its preparatory run
    runs: tuple[Run, ...] = ()

    def runs_of(self, task: str, method: str) -> list[Run]:
        return [r for r in self.runs if r.task == task and r.method == method]


def _strings(value, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise UsageError(f"{where} must be a list of strings (command-line arguments), got {value!r}")
    return [str(v) for v in value]


def _table(value, where: str, allowed: set[str]) -> dict:
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a table, got {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return value


def _fill(args: list[str], values: dict[str, str], where: str) -> list[str]:
    out = []
    for arg in args:
        try:
            out.append(arg.format(**values))
        except KeyError as e:
            name = e.args[0] if e.args else "?"
            if f"{{env[{name}]}}" in arg:
                raise UsageError(f"{where}: {arg!r} names the environment variable {name}, which is not set; "
                                 f"export {name}=... first") from None
            raise UsageError(f"{where}: {arg!r} has an unknown placeholder {{{name}}}; use {{task}}, {{method}}, "
                             "{seed}, {root}, {prepared}, {env[NAME]} (and {{ }} for literal braces)") from None
        except (IndexError, ValueError) as e:
            raise UsageError(f"{where}: {arg!r} has an unknown or malformed placeholder ({e}); use {{task}}, "
                             "{method}, {seed}, {root}, {prepared}, {env[NAME]} for a set environment variable "
                             "(and {{ }} for literal braces)") from None
    managed = [a for a in out if a.split("=")[0] in MANAGED_FLAGS]
    if managed:
        raise UsageError(f"{where}: {managed[0].split('=')[0]} is set by the sweep for every run; remove it")
    return out


def load_manifest(path: str) -> Manifest:
    """The manifest at `path`, checked and expanded into its runs; bad content is a one-line UsageError."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such manifest") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML ({e})") from None
    raw = _table(raw, path, KEYS)
    for key in ("script", "output_root", "tasks", "methods"):
        if key not in raw:
            raise UsageError(f"{path}: `{key}` is missing (see docs/sweeps.md)")
    script = str(raw["script"])
    if os.path.basename(script) != "run_glue.py":
        raise UsageError(f"{path}: script {script!r}: the sweep's table reads run_glue.py's per-example dev "
                         "predictions (--save_eval_predictions); other entry scripts are not supported yet")
    if not os.path.isfile(script):
        raise UsageError(f"{path}: script {script!r} not found from {os.getcwd()}; start the sweep from the "
                         "toolkit's directory or give the script's path")
    seeds = raw.get("seeds", [42])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise UsageError(f"{path}: seeds must be a non-empty list of distinct integers, got {seeds!r}")
    concurrency = raw.get("concurrency", 1)
    if not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(f"{path}: concurrency must be an integer >= 1, got {concurrency!r}")
    root = str(raw["output_root"])
    if "{" in root or "}" in root:
        raise UsageError(f"{path}: output_root {root!r}: placeholders are for the args; give the directory itself")
    launcher = _strings(raw.get("launcher", []), f"{path}: launcher")
    common = _strings(raw.get("common", []), f"{path}: common")
    methods_common = _strings(raw.get("methods_common", []), f"{path}: methods_common")
    tasks = _table(raw["tasks"], f"{path}: [tasks]", set(raw["tasks"]) if isinstance(raw["tasks"], dict) else set())
    methods = _table(raw["methods"], f"{path}: [methods]",
                     set(raw["methods"]) if isinstance(raw["methods"], dict) else set())
    for kind, names in (("task", tasks), ("method", methods)):
        if not names:
            raise UsageError(f"{path}: no {kind}s; add a [{kind}s.<name>] table")
        bad = [n for n in names if not NAME.match(n) or n == "prepare"]
        if bad:
            raise UsageError(f"{path}: {kind} name {bad[0]!r}: use letters, digits, '_', '.', '-' (not 'prepare')")
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in methods:
        raise UsageError(f"{path}: baseline {baseline!r} is not one of the methods ({', '.join(methods)})")
    prepare_spec = _table(raw.get("prepare", {}), f"{path}: [prepare]", {"args", "launcher"}) \
        if "prepare" in raw else None

    def spec(table: dict, where: str) -> tuple[list[str], list[str] | None]:
        table = _table(table, where, {"args", "launcher"})
        return (_strings(table.get("args", []), f"{where} args"),
                _strings(table["launcher"], f"{where} launcher") if "launcher" in table else None)

    def make(task: str, method: str, seed: int, parts: list[list[str]], runner: list[str] | None, where: str) -> Run:
        prepare_run = method == "prepare"  # (its own dir; its dev predictions are not compared)
        out = os.path.join(root, task, method) if prepare_run else os.path.join(root, task, method, f"seed{seed}")
        values = {"task": task, "method": method, "seed": str(seed), "root": root,
                  "prepared": os.path.join(root, task, "prepare"), "env": dict(os.environ)}
        flags = [a for part in parts for a in _fill(part, values, where)]
        argv = (script, *flags, "--seed", str(seed), "--output_dir", out,
                *(() if prepare_run else ("--save_eval_predictions",)))
        chosen = [a.replace("{python}", sys.executable) for a in (runner if runner is not None else launcher)]
        return Run(task, method, seed, out, argv, tuple(chosen))

    prepare, runs = {}, []
    for task, task_table in tasks.items():
        task_args, task_launcher = spec(task_table, f"{path}: [tasks.{task}]")
        if prepare_spec is not None:
            p_args, p_launcher = spec(prepare_spec, f"{path}: [prepare]")
            # common + the task's args (its data) + its own (which win: the last of a repeated flag counts)
            prepare[task] = make(task, "prepare", seeds[0], [common, task_args, p_args], p_launcher,
                                 f"{path}: [prepare]")
        for method, method_table in methods.items():
            m_args, m_launcher = spec(method_table, f"{path}: [methods.{method}]")
            for seed in seeds:
                runs.append(make(task, method, seed, [common, task_args, methods_common, m_args],
                                 m_launcher if m_launcher is not None else task_launcher,
                                 f"{path}: [tasks.{task}] / [methods.{method}]"))
    if any("--do_eval" not in r.argv for r in runs):
        raise UsageError(f"{path}: the table compares each run's dev predictions: add --do_eval to `common` (or to "
                         "every task or method)")
    return Manifest(path, script, root, tuple(seeds), baseline, concurrency, tuple(tasks), tuple(methods),
                    prepare, tuple(runs))
