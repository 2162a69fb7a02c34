"""The stage ritual, written once: skip when done, restore, run with a progress bar and NaN
guard, checkpoint, mark done, time it.

A `Stage` says what it is (name, step count, summary line) and how to build what it trains
(`setup`, returning the step and the state its checkpoint saves); `run_stages` does the rest
inside a `Run`, which holds the workdir, progress.json and the per-stage random streams.
Nothing else in the project writes progress.json.

Workdir layout:
  .lock            pid and host of the process running in it (stages/lock.py)
  config.json      the exact configuration (written first; a resume must match it)
  progress.json    finished stages, η^{b,m}, S_m, stage times
  teachers/        teacher<m>.keras + teacher<m>.labels.json (trained teachers)
  pretrained/      backbone.weights.h5, the pretrained start of teachers and T (--pretrain)
  ckpt/<stage>/    tf.train.CheckpointManager checkpoints of each stage
  logs/            TensorBoard scalars
  generated.png    generated images next to real test images (Fig. 4)
  block_losses.png L_u^b curves of Step II
  results.json     metrics, parameter counts, S_m, stage times
  target_net/      the exported SavedModel of T_u
  worker<k>/       a non-chief worker's own checkpoints and progress (--strategy=multi_worker)
"""

import dataclasses
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, Iterable, Optional

import numpy as np
import tensorflow as tf

from dfka_tf import distribute
from dfka_tf.config import RunConfig
from dfka_tf.errors import CheckpointError, ConfigError
from dfka_tf.stages import lock
from dfka_tf.train import loop


BACKBONE_FILE = ("pretrained", "backbone.weights.h5")  # Stage "pretrain"'s output.


def default_jit() -> bool:
  """XLA on GPU, off on CPU (measured 1.2–4.7× slower on a 2-core CPU).

  Off under a strategy of several replicas too: XLA then compiles each replica's function
  (`distribute.compile_step`), which no GPU has run here; --jit=true turns it on.
  """
  if tf.distribute.get_strategy().num_replicas_in_sync > 1:
    return False
  return bool(tf.config.list_physical_devices("GPU"))


def _json_default(v):
  if isinstance(v, (np.floating, np.integer)):
    return v.item()
  if isinstance(v, np.ndarray):
    return v.tolist()
  raise TypeError(type(v))


class Workdir:
  """Paths and small JSON files of one run's directory."""

  def __init__(self, root: str):
    self.root = root

  def path(self, *parts) -> str:
    return os.path.join(self.root, *parts)

  def read_json(self, name, default=None):
    path = self.path(name)
    if not os.path.exists(path):
      return default
    with open(path) as f:
      return json.load(f)

  def write_json(self, name, value):
    # Write then rename, so a kill mid-write never leaves a truncated file behind.
    os.makedirs(self.root, exist_ok=True)
    tmp = self.path(name + ".tmp")
    with open(tmp, "w") as f:
      json.dump(value, f, indent=2, sort_keys=True, default=_json_default)
    os.replace(tmp, self.path(name))


def prepare_workdir(config: RunConfig, *, resume: bool = False,
                    overwrite: bool = False) -> Workdir:
  """Checks the workdir against `config` before anything is written.

  A workdir another live process holds is refused (`stages.lock`). A workdir holding a run
  with another config is refused unless `overwrite`; one with the same config needs `resume`
  (to continue it) or `overwrite` (to start over). Takes the workdir's lock; `pipeline.run`
  releases it.
  """
  wd = Workdir(config.workdir)
  lock.check(config.workdir)  # Before --overwrite could delete a live run's files.
  existing = wd.read_json("config.json")
  if existing is not None:
    diff = config.differences(RunConfig.from_json(json.dumps(existing)))
    if overwrite:
      _remove_run(config.workdir)
    elif diff:
      raise ConfigError(
          f"workdir {config.workdir} holds a run with a different config ({', '.join(diff)}); "
          "use another --workdir, or --overwrite to discard it.")
    elif not resume:
      raise ConfigError(f"workdir {config.workdir} already holds this run; pass --resume to "
                        "continue it or --overwrite to start over.")
  lock.acquire(config.workdir)
  wd.write_json("config.json", config.to_dict())
  return wd


def _remove_run(workdir: str):
  """Deletes a workdir's run, except the folders of a cluster's other workers
  (`worker<k>`): each of them, started at the same moment, is clearing its own."""
  for name in os.listdir(workdir):
    path = os.path.join(workdir, name)
    if name.startswith("worker") and name[len("worker"):].isdigit() and os.path.isdir(path):
      continue
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


class Run:
  """One run's shared state: config, workdir, progress.json, random streams, jit.

  `chief`: whether this process writes the run's outputs (TensorBoard logs, results,
  figures, export); false on the other workers of a multi-worker run.
  """

  def __init__(self, config: RunConfig, workdir: Workdir, *, progress: bool = True):
    self.config = config
    self.wd = workdir
    self.chief = distribute.is_chief()
    self.progress = progress
    self.jit = default_jit() if config.runtime.jit is None else bool(config.runtime.jit)
    self.state = workdir.read_json("progress.json", {"done": [], "times": {}})
    self.backbone = None  # The pretrained start, built or loaded once (stages/teachers.py).
    self.template = None  # Teacher 1 (a BlockNet) where the TargetNet takes its architecture.

  def done(self, stage: str) -> bool:
    return stage in self.state["done"]

  def save_state(self, **extra):
    self.state.update(extra)
    self.wd.write_json("progress.json", self.state)

  def mark_done(self, stage: str, seconds: float, **extra):
    if stage not in self.state["done"]:
      self.state["done"].append(stage)
    self.state["times"][stage] = self.state["times"].get(stage, 0.0) + seconds
    self.save_state(**extra)

  def add_time(self, name: str, seconds: float):
    self.state["times"][name] = seconds

  def rng(self, stream: int) -> tf.random.Generator:
    # One generator per stage so a stage's noise does not depend on how long earlier ones ran.
    return tf.random.Generator.from_seed(self.config.seed * 1000 + stream)

  def say(self, line: str):
    if self.progress:
      print(line)


