r"""What the teachers call the images in Forge's bank, label by label, beside real images.

  python -m experiments.bank_labels --workdir=<a --forge run's workdir>
  python -m experiments.bank_labels --workdir=<...> --split=test --out=bank_labels.json

Forge draws its targets evenly over the labels, but what a round keeps is what G reached,
not what it was asked for. For each label this prints the share of bank images the teachers
call it (p > 0.5), the share of the real split's images they call it, and which other label
they most often call on the same images (and how often), on the bank and on the split.
Reads the workdir's config.json (dataset, image size, --teacher_paths), its teachers (the
workdir's teachers/*.keras, or your own files where the run named them) and the bank in its
last student checkpoint; trains nothing. The real split is the run's dataset's, so a run on
your own data (--eval_data) is not covered. About a minute on 2 CPU cores for a bank of 16384 32-px images.
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


def bank_labels(workdir: str, split: str = "validation", chunk: int = 1000):
  """{"labels", "split", "bank" and "real" (analysis.histogram_of each), "bank_co_called" and
  "real_co_called" (analysis.co_called)}. Images are scored `chunk` at a time."""
  import glob  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dfka_tf import analysis  # pylint: disable=g-import-not-at-top
  from dfka_tf import data as dfka_data  # pylint: disable=g-import-not-at-top
  from dfka_tf.models.teacher_files import load_teacher  # pylint: disable=g-import-not-at-top
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path} does not exist; pass the workdir of a run with "
                            "--forge (it holds config.json).")
  with open(config_path) as fh:
    data = json.load(fh)["data"]
  # Your own teachers (--teacher_paths) stay where they are; the library's are in the workdir.
  paths = list(data.get("teacher_paths") or []) or sorted(
      glob.glob(os.path.join(workdir, "teachers", "*.keras")),
      key=lambda p: (len(p), p))
  if not paths:
    raise FileNotFoundError(f"{workdir}/teachers/ holds no .keras teacher; pass the workdir "
                            "of a run whose teachers stage finished.")
  bank = analysis.forge_bank(workdir)
  teachers = [load_teacher(p) for p in paths]
  names = [n for t in teachers for n in t.label_names]
  on_bank = np.concatenate([
      analysis.teacher_predictions(bank[i:i + chunk].astype(np.float32) / 255.0, teachers)
      for i in range(0, len(bank), chunk)])
  real = dfka_data.load(data["dataset"], split, data_dir=data["data_dir"],
                        image_size=data["image_size"], batch_size=chunk)
  on_real = np.concatenate([analysis.teacher_predictions(ex["image"].numpy(), teachers)
                            for ex in real])
  return {"labels": names, "split": split,
          "bank": analysis.histogram_of(on_bank, names),
          "real": analysis.histogram_of(on_real, names),
          "bank_co_called": analysis.co_called(on_bank, names),
          "real_co_called": analysis.co_called(on_real, names)}


def table(figures) -> str:
  split = figures["split"]
  lines = [f"| label | bank: called it (%) | {split}: called it (%) | bank: most often "
           f"called with it (% of those) | {split}: most often called with it (% of those) |",
           "| --- | --- | --- | --- | --- |"]

  def co(which, name):
    pair = figures[which][name]
    return f"{pair[0]} ({100 * pair[1]:.0f})" if pair else "—"

  for i, name in enumerate(figures["labels"]):
    lines.append(f"| {name} | {100 * figures['bank']['fraction'][i]:.1f} | "
                 f"{100 * figures['real']['fraction'][i]:.1f} | {co('bank_co_called', name)} | "
                 f"{co('real_co_called', name)} |")
  lines.append(f"\nImages: bank {figures['bank']['num_images']}, {figures['split']} "
               f"{figures['real']['num_images']}; labels an image: bank "
               f"{figures['bank']['labels_per_image']:.2f}, {figures['split']} "
               f"{figures['real']['labels_per_image']:.2f}.")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag.")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required: the workdir of a run with --forge.")
  from dfka_tf.errors import DfkaError  # pylint: disable=g-import-not-at-top
  try:
    figures = bank_labels(FLAGS.workdir, FLAGS.split)
  except (FileNotFoundError, DfkaError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(table(figures))
  if FLAGS.out:
    with open(FLAGS.out, "w") as fh:
      json.dump(figures, fh, indent=1)


if __name__ == "__main__":
  app.run(main)
