r"""Steps II–III's settings, chosen on the validation split: the sweep behind the defaults of
--target_lr, --finetune_lr_scale, --target_bn, --branch_bn and --finetune_trainable.

  python -m experiments.sweep_student                       # every point, 3 seeds
  python -m experiments.sweep_student --rows=lr0.3,lr0.03 --seeds=1
  python -m experiments.sweep_student --quick --out=/tmp/sw --workdir_root=/tmp/swruns  # smoke

Each point is the quick start's run (2 teachers, labels 0–9 and 10–19 -> all 20, DFKA at the
quick start's budget: Step I 150 steps, 100 per TargetNet block, 100 fine-tuning) with one
setting of Steps II–III. Every point names all five settings, so it means the same whatever
the defaults are. Teachers and Step I are trained once per seed and shared by every point.
Points are scored on scenes20's **validation** split, never on test.

Per point, mean ± sample std over the seeds: T_u before Step III (regrouped, Eq. 18–20),
T_u after it, the TargetNet alone (its own head, no teacher block), the worst seed's T_u
after Step III, and S_m. Points are ranked by T_u after Step III less its std over the
seeds (what a user gets, and how much it moves with the seed); the points within 1 mAP point
of the best are ranked by the TargetNet alone (what Steps II–III taught its own blocks), and
those within a point of each other there too by the fewest settings changed from the centre.

Writes --out/sweep_student.md, .csv (one line per point), _seeds.csv, and each point's
record in sweep_student_rows/ (a rerun reuses them). A point takes about a minute on 2 CPU
cores once its seed's teachers and G exist.
"""

import os
import time
from typing import Dict, List

from absl import app

from . import suite_cache
from . import suite_writers as writers
from . import suites_common as common
from . import table2

NAME = "sweep_student"
TITLE = "Steps II–III's settings on the validation split (the quick start's run)"
# The quick start's budget for Steps I–III, over the suites' tables preset.
SETTING = dict(table2.setting(), method="dfka", generator_steps=150,
               block_steps=100, finetune_steps=100)
# The centre every point changes: Step II at 0.3 (the teachers' LR), Step III at 0.1x, the
# TargetNet's batch norms trained, Step III training the trunk (the copies kept).
BASE = dict(target_lr=0.3, finetune_lr_scale=0.1, target_bn="train", branch_bn="train",
            finetune_trainable="trunk")
COLUMNS = (("target_lr", "Step II LR"), ("finetune_lr_scale", "Step III LR / Step II LR"),
           ("target_bn", "TargetNet BN"), ("branch_bn", "branch BN"),
           ("finetune_trainable", "Step III trains"))


def _point(name: str, group: str, **changes) -> common.Row:
  return common.Row(name, dict(BASE, **changes), group=group)


def points() -> List[common.Row]:
  """Every point of the sweep, by the setting it varies."""
  return [
      *[_point(f"lr{lr:g}", "Step II LR (Step III at 0.1x)", target_lr=lr)
        for lr in (0.3, 0.03, 0.01)],
      *[_point(f"lr{lr:g}_bnfrozen", "TargetNet BN frozen", target_lr=lr, target_bn="frozen")
        for lr in (0.3, 0.03, 0.01)],
      _point("lr0.03_all", "Step III trains all of T_u", target_lr=0.03,
             finetune_trainable="all"),
      _point("lr0.03_all_branchfrozen", "Step III trains all of T_u", target_lr=0.03,
             finetune_trainable="all", branch_bn="frozen"),
      _point("lr0.01_ft1", "Step III LR", target_lr=0.01, finetune_lr_scale=1.0),
  ]


# Points whose T_u score is within this many mAP points of the best are tied on T_u.
TIE = 1.0


def score(s: Dict) -> float:
  """T_u after Step III less its std over the seeds: what a user gets, and how much it
  moves with the seed."""
  std = s["map_std"]
  return writers.finite(s["map_mean"]) - (std if std == std else 0.0)


def changes(s: Dict) -> int:
  """How many of the settings a point changes from BASE."""
  return sum(s.get(k, BASE[k]) != BASE[k] for k, _ in COLUMNS)


