"""The suites' cache: each shared stage and each row computed once, keyed on its config.

The expensive stages are computed once per distinct setting under --workdir_root and reused
by every row and every suite:

  <root>/teachers/<key>/    the teachers of one (num_teachers, seed, teacher settings)
  <root>/generators/<key>/  Step I of one generator setting (teachers copied in)
  <root>/runs/<key>/        one row, a full pipeline workdir named after its config

Beside its table, each finished row's results.json is also kept as a record,
<out>/<suite>_rows/<row>-seed<N>.json. A rerun reuses a record whose config equals the row's
(`read_differences` is empty) without opening --workdir_root, so a table whose rows take
hours can be committed row by row and completed on another machine, or after the workdirs
are gone. Delete a record (or the folder) to run its row again; a record made by different
code with the same config is reused all the same.

A row's workdir starts as a copy of its teachers (and, for dfka/dafl_2stage, of its generator's
checkpoint), with progress.json marking those stages done; `pipeline.run(resume=True)` then
runs only the remaining stages. No row trains its teachers in-process, so rows sharing
teachers start from the same random state whether they run first or last. A rerun reuses
finished rows (their results.json) and resumes unfinished ones. Keys hash exactly the
config fields a stage depends on, so two suites asking for the same row (Table 4's
{1, 1} is Table 2's DFKA row) run it once.
"""

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import time
import types
from typing import Dict, List, Optional, Sequence, Tuple

from dfka_tf import config as config_lib
from dfka_tf import options
from dfka_tf.errors import ConfigError
from . import suite_writers as writers

DATASET = "scenes20"  # The suites' dataset; every cached stage's config starts from its preset.

# What each shared stage depends on: config sections, less the fields that do not reach it.
TEACHER_SECTIONS = ("data", "runtime")
GENERATOR_SECTIONS = ("data", "runtime", "generator")
NOT_TEACHERS = ("data.labels",)
# A Step III-only change: rows differing from another only here can share its Step II.
STEP3_FIELDS = ("branch_out", "finetune_steps", "finetune_lr_scale", "adversarial_weight",
                "branch_bn", "finetune_trainable", "target_param_budget")


@functools.cache
def _lib():
  """The pipeline and stages of dfka_tf, imported on first use: they load TensorFlow, which
  importing a suite must not (its flag errors come at once)."""
  # pylint: disable=g-import-not-at-top  (defers TensorFlow, as the docstring says)
  from dfka_tf import pipeline
  from dfka_tf.models import teacher_files
  from dfka_tf.stages import base, images, student, teachers
  # pylint: enable=g-import-not-at-top
  return types.SimpleNamespace(pipeline=pipeline, teacher_files=teacher_files, base=base,
                               images=images, student=student, teachers=teachers)


# ---------------------------------------------------------------------- keys
def unread(config) -> Tuple[str, ...]:
  """Dotted paths of the options `config`'s method never reads, so they cannot change T_u:
  the generator's where no G is trained (teacher, ka, similar, diff, noise); where Steps
  II–III train on the pool instead of G, all but those that shape G's layers; L_a's and
  L_ie's weights, G's LR and Step I's steps under DAFL's joint stage, which takes its own
  (`student.joint`); L_dis's reading where γ = 0; Forge's options without Forge, and all of
  G's but its size and image_bn under Forge."""
  g = [f.path for f in options.FIELDS if f.path.startswith("generator.")]
  forge = [f.path for f in options.FIELDS if f.path.startswith("source.forge.")]
  # Forge's G takes only its size and image_bn from generator.*.
  if config.source.kind == "forge":
    return tuple(p for p in g if p not in ("generator.latent_dim", "generator.width",
                                           "generator.image_bn"))
  return tuple(_unread_generator(config, g)) + tuple(forge)


def _unread_generator(config, g):
  # How G is built still matters where it is built but not used: its layers draw
  # initializer seeds before the TargetNet's are drawn.
  built = ("generator.groups", "generator.width", "generator.latent_dim",
           "generator.image_bn", "generator.image_head", "generator.lh.weight")
  if config.student.mode == "joint":  # Its student takes DAFL's own optimiser.
    out = ["generator.alpha", "generator.beta", "generator.lr", "generator.steps",
           "student.lr", "student.finetune_lr_scale"]
  elif not config.generator.enabled:
    return tuple(g)
  elif config.source.kind == "pool":
    return tuple(p for p in g if p not in built)
  else:
    out = []
  if config.generator.gamma == 0:
    out.append("generator.dis_sign")
  return tuple(out)


