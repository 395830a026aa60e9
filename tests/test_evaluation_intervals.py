"""What a test metric is read against: the majority baseline and 95 % intervals that resample
whole groups (participants, recordings), or samples when the test part has too few groups."""

from __future__ import annotations

import numpy as np

from ephys.pipelines.core.evaluation import baseline_and_intervals


def _proba(pred: np.ndarray, k: int = 2) -> np.ndarray:
    return np.eye(k)[pred] * 0.8 + 0.1


def test_majority_from_the_training_part_and_group_intervals():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    pred = np.where(rng.random(100) < 0.8, y, 1 - y)
    groups = [f"g{i // 10}" for i in range(100)]  # 10 groups of 10
    m = baseline_and_intervals(y, _proba(pred), ["a", "b"], None, y_train=np.array([1, 1, 1, 0]), groups=groups)
    assert m["majority_baseline_accuracy"] == 0.5  # class 1 (the training majority) is half the test part
    lo, hi = m["accuracy_ci95"]
    acc = float(np.mean(pred == y))
    assert lo < acc < hi and hi - lo > 0.05 and "10 groups" in m["ci_resamples"]


def test_few_groups_resample_samples_and_say_so():
    y = np.array([0, 1] * 17)
    m = baseline_and_intervals(y, _proba(y), ["a", "b"], None, y_train=np.array([], dtype=np.int64),
                               groups=["one recording"] * 34)
    lo, hi = m["accuracy_ci95"]
    assert hi == 1.0 and 0.85 < lo < 0.92  # Wilson's interval for 34 of 34, not a degenerate [1, 1]
    assert "too few to resample" in m["ci_resamples"]
