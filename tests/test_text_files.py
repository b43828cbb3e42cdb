"""distill/text_files.py: every data reader's way into a file; bad bytes become one line with file, line, fix."""
from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from distill.errors import UsageError
from distill.text_files import (
    csv_records,
    decode_text,
    json_lines,
    json_type,
    numpy_problem,
    parse_json,
    read_text,
)


def test_utf8_is_read_and_a_byte_order_mark_dropped():
    assert decode_text("naïve\n".encode(), "f") == "naïve\n"
    assert decode_text(b"\xef\xbb\xbfa\tb\n", "f") == "a\tb\n"  # MRPC's BOM


def test_a_bad_byte_names_its_line_and_character_column():
    data = "first line\nnaïve café\n".encode("utf-8")[:-6] + "café\n".encode("latin-1")
    with pytest.raises(UsageError) as e:
        decode_text(data, "x.tsv")
    # "naïve caf" is 9 characters (10 bytes: ï is two): é is at column 10 of line 2
    assert str(e.value) == "x.tsv line 2 is not UTF-8 text (byte 0xe9 at column 10); save it as UTF-8"


@pytest.mark.parametrize("data,words", [
    (gzip.compress(b"a\tb\n"), "is gzip-compressed"),
    (b"PK\x03\x04rest", "zip archive"),
    ("a\tb\n".encode("utf-16"), "is UTF-16 text"),
    (b"\x93NUMPY\x01\x00", "numpy array"),
    (pickle.dumps([[101, 7, 102]], protocol=4), "is a pickle"),  # the binarised data of a pipeline
    (bytes(range(256)), "binary file, not text (a NUL byte at line 1, column 1)"),
])
def test_files_that_are_not_text_say_what_they_are(data, words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        decode_text(data, "x.tsv")


def test_a_nul_past_the_sniffed_head_is_refused_with_its_line():
    data = b"word\n" * 4000 + b"a\x00b\n"
    with pytest.raises(UsageError, match="line 4001 holds a NUL byte"):
        decode_text(data, "x.txt")


def test_read_text_refuses_folders_and_missing_files_and_gunzips_gz(tmp_path):
    with pytest.raises(UsageError, match="is a folder, not a file"):
        read_text(str(tmp_path))
    with pytest.raises(UsageError, match="^my own message$"):
        read_text(str(tmp_path / "nope.csv"), not_found="my own message")
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress("x,é\n".encode()))
    assert read_text(str(tmp_path / "a.csv.gz")) == "x,é\n"


def test_gz_files_that_are_not_gzip_truncated_or_damaged(tmp_path):
    plain, cut, damaged = (tmp_path / n for n in ("plain.csv.gz", "cut.csv.gz", "damaged.csv.gz"))
    plain.write_text("a,b\n")
    whole = gzip.compress("".join(f"train,1,review {i * 7919 % 10007}\n" for i in range(3000)).encode())
    cut.write_bytes(whole[:1000])
    damaged.write_bytes(whole[:-8] + b"\x00" * 8)  # CRC and length of the trailer wrong
    with pytest.raises(UsageError, match="is not gzip-compressed although its name ends in .gz"):
        read_text(str(plain))
    with pytest.raises(UsageError, match="is a truncated gzip file"):
        read_text(str(cut))
    with pytest.raises(UsageError, match="is a damaged gzip file"):
        read_text(str(damaged))


def test_csv_records_give_the_starting_line_skip_blank_lines_and_name_the_line_of_a_csv_error():
    text = 'h1,h2\n\na,"two\nlines"\nb,c\n'
    assert list(csv_records(text, "f.csv")) == [(1, ["h1", "h2"]), (3, ["a", "two\nlines"]), (5, ["b", "c"])]
    with pytest.raises(UsageError, match=r"^f\.csv line 2: .*; fix the file"):
        list(csv_records('a,b\nc,"d"e\n', "f.csv", strict=True))


def test_json_lines_split_on_newlines_only_and_name_a_bad_line():
    text = '{"text": "a\u2028b"}\n\n{"text": "c"}\n'  # U+2028 is legal inside a JSON string
    assert list(json_lines(text, "f.jsonl")) == [(1, {"text": "a\u2028b"}), (3, {"text": "c"})]
    with pytest.raises(UsageError, match=r"f\.jsonl line 2 is not valid JSON \(.* at column 2\)"):
        list(json_lines('{"a": 1}\n{b}\n', "f.jsonl"))
    with pytest.raises(UsageError, match=r"f\.json is not valid JSON \(.* at line 2, column 1\); do this"):
        parse_json('{"a":\n}', "f.json", "do this")


def test_json_type_uses_json_names():
    assert [json_type(v) for v in ("s", 1, 1.5, True, None, [], {})] == [
        "a string", "an integer", "a number", "true/false", "null", "a list", "an object"]


def test_numpy_problem_never_suggests_unpickling(tmp_path):
    garbage, npz, objects = tmp_path / "g.npy", tmp_path / "a.npz", tmp_path / "o.npy"
    garbage.write_bytes(b"not numpy")
    np.savez(npz, x=np.ones(2))
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for path, expected, words in ((garbage, ".npy array", "not a numpy file at all"),
                                  (npz, ".npy array", "a .npz archive, not the .npy array expected"),
                                  (objects, ".npy array", "pickled Python objects, which are never loaded")):
        try:
            np.load(path, allow_pickle=False)
            error = ValueError("loaded")
        except Exception as e:  # noqa: BLE001  (whatever np.load raises is what gets explained)
            error = e
        assert words in numpy_problem(str(path), error, expected)
