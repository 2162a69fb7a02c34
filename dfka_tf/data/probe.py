"""The colour probe: how much of a multi-label benchmark colour alone decides.

Per label, a logistic regression on each image's 8×4×4 HSV histogram (position, shape and
size ignored) is fit on a train split and scored by mAP on a test split. On a benchmark
that measures shape, it scores near the base rate (the fraction of positive labels); on
scenes20_colour, where each class has its typical hue, it scores ~42 mAP.

scikit-learn is needed here only (a test dependency, requirements-test.txt).
"""

from typing import Dict, Tuple

import numpy as np

BINS = (8, 4, 4)  # hue, saturation, value


def hsv_histogram(images: np.ndarray, bins: Tuple[int, int, int] = BINS) -> np.ndarray:
  """Normalised joint HSV histograms, [N, prod(bins)], of uint8 RGB images [N, H, W, 3]."""
  x = np.asarray(images, np.float32) / 255.0
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  high, low = x.max(-1), x.min(-1)
  spread = high - low
  safe = np.maximum(spread, 1e-6)
  hue = np.select([spread <= 1e-6, r == high, g == high],
                  [0.0, (g - b) / safe, 2.0 + (b - r) / safe], 4.0 + (r - g) / safe)
  hue = (hue / 6.0) % 1.0
  sat = np.where(high > 0, spread / np.maximum(high, 1e-6), 0.0)
  idx = [np.minimum((v * n).astype(np.int64), n - 1) for v, n in zip((hue, sat, high), bins)]
  flat = ((idx[0] * bins[1] + idx[1]) * bins[2] + idx[2]).reshape(len(x), -1)
  size = int(np.prod(bins))
  counts = np.stack([np.bincount(row, minlength=size) for row in flat])
  return counts.astype(np.float32) / flat.shape[1]


def colour_probe(train_images, train_labels, test_images, test_labels) -> Dict[str, float]:
  """{"map", "base_rate"}: the probe's test mAP (area AP per label, averaged over labels
  with a positive) and the test split's fraction of positive labels."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  from dfka_tf.eval.metrics import mean_ap  # pylint: disable=g-import-not-at-top
  train_x, test_x = hsv_histogram(train_images), hsv_histogram(test_images)
  scaler = StandardScaler().fit(train_x)
  train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)
  train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
  scores = np.stack([
      LogisticRegression(max_iter=2000).fit(train_x, train_labels[:, j]).decision_function(test_x)
      for j in range(train_labels.shape[1])], axis=1)
  return {"map": float(mean_ap(scores, test_labels)),
          "base_rate": float(test_labels.mean())}
