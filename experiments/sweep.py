r"""Step I's settings, chosen on the validation split: the sweep behind the scenes20 defaults.

  python -m experiments.sweep                                  # every point, seed 0
  python -m experiments.sweep --rows=paper,a0.1_b5_g10 --seeds=3   # kept ones, 3 seeds
  python -m experiments.sweep --quick --out=/tmp/sw --workdir_root=/tmp/swruns   # smoke

Each point is Table 2's DFKA row (2 teachers, labels 0–9 and 10–19 -> all 20) at the
tables' budget with one setting of Step I (α, β, γ, the reading of L_dis, ε, G's image head)
or of how Steps II–III sample G. Every point names all of these, so it means the same
whatever the defaults are. It is scored on scenes20's **validation** split, never on test:
this is what settings are tuned on; the tables report on test.

Per point: T_u's mAP, the TargetNet alone (its own head, no teacher block: T_u at S_m = 1
scores near the teachers whatever Steps II–III taught, docs/results.md, "The S_m = 1
probe"), S_m, and G at the end of Step I as Steps II–III sample it (from its TensorBoard
log): the share of labels it covers, labels per image and the share of saturated teacher
outputs. Points are ranked by the TargetNet alone, T_u breaking ties.

Writes --out/sweep.md, sweep.csv (one line per point), sweep_seeds.csv, and each point's
record in sweep_rows/ (a rerun reuses them). One point takes about 3 minutes on 2 CPU cores
once the teachers exist.
"""

import json
import os
import time
from typing import Dict, List

from absl import app

from . import suite_cache
from . import suite_writers as writers
from . import suites_common as common
from . import table2

NAME = "sweep"
TITLE = "Step I's settings on the validation split (Table 2's setting, DFKA)"
SETTING = dict(table2.setting(), method="dfka")

# S-Table 1 as printed, and how Steps II–III sample G in this implementation before the sweep.
PAPER = dict(alpha=1.0, beta=1.0, gamma=5.0, dis_sign="sparse", epsilon=0.5,
             image_head="sigmoid", generator_mode="inference")
# DAFL's code weighs L_a 0.1 and L_ie 5 (its L_oh 1); the sweep's centre.
DAFL = dict(PAPER, alpha=0.1, beta=5.0)
COLUMNS = (("alpha", "α"), ("beta", "β"), ("gamma", "γ"), ("dis_sign", "L_dis"),
           ("epsilon", "ε"), ("image_head", "head"), ("generator_mode", "G sampled in"))
DIAGNOSTICS = ("label_coverage", "labels_per_image", "saturated_outputs")


def _point(name: str, group: str, base: Dict, **changes) -> common.Row:
  return common.Row(name, dict(base, **changes), group=group)


def points() -> List[common.Row]:
  """Every point of the sweep, by the setting it varies."""
  return [
      _point("paper", "S-Table 1 as printed", PAPER),
      *[_point(f"a{a:g}_b5_g5", "α (β 5, γ 5)", DAFL, alpha=a) for a in (1, 0.3, 0.1, 0.03, 0)],
      *[_point(f"a0.1_b{b:g}_g5", "β (α 0.1, γ 5)", DAFL, beta=b) for b in (1, 2, 10)],
      *[_point(f"a0.1_b5_g{g:g}", "γ (α 0.1, β 5)", DAFL, gamma=g) for g in (0, 1, 10, 20)],
      _point("a0.1_b1_g1", "γ (α 0.1, β 5)", DAFL, beta=1.0, gamma=1.0),
      _point("a0.1_b5_g5_printed", "reading of L_dis", DAFL, dis_sign="printed"),
      *[_point(f"a0.1_b5_g5_eps{e:g}", "ε of L_oh", DAFL, epsilon=e) for e in (0.3, 0.7)],
      _point("paper_training", "G sampled in training mode", PAPER, generator_mode="training"),
      _point("a0.1_b5_g5_training", "G sampled in training mode", DAFL,
             generator_mode="training"),
      _point("paper_dafl_head", "DAFL's image head", PAPER, image_head="dafl"),
      _point("a0.1_b5_g5_dafl_head", "DAFL's image head", DAFL, image_head="dafl"),
  ]


