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
import shutil

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
    paths.update(broken_inputs(root / "broken", toy, tok, paths))
    return paths


# --------------------------------------------------------------------------- data files and models: fixtures
def broken_inputs(root, toy, tok, paths) -> dict[str, str]:
    """Data files and model dirs as users break them: other encodings, compressed or binary files under a
    text name, ragged rows, bad labels, JSON of the wrong shape, damaged or mismatched checkpoints."""
    import gzip
    import shutil
    import zipfile

    import numpy as np
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

    from distill.toy import toy_squad
    root.mkdir()
    out = {}

    def put(name, content):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return str(path)

    def model_copy(name, source, drop=(), edit=None):
        """A copy of model dir `source` without the files in `drop`; `edit(dir)` damages it."""
        target = root / name
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(*drop) if drop else None)
        if edit:
            edit(target)
        return str(target)

    sst2 = "sentence\tlabel\nnice film\t1\ncafé film\t0\n"
    # ---- GLUE files
    out["latin1_tsv"] = put("latin1.tsv", sst2.encode("latin-1"))
    put("SST-2-latin1/train.tsv", sst2.encode("latin-1"))
    out["sst2_latin1_dir"] = str(root / "SST-2-latin1")
    out["gzip_tsv"] = put("gzip.tsv", gzip.compress(sst2.encode()))
    out["binary_csv"] = put("binary.csv", bytes(range(256)) * 8)
    out["utf16_tsv"] = put("utf16.tsv", sst2.encode("utf-16"))
    with zipfile.ZipFile(root / "sheet.csv", "w") as z:  # an Excel workbook saved under a .csv name
        z.writestr("xl/workbook.xml", "<workbook/>")
    out["zip_csv"] = str(root / "sheet.csv")
    (root / "folder.tsv").mkdir()
    out["folder_tsv"] = str(root / "folder.tsv")
    put("RTE-short/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc d\tnot_entailment\n")
    put("SST-2-extra/train.tsv", "sentence\tlabel\nnice film\t1\nbad\tfilm\t0\n")
    put("CoLA-short/train.tsv", "gj04\t1\t\tnice film .\ngj04\t0\tbad film .\n")
    put("SST-2-label2/train.tsv", "sentence\tlabel\nnice film\t1\nbad film\t2\n")
    put("SST-2-dev-gap/train.tsv", "sentence\tlabel\nnice film\t1\nbad film\t0\n")
    put("SST-2-dev-gap/dev.tsv", "sentence\tlabel\nfine film\t1\ndull film\t\n")
    sts_header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    put("STS-B-nan/train.tsv", sts_header + "0\tg\tf\t2012\t1\ts\ts\ta film\ta movie\t4.2\n"
                                           "1\tg\tf\t2012\t2\ts\ts\ta cat\ta car\tnan\n")
    for name, score in (("inf", "inf"), ("1e999", "1e999"), ("empty", ""), ("word", "high"), ("range", "7.5")):
        out[f"sts_{name}"] = put(f"sts_{name}.tsv", f"sentence1\tsentence2\tlabel\na\tb\t3.5\nc\td\t{score}\n")
    out["ragged_csv"] = put("ragged.csv", "sentence,label\ngood film,1\nbad film\n")
    out["comma_csv"] = put("comma.csv", "sentence,label\ngood film,1\nbad, boring film,0\n")
    out["custom_train"] = put("custom_train.csv", "text,label\ngood,pos\nbad,neg\n")
    out["custom_dev_gap"] = put("custom_dev_gap.csv", "text,label\nfine,pos\ndull,\n")
    out["custom_nan"] = put("custom_nan.csv", "sentence1,sentence2,label\na,b,0.5\nc,d,nan\ne,f,1.0\n")
    out["json_strings"] = put("strings.json", json.dumps(["good film", "bad film"]))
    out["json_broken"] = put("broken.json", '[{"sentence": "a", "label": 1},\n {"sentence": "b" "label": 0}]')
    out["jsonl_broken"] = put("broken.jsonl", '{"sentence": "a", "label": 1}\n{"sentence": "b", label: 0}\n')
    out["json_no_label"] = put("no_label.json", json.dumps([{"sentence": "a", "label": 1}, {"sentence": "b"}]))
    # ---- models
    out["no_tokenizer"] = model_copy("no_tokenizer", toy["student"], drop=("vocab.txt", "tokenizer*",
                                                                           "special_tokens_map.json"))
    out["no_vocab"] = model_copy("no_vocab", toy["student"], drop=("vocab.txt", "tokenizer.json"))
    out["cut_config"] = model_copy("cut_config", toy["student"], edit=lambda d: (d / "config.json").write_text(
        (d / "config.json").read_text()[:60]))
    out["list_config"] = model_copy("list_config", toy["student"], edit=lambda d: (d / "config.json").write_text("[]"))
    out["cut_weights"] = model_copy("cut_weights", toy["student"], edit=lambda d: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:3000]))
    out["garbage_weights"] = model_copy("garbage_weights", toy["teacher"], edit=lambda d: (
        d / "model.safetensors").write_bytes(bytes(range(256)) * 40))
    out["garbage_bin"] = model_copy("garbage_bin", toy["student"], drop=("model.safetensors",), edit=lambda d: (
        d / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not really a zip" * 10))
    out["cut_tokenizer"] = model_copy("cut_tokenizer", toy["student"], edit=lambda d: (d / "tokenizer.json").write_text(
        (d / "tokenizer.json").read_text()[:100]))
    torch.manual_seed(0)
    small = BertForSequenceClassification(BertConfig(vocab_size=20, hidden_size=32, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=64))
    small.save_pretrained(root / "small_vocab")
    tok.save_pretrained(root / "small_vocab")
    out["small_vocab"] = str(root / "small_vocab")
    mlm = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64))
    mlm.save_pretrained(root / "mlm_teacher")
    tok.save_pretrained(root / "mlm_teacher")
    out["mlm_teacher"] = str(root / "mlm_teacher")
    # ---- SQuAD: a valid one-question file, then one defect each
    base = toy_squad(n_articles=1, paragraphs=1, clauses=3, seed=0)

    def squad(name, edit):
        data = json.loads(json.dumps(base))
        qa = data["data"][0]["paragraphs"][0]["qas"][0]
        edit(data, data["data"][0]["paragraphs"][0], qa, qa["answers"][0])
        return put(f"squad_{name}.json", json.dumps(data))

    out["squad_latin1"] = put("squad_latin1.json", json.dumps(base, ensure_ascii=False).replace(
        "what was", "qu'était").encode("latin-1"))
    out["squad_empty"] = put("squad_empty.json", "")
    out["squad_gzip"] = put("squad_gzip.json", gzip.compress(json.dumps(base).encode()))
    out["squad_broken"] = put("squad_broken.json", json.dumps(base)[:-3])
    out["squad_no_id"] = squad("no_id", lambda d, p, q, a: q.pop("id"))
    out["squad_no_question"] = squad("no_question", lambda d, p, q, a: q.pop("question"))
    out["squad_no_context"] = squad("no_context", lambda d, p, q, a: p.pop("context"))
    out["squad_no_answers"] = squad("no_answers", lambda d, p, q, a: q.pop("answers"))
    out["squad_empty_answers"] = squad("empty_answers", lambda d, p, q, a: q.update(answers=[]))
    out["squad_answers_dict"] = squad("answers_dict", lambda d, p, q, a: q.update(answers=a))
    out["squad_no_text"] = squad("no_text", lambda d, p, q, a: a.pop("text"))
    out["squad_no_start"] = squad("no_start", lambda d, p, q, a: a.pop("answer_start"))
    out["squad_str_start"] = squad("str_start", lambda d, p, q, a: a.update(answer_start=str(a["answer_start"])))
    out["squad_far_start"] = squad("far_start", lambda d, p, q, a: a.update(answer_start=10_000))
    out["squad_moved_start"] = squad("moved_start", lambda d, p, q, a: a.update(answer_start=a["answer_start"] + 1))
    out["squad_str_article"] = squad("str_article", lambda d, p, q, a: d["data"].insert(0, "article one"))
    out["squad_str_paragraph"] = squad("str_paragraph", lambda d, p, q, a: d["data"][0]["paragraphs"].append("text"))
    out["squad_data_dict"] = squad("data_dict", lambda d, p, q, a: d.update(data={"title": "x"}))
    out["squad_no_questions"] = squad("no_questions", lambda d, p, q, a: p.update(qas=[]))
    out["squad_twice"] = squad("twice", lambda d, p, q, a: p["qas"].append(json.loads(json.dumps(q))))
    # ---- IMDB
    imdb = "split,label,rating,id,orig_path,text\ntrain,1,8,0,a,good film\ntest,0,2,1,b,bad film\n"
    out["imdb_latin1"] = put("imdb_latin1.csv", (imdb + "train,0,1,2,c,mauvais café\n").encode("latin-1"))
    out["imdb_not_gzip"] = put("imdb_plain.csv.gz", imdb)
    many = imdb + "".join(f"train,{i % 2},5,{i},p{i},review {i * 7919 % 10007}\n" for i in range(2000))
    out["imdb_cut_gzip"] = put("imdb_cut.csv.gz", gzip.compress(many.encode())[:2000])
    out["imdb_gzip_as_csv"] = put("imdb_gzip.csv", gzip.compress(imdb.encode()))
    out["imdb_empty"] = put("imdb_empty.csv", "")
    out["imdb_no_label"] = put("imdb_no_label.csv", "split,rating,text\ntrain,8,good\n")
    out["imdb_dev_split"] = put("imdb_dev_split.csv", imdb + "dev,1,7,2,c,fine film\n")
    out["imdb_label2"] = put("imdb_label2.csv", imdb + "train,2,5,2,c,so-so film\n")
    out["imdb_no_test"] = put("imdb_no_test.csv", "split,label,text\ntrain,1,good\ntrain,0,bad\n")
    out["imdb_ragged"] = put("imdb_ragged.csv", imdb + "train,1,9\n")
    out["imdb_one_train"] = put("imdb_one_train.csv", imdb)  # one training review: the dev split takes it
    # ---- LM
    out["lm_latin1"] = put("lm_latin1.txt", "the king spoke .\n\nthe queen spoke of café .\n".encode("latin-1"))
    out["lm_binary"] = put("lm_binary.txt", bytes(range(256)) * 8)
    (root / "lm_folder.txt").mkdir()
    out["lm_folder"] = str(root / "lm_folder.txt")
    out["lm_int_text"] = put("lm_int_text.jsonl", '{"text": "the king"}\n{"text": 5}\n')
    out["lm_list_row"] = put("lm_list_row.jsonl", '{"text": "the king"}\n["the", "queen"]\n')
    out["lm_str_refs"] = put("lm_str_refs.jsonl", '{"prompt": "who?", "response": "the king", "references": "x"}\n')
    out["lm_jsonl_latin1"] = put("lm_latin1.jsonl", '{"text": "the king"}\n{"text": "café"}\n'.encode("latin-1"))
    out["npz_garbage"] = put("garbage.npz", bytes(range(256)) * 8)
    np.savez(root / "whole.npz", key=np.array("k"), ids=np.arange(50), offsets=np.array([0, 50]),
             prompt_lengths=np.zeros(1, dtype=np.int32))
    out["npz_cut"] = put("cut.npz", (root / "whole.npz").read_bytes()[:300])
    np.savez(root / "other.npz", weights=np.ones(3))
    out["npz_other"] = str(root / "other.npz")
    np.save(root / "array.npy", np.arange(5))
    out["npy_as_npz"] = str(root / "array.npy")
    np.save(root / "counts_full.npy", np.ones(len(tok), dtype=np.int64))
    out["counts_cut"] = put("counts_cut.npy", (root / "counts_full.npy").read_bytes()[:140])
    out["counts_garbage"] = put("counts_garbage.npy", b"counts: the=5, king=2\n" * 20)
    np.save(root / "counts_pickle.npy", np.array([{"the": 5}] * len(tok), dtype=object), allow_pickle=True)
    out["counts_pickle"] = str(root / "counts_pickle.npy")
    np.save(root / "counts_nan.npy", np.full(len(tok), np.nan))
    out["counts_nan"] = str(root / "counts_nan.npy")
    np.save(root / "counts_2d.npy", np.ones((len(tok), 2)))
    out["counts_2d"] = str(root / "counts_2d.npy")
    np.savez(root / "counts.npz", counts=np.ones(len(tok)))
    out["counts_npz"] = str(root / "counts.npz")
    out["cfg_broken"] = put("cfg_broken.json", '{"model_type": "gpt2", "n_layer": ')
    out["cfg_list"] = put("cfg_list.json", "[2, 32]")
    out["cfg_unknown"] = put("cfg_unknown.json", json.dumps({"model_type": "gpt7", "n_layer": 1}))
    out["cfg_tokenizer"] = put("cfg_tokenizer.json", json.dumps({"model_type": "gpt2", "do_lower_case": True,
                                                                 "model_max_length": 64, "unk_token": "[UNK]"}))
    out["cfg_values"] = put("cfg_values.json", json.dumps({"model_type": "gpt2", "n_embd": 30, "n_head": 4,
                                                           "n_layer": 1, "vocab_size": 300, "n_positions": 64}))
    out["gpt2_no_tokenizer"] = model_copy("gpt2_no_tokenizer", paths["gpt2"], drop=("tokenizer*", "vocab*", "merges*",
                                                                                    "special_tokens_map.json"))
    out["gpt2_cut_weights"] = model_copy("gpt2_cut_weights", paths["gpt2"], edit=lambda d: (
        d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-100]))
    out["weights_garbage"] = put("weights.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" * 3)
    gpt2_cfg = json.loads((root / "gpt2_cut_weights" / "config.json").read_text())
    out["cfg_gpt2"] = put("cfg_gpt2.json", json.dumps(gpt2_cfg))
    return out


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


