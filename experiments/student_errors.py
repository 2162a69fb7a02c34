r"""Where a distilled TargetNet goes wrong on real images, and whether its batch-norm
statistics are the cause.

  python -m experiments.student_errors --workdir=<a --student=distill run's workdir>
  python -m experiments.student_errors --workdir=<...> --recalibrate_on=bank,train

For each label whose AP is under --below: the labels carried by the images the TargetNet
wrongly ranks among that label's top (as many as it has positives), and by the positives
it ranks below them. With --recalibrate_on, its mAP again after every batch-norm layer's
moving statistics are re-estimated (analysis.recalibrate_batchnorm) on Forge's bank
(`bank`, data-free) or on real unlabeled images of the dataset's train split (`train`: a
diagnostic only, it reads real images). Reads the workdir's config.json, results.json and
last distill checkpoint; trains nothing. The split is the run's dataset's; the library's
ResNets only (not --arch=teacher). About a minute on 2 CPU cores at 32 px.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The workdir of a finished run with --student=distill.")
flags.DEFINE_enum("split", "validation", ["validation", "test"], "The real split scored.")
flags.DEFINE_float("below", 95.0, "List the labels whose AP (%) is under this.")
flags.DEFINE_list("recalibrate_on", [], "Also score after re-estimating batch-norm "
                  "statistics on: bank (Forge's bank), train (real unlabeled train images; "
                  "a diagnostic).")
flags.DEFINE_integer("train_images", 8000, "Real train images for --recalibrate_on=train.")
flags.DEFINE_string("out", None, "Also write the figures to this JSON file.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag.")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required: the workdir of a run with --student=distill.")
  from dfka_tf import analysis  # pylint: disable=g-import-not-at-top
  from dfka_tf.errors import DfkaError  # pylint: disable=g-import-not-at-top
  try:
    out = analysis.student_errors(FLAGS.workdir, FLAGS.split, FLAGS.below,
                                  FLAGS.recalibrate_on, FLAGS.train_images)
  except (FileNotFoundError, ValueError, DfkaError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(analysis.student_errors_table(out))
  if FLAGS.out:
    with open(FLAGS.out, "w") as fh:
      json.dump(out, fh, indent=1)


if __name__ == "__main__":
  app.run(main)
