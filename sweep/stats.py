"""What a multi-seed sweep's numbers mean: mean ± spread over seeds, and whether a method's difference from a
baseline is beyond noise.

Two sources of noise make two runs of the same method differ, and a claim must survive both:

- the seed (the new layers' initialisation, the data order, dropout): per seed s the paired difference
  d_s = metric(method_s) − metric(baseline_s) on the whole dev set; over the S seeds both methods have,
  Δ = mean d_s, and a paired t-test (S − 1 degrees of freedom) and its t interval Δ ± t·sd(d)/√S say whether
  the seeds agree beyond their spread;
- the dev set (a few hundred examples on RTE or MRPC): a paired bootstrap over dev examples, the seeds held
  fixed: each resample draws n examples with replacement, the same for both methods and every seed, and
  recomputes Δ* = mean over seeds of [metric(method_s, drawn) − metric(baseline_s, drawn)]; its percentile
  interval and two-sided p = 2·min(P*(Δ* ≤ 0), P*(Δ* ≥ 0)).

A difference is beyond noise when both intervals exclude 0 (an intersection-union test: its p-value is the
larger of the two, and its false-positive rate is at most the smaller test's, 5 %); so at least 2 seeds are
needed to claim one. Why not one bootstrap over seeds and examples together: with 3 seeds, resampling seeds
gives an interval close to [min, max] of the three differences, so "beyond noise" would mean "all three
seeds agree in sign", which identical methods do a quarter of the time; and resampling examples alone,
pooled over seeds, ignores seed noise altogether (both measured: docs/sweeps.md).

Metrics are recomputed on every resample, vectorised over resamples: accuracy, F1 of class 1, Matthews
correlation, Pearson and Spearman (average ranks for ties), and GLUE's combined scores; each is checked
against scikit-learn / scipy on resamples (glue/metrics.py computes the runs' own scores with those).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from scipy.stats import t as t_distribution


# ---------------------------------------------------------------------------------------- seeds
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1; NaN for a single value) of the seeds' scores."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


# ---------------------------------------------------------------------------------------- metrics
# Each takes predictions and labels of shape (R, n), one row per resample, and returns (R,).
def _accuracy(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (p == y).mean(axis=1)


def _confusion(p: np.ndarray, y: np.ndarray):
    tp = ((p == 1) & (y == 1)).sum(1).astype(np.float64)
    tn = ((p != 1) & (y != 1)).sum(1).astype(np.float64)
    fp = ((p == 1) & (y != 1)).sum(1).astype(np.float64)
    fn = ((p != 1) & (y == 1)).sum(1).astype(np.float64)
    return tp, tn, fp, fn


def _f1(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    tp, _, fp, fn = _confusion(p, y)
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)  # sklearn's 0 for 0/0


def _matthews(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Binary labels (CoLA): (tp·tn − fp·fn) / √((tp+fp)(tp+fn)(tn+fp)(tn+fn)); 0 when undefined (sklearn)."""
    tp, tn, fp, fn = _confusion(p, y)
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.divide(tp * tn - fp * fn, denominator, out=np.zeros_like(tp), where=denominator > 0)


