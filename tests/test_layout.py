"""The package graph of docs/architecture.md: imports point down (entry -> tasks/methods -> core -> losses),
never up, and no module does work at import time that changes the process (csv limits, logger levels)."""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = {"run_glue", "run_squad_w_distillation", "run_imdb_w_distillation", "train_lm_distill", "scripts",
         "benchmarks"}
TASKS = {"glue", "squad", "imdb", "lm"}
METHODS = {"lgtm", "opdf", "feature_kd", "sequence_kd", "takd"}
TOOLS = {"sweep"}  # runs the entry scripts as commands; imports the core only
LAYER = {**{p: 0 for p in ENTRY}, **{p: 1 for p in TASKS | METHODS | TOOLS}, "distill": 2, "losses": 3}


def ours(name: str) -> str | None:
    top = name.split(".")[0]
    return top if top in LAYER else None


def modules():
    for package in sorted(set(LAYER) - ENTRY):
        for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
            for f in sorted(files):
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    yield package, os.path.relpath(path, ROOT), ast.parse(open(path, encoding="utf-8").read())


def imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_layers_exist_as_drawn():
    missing = [p for p in LAYER if not os.path.exists(os.path.join(ROOT, p)) and
               not os.path.exists(os.path.join(ROOT, p + ".py"))]
    assert missing == []


@pytest.mark.parametrize("package", sorted(set(LAYER) - ENTRY))
def test_no_import_points_up(package):
    up = []
    for owner, path, tree in modules():
        if owner != package:
            continue
        for name in imported(tree):
            target = ours(name)
            if target is not None and target != owner and LAYER[target] < LAYER[owner]:
                up.append(f"{path} imports {name}")
    assert up == []


def test_no_two_modules_share_a_name_across_packages_where_it_confuses():
    # "features" once named three modules (a method, SQuAD's windows, the hidden-state losses)
    names = [path for _, path, _ in modules() if os.path.basename(path) == "features.py"]
    assert names == []


def test_library_modules_change_no_process_state_at_import():
    """Calls at module level that change the interpreter for everyone (the csv field cap, a logger's
    level, the default dtype, a global seed) belong inside the function that needs them."""
    offenders = []
    for _, path, tree in modules():
        for node in tree.body:
            call = node.value if isinstance(node, ast.Expr) else None
            if isinstance(call, ast.Call):
                offenders.append(f"{path}:{node.lineno} {ast.unparse(call)[:60]}")
    assert offenders == []
