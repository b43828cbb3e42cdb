"""sweep/stats.py against reference computations: numpy / scipy for the seeds' mean and spread, scikit-learn and
scipy for every resampled metric, scipy.stats.bootstrap for the one-seed paired bootstrap, and the normal
approximation of a mean difference for its p-value."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from sweep.stats import mean_std, metric_function, paired_bootstrap


def test_mean_and_sample_standard_deviation():
    values = [0.71, 0.68, 0.74]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values), abs=1e-15)
    assert std == pytest.approx(scipy_stats.tstd(values), abs=1e-15)  # n − 1
    assert math.isnan(mean_std([0.5])[1]) and mean_std([0.5])[0] == 0.5


REFERENCES = {
    "accuracy": lambda p, y: accuracy_score(y, p),
    "f1": lambda p, y: f1_score(y, p, pos_label=1, zero_division=0),
    "matthews_correlation": lambda p, y: matthews_corrcoef(y, p),
    "pearson": lambda p, y: scipy_stats.pearsonr(p, y)[0],
    "spearmanr": lambda p, y: scipy_stats.spearmanr(p, y)[0],
}


@pytest.mark.parametrize("name,regression", [("accuracy", False), ("f1", False), ("matthews_correlation", False),
                                             ("pearson", True), ("spearmanr", True), ("combined_score", False),
                                             ("combined_score", True)])
def test_each_resampled_metric_equals_scikit_learn_and_scipy(name, regression):
    """On 40 resamples of a dev set (with the repeats a resample has, and ties in the regression scores)."""
    rng = np.random.default_rng(1)
    n = 60
    if regression:
        labels = rng.integers(0, 11, n) / 2.0  # STS-B-like scores with ties
        preds = np.round(labels + rng.normal(0, 1.0, n), 1)
    else:
        labels = rng.integers(0, 2, n)
        preds = np.where(rng.random(n) < 0.7, labels, 1 - labels)
    idx = rng.integers(0, n, size=(40, n))
    got = metric_function(name, regression)(preds[idx], labels[idx])
    if name == "combined_score":
        parts = ("pearson", "spearmanr") if regression else ("accuracy", "f1")
        reference = lambda p, y: sum(REFERENCES[k](p, y) for k in parts) / 2  # noqa: E731
    else:
        reference = REFERENCES[name]
    expected = [reference(preds[i], labels[i]) for i in idx]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_undefined_correlations_follow_scikit_learn():
    """All predictions one class: F1 and MCC are 0 (scikit-learn's convention), not NaN."""
    p, y = np.zeros((1, 6), dtype=int), np.array([[0, 1, 0, 1, 1, 0]])
    assert metric_function("f1", False)(p, y)[0] == 0.0 == f1_score(y[0], p[0], zero_division=0)
    assert metric_function("matthews_correlation", False)(p, y)[0] == 0.0 == matthews_corrcoef(y[0], p[0])


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="known:"):
        metric_function("bleu", False)


def one_seed_case(n=400, seed=2):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    method = np.where(rng.random(n) < 0.78, labels, 1 - labels)
    baseline = np.where(rng.random(n) < 0.72, labels, 1 - labels)
    return method, baseline, labels


def test_one_seed_is_the_paired_bootstrap_of_scipy():
    """With one seed the examples part is the ordinary paired bootstrap: its percentile interval of Δ accuracy
    must match scipy.stats.bootstrap(paired=True, method='percentile') on the per-example correctness. Both are
    Monte Carlo estimates with 20,000 resamples: the standard error of a 2.5 % quantile of a distribution with
    σ ≈ 0.03 is about σ·√(0.025·0.975/20000)/φ(1.96) ≈ 0.0006; allow 0.003. One seed claims nothing."""
    method, baseline, labels = one_seed_case()
    ours = paired_bootstrap(metric_function("accuracy", False), [method], [baseline], labels, resamples=20_000,
                            seed=0)
    a, b = (method == labels).astype(float), (baseline == labels).astype(float)
    ref = scipy_stats.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), paired=True,
                                method="percentile", n_resamples=20_000, confidence_level=0.95,
                                random_state=np.random.default_rng(5))
    assert ours.delta == pytest.approx(a.mean() - b.mean(), abs=1e-15)
    assert ours.example_low == pytest.approx(ref.confidence_interval.low, abs=3e-3)
    assert ours.example_high == pytest.approx(ref.confidence_interval.high, abs=3e-3)
    # the p-value against the normal approximation of a mean of n paired differences (n = 400: CLT holds
    # to about 0.01 at these tail probabilities; Monte Carlo error ~0.002)
    d = a - b
    z = d.mean() / (d.std(ddof=0) / math.sqrt(len(d)))
    assert ours.example_p == pytest.approx(2 * scipy_stats.norm.sf(abs(z)), abs=0.015)
    assert not ours.beyond_noise and math.isnan(ours.p_value)  # (one seed claims nothing)


