"""The broken inputs of the bad-input table (test_bad_input_table.py), as users break them."""
from __future__ import annotations

import json

import torch


def broken_inputs(root, toy, tok, paths) -> dict[str, str]:
    """Data files and model dirs as users break them: other encodings, compressed or binary files under a
    text name, ragged rows, bad labels, JSON of the wrong shape, damaged or mismatched checkpoints."""
    import gzip
    import shutil
    import zipfile

    import numpy as np
    from toys import toy_squad
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification
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