# --------------------------------------------------------------------------- data files and models: rows
def custom(t, train, *extra):
    """run_glue without --task_name: the task comes from the files' labels."""
    return ["--model_name_or_path", t["student"], "--train_file", train, "--do_train", "--max_steps", "1",
            "--report_to", "none", "--disable_tqdm", *extra]


def imdb(t, data_file, *extra, model=None):
    return ["--model_name_or_path", model or t["student"], "--data_file", data_file, "--do_train", "--max_steps", "1",
            "--max_seq_length", "32", "--report_to", "none", "--disable_tqdm", *extra]


def mlm_flags(b, *extra):
    """A masked-LM run (the only kind that reads --token_counts)."""
    return ["--teacher_name_or_path", b["mlm_teacher"], "--mlm", "--alpha_mlm", "1", "--alpha_ce", "1",
            "--student_layers", "0", "--max_seq_length", "32", "--max_steps", "1", "--train_file", b["corpus"],
            "--data_cache_dir", str(b["root"] / "lm_cache"), "--disable_tqdm", "--report_to", "none", *extra]


def sts(t, b, name):
    return glue(t, "--task_name", "stsb", "--train_file", b[f"sts_{name}"])


# kind -> rows (id, script, argv(toy, bad), words the line must contain). Each is a distinct mistake a user
# can make with a data file or a model dir; all are refused while data and models load, before a step.
DATA_AND_MODEL_ROWS = {
    "not UTF-8 text, or not a text file": [
        ("GLUE --train_file in Latin-1", "glue", lambda t, b: glue(t, "--train_file", b["latin1_tsv"]),
         ["latin1.tsv line 3 is not UTF-8", "0xe9 at column 4", "save it as UTF-8"]),
        ("GLUE folder train.tsv in Latin-1", "glue", lambda t, b: glue(t, "--data_dir", b["sst2_latin1_dir"]),
         ["SST-2-latin1/train.tsv line 3 is not UTF-8"]),
        ("GLUE gzip file named .tsv", "glue", lambda t, b: glue(t, "--train_file", b["gzip_tsv"]),
         ["gzip.tsv is gzip-compressed", "gunzip"]),
        ("GLUE binary file named .csv", "glue", lambda t, b: glue(t, "--train_file", b["binary_csv"]),
         ["binary.csv is a binary file"]),
        ("GLUE UTF-16 file", "glue", lambda t, b: glue(t, "--train_file", b["utf16_tsv"]),
         ["utf16.tsv is UTF-16 text", "save it as UTF-8"]),
        ("GLUE spreadsheet (zip) named .csv", "glue", lambda t, b: glue(t, "--train_file", b["zip_csv"]),
         ["sheet.csv is a zip archive"]),
        ("GLUE folder passed as --train_file", "glue", lambda t, b: glue(t, "--train_file", b["folder_tsv"]),
         ["folder.tsv is a folder, not a file"]),
        ("SQuAD file in Latin-1", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_latin1"]),
         ["squad_latin1.json line 1 is not UTF-8", "save it as UTF-8"]),
        ("SQuAD gzip file named .json", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_gzip"]),
         ["squad_gzip.json is gzip-compressed"]),
        ("SQuAD empty file", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_empty"]),
         ["squad_empty.json is empty"]),
        ("SQuAD folder passed as --train_file", "squad",
         lambda t, b: squad_flags(t, "--train_file", b["folder_tsv"]), ["is a folder, not a file"]),
        ("IMDB csv in Latin-1", "imdb", lambda t, b: imdb(t, b["imdb_latin1"]),
         ["imdb_latin1.csv line 4 is not UTF-8", "0xe9"]),
        ("IMDB .csv.gz that is not gzip", "imdb", lambda t, b: imdb(t, b["imdb_not_gzip"]),
         ["imdb_plain.csv.gz is not gzip-compressed"]),
        ("IMDB truncated .csv.gz", "imdb", lambda t, b: imdb(t, b["imdb_cut_gzip"]),
         ["imdb_cut.csv.gz is a truncated gzip file", "again"]),
        ("IMDB gzip file named .csv", "imdb", lambda t, b: imdb(t, b["imdb_gzip_as_csv"]),
         ["imdb_gzip.csv is gzip-compressed"]),
        ("IMDB empty file", "imdb", lambda t, b: imdb(t, b["imdb_empty"]), ["imdb_empty.csv is empty"]),
        ("LM .txt in Latin-1", "lm", lambda t, b: lm_flags(b, "--train_file", b["lm_latin1"]),
         ["lm_latin1.txt line 3 is not UTF-8", "column 23"]),
        ("LM binary file named .txt", "lm", lambda t, b: lm_flags(b, "--train_file", b["lm_binary"]),
         ["lm_binary.txt is a binary file"]),
        ("LM folder passed as --train_file", "lm", lambda t, b: lm_flags(b, "--train_file", b["lm_folder"]),
         ["lm_folder.txt is a folder, not a file"]),
        ("LM .jsonl in Latin-1", "lm", lambda t, b: lm_flags(b, "--train_file", b["lm_jsonl_latin1"]),
         ["lm_latin1.jsonl line 2 is not UTF-8"]),
    ],
    "ragged rows": [
        ("GLUE RTE row with 3 of 4 columns", "glue",
         lambda t, b: glue(t, "--task_name", "rte", "--data_dir", b["root"] / "broken" / "RTE-short"),
         ["train.tsv:3: 3 tab-separated columns, task rte needs 4"]),
        ("GLUE SST-2 row with a stray tab", "glue",
         lambda t, b: glue(t, "--data_dir", b["root"] / "broken" / "SST-2-extra"),
         ["train.tsv:3: 3 tab-separated columns", "has 2", "tab inside a sentence"]),
        ("GLUE CoLA (no header) row with 3 of 4 columns", "glue",
         lambda t, b: glue(t, "--task_name", "cola", "--data_dir", b["root"] / "broken" / "CoLA-short"),
         ["train.tsv:2: 3 tab-separated columns, task cola needs 4"]),
        ("GLUE csv row with a missing field", "glue", lambda t, b: glue(t, "--train_file", b["ragged_csv"]),
         ["ragged.csv line 3: 1 comma-separated fields but the header has 2"]),
        ("GLUE csv row with an unquoted comma", "glue", lambda t, b: glue(t, "--train_file", b["comma_csv"]),
         ["comma.csv line 3: 3 comma-separated fields", "quote fields"]),
        ("IMDB row with a missing field", "imdb", lambda t, b: imdb(t, b["imdb_ragged"]),
         ["imdb_ragged.csv line 4: 3 fields but the header has 6"]),
    ],
    "labels": [
        ("STS-B score nan", "glue", lambda t, b: glue(t, "--task_name", "stsb", "--data_dir",
                                                      b["root"] / "broken" / "STS-B-nan"),
         ["train.tsv:3: label 'nan' is not a finite number"]),
        ("STS-B score inf", "glue", lambda t, b: sts(t, b, "inf"), ["sts_inf.tsv:row 2", "'inf' is not a finite"]),
        ("STS-B score 1e999 (overflows to inf)", "glue", lambda t, b: sts(t, b, "1e999"), ["'1e999' is not a finite"]),
        ("STS-B empty score", "glue", lambda t, b: sts(t, b, "empty"), ["row 2 (line 3): the label is empty"]),
        ("STS-B word as score", "glue", lambda t, b: sts(t, b, "word"), ["label 'high' is not a number"]),
        ("STS-B score outside 0-5", "glue", lambda t, b: sts(t, b, "range"), ["score '7.5' is outside stsb's range"]),
        ("SST-2 label outside the label set", "glue",
         lambda t, b: glue(t, "--data_dir", b["root"] / "broken" / "SST-2-label2"),
         ["train.tsv:3: unknown label '2'", "expected one of 0, 1"]),
        ("labelled dev set with a missing label", "glue",
         lambda t, b: glue(t, "--data_dir", b["root"] / "broken" / "SST-2-dev-gap"),
         ["dev.tsv:3: the label is empty", "--test_file"]),
        ("custom task: dev row without a label", "glue",
         lambda t, b: custom(t, b["custom_train"], "--validation_file", b["custom_dev_gap"], "--do_eval"),
         ["custom_dev_gap.csv:row 2 (line 3): the label is empty"]),
        ("custom regression task with a nan label", "glue", lambda t, b: custom(t, b["custom_nan"]),
         ["custom_nan.csv:row 2", "'nan' is not a finite number"]),
        ("IMDB unknown label", "imdb", lambda t, b: imdb(t, b["imdb_label2"]),
         ["imdb_label2.csv line 4: label '2' is not 0 (neg) or 1 (pos)"]),
    ],
    "JSON data of the wrong shape": [
        ("GLUE .json of strings", "glue", lambda t, b: glue(t, "--train_file", b["json_strings"]),
         ["strings.json row 1 is a string, not an object"]),
        ("GLUE broken .json list", "glue", lambda t, b: glue(t, "--train_file", b["json_broken"]),
         ["broken.json is not valid JSON", "line 2"]),
        ("GLUE .jsonl with a broken line", "glue", lambda t, b: glue(t, "--train_file", b["jsonl_broken"]),
         ["broken.jsonl line 2 is not valid JSON"]),
        ("GLUE .json row without a label", "glue", lambda t, b: glue(t, "--train_file", b["json_no_label"]),
         ["no_label.json:row 2", "lacks field(s) label"]),
        ("SQuAD broken JSON", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_broken"]),
         ["squad_broken.json is not valid JSON", "line 1"]),
        ("SQuAD question without id", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_no_id"]),
         ["data[0].paragraphs[0].qas[0] has no usable 'id'"]),
        ("SQuAD question without text", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_no_question"]),
         ["(question a0p0) has no 'question'"]),
        ("SQuAD paragraph without context", "squad",
         lambda t, b: squad_flags(t, "--train_file", b["squad_no_context"]), ["paragraphs[0] has no 'context'"]),
        ("SQuAD question without answers", "squad",
         lambda t, b: squad_flags(t, "--train_file", b["squad_no_answers"]), ["has no 'answers'"]),
        ("SQuAD question with an empty answer list", "squad",
         lambda t, b: squad_flags(t, "--train_file", b["squad_empty_answers"]), ["has no answers", "v2.0"]),
        ("SQuAD answers not a list", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_answers_dict"]),
         ["answers is an object", "not a list"]),
        ("SQuAD answer without text", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_no_text"]),
         ["answers[0] has no 'text'"]),
        ("SQuAD answer without answer_start", "squad",
         lambda t, b: squad_flags(t, "--train_file", b["squad_no_start"]), ["has no 'answer_start'"]),
        ("SQuAD answer_start as a string", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_str_start"]),
         ["answer_start is a string (\"40\"), not an integer"]),
        ("SQuAD answer_start past the context", "squad",
         lambda t, b: squad_flags(t, "--train_file", b["squad_far_start"]),
         ["answer_start 10000", "outside its context"]),
        ("SQuAD answer not at answer_start", "squad",
         lambda t, b: squad_flags(t, "--train_file", b["squad_moved_start"]), ["is not at answer_start"]),
        ("SQuAD string entry in data", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_str_article"]),
         ["data[0] is a string, not an article object"]),
        ("SQuAD string entry in paragraphs", "squad",
         lambda t, b: squad_flags(t, "--train_file", b["squad_str_paragraph"]),
         ["data[0].paragraphs[1] is a string, not a paragraph object"]),
        ("SQuAD data not a list", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_data_dict"]),
         ["not in the SQuAD format"]),
        ("SQuAD file without questions", "squad",
         lambda t, b: squad_flags(t, "--train_file", b["squad_no_questions"]), ["holds no questions"]),
        ("SQuAD question id used twice", "squad", lambda t, b: squad_flags(t, "--train_file", b["squad_twice"]),
         ["question id 'a0p0' is used twice"]),
        ("SQuAD eval file without answers", "squad",
         lambda t, b: ["--model_name_or_path", t["student"], "--do_eval", "--predict_file", b["squad_empty_answers"],
                       "--max_seq_length", "64", "--report_to", "none"],
         ["squad_empty_answers.json", "has no answers"]),
        ("LM .jsonl text that is a number", "lm", lambda t, b: lm_flags(b, "--train_file", b["lm_int_text"]),
         ["lm_int_text.jsonl line 2: 'text' is an integer (5)", "JSON string"]),
        ("LM .jsonl row that is a list", "lm", lambda t, b: lm_flags(b, "--train_file", b["lm_list_row"]),
         ["lm_list_row.jsonl line 2 is a list, not an object"]),
        ("LM .jsonl references not a list", "lm", lambda t, b: lm_flags(b, "--train_file", b["lm_str_refs"]),
         ["line 1: 'references' must be a list of strings"]),
    ],
    "IMDB columns and splits": [
        ("IMDB csv without a label column", "imdb", lambda t, b: imdb(t, b["imdb_no_label"]),
         ["lacks column(s) label"]),
        ("IMDB unknown split", "imdb", lambda t, b: imdb(t, b["imdb_dev_split"]),
         ["imdb_dev_split.csv line 4: split 'dev' is not train or test"]),
        ("IMDB without test rows", "imdb", lambda t, b: imdb(t, b["imdb_no_test"]),
         ["found ['train']", "add the test reviews"]),
        ("IMDB train split all taken by the dev split", "imdb", lambda t, b: imdb(t, b["imdb_one_train"]),
         ["1 review(s), all taken by the dev split"]),
    ],
    "LM preprocessed files and student configs": [
        ("LM garbage --preprocessed_data_file", "lm",
         lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--preprocessed_data_file", b["npz_garbage"]),
         ["--preprocessed_data_file", "garbage.npz is not a tokenised-data file", "not a numpy file",
          "--overwrite_cache"]),
        ("LM truncated --preprocessed_data_file", "lm",
         lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--preprocessed_data_file", b["npz_cut"]),
         ["cut.npz is not a tokenised-data file"]),
        ("LM another .npz as --preprocessed_data_file", "lm",
         lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--preprocessed_data_file", b["npz_other"]),
         ["other.npz is not a tokenised-data file", "no key, ids"]),
        ("LM a .npy as --preprocessed_data_file", "lm",
         lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--preprocessed_data_file", b["npy_as_npz"]),
         ["array.npy is not a tokenised-data file", "a .npy array, not the .npz"]),
        ("LM garbage --token_counts", "lm", lambda t, b: mlm_flags(b, "--token_counts", b["counts_garbage"]),
         ["token counts", "counts_garbage.npy is not a readable .npy file"]),
        ("LM truncated --token_counts", "lm", lambda t, b: mlm_flags(b, "--token_counts", b["counts_cut"]),
         ["counts_cut.npy is not a readable .npy file"]),
        ("LM pickled --token_counts (never unpickled)", "lm",
         lambda t, b: mlm_flags(b, "--token_counts", b["counts_pickle"]),
         ["counts_pickle.npy is not a readable", "pickled Python objects, which are never loaded"]),
        ("LM --token_counts holding NaN", "lm", lambda t, b: mlm_flags(b, "--token_counts", b["counts_nan"]),
         ["negative, NaN or infinite"]),
        ("LM 2-D --token_counts", "lm", lambda t, b: mlm_flags(b, "--token_counts", b["counts_2d"]),
         ["not one number per token id"]),
        ("LM .npz as --token_counts", "lm", lambda t, b: mlm_flags(b, "--token_counts", b["counts_npz"]),
         ["counts.npz is an .npz archive"]),
        ("LM --student_config missing", "lm",
         lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--student_config", b["root"] / "nope.json"),
         ["--student_config", "nope.json not found"]),
        ("LM --student_config not JSON", "lm",
         lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--student_config", b["cfg_broken"]),
         ["--student_config", "cfg_broken.json is not valid JSON"]),
        ("LM --student_config a JSON list", "lm",
         lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--student_config", b["cfg_list"]),
         ["cfg_list.json holds a list"]),
        ("LM --student_config unknown model_type", "lm",
         lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--student_config", b["cfg_unknown"]),
         ["names no known model_type ('gpt7')"]),
        ("LM --student_config that is a tokenizer config", "lm",
         lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--student_config", b["cfg_tokenizer"]),
         ["sets none of a gpt2 config's fields"]),
        ("LM --student_config with impossible sizes", "lm",
         lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--student_config", b["cfg_values"]),
         ["cfg_values.json cannot build a model"]),
        ("LM garbage --student_pretrained_weights", "lm",
         lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--student_config", b["cfg_gpt2"],
                               "--student_pretrained_weights", b["weights_garbage"]),
         ["weights.safetensors is not a readable weights file"]),
    ],
    "models": [
        ("model dir without tokenizer files", "glue",
         lambda t, b: ["--model_name_or_path", b["no_tokenizer"], *glue(t)[2:]],
         ["no_tokenizer holds no tokenizer files", "[UNK]", "pass --tokenizer_name"]),
        ("model dir with a tokenizer config but no vocabulary", "glue",
         lambda t, b: ["--model_name_or_path", b["no_vocab"], *glue(t)[2:]],
         ["no_vocab knows only its 5 special tokens", "pass --tokenizer_name"]),
        ("tokenizer larger than the student's embeddings", "glue",
         lambda t, b: ["--model_name_or_path", b["small_vocab"], *glue(t)[2:]],
         ["tokenizer has", "embeddings for 20"]),
        ("GPT-2 as the GLUE student", "glue", lambda t, b: ["--model_name_or_path", b["word_gpt2"], *glue(t)[2:]],
         ["GPT2LMHeadModel", "decoder-only", "encoder"]),
        ("GPT-2 as the GLUE teacher", "glue", lambda t, b: glue(t, teacher=b["word_gpt2"]),
         ["the teacher", "GPT2LMHeadModel", "sequence-classification checkpoint fine-tuned on the task"]),
        ("GPT-2 as a teacher that learns (ProKT)", "glue",
         lambda t, b: glue(t, "--train_teacher", teacher=b["word_gpt2"]), ["the teacher", "decoder-only"]),
        ("masked-LM checkpoint as the GLUE teacher", "glue", lambda t, b: glue(t, teacher=b["mlm_teacher"]),
         ["BertForMaskedLM checkpoint without a trained classification head", "(classifier.bias",
          "fine-tuned on the task"]),
        ("truncated config.json", "glue", lambda t, b: ["--model_name_or_path", b["cut_config"], *glue(t)[2:]],
         ["cut_config/config.json is not valid JSON", "damaged"]),
        ("config.json that is a JSON list", "glue",
         lambda t, b: ["--model_name_or_path", b["list_config"], *glue(t)[2:]],
         ["list_config/config.json holds a list"]),
        ("truncated model.safetensors", "glue", lambda t, b: ["--model_name_or_path", b["cut_weights"], *glue(t)[2:]],
         ["cut_weights/model.safetensors is corrupt or truncated"]),
        ("garbage teacher model.safetensors", "glue", lambda t, b: glue(t, teacher=b["garbage_weights"]),
         ["garbage_weights/model.safetensors is corrupt or truncated"]),
        ("garbage pytorch_model.bin", "glue", lambda t, b: ["--model_name_or_path", b["garbage_bin"], *glue(t)[2:]],
         ["garbage_bin/pytorch_model.bin is not a whole PyTorch weights file"]),
        ("truncated tokenizer.json", "glue", lambda t, b: ["--model_name_or_path", b["cut_tokenizer"], *glue(t)[2:]],
         ["cut_tokenizer/tokenizer.json is not valid JSON"]),
        ("IMDB student dir without tokenizer files", "imdb",
         lambda t, b: imdb(t, b["imdb"], model=b["no_tokenizer"]), ["holds no tokenizer files", "--tokenizer_name"]),
        ("IMDB GPT-2 teacher", "imdb", lambda t, b: imdb(t, b["imdb"], "--teacher_name_or_path", b["word_gpt2"]),
         ["GPT2LMHeadModel", "decoder-only"]),
        ("SQuAD GPT-2 student", "squad",
         lambda t, b: ["--model_name_or_path", b["word_gpt2"], *squad_flags(t, "--train_file", b["squad_twice"])[2:]],
         ["GPT2LMHeadModel", "decoder-only"]),
        ("SQuAD classification checkpoint as the teacher", "squad",
         lambda t, b: squad_flags(t, "--train_file", b["squad_twice"], "--teacher_name_or_path", t["teacher"]),
         ["without a trained question-answering head", "fine-tuned on SQuAD"]),
        ("SQuAD student with a truncated model.safetensors", "squad",
         lambda t, b: ["--model_name_or_path", b["cut_weights"], *squad_flags(t, "--train_file", b["squad_twice"])[2:]],
         ["model.safetensors is corrupt or truncated"]),
        ("LM teacher without tokenizer files", "lm",
         lambda t, b: ["--teacher_name_or_path", b["gpt2_no_tokenizer"], *lm_flags(b, "--train_file", b["corpus"])[2:]],
         ["gpt2_no_tokenizer holds no tokenizer files", "--tokenizer_name"]),
        ("LM --mlm teacher without a masked-LM head", "lm",
         lambda t, b: ["--teacher_name_or_path", t["teacher"], *mlm_flags(b)[2:]],
         ["BertForSequenceClassification checkpoint without a trained masked-LM head"]),
        ("LM teacher with a truncated model.safetensors", "lm",
         lambda t, b: ["--teacher_name_or_path", b["gpt2_cut_weights"], *lm_flags(b, "--train_file", b["corpus"])[2:]],
         ["gpt2_cut_weights/model.safetensors is corrupt or truncated"]),
    ],
}
ROWS += [row for rows in DATA_AND_MODEL_ROWS.values() for row in rows]


