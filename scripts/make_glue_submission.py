#!/usr/bin/env python
"""Pack the eleven GLUE test-server files into one flat zip.

    python scripts/make_glue_submission.py out/cola out/sst2 ... out/mnli --output submission.zip

Each prediction dir is an `--output_dir` of `run_glue.py --do_predict`, which writes `CoLA.tsv`,
`MNLI-m.tsv`, `MNLI-mm.tsv`, `AX.tsv`, ... Every file is checked (header `index<TAB>prediction`, one
row per test example, predictions the server accepts) before anything is written; a missing file is
an error unless `--fill_missing` puts a placeholder in its place (all rows one constant label, so that
task scores near chance on the leaderboard). The zip is written atomically.
"""
from __future__ import annotations

import argparse
import os
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from distill.errors import UsageError  # noqa: E402
from distill.io_utils import atomic_path  # noqa: E402
from glue.submission import SUBMISSION_HEADER, expected_submission_files, format_predictions  # noqa: E402
from glue.tasks import GlueTask  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", metavar="PRED_DIR", help="dirs holding the <Task>.tsv files")
    parser.add_argument("--pred_dirs", nargs="+", default=[], metavar="PRED_DIR", help="same as the positional dirs")
    parser.add_argument("--output", default="submission.zip", help="zip to write (default: submission.zip)")
    parser.add_argument("--fill_missing", action="store_true",
                        help="write a constant placeholder for each missing file instead of refusing")
    parser.add_argument("--expected_rows", action="append", default=[], metavar="FILE=N",
                        help="override the expected row count of one file (e.g. CoLA.tsv=5; for tests)")
    return parser.parse_args(argv)


def expected_rows(overrides: list[str]) -> dict[str, tuple[GlueTask, int]]:
    files = expected_submission_files()
    for item in overrides:
        name, _, rows = item.partition("=")
        name = name if name.endswith(".tsv") else name + ".tsv"
        if name not in files or not rows.isdigit():
            raise UsageError(f"--expected_rows {item!r}: write FILE=N with FILE one of {', '.join(files)}")
        files[name] = (files[name][0], int(rows))
    return files


def find_files(dirs: list[str], names) -> dict[str, str]:
    """file name -> path, refusing a file that two prediction dirs both provide."""
    found: dict[str, str] = {}
    for d in dirs:
        if not os.path.isdir(d):
            raise UsageError(f"prediction dir {d} is not a folder; pass the --output_dir of run_glue.py --do_predict")
        for name in names:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                if name in found:
                    raise UsageError(f"{name} is in both {found[name]} and {path}; pass only the dir "
                                     "whose predictions you want to submit")
                found[name] = path
    return found


def check_file(path: str, task: GlueTask, rows: int) -> None:
    """Header, row count and prediction values as the GLUE server expects them."""
    with open(path, encoding="utf-8", newline=None) as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != SUBMISSION_HEADER:
        got = lines[0] if lines else ""
        raise UsageError(f"{path}: header is {got!r}, expected 'index\\tprediction'; write the file with "
                         "run_glue.py --do_predict")
    if len(lines) - 1 != rows:
        raise UsageError(f"{path}: {len(lines) - 1} prediction rows, the GLUE server expects {rows} (one per "
                         "test example); rerun run_glue.py --do_predict on the full test file, without "
                         "--max_predict_samples")
    allowed = set(format_predictions(task, range(task.num_labels))) if not task.is_regression else None
    for line_no, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        ok = len(fields) == 2 and fields[0] != ""
        if ok and allowed is not None:
            ok = fields[1] in allowed
        elif ok:
            try:
                ok = 0.0 <= float(fields[1]) <= 5.0
            except ValueError:
                ok = False
        if not ok:
            want = f"one of {', '.join(sorted(allowed))}" if allowed else "a score in [0, 5]"
            raise UsageError(f"{path}:{line_no}: bad row {line!r}; each row is index<TAB>prediction with the "
                             f"prediction {want}; rewrite the file with run_glue.py --do_predict")


def placeholder(task: GlueTask, rows: int) -> str:
    """index 0..rows-1 and the task's first label (0, `entailment`, 0.000) on every row."""
    preds = format_predictions(task, [0] * rows)
    return "\n".join([SUBMISSION_HEADER] + [f"{i}\t{p}" for i, p in enumerate(preds)]) + "\n"


def write_zip_atomic(output: str, members: dict[str, str | bytes]) -> None:
    """A flat zip (names without folders), written to a temp file and renamed into place."""
    with atomic_path(output) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)


def make_submission(args: argparse.Namespace) -> list[str]:
    """Check every file, then write the zip; returns the names that got placeholders."""
    dirs = list(dict.fromkeys(os.path.realpath(d) for d in args.dirs + args.pred_dirs))
    if not dirs:
        raise UsageError("no prediction dirs; pass the --output_dir of each run_glue.py --do_predict run")
    files = expected_rows(args.expected_rows)
    found = find_files(dirs, files)
    missing = [name for name in files if name not in found]
    if missing and not args.fill_missing:
        raise UsageError(f"missing {', '.join(missing)} in {', '.join(dirs)}; run run_glue.py --do_predict for "
                         "those tasks and pass its --output_dir, or pass --fill_missing for placeholders")
    members: dict[str, str | bytes] = {}
    for name, (task, rows) in files.items():
        if name in found:
            check_file(found[name], task, rows)
            with open(found[name], "rb") as f:
                members[name] = f.read()
        else:
            members[name] = placeholder(task, rows)
    write_zip_atomic(args.output, members)
    return missing


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        placeholders = make_submission(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name in placeholders:
        print(f"warning: {name} is a placeholder (every row one label); that task will score near chance",
              file=sys.stderr)
    print(f"wrote {args.output}: {len(expected_submission_files())} files, {len(placeholders)} placeholders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
