"""What every experiment suite shares: flags, the stage cache, aggregation and writers.

A suite (experiments/table1.py, table2.py, table4.py, table_s3.py, table_s5.py, fig4.py,
fig5.py) is a list of rows; a row is one `RunConfig`. The expensive stages are computed
once per distinct setting under --workdir_root and reused by every row and every suite:

  <root>/teachers/<key>/    the teachers of one (num_teachers, seed, teacher settings)
  <root>/generators/<key>/  Step I of one generator setting (teachers copied in)
  <root>/runs/<key>/        one row, a full pipeline workdir named after its config

Beside its table, each finished row's results.json is also kept as a record,
<out>/<suite>_rows/<row>-seed<N>.json. A rerun reuses a record whose config equals the row's
(`RunConfig.differences` is empty) without opening --workdir_root, so a table whose rows
take hours can be committed row by row and completed on another machine, or after the
workdirs are gone. Delete a record (or the folder) to run its row again; a record made by
different code with the same config is reused all the same.

A row's workdir starts as a copy of its teachers (and, for dfka/dafl_2stage, of its generator's
checkpoint), with progress.json marking those stages done; `pipeline.run(resume=True)` then
runs only the remaining stages. No row trains its teachers in-process, so rows sharing
teachers start from the same random state whether they run first or last. A rerun reuses
finished rows (their results.json) and resumes unfinished ones. Keys hash exactly the
config fields a stage depends on, so two suites asking for the same row (Table 4's
{1, 1} is Table 2's DFKA row) run it once.

The library never reads flags: suites call `Stages` and the writers with plain arguments,
and tests call each suite's `run_suite(...)` directly.
"""

import contextlib
import csv
import dataclasses
import fcntl
import json
import os
import time
from typing import Dict, Iterable, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging as absl_logging

from dfka_tf import config as config_lib  # pylint: disable=g-import-not-at-top  (no TensorFlow)

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

DATASET = "scenes20"

# What each shared stage depends on: config sections, less the fields that do not reach it.
TEACHER_SECTIONS = ("data", "runtime")
GENERATOR_SECTIONS = ("data", "runtime", "generator")
NOT_TEACHERS = ("data.labels",)
# A Step III-only change: rows differing from another only here can share its Step II.
STEP3_FIELDS = ("branch_out", "finetune_steps", "finetune_lr_scale", "adversarial_weight",
                "branch_bn", "finetune_trainable", "target_param_budget")


def base_overrides(quick: bool, extra: Optional[Dict] = None) -> Dict:
  """RunConfig overrides every row of a suite starts from."""
  extra = dict(extra or {})
  # A --set=preset=... goes on top of the suite's own (tables or quick), not instead of it.
  presets = ["quick" if quick else "tables"] + config_lib.preset_names(extra.pop("preset", None))
  base = {"preset": ",".join(presets)}
  base.update(export=False)  # Suites compare numbers; the SavedModel is not needed.
  base.update(extra)
  return base


def scenes_labels(first: Optional[int] = None) -> List[str]:
  from dfka_tf import data  # pylint: disable=g-import-not-at-top
  names = data.label_names(DATASET)
  return names if first is None else names[:first]


def make_config(overrides: Dict):
  """A scenes20 RunConfig; labels are resolved to canonical names (so keys are stable)."""
  from dfka_tf import data  # pylint: disable=g-import-not-at-top
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
  return config_lib.RunConfig.for_dataset(DATASET, **overrides)


def restricted(config, sections: Sequence[str], *, method: str, **overrides):
  """`config`'s values in `sections` only (every other option at its default), so a
  shared stage's workdir has one config whatever row asked for it first."""
  values = {f.path: config.get(f.path) for f in config_lib.FIELDS
            if f.path.split(".")[0] in sections and f.path not in NOT_TEACHERS}
  values.update(overrides)
  return config_lib.RunConfig.build(DATASET, method=method, overrides=values)


@contextlib.contextmanager
def _locked(path: str):
  """An exclusive lock beside `path`, so suites run side by side build each cache once."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".lock", "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def read_log(log_dir: str) -> Dict[int, Dict[str, float]]:
  """{step: {name: value}} of every scalar a stage's TensorBoard log holds."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
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


