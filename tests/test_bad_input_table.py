"""Bad input across the four entry scripts, as one table. Every row must give:
- exit status 2 and ONE line on stderr, `error: ...`, that names the problem and says what to do;
- no damage: the output dir already holds an earlier run's files (a model, results, notes), and every
  one of them is byte-for-byte the same afterwards, although most rows pass --overwrite_output_dir.

Rows that concern one script in depth also live in that script's tests; this table is the cross-script
contract."""
from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from conftest import FIXTURES, toy_lm_corpus

import run_glue
import run_imdb_w_distillation
import run_squad_w_distillation
import train_lm_distill

SCRIPTS = {"glue": run_glue.main, "squad": run_squad_w_distillation.main, "imdb": run_imdb_w_distillation.main,
           "lm": train_lm_distill.main}


@pytest.fixture(scope="module")
def bad(toy, tmp_path_factory):
    """Broken files and mismatched models, made once."""
    from test_imdb import write_toy_imdb
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertTokenizerFast

    from distill.toy import build_bert, build_gpt2
    root = tmp_path_factory.mktemp("bad")
    tok = AutoTokenizer.from_pretrained(toy["tokenizer"])
    paths = {"root": root}
    (root / "empty.tsv").write_text("")
    (root / "train.tsv").write_text("sentence\tlabel\nnice film\t1\nbad film\t0\n")
    (root / "dev_unlabelled.tsv").write_text("sentence\nnice film\n")
    (root / "train_unknown_label.csv").write_text("sentence,label\ngood film,positive\nbad film,maybe\n")
    paths["wide_teacher"] = build_bert(str(root / "wide_teacher"), tok, layers=2, seed=5, hidden=48, heads=2,
                                       intermediate=64)
    # a teacher whose tokenizer has other ids for the same words
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(tok.get_vocab(), reverse=True)[:40]]
    (root / "vocab.txt").write_text("\n".join(dict.fromkeys(words)) + "\n")
    other_tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
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
    return paths


def glue(toy, *extra, teacher=None):
    argv = ["--model_name_or_path", toy["student"], "--task_name", "sst2", "--do_train", "--max_steps", "1",
            "--report_to", "none", "--disable_tqdm"]
    if teacher:
        argv += ["--teacher_model", teacher]
    if "--data_dir" not in extra and "--train_file" not in extra:
        argv += ["--data_dir", toy["task"]]
    return [*argv, *extra]


def lm_flags(bad, *extra):
    return ["--teacher_name_or_path", bad["gpt2"], "--student_layers", "1", "--max_seq_length", "32",
            "--max_steps", "1", "--data_cache_dir", str(bad["root"] / "lm_cache"), "--disable_tqdm", "--report_to",
            "none", *extra]


def squad_flags(toy, *extra):
    return ["--model_name_or_path", toy["student"], "--do_train", "--max_steps", "1", "--max_seq_length", "64",
            "--report_to", "none", *extra]


