r"""Step I as it trains: what G's images look like to the teachers, step by step.

  python -m experiments.collapse                       # Table 2's DFKA G, S-Table 1's weights
  python -m experiments.collapse --set=alpha=0.1,beta=5 --out=/tmp/collapse
  python -m experiments.collapse --quick --out=/tmp/c --workdir_root=/tmp/cruns  # smoke

Trains (or reuses, under --workdir_root) the Step I generator of Table 2's DFKA row at the
tables' budget and reads its TensorBoard log (`logs/generator/`). Per logged step it lists
the terms of L_gan on the training batch, and for G sampled as Steps II–III sample it (fixed
noise, inference mode; `GeneratorTrainer.summarize`): the share of labels predicted at
all (coverage), the evenness of the label counts, labels per image, pixel diversity, the
share of teacher outputs the losses' clip leaves without gradient, and how hard each
weighted term pulls on the image. This is the measurement behind docs/results.md's account
of why the paper's recipe does not transfer.

Writes --out/collapse.md and collapse.csv (one line per seed and logged step).
"""

import os
import time

from absl import app
from absl import flags

from dfka_tf import config as config_lib
from . import suite_cache
from . import suite_writers as writers
from . import suites_common as common
from . import table2

FLAGS = flags.FLAGS
flags.DEFINE_integer("summary_every_steps", 20, "Steps between G's sampled summaries (a "
                     "multiple of 10 lines them up with the training batch's, logged every 10).")

NAME = "collapse"
TITLE = "Step I as it trains (Table 2's setting, DFKA)"
TRAIN = ("loss", "oh", "a", "ie", "dis", "align", "label_coverage", "pixel_diversity")
SAMPLED = ("label_coverage", "label_evenness", "labels_per_image", "pixel_diversity",
           "saturated_outputs", "pull_oh", "pull_a", "pull_ie", "pull_dis")


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              summary_every=20, log=print):
  start = time.time()
  # S-Table 1's weights unless --set says otherwise: the collapse this log documents.
  overrides = dict(config_lib.preset_values("paper_weights"), **(overrides or {}),
                   summary_every=summary_every)
  rows = []
  for seed in common.seeds_from(seeds, 1, quick):
    config = common.row_config(common.Row("dfka", {"method": "dfka"}),
                               setting=table2.setting(), quick=quick,
                               seed=seed, overrides=overrides)
    stages = suite_cache.Stages(workdir_root, progress=progress, log=log)
    gdir = stages.generator_dir(config)
    logged = common.read_log(os.path.join(gdir, "logs", "generator"))
    if not any("sampled/pull_a" in v for v in logged.values()):
      raise RuntimeError(f"{gdir} holds a generator trained without sampled summaries; "
                         "delete it (or pick another --workdir_root) and rerun.")
    for step in sorted(s for s, v in logged.items() if "sampled/label_coverage" in v):
      values = logged[step]
      row = {"seed": seed, "step": step}
      row.update({f"train_{k}": values.get(k) for k in TRAIN})
      row.update({f"sampled_{k}": values.get(f"sampled/{k}") for k in SAMPLED})
      rows.append(row)
  header = (["seed", "step", "L_oh", "L_a", "L_ie", "L_dis", "coverage (train)",
             "coverage", "evenness", "labels/image", "diversity", "saturated",
             "pull oh", "pull a", "pull ie", "pull dis"])
  keys = (["train_oh", "train_a", "train_ie", "train_dis", "train_label_coverage"]
          + [f"sampled_{k}" for k in SAMPLED])
  body = [[r["seed"], r["step"]] + ["—" if r[k] is None else f"{r[k]:.4g}" for k in keys]
          for r in rows]
  note = ("Columns after 'coverage (train)' are G sampled as Steps II–III sample it (64 fixed "
          "latent codes, inference mode); L_* and coverage (train) are the training batch of "
          "that step. 'saturated' is the share of teacher "
          "outputs outside [1e-7, 1 − 1e-7], where the clip zeroes the gradient; 'pull t' is "
          "the RMS over pixels of t's weighted gradient with respect to one image.")
  writers.write_md(os.path.join(out, f"{NAME}.md"), TITLE,
                   [writers.md_table(header, body), note,
                    writers.setting_note(config, common.seeds_from(seeds, 1, quick), quick,
                                         time.time() - start)])
  writers.write_csv(os.path.join(out, f"{NAME}.csv"), rows)
  log(f"[{NAME}] wrote {os.path.join(out, NAME)}.md/.csv")
  return {"rows": rows}


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  settings = common.settings_from_flags(setting_flags=False)
  settings.pop("rows")
  run_suite(summary_every=FLAGS.summary_every_steps, **settings)


if __name__ == "__main__":
  app.run(_main)