def step1_diagnostics(stages: suite_cache.Stages, config) -> Dict[str, float]:
  """G at the last sampled summary of Step I (empty when none was written)."""
  logged = common.read_log(os.path.join(stages.generator_dir(config), "logs", "generator"))
  steps = [s for s, v in logged.items() if "sampled/label_coverage" in v]
  if not steps:
    return {}
  return {k: logged[max(steps)][f"sampled/{k}"] for k in DIAGNOSTICS}


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              rows=None, log=print):
  overrides = common.validation_overrides(overrides)
  start = time.time()
  chosen = common.select(points(), rows)
  stages = suite_cache.Stages(workdir_root, progress=progress, log=log)
  seeds = common.seeds_from(seeds, 1, quick)
  runs, config = common.run_rows(NAME, chosen, stages, setting=SETTING, quick=quick,
                                 seeds=seeds, overrides=overrides,
                                 records=suite_cache.Records(os.path.join(out, f"{NAME}_rows")),
                                 log=log)
  labels = runs[chosen[0].name][0]["labels"]
  summaries, per_seed = [], []
  for row in chosen:
    s = writers.summarize(row.name, runs[row.name], labels)
    s.update(group=row.group, **{k: row.overrides[k] for k, _ in COLUMNS})
    diag = [step1_diagnostics(stages, common.row_config(
        row, setting=SETTING, quick=quick, seed=seed, overrides=overrides)) for seed in seeds]
    for k in DIAGNOSTICS:
      s[k] = writers.mean_std(d.get(k) for d in diag)[0]
    s["branch_out"] = runs[row.name][0].get("branch_out")
    summaries.append(s)
    per_seed += writers.per_seed_rows(row.name, runs[row.name], labels)
  ranked = sorted(summaries, key=lambda s: (-writers.finite(s["targetnet_map_mean"]),
                                            -writers.finite(s["map_mean"])))
  header = (["group", "point"] + [c for _, c in COLUMNS]
            + ["T_u mAP", "TargetNet alone", "S_m", "coverage", "labels/image", "saturated"])
  body = [[s["group"], s["row"]] + [s[k] for k, _ in COLUMNS]
          + [writers.fmt(s["map_mean"], s["map_std"]),
             writers.fmt(s["targetnet_map_mean"], s["targetnet_map_std"]),
             _branch(s["branch_out"])]
          + [writers.fmt(s[k], digits=2) for k in DIAGNOSTICS] for s in summaries]
  best = ranked[0]
  teachers = writers.mean_std(s["teacher_map_mean"] for s in summaries)[0]
  sections = [
      writers.md_table(header, body),
      f"Best by the TargetNet alone (T_u breaking ties): **{best['row']}**, TargetNet alone "
      f"{writers.fmt(best['targetnet_map_mean'])}, T_u {writers.fmt(best['map_mean'])} "
      f"(teachers {writers.fmt(teachers)} on the validation split). Ranking: "
      + ", ".join(f"{s['row']} {writers.fmt(s['targetnet_map_mean'])}" for s in ranked) + ".",
      "mAP in % on scenes20's validation split (2000 images), mean ± sample std over the "
      "seeds. TargetNet alone: the TargetNet as Step II left it, its own head and no "
      "teacher block. S_m: branch-out block per teacher (Eq. 18), first seed. coverage, "
      "labels/image, saturated: G at the end of Step I on 64 fixed latent codes in "
      "inference mode (`GeneratorTrainer.summarize`), the share of the 20 labels predicted "
      "at all, labels predicted per image, and the share of teacher outputs outside "
      "[1e-7, 1 − 1e-7]; — where Step I wrote no sampled summary."]
  return writers.write_sweep(out, NAME, TITLE, sections, summaries=summaries,
                             per_seed=per_seed, best=best["row"], runs=runs, config=config,
                             seeds=seeds, quick=quick, seconds=time.time() - start, log=log)


def _branch(branch_out) -> str:
  return json.dumps(branch_out) if branch_out else "—"


if __name__ == "__main__":
  app.run(common.suite_main(run_suite, setting_flags=False))
