"""Bad input across the four entry scripts, as one table. Every row must give:
- exit status 2 and ONE line on stderr, `error: ...`, that names the problem and says what to do;
- no damage: the output dir already holds an earlier run's files (a model, results, notes), and every
  one of them is byte-for-byte the same afterwards, although most rows pass --overwrite_output_dir.

The rows are in bad_input_rows.py (flags, and the first cross-script rows) and bad_input_data_rows.py (data
files and models, by kind); the broken files they read are made by bad_input_files.py. Rows that concern
one script in depth also live in that script's tests; this table is the cross-script contract."""
from __future__ import annotations

import glob
import json
import os
import re
import shutil

import pytest
import torch
from bad_input_data_rows import DATA_AND_MODEL_ROWS, KIND_SCRIPTS
from bad_input_files import broken_inputs
from bad_input_rows import FLAG_ROWS, ROWS, glue, imdb_flags, lm_only, squad_only
from conftest import REPO_ROOT, snapshot, toy_lm_corpus

import run_glue
import run_imdb_w_distillation
import run_squad_w_distillation
import train_lm_distill

SCRIPTS = {"glue": run_glue.main, "squad": run_squad_w_distillation.main, "imdb": run_imdb_w_distillation.main,
           "lm": train_lm_distill.main}
ROWS = ROWS + [row for rows in DATA_AND_MODEL_ROWS.values() for row in rows] + FLAG_ROWS


