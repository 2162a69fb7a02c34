"""What every experiment suite shares: its flags, its rows and the table driver.

A suite (experiments/table1.py, table2.py, table4.py, table_s3.py, table_s5.py, fig4.py,
fig5.py, ...) is a list of rows; a row is one `RunConfig`, run or reused through the cache
of experiments/suite_cache.py and written by experiments/suite_writers.py.

The library never reads flags: suites call `suite_cache.Stages` and the writers with plain
arguments, and tests call each suite's `run_suite(...)` directly. Importing a suite loads
no TensorFlow, so a bad flag is reported at once; what needs TensorFlow imports it on first
use.
"""

import dataclasses
import json
import os
import time
from typing import Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # pylint: disable=g-import-not-at-top  (after the environment above)
from absl import flags
from absl import logging as absl_logging

from dfka_tf import config as config_lib  # pylint: disable=g-import-not-at-top  (no TensorFlow)
from . import suite_cache
from . import suite_writers as writers

# Flags every suite takes (defined once here, so suites can share one process in tests).
flags.DEFINE_string("out", "results", "Folder for <suite>.md, <suite>.csv and the plot.")
flags.DEFINE_string("workdir_root", os.path.join("runs", "suites"),
                    "Where the shared teachers, generators and row workdirs go.")
flags.DEFINE_bool("quick", False, "Smoke run: one seed, arch=tiny, a few steps per stage "
                  "(numbers are meaningless; used by tests/test_suites.py).")
flags.DEFINE_integer("seeds", None, "Number of seeds (0..N-1); default per suite.")
flags.DEFINE_multi_string("set", [], "Extra RunConfig overrides for every row, by short "
                          "name or dotted path, e.g. --set=generator_steps=600,block_steps=300 "
                          "or --set=student.block_steps=300 (repeatable).")
flags.DEFINE_float("bns_weight", 20.0, "L_bns weight of the 'dfka+bns' row (beyond the "
                   "paper; 0 drops the row).")
flags.DEFINE_float("lh_weight", 0.0, "L_H weight of a 'dfka+lh' row (IFHE's auxiliary "
                   "classifier, beyond the paper; 0, the default, leaves the row out: at "
                   "weight 1 it measured at chance on scenes20_colour).")
flags.DEFINE_integer("pool_images", 1024, "Images of the 'pool' row's DeepInversion pool "
                     "(beyond the paper; 0 drops the row).")
flags.DEFINE_bool("quiet", False, "No per-stage progress bars (one line per row remains).")
flags.DEFINE_list("rows", None, "Run only these rows (by their name in the table, e.g. "
                  "--rows=teacher,dfka); default every row.")
flags.DEFINE_integer("teachers", None, "Number of teachers M (table4, table_s3, fig4, fig5; "
                     "default per suite).")
flags.DEFINE_list("labels", None, "Customized labels Y_cst (table4, table_s3, table_s5; "
                  "default per suite).")

DATASET = suite_cache.DATASET


def base_overrides(quick: bool, extra: Optional[Dict] = None) -> Dict:
  """RunConfig overrides every row of a suite starts from."""
  extra = dict(extra or {})
  # A --set=preset=... goes on top of the suite's own (tables or quick), not instead of it.
  presets = ["quick" if quick else "tables"] + config_lib.preset_names(extra.pop("preset", None))
  base = {"preset": ",".join(presets)}
  base.update(export=False)  # Suites compare numbers; the SavedModel is not needed.
  base.update(extra)
  return base


def scenes_labels(first: int) -> List[str]:
  """The first `first` label names of the suites' dataset."""
  from dfka_tf import data  # pylint: disable=g-import-not-at-top  (loads TensorFlow)
  return data.label_names(DATASET)[:first]


def make_config(overrides: Dict):
  """A scenes20 RunConfig; labels are resolved to canonical names (so keys are stable)."""
  from dfka_tf import data  # pylint: disable=g-import-not-at-top  (loads TensorFlow)
  overrides = dict(overrides)
  dataset = overrides.pop("dataset", DATASET)
  if dataset != DATASET:
    raise ValueError(f"the suites run on {DATASET}, not {dataset}.")
  overrides.setdefault("workdir", "unset")
  if "data.labels" in overrides:
    overrides["labels"] = overrides.pop("data.labels")
  if isinstance(overrides.get("labels"), str):
    overrides["labels"] = overrides["labels"].split(",")
  if overrides.get("labels") is not None:
    overrides["labels"] = tuple(data.resolve_labels(list(overrides["labels"]),
                                                    data.label_names(DATASET)))
  method = overrides.pop("method", None) or "dfka"
  preset = overrides.pop("preset", None)
  return config_lib.RunConfig.build(DATASET, preset=preset, method=method, overrides=overrides)


