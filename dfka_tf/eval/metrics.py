"""Multi-label evaluation metrics of the paper's Tables 1-3, in numpy.

All values are fractions in [0, 1] (the paper prints percent: multiply by 100 to report).

Average precision (VOC 2007, Tables 1-2):

- `voc07_ap`: the VOC2007 devkit's 11-point interpolated AP (`VOCevalcls.m`).
- `area_ap`: the area under the precision-recall curve with a monotone precision envelope,
  as the VOC2010+ devkit's `VOCap.m` computes it ("all points" AP).

Both drop the entries marked `ignore` (the devkit gives difficult-only images gt = 0, which
count as neither true nor false positives; dropping them gives the same curve). A label with
no positive left returns NaN; the mean over labels (`mean_ap`, `nanmean_ap`) skips NaN and
`nanmean_ap` says how many labels it skipped.

Ties. `voc07_ap` follows the devkit exactly: `[~, si] = sort(-out)` in MATLAB is a stable
sort, so tied scores stay in their input (dataset) order and each one is a separate point of
the curve. The result therefore depends on the order of tied entries. `area_ap` instead
treats all entries with equal scores as one threshold (as sklearn's
`average_precision_score` does): precision and recall are taken only after the whole tied
group, so the result does not depend on the order of the data. Without ties it equals the
devkit's `VOCap.m`.

Recall thresholds of `voc07_ap`. The devkit loops `for t = 0:0.1:1` in floating point, where
t = 3 * 0.1 = 0.30000000000000004 > 3/10, so a recall of exactly 0.3 fails `rec >= t`. Here
`rec >= t` is decided exactly (`10 * tp >= k * npos` in integers), the definition the devkit
means; the two differ only when a recall lands exactly on such a threshold.

Top-k metrics (MS-COCO, Table 3, following CNN-RNN [27] and ML-GCN's `AveragePrecisionMeter`):
`topk_metrics`.
"""

import numpy as np

_VOC07_POINTS = 11  # t = 0, 0.1, ..., 1.0


def _prepare(scores, labels, ignore):
  """Checks one label's inputs; returns (scores float64, positives bool) without ignored."""
  scores = np.asarray(scores, dtype=np.float64)
  labels = np.asarray(labels, dtype=np.float64)
  if scores.ndim != 1 or scores.shape != labels.shape:
    raise ValueError(
        f"scores and labels must be 1-D of equal length, got {scores.shape} and "
        f"{labels.shape}.")
  if np.isnan(scores).any():
    raise ValueError("scores contain NaN; check the model's outputs.")
  if not np.isin(labels, (0.0, 1.0)).all():
    raise ValueError(
        f"labels must be 0/1 (mark excluded entries with ignore), got values "
        f"{np.unique(labels)[:5]}.")
  if ignore is not None:
    ignore = np.asarray(ignore, dtype=np.float64)
    if ignore.shape != scores.shape:
      raise ValueError(f"ignore has shape {ignore.shape}, scores {scores.shape}.")
    keep = ignore < 0.5
    scores, labels = scores[keep], labels[keep]
  return scores, labels > 0.5


def _sorted_counts(scores, positives):
  """Cumulative TP and FP counts down the devkit's ranking (stable sort, descending)."""
  # -scores with a stable sort is MATLAB's sort(-out): ties keep their input order.
  order = np.argsort(-scores, kind="stable")
  pos = positives[order]
  tp = np.cumsum(pos, dtype=np.int64)
  fp = np.cumsum(~pos, dtype=np.int64)
  return scores[order], tp, fp


def voc07_ap(scores, labels, ignore=None):
  """VOC2007 11-point interpolated average precision of one label.

  AP = (1/11) Σ_{t in {0, 0.1, ..., 1}} max{precision(i) : recall(i) >= t}, where i runs
  over every position of the ranking sorted by descending score (devkit `VOCevalcls.m`), and
  the max of an empty set is 0.

  Ties keep their input order (the devkit's stable `sort(-out)`), so the value depends on
  how tied entries are ordered. `rec >= t` is decided exactly in integers (see the module
  docstring for the one way this differs from the devkit's floating-point `0:0.1:1`).

  Args:
    scores: [N] real scores (probabilities or logits; any monotone map gives the same AP).
      ±inf allowed, NaN not.
    labels: [N] 0/1 ground truth.
    ignore: optional [N]; entries with ignore = 1 are dropped (VOC "difficult").

  Returns:
    AP as a fraction in [0, 1], or NaN when no positive is left after `ignore` (the mean
    over labels skips it).
  """
  scores, positives = _prepare(scores, labels, ignore)
  npos = int(positives.sum())
  if npos == 0:
    return float("nan")
  _, tp, fp = _sorted_counts(scores, positives)
  precision = tp / (tp + fp)
  ap = 0.0
  for k in range(_VOC07_POINTS):
    # recall >= k/10  <=>  tp/npos >= k/10  <=>  10 tp >= k npos, exactly.
    reached = 10 * tp >= k * npos
    ap += precision[reached].max() if reached.any() else 0.0
  return float(ap / _VOC07_POINTS)


