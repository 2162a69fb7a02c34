"""Runs a model over an evaluation set and computes the paper's metrics (Tables 1-3)."""

import keras
import numpy as np
import tensorflow as tf

from dfka_tf.errors import ConfigError, NonFiniteLossError
from dfka_tf.eval import metrics


def _check_indices(indices, width, name):
  """Returns `indices` as an int array after checking they select columns of `width`."""
  indices = np.asarray(indices, dtype=np.int64).reshape(-1)
  if indices.size == 0 or indices.min() < 0 or indices.max() >= width:
    raise ConfigError(
        f"{name} {indices.tolist()} must select columns of a {width}-wide array; pass indices "
        f"in [0, {width - 1}].")
  return indices


def evaluate(predict_fn, dataset, label_indices=None, prediction_indices=None, topk=None,
             progress=True):
  """Evaluates `predict_fn` on a batched dataset; all metrics are fractions in [0, 1].

  Args:
    predict_fn: callable, images [B, H, W, 3] float32 in [0, 1] -> scores [B, C'] (probabilities;
      logits give the same APs and, without a threshold, the same top-k metrics).
    dataset: finite tf.data.Dataset of batched dicts {"image", "labels", "ignore"}
      ("ignore" may be absent: nothing ignored).
    label_indices: optional columns of the dataset's labels/ignore to evaluate, in the
      order of the model's outputs (e.g. the 10 labels of Table 1, or Y_1 then Y_2 for
      Table 2). None: all columns.
    prediction_indices: optional columns of `predict_fn`'s output to keep (e.g. to score a
      20-label teacher on 10 of its labels). None: all columns.
    topk: optional k; adds the top-k metrics of `metrics.topk_metrics` (Table 3 uses 3).
    progress: show a keras.utils.Progbar over the batches.

  Returns:
    dict with "map" (area AP, mean over labels with positives), "map_voc07" (11-point),
    "ap" and "ap_voc07" (per-label lists, NaN for labels without positives),
    "num_labels_excluded" (labels without positives, left out of both means),
    "num_images"; with `topk` also "c_p", "c_r", "c_f1", "o_p", "o_r", "o_f1", "k" and
    "num_classes_without_positives".

  Raises:
    ConfigError: the dataset is infinite or empty, or the widths of predictions and labels
      do not match after selection.
  """
  return evaluate_many({"model": predict_fn}, dataset, label_indices, prediction_indices,
                       topk, progress)["model"]


def evaluate_many(predict_fns, dataset, label_indices=None, prediction_indices=None,
                  topk=None, progress=True):
  """`evaluate` for several models in one pass over the dataset: {name: its metrics}.

  Each batch is read once and scored by every function of `predict_fns` ({name: fn});
  the other arguments apply to every model alike.
  """
  cardinality = int(dataset.cardinality())
  if cardinality == tf.data.INFINITE_CARDINALITY:
    raise ConfigError("the evaluation dataset is infinite; do not .repeat() it.")
  bar = None
  if progress:
    bar = keras.utils.Progbar(cardinality if cardinality >= 0 else None, unit_name="batch")

  scores = {name: [] for name in predict_fns}
  labels, ignore = [], []
  for step, batch in enumerate(dataset):
    for name, fn in predict_fns.items():
      out = np.asarray(keras.ops.convert_to_numpy(fn(batch["image"])), dtype=np.float64)
      if not np.all(np.isfinite(out)):
        raise NonFiniteLossError(
            f"{name}'s predictions hold NaN or inf on the evaluation data (batch {step}): "
            "its weights diverged in training; lower the learning rates (e.g. --target_lr) "
            "and run again.")
      scores[name].append(out)
    labels.append(np.asarray(batch["labels"], dtype=np.float32))
    if "ignore" in batch:
      ignore.append(np.asarray(batch["ignore"], dtype=np.float32))
    else:
      ignore.append(np.zeros_like(labels[-1]))
    if bar is not None:
      bar.update(step + 1)
  if not labels:
    raise ConfigError("the evaluation dataset yielded no batches; check its path and split.")

  labels = np.concatenate(labels)
  ignore = np.concatenate(ignore)
  return {name: _metrics(np.concatenate(s), labels, ignore, label_indices, prediction_indices,
                         topk)
          for name, s in scores.items()}


def _metrics(scores, labels, ignore, label_indices, prediction_indices, topk):
  """The metrics of one model's scores against the labels, after the column selections."""
  if scores.ndim != 2 or labels.ndim != 2:
    raise ConfigError(
        f"predictions {scores.shape} and labels {labels.shape} must both be [N, C]; check that "
        f"predict_fn returns one score per label.")
  if prediction_indices is not None:
    scores = scores[:, _check_indices(prediction_indices, scores.shape[1],
                                      "prediction_indices")]
  if label_indices is not None:
    cols = _check_indices(label_indices, labels.shape[1], "label_indices")
    labels, ignore = labels[:, cols], ignore[:, cols]
  if scores.shape != labels.shape:
    raise ConfigError(
        f"predictions have {scores.shape[1]} labels, the dataset {labels.shape[1]} (after "
        f"selection); pass label_indices / prediction_indices that pair them up.")

  ap = metrics.average_precision_per_label(scores, labels, ignore, kind="area")
  ap07 = metrics.average_precision_per_label(scores, labels, ignore, kind="voc07")
  map_area, excluded = metrics.nanmean_ap(ap)
  map_07, _ = metrics.nanmean_ap(ap07)  # Same labels have no positives for both kinds.
  result = {
      "map": map_area,
      "map_voc07": map_07,
      "ap": ap.tolist(),
      "ap_voc07": ap07.tolist(),
      "num_labels_excluded": excluded,
      "num_images": int(scores.shape[0]),
  }
  if topk is not None:
    result.update(metrics.topk_metrics(scores, labels, k=topk, ignore=ignore))
  return result
