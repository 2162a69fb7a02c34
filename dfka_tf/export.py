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
