"""Metrics and threshold tuning on cases small enough to compute by hand."""
from __future__ import annotations

import numpy as np
import pytest

from toolkit.metrics import compute_metrics, sigmoid, tune_thresholds

Y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
P = np.array([[0.9, 0.2], [0.4, 0.8], [0.6, 0.7], [0.1, 0.3]])


def test_metrics_at_half_by_hand():
    # label a: predicted [1,0,1,0] vs true [1,1,0,0] -> tp 1, fp 1, fn 1 -> P = R = F1 = 0.5
    # label b: predicted [0,1,1,0] vs true [0,1,1,0] -> perfect
    m = compute_metrics(Y, P, 0.5, ["a", "b"])
    assert m.per_label[0].f1 == pytest.approx(0.5) and m.per_label[1].f1 == pytest.approx(1.0)
    assert m.macro_f1 == pytest.approx(0.75)
    # micro: tp 3, fp 1, fn 1 -> P = R = F1 = 0.75
    assert (m.micro_precision, m.micro_recall, m.micro_f1) == pytest.approx((0.75, 0.75, 0.75))
    assert m.exact_match == pytest.approx(0.5)  # rows 0 and 3 are fully right
    # Jaccard per text: {a}/{a} 1, {b}/{a,b} 1/2, {a,b}/{b} 1/2, {}/{} 1 (nothing true, nothing predicted) -> 0.75
    assert m.jaccard_samples == pytest.approx(0.75)
    assert [x.support for x in m.per_label] == [2, 2]
    # ROC-AUC of b: positives 0.8, 0.7 above negatives 0.2, 0.3 -> 1.0; a: 3 of 4 pairs ordered -> 0.75
    assert m.roc_auc_macro == pytest.approx(0.875)


def test_per_label_thresholds_change_decisions():
    m = compute_metrics(Y, P, [0.35, 0.5], ["a", "b"])
    # label a at 0.35: predicted [1,1,1,0] -> tp 2, fp 1 -> P 2/3, R 1 -> F1 0.8
    assert m.per_label[0].f1 == pytest.approx(0.8)
    assert m.per_label[0].threshold == 0.35


def test_roc_auc_skips_single_class_labels_and_shapes_are_checked():
    y = np.array([[1, 0], [0, 0]])
    p = np.array([[0.8, 0.1], [0.3, 0.2]])
    m = compute_metrics(y, p, 0.5, ["a", "b"])
    assert m.roc_auc_micro == pytest.approx(1.0)  # only label a has both classes
    assert m.per_label[1].f1 == 0.0  # no positives, no predictions: zero_division=0
    with pytest.raises(ValueError, match="shape mismatch"):
        compute_metrics(y, p[:, :1], 0.5, ["a", "b"])


def test_tune_thresholds_maximizes_each_labels_f1():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0]])
    p = np.array([[0.30, 0.9, 0.1], [0.35, 0.2, 0.7], [0.10, 0.25, 0.2], [0.05, 0.6, 0.3], [0.32, 0.4, 0.4]])
    thr = tune_thresholds(y, p, min_positives=1)  # every label's own F1-best cut (the few-positive rule: below)
    # label 0: positives 0.30, 0.35, 0.32 sit above every negative (max 0.10): the cut lies between
    # the lowest positive and the highest negative, at their midpoint
    assert thr[0] == pytest.approx(0.20)
    # label 1: positives 0.2 and 0.25 lie below every negative; 0.25 gives P 1/4 R 1/2 (F1 .333),
    # 0.2 predicts everything: P 2/5 R 1 (F1 .571) -> that cut wins; nothing lies below 0.2, so
    # the threshold is midway to 0
    assert thr[1] == pytest.approx(0.1)
    # label 2: no positives -> keeps 0.5
    assert thr[2] == 0.5
    tuned = compute_metrics(y, p, thr, ["a", "b", "c"])
    at_half = compute_metrics(y, p, 0.5, ["a", "b", "c"])
    assert tuned.per_label[0].f1 == pytest.approx(1.0) and at_half.per_label[0].f1 == 0.0
    for a, b in zip(tuned.per_label, at_half.per_label):
        assert a.f1 >= b.f1 - 1e-12  # tuning never loses on the data it was tuned on
    assert not any(np.isin(thr[j], p[:, j]) for j in range(3))  # no text sits exactly on its threshold


