"""glue_metrics against direct scikit-learn/scipy computations, for every GLUE task."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from glue.metrics import glue_metrics, predictions_from_logits  # noqa: E402
from glue.tasks import GLUE_TASKS  # noqa: E402


def random_classification(task, seed, n=200):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, task.num_labels, n)
    # correlated predictions so the metrics are not all near zero
    preds = np.where(rng.random(n) < 0.7, labels, rng.integers(0, task.num_labels, n))
    return preds, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cola_matthews(seed):
    task = GLUE_TASKS["cola"]
    preds, labels = random_classification(task, seed)
    got = glue_metrics(task, preds, labels)
    assert set(got) == {"matthews_correlation"}
    assert got["matthews_correlation"] == pytest.approx(matthews_corrcoef(labels, preds), abs=1e-12)
    assert task.main_metric in got


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stsb_pearson_spearman_combined(seed):
    task = GLUE_TASKS["stsb"]
    rng = np.random.default_rng(seed)
    labels = rng.uniform(0, 5, 150)
    preds = labels + rng.normal(0, 1.0, 150)
    got = glue_metrics(task, preds, labels)
    assert set(got) == {"pearson", "spearmanr", "combined_score"}
    p, s = pearsonr(preds, labels)[0], spearmanr(preds, labels)[0]
    assert got["pearson"] == pytest.approx(p, abs=1e-12)
    assert got["spearmanr"] == pytest.approx(s, abs=1e-12)
    assert got["combined_score"] == pytest.approx((p + s) / 2, abs=1e-12)
    assert task.main_metric in got
    assert all(isinstance(v, float) for v in got.values())


@pytest.mark.parametrize("name", ["mrpc", "qqp"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mrpc_qqp_accuracy_f1_combined(name, seed):
    task = GLUE_TASKS[name]
    preds, labels = random_classification(task, seed)
    got = glue_metrics(task, preds, labels)
    assert set(got) == {"accuracy", "f1", "combined_score"}
    acc, f1 = accuracy_score(labels, preds), f1_score(labels, preds, pos_label=1)
    assert got["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert got["f1"] == pytest.approx(f1, abs=1e-12)
    assert got["combined_score"] == pytest.approx((acc + f1) / 2, abs=1e-12)
    assert task.main_metric in got


def test_f1_uses_class_1_as_positive():
    task = GLUE_TASKS["mrpc"]
    labels = np.array([1, 1, 1, 0])
    preds = np.array([1, 0, 0, 0])  # TP 1, FN 2, FP 0 -> F1 = 2/4
    assert glue_metrics(task, preds, labels)["f1"] == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["sst2", "mnli", "qnli", "rte", "wnli"])
@pytest.mark.parametrize("seed", [0, 1])
def test_accuracy_tasks(name, seed):
    task = GLUE_TASKS[name]
    preds, labels = random_classification(task, seed)
    got = glue_metrics(task, preds, labels)
    assert got == {"accuracy": pytest.approx(accuracy_score(labels, preds), abs=1e-12)}
    assert task.main_metric in got


def test_every_task_reports_its_main_metric():
    for task in GLUE_TASKS.values():
        if task.is_regression:
            preds, labels = np.array([0.0, 1.0, 2.5, 4.0]), np.array([0.5, 1.5, 2.0, 5.0])
        else:
            preds, labels = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
        assert task.main_metric in glue_metrics(task, preds, labels), task.name


def test_perfect_predictions_score_one():
    for task in GLUE_TASKS.values():
        labels = np.array([0.0, 1.2, 3.4, 5.0]) if task.is_regression else np.arange(8) % task.num_labels
        for value in glue_metrics(task, labels.copy(), labels).values():
            assert value == pytest.approx(1.0), task.name


def test_predictions_from_logits():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    assert predictions_from_logits(GLUE_TASKS["mnli"], logits).tolist() == [1, 0]
    scores = np.array([[4.2], [0.3]])
    assert predictions_from_logits(GLUE_TASKS["stsb"], scores).tolist() == [4.2, 0.3]
