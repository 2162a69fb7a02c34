r"""Score an exported TargetNet on labelled data: mAP and per-label AP (Tables 1–2's metric).

  python -m experiments.evaluate --model=runs/byo/target_net --eval_data=test.npz
  python -m experiments.evaluate --model=runs/voc2007-seed0/target_net --dataset=voc2007
  python -m experiments.evaluate --model=<export> --eval_data=voc/2007:test --out=scores.json

--eval_data is an .npz holding x (images), y (multi-hot) and labels (names), or a TFDS
name:split; --dataset a dataset dfka_tf reads (its --eval_split). The export's label names
are matched to the data's. Runs the SavedModel alone (no Keras model is rebuilt). User errors
print one line and exit with status 2.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "SavedModel directory written by experiments.run "
                    "(<workdir>/target_net).")
flags.DEFINE_string("eval_data", None, "An .npz (x, y, labels) or a TFDS name:split.")
flags.DEFINE_enum("dataset", None, ["scenes20", "voc2007", "coco2014"],
                  "Score on this dataset's --eval_split instead of --eval_data.")
flags.DEFINE_enum("eval_split", "test", ["test", "validation"], "Split of --dataset.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: TFDS's own).")
flags.DEFINE_integer("batch_size", 64, "Images per batch.")
flags.DEFINE_string("out", None, "Also write the scores to this JSON file.")
flags.DEFINE_bool("quiet", False, "No progress bar.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag.")
  from dfka_tf.errors import ConfigError, DfkaError  # pylint: disable=g-import-not-at-top
  try:
    if not FLAGS.model:
      raise ConfigError("--model is required: the target_net directory of a run.")
    if bool(FLAGS.eval_data) == bool(FLAGS.dataset):
      raise ConfigError("pass one of --eval_data=<file.npz or tfds_name:split> and "
                        "--dataset=scenes20|voc2007|coco2014.")
    from dfka_tf.export import score_export  # pylint: disable=g-import-not-at-top
    spec = FLAGS.eval_data or f"{FLAGS.dataset}:{FLAGS.eval_split}"
    out = score_export(FLAGS.model, spec, data_dir=FLAGS.data_dir,
                       batch_size=FLAGS.batch_size, progress=not FLAGS.quiet)
  except DfkaError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"mAP {100 * out['map']:.1f} (VOC07 11-point {100 * out['map_voc07']:.1f}) on "
        f"{out['num_images']} images of {spec}")
  for name, ap in out["ap"].items():
    print(f"  {name:20s} AP {100 * ap:5.1f}")
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(out, f, indent=1)


def cli():
  """Console script (dfka-evaluate): the same as `python -m experiments.evaluate`."""
  app.run(main)


if __name__ == "__main__":
  cli()