def test_sigmoid_is_stable_at_extremes():
    out = sigmoid(np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0]))
    np.testing.assert_allclose(out, [0.0, 0.26894142, 0.5, 0.73105858, 1.0], atol=1e-8)
    assert np.isfinite(out).all()


# ---------------------------------------------------------------------------- threshold objective

# Label a separates perfectly; label b's single positive (0.1) sits below most of its negatives.
Y_OBJ = np.array([[1, 0], [1, 0], [1, 0], [0, 0], [0, 0], [0, 1]])
P_OBJ = np.array([[0.9, 0.4], [0.8, 0.3], [0.7, 0.2], [0.6, 0.15], [0.2, 0.05], [0.12, 0.1]])


def test_macro_objective_tunes_each_label_for_its_own_f1():
    thr = tune_thresholds(Y_OBJ, P_OBJ, objective="macro", min_positives=1)
    # a: cut at 0.7 (F1 1), midway to the next lower score 0.6; b: the only cut holding its positive
    # is 0.1 (predicts 5 texts: F1 1/3), midway to 0.05
    assert thr == pytest.approx([0.65, 0.075])
    m = compute_metrics(Y_OBJ, P_OBJ, thr, ["a", "b"])
    assert m.macro_f1 == pytest.approx((1 + 1 / 3) / 2)
    assert m.micro_f1 == pytest.approx(2 / 3)  # tp 4, fp 4: b's low threshold costs micro precision


def test_micro_objective_shares_one_threshold_and_wins_micro_f1():
    thr = tune_thresholds(Y_OBJ, P_OBJ, objective="micro")
    # pooled over both labels: >= 0.7 gives tp 3, fp 0, fn 1 (F1 6/7); >= 0.1 gives tp 4, fp 7 (8/15)
    assert thr == pytest.approx([0.65, 0.65])
    m = compute_metrics(Y_OBJ, P_OBJ, thr, ["a", "b"])
    assert m.micro_f1 == pytest.approx(6 / 7)  # > 2/3 under the macro objective
    assert m.macro_f1 == pytest.approx(0.5)  # < 2/3: b is never predicted
    with pytest.raises(ValueError, match="macro"):
        tune_thresholds(Y_OBJ, P_OBJ, objective="weighted")


# ---------------------------------------------------------------------------- cross-fitting

PREVALENCE = np.array([0.03, 0.05, 0.1, 0.2, 0.3, 0.4])


def _scores(rng, n: int, signal: float):
    """Labels with the given prevalences and scores that separate them by `signal` logits."""
    y = (rng.random((n, len(PREVALENCE))) < PREVALENCE).astype(np.int64)
    logit = signal * (2 * y - 1) + rng.normal(size=y.shape) + np.log(PREVALENCE / (1 - PREVALENCE))
    return y, 1 / (1 + np.exp(-logit))