def _read_json(path, default=None):
  if not os.path.exists(path):
    return default
  with open(path) as f:
    return json.load(f)


class Records:
  """Finished rows' results.json, one file per row and seed, in one folder beside a table."""

  def __init__(self, folder: str):
    self.folder = folder

  def path(self, row: str, seed: int) -> str:
    return os.path.join(self.folder, f"{row}-seed{seed}.json")

  def find(self, row: str, config) -> Optional[Dict]:
    """The record of `row` at config.seed if its config equals `config` in every option
    the row's method reads (`RunConfig.unread`), else None."""
    results = _read_json(self.path(row, config.seed))
    if results is None or config.differences(_config_of(results), read_only=True):
      return None
    if results.get("target_map") is None and config.eval.evaluate:
      return None
    return dict(results, reused=True, recorded=True)

  def store(self, row: str, results: Dict):
    results = {k: v for k, v in results.items() if k not in ("reused", "recorded")}
    path = self.path(row, _config_of(results).seed)
    os.makedirs(self.folder, exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump(results, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)  # A run stopped mid-write leaves no half a record.


class Stages:
  """Runs rows under one root, training each distinct teacher set and generator once."""

  def __init__(self, root: str, *, progress: bool = False, log=print):
    self.root = os.path.abspath(root)
    self.progress = progress
    self.log = log

  @staticmethod
  def _teacher_stages(config) -> List[str]:
    """The shared stages: the trained backbone where there is one, then the teachers."""
    from dfka_tf.stages.teachers import pretrains_on_dataset  # pylint: disable=g-import-not-at-top
    pretrain = pretrains_on_dataset(config)
    return ["pretrain"] * pretrain + [f"teacher{m + 1}" for m in range(config.data.num_teachers)]

  def _start(self, config):
    from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
    return pipeline.start(config, progress=self.progress, resume=True)

  def _teachers(self, config):
    """(run, frozen teachers) of `config`, restoring or training them in its workdir."""
    from dfka_tf.stages import teachers  # pylint: disable=g-import-not-at-top
    run, inputs = self._start(config)
    return run, teachers.teachers(run, inputs)

  # ------------------------------------------------------------------ teachers
  def teachers(self, config) -> str:
    """The workdir holding `config`'s trained teachers (trained here on first use)."""
    key = config.key(*TEACHER_SECTIONS, exclude=NOT_TEACHERS)
    tdir = os.path.join(self.root, "teachers",
                        f"m{config.data.num_teachers}-seed{config.seed}-{key}")
    with _locked(tdir):
      if not stage_lib().finished(tdir, self._teacher_stages(config)):
        tconfig = restricted(config, TEACHER_SECTIONS, method="teacher", workdir=tdir,
                             evaluate=False, export=False)
        start = time.time()
        self.log(f"  [shared] training {config.data.num_teachers} teacher(s), seed "
                 f"{config.seed} -> {tdir}")
        self._teachers(tconfig)
        self.log(f"  [shared] teachers done in {time.time() - start:.0f}s")
    return tdir

  # ------------------------------------------------------------------ generators
  def generator_config(self, config):
    """The config of `config`'s shared Step I workdir."""
    # Without L_dis (γ = 0, DAFL) its sign reading does not reach G.
    unused = ("generator.dis_sign",) if config.generator.gamma == 0 else ()
    key = config.key(*GENERATOR_SECTIONS, exclude=NOT_TEACHERS + unused)
    gdir = os.path.join(self.root, "generators", f"{config.method}-m"
                        f"{config.data.num_teachers}-seed{config.seed}-{key}")
    return restricted(config, GENERATOR_SECTIONS, method=config.method, workdir=gdir,
                      evaluate=False, export=False)

  def generator_dir(self, config) -> str:
    """The workdir holding `config`'s trained Step I generator (trained on first use)."""
    if not config.generator.enabled:
      raise ValueError(f"method {config.method!r} has no generator.")
    gconfig = self.generator_config(config)
    gdir = gconfig.workdir
    tdir = self.teachers(config)
    with _locked(gdir):
      if not stage_lib().finished(gdir, ["generator"]):
        if not os.path.exists(os.path.join(gdir, "config.json")):
          stage_lib().seed_workdir(gdir, {tdir: self._teacher_stages(config)})
        start = time.time()
        g = gconfig.generator
        self.log(f"  [shared] Step I generator ({config.method}, K={g.groups}, "
                 f"gamma={g.gamma} {g.dis_sign}, bns={g.bns.weight}) -> {gdir}")
        self.load_generator(config, gconfig)
        self.log(f"  [shared] generator done in {time.time() - start:.0f}s")
    return gdir

  def load_generator(self, config, gconfig=None):
    """(generator, teachers) of `config`, from the shared Step I checkpoint; for DAFL
    (joint training) G as its row's joint stage left it, the row run first."""
    from dfka_tf.stages import images  # pylint: disable=g-import-not-at-top
    if config.student.mode == "joint":
      return self._joint_generator(config)
    if gconfig is None:
      self.generator_dir(config)
      gconfig = self.generator_config(config)
    run, teachers = self._teachers(gconfig)
    return images.generator(run, teachers).generator, teachers

  def _joint_generator(self, config):
    from dfka_tf.stages import student, teachers  # pylint: disable=g-import-not-at-top
    run, inputs = self._start(config.replace(workdir=self.run(config)["workdir"]))
    nets = teachers.teachers(run, inputs)
    _, trainer = student.joint(run, nets, inputs.task)  # Finished: restores G.
    return trainer.generator, nets

  def load_teachers(self, config) -> List:
    """`config`'s frozen teachers (BlockNets), trained on first use."""
    from dfka_tf.models import blocknet  # pylint: disable=g-import-not-at-top
    tdir = self.teachers(config)
    teachers = [blocknet.load_teacher(os.path.join(tdir, "teachers", f"{s}.keras"))
                for s in self._teacher_stages(config) if s.startswith("teacher")]
    for t in teachers:
      t.freeze()
    return teachers

  # ------------------------------------------------------------------ rows
  def row_dir(self, config, prefix: str) -> str:
    key = config.key(*config_lib.SECTIONS) + _method_key(config)
    return os.path.join(self.root, "runs",
                        f"{prefix}-m{config.data.num_teachers}-seed{config.seed}-{key}")

  def run(self, config, prefix: Optional[str] = None, *, blocks_from: Optional[str] = None
          ) -> Dict:
    """Runs (or reuses) one row; returns its results.json content, plus "workdir".

    Args:
      config: the row's RunConfig (its workdir is replaced by the row's own).
      prefix: readable start of the row's folder name (default: the method). The folder
        is named after the config, so identical rows of different suites share it.
      blocks_from: the workdir of a finished row that differs from `config` only in
        Step III fields (branch_out, finetune_steps): Steps I–II are copied from it.
    """
    workdir = self.row_dir(config, prefix or config.method)
    with _locked(workdir):  # A suite running beside this one waits, then reuses the row.
      return self._run(config.replace(workdir=workdir), blocks_from)

  def _run(self, config, blocks_from):
    from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
    workdir = config.workdir
    results_path = os.path.join(workdir, "results.json")
    existing = _read_json(os.path.join(workdir, "config.json"))
    if existing is not None and config.differences(config_lib.RunConfig.from_json(json.dumps(existing))):
      existing = None  # A hash collision or an edited folder: start it over.
    if existing is not None and os.path.exists(results_path):
      results = _read_json(results_path)
      if results.get("target_map") is not None or not config.eval.evaluate:
        return dict(results, workdir=workdir, reused=True)
    if existing is None:
      tdir = self.teachers(config)
      sources, state = {tdir: self._teacher_stages(config)}, None
      if blocks_from is not None:
        self._check_step3_only(config, blocks_from)
        sstate = stage_lib().progress_of(blocks_from)
        blocks = sorted((s for s in sstate["done"] if s.startswith("block")),
                        key=lambda s: int(s[5:]))
        sources[blocks_from] = (["generator"] if "generator" in sstate["done"] else []) + blocks
        state = {k: sstate[k] for k in ("eta", "block_curves") if k in sstate}
      elif config.generator.enabled:
        sources[self.generator_dir(config)] = ["generator"]
      stage_lib().seed_workdir(workdir, sources, state)
    start = time.time()
    results = pipeline.run(config, progress=self.progress, resume=True)
    results = dict(results, workdir=workdir, reused=False, wall_time=time.time() - start)
    return results

  @staticmethod
  def _check_step3_only(config, source):
    other = config_lib.RunConfig.from_json(open(os.path.join(source, "config.json")).read())
    diff = [k for k in config.differences(other) if k not in STEP3_FIELDS]
    if diff:
      raise ValueError(f"cannot share Steps I-II of {source}: configs differ in {diff}.")


def stage_lib():
  from dfka_tf.stages import base  # pylint: disable=g-import-not-at-top
  return base


def _method_key(config) -> str:
  return "" if config.method == "dfka" else f"-{config.method}"


# ---------------------------------------------------------------------- aggregation
def mean_std(values: Iterable[float]):
  """Mean and sample standard deviation (0 for a single value), ignoring NaN."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  v = np.asarray([x for x in values if x is not None], dtype=np.float64)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return float("nan"), float("nan")
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def finite(x) -> float:
  """x, or -inf for NaN (a sort key that puts unmeasured points last)."""
  return x if x == x else float("-inf")


def validation_overrides(overrides: Optional[Dict]) -> Dict:
  """A sweep's overrides scored on the validation split; any other split is refused."""
  overrides = dict(overrides or {})
  split = overrides.pop("eval_split", overrides.pop("eval.split", "validation"))
  if split != "validation":
    raise app.UsageError(f"the sweep tunes settings, so it scores on the validation split, "
                         f"not {split!r}; report on test with the tables.")
  overrides["eval_split"] = "validation"
  return overrides


def write_sweep(out: str, name: str, title: str, sections: Sequence[str], *, summaries,
                per_seed, best: str, runs, config, seeds, quick: bool, seconds: float,
                log=print) -> Dict:
  """A sweep's <name>.md (`sections`, then its setting and records notes), .csv (a line per
  point) and _seeds.csv; returns run_suite's dict."""
  write_md(os.path.join(out, f"{name}.md"), title,
           list(sections) + [setting_note(config, seeds, quick, seconds),
                             records_note(name, runs)])
  write_csv(os.path.join(out, f"{name}.csv"), summaries)
  write_csv(os.path.join(out, f"{name}_seeds.csv"), per_seed)
  log(f"[{name}] wrote {os.path.join(out, name)}.md/.csv; best {best}")
  return {"summaries": summaries, "runs": runs, "best": best}


def pct(x) -> float:
  return float("nan") if x is None else 100.0 * float(x)


def fmt(mean, std=None, digits=1) -> str:
  if mean != mean:  # NaN
    return "—"
  if std is None:
    return f"{mean:.{digits}f}"
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarize(name: str, runs: List[Dict], labels: Sequence[str]) -> Dict:
  """One table row from the per-seed results of one row: mAP and per-label AP, in %."""
  out = {"row": name, "method": runs[0]["method"], "seeds": len(runs)}
  out["map_mean"], out["map_std"] = mean_std(pct(r.get("target_map")) for r in runs)
  out["map_voc07_mean"], out["map_voc07_std"] = mean_std(
      pct(r.get("target_map_voc07")) for r in runs)
  for label in labels:
    out[f"{label}_mean"], out[f"{label}_std"] = mean_std(
        pct(r.get("target_ap", {}).get(label)) for r in runs)
  out["teacher_map_mean"], _ = mean_std(pct(r.get("teacher_map")) for r in runs)
  out["targetnet_map_mean"], out["targetnet_map_std"] = mean_std(
      pct(r.get("targetnet_map")) for r in runs)
  # T_u before Step III: NaN in records made before results.json held it.
  out["regrouped_map_mean"], out["regrouped_map_std"] = mean_std(
      pct(r.get("regrouped_map")) for r in runs)
  out["target_params"] = runs[0]["params"]["target_net"]
  out["teacher_params"] = runs[0]["params"]["teachers_total"]
  out["target_params_share"] = out["target_params"] / max(out["teacher_params"], 1)
  out["time_s_mean"], _ = mean_std(r.get("total_time") for r in runs)
  return out


def _config_of(results: Dict):
  """The RunConfig a results.json records (flat files of older runs too)."""
  return config_lib.RunConfig.from_json(json.dumps(results["config"]))


def per_seed_rows(name: str, runs: List[Dict], labels: Sequence[str]) -> List[Dict]:
  rows = []
  for r in runs:
    row = {"row": name, "method": r["method"], "seed": _config_of(r).seed,
           "map": pct(r.get("target_map")), "map_voc07": pct(r.get("target_map_voc07")),
           "teacher_map": pct(r.get("teacher_map")),
           "targetnet_map": pct(r.get("targetnet_map")),
           "regrouped_map": pct(r.get("regrouped_map"))}
    row.update({label: pct(r.get("target_ap", {}).get(label)) for label in labels})
    row.update(target_params=r["params"]["target_net"],
               teacher_params=r["params"]["teachers_total"],
               target_params_share=r["params"]["target_net"]
               / max(r["params"]["teachers_total"], 1),
               branch_out=json.dumps(r.get("branch_out")), total_time=r.get("total_time"),
               workdir=r.get("workdir"))
    rows.append(row)
  return rows


# ---------------------------------------------------------------------- writers
def write_csv(path: str, rows: List[Dict], columns: Optional[List[str]] = None):
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  columns = columns or list(dict.fromkeys(k for r in rows for k in r))
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    for r in rows:
      w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})


