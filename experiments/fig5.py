r"""Paper Fig. 5: label distribution of the teachers' predictions on generated images.

  python -m experiments.fig5                        # 1 teacher (20 labels), 1 seed
  python -m experiments.fig5 --teachers=2 --num_images=2000
  python -m experiments.fig5 --quick --out=/tmp/f5 --workdir_root=/tmp/f5runs  # smoke

For Step I generators trained without L_dis (row gamma0) and with each reading of Eq. 8
(row sparse: +L1, the text's "sparse outputs"; row printed: the printed −L1), it counts
how often each teacher label is predicted (p > 0.5) on --num_images generated images. The
teachers' predictions on real test images are the reference. The paper claims L_dis makes
the distribution more even; `evenness` (entropy of the label histogram / log C, 1 = even)
measures that; docs/design.md ("L_dis sign") reads the result, and says why the default
sign rests on the paper's text instead. Only Step I runs (generators are shared with the
table suites under the same --workdir_root).

Writes --out/fig5.md, fig5.csv (one line per setting), fig5.png (histograms).
Runtime on 2 CPU cores: 93 s (three Step I generators on 1 teacher, whose training was reused
from Table 1), with other jobs sharing the cores.
"""

import os
import time

from absl import app
from absl import flags

from . import suite_cache
from . import suite_writers as writers
from . import suites_common as common

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 1000, "fig5: generated images per histogram.")

NAME = "fig5"
TITLE = "Fig. 5: label distribution of generated images, without / with L_dis"
SETTINGS = [common.Row("gamma0", {"gamma": 0.0}), common.Row("sparse", {"dis_sign": "sparse"}),
            common.Row("printed", {"dis_sign": "printed"})]
DESCRIPTION = {"gamma0": "no L_dis (gamma = 0)", "sparse": "L_dis sparse (+L1)",
               "printed": "L_dis printed (-L1)", "real": "real test images (reference)"}
REAL = "real"


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              rows=None, teachers=None, labels=None, num_images=1000, log=print):
  from dfka_tf import analysis  # pylint: disable=g-import-not-at-top
  start = time.time()
  if labels:
    raise app.UsageError("fig5 looks at every teacher label; leave --labels unset.")
  seeds = common.seeds_from(seeds, 1, quick)
  stages = suite_cache.Stages(workdir_root, progress=progress, log=log)
  setting = dict(method="dfka", num_teachers=teachers or 1)
  settings = common.select(SETTINGS, rows)
  hists = {r.name: [] for r in settings + [common.Row(REAL, {})]}
  config = None
  for seed in seeds:
    for row in settings:
      name = row.name
      config = common.row_config(row, setting=setting, quick=quick, seed=seed,
                                 overrides=overrides or {})
      generator, teacher_nets = stages.load_generator(config)
      h = analysis.label_histogram(generator, teacher_nets, n=num_images, seed=seed)
      hists[name].append(h)
      log(f"[{NAME}] seed {seed} {name}: evenness {h['evenness']:.3f}, "
          f"{h['labels_per_image']:.2f} labels/image, {100 * h['empty_fraction']:.0f}% empty")
    real = common.real_images(config, num_images)
    teacher_nets = stages.load_teachers(config)
    hists[REAL].append(analysis.histogram_of(
        analysis.teacher_predictions(real, teacher_nets),
        [n for t in teacher_nets for n in t.label_names]))
  names = hists[REAL][0]["labels"]
  seconds = time.time() - start

  rows = []
  for name, hs in hists.items():
    row = {"setting": name, "description": DESCRIPTION[name], "seeds": len(hs),
           "num_images": hs[0]["num_images"]}
    for key in ("evenness", "labels_per_image", "empty_fraction"):
      row[f"{key}_mean"], row[f"{key}_std"] = writers.mean_std(h[key] for h in hs)
    for i, n in enumerate(names):
      row[f"{n}_fraction"], _ = writers.mean_std(h["fraction"][i] for h in hs)
    rows.append(row)
  header = ["setting", "evenness (1 = even)", "labels / image", "images with no label",
            "most frequent label"]
  body = []
  for r in rows:
    fr = [r[f"{n}_fraction"] for n in names]
    top = max(range(len(names)), key=lambda i: fr[i])
    body.append([DESCRIPTION[r["setting"]],
                 writers.fmt(r["evenness_mean"], r["evenness_std"], 3),
                 writers.fmt(r["labels_per_image_mean"], digits=2),
                 f"{100 * r['empty_fraction_mean']:.0f}%",
                 f"{names[top]} ({100 * fr[top]:.0f}% of images)"])
  sections = [writers.md_table(header, body),
              f"Teacher predictions p > 0.5 on {num_images} images per setting (generated: "
              "last group of G, latent codes from a fixed stateless seed). Fractions per "
              "label are in fig5.csv and plotted in fig5.png.",
              writers.setting_note(common.row_config(common.Row("base", {}), setting=setting,
                                                     quick=quick, seed=seeds[0],
                                                     overrides=overrides or {}),
                                   seeds, quick, seconds)]
  os.makedirs(out, exist_ok=True)
  writers.write_md(os.path.join(out, f"{NAME}.md"), TITLE, sections)
  writers.write_csv(os.path.join(out, f"{NAME}.csv"), rows)
  _plot(os.path.join(out, f"{NAME}.png"), rows, names)
  log(f"[{NAME}] wrote {os.path.join(out, NAME)}.md/.csv/.png in {seconds:.0f}s")
  return {"rows": rows, "histograms": hists, "seconds": seconds}


def _plot(path, rows, names):
  plt = writers.pyplot()
  fig, axes = plt.subplots(len(rows), 1, figsize=(max(6, 0.4 * len(names) + 2),
                                                  1.8 * len(rows)), sharex=True)
  for ax, r in zip(axes, rows):
    ax.bar(range(len(names)), [100 * r[f"{n}_fraction"] for n in names], color="#4c72b0")
    ax.set_ylabel("% images", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_title(f"{DESCRIPTION[r['setting']]} (evenness {r['evenness_mean']:.2f})", fontsize=9)
  axes[-1].set_xticks(range(len(names)))
  axes[-1].set_xticklabels(names, rotation=60, ha="right", fontsize=7)
  writers.save_figure(fig, path)


if __name__ == "__main__":
  app.run(common.suite_main(run_suite, lambda: dict(num_images=FLAGS.num_images)))
