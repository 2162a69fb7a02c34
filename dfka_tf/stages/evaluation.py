"""Scores on a real split (`dfka_tf.eval.evaluate_many`: one pass, every model), export."""

import os
import time
from typing import Callable, Dict, Optional

import tensorflow as tf

from dfka_tf import data as dfka_data
from dfka_tf.eval import evaluate_many
from dfka_tf.stages.base import Run
from dfka_tf.task import TaskMap
from dfka_tf.train.teacher_pass import predictions_over_task

_AP_KEYS = ("map", "map_voc07", "ap", "ap_voc07", "num_labels_excluded", "num_images")


def teachers_fn(teachers, task: TaskMap):
  """images -> the teachers' predictions over Y_cst (each label from its teacher)."""
  return tf.function(lambda x: predictions_over_task(teachers, task, x))


def evaluate(run: Run, teachers, target_net, task: TaskMap, dataset_labels,
             others: Optional[Dict[str, Callable]] = None, data=None) -> Dict:
  """Teacher and T_u AP on the real split c.eval.split (or --eval_data), both on the
  customized labels.

  `others` ({name: images -> Y_cst probabilities}) are scored in the same pass, under
  "<name>_map", "<name>_ap", "<name>_map_voc07". `data`: --eval_data already loaded for
  task.labels (`eval_data`), else it is loaded here.
  """
  c = run.config
  start = time.time()
  test, columns, topk, split = _scored_split(c, task, dataset_labels, data)
  scores = evaluate_many({"teacher": teachers_fn(teachers, task),
                          "target": tf.function(lambda x: target_net(x, training=False)),
                          **(others or {})},
                         test, label_indices=columns, topk=topk, progress=run.progress)
  out = {"labels": list(task.labels), "eval_split": split,
         "num_test_images": scores["target"]["num_images"]}
  for who, s in scores.items():
    out[f"{who}_map"] = float(s["map"])
    out[f"{who}_ap"] = dict(zip(task.labels, map(float, s["ap"])))
    out[f"{who}_map_voc07"] = float(s["map_voc07"])
    if topk:
      out[f"{who}_top3"] = {k: v for k, v in s.items() if k not in _AP_KEYS}
  out["target_over_teacher"] = out["target_map"] / max(out["teacher_map"], 1e-12)
  run.add_time("evaluate", time.time() - start)
  return out


def _scored_split(c, task: TaskMap, dataset_labels, data=None):
  """(dataset, its columns of Y_cst, top-k or None, split name) of what a run is scored on."""
  if c.eval.data:
    data = data or eval_data(c, task.labels)
    return data.dataset, data.columns, data.topk, data.name
  columns = [dataset_labels.index(name) for name in task.labels]
  topk = 3 if c.data.dataset.startswith("coco") else None
  test = dfka_data.load(c.data.dataset, c.eval.split, data_dir=c.data.data_dir,
                        image_size=c.data.image_size, batch_size=c.eval.batch_size)
  return test, columns, topk, c.eval.split


def curve_scorer(run: Run, task: TaskMap, dataset_labels) -> Optional[Callable]:
  """model -> mAP on the first --curve_images images of the scored split (None when the
  curve is off or the run has nothing to score on). The images are read once and cached."""
  c = run.config
  if not c.eval.curve_every or not c.eval.evaluate or (c.data.teacher_paths
                                                       and not c.eval.data):
    return None
  state = {}

  def score(model) -> float:
    if "data" not in state:
      test, columns, _, _ = _scored_split(c, task, dataset_labels)
      state["data"] = test.unbatch().take(c.eval.curve_images).batch(c.eval.batch_size).cache()
      state["columns"] = columns
      state["fn"] = {}
    fn = state["fn"].setdefault(id(model), tf.function(lambda x: model(x, training=False)))
    scores = evaluate_many({"m": fn}, state["data"], label_indices=state["columns"],
                           progress=False)
    return float(scores["m"]["map"])
  return score