def area_ap(scores, labels, ignore=None):
  """Area under the precision-recall curve of one label (VOC2010+ "all points" AP).

  Precision and recall are computed at every distinct score threshold; precision is
  replaced by its monotone envelope p~(r) = max{p(r') : r' >= r} and
  AP = Σ_j (r_j - r_{j-1}) p~(r_j) over the thresholds in descending order (r_0 = 0), as
  the devkit's `VOCap.m`.

  Tied scores form one threshold (sklearn's convention): the curve has a point only after
  the whole tied group, so the value does not depend on the order of the data. Without ties
  this equals `VOCap.m` on the devkit's ranking.

  Args:
    scores: [N] real scores; ±inf allowed, NaN not.
    labels: [N] 0/1 ground truth.
    ignore: optional [N]; entries with ignore = 1 are dropped (VOC "difficult").

  Returns:
    AP as a fraction in [0, 1], or NaN when no positive is left after `ignore` (the mean
    over labels skips it).
  """
  scores, positives = _prepare(scores, labels, ignore)
  npos = int(positives.sum())
  if npos == 0:
    return float("nan")
  sorted_scores, tp, fp = _sorted_counts(scores, positives)
  # Last position of each run of equal scores: the curve's points.
  last = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
  tp, fp = tp[last], fp[last]
  recall = tp / npos
  precision = tp / (tp + fp)
  envelope = np.maximum.accumulate(precision[::-1])[::-1]
  steps = np.diff(recall, prepend=0.0)
  return float(np.sum(steps * envelope))


_AP_KINDS = {"area": area_ap, "voc07": voc07_ap}


def average_precision_per_label(scores, labels, ignore=None, kind="area"):
  """AP of every label (column).

  Args:
    scores: [N, C] scores.
    labels: [N, C] 0/1 ground truth.
    ignore: optional [N, C]; 1 drops that (image, label) entry.
    kind: "area" (`area_ap`) or "voc07" (`voc07_ap`).

  Returns:
    float64 [C] of fractions, NaN for labels without positives.
  """
  if kind not in _AP_KINDS:
    raise ValueError(f"kind must be one of {sorted(_AP_KINDS)}, got {kind!r}.")
  scores = np.asarray(scores)
  labels = np.asarray(labels)
  if scores.ndim != 2 or scores.shape != labels.shape:
    raise ValueError(
        f"scores and labels must be [N, C] of equal shape, got {scores.shape} and "
        f"{labels.shape}.")
  if ignore is not None:
    ignore = np.asarray(ignore)
    if ignore.shape != scores.shape:
      raise ValueError(f"ignore has shape {ignore.shape}, scores {scores.shape}.")
  fn = _AP_KINDS[kind]
  return np.array([
      fn(scores[:, c], labels[:, c], None if ignore is None else ignore[:, c])
      for c in range(scores.shape[1])
  ], dtype=np.float64)


def nanmean_ap(ap):
  """Mean of per-label APs over the labels that have one.

  Args:
    ap: [C] per-label APs, NaN for labels without positives.

  Returns:
    (mean, num_excluded): the mean over non-NaN entries (NaN when all are NaN) and how many
    labels were left out for having no positives.
  """
  ap = np.asarray(ap, dtype=np.float64)
  valid = ~np.isnan(ap)
  mean = float(ap[valid].mean()) if valid.any() else float("nan")
  return mean, int((~valid).sum())


def mean_ap(scores, labels, ignore=None, kind="area"):
  """Mean AP (a fraction in [0, 1]) over the labels that have at least one positive.

  Labels without positives (after `ignore`) are skipped; use `average_precision_per_label`
  with `nanmean_ap` to also get how many were skipped. Arguments as in
  `average_precision_per_label`.
  """
  return nanmean_ap(average_precision_per_label(scores, labels, ignore, kind))[0]