def read_differences(config, other) -> List[str]:
  """`config.differences(other)` less the options neither config's method reads (`unread`):
  two configs differing only there give the same T_u, so one's record stands for the other."""
  skip = {options.BY_PATH[p].name for p in set(unread(config)) & set(unread(other))}
  return [name for name in config.differences(other) if name not in skip]


def key(config, *sections: str, exclude: Sequence[str] = ()) -> str:
  """A short hash of `config`'s result-changing fields of `sections` that differ from their
  defaults, so an option added later at its default (off) changes no existing key."""
  values = {f.path: config.get(f.path) for f in options.FIELDS
            if f.path.split(".")[0] in sections and not f.meta["resumable"]
            and f.path not in exclude and config.get(f.path) != f.default}
  text = json.dumps([sections, values], sort_keys=True, default=list)
  return hashlib.sha256(text.encode()).hexdigest()[:10]


def restricted(config, sections: Sequence[str], *, method: str, **overrides):
  """`config`'s values in `sections` only (every other option at its default), so a
  shared stage's workdir has one config whatever row asked for it first."""
  values = {f.path: config.get(f.path) for f in options.FIELDS
            if f.path.split(".")[0] in sections and f.path not in NOT_TEACHERS}
  values.update(overrides)
  # A None here is a value the row chose (--pretrain off under --preset=from_scratch).
  return config_lib.RunConfig.build(DATASET, method=method, overrides=values,
                                    none_is_a_value=True)