# (id, script, argv(toy, bad), words the line must contain, overwrite: pass --overwrite_output_dir)
ROWS = [
    ("missing data dir", "glue", lambda t, b: glue(t, "--data_dir", str(b["root"] / "nope")), ["not a folder"]),
    ("empty train file", "glue", lambda t, b: glue(t, "--train_file", str(b["root"] / "empty.tsv")), ["no rows"]),
    ("wrong columns", "glue", lambda t, b: glue(t, "--task_name", "mnli"), ["columns", "right file"]),
    ("unknown label", "glue", lambda t, b: glue(t, "--train_file", str(b["root"] / "train_unknown_label.csv")),
     ["'maybe'"]),
    ("labels missing from dev", "glue", lambda t, b: glue(t, "--train_file", str(b["root"] / "train.tsv"),
                                                          "--validation_file", str(b["root"] / "dev_unlabelled.tsv"),
                                                          "--do_eval"), ["no 'label' column", "--test_file"]),
    ("teacher of another task", "glue", lambda t, b: glue(t, "--task_name", "mnli", "--data_dir",
                                                          os.path.join(FIXTURES, "MNLI"), teacher=t["teacher"]),
     ["2 outputs but the task has 3"]),
    ("teacher with another vocabulary", "glue", lambda t, b: glue(t, teacher=b["other_vocab_teacher"]),
     ["vocabular"]),
    ("hidden-size mismatch for a feature loss", "glue",
     lambda t, b: glue(t, "--alpha_ce", "0.5", "--alpha_glue", "0.5", "--alpha_cos", "1", teacher=b["wide_teacher"]),
     ["hidden", "48", "32"]),
    ("conflicting precision flags", "glue", lambda t, b: glue(t, "--fp16", "--bf16"), ["--fp16", "choose one"]),
    ("conflicting layer flags", "glue", lambda t, b: glue(t, "--num_layers", "1", "--student_layers", "0"),
     ["--num_layers and --student_layers"]),
    ("sequence longer than the positions", "glue", lambda t, b: glue(t, "--max_seq_length", "4096"),
     ["max_seq_length 4096", "positions"]),
    ("NaN loss (a diverged teacher)", "glue", lambda t, b: glue(t, teacher=b["nan_teacher"]),
     ["nan at step 1", "--learning_rate"]),
    ("missing model", "glue", lambda t, b: ["--model_name_or_path", str(b["root"] / "no_model"),
                                            *glue(t)[2:]], ["no_model does not exist"]),
    ("remote code without --trust_remote_code", "glue",
     lambda t, b: ["--model_name_or_path", b["remote_code_model"], *glue(t)[2:]], ["--trust_remote_code"]),
    ("not a SQuAD file", "squad", lambda t, b: squad_flags(t, "--train_file", str(b["root"] / "squad_not_squad.json")),
     ["not in the SQuAD format"]),
    ("missing SQuAD file", "squad", lambda t, b: squad_flags(t, "--train_file", str(b["root"] / "train-v1.1.json")),
     ["SQuAD file not found"]),
    ("SQuAD --do_predict", "squad", lambda t, b: squad_flags(t, "--train_file", "x.json", "--do_predict"),
     ["--do_predict", "--do_eval"]),
    ("IMDB csv without a text column", "imdb",
     lambda t, b: ["--model_name_or_path", t["student"], "--data_file", str(b["root"] / "imdb_no_text.csv"),
                   "--do_train", "--report_to", "none"], ["lacks column", "text"]),
    ("IMDB file missing", "imdb", lambda t, b: ["--model_name_or_path", t["student"], "--data_file",
                                                str(b["root"] / "imdb.csv"), "--do_train"], ["IMDB file not found"]),
    ("LM corpus without text", "lm", lambda t, b: lm_flags(b, "--train_file", str(b["root"] / "empty.txt")),
     ["holds no text"]),
    ("LM teacher/student vocabulary mismatch", "lm",
     lambda t, b: ["--teacher_name_or_path", b["gpt2"], "--model_name_or_path", b["word_gpt2"], "--train_file",
                   b["corpus"], "--max_steps", "1", "--max_seq_length", "32"],
     ["vocabular"]),
    ("LM sequence longer than the positions", "lm",
     lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--max_seq_length", "128"), ["128", "positions"]),
    ("LM KD flags without a teacher", "lm",
     lambda t, b: ["--model_name_or_path", b["gpt2"], "--train_file", b["corpus"], "--kd_ratio", "0.5",
                   "--max_steps", "1"], ["teacher"]),
]


def snapshot(directory) -> dict[str, str]:
    found = {}
    for base, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.fixture
def earlier_run(toy, tmp_path):
    """An output dir holding a finished earlier run's files."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    (out / "eval_results.json").write_text('{"eval_accuracy": 0.9}\n')
    (out / "model.safetensors").write_bytes(open(os.path.join(toy["student"], "model.safetensors"), "rb").read())
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


def test_table_covers_the_issue(toy):
    assert len(ROWS) >= 20 and {r[1] for r in ROWS} == set(SCRIPTS)


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