def _f1(p, r):
  # An F1 of 0 (not NaN) when nothing is right: precision and recall are then both 0.
  return 0.0 if p + r == 0 else 2.0 * p * r / (p + r)


def topk_metrics(scores, labels, k=3, threshold=None, ignore=None):
  """Per-class and overall precision, recall and F1 of top-k predictions (paper Table 3).

  Each image's k highest scores are its predicted labels (CNN-RNN [27], paper §5.2.2; ties
  go to the lower class index). With `threshold`, a top-k label also needs
  score >= threshold: ML-GCN's `overall_topk` does this with logit >= 0, i.e.
  probability >= 0.5; the paper states no threshold, so none is the default.

  With per class c: Nc = true positives, Np = predicted, Ng = positives,
    C-P = (1/C) Σ_c Nc/Np   (a class never predicted counts as precision 0, ML-GCN's
                            `Np[Np == 0] = 1`),
    C-R = mean over classes with Ng > 0 of Nc/Ng  (ML-GCN would give NaN if any class had
                            no positives; here such classes are skipped and counted;
                            NaN, as O-R, when no class has a positive),
    C-F1 = 2 C-P C-R / (C-P + C-R)  from the averaged C-P and C-R,
    O-P = ΣNc / ΣNp,  O-R = ΣNc / ΣNg,  O-F1 = 2 O-P O-R / (O-P + O-R).
  An F1 whose precision and recall are both 0 is 0.

  Args:
    scores: [N, C] scores (probabilities, or logits with a threshold in logit units).
    labels: [N, C] 0/1 ground truth.
    k: number of labels predicted per image, 1 <= k <= C.
    threshold: optional minimum score for a top-k label to count as predicted.
    ignore: optional [N, C]; entries with ignore = 1 count in no tally (a top-k slot they
      take is still used up).

  Returns:
    dict of fractions: "c_p", "c_r", "c_f1", "o_p", "o_r", "o_f1"; plus "k" and
    "num_classes_without_positives" (classes skipped in C-R).
  """
  scores = np.asarray(scores, dtype=np.float64)
  labels = np.asarray(labels, dtype=np.float64)
  if scores.ndim != 2 or scores.shape != labels.shape:
    raise ValueError(
        f"scores and labels must be [N, C] of equal shape, got {scores.shape} and "
        f"{labels.shape}.")
  n, num_classes = scores.shape
  if not 1 <= k <= num_classes:
    raise ValueError(f"k must be in [1, {num_classes}], got {k}.")
  if np.isnan(scores).any():
    raise ValueError("scores contain NaN; check the model's outputs.")
  if not np.isin(labels, (0.0, 1.0)).all():
    raise ValueError("labels must be 0/1 (mark excluded entries with ignore).")
  counted = np.ones_like(scores, dtype=bool)
  if ignore is not None:
    ignore = np.asarray(ignore, dtype=np.float64)
    if ignore.shape != scores.shape:
      raise ValueError(f"ignore has shape {ignore.shape}, scores {scores.shape}.")
    counted = ignore < 0.5

  # Stable sort of -scores: among equal scores the lower class index comes first.
  top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  predicted = np.zeros_like(counted)
  predicted[np.arange(n)[:, None], top] = True
  if threshold is not None:
    predicted &= scores >= threshold
  positive = labels > 0.5

  n_correct = (predicted & positive & counted).sum(axis=0)
  n_predicted = (predicted & counted).sum(axis=0)
  n_positive = (positive & counted).sum(axis=0)

  c_p = float(np.mean(n_correct / np.maximum(n_predicted, 1)))
  has_pos = n_positive > 0
  c_r = (float(np.mean(n_correct[has_pos] / n_positive[has_pos])) if has_pos.any()
         else float("nan"))
  o_p = float(n_correct.sum() / max(n_predicted.sum(), 1))
  o_r = float(n_correct.sum() / n_positive.sum()) if has_pos.any() else float("nan")
  return {
      "c_p": c_p, "c_r": c_r, "c_f1": _f1(c_p, c_r),
      "o_p": o_p, "o_r": o_r, "o_f1": _f1(o_p, o_r),
      "k": int(k),
      "num_classes_without_positives": int((~has_pos).sum()),
  }
