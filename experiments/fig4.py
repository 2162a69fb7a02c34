r"""Paper Fig. 4: generated images next to real test images, random noise and DAFL.

  python -m experiments.fig4                        # 1 teacher (20 labels), seed 0
  python -m experiments.fig4 --teachers=2 --bns_weight=0
  python -m experiments.fig4 --quick --out=/tmp/f4 --workdir_root=/tmp/f4runs  # smoke

Panels (CSV rows real, noise, dafl, dfka, dfka+bns; --rows picks generators): real
scenes20 test images; Random Noise (N(0.5, 0.25²) clipped, as the noise
baseline feeds); DAFL's generator as its joint training left it (the DAFL row of Table 1
runs first); the last group of the DFKA group-stack generator; and DFKA + L_bns (beyond the
paper, --bns_weight; 0 drops it). For DFKA only Step I runs; generators and rows are shared
with the table suites under the same --workdir_root. For each panel the Markdown
gives numbers behind the picture: pixel mean, diversity (per-pixel std across images; ~0
means G collapsed to one image), saturated pixels, and the teachers' labels per image and
label evenness on --num_images samples.

Writes --out/fig4.md, fig4.csv (one line per panel), fig4.png (the grid).
Runtime on 2 CPU cores: 8 s with the teachers and generators of Table 1 already cached;
from scratch it also trains one teacher and three generators (not timed; estimate ~7 min).
"""

import os
import time

from absl import app
from absl import flags

from . import suite_cache
from . import suite_writers as writers
from . import suites_common as common

FLAGS = flags.FLAGS
flags.DEFINE_integer("grid_images", 16, "fig4: images per panel.")

NAME = "fig4"
TITLE = "Fig. 4: generated images vs real test images"
DESCRIPTION = {"real": "real test images", "noise": "Random Noise", "dafl": "DAFL",
               "dfka": "DFKA (ours, last group)", "dfka+bns": "DFKA + L_bns"}


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              rows=None, teachers=None, labels=None, bns_weight=20.0, grid_images=16,
              num_images=500, log=print):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from dfka_tf import analysis  # pylint: disable=g-import-not-at-top
  start = time.time()
  if labels:
    raise app.UsageError("fig4 shows images for every teacher label; leave --labels unset.")
  seed = common.seeds_from(seeds, 1, quick)[0]
  stages = suite_cache.Stages(workdir_root, progress=progress, log=log)
  setting = dict(num_teachers=teachers or 1)
  generators = [common.Row("dafl", {"method": "dafl"}), common.Row("dfka", {"method": "dfka"})]
  if bns_weight > 0:
    generators.append(common.bns_row(bns_weight))
  generators = common.select(generators, rows)
  configs = {r.name: common.row_config(r, setting=setting, quick=quick, seed=seed,
                                       overrides=overrides or {}) for r in generators}
  config = common.row_config(common.Row("dfka", {"method": "dfka"}), setting=setting,
                             quick=quick, seed=seed, overrides=overrides or {})
  teacher_nets = stages.load_teachers(config)
  label_names = [n for t in teacher_nets for n in t.label_names]
  shape = [num_images, config.data.image_size, config.data.image_size, 3]
  noise = tf.clip_by_value(0.5 + 0.25 * tf.random.stateless_normal(shape, seed=[seed, 5]),
                           0.0, 1.0).numpy()
  panels = [("real", common.real_images(config, num_images)), ("noise", noise)]
  for row in generators:
    generator, teacher_nets = stages.load_generator(configs[row.name])
    panels.append((row.name, analysis.generated_images(generator, num_images, seed=seed)))

  table = []
  for name, images in panels:
    stats = analysis.image_statistics(images)
    hist = analysis.histogram_of(analysis.teacher_predictions(images, teacher_nets),
                                 label_names)
    table.append({"panel": name, "description": DESCRIPTION[name], **stats,
                  "labels_per_image": hist["labels_per_image"], "evenness": hist["evenness"],
                  "empty_fraction": hist["empty_fraction"]})
  seconds = time.time() - start
  header = ["panel", "pixel mean", "diversity", "saturated", "teacher labels / image",
            "label evenness"]
  body = [[r["description"], f"{r['mean']:.3f}", f"{r['diversity']:.3f}",
           f"{100 * r['saturated_fraction']:.0f}%", f"{r['labels_per_image']:.2f}",
           f"{r['evenness']:.3f}"] for r in table]
  sections = ["![Fig. 4](fig4.png)", writers.md_table(header, body),
              f"Statistics over {num_images} images per panel (seed {seed}); the grid shows "
              f"the first {grid_images}. Diversity is the per-pixel std across images.",
              writers.setting_note(config, [seed], quick, seconds)]
  os.makedirs(out, exist_ok=True)
  writers.write_md(os.path.join(out, f"{NAME}.md"), TITLE, sections)
  writers.write_csv(os.path.join(out, f"{NAME}.csv"), table)
  _plot(os.path.join(out, f"{NAME}.png"),
        [(DESCRIPTION[n], im[:grid_images]) for n, im in panels])
  log(f"[{NAME}] wrote {os.path.join(out, NAME)}.md/.csv/.png in {seconds:.0f}s")
  return {"rows": table, "seconds": seconds}


def _plot(path, panels):
  from dfka_tf import report  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0), squeeze=False)
  for ax, (name, images) in zip(axes[0], panels):
    ax.imshow(report.image_grid(images, columns=4))
    ax.set_title(name, fontsize=9)
    ax.axis("off")
  writers.save_figure(fig, path)


if __name__ == "__main__":
  app.run(common.suite_main(
      run_suite, lambda: dict(bns_weight=FLAGS.bns_weight, grid_images=FLAGS.grid_images)))