def test_the_seed_part_is_scipys_paired_t_test_and_both_parts_must_agree():
    """Three seeds: Δ is the mean of the seeds' differences; the seed interval and p are scipy's one-sample t
    test on them; beyond noise needs both intervals to exclude 0, and p is the larger of the two p-values.
    A fixed bootstrap seed gives the same answer twice; identical methods give Δ = 0 and p = 1."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    runs = lambda acc: [np.where(rng.random(300) < a, labels, 1 - labels) for a in acc]  # noqa: E731
    method, baseline = runs([0.80, 0.79, 0.82]), runs([0.74, 0.75, 0.73])
    acc = metric_function("accuracy", False)
    result = paired_bootstrap(acc, method, baseline, labels, resamples=4000, seed=1)
    d = [acc(m[None], labels[None])[0] - acc(b[None], labels[None])[0] for m, b in zip(method, baseline)]
    ref = scipy_stats.ttest_1samp(d, 0.0)
    interval = ref.confidence_interval(0.95)
    assert result.delta == pytest.approx(np.mean(d), abs=1e-15) and result.seeds == 3 and result.examples == 300
    assert result.seed_p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (result.seed_low, result.seed_high) == pytest.approx((interval.low, interval.high), rel=1e-10)
    assert result.beyond_noise and result.p_value == max(result.seed_p, result.example_p)
    assert result == paired_bootstrap(acc, method, baseline, labels, resamples=4000, seed=1)
    # seeds that disagree in sign: the dev-set part alone may exclude 0, the claim does not follow
    mixed = paired_bootstrap(acc, runs([0.85, 0.70, 0.86]), runs([0.74, 0.80, 0.75]), labels, resamples=2000)
    assert mixed.seed_low < 0 < mixed.seed_high and not mixed.beyond_noise
    same = paired_bootstrap(acc, method, method, labels, resamples=500)
    assert (same.delta, same.example_low, same.example_high, same.example_p, same.seed_p) == (0.0, 0.0, 0.0, 1.0, 1.0)
    assert not same.beyond_noise


def test_identical_methods_are_called_different_at_most_5_percent_of_the_time():
    """Two methods with the same distribution, 3 seeds, where the seed moves a run's accuracy by several points
    (the case that breaks a bootstrap over 3 seeds, "beyond noise" whenever the 3 seeds agree in sign: 25 %) and
    where the dev set dominates. 400 simulated comparisons each: the false-positive rate must stay within 5 %
    plus 3 binomial standard errors (√(0.05·0.95/400) = 0.011)."""
    acc = metric_function("accuracy", False)
    rng = np.random.default_rng(11)
    n = 150
    for seed_std in (0.6, 0.05):  # seed shift, in the units of the per-example noise (1.0)
        false_positives = 0
        for _ in range(400):
            labels = rng.integers(0, 2, n)
            difficulty = rng.normal(0.8, 1.0, n)
            run = lambda: np.where(difficulty + rng.normal(0, seed_std) + rng.normal(0, 1.0, n) > 0,  # noqa: E731
                                   labels, 1 - labels)
            result = paired_bootstrap(acc, [run() for _ in range(3)], [run() for _ in range(3)], labels,
                                      resamples=300, seed=int(rng.integers(1 << 30)))
            false_positives += result.beyond_noise
        assert false_positives / 400 <= 0.05 + 3 * 0.011, (seed_std, false_positives)


def test_undefined_comparisons_are_nan_not_a_claim():
    """Constant regression predictions make Pearson undefined on every resample: NaN interval and p, no claim."""
    labels = np.linspace(0, 5, 40)
    flat = [np.full(40, 2.5), np.full(40, 2.5)]
    result = paired_bootstrap(metric_function("pearson", True), flat, [labels + 0.1, labels - 0.1], labels,
                              resamples=200)
    assert math.isnan(result.example_low) and math.isnan(result.example_p) and not result.beyond_noise


def test_mismatched_inputs_are_refused():
    method, baseline, labels = one_seed_case(n=10)
    acc = metric_function("accuracy", False)
    with pytest.raises(ValueError, match="same seeds"):
        paired_bootstrap(acc, [method, method], [baseline], labels)
    with pytest.raises(ValueError, match="dev labels"):
        paired_bootstrap(acc, [method], [baseline], labels[:5])