def read_log(log_dir: str) -> Dict[int, Dict[str, float]]:
  """{step: {name: value}} of every scalar a stage's TensorBoard log holds."""
  # Both load TensorFlow, which importing a suite must not.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (deferred)
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  events = event_accumulator.EventAccumulator(
      log_dir, size_guidance={event_accumulator.TENSORS: 0})
  events.Reload()
  out = {}
  for tag in events.Tags()["tensors"]:
    for event in events.Tensors(tag):
      value = tf.make_ndarray(event.tensor_proto)
      if value.ndim == 0:
        out.setdefault(event.step, {})[tag] = float(value)
  return out


def real_images(config, n: int):
  """The first n real test images of the dataset, [n, H, W, 3] in [0, 1]."""
  from dfka_tf.stages import evaluation  # pylint: disable=g-import-not-at-top  (loads TensorFlow)
  return evaluation.real_images(config, n)


def seeds_from(flag_value: Optional[int], default: int, quick: bool) -> List[int]:
  n = 1 if quick else (default if flag_value is None else flag_value)
  if n < 1:
    raise ValueError(f"--seeds={n} must be >= 1.")
  return list(range(n))


def settings_from_flags(*, setting_flags: bool = True) -> Dict:
  """The arguments every `run_suite` takes, read from the shared flags.

  With setting_flags, also --teachers and --labels (as `teachers`, `labels`); suites whose
  setting is fixed by the paper pass False and refuse those flags.
  """
  f = flags.FLAGS
  if not f["verbosity"].present:  # TFDS logs every dataset it opens at INFO.
    absl_logging.set_verbosity(absl_logging.WARNING)
  out = dict(out=f.out, workdir_root=f.workdir_root, quick=f.quick, seeds=f.seeds,
             overrides=config_lib.parse_assignments(f.set), progress=not f.quiet, rows=f.rows)
  if setting_flags:
    out.update(teachers=f.teachers, labels=f.labels)
  elif f.teachers is not None or f.labels is not None:
    raise app.UsageError("--teachers/--labels are fixed by this table's setting; use "
                     "table4/table_s3/table_s5 for other settings.")
  return out


def suite_main(run_suite, extra=None, *, setting_flags: bool = True):
  """`app.run`'s main for a suite: refuses positional arguments, reads the shared flags and
  the suite's own (`extra()` returns them as run_suite keyword arguments)."""
  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments {argv[1:]}")
    run_suite(**(extra() if extra else {}),
              **settings_from_flags(setting_flags=setting_flags))
  return main


def validation_overrides(overrides: Optional[Dict]) -> Dict:
  """A sweep's overrides scored on the validation split; any other split is refused."""
  overrides = dict(overrides or {})
  split = overrides.pop("eval_split", overrides.pop("eval.split", "validation"))
  if split != "validation":
    raise app.UsageError(f"the sweep tunes settings, so it scores on the validation split, "
                         f"not {split!r}; report on test with the tables.")
  overrides["eval_split"] = "validation"
  return overrides


# ---------------------------------------------------------------------- the table driver
@dataclasses.dataclass
class Row:
  """One row of a table: its name, its RunConfig overrides and the paper's mAP (VOC07).

  `name` is what --rows and the CSV use; `label` (default: the name) is shown in Markdown.
  """
  name: str
  overrides: Dict
  paper: Optional[float] = None
  label: Optional[str] = None
  group: Optional[str] = None  # The heading a sweep lists the row under.

  @property
  def shown(self) -> str:
    return self.label or self.name


def bns_row(bns_weight: float) -> "Row":
  """DFKA with DeepInversion's L_bns prior (beyond the paper) at the recipe measured best.

  The row also drops L_a (alpha = 0): L_a is unbounded and fights L_bns; on seed 0 at
  bns_weight 20 dropping it lifted T_u from 38.3 to 57.0 mAP (docs/beyond_paper.md,
  "L_bns weight and α"). Its other weights are S-Table 1's (β 1, γ 5, ε 0.5), where that
  recipe was measured, whatever the dataset's preset chose for DFKA.
  """
  return Row("dfka+bns", dict(config_lib.preset_values("paper_weights"), method="dfka",
                              bns_weight=bns_weight, alpha=0.0),
             label=f"DFKA + L_bns ({bns_weight:g}, α=0)")