# --------------------------------------------------------------------------- flags: rows
# Refused when the flags are parsed (values against the ranges declared with each flag, types, unknown
# flags), before any file is read: the data paths need not exist.
def imdb_flags(t, *extra):
    return ["--model_name_or_path", t["student"], "--data_file", "imdb.csv.gz", "--do_train", *extra]


def squad_only(t, *extra):
    return squad_flags(t, "--train_file", "train.json", *extra)


def lm_only(b, *extra):
    return lm_flags(b, "--train_file", "corpus.txt", *extra)


def fifo_task(t, b) -> str:
    """A GLUE folder whose train.tsv is a named pipe (reading it would wait forever)."""
    folder = b["root"] / "fifo_task"
    if not folder.exists():
        shutil.copytree(t["task"], folder)
        os.remove(folder / "train.tsv")
        os.mkfifo(folder / "train.tsv")
    return str(folder)


FLAG_ROWS = [
    ("train.tsv is a named pipe", "glue", lambda t, b: glue(t, "--data_dir", fifo_task(t, b)),
     ["train.tsv is not a regular file"]),
    ("teacher given as its config file", "glue",
     lambda t, b: glue(t, teacher=os.path.join(t["teacher"], "config.json")), ["config.json is a file", "model's dir"]),
    ("mistyped flag", "glue", lambda t, b: glue(t, "--learnig_rate", "1e-3"),
     ["unknown flag --learnig_rate", "did you mean --learning_rate"]),
    ("abbreviated flag", "glue", lambda t, b: glue(t, "--learn", "1e-3"), ["unknown flag --learn ", "--learning_rate"]),
    ("value without its flag", "glue", lambda t, b: glue(t, "stray"), ["unexpected argument(s) stray"]),
    ("flag without its value", "glue", lambda t, b: glue(t, "--learning_rate", "--do_eval"),
     ["--learning_rate", "expected one"]),
    ("learning rate not a number", "glue", lambda t, b: glue(t, "--learning_rate", "abc"), ["invalid float value"]),
    ("learning rate NaN", "glue", lambda t, b: glue(t, "--learning_rate", "nan"), ["--learning_rate must be a finite"]),
    ("learning rate inf", "glue", lambda t, b: glue(t, "--learning_rate", "inf"), ["--learning_rate must be a finite"]),
    ("negative learning rate, spaced", "glue", lambda t, b: glue(t, "--learning_rate", "-1e-5"),
     ["--learning_rate", "expected one argument", "--flag=value"]),
    ("negative learning rate", "glue", lambda t, b: glue(t, "--learning_rate=-1e-5"),
     ["--learning_rate must be >= 0"]),
    ("boolean flag with a non-boolean", "glue", lambda t, b: glue(t, "--do_eval", "maybe"), ["--do_eval", "maybe"]),
    ("max_seq_length 0", "glue", lambda t, b: glue(t, "--max_seq_length", "0"), ["--max_seq_length must be >= 8"]),
    ("batch size 0", "glue", lambda t, b: glue(t, "--per_device_train_batch_size", "0"),
     ["--per_device_train_batch_size must be >= 1, got 0"]),
    ("eval batch size 0 (old spelling)", "glue", lambda t, b: glue(t, "--per_gpu_eval_batch_size", "0"),
     ["--per_device_eval_batch_size must be >= 1"]),
    ("logging_steps 0", "glue", lambda t, b: glue(t, "--logging_steps", "0"), ["--logging_steps must be >= 1"]),
    ("negative warmup_steps", "glue", lambda t, b: glue(t, "--warmup_steps", "-1"), ["--warmup_steps must be >= 0"]),
    ("warmup_ratio 1.5", "glue", lambda t, b: glue(t, "--warmup_ratio", "1.5"), ["--warmup_ratio must be in [0, 1)"]),
    ("negative eval_steps", "glue", lambda t, b: glue(t, "--eval_steps", "-5"), ["--eval_steps must be >= 1"]),
    ("save_steps 0", "glue", lambda t, b: glue(t, "--save_steps", "0"), ["--save_steps must be >= 1"]),
    ("negative save_total_limit", "glue", lambda t, b: glue(t, "--save_total_limit", "-1"),
     ["--save_total_limit must be >= 1"]),
    ("num_train_epochs 0", "glue", lambda t, b: glue(t, "--num_train_epochs", "0"),
     ["--num_train_epochs must be > 0"]),
    ("max_steps 0", "glue", lambda t, b: glue(t, "--max_steps", "0"), ["--max_steps must be -1 or >= 1"]),
    ("gradient_accumulation_steps 0", "glue", lambda t, b: glue(t, "--gradient_accumulation_steps", "0"),
     ["--gradient_accumulation_steps must be >= 1"]),
    ("negative max_grad_norm", "glue", lambda t, b: glue(t, "--max_grad_norm", "-1"), ["--max_grad_norm must be >= 0"]),
    ("negative weight_decay", "glue", lambda t, b: glue(t, "--weight_decay", "-0.1"), ["--weight_decay must be >= 0"]),
    ("adam_beta2 1", "glue", lambda t, b: glue(t, "--adam_beta2", "1.0"), ["--adam_beta2 must be in [0, 1)"]),
    ("negative seed", "glue", lambda t, b: glue(t, "--seed", "-1"), ["--seed must be in [0, 4294967295]"]),
    ("seed beyond 32 bits", "glue", lambda t, b: glue(t, "--seed", str(2**32)), ["--seed must be in"]),
    ("seed not an integer", "glue", lambda t, b: glue(t, "--seed", "1.5"), ["--seed", "invalid int value"]),
    ("alpha_kd 2", "glue", lambda t, b: glue(t, "--alpha_kd", "2", teacher=t["teacher"]),
     ["--alpha_kd must be in [0, 1], got 2"]),
    ("temperature 0", "glue", lambda t, b: glue(t, "--temperature", "0", teacher=t["teacher"]),
     ["--temperature must be in [0.01, 1000]"]),
    ("temperature that overflows τ²", "glue", lambda t, b: glue(t, "--temperature", "1e308", teacher=t["teacher"]),
     ["--temperature must be in [0.01, 1000]"]),
    ("adam_epsilon 0 (0/0 for parameters without gradient)", "glue", lambda t, b: glue(t, "--adam_epsilon", "0"),
     ["--adam_epsilon must be > 0"]),
    ("a flag without its value at the end", "glue", lambda t, b: glue(t, "--seed"), ["--seed: expected one argument"]),
    ("an argument file with more flags", "glue", lambda t, b: [str(b["root"] / "args.json"), "--seed", "2"],
     ["must be the only argument", "--seed"]),
    ("negative feature weight", "glue", lambda t, b: glue(t, "--alpha_corr", "-0.5", teacher=t["teacher"]),
     ["--alpha_corr must be >= 0"]),
    ("num_layers 0", "glue", lambda t, b: glue(t, "--num_layers", "0"), ["--num_layers must be >= 1"]),
    ("teacher learning rate NaN", "glue",
     lambda t, b: glue(t, "--train_teacher", "--t_learning_rate", "nan", teacher=t["teacher"]),
     ["--t_learning_rate must be a finite"]),
    ("LGTM finite-difference radius 0", "glue",
     lambda t, b: glue(t, "--train_teacher", "--use_lgtm", "--lgtm_fd_radius", "0", teacher=t["teacher"]),
     ["--lgtm_fd_radius must be > 0"]),
    ("OPDF bond cap 0", "glue", lambda t, b: glue(t, "--use_opdf", "--mpo_truncate", "0", teacher=t["teacher"]),
     ["--mpo_truncate must be >= 1"]),
    ("unknown eval strategy", "glue", lambda t, b: glue(t, "--eval_strategy", "sometimes"), ["sometimes", "steps"]),
    ("unknown report_to", "glue", lambda t, b: glue(t, "--report_to", "wandb"), ["--report_to", "tensorboard"]),
    ("SQuAD mistyped flag", "squad", lambda t, b: squad_only(t, "--doc_strid", "64"),
     ["unknown flag --doc_strid", "--doc_stride"]),
    ("SQuAD doc_stride 0", "squad", lambda t, b: squad_only(t, "--doc_stride", "0"), ["--doc_stride must be >= 1"]),
    ("SQuAD max_query_length 0", "squad", lambda t, b: squad_only(t, "--max_query_length", "0"),
     ["--max_query_length must be >= 1"]),
    ("SQuAD n_best_size 0", "squad", lambda t, b: squad_only(t, "--n_best_size", "0"), ["--n_best_size must be >= 1"]),
    ("SQuAD max_seq_length 8", "squad", lambda t, b: squad_only(t, "--max_seq_length", "8"),
     ["--max_seq_length must be >= 16"]),
    ("SQuAD negative alpha_squad", "squad", lambda t, b: squad_only(t, "--alpha_squad", "-1"),
     ["--alpha_squad must be >= 0"]),
    ("SQuAD batch size 0", "squad", lambda t, b: squad_only(t, "--per_gpu_train_batch_size", "0"),
     ["--per_device_train_batch_size must be >= 1"]),
    ("IMDB mistyped flag", "imdb", lambda t, b: imdb_flags(t, "--alpha_imbd", "0.5"),
     ["unknown flag --alpha_imbd", "--alpha_imdb"]),
    ("IMDB dev_fraction 1", "imdb", lambda t, b: imdb_flags(t, "--dev_fraction", "1"),
     ["--dev_fraction must be in (0, 1)"]),
    ("IMDB negative head_tokens", "imdb", lambda t, b: imdb_flags(t, "--head_tokens", "-1"),
     ["--head_tokens must be >= 0"]),
    ("IMDB alpha_imdb NaN", "imdb", lambda t, b: imdb_flags(t, "--alpha_imdb", "nan"),
     ["--alpha_imdb must be a finite"]),
    ("IMDB num_train_epochs negative", "imdb", lambda t, b: imdb_flags(t, "--num_train_epochs", "-2"),
     ["--num_train_epochs must be > 0"]),
    ("LM mistyped original flag", "lm", lambda t, b: lm_only(b, "--dump_pth", "out"), ["unknown flag --dump_pth"]),
    ("LM kd_ratio 1.5", "lm", lambda t, b: lm_only(b, "--kd_ratio", "1.5"), ["--kd_ratio must be in [0, 1]"]),
    ("LM jsd_beta 2", "lm", lambda t, b: lm_only(b, "--kd_loss", "jsd", "--jsd_beta", "2"),
     ["--jsd_beta must be in [0, 1]"]),
    ("LM validation_split_percentage 100", "lm", lambda t, b: lm_only(b, "--validation_split_percentage", "100"),
     ["--validation_split_percentage must be in [0, 100)"]),
    ("LM kd_chunk_size 0", "lm", lambda t, b: lm_only(b, "--kd_chunk_size", "0"), ["--kd_chunk_size must be >= 1"]),
    ("LM mlm_mask_prop 0", "lm", lambda t, b: lm_only(b, "--mlm", "--mlm_mask_prop", "0"),
     ["--mlm_mask_prop must be in (0, 1)"]),
    ("LM masking split not summing to 1", "lm",
     lambda t, b: lm_only(b, "--mlm", "--alpha_mlm", "1", "--word_mask", "0.5"), ["sum to 1"]),
    ("LM MiniLLM top_p 0", "lm", lambda t, b: lm_only(b, "--method", "minillm", "--top_p", "0"),
     ["--top_p must be in (0, 1]"]),
    ("LM MiniLLM gamma 0", "lm", lambda t, b: lm_only(b, "--method", "minillm", "--gamma", "0"),
     ["--gamma must be in (0, 1]"]),
    ("LM MiniLLM num_rollouts 0", "lm", lambda t, b: lm_only(b, "--method", "minillm", "--num_rollouts", "0"),
     ["--num_rollouts must be >= 1"]),
    ("LM negative n_gpu", "lm", lambda t, b: lm_only(b, "--n_gpu", "-1"), ["--n_gpu must be >= 0"]),
    ("LM batch size 0 (original spelling)", "lm", lambda t, b: lm_only(b, "--batch_size", "0"),
     ["--per_device_train_batch_size must be >= 1"]),
]
ROWS += FLAG_ROWS
# The scripts each kind of mistake must be covered for (every reader, every model loader).
KIND_SCRIPTS = {"not UTF-8 text, or not a text file": set(SCRIPTS), "ragged rows": {"glue", "imdb"},
                "labels": {"glue", "imdb"}, "JSON data of the wrong shape": {"glue", "squad", "lm"},
                "IMDB columns and splits": {"imdb"}, "LM preprocessed files and student configs": {"lm"},
                "models": set(SCRIPTS)}


def snapshot(directory) -> dict[str, str]:
    found = {}
    for base, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return found


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


def test_table_covers_the_issue(toy):
    assert len(ROWS) >= 20 and {r[1] for r in ROWS} == set(SCRIPTS)
    assert len({r[0] for r in ROWS}) == len(ROWS)  # ids name distinct cases
    assert sum(len(rows) for rows in DATA_AND_MODEL_ROWS.values()) >= 45
    assert set(DATA_AND_MODEL_ROWS) == set(KIND_SCRIPTS)
    for kind, scripts in KIND_SCRIPTS.items():
        assert {r[1] for r in DATA_AND_MODEL_ROWS[kind]} >= scripts, kind


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
