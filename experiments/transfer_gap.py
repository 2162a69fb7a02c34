r"""Where Step II's fit holds: the TargetNet alone against the teachers, on G's images and on
real ones.

  python -m experiments.transfer_gap                       # the sweep's points, seed 0
  python -m experiments.transfer_gap --rows=paper,a0.1_b5_g10 --seeds=3
  python -m experiments.transfer_gap --quick --out=/tmp/gap --workdir_root=/tmp/gapruns  # smoke

For finished sweep points (`experiments.sweep`, Table 2's DFKA row on the validation split;
a point not finished under --workdir_root is trained first) it takes the TargetNet as Step
II left it and scores how well it reproduces the teachers, with the teachers' own
predictions (p ≥ 0.5) as the labels:

- on 2000 images of G, sampled as Steps II–III sample them (the images it was trained on
  come from the same G; these are fresh latent codes);
- on the 2000 real images of scenes20's validation split.

Row "ka" (Steps II–III on real unlabeled images, no G) calibrates the second figure: how
well Step II fits the teachers on real images when it trains on real images.

Beside them, the TargetNet alone and the teachers on the validation split's true labels (the
sweep's figures). The first figure against KA's second says how far Step II fits the
teachers on the images it trains on; the second against the first says how much of that fit
carries to real images.

Writes --out/transfer_gap.md and transfer_gap.csv (one line per point and seed).
"""

import os
import time

import numpy as np
from absl import app

from . import suite_cache
from . import suite_writers as writers
from . import suites_common as common
from . import sweep

NAME = "transfer_gap"
TITLE = "The TargetNet alone against the teachers, on G's images and on real ones"
NUM_IMAGES = 2000
DEFAULT_ROWS = ("ka", "paper", "a0.1_b5_g5", "a0.1_b5_g10", "a0_b5_g5")


def _agreement(config, num_images: int):
  """(on G's images, on real images): mAP of the TargetNet alone against the teachers'
  predictions p >= 0.5 (teachers' labels), with each set's share of positive labels."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from dfka_tf import data as dfka_data  # pylint: disable=g-import-not-at-top
  from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
  from dfka_tf.eval import metrics  # pylint: disable=g-import-not-at-top
  from dfka_tf.stages import evaluation, images, student  # pylint: disable=g-import-not-at-top
  from dfka_tf.stages import teachers as teacher_stages  # pylint: disable=g-import-not-at-top

  run, inputs = pipeline.start(config, progress=False, resume=True)
  nets = teacher_stages.teachers(run, inputs)
  trainer = images.generator(run, nets)  # Finished: restored, not trained; None for KA.
  task = inputs.task
  alone = student.step2_target_net(run, task, len(nets[0].blocks))
  teacher_fn = evaluation.teachers_fn(nets, task)
  batch = config.eval.batch_size
  g_batch = config.runtime.batch_size  # Steps II-III's batch (G's BN in training mode).

  def scores(batches):
    t, s = [], []
    for x in batches:
      t.append(teacher_fn(x).numpy())
      s.append(alone(x, training=False).numpy())
    return np.concatenate(t), np.concatenate(s)

  real = (b["image"] for b in dfka_data.load(config.data.dataset, config.eval.split,
                                              data_dir=config.data.data_dir,
                                              image_size=config.data.image_size,
                                              batch_size=batch))
  sets = [("real", real)]
  out = {"generated_agreement": float("nan"), "generated_positives": float("nan"),
         "generated_labels": 0}
  if trainer is not None:
    # Fresh latent codes, stateless so no training stream is drawn; G in the mode Steps
    # II-III sample it in.
    g = trainer.generator
    training = config.source.generator_mode == "training"
    z = tf.random.stateless_normal([num_images, g.latent_dim], seed=[config.seed, 97])
    sets.append(("generated", (g(z[i:i + g_batch], training=training)[-1]
                               for i in range(0, num_images, g_batch))))
  for name, batches in sets:
    t, s = scores(batches)
    labels = (t >= 0.5).astype(np.float32)
    ap, skipped = metrics.nanmean_ap(metrics.average_precision_per_label(s, labels))
    out[f"{name}_agreement"] = 100.0 * float(ap)
    out[f"{name}_labels"] = labels.shape[1] - int(skipped)  # Labels the teachers predict.
    out[f"{name}_positives"] = float(labels.mean())
  return out


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              rows=None, log=print):
  start = time.time()
  overrides = dict(overrides or {}, eval_split="validation")
  # KA (Steps II-III on real unlabeled images) calibrates the agreement on real images.
  ka = common.Row("ka", {"method": "ka"}, group="KA")
  chosen = common.select(sweep.points() + [ka], list(rows or DEFAULT_ROWS))
  stages = suite_cache.Stages(workdir_root, progress=progress, log=log)
  num_images = 2 * common.QUICK_POOL_IMAGES if quick else NUM_IMAGES
  lines = []
  for seed in common.seeds_from(seeds, 1, quick):
    for row in chosen:
      config = common.row_config(row, setting=sweep.SETTING, quick=quick, seed=seed,
                                 overrides=overrides)
      results = stages.run(config)  # A finished point is reused, not trained again.
      gap = _agreement(config.replace(workdir=results["workdir"]), num_images)
      lines.append(dict(point=row.name, seed=seed, **gap,
                        targetnet_map=writers.pct(results.get("targetnet_map")),
                        teacher_map=writers.pct(results.get("teacher_map")),
                        branch_out=results.get("branch_out")))
      log(f"[{NAME}] seed {seed} {row.name}: agreement on G {gap['generated_agreement']:.1f}, "
          f"on real {gap['real_agreement']:.1f}")
  header = ["point", "seed", "agreement on G's images", "agreement on real images",
            "labels counted (G / real)", "teachers' positives (G / real)",
            "TargetNet alone (true labels)", "teachers (true labels)"]
  share = lambda x: "—" if x != x else f"{100 * x:.1f} %"  # NaN: no G (KA).
  body = [[l["point"], l["seed"], writers.fmt(l["generated_agreement"]),
           writers.fmt(l["real_agreement"]), f"{l['generated_labels']} / {l['real_labels']}",
           f"{share(l['generated_positives'])} / {share(l['real_positives'])}",
           writers.fmt(l["targetnet_map"]), writers.fmt(l["teacher_map"])] for l in lines]
  note = (f"Agreement: mAP (%) of the TargetNet as Step II left it against the teachers' "
          f"predictions p ≥ 0.5 as labels, on {num_images} images of G (fresh latent codes, "
          f"sampled as Steps II–III sample G) and on scenes20's validation split; a label the "
          f"teachers never predict is left out of the mean (labels counted). A label's AP at "
          f"chance is its share of positives, so the two agreements have different floors. "
          f"Positives: the share of (image, label) pairs the teachers call present. True "
          f"labels: the validation split's own.")
  config = common.row_config(common.Row("base", {}), setting=sweep.SETTING, quick=quick,
                             seed=lines[0]["seed"], overrides=overrides)
  writers.write_md(os.path.join(out, f"{NAME}.md"), TITLE,
                   [writers.md_table(header, body), note,
                    writers.setting_note(config, sorted({l["seed"] for l in lines}), quick,
                                         time.time() - start)])
  writers.write_csv(os.path.join(out, f"{NAME}.csv"), lines)
  log(f"[{NAME}] wrote {os.path.join(out, NAME)}.md/.csv")
  return {"lines": lines}


if __name__ == "__main__":
  app.run(common.suite_main(run_suite, setting_flags=False))