def md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = ["| " + " | ".join(map(str, header)) + " |",
           "| " + " | ".join("---" for _ in header) + " |"]
  lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
  return "\n".join(lines)


def write_md(path: str, title: str, sections: Sequence[str]):
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    f.write(f"# {title}\n\n" + "\n\n".join(s.strip() for s in sections if s) + "\n")


def setting_note(config, seeds: Sequence[int], quick: bool, seconds: float) -> str:
  """The lines every suite's Markdown ends with: settings, seeds and runtime."""
  keys = ("arch", "image_size", "batch_size", "pretrain", "pretrain_steps", "teacher_steps",
          "generator_steps", "block_steps", "finetune_steps", "groups", "alpha", "beta",
          "gamma", "dis_sign", "bns_weight")
  settings = ", ".join(f"{k}={config.get(k)}" for k in keys)
  note = (f"Dataset scenes20 (embedded, 2000 {config.eval.split} images); AP is the area "
          f"under the PR curve "
          f"in %. Seeds: {list(seeds)}. Settings (where a row does not set them): "
          f"{settings}. Wall time of this suite "
          f"(cached stages are reused): {seconds:.0f} s.")
  if quick:
    note = "**--quick smoke run: the numbers are meaningless.** " + note
  return note


def records_note(name: str, runs: Dict[str, List[Dict]]) -> str:
  """Says how many row runs came from records, and where each row's own time is."""
  results = [r for per_seed in runs.values() for r in per_seed]
  recorded = sum(bool(r.get("recorded")) for r in results)
  note = (f"Each row's own time (its stages, shared ones included) is total_time in "
          f"{name}_seeds.csv.")
  if recorded:
    note += (f" {recorded} of the {len(results)} row runs were taken from their records in "
             f"{name}_rows/, measured by an earlier run of this suite (on this machine or "
             f"another: seeded runs are bit-identical on one machine only).")
  return note


