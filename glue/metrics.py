"""GLUE metrics on the 0-1 scale, computed with scikit-learn and scipy (evaluate.load needs the network)."""
from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from glue.tasks import GlueTask


def predictions_from_logits(task: GlueTask, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax) for classification, the squeezed score for regression."""
    return logits.squeeze(-1) if task.is_regression else logits.argmax(-1)


def glue_metrics(task: GlueTask, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics; `combined_score` is the mean when a task reports two."""
    if task.name == "cola":
        return {"matthews_correlation": float(matthews_corrcoef(labels, preds))}
    if task.is_regression:
        pearson = float(pearsonr(preds, labels)[0])
        spearman = float(spearmanr(preds, labels)[0])
        return {"pearson": pearson, "spearmanr": spearman, "combined_score": (pearson + spearman) / 2}
    accuracy = float(accuracy_score(labels, preds))
    if task.name in ("mrpc", "qqp"):
        f1 = float(f1_score(labels, preds, pos_label=1))
        return {"accuracy": accuracy, "f1": f1, "combined_score": (accuracy + f1) / 2}
    return {"accuracy": accuracy}
