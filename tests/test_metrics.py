"""Evaluation metrics against values worked out by hand (arithmetic in comments)."""

import fractions
import itertools

import numpy as np
import pytest
import tensorflow as tf

from dfka_tf.errors import ConfigError
from dfka_tf.eval.evaluate import evaluate
from dfka_tf.eval import metrics

F = fractions.Fraction

# The 5-sample example most AP tests share (already in descending score order).
S5 = [0.9, 0.8, 0.7, 0.6, 0.5]
Y5 = [1, 0, 1, 0, 1]


# ----------------------------------------------------------------------------- references
# Written from the definitions, sharing no code with dfka_tf.eval.metrics.


def brute_force_area_ap(scores, labels):
  """Σ_j (R_j - R_{j-1}) max{P(t) : R(t) >= R_j} over distinct thresholds, by counting."""
  scores = [float(s) for s in scores]
  labels = [int(y) for y in labels]
  npos = sum(labels)
  points = []
  for t in sorted(set(scores), reverse=True):
    kept = [y for s, y in zip(scores, labels) if s >= t]
    points.append((F(sum(kept), npos), F(sum(kept), len(kept))))
  ap, prev_r = F(0), F(0)
  for r, _ in points:
    ap += (r - prev_r) * max(p for r2, p in points if r2 >= r)
    prev_r = r
  return ap


def devkit_voc07_ap(scores, labels):
  """VOCevalcls.m line by line, with exact fractions and exact thresholds k/10."""
  order = sorted(range(len(scores)), key=lambda i: -scores[i])  # Python's sort is stable.
  gt = [labels[i] for i in order]
  npos = sum(gt)
  tp = list(itertools.accumulate(gt))
  fp = list(itertools.accumulate(1 - g for g in gt))
  rec = [F(a, npos) for a in tp]
  prec = [F(a, a + b) for a, b in zip(tp, fp)]
  return sum(max([p for r, p in zip(rec, prec) if r >= F(k, 10)], default=F(0))
             for k in range(11)) / 11


def devkit_vocap(scores, labels):
  """VOCap.m (VOC2010+) on the devkit's ranking, every position a point."""
  order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
  gt = np.asarray(labels)[order]
  tp, fp = np.cumsum(gt), np.cumsum(1 - gt)
  mrec = np.concatenate([[0.0], tp / gt.sum(), [1.0]])
  mpre = np.concatenate([[0.0], tp / (tp + fp), [0.0]])
  for i in range(len(mpre) - 2, -1, -1):
    mpre[i] = max(mpre[i], mpre[i + 1])
  i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
  return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


# ----------------------------------------------------------------------------- AP, one label


@pytest.mark.parametrize("fn", [metrics.area_ap, metrics.voc07_ap])
def test_perfect_ranking_is_one(fn):
  # Every positive above every negative: precision 1 at every recall.
  assert fn([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0]) == 1.0


def test_area_ap_worked_example():
  # Ranking 1 0 1 0 1, npos = 3.
  # tp = 1 1 2 2 3, fp = 0 1 1 2 2; precision = 1, 1/2, 2/3, 1/2, 3/5;
  # recall = 1/3, 1/3, 2/3, 2/3, 1.
  # Envelope from the right: 1, 2/3, 2/3, 3/5, 3/5.
  # Recall steps of 1/3 at positions 1, 3, 5: 1/3 * (1 + 2/3 + 3/5) = 1/3 + 2/9 + 1/5 = 34/45.
  assert metrics.area_ap(S5, Y5) == pytest.approx(34 / 45, abs=1e-12)


def test_voc07_ap_worked_example():
  # Same ranking. max precision at recall >= t:
  #   t = 0, .1, .2, .3 (recall 1/3 >= t everywhere): 1            -> 4 points of 1
  #   t = .4, .5, .6 (recall 2/3 or 1): max(2/3, 1/2, 3/5) = 2/3    -> 3 points of 2/3
  #   t = .7, .8, .9, 1 (recall 1 only): 3/5                        -> 4 points of 3/5
  # (4 + 2 + 12/5) / 11 = (42/5) / 11 = 42/55.
  assert metrics.voc07_ap(S5, Y5) == pytest.approx(42 / 55, abs=1e-12)


