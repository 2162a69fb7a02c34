r"""What the teachers call the images in Forge's bank, label by label, beside real images.

  python -m experiments.bank_labels --workdir=<a --forge run's workdir>
  python -m experiments.bank_labels --workdir=<...> --split=test --out=bank_labels.json
  python -m experiments.bank_labels --workdir=<...> --apart=circle,hexagon  # + bank_apart.png

Forge draws its targets evenly over the labels, but what a round keeps is what G reached,
not what it was asked for. For each label this prints the share of bank images the teachers
call it (p > 0.5), the share of the real split's images they call it, and which other label
they most often call on the same images (and how often), on the bank and on the split.
Reads the workdir's config.json (dataset, image size, --teacher_paths), its teachers (the
workdir's teachers/*.keras, or your own files where the run named them) and the bank in its
last student checkpoint; trains nothing. The real split is the run's dataset's, so a run on
your own data (--eval_data) is not covered. About a minute on 2 CPU cores for a bank of 16384
32-px images. With --apart=a,b,..., it also draws, for each of those labels, bank images the
teachers call it and none of the others beside real images they call the same way
(`analysis.bank_apart`).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The workdir of a run with --forge.")
flags.DEFINE_enum("split", "validation", ["validation", "test"], "The real split beside it.")
flags.DEFINE_string("out", None, "Also write the figures to this JSON file.")
flags.DEFINE_list("apart", [], "Also draw, for each of these labels (e.g. circle,hexagon), bank "
                  "images the teachers call it and none of the others beside real ones.")
flags.DEFINE_string("apart_png", None, "Where --apart's drawing goes (default: "
                    "<workdir>/bank_apart.png).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag.")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required: the workdir of a run with --forge.")
  if FLAGS.apart_png and not FLAGS.apart:
    raise app.UsageError("--apart_png names where --apart's drawing goes; add --apart=a,b.")
  from dfka_tf import analysis  # pylint: disable=g-import-not-at-top
  from dfka_tf.errors import DfkaError  # pylint: disable=g-import-not-at-top
  try:
    # --apart first: a label the teachers lack stops the run before the longer count.
    rows = analysis.bank_apart(FLAGS.workdir, FLAGS.apart, FLAGS.split) if FLAGS.apart else None
    figures = analysis.bank_labels(FLAGS.workdir, FLAGS.split)
  except (FileNotFoundError, ValueError, DfkaError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(analysis.bank_labels_table(figures))
  if FLAGS.out:
    with open(FLAGS.out, "w") as fh:
      json.dump(figures, fh, indent=1)
  if rows is not None:
    from experiments import suite_writers  # pylint: disable=g-import-not-at-top
    path = FLAGS.apart_png or os.path.join(FLAGS.workdir, "bank_apart.png")
    suite_writers.image_rows_plot(path, rows)
    print(f"wrote {path}: " + "; ".join(f"{k} {len(v)}" for k, v in rows.items()))


if __name__ == "__main__":
  app.run(main)
