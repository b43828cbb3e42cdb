"""The papers' READMEs' commands, typed as their users type them: only model and data paths are ours, plus a
tiny budget where the command trains for real (noted per command). The DistilBERT pipeline's command is in
tests/test_lm_pipeline_mode.py."""
from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import FIXTURES
from test_imdb import write_toy_imdb
from toys import toy_squad
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertTokenizerFast

import run_glue
import run_imdb_w_distillation
import run_squad_w_distillation


def run(script, command: str, **paths) -> None:
    """`command` as printed in a README, `{name}` placeholders filled with `paths`."""
    argv = command.format(**{k: str(v) for k, v in paths.items()}).split()
    assert script.main(argv) == 0, command


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def assert_model_dir(out, *extra):
    """What every training run leaves: a Hugging Face model dir, its results and the run's own record."""
    names = set(os.listdir(out))
    expected = {"config.json", "model.safetensors", "tokenizer.json", "train_results.json", "all_results.json",
                "trainer_state.json", "run_args.json", "run_flags.json", *extra}
    assert expected <= names, sorted(expected - names)
    record = read_json(os.path.join(out, "run_args.json"))
    assert record["command"].startswith("python ") and record["versions"]["torch"] == torch.__version__


BUDGET = "--max_seq_length 48 --report_to none --disable_tqdm"  # (tiny models: short inputs, no TensorBoard)


# ---------------------------------------------------------------------------------------------- LGTM
LGTM_TRAIN = ("--model_name_or_path {student} --teacher_model {teacher} --task_name sst2 --data_dir {data} "
              "--per_device_train_batch_size 32 --per_device_eval_batch_size 32 --learning_rate 5e-05 "
              "--t_learning_rate 3e-05 --alpha_kd 1.0 --temperature 1.0 --num_train_epochs 6 --output_dir {out} "
              "--eval_steps 40 --do_train --do_eval --train_teacher --init_classifier_to_zero --use_lgtm")
LGTM_PREDICT = ("--model_name_or_path {checkpoint} --task_name sst2 --data_dir {data} --per_device_eval_batch_size 32 "
                "--output_dir {out} --do_predict")


@pytest.mark.parametrize("baseline", ["", "--init_classifier_as_zero --train_teacher",
                                      "--init_classifier_as_zero --train_teacher --use_lgtm"],
                         ids=["kd", "prokt", "lgtm"])
def test_lgtm_readme_baselines_table(toy, tmp_path, baseline):
    """The README's hint: KD = the command without the teacher flags; ProKT and LGTM with the table's spelling
    --init_classifier_as_zero (its command line spells it _to_zero: both work)."""
    command = LGTM_TRAIN.replace(" --train_teacher --init_classifier_to_zero --use_lgtm", f" {baseline}".rstrip())
    run(run_glue, f"{command} {BUDGET} --max_steps 4", student=toy["student"], teacher=toy["teacher"],
        data=toy["task"], out=tmp_path / "out")
    assert_model_dir(tmp_path / "out", "eval_results.json", *(["teacher"] if baseline else []))
    args = read_json(tmp_path / "out" / "run_args.json")["args"]
    assert args["teachers that learn (ProKT, LGTM)"]["init_classifier_to_zero"] is bool(baseline)


def test_lgtm_readme_training_then_inference(toy, tmp_path):
    run(run_glue, f"{LGTM_TRAIN} {BUDGET}", student=toy["student"], teacher=toy["teacher"], data=toy["task"],
        out=tmp_path / "lgtm")  # as written: 6 epochs of the toy task (18 steps), evaluated every 40 steps
    state = read_json(tmp_path / "lgtm" / "trainer_state.json")
    assert state["global_step"] == 18 and state["best_step"] == 18
    run(run_glue, LGTM_PREDICT, checkpoint=tmp_path / "lgtm", data=toy["task"], out=tmp_path / "predict")
    assert {"SST-2.tsv", "eval_run_args.json"} <= set(os.listdir(tmp_path / "predict"))


