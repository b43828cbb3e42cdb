"""scripts/make_glue_submission.py: one flat zip of the eleven GLUE server files, checked first."""
from __future__ import annotations

import importlib.util
import os
import zipfile

import pytest
from conftest import REPO_ROOT

from glue.submission import SUBMISSION_HEADER, expected_submission_files, format_predictions


def load_script():
    spec = importlib.util.spec_from_file_location(
        "make_glue_submission", os.path.join(REPO_ROOT, "scripts", "make_glue_submission.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script()
SMALL = {name: 3 for name in expected_submission_files()}  # tiny expected counts keep the test small
OVERRIDES = [x for name, n in SMALL.items() for x in ("--expected_rows", f"{name}={n}")]


def write_prediction(d, name, rows=3, bad_header=False):
    task, _ = expected_submission_files()[name]
    preds = format_predictions(task, [0] * rows if not task.is_regression else [2.5] * rows)
    header = "id\tlabel" if bad_header else SUBMISSION_HEADER
    (d / name).write_text("\n".join([header] + [f"{i}\t{p}" for i, p in enumerate(preds)]) + "\n")


def all_files(d):
    d.mkdir(exist_ok=True)
    for name in SMALL:
        write_prediction(d, name)
    return d


def test_expected_files_are_the_eleven_server_files():
    files = expected_submission_files()
    assert len(files) == 11
    assert files["QQP.tsv"][1] == 390965 and files["AX.tsv"][1] == 1104 and files["MNLI-mm.tsv"][1] == 9847
    assert files["AX.tsv"][0].name == "mnli"


def test_happy_path_writes_one_flat_zip(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    all_files(a)
    b.mkdir()
    os.replace(a / "RTE.tsv", b / "RTE.tsv")  # files may come from several prediction dirs
    out = tmp_path / "sub" / "submission.zip"
    assert script.main([str(a), "--pred_dirs", str(b), "--output", str(out), *OVERRIDES]) == 0
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert sorted(names) == sorted(SMALL) and all("/" not in n for n in names)
        assert zf.read("RTE.tsv").decode().splitlines()[1] == "0\tentailment"


def test_missing_file_is_refused_and_an_old_zip_is_kept(tmp_path, capsys):
    d = all_files(tmp_path / "p")
    (d / "CoLA.tsv").unlink()
    out = tmp_path / "submission.zip"
    out.write_bytes(b"old")
    assert script.main([str(d), "--output", str(out), *OVERRIDES]) == 2
    err = capsys.readouterr().err
    assert "missing CoLA.tsv" in err and "--fill_missing" in err
    assert out.read_bytes() == b"old"


@pytest.mark.parametrize("problem", ["rows", "header", "value"])
def test_bad_files_are_refused_with_the_file_named(tmp_path, capsys, problem):
    d = all_files(tmp_path / "p")
    if problem == "rows":
        write_prediction(d, "SST-2.tsv", rows=2)
    elif problem == "header":
        write_prediction(d, "SST-2.tsv", bad_header=True)
    else:
        (d / "MNLI-m.tsv").write_text(f"{SUBMISSION_HEADER}\n0\t1\n1\tneutral\n2\tneutral\n")
    assert script.main([str(d), "--output", str(tmp_path / "s.zip"), *OVERRIDES]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and ("SST-2.tsv" in err or "MNLI-m.tsv" in err)
    assert not (tmp_path / "s.zip").exists()


def test_duplicate_sources_are_refused(tmp_path, capsys):
    a, b = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    assert script.main([str(a), str(b), "--output", str(tmp_path / "s.zip"), *OVERRIDES]) == 2
    assert "in both" in capsys.readouterr().err


def test_fill_missing_writes_placeholders_with_a_warning(tmp_path, capsys):
    d = tmp_path / "p"
    d.mkdir()
    write_prediction(d, "RTE.tsv")
    out = tmp_path / "s.zip"
    assert script.main([str(d), "--output", str(out), "--fill_missing", *OVERRIDES]) == 0
    err = capsys.readouterr().err
    assert "warning: CoLA.tsv is a placeholder" in err and "RTE.tsv" not in err
    with zipfile.ZipFile(out) as zf:
        assert len(zf.namelist()) == 11
        assert zf.read("STS-B.tsv").decode().splitlines() == [SUBMISSION_HEADER, "0\t0.000", "1\t0.000", "2\t0.000"]
        assert zf.read("AX.tsv").decode().splitlines()[1] == "0\tentailment"
        assert zf.read("QQP.tsv").decode().splitlines()[1] == "0\t0"
