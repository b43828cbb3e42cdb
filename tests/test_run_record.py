"""A run explains itself: its record (every resolved flag, a command that reruns it, versions, commit), the
one-screen summary its log starts training with, --help grouped by concern with help for every flag."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

import pytest
from conftest import REPO_ROOT

import run_glue
import run_imdb_w_distillation
import run_squad_w_distillation
import train_lm_distill
from distill.args import _Parser, parse_command_line
from distill.run_record import command_line, git_state, resolved_args
from lm.args import translate_original_flags

SCRIPTS = {"run_glue.py": run_glue, "run_squad_w_distillation.py": run_squad_w_distillation,
           "run_imdb_w_distillation.py": run_imdb_w_distillation, "train_lm_distill.py": train_lm_distill}
TYPED = {  # flags as users type them: aliases, bools both ways, a relative path, floats
    "run_glue.py": "--student_model_name_or_path s --teacher_model_name_or_path t --task_name rte --data_dir . "
                   "--do_mask True --alpha_corr 0.005 --per_gpu_train_batch_size 4 --no_group_by_length "
                   "--init_classifier_as_zero --train_teacher --learning_rate 2e-5 --output_dir out "
                   "--mpo_input_shape 4,8 32,24 --report_to none --ta_models ta,2",
    "run_squad_w_distillation.py": "--model_type distilbert --model s --data_dir d --train_file train.json "
                                   "--do_lower_case --alpha_ce 0.0 --output_dir out --output_dir_intermed i",
    "run_imdb_w_distillation.py": "--model s --teacher_model_name_or_path t --output_dir out --truncation head",
    "train_lm_distill.py": "--student_name s --teacher_name t --mlm --alpha_ce 5.0 --alpha_mlm 2.0 --alpha_clm 0.0 "
                           "--dump_path out --data_file corpus.txt --force --n_gpu 0",
}


def parse(script: str, words: list[str]):
    if script == "train_lm_distill.py":
        words = translate_original_flags(words)
    return parse_command_line(SCRIPTS[script].FLAGS, words)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_the_recorded_command_reruns_with_the_same_values(script, tmp_path, monkeypatch):
    for name in ("rte", "none", "head", "2", "ta"):  # folders named like values that are not paths (and a TA)
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    parsed = parse(script, TYPED[script].split())
    typed, command = resolved_args(parsed), shlex.split(command_line(script, parsed))
    assert command[:2] == ["python", os.path.join(REPO_ROOT, script)]
    assert os.path.join(str(tmp_path), "rte") not in command and "/none" not in " ".join(command)
    if script == "run_glue.py":  # a TA dir made absolute, a TA layer count left alone
        assert command[command.index("--ta_models") + 1] == f"{os.path.realpath(tmp_path)}/ta,2"
    monkeypatch.chdir(REPO_ROOT)  # from another directory: paths were recorded absolute
    assert resolved_args(parse(script, command[2:])) == typed


def test_a_pipeline_command_is_recorded_in_the_pipelines_spelling():
    from lm.pipeline import PIPELINE_SPELLING
    parsed = parse("train_lm_distill.py", TYPED["train_lm_distill.py"].split())
    command = shlex.split(command_line("train_lm_distill.py", parsed, PIPELINE_SPELLING))
    assert "--dump_path" in command and "--force" in command and "--output_dir" not in command


def test_every_flag_has_help_and_help_is_grouped_by_concern(capsys):
    for name, script in SCRIPTS.items():
        parser = _Parser(script.FLAGS, [])
        for action in parser._actions:
            text = re.sub(r"\[[^\]]*\]$", "", action.help or "").strip()  # (the range alone is not help)
            assert action.help == "==SUPPRESS==" or len(text) > 3, (name, action.option_strings)
        with pytest.raises(SystemExit) as stop:
            script.main(["--help"])
        assert stop.value.code == 0
        groups = [g.title for g in parser._action_groups[2:]]
        assert len(groups) == len(script.FLAGS)
        shown = capsys.readouterr().out
        assert all(f"{title}:" in shown for title in groups), name


def test_a_training_run_records_itself_and_an_evaluation_does_not_replace_it(toy, launch, tmp_path):
    out = tmp_path / "out"
    argv = ["run_glue.py", "--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name",
            "sst2", "--data_dir", toy["task"], "--do_train", "--do_eval", "--max_steps", "4",
            "--gradient_accumulation_steps", "2", "--per_device_train_batch_size", "8", "--disable_tqdm",
            "--report_to", "none", "--output_dir", str(out)]
    code, log = launch.run(argv)
    assert code == 0, log[-2000:]
    # the log's summary: method, both models' sizes, steps and the effective batch
    summary = log[log.index("=== run ==="):]
    for expected in ("method:   FrozenTeacher; loss = 0·ce + 1·kd, τ = 1", "student:  BertForSequenceClassification",
                     "teacher:  BertForSequenceClassification", "(frozen)", "96 training examples",
                     "4 optimizer steps", "effective batch 16 = 8 per process x 1 process(es) x 2 accumulation"):
        assert expected in summary, expected
    record = json.loads((out / "run_args.json").read_text())
    assert record["args"]["training, evaluation and output"]["gradient_accumulation_steps"] == 2
    assert record["args"]["model (student and teacher)"]["teacher_model"] == os.path.realpath(toy["teacher"])
    assert set(record["versions"]) >= {"python", "torch", "transformers", "accelerate"}
    assert record.get("git_commit") == git_state().get("git_commit")  # (absent outside a git checkout)

    before = (out / "run_args.json").read_bytes()
    code, log = launch.run(["run_glue.py", "--model_name_or_path", str(out), "--task_name", "sst2", "--data_dir",
                            toy["task"], "--do_predict", "--output_dir", str(out), "--disable_tqdm"])
    assert code == 0, log[-2000:]
    assert (out / "run_args.json").read_bytes() == before
    evaluation = json.loads((out / "eval_run_args.json").read_text())
    assert "--do_predict" in evaluation["command"] and "--do_train" not in evaluation["command"]


def test_git_state_names_the_checkout_commit():
    head = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        assert git_state() == {}
    else:
        assert git_state()["git_commit"] == head.stdout.strip()