def test_cross_fitted_f1_is_unbiased_where_in_sample_tuning_is_not():
    """Thresholds tuned on 300 validation texts, then applied to 20,000 fresh texts of the same
    distribution: that is the F1 a user gets. In-sample tuned F1 overstates it; cross-fitted does not.
    Measured over these 8 seeds: in-sample 0.697, cross-fitted 0.637, fresh 0.629 (+0.067, +0.008)."""
    from toolkit.metrics import cross_fitted_metrics

    names = list("abcdef")
    in_sample, cross_fitted, fresh = [], [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        y, p = _scores(rng, 300, signal=1.0)
        y_new, p_new = _scores(rng, 20000, signal=1.0)
        thr = tune_thresholds(y, p, min_positives=1)  # plain per-label tuning: the most optimistic in-sample
        in_sample.append(compute_metrics(y, p, thr, names).macro_f1)
        cross_fitted.append(cross_fitted_metrics(y, p, names, min_positives=1).macro_f1)
        fresh.append(compute_metrics(y_new, p_new, thr, names).macro_f1)
    bias_in_sample = np.mean(in_sample) - np.mean(fresh)
    bias_cross_fitted = np.mean(cross_fitted) - np.mean(fresh)
    assert bias_in_sample > 0.04
    assert abs(bias_cross_fitted) < 0.015


def test_cross_fitting_on_pure_noise_does_not_invent_skill():
    """Scores unrelated to the labels: tuned in-sample F1 beats the best honest rule, cross-fitted does not."""
    from toolkit.metrics import cross_fitted_metrics

    rng = np.random.default_rng(0)
    y = (rng.random((200, 1)) < 0.2).astype(np.int64)
    p = rng.random((200, 1))
    # With no signal the best one can expect is predicting everything: F1 = 2*0.2/1.2 = 0.333 (at prevalence 0.2)
    honest = 2 * y.mean() / (1 + y.mean())
    assert compute_metrics(y, p, tune_thresholds(y, p), ["a"]).macro_f1 > honest + 0.02
    assert cross_fitted_metrics(y, p, ["a"]).macro_f1 <= honest + 0.01


def test_cross_fitted_report_shape_and_limits():
    from toolkit.metrics import cross_fitted_metrics

    rng = np.random.default_rng(1)
    y, p = _scores(rng, 100, signal=2.0)
    report = cross_fitted_metrics(y, p, list("abcdef"), folds=5)
    assert report.n_samples == 100 and len(report.per_label) == 6
    assert all(0.0 < m.threshold < 1.0 for m in report.per_label)  # mean of the 5 fold thresholds
    at_half = compute_metrics(y, p, 0.5, list("abcdef"))
    assert report.roc_auc_macro == pytest.approx(at_half.roc_auc_macro)  # ranking metrics need no threshold
    with pytest.raises(ValueError, match="too few"):
        cross_fitted_metrics(y[:9], p[:9], list("abcdef"), folds=5)


# ---------------------------------------------------------------------------- thresholds need evidence


def test_jaccard_of_a_single_label_and_of_empty_rows():
    # sklearn refuses average="samples" on an (n, 1) matrix; the count here does not
    y = np.array([[1], [0], [1], [0]])
    m = compute_metrics(y, np.array([[0.9], [0.8], [0.1], [0.2]]), 0.5, ["a"])
    assert m.jaccard_samples == pytest.approx((1 + 0 + 0 + 1) / 4)


def test_few_positive_labels_get_a_bagged_threshold_and_the_rule_is_recorded():
    from toolkit.metrics import BAGGED, DEFAULT, TUNED, threshold_rules

    rng = np.random.default_rng(0)
    n = 400
    y = np.zeros((n, 3), dtype=np.int64)
    y[:80, 0] = 1  # 80 positives: enough evidence
    y[:4, 1] = 1  # 4 positives: one of them sets the lowest own cut
    p = rng.random((n, 3)) * 0.5
    p[:80, 0] += 0.4
    p[:4, 1] = [0.97, 0.95, 0.93, 0.06]  # the 4th positive sits among the negatives
    thresholds, rules = threshold_rules(y, p, min_positives=30)
    assert [r["rule"] for r in rules] == [TUNED, BAGGED, DEFAULT]
    assert [r["positives"] for r in rules] == [80, 4, 0]
    assert thresholds[0] == pytest.approx(tune_thresholds(y, p, min_positives=1)[0])  # enough evidence: unchanged
    assert thresholds[2] == 0.5
    # the bagged cut is the median over resamples: reproducible, and inside the range of the own cuts seen
    assert thresholds[1] == threshold_rules(y, p, min_positives=30)[0][1]
    assert 0.0 < thresholds[1] < 1.0 and rules[1]["own"] == pytest.approx(tune_thresholds(y, p, min_positives=1)[1])


def test_the_few_positive_rule_does_not_lose_on_fresh_data():
    """Thresholds tuned on 300 texts (the rarest label has ~9 positives), scored on 20,000 fresh
    ones: the bagged rule keeps macro-F1 (measured over 20 seeds: 0.6319 vs 0.6295 plain)."""
    names = list("abcdef")
    plain, bagged = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        y, p = _scores(rng, 300, signal=1.0)
        y_new, p_new = _scores(rng, 20000, signal=1.0)
        plain.append(compute_metrics(y_new, p_new, tune_thresholds(y, p, min_positives=1), names).macro_f1)
        bagged.append(compute_metrics(y_new, p_new, tune_thresholds(y, p), names).macro_f1)
    assert np.mean(bagged) >= np.mean(plain) - 0.003