def test_ignore_drops_an_entry():
  # Ignoring the negative at 0.8 leaves ranking 1 1 0 1 (npos = 3):
  # precision = 1, 1, 2/3, 3/4; recall = 1/3, 2/3, 2/3, 1.
  # area: envelope 1, 1, 3/4, 3/4 -> 1/3 + 1/3 + 1/3 * 3/4 = 11/12.
  # voc07: t = 0 .. .6 (7 points) reach recall 2/3 with precision 1; t = .7 .. 1 (4 points)
  # only recall 1 with 3/4 -> (7 + 3) / 11 = 10/11.
  ignore = [0, 1, 0, 0, 0]
  assert metrics.area_ap(S5, Y5, ignore) == pytest.approx(11 / 12, abs=1e-12)
  assert metrics.voc07_ap(S5, Y5, ignore) == pytest.approx(10 / 11, abs=1e-12)
  # An all-zero mask ignores nothing: the unignored 34/45 and 42/55 of the worked examples.
  assert metrics.area_ap(S5, Y5, [0] * 5) == pytest.approx(34 / 45, abs=1e-12)
  assert metrics.voc07_ap(S5, Y5, [0] * 5) == pytest.approx(42 / 55, abs=1e-12)


def test_ignore_drops_a_positive():
  # Ignoring the positive at 0.5 leaves ranking 1 0 1 0, npos = 2:
  # precision 1, 1/2, 2/3, 1/2; recall 1/2, 1/2, 1, 1.
  # area: 1/2 * 1 + 1/2 * 2/3 = 5/6. voc07: t <= .5 (6 points): 1; t >= .6 (5): 2/3
  # -> (6 + 10/3) / 11 = 28/33.
  ignore = [0, 0, 0, 0, 1]
  assert metrics.area_ap(S5, Y5, ignore) == pytest.approx(5 / 6, abs=1e-12)
  assert metrics.voc07_ap(S5, Y5, ignore) == pytest.approx(28 / 33, abs=1e-12)


# Three entries tied at 0.5, holding one positive and two negatives.
S_TIE = [0.9, 0.5, 0.5, 0.5, 0.1]


def test_area_ap_treats_a_tie_as_one_threshold():
  # Thresholds .9: tp 1 fp 0 (P 1, R 1/3); .5: tp 2 fp 2 (P 1/2, R 2/3); .1: tp 3 fp 2
  # (P 3/5, R 1). Envelope 1, 3/5, 3/5 -> 1/3 + 1/3 * 3/5 + 1/3 * 3/5 = 11/15,
  # whatever the order inside the tie.
  for tied in ([1, 0, 0], [0, 1, 0], [0, 0, 1]):
    assert metrics.area_ap(S_TIE, [1, *tied, 1]) == pytest.approx(11 / 15, abs=1e-12)


def test_voc07_ap_keeps_ties_in_input_order():
  # Devkit: stable sort, so the tie is ranked as given.
  # Positive first (1 1 0 0 1): precision 1, 1, 2/3, 1/2, 3/5; recall 1/3, 2/3, 2/3, 2/3, 1.
  #   t <= .6 (7 points) reach precision 1 at recall 2/3; t >= .7 (4): 3/5
  #   -> (7 + 12/5) / 11 = 47/55.
  # Positive last (1 0 0 1 1): precision 1, 1/2, 1/3, 1/2, 3/5; recall 1/3, 1/3, 1/3, 2/3, 1.
  #   t <= .3 (4 points): 1; t >= .4 (7): max(1/2, 3/5) = 3/5 -> (4 + 21/5) / 11 = 41/55.
  assert metrics.voc07_ap(S_TIE, [1, 1, 0, 0, 1]) == pytest.approx(47 / 55, abs=1e-12)
  assert metrics.voc07_ap(S_TIE, [1, 0, 0, 1, 1]) == pytest.approx(41 / 55, abs=1e-12)


