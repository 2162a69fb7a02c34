"""Export T_u as a SavedModel that serves without dfka_tf installed."""

import json
import os
from typing import Sequence

import keras
import tensorflow as tf


def export_target_net(model: keras.Model, label_names: Sequence[str], directory: str):
  """Writes `model` as a SavedModel with two serving signatures.

  - `serving_default(images)`: float32 [N, H, W, 3] in [0, 1];
  - `serve_uint8(images)`: uint8 [N, H, W, 3] in [0, 255].

  Both accept any batch size and any image size (images are resized to the model's input
  size inside the graph) and return {"probabilities": [N, C] float32,
  "label_names": [C] string}. A `labels.json` is written beside the model too.

  Args:
    model: the regrouped TargetNet (image -> probabilities over Y_cst).
    label_names: Y_cst in the model's output order.
    directory: output directory (replaced if it exists).
  """
  height, width = (int(v) for v in model.input_shape[1:3])
  names = tf.constant(list(label_names))

  def serve(images):
    images = tf.image.resize(tf.cast(images, tf.float32), (height, width))
    probs = tf.cast(model(images, training=False), tf.float32)
    batch = tf.shape(probs)[0]
    return {"probabilities": probs,
            "label_names": tf.broadcast_to(names[None], [batch, len(label_names)])}

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint(
      "serving_default", serve,
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
  archive.add_endpoint(
      "serve_uint8", lambda images: serve(tf.cast(images, tf.float32) / 255.0),
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
  tmp = directory.rstrip("/") + ".tmp"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  archive.write_out(tmp, verbose=False)
  with open(os.path.join(tmp, "labels.json"), "w") as f:
    json.dump({"labels": list(label_names), "image_size": [height, width]}, f, indent=2)
  # Replace the old export only once the new one is complete.
  if tf.io.gfile.exists(directory):
    tf.io.gfile.rmtree(directory)
  tf.io.gfile.rename(tmp, directory)


def load_export(directory: str):
  """An exported TargetNet: (images [N, H, W, 3] float in [0, 1] -> probabilities [N, C],
  label names, image side). Reads only the SavedModel and its labels.json.

  Raises:
    ConfigError: the directory is missing or is not an export of `export_target_net`.
  """
  from dfka_tf.errors import ConfigError  # pylint: disable=g-import-not-at-top
  labels_file = os.path.join(directory, "labels.json")
  if not os.path.isdir(directory):
    raise ConfigError(f"--model={directory} is not a directory; pass <workdir>/target_net.")
  if not (os.path.exists(os.path.join(directory, "saved_model.pb"))
          and os.path.exists(labels_file)):
    raise ConfigError(f"--model={directory} is not a TargetNet export (it lacks "
                      "saved_model.pb or labels.json); pass <workdir>/target_net of a run.")
  with open(labels_file) as f:
    meta = json.load(f)
  try:
    serve = tf.saved_model.load(directory).signatures["serving_default"]
  except (OSError, ValueError, KeyError) as e:
    raise ConfigError(f"--model={directory} could not be loaded as a SavedModel "
                      f"({type(e).__name__}); export it again with experiments.run.") from None

  def predict(images):
    return serve(images=tf.convert_to_tensor(images, tf.float32))["probabilities"]

  return predict, list(meta["labels"]), int(meta["image_size"][0])


def saved_model_bytes(directory: str) -> int:
  """Bytes of the SavedModel export in `directory` (the TFLite files beside it left out)."""
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(directory)
             for f in files if not f.endswith(".tflite"))


def score_summary(scores, labels: Sequence[str], topk) -> dict:
  """{"labels", "num_images", "map", "map_voc07", "ap": {label: AP}} (and "top3" on COCO)
  of `eval.evaluate`'s scores: what experiments.evaluate and dfka_tf.evaluate report."""
  out = {"labels": list(labels), "num_images": scores["num_images"], "map": scores["map"],
         "map_voc07": scores["map_voc07"], "ap": dict(zip(labels, scores["ap"]))}
  if topk:
    out["top3"] = {k: scores[k] for k in ("c_p", "c_r", "c_f1", "o_p", "o_r", "o_f1")}
  return out


def score_export(directory: str, eval_data: str, *, data_dir=None, batch_size: int = 64,
                 progress: bool = True):
  """Scores an export on `eval_data` (an .npz, a TFDS name:split, or e.g. voc2007:test).

  Returns {"eval_data", "labels", "num_images", "map", "map_voc07", "ap": {label: AP}} and,
  on COCO, "top3" (the per-class and overall precision, recall and F1 at k = 3).
  """
  from dfka_tf.data.eval_data import load_eval_data  # pylint: disable=g-import-not-at-top
  from dfka_tf.eval import evaluate  # pylint: disable=g-import-not-at-top
  predict, labels, size = load_export(directory)
  data = load_eval_data(eval_data, labels, image_size=size, batch_size=batch_size,
                        data_dir=data_dir)
  scores = evaluate(predict, data.dataset, label_indices=data.columns, topk=data.topk,
                    progress=progress)
  return {"model": directory, "eval_data": eval_data,
          **score_summary(scores, labels, data.topk)}