def bar_plot(path: str, names: Sequence[str], means: Sequence[float], stds: Sequence[float],
             *, ylabel: str = "mAP (%)", title: str = "", paper: Optional[Sequence] = None):
  """Bars with error bars; the paper's values (VOC07) as black markers where given."""
  from dfka_tf import report  # pylint: disable=g-import-not-at-top,unused-import  (Agg backend)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  x = np.arange(len(names))
  fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.2))
  ax.bar(x, np.nan_to_num(means), yerr=np.nan_to_num(stds), capsize=3, color="#4c72b0",
         label="ours (scenes20)")
  if paper is not None and any(p is not None for p in paper):
    px = [i for i, p in enumerate(paper) if p is not None]
    ax.scatter(px, [paper[i] for i in px], marker="_", s=400, color="black", zorder=3,
               label="paper (VOC07)")
    ax.legend(fontsize=7)
  ax.set_xticks(x)
  ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
  ax.set_ylabel(ylabel)
  ax.set_ylim(0, 100)
  ax.set_title(title, fontsize=9)
  save_figure(fig, path)


def real_images(config, n: int):
  """The first n real test images of the dataset, [n, H, W, 3] in [0, 1]."""
  from dfka_tf.stages import evaluation  # pylint: disable=g-import-not-at-top
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