def test_voc07_ap_recall_threshold_is_exact():
  # 10 positives: 3 on top, then 7 negatives, then 7 positives.
  # Recall 3/10 is reached with precision 1, so t = 0, .1, .2, .3 give 1. For t >= .4,
  # precision with k positives is k / (k + 7), largest at k = 10: 10/17.
  # (4 + 7 * 10/17) / 11 = 138/187. (The devkit's floating t = 0.30000000000000004 would
  # miss recall 0.3 and give (3 + 8 * 10/17) / 11 = 131/187.)
  labels = [1] * 3 + [0] * 7 + [1] * 7
  scores = -np.arange(len(labels), dtype=np.float64)
  assert metrics.voc07_ap(scores, labels) == pytest.approx(138 / 187, abs=1e-12)


def test_no_positive_is_nan():
  assert np.isnan(metrics.area_ap([0.3, 0.2], [0, 0]))
  assert np.isnan(metrics.voc07_ap([0.3, 0.2], [0, 0]))
  # The only positive ignored (VOC: the class appears only as difficult).
  assert np.isnan(metrics.area_ap([0.3, 0.2], [1, 0], ignore=[1, 0]))


def test_all_negatives_above_the_positives():
  # Ranking 0 0 1: precision 1/3 at recall 1 -> area 1/3, voc07 11 * (1/3) / 11.
  assert metrics.area_ap([3.0, 2.0, 1.0], [0, 0, 1]) == pytest.approx(1 / 3)
  assert metrics.voc07_ap([3.0, 2.0, 1.0], [0, 0, 1]) == pytest.approx(1 / 3)


def test_infinite_scores_are_ranked():
  # -inf is the devkit's score of an image the model gave nothing: ranked last.
  assert metrics.area_ap([-np.inf, 0.5, np.inf], [0, 1, 1]) == 1.0


@pytest.mark.parametrize("bad", [
    dict(scores=[0.1, np.nan], labels=[1, 0]),
    dict(scores=[0.1, 0.2], labels=[1, -1]),
    dict(scores=[0.1, 0.2], labels=[1, 0, 0]),
    dict(scores=[0.1, 0.2], labels=[1, 0], ignore=[0]),
])
def test_bad_inputs_raise(bad):
  with pytest.raises(ValueError):
    metrics.area_ap(**bad)


def test_area_ap_matches_brute_force_on_random_data():
  rng = np.random.default_rng(0)
  for case in range(50):
    n = int(rng.integers(2, 30))
    labels = rng.integers(0, 2, n)
    labels[rng.integers(n)] = 1  # At least one positive.
    # Half the cases draw from 4 values, so ties are common.
    scores = (rng.integers(0, 4, n).astype(np.float64) if case % 2
              else rng.random(n))
    expected = float(brute_force_area_ap(scores, labels))
    assert metrics.area_ap(scores, labels) == pytest.approx(expected, abs=1e-12), case
    if case % 2 == 0:  # No ties: the VOC2010+ devkit gives the same.
      assert metrics.area_ap(scores, labels) == pytest.approx(devkit_vocap(scores, labels))


def test_voc07_ap_matches_devkit_on_random_data_with_ties():
  rng = np.random.default_rng(1)
  for case in range(50):
    n = int(rng.integers(2, 30))
    labels = rng.integers(0, 2, n)
    labels[rng.integers(n)] = 1
    scores = rng.integers(0, 4, n).astype(np.float64)
    expected = float(devkit_voc07_ap(list(scores), list(labels)))
    assert metrics.voc07_ap(scores, labels) == pytest.approx(expected, abs=1e-12), case


# ----------------------------------------------------------------------------- mAP