def paper_weights_row(paper: Optional[float] = None) -> "Row":
  """DFKA with S-Table 1's loss weights as printed (the `paper_weights` preset), beside the
  DFKA row at the weights scenes20's validation split chose."""
  return Row("dfka_paper", dict(config_lib.preset_values("paper_weights"), method="dfka"),
             paper, label="DFKA, S-Table 1's weights")


def lh_row(lh_weight: float) -> "Row":
  """DFKA with IFHE's auxiliary-classifier loss L_H on the teachers' intermediate features."""
  return Row("dfka+lh", {"method": "dfka", "lh_weight": lh_weight},
             label=f"DFKA + L_H ({lh_weight:g})")


QUICK_POOL_IMAGES = 16  # --quick's pool: two batches of the quick preset.


def pool_images_for(images: int, quick: bool) -> int:
  return min(images, QUICK_POOL_IMAGES) if quick else images


def pool_row(images: int) -> "Row":
  """Steps II–III on a DeepInversion pool of `images` (beyond the paper), with the
  student-side jitter of the recipe in docs/results.md ("The DeepInversion image pool")."""
  return Row("pool", {"method": "dfka", "inversion_images": images, "student_jitter": 2},
             label=f"DeepInversion pool ({images})")


def beyond_paper_note(bns_weight: float, lh_weight: float, pool_images: int) -> str:
  """What the beyond-paper rows of a table are, for those it has."""
  parts = ([f"'dfka+bns' adds L_bns (weight {bns_weight:g}, with α = 0)"] * (bns_weight > 0)
           + [f"'dfka+lh' IFHE's L_H (weight {lh_weight:g})"] * (lh_weight > 0)
           + [f"'pool' trains Steps II–III on a DeepInversion pool of {pool_images} images"]
           * (pool_images > 0))
  if not parts:
    return ""
  return ("; ".join(parts) + "; " + ("the paper has none of them." if len(parts) > 1
                                      else "the paper does not have it."))


def beyond_paper_rows(bns_weight: float, lh_weight: float,
                      pool_images: int = 0) -> List["Row"]:
  """The rows of the options beyond the paper; a weight (or pool size) of 0 leaves its row
  out."""
  return (([bns_row(bns_weight)] if bns_weight > 0 else [])
          + ([lh_row(lh_weight)] if lh_weight > 0 else [])
          + ([pool_row(pool_images)] if pool_images > 0 else []))


def select(rows: Sequence[Row], names: Optional[Sequence[str]]) -> List[Row]:
  """The rows named in `names` (all when None), in table order."""
  if not names:
    return list(rows)
  known = [r.name for r in rows]
  unknown = [n for n in names if n not in known]
  if unknown:
    raise app.UsageError(f"--rows: unknown row(s) {unknown}; this table has {known}.")
  return [r for r in rows if r.name in names]


def row_config(row: Row, *, setting: Dict, quick: bool, seed: int, overrides: Dict):
  """The RunConfig of `row` at `seed`: quick/--set overrides, then the setting, then the row."""
  values = dict(base_overrides(quick, overrides), **setting)
  values.update(row.overrides, seed=seed)
  return make_config(values)


def run_rows(name: str, rows: Sequence[Row], stages: suite_cache.Stages, *, setting: Dict,
             quick: bool, seeds: Sequence[int], overrides: Dict,
             records: Optional[suite_cache.Records] = None, log=print):
  """Runs (or reuses) every row at every seed; returns ({row name: [results]}, last config).

  With `records`, a row whose record matches is taken from it, and every row run is
  recorded as soon as it finishes.
  """
  runs: Dict[str, List[Dict]] = {r.name: [] for r in rows}
  config = None
  for seed in seeds:
    for row in rows:
      config = row_config(row, setting=setting, quick=quick, seed=seed, overrides=overrides)
      t0 = time.time()
      results = records.find(row.name, config) if records is not None else None
      if results is None:
        results = stages.run(config)
        if records is not None:
          records.store(row.name, results)
      runs[row.name].append(results)
      how = ("recorded" if results.get("recorded") else "reused" if results.get("reused")
             else f"{time.time() - t0:.0f}s")
      log(f"[{name}] seed {seed} {row.name:>10}: T_u mAP "
          f"{writers.pct(results.get('target_map')):5.1f} (teachers "
          f"{writers.pct(results.get('teacher_map')):5.1f}) {how}")
  return runs, config