@pytest.fixture(scope="module")
def bad(toy, tmp_path_factory):
    """Broken files and mismatched models, made once."""
    from test_imdb import write_toy_imdb
    from toys import build_gpt2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertTokenizerFast

    from distill.toy import build_bert
    root = tmp_path_factory.mktemp("bad")
    tok = AutoTokenizer.from_pretrained(toy["tokenizer"])
    paths = {"root": root}
    (root / "empty.tsv").write_text("")
    (root / "train.tsv").write_text("sentence\tlabel\nnice film\t1\nbad film\t0\n")
    (root / "dev_unlabelled.tsv").write_text("sentence\nnice film\n")
    (root / "train_unknown_label.csv").write_text("sentence,label\ngood film,positive\nbad film,maybe\n")
    paths["wide_teacher"] = build_bert(str(root / "wide_teacher"), tok, layers=2, seed=5, hidden=48, heads=2,
                                       intermediate=64)
    # a teacher whose tokenizer has other ids for the same words: the same size, so only the ids tell them
    # apart (transformers 5 ignores BertTokenizerFast(vocab_file=...): vocab= is read, and checked here)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = special + sorted((w for w in tok.get_vocab() if w not in special), reverse=True)
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    other_tok = BertTokenizerFast(vocab=str(root / "vocab.txt"), do_lower_case=True)
    assert len(other_tok) == len(tok) and other_tok("good film")["input_ids"] != tok("good film")["input_ids"]
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=len(other_tok), hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64)).save_pretrained(
        root / "other_vocab_teacher")
    other_tok.save_pretrained(root / "other_vocab_teacher")
    paths["other_vocab_teacher"] = str(root / "other_vocab_teacher")
    # a teacher whose weights hold NaN (a diverged run's checkpoint): every KD loss becomes NaN
    nan_teacher = BertForSequenceClassification.from_pretrained(toy["teacher"])
    with torch.no_grad():
        nan_teacher.classifier.weight.fill_(float("nan"))
    nan_teacher.save_pretrained(root / "nan_teacher")
    tok.save_pretrained(root / "nan_teacher")
    paths["nan_teacher"] = str(root / "nan_teacher")
    # a model dir that needs custom code (auto_map), like many Hub repos
    remote = root / "remote_code_model"
    BertForSequenceClassification.from_pretrained(toy["student"]).save_pretrained(remote)
    tok.save_pretrained(remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                          "AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    (remote / "configuration_evil.py").write_text("raise SystemExit('remote code ran')\n")
    paths["remote_code_model"] = str(remote)
    paths["imdb"] = write_toy_imdb(root / "imdb.csv.gz", n_train=40, n_test=10)
    (root / "imdb_no_text.csv").write_text("split,label,rating,id,orig_path,review\ntrain,1,8,0,a,good\n")
    (root / "squad_not_squad.json").write_text(json.dumps({"version": "1.1", "articles": []}))
    corpus, bpe = toy_lm_corpus(str(root), n_docs=30)
    paths["corpus"] = corpus
    paths["gpt2"] = build_gpt2(str(root / "gpt2"), bpe, layers=2, hidden=32, heads=2, max_positions=64, seed=1)
    (root / "empty.txt").write_text("\n\n")
    paths["word_gpt2"] = build_gpt2(str(root / "word_gpt2"), tok, layers=1, hidden=32, heads=2, max_positions=64)
    paths.update(broken_inputs(root / "broken", toy, tok, paths))
    return paths


@pytest.fixture(scope="module")
def finished_run(toy, tmp_path_factory):
    """A finished good run (model, checkpoints, results, logs, its flags) plus a file of the user's."""
    out = tmp_path_factory.mktemp("finished") / "out"
    assert run_glue.main([str(a) for a in [*glue(toy, "--max_steps", "2", "--save_steps", "1", "--do_eval"),
                                           "--report_to", "tensorboard", "--output_dir", out]]) == 0
    (out / "notes.txt").write_text("precious")
    return out


@pytest.fixture
def earlier_run(finished_run, tmp_path):
    """A copy of the finished run, for one row to try to damage."""
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    assert {"checkpoint-1", "checkpoint-2", "runs", "run_flags.json", "model.safetensors"} <= set(os.listdir(out))
    return out


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_gives_one_line_and_damages_nothing(row, toy, bad, earlier_run, capsys):
    _, script, make_argv, words = row
    before = snapshot(earlier_run)
    argv = [*make_argv(toy, bad), "--output_dir", str(earlier_run), "--overwrite_output_dir"]
    code = SCRIPTS[script]([str(a) for a in argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(err) == 1, err
    for word in words:
        assert word in err[0], (word, err[0])
    after = snapshot(earlier_run)
    assert {k: after.get(k) for k in before} == before  # every earlier file as it was


# The docs' promises about bad input (README.md, docs/run_lifecycle.md), each held to the row that keeps it
# (id: script). The full disk they also name is tests/test_run_lifecycle.py's.
PROMISED = {
    "warmup_ratio 1.5": "glue", "SQuAD doc_stride 0": "squad", "IMDB dev_fraction 1": "imdb",  # flags out of range
    "LM kd_ratio 1.5": "lm",
    "mistyped flag": "glue", "SQuAD mistyped flag": "squad", "IMDB mistyped flag": "imdb",  # with suggestions
    "LM mistyped original flag": "lm",
    "GLUE --train_file in Latin-1": "glue", "SQuAD file in Latin-1": "squad",  # not UTF-8
    "IMDB csv in Latin-1": "imdb", "LM .txt in Latin-1": "lm",
    "SQuAD gzip file named .json": "squad", "IMDB .csv.gz that is not gzip": "imdb",  # not the declared format
    "LM binary file named .txt": "lm",
    "SQuAD broken JSON": "squad", "IMDB row with a missing field": "imdb", "LM .jsonl row that is a list": "lm",
    "STS-B score nan": "glue", "custom regression task with a nan label": "glue",  # NaN labels
    "model dir without tokenizer files": "glue", "IMDB student dir without tokenizer files": "imdb",
    "LM teacher without tokenizer files": "lm",
    "GPT-2 as the GLUE teacher": "glue",  # a decoder-only teacher for a GLUE task
}


def test_table_covers_the_issue():
    ids = {r[0]: r[1] for r in ROWS}
    assert len(ids) == len(ROWS)  # ids name distinct cases
    assert {k: ids.get(k) for k in PROMISED} == PROMISED
    docs = [os.path.join(REPO_ROOT, "README.md"), *glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))]
    counts = [int(n) for path in docs for n in re.findall(r"test_bad_input_table\.py` \((\d+) rows across",
                                                            open(path, encoding="utf-8").read())]
    assert counts and set(counts) == {len(ROWS)}  # the table the docs describe, row for row
    assert set(DATA_AND_MODEL_ROWS) == set(KIND_SCRIPTS)
    for kind, scripts in KIND_SCRIPTS.items():  # every script that reads such input has rows of that kind
        assert {r[1] for r in DATA_AND_MODEL_ROWS[kind]} == scripts, kind


def test_a_non_empty_output_dir_and_a_corrupt_checkpoint_damage_nothing(toy, earlier_run, capsys):
    """The two rows that must run WITHOUT --overwrite_output_dir."""
    before = snapshot(earlier_run)
    assert run_glue.main([str(a) for a in [*glue(toy), "--output_dir", earlier_run]]) == 2
    assert "--overwrite_output_dir" in capsys.readouterr().err.splitlines()[-1]
    ckpt = earlier_run / "checkpoint-3"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text("{}")
    (ckpt / "training_state.pt").write_bytes(b"not a torch file")
    before = snapshot(earlier_run)
    assert run_glue.main([str(a) for a in [*glue(toy), "--output_dir", earlier_run]]) == 2
    line = capsys.readouterr().err.splitlines()[-1]
    assert "corrupt" in line and "checkpoint-3" in line and "--overwrite_output_dir" in line
    assert snapshot(earlier_run) == before


# --------------------------------------------------------------------------- argument files and output dirs
# (id, the file's content: flags as a dict, or raw bytes, words the line must contain)
ARGUMENT_FILE_ROWS = [
    ("a string where a number goes", {"learning_rate": "abc"}, ["--learning_rate must be a number", "'abc'"]),
    ("a float where an integer goes", {"max_steps": 1.5}, ["--max_steps must be an integer"]),
    ("a string where true/false goes", {"do_eval": "yes"}, ["--do_eval must be true or false"]),
    ("a number out of its range", {"per_device_train_batch_size": 0}, ["--per_device_train_batch_size must be >= 1"]),
    ("a mistyped key", {"learnig_rate": 1e-3}, ["unknown argument(s) learnig_rate (did you mean learning_rate?)"]),
    ("not an object", b'["--do_train"]', ["must hold one JSON object"]),
    ("not JSON", b'{"do_train": true,', ["is not valid JSON"]),
    ("not UTF-8", b'{"seed": "\xe9"}', ["is not UTF-8"]),
]


@pytest.mark.parametrize("row", ARGUMENT_FILE_ROWS, ids=[r[0] for r in ARGUMENT_FILE_ROWS])
def test_an_argument_file_is_checked_like_the_command_line(row, toy, earlier_run, tmp_path, capsys):
    _, content, words = row
    if isinstance(content, dict):
        flags = {"model_name_or_path": toy["student"], "task_name": "sst2", "data_dir": toy["task"], "do_train": True,
                 "max_steps": 1, "report_to": "none", "output_dir": str(earlier_run), "overwrite_output_dir": True}
        content = json.dumps(flags | content).encode()
    path = tmp_path / "args.json"
    path.write_bytes(content)
    before = snapshot(earlier_run)
    code = run_glue.main([str(path)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(err) == 1, err
    for word in words:
        assert word in err[0], (word, err[0])
    assert snapshot(earlier_run) == before


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("where", ["a file", "inside a file"])
def test_an_output_dir_that_cannot_be_a_dir_is_one_line(script, where, toy, bad, tmp_path, capsys):
    """Refused when the run takes the dir (after its flags, before its data)."""
    taken = tmp_path / "results.txt"
    taken.write_text("precious")
    out = taken if where == "a file" else taken / "out"
    argv = {"glue": glue(toy), "squad": squad_only(toy), "imdb": imdb_flags(toy), "lm": lm_only(bad)}[script]
    code = SCRIPTS[script]([str(a) for a in [*argv, "--output_dir", out]])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(err) == 1, err
    assert "--output_dir" in err[0] and str(out) in err[0], err[0]
    assert taken.read_text() == "precious"


def test_a_damaged_teacher_output_cache_is_one_line(toy, earlier_run, tmp_path, capsys):
    cache = tmp_path / "cache"
    argv = glue(toy, "--cache_teacher_outputs", "--teacher_cache_dir", cache, teacher=toy["teacher"])
    assert run_glue.main([str(a) for a in [*argv, "--output_dir", tmp_path / "first"]]) == 0
    (entry,) = os.listdir(cache)
    part = cache / entry / "part-0.safetensors"
    part.write_bytes(part.read_bytes()[:100])  # a truncated copy
    before = snapshot(earlier_run)
    code = run_glue.main([str(a) for a in [*argv, "--output_dir", earlier_run, "--overwrite_output_dir"]])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(err) == 1 and "cache" in err[0] and "is damaged" in err[0], err
    assert snapshot(earlier_run) == before
