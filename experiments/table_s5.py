r"""Supplementary Table 5 and Fig. 3: two teachers -> a customized pair of labels.

  python -m experiments.table_s5                    # 1st label of each teacher, 1 seed
  python -m experiments.table_s5 --labels=star,ellipse
  python -m experiments.table_s5 --quick --out=/tmp/s5 --workdir_root=/tmp/s5runs  # smoke

The paper picks 'bus' from teacher 1 and 'table' from teacher 2 (S-§3.2); here the default
pair is the first label of each scenes20 teacher. Reported:
- S-Table 5: AP of each label and mAP of the teachers, Random Noise, and the branched T_u
  (ours), with parameters of T_u vs the teachers; KA and a one-group generator (K = 1) are
  extra rows (ka, dfka_k1), the two curves S-Fig. 3 compares with.
- S-Fig. 3 (per-block AP during block-wise training): after Step II, T_u branched at block
  b (S_m = b for both teachers, T^1..T^b then the teachers' filtered tails, no fine-tuning)
  is evaluated for b = 1..B. These rows reuse the Step I–II checkpoints of the main rows, so
  they cost one evaluation each.
- η^{b,m} (Eq. 18) of every block and the branch-out blocks S_m picked from it.

Writes --out/table_s5.md, table_s5.csv (main rows), table_s5_blocks.csv (per block),
table_s5_seeds.csv, table_s5.png (per-block AP curves).
Runtime on 2 CPU cores: 647 s for one seed (the teachers are reused from Table 2), with
other jobs sharing the cores.
"""

import json
import os
import time

from absl import app
from absl import flags

from . import suite_cache
from . import suite_writers as writers
from . import suites_common as common

FLAGS = flags.FLAGS
flags.DEFINE_list("curves", ["dfka", "ka", "dfka_k1"],  # = CURVES
                  "table_s5: methods whose per-block AP (S-Fig. 3) is measured.")

NAME = "table_s5"
TITLE = "S-Table 5: 2 teachers -> a customized pair of labels"
NUM_BLOCKS = 4
# Paper S-Table 5 (VOC07; 'table' and 'bus'): mAP and parameters.
PAPER = {"teacher": (74.8, "~88.7 M"), "noise": (5.0, "-"), "dfka": (71.7, "~59.8 M")}
ROWS = [common.Row("teacher", {"method": "teacher"}, PAPER["teacher"][0]),
        common.Row("noise", {"method": "noise"}, PAPER["noise"][0]),
        common.Row("ka", {"method": "ka"}),
        common.Row("dfka_k1", {"method": "dfka", "groups": 1}),
        common.Row("dfka", {"method": "dfka"}, PAPER["dfka"][0])]
CURVES = ("dfka", "ka", "dfka_k1")  # The rows S-Fig. 3 draws per block.


