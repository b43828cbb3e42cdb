"""LM data (lm/data.py): reading, the cache, the held-out split, packing, [CLS]/[SEP] pieces, counts."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from distill.errors import UsageError
from lm.data import (
    cached_documents,
    causal_sequences,
    masked_lm_sequences,
    read_records,
    split_documents,
    token_counts,
    tokenize_records,
)

SHAKESPEARE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "lm", "tinyshakespeare",
                           "input.txt")


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    from distill.toy import build_bpe_tokenizer
    text = "the king and the queen spoke of the war and of peace; the people listened.\n" * 20
    return build_bpe_tokenizer(str(tmp_path_factory.mktemp("bpe")), [text], vocab_size=300)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_text_documents_are_separated_by_blank_lines(tmp_path):
    path = write(tmp_path / "c.txt", "First:\nline one\nline two\n\n\nSecond doc\n\nThird\n")
    assert read_records(path) == [{"text": "First:\nline one\nline two"}, {"text": "Second doc"}, {"text": "Third"}]


def test_jsonl_text_or_prompt_response_and_bad_rows(tmp_path):
    ok = write(tmp_path / "a.jsonl", '{"prompt": "Q?", "response": "A."}\n\n{"prompt": "R?", "response": "B."}\n')
    assert read_records(ok)[1] == {"prompt": "R?", "response": "B."}
    bad = [('{"question": "x"}\n', "prompt"), ('{"text": "a"}\n{"prompt": "b", "response": "c"}\n', "mixes"),
           ("not json\n", "line 1 is not valid JSON"), ("\n", "no examples")]
    for text, match in bad:
        with pytest.raises(UsageError, match=match):
            read_records(write(tmp_path / "b.jsonl", text))
    with pytest.raises(UsageError, match="not found"):
        read_records(str(tmp_path / "missing.txt"))


def test_causal_packing_concatenates_documents_with_eos_into_blocks(bpe):
    docs = tokenize_records([{"text": "the king"}, {"text": "the queen spoke"}], bpe, append_eos=True)
    ids = docs.ids.tolist()
    assert ids.count(bpe.eos_token_id) == 2 and ids[-1] == bpe.eos_token_id
    data = causal_sequences(docs, max_len=3)
    assert sum(data.columns["input_ids"], []) == ids[:len(sum(data.columns["input_ids"], []))]
    assert all(len(s) == 3 for s in data.columns["input_ids"][:-1])
    assert data.columns["labels"] == data.columns["input_ids"]


def test_prompt_tokens_get_no_label_and_prompts_that_fill_the_length_are_dropped(bpe):
    records = [{"prompt": "the king", "response": " spoke"},
               {"prompt": "the queen spoke of the war and of peace", "response": " and"}]
    docs = tokenize_records(records, bpe, append_eos=True)
    n_prompt = [len(bpe(r["prompt"], add_special_tokens=False)["input_ids"]) for r in records]
    assert docs.prompt_lengths.tolist() == n_prompt and n_prompt[1] > n_prompt[0] + 3
    data = causal_sequences(docs, max_len=n_prompt[0] + 3)
    assert len(data) == 1  # the second prompt alone fills max_len: nothing to learn, dropped
    labels, ids = data.columns["labels"][0], data.columns["input_ids"][0]
    assert labels[:n_prompt[0]] == [-100] * n_prompt[0] and labels[n_prompt[0]:] == ids[n_prompt[0]:]
    assert ids == docs.doc(0)[:n_prompt[0] + 3].tolist()


def test_masked_lm_pieces_are_wrapped_in_cls_and_sep(bpe):
    docs = tokenize_records([{"text": "the king and the queen spoke of the war"}], bpe, append_eos=False)
    body = docs.ids.tolist()
    data = masked_lm_sequences(docs, max_len=5, cls_id=101, sep_id=102)
    assert all(s[0] == 101 and s[-1] == 102 and len(s) <= 5 for s in data.columns["input_ids"])
    assert sum((s[1:-1] for s in data.columns["input_ids"]), []) == body


def test_the_held_out_split_is_the_last_documents():
    from lm.data import Documents
    docs = Documents(np.arange(10, dtype=np.int32), np.array([0, 2, 4, 6, 8, 10]), np.zeros(5, dtype=np.int32))
    train, val = split_documents(docs, 40.0)
    assert train.ids.tolist() == [0, 1, 2, 3, 4, 5] and val.ids.tolist() == [6, 7, 8, 9]
    assert val.offsets.tolist() == [0, 2, 4]
    with pytest.raises(UsageError, match="empty split"):
        split_documents(docs, 1.0)


def test_cache_is_reused_and_keyed_by_data_and_tokenizer(bpe, tmp_path):
    records = [{"text": "the king spoke"}, {"text": "of the war"}]
    calls = []

    def load():
        calls.append(1)
        return records
    first = cached_documents("file:abc", load, bpe, True, str(tmp_path))
    again = cached_documents("file:abc", load, bpe, True, str(tmp_path))
    assert len(calls) == 1 and np.array_equal(first.ids, again.ids)
    cached_documents("file:other", load, bpe, True, str(tmp_path))  # other data: tokenised anew
    cached_documents("file:abc", load, bpe, False, str(tmp_path))  # other sequence format: anew
    assert len(calls) == 3
    explicit = str(tmp_path / "data.npz")
    cached_documents("file:abc", load, bpe, True, str(tmp_path), explicit)
    with pytest.raises(UsageError, match="other data or another tokenizer"):
        cached_documents("file:changed", load, bpe, True, str(tmp_path), explicit)
    cached_documents("file:abc", load, bpe, True, str(tmp_path), overwrite=True)
    assert len(calls) == 5


def test_token_counts_are_computed_once_and_cached(tmp_path):
    from lm.data import Documents
    docs = Documents(np.array([1, 1, 4, 2, 1], dtype=np.int32), np.array([0, 5]), np.zeros(1, dtype=np.int32))
    path = str(tmp_path / "counts.npy")
    assert token_counts(docs, 6, path).tolist() == [0, 3, 1, 0, 1, 0]
    np.save(path, np.array([9, 9, 9, 9, 9, 9]))
    assert token_counts(docs, 6, path).tolist() == [9] * 6  # read back, not recomputed
    with pytest.raises(UsageError, match="cover 6 ids"):
        token_counts(docs, 7, path)


@pytest.mark.skipif(not os.path.isfile(SHAKESPEARE), reason="../shared/data not present")
def test_real_tiny_shakespeare_reads_into_documents():
    records = read_records(SHAKESPEARE)
    assert len(records) == 7222
    assert records[0]["text"].startswith("First Citizen:\nBefore we proceed any further")
    assert json.dumps(records[-1]).count("\\n\\n") == 0


def test_hub_text_datasets_load_one_document_per_line_and_are_cached(bpe, tmp_path, monkeypatch):
    import datasets

    from lm.args import LMDataArguments
    from lm.build import load_documents
    calls = []

    def fake_load_dataset(name, config, cache_dir=None):  # what load_dataset("wikitext", ...) returns, offline
        calls.append((name, config))
        return datasets.DatasetDict({
            "train": datasets.Dataset.from_dict({"text": ["", " = Title = \n", "the king spoke\n", "of the war\n"]}),
            "validation": datasets.Dataset.from_dict({"text": ["the queen\n", ""]})})
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    args = LMDataArguments(dataset_name="wikitext", dataset_config_name="wikitext-2-raw-v1",
                           data_cache_dir=str(tmp_path))
    train, val = load_documents(args, bpe, mlm=False)
    assert calls == [("wikitext", "wikitext-2-raw-v1")] and (len(train), len(val)) == (3, 1)
    assert train.doc(1).tolist() == bpe("the king spoke\n")["input_ids"] + [bpe.eos_token_id]
    load_documents(args, bpe, mlm=False)
    assert len([f for f in os.listdir(tmp_path) if f.startswith("docs-")]) == 2  # train + validation, reused


def test_a_damaged_cache_of_our_own_is_remade_but_a_named_file_is_refused(bpe, tmp_path, caplog):
    records = [{"text": "the king spoke"}]
    first = cached_documents("file:abc", lambda: records, bpe, True, str(tmp_path))
    (cache,) = tmp_path.glob("docs-*.npz")
    cache.write_bytes(cache.read_bytes()[:100])  # a copy cut short
    with caplog.at_level("WARNING", logger="lm.data"):
        again = cached_documents("file:abc", lambda: records, bpe, True, str(tmp_path))
    assert np.array_equal(first.ids, again.ids) and "unreadable" in caplog.text
    named = tmp_path / "named.npz"
    named.write_bytes(b"garbage" * 10)
    with pytest.raises(UsageError, match="named.npz is not a tokenised-data file .*not a numpy file at all"):
        cached_documents("file:abc", lambda: records, bpe, True, str(tmp_path), str(named))
    cached_documents("file:abc", lambda: records, bpe, True, str(tmp_path), str(named), overwrite=True)  # remade


def test_token_counts_must_be_one_finite_non_negative_number_per_id(tmp_path):
    from lm.data import Documents
    docs = Documents(np.array([1, 2], dtype=np.int32), np.array([0, 2]), np.zeros(1, dtype=np.int32))
    path = str(tmp_path / "counts.npy")
    for bad, words in ((np.array([1, -1, 0]), "negative"), (np.array([1.0, np.inf, 0.0]), "infinite"),
                       (np.array(["a", "b", "c"]), "not one number per token id")):
        np.save(path, bad)
        with pytest.raises(UsageError, match=words):
            token_counts(docs, 3, path)


def test_jsonl_fields_of_the_wrong_type_are_named(tmp_path):
    for text, words in (('{"prompt": "q", "response": 3}\n', "'response' is an integer"),
                        ('{"instruction": ["a"], "response": "r"}\n', "'instruction' is a list"),
                        ('{"prompt": "q", "response": "r", "references": [1]}\n',
                         "'references' must be a list of strings")):
        with pytest.raises(UsageError, match=f"line 1: {words}"):
            read_records(write(tmp_path / "x.jsonl", text))
