"""A frozen teacher must come whole from its checkpoint: one whose head (or any weight) would be newly
initialised is refused with one line, before the run writes anything, on every path that distils from
it. The rows of the bad-input table (bad_input_data_rows.py) cover KD on GLUE (a masked-LM checkpoint),
SQuAD and --mlm; these cover the other paths. A teacher that learns may start from a pretrained encoder."""
from __future__ import annotations

import json

import pytest
from conftest import toy_lm_corpus
from transformers import AutoTokenizer, BertForSequenceClassification, GPT2Config, GPT2Model

import run_glue
import run_imdb_w_distillation
import run_squad_w_distillation
import train_lm_distill

FAST = ["--do_train", "--max_steps", "1", "--report_to", "none", "--disable_tqdm"]


@pytest.fixture(scope="module")
def headless(toy, tmp_path_factory):
    """Pretrained checkpoints without the head a teacher needs: a BERT encoder (BertModel), and a GPT-2
    body whose LM head is not tied to its embeddings (so that the head is not in it)."""
    from test_imdb import write_toy_imdb
    root = tmp_path_factory.mktemp("headless")
    encoder = BertForSequenceClassification.from_pretrained(toy["teacher"]).bert
    encoder.save_pretrained(root / "bert_encoder")
    AutoTokenizer.from_pretrained(toy["tokenizer"]).save_pretrained(root / "bert_encoder")
    corpus, bpe = toy_lm_corpus(str(root), n_docs=30)
    config = GPT2Config(vocab_size=len(bpe), n_embd=32, n_layer=2, n_head=2, n_positions=64, tie_word_embeddings=False,
                        bos_token_id=bpe.eos_token_id, eos_token_id=bpe.eos_token_id, pad_token_id=bpe.pad_token_id)
    GPT2Model(config).save_pretrained(root / "gpt2_body")
    bpe.save_pretrained(root / "gpt2_body")
    squad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "a good film", "qas": [
        {"id": "q1", "question": "what film", "answers": [{"text": "good", "answer_start": 2}]}]}]}]}
    (root / "squad.json").write_text(json.dumps(squad))
    return {"root": root, "bert_encoder": str(root / "bert_encoder"), "gpt2_body": str(root / "gpt2_body"),
            "corpus": corpus, "imdb": write_toy_imdb(root / "imdb.csv.gz", n_train=40, n_test=10),
            "squad": str(root / "squad.json")}


def glue(t, h, *extra):
    return ["--model_name_or_path", t["student"], "--task_name", "sst2", "--data_dir", t["task"], "--teacher_model",
            h["bert_encoder"], *FAST, *extra]


def imdb(t, h, *extra):
    return ["--model_name_or_path", t["student"], "--teacher_name_or_path", h["bert_encoder"], "--data_file",
            h["imdb"], "--max_seq_length", "32", *FAST, *extra]


def squad(t, h, *extra):
    return ["--model_name_or_path", t["student"], "--teacher_name_or_path", h["bert_encoder"], "--train_file",
            h["squad"], "--max_seq_length", "64", "--doc_stride", "16", "--max_query_length", "16", *FAST, *extra]


def lm(teacher, h, *extra):
    return ["--teacher_name_or_path", teacher, "--student_layers", "0", "--max_seq_length", "32", "--train_file",
            h["corpus"], "--data_cache_dir", str(h["root"] / "lm_cache"), *FAST, *extra]


CLASSIFIER = ["BertModel checkpoint without a trained classification head", "classifier.bias",
              "fine-tuned on the task"]
# (id, main, argv(toy, headless), words the line must contain)
PATHS = [
    ("GLUE feature loss", run_glue.main, lambda t, h: glue(t, h, "--alpha_corr", "0.5"), CLASSIFIER),
    ("GLUE cached teacher outputs", run_glue.main, lambda t, h: glue(t, h, "--cache_teacher_outputs"), CLASSIFIER),
    ("IMDB KD", run_imdb_w_distillation.main, lambda t, h: imdb(t, h, "--alpha_ce", "0.5"), CLASSIFIER),
    ("IMDB feature loss", run_imdb_w_distillation.main, lambda t, h: imdb(t, h, "--alpha_corr", "0.5"), CLASSIFIER),
    ("IMDB cached teacher outputs", run_imdb_w_distillation.main,
     lambda t, h: imdb(t, h, "--cache_teacher_outputs"), CLASSIFIER),
    ("SQuAD cached teacher outputs", run_squad_w_distillation.main,
     lambda t, h: squad(t, h, "--cache_teacher_outputs"), ["BertModel checkpoint without a trained question-answering "
                                                           "head", "qa_outputs"]),
    ("LM --mlm, an encoder", train_lm_distill.main,
     lambda t, h: lm(h["bert_encoder"], h, "--mlm", "--alpha_mlm", "1", "--alpha_ce", "1"),
     ["BertModel checkpoint without a trained masked-LM head", "cls.predictions"]),
    ("LM causal, an untied body", train_lm_distill.main, lambda t, h: lm(h["gpt2_body"], h),
     ["GPT2Model checkpoint without a trained causal-LM head", "lm_head.weight", "causal-LM checkpoint"]),
    ("LM causal, cached teacher outputs", train_lm_distill.main,
     lambda t, h: lm(h["gpt2_body"], h, "--cache_teacher_outputs"), ["without a trained causal-LM head"]),
]


@pytest.mark.parametrize("path", PATHS, ids=[p[0] for p in PATHS])
def test_a_teacher_without_its_head_is_refused_before_anything_is_written(path, toy, headless, tmp_path, capsys):
    _, main, make_argv, words = path
    out = tmp_path / "out"
    assert main([str(a) for a in [*make_argv(toy, headless), "--output_dir", out]]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 1 and all(word in err[0] for word in words), err
    assert not out.exists()  # the run made the dir to lock it, and removes it empty


def test_a_teacher_that_learns_may_start_from_a_pretrained_encoder(toy, headless, tmp_path):
    out = tmp_path / "out"
    assert run_glue.main([str(a) for a in [*glue(toy, headless, "--train_teacher"), "--output_dir", out]]) == 0
    assert (out / "teacher" / "config.json").exists()