def save_figure(fig, path: str):
  """Lays out, writes (120 dpi) and closes a matplotlib figure."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


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


def run_rows(name: str, rows: Sequence[Row], stages: Stages, *, setting: Dict, quick: bool,
             seeds: Sequence[int], overrides: Dict, records: Optional[Records] = None,
             log=print):
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
      log(f"[{name}] seed {seed} {row.name:>10}: T_u mAP {pct(results.get('target_map')):5.1f}"
          f" (teachers {pct(results.get('teacher_map')):5.1f}) {how}")
  return runs, config


def run_table(name: str, title: str, rows: Sequence[Row], *, setting: Dict, out: str,
              workdir_root: str, quick: bool, seeds: Sequence[int], overrides: Dict,
              progress: bool = False, per_label: bool = True, notes: Sequence[str] = (),
              paper_header: str = "paper mAP (VOC07)", only: Optional[Sequence[str]] = None,
              log=print) -> Dict:
  """Runs rows × seeds and writes <out>/<name>.md, .csv (one line per row), _seeds.csv, .png,
  and a record of each row in <out>/<name>_rows/ (reused by the next run; see `Records`).

  Args:
    setting: RunConfig overrides shared by every row (num_teachers, labels, ...).
    overrides: the suite's base overrides (quick settings, --set), applied under the rows'.
    only: names of the rows to run (--rows); None runs them all.

  Returns:
    {"summaries": [one dict per row], "runs": {row name: [results per seed]}, "seconds"}.
  """
  start = time.time()
  rows = select(rows, only)
  stages = Stages(workdir_root, progress=progress, log=log)
  runs, _ = run_rows(name, rows, stages, setting=setting, quick=quick, seeds=seeds,
                     overrides=overrides, records=Records(os.path.join(out, f"{name}_rows")),
                     log=log)
  config = row_config(Row("base", {}), setting=setting, quick=quick, seed=seeds[0],
                      overrides=overrides)
  labels = runs[rows[0].name][0]["labels"]
  summaries = [summarize(r.name, runs[r.name], labels) for r in rows]
  for s, r in zip(summaries, rows):
    s["paper_map"] = r.paper
  seconds = time.time() - start

  label_cols = list(labels) if per_label else []
  header = (["row"] + label_cols + ["T_u before Step III", "mAP", "TargetNet alone",
                                     paper_header, "T_u params (of the teachers')", "S_m"])
  body = []
  for s, r in zip(summaries, rows):
    branch = runs[r.name][0].get("branch_out")
    body.append([r.shown] + [fmt(s[f"{label}_mean"]) for label in label_cols]
                + [fmt(s["regrouped_map_mean"], s["regrouped_map_std"]),
                   fmt(s["map_mean"], s["map_std"]),
                   fmt(s["targetnet_map_mean"], s["targetnet_map_std"]),
                   fmt(r.paper if r.paper is not None else float("nan")),
                   f"{s['target_params']:,} ({s['target_params_share']:.2f})",
                   json.dumps(branch) if branch else "—"])
  teacher_params = summaries[0]["teacher_params"]
  sections = [md_table(header, body),
              f"Teachers' parameters (all together): {teacher_params:,}. mAP is mean ± "
              f"sample std over {len(seeds)} seed(s); per-label columns are means. "
              f"S_m: branch-out block per teacher (Eq. 18), seed {seeds[0]}. T_u before "
              f"Step III: regrouped by Eq. 18–20, before fine-tuning. TargetNet "
              f"alone: the TargetNet as Step II left it, its own head and no teacher "
              f"block; where S_m < B, T_u runs copies of the teachers' blocks S_m+1..B, "
              f"so mAP alone does not show what Steps II–III taught.",
              *notes, setting_note(config, seeds, quick, seconds),
              records_note(name, runs)]
  os.makedirs(out, exist_ok=True)
  write_md(os.path.join(out, f"{name}.md"), title, sections)
  write_csv(os.path.join(out, f"{name}.csv"), summaries)
  write_csv(os.path.join(out, f"{name}_seeds.csv"),
            [x for r in rows for x in per_seed_rows(r.name, runs[r.name], labels)])
  bar_plot(os.path.join(out, f"{name}.png"), [r.shown for r in rows],
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