def run_table(name: str, title: str, rows: Sequence[Row], *, setting: Dict, out: str,
              workdir_root: str, quick: bool, seeds: Sequence[int], overrides: Dict,
              progress: bool = False, notes: Sequence[str] = (),
              paper_header: str = "paper mAP (VOC07)", only: Optional[Sequence[str]] = None,
              log=print) -> Dict:
  """Runs rows × seeds and writes <out>/<name>.md, .csv (one line per row), _seeds.csv, .png,
  and a record of each row in <out>/<name>_rows/ (reused by the next run; see
  `suite_cache.Records`).

  Args:
    setting: RunConfig overrides shared by every row (num_teachers, labels, ...).
    overrides: the suite's base overrides (quick settings, --set), applied under the rows'.
    only: names of the rows to run (--rows); None runs them all.

  Returns:
    {"summaries": [one dict per row], "runs": {row name: [results per seed]}, "seconds"}.
  """
  start = time.time()
  rows = select(rows, only)
  stages = suite_cache.Stages(workdir_root, progress=progress, log=log)
  records = suite_cache.Records(os.path.join(out, f"{name}_rows"))
  runs, _ = run_rows(name, rows, stages, setting=setting, quick=quick, seeds=seeds,
                     overrides=overrides, records=records, log=log)
  config = row_config(Row("base", {}), setting=setting, quick=quick, seed=seeds[0],
                      overrides=overrides)
  labels = runs[rows[0].name][0]["labels"]
  summaries = [writers.summarize(r.name, runs[r.name], labels) for r in rows]
  for s, r in zip(summaries, rows):
    s["paper_map"] = r.paper
  seconds = time.time() - start

  header = (["row"] + list(labels) + ["T_u before Step III", "mAP", "TargetNet alone",
                                      paper_header, "T_u params (of the teachers')", "S_m"])
  body = []
  for s, r in zip(summaries, rows):
    branch = runs[r.name][0].get("branch_out")
    body.append([r.shown] + [writers.fmt(s[f"{label}_mean"]) for label in labels]
                + [writers.fmt(s["regrouped_map_mean"], s["regrouped_map_std"]),
                   writers.fmt(s["map_mean"], s["map_std"]),
                   writers.fmt(s["targetnet_map_mean"], s["targetnet_map_std"]),
                   writers.fmt(r.paper if r.paper is not None else float("nan")),
                   f"{s['target_params']:,} ({s['target_params_share']:.2f})",
                   json.dumps(branch) if branch else "—"])
  teacher_params = summaries[0]["teacher_params"]
  sections = [writers.md_table(header, body),
              f"Teachers' parameters (all together): {teacher_params:,}. mAP is mean ± "
              f"sample std over {len(seeds)} seed(s); per-label columns are means. "
              f"S_m: branch-out block per teacher (Eq. 18), seed {seeds[0]}. T_u before "
              f"Step III: regrouped by Eq. 18–20, before fine-tuning. TargetNet "
              f"alone: the TargetNet as Step II left it, its own head and no teacher "
              f"block; where S_m < B, T_u runs copies of the teachers' blocks S_m+1..B, "
              f"so mAP alone does not show what Steps II–III taught.",
              *notes, writers.setting_note(config, seeds, quick, seconds),
              writers.records_note(name, runs)]
  os.makedirs(out, exist_ok=True)
  writers.write_md(os.path.join(out, f"{name}.md"), title, sections)
  writers.write_csv(os.path.join(out, f"{name}.csv"), summaries)
  writers.write_csv(os.path.join(out, f"{name}_seeds.csv"),
                    [x for r in rows for x in writers.per_seed_rows(r.name, runs[r.name], labels)])
  writers.bar_plot(os.path.join(out, f"{name}.png"), [r.shown for r in rows],
                   [s["map_mean"] for s in summaries], [s["map_std"] for s in summaries],
                   title=title, paper=[r.paper for r in rows])
  log(f"[{name}] wrote {os.path.join(out, name)}.md/.csv/.png in {seconds:.0f}s")
  return {"summaries": summaries, "runs": runs, "seconds": seconds}


def run_ablation(name: str, title: str, rows: Sequence[Row], *, paper_header: str, note: str,
                 out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
                 only=None, teachers=None, labels=None, log=print) -> Dict:
  """A one-seed DFKA ablation table (Table 4, S-Table 3) on `teachers` -> `labels`."""
  setting = dict(method="dfka", num_teachers=teachers or 2,
                 labels=tuple(labels) if labels else None)
  return run_table(
      name, title, rows, setting=setting, out=out, workdir_root=workdir_root, quick=quick,
      seeds=seeds_from(seeds, 1, quick), overrides=overrides or {}, progress=progress,
      paper_header=paper_header, only=only, log=log,
      notes=[f"Setting: {setting['num_teachers']} teacher(s) -> "
             f"{'all labels' if not labels else ', '.join(labels)}. {note}"])