@dataclasses.dataclass
class Parts:
  """What a stage trains: one step, the state its checkpoint saves, optional hooks.

  prepare(checkpoint): runs before the first step of this process (e.g. block b starts
    from block b-1's end when it has no checkpoint of its own).
  on_step(step, values, saving): runs after every step, before its checkpoint (`saving`:
    whether one follows this step).
  summarize(): writes the stage's image and histogram summaries (every
    --summary_every steps).
  """
  step: Callable[[], Dict[str, tf.Tensor]]
  state: Dict[str, Any]
  prepare: Optional[Callable[[loop.StageCheckpoint], None]] = None
  on_step: Optional[Callable[[int, Dict[str, float]], None]] = None
  summarize: Optional[Callable[[], None]] = None


@dataclasses.dataclass
class Stage:
  """A resumable piece of a run.

  Attributes:
    name: its key in progress.json and its folder under ckpt/ and logs/.
    steps: how many steps it takes.
    setup: builds what it trains (called when it runs, and when a finished stage restores).
    summary: the line printed when it starts.
    load: for a finished stage, loads its result instead of setup + restore (e.g. a teacher
      from its .keras file); None: setup, then restore its last checkpoint.
    restore: whether a finished stage restores its checkpoint (after setup).
    finish: runs after the last step; returns extra progress.json entries.
    output: a file the stage writes in `finish` (e.g. a teacher's .keras); a finished stage
      whose output is missing counts as unfinished, and resumes from its last checkpoint.
  """
  name: str
  steps: int
  setup: Callable[[], Parts]
  summary: str = ""
  load: Optional[Callable[[], None]] = None
  restore: bool = True
  finish: Optional[Callable[[], Dict]] = None
  output: Optional[str] = None

  def finished(self, run: "Run") -> bool:
    return run.done(self.name) and (self.output is None or os.path.exists(self.output))


def run_stages(run: Run, stages: Iterable[Stage]):
  """Runs or restores each stage in turn: the only place the ritual is written."""
  c = run.config
  for stage in stages:
    done = stage.finished(run)
    if not distribute.same_on_every_worker(tf.distribute.get_strategy(), float(done)):
      raise CheckpointError(
          f"{stage.name}: finished on some workers of the cluster and not on others; restart "
          "every worker with --overwrite, or give each worker a copy of the chief's workdir "
          "as <workdir>/worker<k> and --resume.")
    if done and stage.load is not None:
      stage.load()
      continue
    start = time.time()
    parts = stage.setup()
    ckpt = loop.StageCheckpoint(run.wd.path("ckpt", stage.name), **parts.state)
    if done:
      if stage.restore:
        ckpt.restore()
      continue
    if parts.prepare is not None:
      parts.prepare(ckpt)
    if stage.summary:
      run.say(stage.summary)
    loop.run_stage(parts.step, stage=stage.name, steps=stage.steps, checkpoint=ckpt,
                   every=c.runtime.checkpoint_every,
                   log_dir=run.wd.path("logs") if run.chief else None,
                   progress=run.progress, on_step=parts.on_step,
                   summarize=parts.summarize, summarize_every=c.runtime.summary_every)
    extra = stage.finish() if stage.finish is not None else {}
    run.mark_done(stage.name, time.time() - start, **(extra or {}))


def seed_workdir(workdir: str, sources: Dict[str, Iterable[str]],
                 state: Optional[Dict] = None):
  """A fresh workdir whose named stages are copied, finished, from other workdirs.

  For the experiment suites, which train each teacher set and generator once and share
  them between rows. `sources` maps a source workdir to the stages taken from it (their
  checkpoints, logs, and the teachers' files); `state` adds progress.json entries (η, curves).
  """
  shutil.rmtree(workdir, ignore_errors=True)
  os.makedirs(workdir)
  progress = {"done": [], "times": {}}
  for source, stages in sources.items():
    src = Workdir(source)
    times = src.read_json("progress.json")["times"]
    for stage in stages:
      for sub in ("ckpt", "logs"):
        if os.path.isdir(src.path(sub, stage)):
          shutil.copytree(src.path(sub, stage), os.path.join(workdir, sub, stage))
      if stage.startswith("teacher"):
        os.makedirs(os.path.join(workdir, "teachers"), exist_ok=True)
        for name in (f"{stage}.keras", f"{stage}.keras.labels.json"):
          shutil.copy(src.path("teachers", name), os.path.join(workdir, "teachers", name))
      if stage == "pretrain":
        os.makedirs(os.path.join(workdir, BACKBONE_FILE[0]), exist_ok=True)
        shutil.copy(src.path(*BACKBONE_FILE), os.path.join(workdir, *BACKBONE_FILE))
      progress["done"].append(stage)
      progress["times"][stage] = times[stage]
  progress.update(state or {})
  Workdir(workdir).write_json("progress.json", progress)


def finished(workdir: str, stages: Iterable[str]) -> bool:
  """Whether every stage in `stages` is done in `workdir`."""
  done = Workdir(workdir).read_json("progress.json", {}).get("done", [])
  return all(s in done for s in stages)


def progress_of(workdir: str) -> Dict:
  """progress.json of `workdir` (empty when none)."""
  return Workdir(workdir).read_json("progress.json", {"done": [], "times": {}})