def test_per_label_and_mean_skip_labels_without_positives():
  # Column 0: the 5-sample example (area 34/45, voc07 42/55). Column 1: perfect (1, 1).
  # Column 2: no positives -> NaN, left out of the mean.
  scores = np.stack([S5, [0.1, 0.2, 0.3, 0.4, 0.5], S5], axis=1)
  labels = np.stack([Y5, [0, 0, 0, 1, 1], [0] * 5], axis=1)
  ap = metrics.average_precision_per_label(scores, labels)
  assert ap[:2] == pytest.approx([34 / 45, 1.0]) and np.isnan(ap[2])
  assert metrics.nanmean_ap(ap) == (pytest.approx((34 / 45 + 1) / 2), 1)
  assert metrics.mean_ap(scores, labels) == pytest.approx((34 / 45 + 1) / 2)
  assert metrics.mean_ap(scores, labels, kind="voc07") == pytest.approx((42 / 55 + 1) / 2)


def test_per_label_ignore_is_per_column():
  # Ignoring entry (1, 0) is the 'ignore drops an entry' case for column 0 only.
  scores = np.stack([S5, S5], axis=1)
  labels = np.stack([Y5, Y5], axis=1)
  ignore = np.zeros_like(labels)
  ignore[1, 0] = 1
  ap = metrics.average_precision_per_label(scores, labels, ignore, kind="voc07")
  assert ap == pytest.approx([10 / 11, 42 / 55])


def test_nanmean_ap_all_nan():
  mean, excluded = metrics.nanmean_ap([np.nan, np.nan])
  assert np.isnan(mean) and excluded == 2


def test_unknown_kind_raises():
  with pytest.raises(ValueError, match="kind"):
    metrics.average_precision_per_label([[0.1]], [[1]], kind="coco")


# ----------------------------------------------------------------------------- top-k

# 4 images x 5 classes. Top 3 per image (marked *):
TOPK_SCORES = [
    [0.9, 0.8, 0.1, 0.7, 0.2],   # {0*, 1*, 3*}
    [0.1, 0.6, 0.9, 0.3, 0.2],   # {1*, 2*, 3*}
    [0.5, 0.1, 0.4, 0.3, 0.05],  # {0*, 2*, 3*}
    [0.2, 0.9, 0.8, 0.6, 0.1],   # {1*, 2*, 3*}
]
TOPK_LABELS = [
    [1, 0, 0, 1, 0],
    [0, 1, 1, 0, 0],
    [1, 0, 0, 0, 1],
    [0, 0, 1, 0, 1],
]


def test_topk_metrics_worked_example():
  # class  predicted in   Np  positives in  Ng  correct  Nc  Nc/Np  Nc/Ng
  #   0    img 0, 2        2  img 0, 2       2  0, 2      2  1      1
  #   1    img 0, 1, 3     3  img 1          1  1         1  1/3    1
  #   2    img 1, 2, 3     3  img 1, 3       2  1, 3      2  2/3    1
  #   3    img 0, 1, 2, 3  4  img 0          1  0         1  1/4    1
  #   4    never           0  img 2, 3       2  -         0  0 (Np := 1)  0
  # C-P = (1 + 1/3 + 2/3 + 1/4 + 0) / 5 = 9/20;  C-R = (1 + 1 + 1 + 1 + 0) / 5 = 4/5;
  # C-F1 = 2 (9/20)(4/5) / (9/20 + 4/5) = (18/25) / (25/20) = 72/125.
  # O-P = 6 / 12 = 1/2;  O-R = 6 / 8 = 3/4;  O-F1 = (3/4) / (5/4) = 3/5.
  m = metrics.topk_metrics(TOPK_SCORES, TOPK_LABELS, k=3)
  assert m["c_p"] == pytest.approx(9 / 20)
  assert m["c_r"] == pytest.approx(4 / 5)
  assert m["c_f1"] == pytest.approx(72 / 125)
  assert m["o_p"] == pytest.approx(1 / 2)
  assert m["o_r"] == pytest.approx(3 / 4)
  assert m["o_f1"] == pytest.approx(3 / 5)
  assert m["k"] == 3 and m["num_classes_without_positives"] == 0


