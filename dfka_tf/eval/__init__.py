"""Evaluation: per-label AP / mAP (VOC 2007) and top-k precision, recall, F1 (MS-COCO)."""

from dfka_tf.eval.evaluate import evaluate
from dfka_tf.eval.evaluate import evaluate_many
from dfka_tf.eval.metrics import area_ap
from dfka_tf.eval.metrics import average_precision_per_label
from dfka_tf.eval.metrics import mean_ap
from dfka_tf.eval.metrics import nanmean_ap
from dfka_tf.eval.metrics import topk_metrics
from dfka_tf.eval.metrics import voc07_ap

__all__ = [
    "area_ap", "average_precision_per_label", "evaluate", "evaluate_many", "mean_ap", "nanmean_ap",
    "topk_metrics", "voc07_ap",
]
