"""Reading the user's data files as text: UTF-8 or one UsageError line naming the file, the line and the fix.

Every reader (GLUE TSV/CSV/JSON, SQuAD JSON, IMDB csv(.gz), LM .txt/.jsonl) goes through `read_text`, so
a Latin-1 export, a gzip or zip file under a text name, a binary file, a truncated download or a folder
passed as a file gets the same kind of message everywhere, instead of a UnicodeDecodeError traceback
(or, for a csv module that tolerates odd bytes, rows of mojibake that train silently).
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import sys
import zlib
from collections.abc import Iterable, Iterator

from distill.errors import UsageError

UTF8_BOM = b"\xef\xbb\xbf"
# Formats users hand over by mistake, by their first bytes: (magic, what it is, what to do).
PICKLE_MAGIC = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))  # the PROTO opcode of protocols 2-5


def is_pickle(path: str) -> bool:
    """A pickle file, by name or by its first bytes; never opened as one here (unpickling runs code)."""
    with open(path, "rb") as f:
        return path.endswith((".pickle", ".pkl")) or f.read(2) in PICKLE_MAGIC


_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip)"),
    (b"PK\x03\x04", "a zip archive (a spreadsheet such as .xlsx, or a zipped folder)",
     "export or unzip it to a UTF-8 text file"),
    (b"BZh", "bzip2-compressed", "decompress it first (bunzip2)"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (unxz)"),
    (b"\x93NUMPY", "a numpy array file", "pass the text file"),
    *((magic, "a pickle (e.g. the DistilBERT pipeline's binarised data), which can run code when loaded",
       "pass the raw text file it was made from (one sequence per line)") for magic in PICKLE_MAGIC),
    (b"\xff\xfe", "UTF-16 text", "save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8"),
)
_SNIFF = 8192  # bytes looked at for NULs: text never holds one, binary files nearly always do early on


def check_is_file(path: str, not_found: str) -> None:
    """A folder passed as a file says so (open() would raise IsADirectoryError); a missing path gives
    the reader's own `not_found` message."""
    if os.path.isdir(path):
        raise UsageError(f"{path} is a folder, not a file; pass the data file inside it")
    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"{path} is not a regular file (a pipe, socket or device); pass the data file itself")
    if not os.path.isfile(path):
        raise UsageError(not_found)


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """(line, column), both 1-based, of byte `offset`; the column counts characters, not bytes."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def _check_head(head: bytes, path: str) -> None:
    """What the first bytes say: a known non-text format, or a binary file (a NUL early on)."""
    for magic, kind, fix in _MAGIC:
        if head.startswith(magic):
            raise UsageError(f"{path} is {kind}, not UTF-8 text; {fix}")
    nul = head.find(b"\x00")
    if nul >= 0:
        line, column = _position(head, nul)
        raise UsageError(f"{path} is a binary file, not text (a NUL byte at line {line}, column {column}); pass "
                         "the UTF-8 text file")


def _decode_line(line: bytes, n: int, path: str) -> str:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        column = len(line[:e.start].decode("utf-8", errors="replace")) + 1
        raise UsageError(f"{path} line {n} is not UTF-8 text (byte 0x{line[e.start]:02x} at column {column}); "
                         "save it as UTF-8") from None
    if "\x00" in text:  # past the sniffed head: valid UTF-8, but no text file holds a NUL
        raise UsageError(f"{path} line {n} holds a NUL byte (is it a binary file?); pass the UTF-8 text file")
    return text


def decode_text(data: bytes, path: str) -> str:
    """`data` as UTF-8 text (a leading byte-order mark dropped: MRPC has one), or a UsageError naming
    `path`, the line and the column of the first bad byte."""
    return "".join(_decoded_lines(io.BytesIO(data), path))


def _decoded_lines(stream, path: str) -> Iterator[str]:
    """The lines of a binary stream, decoded one at a time (so a 100 MB file is never held twice)."""
    for n, line in enumerate(stream, 1):
        if n == 1:
            _check_head(line[:_SNIFF], path)
            line = line.removeprefix(UTF8_BOM)
        yield _decode_line(line, n, path)


def text_lines(path: str, not_found: str | None = None) -> Iterator[str]:
    """The file's lines (each with its line ending) as UTF-8 text, streamed. A name ending in .gz is
    gunzipped on the way (and must be gzip); line numbers in messages are those of the text."""
    check_is_file(path, not_found or f"file not found: {path}")
    with open(path, "rb") as raw:
        head = raw.read(_SNIFF)
        raw.seek(0)
        if not path.endswith(".gz"):
            _check_head(head, path)
            yield from _decoded_lines(raw, path)
            return
        if not head.startswith(b"\x1f\x8b"):
            raise UsageError(f"{path} is not gzip-compressed although its name ends in .gz; pass the file as "
                             "downloaded, or drop .gz from the name of a plain text file")
        try:
            with gzip.open(raw, "rb") as unzipped:
                yield from _decoded_lines(unzipped, path)
        except EOFError:
            raise UsageError(f"{path} is a truncated gzip file (it ends before the compressed data does); download "
                             "or copy it again") from None
        except (gzip.BadGzipFile, zlib.error) as e:  # CRC or length mismatch, corrupt deflate data
            raise UsageError(f"{path} is a damaged gzip file ({e}); download or copy it again") from None


def read_text(path: str, not_found: str | None = None) -> str:
    """The whole file as UTF-8 text (see text_lines)."""
    return "".join(text_lines(path, not_found))


def csv_records(text: str | Iterable[str], path: str, **fmt) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record starts, fields) for every non-blank record of csv/tsv `text` (a
    string, or lines as text_lines gives them); a csv.Error becomes a UsageError naming the line.
    Fields may be as long as a line: GLUE sentences (QQP, MNLI) can pass the csv module's 128 KB cap and are
    never quoted. The cap is process-wide, so it is lifted here, when a file is read, not at import."""
    if csv.field_size_limit() < sys.maxsize:
        csv.field_size_limit(sys.maxsize)
    reader = csv.reader(io.StringIO(text, newline="") if isinstance(text, str) else text, **fmt)
    start = 1
    try:
        for row in reader:
            if row:
                yield start, row
            start = reader.line_num + 1
    except csv.Error as e:
        raise UsageError(f"{path} line {reader.line_num}: {e}; fix the file (or check that it is the right "
                         "format)") from None


