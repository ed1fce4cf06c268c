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
    thr = tune_thresholds(y, p)
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
