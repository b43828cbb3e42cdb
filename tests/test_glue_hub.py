"""The Hub path (nyu-mll/glue) with `load_dataset` replaced by local data in the Hub's schema:
the same Examples, label ids and submission index as the TSV folders give."""
from __future__ import annotations

import datasets
import pytest

from distill.errors import UsageError
from glue.data import load_glue_hub
from glue.tasks import get_task


def fake_glue(name, config, cache_dir=None, download_mode=None):
    assert name == "nyu-mll/glue"
    if config == "mnli":
        split = lambda labels: datasets.Dataset.from_dict({  # noqa: E731
            "premise": [f"p{i}" for i in range(len(labels))], "hypothesis": [f"h{i}" for i in range(len(labels))],
            "label": labels, "idx": list(range(len(labels)))})
        return datasets.DatasetDict({"train": split([0, 1, 2]), "validation_matched": split([2, 1]),
                                     "validation_mismatched": split([0]), "test_matched": split([-1, -1]),
                                     "test_mismatched": split([-1, -1, -1])})
    if config == "ax":
        return datasets.DatasetDict({"test": datasets.Dataset.from_dict(
            {"premise": ["a"], "hypothesis": ["b"], "label": [-1], "idx": [0]})})
    raise AssertionError(config)


def test_hub_mnli_gives_matched_mismatched_and_ax(monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", fake_glue)
    data = load_glue_hub(get_task("mnli"))
    assert data.train.labels == [0, 1, 2] and data.train.text_b == ["h0", "h1", "h2"]
    assert data.eval_sets[""].labels == [2, 1] and data.eval_sets["_mm"].labels == [0]
    assert set(data.test_sets) == {"MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"}
    assert data.test_sets["MNLI-mm.tsv"].labels is None and data.test_sets["MNLI-mm.tsv"].index == ["0", "1", "2"]


def test_hub_unreachable_is_a_clear_error(monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("offline")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UsageError, match="--data_dir glue_data/<TASK>"):
        load_glue_hub(get_task("rte"))