def eval_data(config, labels):
  """--eval_data with the columns of `labels` (checked before training, read after it)."""
  from dfka_tf.data.eval_data import load_eval_data  # pylint: disable=g-import-not-at-top
  c = config
  return load_eval_data(c.eval.data, labels, image_size=c.data.image_size,
                        batch_size=c.eval.batch_size, data_dir=c.data.data_dir)


def real_images(config, n: int = 16, data=None):
  """The first n real test images (of --eval_data where given; `data`: it, already loaded),
  [n, H, W, 3] in [0, 1]."""
  if config.eval.data:
    data = data or eval_data(config, [])
    return next(iter(data.dataset.unbatch().batch(n)))["image"].numpy()
  test = dfka_data.load(config.data.dataset, "test", data_dir=config.data.data_dir,
                        image_size=config.data.image_size, batch_size=n)
  return next(iter(test))["image"].numpy()


def export(run: Run, target_net, task: TaskMap):
  from dfka_tf import export as export_lib  # pylint: disable=g-import-not-at-top
  start = time.time()
  export_lib.export_target_net(target_net, list(task.labels), run.wd.path("target_net"))
  run.add_time("export", time.time() - start)


def export_tflite(run: Run, target_net, images, task: TaskMap, dataset_labels, scored: bool,
                  data=None) -> Dict:
  """--export_tflite (beyond the paper): target_net.tflite and target_net_int8.tflite in the
  export folder, the int8 one calibrated on the run's own synthetic images
  (`images.synthetic_images`). Returns each file's size in bytes and, where the run is
  scored, its mAP on the same split (the SavedModel's is T_u's, `target_map`)."""
  from dfka_tf import quantize  # pylint: disable=g-import-not-at-top
  from dfka_tf.stages.images import synthetic_images  # pylint: disable=g-import-not-at-top
  c = run.config
  start = time.time()
  calibration = synthetic_images(c, images, c.eval.tflite_calibration, seed=c.seed).numpy()
  directory = run.wd.path("target_net")
  sizes = quantize.write_tflite(target_net, directory, calibration)
  from dfka_tf.export import saved_model_bytes  # pylint: disable=g-import-not-at-top
  out = {"saved_model": {"bytes": saved_model_bytes(directory)},
         **{name: {"bytes": size} for name, size in sizes.items()},
         "calibration": {"images": len(calibration), "source": c.source.kind}}
  if scored:
    test, columns, topk, _ = _scored_split(c, task, dataset_labels, data)
    fns = {}
    for name in sizes:
      with open(os.path.join(directory, name), "rb") as f:
        fns[name] = quantize.TFLiteModel(f.read())  # Takes each batch as it comes.
    scores = evaluate_many(fns, test, label_indices=columns, topk=topk, progress=False)
    for name, s in scores.items():
      out[name]["map"] = float(s["map"])
  run.add_time("export_tflite", time.time() - start)
  return out


def log_results(run: Run, results: Dict):
  """TensorBoard (logs/results): the final mAPs as scalars and the run's options as
  hyperparameters (the HParams dashboard), beside its metrics, so runs compare there."""
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
  metrics = {k: float(results[k]) for k in ("teacher_map", "regrouped_map", "target_map",
                                            "targetnet_map", "target_over_teacher")
             if k in results}
  metrics["target_over_teachers_params"] = float(results["params"]["target_over_teachers"])
  hparams = {"method": run.config.method}
  for section, fields in run.config.to_dict().items():
    if isinstance(fields, dict):
      for name, value in _flat(fields, section):
        hparams[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
  writer = tf.summary.create_file_writer(run.wd.path("logs", "results"))
  with writer.as_default(step=0):
    hp.hparams(hparams, trial_id=run.config.workdir)
    for name, value in metrics.items():
      tf.summary.scalar(name, value)
    for who in ("teacher", "regrouped", "target", "targetnet"):
      for label, ap in results.get(f"{who}_ap", {}).items():
        tf.summary.scalar(f"{who}_ap/{label}", ap)
  writer.flush()


def _flat(fields, prefix):
  for name, value in fields.items():
    if isinstance(value, dict):
      yield from _flat(value, f"{prefix}.{name}")
    else:
      yield f"{prefix}.{name}", value