def test_topk_metrics_with_threshold():
  # score >= .5 also required: img 1 loses class 3 (.3), img 2 loses classes 2 (.4) and
  # 3 (.3). Np = 2, 3, 2, 2, 0 (9 in all), Nc unchanged 2, 1, 2, 1, 0 (6).
  # C-P = (1 + 1/3 + 1 + 1/2 + 0) / 5 = 17/30; C-R = 4/5;
  # C-F1 = 2 (17/30)(4/5) / (17/30 + 24/30) = (68/75) / (41/30) = 136/205.
  # O-P = 6/9 = 2/3; O-R = 3/4; O-F1 = 1 / (17/12) = 12/17.
  m = metrics.topk_metrics(TOPK_SCORES, TOPK_LABELS, k=3, threshold=0.5)
  assert m["c_p"] == pytest.approx(17 / 30)
  assert m["c_r"] == pytest.approx(4 / 5)
  assert m["c_f1"] == pytest.approx(136 / 205)
  assert m["o_p"] == pytest.approx(2 / 3)
  assert m["o_r"] == pytest.approx(3 / 4)
  assert m["o_f1"] == pytest.approx(12 / 17)


def test_topk_metrics_ignore():
  # Ignore (1, 3), a false positive, and (3, 4), a missed positive.
  # Class 3: Np 3, Nc 1 -> 1/3; class 4: Ng 1, Nc 0.
  # C-P = (1 + 1/3 + 2/3 + 1/3 + 0) / 5 = 7/15; C-R = 4/5 still;
  # O-P = 6/11; O-R = 6/7.
  ignore = np.zeros((4, 5))
  ignore[1, 3] = ignore[3, 4] = 1
  m = metrics.topk_metrics(TOPK_SCORES, TOPK_LABELS, k=3, ignore=ignore)
  assert m["c_p"] == pytest.approx(7 / 15)
  assert m["c_r"] == pytest.approx(4 / 5)
  assert m["o_p"] == pytest.approx(6 / 11)
  assert m["o_r"] == pytest.approx(6 / 7)


def test_topk_ties_go_to_the_lower_class_index():
  # All four scores equal; k = 2 predicts classes 0 and 1: class 0 right, class 1 wrong,
  # class 2 missed. O-P = 1/2, O-R = 1/2; C-P = (1 + 0 + 0 + 0) / 4; C-R over the 2
  # classes with positives = (1 + 0) / 2.
  m = metrics.topk_metrics([[0.5] * 4], [[1, 0, 1, 0]], k=2)
  assert (m["o_p"], m["o_r"]) == (0.5, 0.5)
  assert (m["c_p"], m["c_r"]) == (0.25, 0.5)
  assert m["num_classes_without_positives"] == 2


def test_topk_f1_is_zero_when_nothing_is_right():
  m = metrics.topk_metrics([[0.9, 0.1]], [[0, 1]], k=1)
  assert (m["o_f1"], m["c_f1"]) == (0.0, 0.0)


def test_topk_bad_k_raises():
  with pytest.raises(ValueError, match="k must be"):
    metrics.topk_metrics(TOPK_SCORES, TOPK_LABELS, k=6)


# ----------------------------------------------------------------------------- evaluate()


def _dataset(scores, labels, ignore=None, batch=2):
  """Images whose pixel (0, 0) holds the scores, so `predict_fn` can read them back."""
  scores = np.asarray(scores, dtype=np.float32)
  n, c = scores.shape
  images = np.zeros((n, 2, 2, 3), dtype=np.float32)
  images[:, 0, 0, :c] = scores
  example = {"image": images, "labels": np.asarray(labels, dtype=np.float32)}
  if ignore is not None:
    example["ignore"] = np.asarray(ignore, dtype=np.float32)
  return tf.data.Dataset.from_tensor_slices(example).batch(batch)