def _pearson(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = p - p.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((p * p).sum(1) * (y * y).sum(1))
    return np.divide((p * y).sum(1), denominator, out=np.full(p.shape[0], np.nan), where=denominator > 0)


def _spearman(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _pearson(rankdata(p, axis=1), rankdata(y, axis=1))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "matthews_correlation": _matthews,
    "pearson": _pearson,
    "spearmanr": _spearman,
    "combined_score/accuracy_f1": lambda p, y: (_accuracy(p, y) + _f1(p, y)) / 2,  # MRPC, QQP
    "combined_score/pearson_spearmanr": lambda p, y: (_pearson(p, y) + _spearman(p, y)) / 2,  # STS-B
}


def metric_function(name: str, regression: bool) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The vectorised metric `name` (a GLUE main metric; `combined_score` is the regression or the
    classification one as the task is)."""
    if name == "combined_score":
        name = "combined_score/pearson_spearmanr" if regression else "combined_score/accuracy_f1"
    if name not in METRICS:
        raise ValueError(f"no resampled version of the metric {name!r}; known: {', '.join(sorted(METRICS))}")
    return METRICS[name]


# ---------------------------------------------------------------------------------------- comparison
TIE = 1e-12  # |Δ*| below this is a tie (a difference of equal metrics can round to ±1e-17)


@dataclass(frozen=True)
class Comparison:
    """A method against the baseline on one task (metric on its own scale); NaN where undefined."""
    delta: float  # mean over the paired seeds of metric(method) − metric(baseline)
    seed_low: float  # the t interval over seeds (NaN with one seed)
    seed_high: float
    seed_p: float  # the paired t-test over seeds (NaN with one seed)
    example_low: float  # the percentile interval of the bootstrap over dev examples
    example_high: float
    example_p: float
    seeds: int
    examples: int

    @property
    def p_value(self) -> float:
        """Of the claim "beyond noise": the larger of the two tests' (NaN with one seed)."""
        return max(self.seed_p, self.example_p) if self.seeds > 1 else math.nan

    @property
    def beyond_noise(self) -> bool:
        excludes = lambda low, high: bool(low > 0 or high < 0)  # noqa: E731  (False for NaN)
        return (self.seeds > 1 and excludes(self.seed_low, self.seed_high)
                and excludes(self.example_low, self.example_high))


def seed_test(differences: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(low, high, p) of the paired t-test over seeds: mean ± t_(S−1)·sd/√S; NaN with one seed. Equal
    differences (sd 0) give the point as interval and p 0 (or 1 when they are all 0)."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return math.nan, math.nan, math.nan
    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(d.size)
    if se == 0.0:
        return mean, mean, 1.0 if abs(mean) < TIE else 0.0
    half = float(t_distribution.ppf(0.5 + confidence / 2, d.size - 1)) * se
    p = float(2 * t_distribution.sf(abs(mean) / se, d.size - 1))
    return mean - half, mean + half, p


def paired_bootstrap(metric: Callable[[np.ndarray, np.ndarray], np.ndarray], method: Sequence[np.ndarray],
                     baseline: Sequence[np.ndarray], labels: np.ndarray, *, resamples: int = 10_000,
                     confidence: float = 0.95, seed: int = 0, block: int = 500) -> Comparison:
    """The comparison of the module docstring. `method`, `baseline`: per seed (paired by position: the same
    seed in both lists), the predictions on the dev set (n,); `labels` (n,). Deterministic for a given
    `seed` (of the bootstrap)."""
    if len(method) != len(baseline) or not method:
        raise ValueError(f"the method and the baseline need the same seeds, at least one ({len(method)} vs "
                         f"{len(baseline)})")
    a, b = np.stack(method), np.stack(baseline)  # (S, n) each
    labels = np.asarray(labels)
    if a.shape != b.shape or a.shape[1] != labels.shape[0]:
        raise ValueError(f"predictions {a.shape} / {b.shape} do not match {labels.shape[0]} dev labels")
    n_seeds, n = a.shape
    per_seed = [float(metric(a[s][None], labels[None])[0] - metric(b[s][None], labels[None])[0])
                for s in range(n_seeds)]
    seed_low, seed_high, seed_p = seed_test(per_seed, confidence)
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for start in range(0, resamples, block):  # (block, n) index arrays at a time: bounded memory
        r = min(block, resamples - start)
        idx = rng.integers(0, n, size=(r, n))  # (r, n) the drawn examples, shared by both methods and all seeds
        y = labels[idx]  # (r, n)
        deltas[start:start + r] = np.mean([metric(a[s][idx], y) - metric(b[s][idx], y) for s in range(n_seeds)],
                                          axis=0)  # (r,)
    if np.isnan(deltas).any():  # (a correlation of constant predictions: undefined on some resamples)
        low = high = p = math.nan
    else:
        alpha = (1.0 - confidence) / 2
        low, high = (float(x) for x in np.quantile(deltas, [alpha, 1.0 - alpha]))
        p = min(1.0, 2 * min(float(np.mean(deltas <= TIE)), float(np.mean(deltas >= -TIE))))
    return Comparison(float(np.mean(per_seed)), seed_low, seed_high, seed_p, low, high, p, n_seeds, n)