# ---------------------------------------------------------------------------------------------- one-to-one
ONE2ONE_GLUE_TEACHER = ("--model_type bert --model_name_or_path {model} --task_name rte --data_dir {data} "
                        "--do_lower_case --max_seq_length 128 --do_train --per_gpu_train_batch_size 32 "
                        "--per_gpu_eval_batch_size 32 --learning_rate 5e-5 --num_train_epochs 3.0 --output_dir {out}")
# run_glue_w_distillation.py's command, to run_glue.py: the paper's script trains and evaluates by itself
ONE2ONE_GLUE = ("--teacher_model_name_or_path {teacher} --student_model_name_or_path {student} --task_name rte "
                "--data_dir {data} --max_seq_length 128 --output_dir {out} --alpha_ce 0 --alpha_glue 0.5 "
                "--alpha_corr 0.005 --alpha_mse 0 --alpha_cos 0 --do_mask True --num_train_epochs 3.0")


def test_one_to_one_glue_teacher_then_distillation(toy, tmp_path):
    rte = os.path.join(FIXTURES, "RTE")
    run(run_glue, ONE2ONE_GLUE_TEACHER, model=toy["teacher"], data=rte, out=tmp_path / "teacher")
    assert_model_dir(tmp_path / "teacher")
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "teacher").config.id2label == {
        0: "entailment", 1: "not_entailment"}
    run(run_glue, ONE2ONE_GLUE, teacher=tmp_path / "teacher", student=toy["student"], data=rte,
        out=tmp_path / "student")
    assert_model_dir(tmp_path / "student", "eval_results.json")
    actions = read_json(tmp_path / "student" / "run_args.json")["args"]["training, evaluation and output"]
    assert actions["do_train"] and actions["do_eval"] and not actions["do_predict"]
    losses = [e for e in read_json(tmp_path / "student" / "trainer_state.json")["log_history"] if "loss/corr" in e]
    assert losses and all(e["loss/total"] == pytest.approx(0.5 * e["loss/ce"] + 0.005 * e["loss/corr"], rel=1e-4)
                          for e in losses)  # --alpha_ce 0: no KD term; --do_mask True: the masked correlation


def test_one_to_one_glue_flags_are_checked_not_ignored(toy, tmp_path, capsys):
    """--model_type and --do_lower_case state facts about the model: a wrong one is refused."""
    rte = os.path.join(FIXTURES, "RTE")
    cased = tmp_path / "cased_tokenizer"
    BertTokenizerFast(vocab=os.path.join(toy["tokenizer"], "vocab.txt"), do_lower_case=False).save_pretrained(cased)
    for wrong, message in ((ONE2ONE_GLUE_TEACHER.replace("--model_type bert", "--model_type roberta"),
                            "--model_type roberta but the checkpoint is a 'bert' model"),
                           (f"{ONE2ONE_GLUE_TEACHER} --tokenizer_name {cased}", "--do_lower_case but the tokenizer is "
                                                                                "cased")):
        argv = wrong.format(model=toy["teacher"], data=rte, out=tmp_path / "t").split()
        assert run_glue.main(argv) == 2
        assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "t" / "config.json")


@pytest.fixture(scope="module")
def squad_dir(tmp_path_factory):
    """`--data_dir data` holding train.json and dev.json, as the one-to-one README's command expects."""
    root = tmp_path_factory.mktemp("data")
    for name, seed, n in (("train", 0, 30), ("dev", 1, 6)):
        with open(root / f"{name}.json", "w", encoding="utf-8") as f:
            json.dump(toy_squad(n_articles=n, clauses=4, seed=seed), f)
    return root


@pytest.fixture(scope="module")
def qa_bert(toy, tmp_path_factory):
    from transformers import BertConfig, BertForQuestionAnswering
    tok = AutoTokenizer.from_pretrained(toy["tokenizer"])
    out = tmp_path_factory.mktemp("qa") / "bert"
    torch.manual_seed(0)
    BertForQuestionAnswering(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, max_position_embeddings=64)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