def ranked(summaries: List[Dict]) -> List[Dict]:
  """Best first. The points within TIE of the best `score` are ranked by the TargetNet alone
  (what Steps II–III taught the TargetNet's own blocks); those within TIE of the best
  TargetNet alone too come first, the one changing fewest settings from BASE first (no
  setting is added without a measured gain). The rest follow by `score`."""
  best = max(score(s) for s in summaries)
  tied = [s for s in summaries if score(s) >= best - TIE]
  best_alone = max(writers.finite(s["targetnet_map_mean"]) for s in tied)
  first = sorted((s for s in tied if writers.finite(s["targetnet_map_mean"]) >= best_alone - TIE),
                 key=lambda s: (changes(s), -score(s)))
  then = sorted((s for s in tied if writers.finite(s["targetnet_map_mean"]) < best_alone - TIE),
                key=lambda s: (-writers.finite(s["targetnet_map_mean"]), -score(s)))
  rest = sorted((s for s in summaries if score(s) < best - TIE), key=lambda s: -score(s))
  return first + then + rest


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              rows=None, log=print):
  overrides = common.validation_overrides(overrides)
  start = time.time()
  chosen = common.select(points(), rows)
  stages = suite_cache.Stages(workdir_root, progress=progress, log=log)
  seeds = common.seeds_from(seeds, 3, quick)
  setting = {} if quick else SETTING
  runs, config = common.run_rows(NAME, chosen, stages, setting=dict(setting, num_teachers=2,
                                                                    method="dfka"),
                                 quick=quick, seeds=seeds, overrides=overrides,
                                 records=suite_cache.Records(os.path.join(out, f"{NAME}_rows")),
                                 log=log)
  labels = runs[chosen[0].name][0]["labels"]
  summaries, per_seed = [], []
  for row in chosen:
    s = writers.summarize(row.name, runs[row.name], labels)
    s.update(group=row.group, **{k: row.overrides[k] for k, _ in COLUMNS})
    s["worst_map"] = min(writers.pct(r.get("target_map")) for r in runs[row.name])
    s["branch_out"] = [r.get("branch_out") for r in runs[row.name]]
    summaries.append(s)
    per_seed += writers.per_seed_rows(row.name, runs[row.name], labels)
  order = ranked(summaries)
  header = (["group", "point"] + [c for _, c in COLUMNS]
            + ["T_u before Step III", "T_u after Step III", "worst seed", "TargetNet alone",
               "S_m per seed"])
  body = [[s["group"], s["row"]] + [s[k] for k, _ in COLUMNS]
          + [writers.fmt(s["regrouped_map_mean"], s["regrouped_map_std"]),
             writers.fmt(s["map_mean"], s["map_std"]), writers.fmt(s["worst_map"]),
             writers.fmt(s["targetnet_map_mean"], s["targetnet_map_std"]),
             " ".join(_branch(b) for b in s["branch_out"])] for s in summaries]
  best = order[0]
  teachers = writers.mean_std(s["teacher_map_mean"] for s in summaries)[0]
  sections = [
      writers.md_table(header, body),
      f"Best by T_u after Step III less its std over the seeds; points within {TIE:g} of "
      f"the best ranked by the TargetNet alone, and where that is within {TIE:g} too, by the "
      f"fewest settings changed: **{best['row']}**, T_u "
      f"{writers.fmt(best['map_mean'], best['map_std'])} (before Step III "
      f"{writers.fmt(best['regrouped_map_mean'], best['regrouped_map_std'])}), TargetNet "
      f"alone {writers.fmt(best['targetnet_map_mean'], best['targetnet_map_std'])}; teachers "
      f"{writers.fmt(teachers)} on the validation split. Ranking: "
      + ", ".join(f"{s['row']} {writers.fmt(s['map_mean'], s['map_std'])}" for s in order)
      + ".",
      "mAP in % on scenes20's validation split, mean ± sample std over the seeds. T_u before "
      "Step III: regrouped by Eq. 18–20 from Step II's TargetNet, before fine-tuning. "
      "TargetNet alone: the TargetNet as Step II left it, its own head and no teacher block. "
      "S_m per seed: the branch-out block of teacher 1 and teacher 2 (Eq. 18). BN frozen: "
      "the batch norms keep the start's (TargetNet) or the teacher's (branches) statistics "
      "and affine parameters, in inference mode (`freeze_batchnorm`)."]
  return writers.write_sweep(out, NAME, TITLE, sections, summaries=summaries,
                             per_seed=per_seed, best=best["row"], runs=runs, config=config,
                             seeds=seeds, quick=quick, seconds=time.time() - start, log=log)


def _branch(branch_out) -> str:
  return "/".join(str(v) for v in branch_out.values()) if branch_out else "—"


if __name__ == "__main__":
  app.run(common.suite_main(run_suite, setting_flags=False))