def default_pair():
  from dfka_tf import data  # pylint: disable=g-import-not-at-top
  split = data.teacher_label_split(common.DATASET, 2)
  return [split[0][0], split[1][0]]


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              rows=None, teachers=None, labels=None, curves=CURVES, log=print):
  start = time.time()
  if teachers not in (None, 2):
    raise app.UsageError("table_s5 amalgamates two teachers; leave --teachers unset.")
  unknown = sorted(set(curves) - set(CURVES))
  if unknown:
    raise app.UsageError(f"--curves: unknown {unknown}; use {list(CURVES)}.")
  labels = list(labels) if labels else default_pair()
  seeds = common.seeds_from(seeds, 1, quick)
  overrides = overrides or {}
  setting = dict(num_teachers=2, labels=tuple(labels))
  # A curve needs its row's Steps I–II, so a curve's row always runs.
  rows = common.select(ROWS, None if rows is None else list(rows) + list(curves))
  by_name = {r.name: r for r in rows}
  stages = suite_cache.Stages(workdir_root, progress=progress, log=log)
  runs, _ = common.run_rows(NAME, rows, stages, setting=setting, quick=quick,
                                 seeds=seeds, overrides=overrides, log=log)
  names = runs[rows[0].name][0]["labels"]
  summaries = [writers.summarize(r.name, runs[r.name], names) for r in rows]

  # S-Fig. 3: T_u branched at every block, without fine-tuning, on the same Steps I–II.
  block_rows, block_runs = [], []
  for c in curves:
    row = by_name[c]
    for b in range(1, NUM_BLOCKS + 1):
      per_seed = []
      for i, seed in enumerate(seeds):
        cfg = common.row_config(row, setting=setting, quick=quick, seed=seed,
                                overrides=dict(overrides, branch_out=b, finetune_steps=0))
        res = stages.run(cfg, blocks_from=runs[row.name][i]["workdir"])
        per_seed.append(res)
        log(f"[{NAME}] seed {seed} {row.name} branched at block {b}: mAP "
            f"{writers.pct(res.get('target_map')):5.1f}")
      s = writers.summarize(f"{row.name}@block{b}", per_seed, names)
      s.update(curve=row.name, block=b)
      for m in (1, 2):
        s[f"eta_teacher{m}_mean"], _ = writers.mean_std(
            r.get("eta", {}).get(str(b), {}).get(f"teacher{m}") for r in runs[row.name])
      block_rows.append(s)
      block_runs += per_seed
  seconds = time.time() - start

  # ---- Markdown
  header = ["row", *names, "mAP", "paper mAP (VOC07)", "T_u params", "paper params", "S_m"]
  body = []
  for s, r in zip(summaries, rows):
    paper = PAPER.get(r.name, (None, ""))
    branch = runs[r.name][0].get("branch_out")
    body.append([r.name, *[writers.fmt(s[f"{n}_mean"]) for n in names],
                 writers.fmt(s["map_mean"], s["map_std"]),
                 writers.fmt(paper[0] if paper[0] is not None else float("nan")),
                 f"{s['target_params']:,}", paper[1] or "—",
                 json.dumps(branch) if branch else "—"])
  teacher_params = runs[rows[0].name][0]["params"]["teachers"]
  main = "dfka" if "dfka" in runs else rows[-1].name
  main_params = runs[main][0]["params"]["target_net"]
  bheader = ["curve", "block b", "η^{b,1}", "η^{b,2}", *[f"AP {n}" for n in names], "mAP",
             "T_u params"]
  bbody = [[s["curve"], s["block"], f"{s['eta_teacher1_mean']:.4f}",
            f"{s['eta_teacher2_mean']:.4f}", *[writers.fmt(s[f"{n}_mean"]) for n in names],
            writers.fmt(s["map_mean"], s["map_std"]), f"{s['target_params']:,}"]
           for s in block_rows]
  sections = [
      f"Customized labels Y_cst = {names} (teacher 1: {names[0]}, teacher 2: {names[1]}).",
      writers.md_table(header, body),
      f"Parameters: T_u ({main}) {main_params:,} vs teachers {sum(teacher_params):,} "
      f"({' + '.join(f'{p:,}' for p in teacher_params)}); T_u / teachers = "
      f"{main_params / max(sum(teacher_params), 1):.2f} (paper: 59.8 M / 88.7 M = 0.67).",
      "## Per block (S-Fig. 3)\n\nT_u branched at block b for both teachers, right after "
      "Step II (no fine-tuning); η^{b,m} is the converged L_dual^{b,m} (Eq. 18) of the "
      "curve's own run, and S_m = argmin_b η^{b,m}. The paper branches at block 3.\n\n"
      + (writers.md_table(bheader, bbody) if bbody else "(no curves requested)"),
      writers.setting_note(common.row_config(common.Row("base", {}), setting=setting,
                                             quick=quick, seed=seeds[0], overrides=overrides),
                           seeds, quick, seconds)]
  os.makedirs(out, exist_ok=True)
  writers.write_md(os.path.join(out, f"{NAME}.md"), TITLE, sections)
  writers.write_csv(os.path.join(out, f"{NAME}.csv"), summaries)
  writers.write_csv(os.path.join(out, f"{NAME}_blocks.csv"), block_rows)
  writers.write_csv(os.path.join(out, f"{NAME}_seeds.csv"),
                    [x for r in rows for x in writers.per_seed_rows(r.name, runs[r.name], names)]
                    + writers.per_seed_rows("per-block", block_runs, names))
  _plot(os.path.join(out, f"{NAME}.png"), block_rows, summaries, names)
  log(f"[{NAME}] wrote {os.path.join(out, NAME)}.md/.csv/.png in {seconds:.0f}s")
  return {"summaries": summaries, "blocks": block_rows, "runs": runs, "seconds": seconds}


def _plot(path, block_rows, summaries, names):
  plt = writers.pyplot()
  fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
  teacher = next((s for s in summaries if s["row"] == "teacher"), None)
  for ax, n in zip(axes[0], names):
    for curve in dict.fromkeys(s["curve"] for s in block_rows):
      pts = [s for s in block_rows if s["curve"] == curve]
      ax.errorbar([s["block"] for s in pts], [s[f"{n}_mean"] for s in pts],
                  yerr=[s[f"{n}_std"] for s in pts], marker="o", capsize=3, label=curve)
    if teacher is not None:
      ax.axhline(teacher[f"{n}_mean"], color="black", ls="--", lw=1, label="teacher")
    ax.set_xticks(range(1, NUM_BLOCKS + 1))
    ax.set_xlabel("branch-out block b")
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"'{n}' during block-wise training", fontsize=9)
    ax.legend(fontsize=7)
  writers.save_figure(fig, path)


if __name__ == "__main__":
  app.run(common.suite_main(run_suite, lambda: dict(curves=FLAGS.curves)))
