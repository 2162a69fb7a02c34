r"""Data-free int8: T_u's int8 TFLite model calibrated on synthetic images, on real images and
on noise, scored side by side on the run's test split.

  python -m benchmarks.quantize                                   # the quick start's run
  python -m benchmarks.quantize --workdir=runs/scenes20-seed0 --images=512
  python -m benchmarks.quantize --preset=quick --workdir=/tmp/q   # seconds (smoke)

Runs (or, where --workdir holds it finished, restores) `python -m experiments.run`'s run on
the embedded scenes20 through `dfka_tf.amalgamate`, then converts its T_u three times, each
calibrated on --images images:
- synthetic: the run's own images (`Amalgamation.generated`: Step I's G), what
  `--export_tflite` uses, so no real data is needed;
- real: scenes20's train images (what integer quantization is usually given; a data-free
  user has none);
- noise: uniform pixels.
Prints a markdown table: the SavedModel's mAP, the float TFLite model's, and each int8
model's with its size in bytes and its mAP loss against the SavedModel.
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging as absl_logging
import numpy as np

import dfka_tf
from dfka_tf import data as dfka_data
from dfka_tf import quantize
from dfka_tf.stages import evaluation
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/scenes20-seed0", "The run (the quick start's by default); "
                    "run first if it is not there, restored if it is.")
flags.DEFINE_list("preset", None, "Presets of the run (none: the quick start's).")
flags.DEFINE_integer("images", 512, "Calibration images of each kind.")
flags.DEFINE_integer("seed", 0, "Seed of the calibration images.")


def real_images(config, n: int, seed: int) -> np.ndarray:
  """n of the dataset's train images, uint8, shuffled by `seed`."""
  ds = dfka_data.load(config.data.dataset, "train", data_dir=config.data.data_dir,
                      image_size=config.data.image_size, batch_size=n, shuffle=True, seed=seed)
  batch = next(iter(ds))
  return np.asarray(batch["image"] * 255.0).round().astype(np.uint8)


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)  # TF logs each SavedModel it writes.
  resume = os.path.exists(os.path.join(FLAGS.workdir, "results.json"))
  result = dfka_tf.amalgamate(workdir=FLAGS.workdir, preset=FLAGS.preset, resume=resume,
                              progress=False)
  c = result.config
  size = c.data.image_size
  rng = np.random.default_rng(FLAGS.seed)
  calibrations = {
      "synthetic (the run's G)": result.generated(FLAGS.images, seed=FLAGS.seed)[0],
      "real (scenes20 train)": real_images(c, FLAGS.images, FLAGS.seed),
      "noise (uniform)": rng.integers(0, 256, (FLAGS.images, size, size, 3), dtype=np.uint8),
  }
  task = result._finished.inputs.task  # pylint: disable=protected-access
  test, columns, topk, split = evaluation._scored_split(  # pylint: disable=protected-access
      c, task, result._finished.inputs.dataset_labels)  # pylint: disable=protected-access
  float_bytes = quantize.tflite_float(result.model)
  models = {"float TFLite": float_bytes}
  for name, images in calibrations.items():
    models[f"int8, calibrated on {name}"] = quantize.tflite_int8(result.model, images)
  fns = {name: quantize.TFLiteModel(b) for name, b in models.items()}
  fns["SavedModel (float)"] = lambda x: result.model(x, training=False)
  scores = evaluation.evaluate_many(fns, test, label_indices=columns, topk=topk, progress=False)
  reference = scores["SavedModel (float)"]["map"]
  print(f"T_u of {FLAGS.workdir} on scenes20 {split} ({scores[next(iter(scores))]['num_images']}"
        f" images), calibration: {FLAGS.images} images of each kind, seed {FLAGS.seed}\n")
  print("| model | bytes | mAP | mAP − SavedModel's |\n| --- | --- | --- | --- |")
  with tempfile.TemporaryDirectory() as directory:
    saved = result.export(os.path.join(directory, "target_net"))["saved_model"]
  print(f"| SavedModel (float) | {saved} | {100 * reference:.2f} | 0 |")
  for name, content in models.items():
    m = scores[name]["map"]
    print(f"| {name} | {len(content)} | {100 * m:.2f} | {100 * (m - reference):+.2f} |")


if __name__ == "__main__":
  app.run(main)