def read_scores(c):
  return lambda images: images[:, 0, 0, :c]


def test_evaluate_on_a_tiny_dataset(capsys):
  # Column 0 is the 5-sample example, column 1 a perfect ranking; batches of 2, 2, 1.
  scores = np.stack([S5, [0.1, 0.2, 0.3, 0.4, 0.5]], axis=1)
  labels = np.stack([Y5, [0, 0, 0, 1, 1]], axis=1)
  result = evaluate(read_scores(2), _dataset(scores, labels), progress=True)
  assert result["ap"] == pytest.approx([34 / 45, 1.0], abs=1e-6)
  assert result["ap_voc07"] == pytest.approx([42 / 55, 1.0], abs=1e-6)
  assert result["map"] == pytest.approx((34 / 45 + 1) / 2, abs=1e-6)
  assert result["map_voc07"] == pytest.approx((42 / 55 + 1) / 2, abs=1e-6)
  assert result["num_images"] == 5 and result["num_labels_excluded"] == 0
  assert "c_p" not in result
  assert "3/3" in capsys.readouterr().out  # The progress bar counted the 3 batches.


def test_evaluate_selects_columns_ignores_and_topk():
  # Dataset with 3 label columns; evaluate columns [2, 0] against a 3-score model whose
  # columns [2, 0] are kept. Column 2 = the 5-sample example with the 0.8 negative
  # ignored (area 11/12); column 0 = no positives (NaN, excluded).
  scores = np.stack([S5, np.zeros(5), S5], axis=1)
  labels = np.stack([np.zeros(5), np.ones(5), Y5], axis=1)
  ignore = np.zeros_like(labels)
  ignore[1, 2] = 1
  result = evaluate(
      read_scores(3), _dataset(scores, labels, ignore), label_indices=[2, 0],
      prediction_indices=[2, 0], topk=1, progress=False)
  assert result["ap"][0] == pytest.approx(11 / 12, abs=1e-6) and np.isnan(result["ap"][1])
  assert result["map"] == pytest.approx(11 / 12, abs=1e-6)
  assert result["num_labels_excluded"] == 1
  # Top-1 over the kept columns [S5, 0] is the first every time; its positives are images
  # 0, 2, 4 of the 4 counted (image 1 ignored): O-P = 3/4, O-R = 3/3.
  assert (result["o_p"], result["o_r"]) == (0.75, 1.0)


def test_evaluate_without_ignore_key():
  result = evaluate(read_scores(1), _dataset([[0.2], [0.9]], [[0], [1]]), progress=False)
  assert result["map"] == 1.0


def test_evaluate_config_errors():
  ds = _dataset([[0.2, 0.1], [0.9, 0.3]], [[0, 1], [1, 0]])
  with pytest.raises(ConfigError, match="predictions have 1 labels"):
    evaluate(read_scores(1), ds, progress=False)
  with pytest.raises(ConfigError, match="label_indices"):
    evaluate(read_scores(2), ds, label_indices=[0, 5], progress=False)
  with pytest.raises(ConfigError, match="infinite"):
    evaluate(read_scores(2), ds.repeat(), progress=False)
  with pytest.raises(ConfigError, match="no batches"):
    evaluate(read_scores(2), ds.take(0), progress=False)


def test_evaluate_refuses_non_finite_predictions_with_one_line():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from dfka_tf.errors import NonFiniteLossError  # pylint: disable=g-import-not-at-top
  from dfka_tf.eval import evaluate_many  # pylint: disable=g-import-not-at-top
  data = tf.data.Dataset.from_tensor_slices(
      {"image": tf.zeros([4, 2, 2, 3]), "labels": tf.constant([[1.0], [0.0], [1.0], [0.0]])}
  ).batch(2)
  broken = lambda x: tf.fill([tf.shape(x)[0], 1], float("nan"))
  with pytest.raises(NonFiniteLossError, match="target's predictions hold NaN or inf .*batch 0"):
    evaluate_many({"target": broken}, data, progress=False)