SQUAD_TEACHER = "--model {model} --output_dir {out} --output_dir_intermed {intermed}"  # run_squad.py's command
ONE2ONE_SQUAD = ("--model_type distilbert --model_name_or_path {student} --output_dir {out} --teacher_type bert "
                 "--teacher_name_or_path {teacher} --data_dir {data} --train_file train.json --predict_file dev.json "
                 "--do_train --do_eval --do_lower_case --save_steps 5541 --logging_steps 5541 --alpha_cos 0.0 "
                 "--alpha_corr 0.5 --alpha_ce 0.0 --alpha_squad 0.5 --num_train_epochs 3")
SQUAD_BUDGET = "--max_seq_length 48 --doc_stride 16 --max_query_length 12 --report_to none --disable_tqdm"


def test_one_to_one_squad_teacher_then_distillation(toy, qa_bert, squad_dir, tmp_path):
    from transformers import DistilBertConfig, DistilBertForQuestionAnswering
    # run_squad.py reads the Hub's squad: the data paths are ours, the budget keeps it to a few steps
    run(run_squad_w_distillation, f"{SQUAD_TEACHER} --train_file {{data}}/train.json --predict_file "
        f"{{data}}/dev.json {SQUAD_BUDGET} --max_steps 3", model=qa_bert, out=tmp_path / "teacher",
        intermed=tmp_path / "intermed", data=squad_dir)
    assert_model_dir(tmp_path / "teacher", "eval_results.json", "predictions.json")
    assert not os.path.exists(tmp_path / "intermed")  # (checkpoints stay in --output_dir)
    student = tmp_path / "distilbert"
    DistilBertForQuestionAnswering(DistilBertConfig(vocab_size=qa_bert_vocab(qa_bert), dim=32, n_layers=1, n_heads=2,
                                                    hidden_dim=64, max_position_embeddings=64)).save_pretrained(student)
    AutoTokenizer.from_pretrained(qa_bert).save_pretrained(student)
    run(run_squad_w_distillation, f"{ONE2ONE_SQUAD} {SQUAD_BUDGET}", student=student, teacher=tmp_path / "teacher",
        data=squad_dir, out=tmp_path / "out")
    assert_model_dir(tmp_path / "out", "eval_results.json", "predictions.json")
    questions = sum(len(p["qas"]) for a in read_json(squad_dir / "dev.json")["data"] for p in a["paragraphs"])
    assert len(read_json(tmp_path / "out" / "predictions.json")) == questions


def qa_bert_vocab(path) -> int:
    return len(AutoTokenizer.from_pretrained(path))


IMDB_TEACHER = "--model {model} --output_dir {out} --output_dir_intermed {intermed}"  # run_imdb.py's command
ONE2ONE_IMDB = ("--student_model_name_or_path {student} --teacher_model_name_or_path {teacher} --output_dir {out} "
                "--output_dir_intermed {intermed}")


def test_one_to_one_imdb_teacher_then_distillation(toy, tmp_path):
    """The paper's IMDB scripts read the Hub's imdb, train, and report test accuracy: so do these, given no
    --do_* flag (the data file is ours, and the budget)."""
    data = write_toy_imdb(tmp_path / "imdb.csv.gz", n_train=40, n_test=10)
    budget = f"--data_file {data} --max_steps 3 --per_device_train_batch_size 8 {BUDGET}"
    run(run_imdb_w_distillation, f"{IMDB_TEACHER} {budget}", model=toy["teacher"], out=tmp_path / "teacher",
        intermed=tmp_path / "intermed")
    assert_model_dir(tmp_path / "teacher", "eval_results.json", "test_results.json")
    run(run_imdb_w_distillation, f"{ONE2ONE_IMDB} {budget}", student=toy["student"], teacher=tmp_path / "teacher",
        out=tmp_path / "out", intermed=tmp_path / "intermed")
    assert_model_dir(tmp_path / "out", "eval_results.json", "test_results.json")
    assert read_json(tmp_path / "out" / "test_results.json")["test_samples"] == 10