def parse_json(text: str, path: str, fix: str):
    """One JSON document; a syntax error names the line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); {fix}") from None


def json_type(value) -> str:
    """A JSON value's type as JSON calls it ("a string", not Python's "a str"), for messages."""
    names = {str: "a string", bool: "true/false", int: "an integer", float: "a number", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def numpy_problem(path: str, error: Exception, expected: str) -> str:
    """Why np.load(allow_pickle=False) failed, in words: numpy's own message for a file that is not numpy
    at all suggests loading it with allow_pickle=True, which must never be done with an unknown file."""
    with open(path, "rb") as f:
        head = f.read(6)
    kind = ".npz archive" if head.startswith(b"PK\x03\x04") else ".npy array" if head == b"\x93NUMPY" else None
    if kind is None:
        return "not a numpy file at all"
    if kind != expected:
        return f"a {kind}, not the {expected} expected"
    if "allow_pickle" in str(error) or "pickled" in str(error):
        return f"a {kind} of pickled Python objects, which are never loaded"
    return f"a damaged {kind}: {type(error).__name__}: {(str(error).splitlines() or [''])[0][:100]}"


def json_lines(text: str, path: str) -> Iterator[tuple[int, object]]:
    """(line number, value) of every non-blank line of JSON-lines `text`. Lines are split on '\\n' only:
    str.splitlines would also split inside a string holding U+2028, which JSON allows unescaped."""
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path} line {n} is not valid JSON ({e.msg} at column {e.colno}); one JSON object "
                             "per line") from None
