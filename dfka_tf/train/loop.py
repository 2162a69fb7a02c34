"""The loop every stage shares: progress bar, TensorBoard scalars, NaN guard, checkpoints."""

import math
import os
import signal
import threading
from typing import Callable, Dict, Optional

import keras
import tensorflow as tf

from dfka_tf import distribute
from dfka_tf.errors import CheckpointError, NonFiniteLossError, PreemptedError

# Set by SIGTERM (`handle_preemption`): the running stage checkpoints its current step and
# stops, so that --resume continues from exactly there.
PREEMPTED = threading.Event()


def handle_preemption():
  """Makes SIGTERM (a cluster's preemption notice) checkpoint the running stage and stop.

  Installed by `pipeline.run` in the main thread for the run's duration (returns the
  handler it replaced); elsewhere (a worker thread) it does nothing, and SIGTERM keeps its
  default action. Outside the stages (evaluation, export) the notice is noted and the run
  finishes.
  """
  if threading.current_thread() is not threading.main_thread():
    return None
  PREEMPTED.clear()
  return signal.signal(signal.SIGTERM, lambda signum, frame: PREEMPTED.set())


def restore_sigterm(previous):
  """Puts back the SIGTERM handler `handle_preemption` replaced (None: it replaced none)."""
  if previous is not None and threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, previous)


def check_finite(measurements: Dict[str, float], stage: str, step: int):
  """Raise NonFiniteLossError naming the stage, step and the first non-finite term."""
  for name, value in measurements.items():
    if not math.isfinite(float(value)):
      raise NonFiniteLossError(
          f"{stage}: loss term '{name}' became {float(value)} at step {step}; the last good "
          "checkpoint is kept. Lower the learning rate or the loss weights, then rerun with "
          "--resume.")


def _keras_variables(value):
  """Every variable of the Keras layers/models/optimizers in `value` (nested lists, dicts)."""
  if isinstance(value, (keras.layers.Layer, keras.optimizers.Optimizer)):
    return list(value.variables)
  if isinstance(value, (list, tuple)):
    return [v for item in value for v in _keras_variables(item)]
  if isinstance(value, dict):
    return [v for item in value.values() for v in _keras_variables(item)]
  return []


class StageCheckpoint:
  """A `tf.train.CheckpointManager` over one stage's state, with a step counter.

  Every variable of the Keras objects given is saved, also those TensorFlow's object graph
  cannot reach: Keras 3 hides layers kept in Python lists of a subclassed model (such as the
  generator's groups) from `tf.train.Checkpoint`, so their non-trainable variables (batch-norm
  moving statistics) would otherwise be lost, and their trainable ones saved only through the
  optimizer. Those are tracked explicitly under `keras_state/<name>/<i>`; a checkpoint whose
  objects were all reachable keeps exactly its former layout.

  Restoring a corrupt or truncated checkpoint raises CheckpointError naming the directory,
  instead of TensorFlow's internal error.
  """

  def __init__(self, directory: str, max_to_keep: int = 2, **trackables):
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.directory = directory
    self.checkpoint = tf.train.Checkpoint(step=self.step, **trackables)
    reachable = {id(t) for t in tf.train.TrackableView(self.checkpoint).descendants()}
    hidden = {}
    for name, value in trackables.items():
      missing = [v for v in _keras_variables(value) if id(v) not in reachable]
      if missing:
        hidden[name] = missing
        reachable.update(id(v) for v in missing)
    if hidden:
      self.checkpoint.keras_state = hidden
    self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep)

  def restore(self) -> int:
    """Restores the latest checkpoint if any; returns the step it reached (0 if none)."""
    latest = self.manager.latest_checkpoint
    if latest is None:
      return 0
    try:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError, OSError) as e:
      first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
      raise CheckpointError(
          f"checkpoint {latest} is corrupt or does not match this run ({first}); delete "
          f"{self.directory} to redo that stage, or rerun with --overwrite.") from None
    return int(self.step.numpy())

  def save(self, step: int):
    self.step.assign(step)
    self.manager.save(checkpoint_number=step)


def run_stage(step_fn: Callable[[], Dict[str, tf.Tensor]], *, stage: str, steps: int,
              checkpoint: Optional[StageCheckpoint] = None, every: int = 100,
              log_dir: Optional[str] = None, progress: bool = True,
              on_step: Optional[Callable[[int, Dict[str, float]], None]] = None,
              log_every: int = 10, summarize: Optional[Callable[[], None]] = None,
              summarize_every: int = 0) -> Dict[str, float]:
  """Runs `step_fn` until `steps`, resuming from `checkpoint`; returns the last measurements.

  Measurements are read back and checked for NaN/inf every step; every `log_every` steps (and
  on the last) they are written to TensorBoard under `log_dir/stage` and shown on a progress
  bar. A checkpoint is written every `every` steps and at the end; after SIGTERM
  (`handle_preemption`) it is written at once and PreemptedError stops the run.
  `on_step(step, values, saving)` runs after every step, before its checkpoint (`saving`:
  whether one follows); a non-finite loss stops
  the stage at once, before the next checkpoint, so the last good one stays the latest.
  `summarize`, where given, writes its own summaries (images, histograms) every
  `summarize_every` steps and on the last.
  """
  start = checkpoint.restore() if checkpoint is not None else 0
  if not distribute.same_on_every_worker(tf.distribute.get_strategy(), float(start)):
    raise CheckpointError(
        f"{stage}: the workers of the cluster resume from different steps (this one from "
        f"{start}); restart every worker with --overwrite, or give each worker a copy of the "
        "chief's workdir as <workdir>/worker<k> and --resume.")
  writer = tf.summary.create_file_writer(os.path.join(log_dir, stage)) if log_dir else None
  bar = keras.utils.Progbar(steps, stateful_metrics=None, unit_name="step",
                            verbose=1 if progress else 0) if steps > start else None
  last: Dict[str, float] = {}
  for step in range(start + 1, steps + 1):
    out = step_fn()
    # Read once: on_step and the save agree on this step; on a cluster every worker learns
    # of any worker's notice here, so all checkpoint the same step and stop.
    preempted = distribute.any_worker(tf.distribute.get_strategy(), PREEMPTED.is_set())
    saving = checkpoint is not None and (step % every == 0 or step == steps or preempted)
    logging_now = step % log_every == 0 or step == steps
    # Scalars are read back every step (one small sync) so a NaN stops the stage at the step
    # it appears, before any checkpoint could hold it.
    last = {k: float(v) for k, v in out.items()}
    check_finite(last, stage, step)
    if on_step is not None:
      on_step(step, last, saving)
    if writer is not None and logging_now:
      with writer.as_default(step=step):
        for k, v in last.items():
          tf.summary.scalar(k, v)
    if (writer is not None and summarize is not None and summarize_every > 0
        and (step % summarize_every == 0 or step == steps)):
      with writer.as_default(step=step):
        summarize()
    if bar is not None and logging_now:
      bar.stateful_metrics.update(last)  # Show current values, not running averages.
      bar.update(step, values=[(k, v) for k, v in last.items()][:4], finalize=step == steps)
    if saving:
      checkpoint.save(step)
    if preempted and step < steps:
      if writer is not None:
        writer.flush()
      where = "checkpointed" if checkpoint is not None else "not checkpointed (no state)"
      raise PreemptedError(f"{stage}: stopped by SIGTERM at step {step} of {steps}, "
                           f"{where}; rerun with --resume to continue from there.")
  if writer is not None:
    writer.flush()
  return last