def check_cached(folder: str, config, sections: Sequence[str]):
  """Refuses a shared workdir whose config.json differs from `config` in `sections`. Its
  folder's key names the row's options, so one trained under other options (by an older
  version of this module) would otherwise pass for it."""
  path = os.path.join(folder, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    written = config_lib.RunConfig.from_json(f.read())
  differ = [name for name in config.differences(written) if name != "method"
            and options.BY_NAME[name].path.split(".")[0] in sections
            and options.BY_NAME[name].path not in NOT_TEACHERS]
  if differ:
    raise ConfigError(f"the shared workdir {folder} was trained with other {', '.join(differ)} "
                      "than this row asks for; delete that folder (or pass another "
                      "--workdir_root) to train it again.")


def _method_key(config) -> str:
  return "" if config.method == "dfka" else f"-{config.method}"


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


def _read_json(path, default=None):
  if not os.path.exists(path):
    return default
  with open(path) as f:
    return json.load(f)


# ---------------------------------------------------------------------- row records
class Records:
  """Finished rows' results.json, one file per row and seed, in one folder beside a table."""

  def __init__(self, folder: str):
    self.folder = folder

  def path(self, row: str, seed: int) -> str:
    return os.path.join(self.folder, f"{row}-seed{seed}.json")

  def find(self, row: str, config) -> Optional[Dict]:
    """The record of `row` at config.seed if its config equals `config` in every option
    the row's method reads (`read_differences`), else None."""
    results = _read_json(self.path(row, config.seed))
    if results is None or read_differences(config, writers.config_of(results)):
      return None
    if results.get("target_map") is None and config.eval.evaluate:
      return None
    return dict(results, reused=True, recorded=True)

  def store(self, row: str, results: Dict):
    results = {k: v for k, v in results.items() if k not in ("reused", "recorded")}
    writers.write_json(self.path(row, writers.config_of(results).seed), results)


# ---------------------------------------------------------------------- stage workdirs
class Stages:
  """Runs rows under one root, training each distinct teacher set and generator once."""

  def __init__(self, root: str, *, progress: bool = False, log=print):
    self.root = os.path.abspath(root)
    self.progress = progress
    self.log = log

  @staticmethod
  def _teacher_stages(config) -> List[str]:
    """The shared stages: the trained backbone where there is one, then the teachers."""
    pretrain = _lib().teachers.pretrains_on_dataset(config)
    return ["pretrain"] * pretrain + [f"teacher{m + 1}" for m in range(config.data.num_teachers)]

  def _start(self, config):
    return _lib().pipeline.start(config, progress=self.progress, resume=True)

  def _teachers(self, config):
    """(run, frozen teachers) of `config`, restoring or training them in its workdir."""
    run, inputs = self._start(config)
    return run, _lib().teachers.teachers(run, inputs)

  # ------------------------------------------------------------------ teachers
  def teachers(self, config) -> str:
    """The workdir holding `config`'s trained teachers (trained here on first use)."""
    tkey = key(config, *TEACHER_SECTIONS, exclude=NOT_TEACHERS)
    tdir = os.path.join(self.root, "teachers",
                        f"m{config.data.num_teachers}-seed{config.seed}-{tkey}")
    with _locked(tdir):
      tconfig = restricted(config, TEACHER_SECTIONS, method="teacher", workdir=tdir,
                           evaluate=False, export=False)
      check_cached(tdir, tconfig, TEACHER_SECTIONS)
      if not _lib().base.finished(tdir, self._teacher_stages(config)):
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
    gkey = key(config, *GENERATOR_SECTIONS, exclude=NOT_TEACHERS + unused)
    gdir = os.path.join(self.root, "generators", f"{config.method}-m"
                        f"{config.data.num_teachers}-seed{config.seed}-{gkey}")
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
      check_cached(gdir, gconfig, GENERATOR_SECTIONS)
      if not _lib().base.finished(gdir, ["generator"]):
        if not os.path.exists(os.path.join(gdir, "config.json")):
          _lib().base.seed_workdir(gdir, {tdir: self._teacher_stages(config)})
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
    if config.student.mode == "joint":
      return self._joint_generator(config)
    if gconfig is None:
      self.generator_dir(config)
      gconfig = self.generator_config(config)
    run, teachers = self._teachers(gconfig)
    return _lib().images.generator(run, teachers).generator, teachers

  def _joint_generator(self, config):
    run, inputs = self._start(config.replace(workdir=self.run(config)["workdir"]))
    nets = _lib().teachers.teachers(run, inputs)
    _, trainer = _lib().student.joint(run, nets, inputs.task)  # Finished: restores G.
    return trainer.generator, nets

  def load_teachers(self, config) -> List:
    """`config`'s frozen teachers (BlockNets), trained on first use."""
    tdir = self.teachers(config)
    teachers = [_lib().teacher_files.load_teacher(os.path.join(tdir, "teachers", f"{s}.keras"))
                for s in self._teacher_stages(config) if s.startswith("teacher")]
    for t in teachers:
      t.freeze()
    return teachers

  # ------------------------------------------------------------------ rows
  def row_dir(self, config) -> str:
    """The row's workdir, named after its method, setting and config."""
    rkey = key(config, *options.SECTIONS) + _method_key(config)
    return os.path.join(self.root, "runs", f"{config.method}-m{config.data.num_teachers}"
                        f"-seed{config.seed}-{rkey}")

  def run(self, config, *, blocks_from: Optional[str] = None) -> Dict:
    """Runs (or reuses) one row; returns its results.json content, plus "workdir".

    The row's folder is named after its config, so identical rows of different suites
    share it.

    Args:
      config: the row's RunConfig (its workdir is replaced by the row's own).
      blocks_from: the workdir of a finished row that differs from `config` only in
        Step III fields (branch_out, finetune_steps): Steps I–II are copied from it.
    """
    workdir = self.row_dir(config)
    with _locked(workdir):  # A suite running beside this one waits, then reuses the row.
      return self._run(config.replace(workdir=workdir), blocks_from)

  def _run(self, config, blocks_from):
    workdir = config.workdir
    results_path = os.path.join(workdir, "results.json")
    existing = _read_json(os.path.join(workdir, "config.json"))
    if existing is not None and config.differences(
        config_lib.RunConfig.from_json(json.dumps(existing))):
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
        sstate = _lib().base.progress_of(blocks_from)
        blocks = sorted((s for s in sstate["done"] if s.startswith("block")),
                        key=lambda s: int(s[5:]))
        sources[blocks_from] = (["generator"] if "generator" in sstate["done"] else []) + blocks
        state = {k: sstate[k] for k in ("eta", "block_curves") if k in sstate}
      elif config.generator.enabled:
        sources[self.generator_dir(config)] = ["generator"]
      _lib().base.seed_workdir(workdir, sources, state)
    start = time.time()
    results = _lib().pipeline.run(config, progress=self.progress, resume=True)
    return dict(results, workdir=workdir, reused=False, wall_time=time.time() - start)

  @staticmethod
  def _check_step3_only(config, source):
    other = config_lib.RunConfig.from_json(
        json.dumps(_read_json(os.path.join(source, "config.json"))))
    diff = [k for k in config.differences(other) if k not in STEP3_FIELDS]
    if diff:
      raise ValueError(f"cannot share Steps I-II of {source}: configs differ in {diff}.")
