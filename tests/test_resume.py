"""A run killed with SIGKILL at any moment resumes to the same TargetNet as an unbroken run."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfka_tf import pipeline
from dfka_tf.config import RunConfig
from dfka_tf.train import loop
from tests.test_cli import ROOT, _save, run_cli

STEPS = ["--arch=tiny", "--batch_size=8", "--generator_steps=30", "--block_steps=40",
         "--finetune_steps=20", "--checkpoint_every=5", "--quiet", "--seed=3"]

# The child runs the pipeline and SIGKILLs itself inside step `step` of `stage`, after that
# step's update but before its checkpoint: the state on disk is whatever an outside kill at
# that moment would leave (the last checkpoint is at the step before). A self-kill picks the
# moment exactly, so the test neither races the run nor needs long stages to hit one.
_KILLED_CHILD = """
import os, signal, sys
from dfka_tf import pipeline
from dfka_tf.config import RunConfig
from dfka_tf.train import loop
stage, step = sys.argv[2], int(sys.argv[3])
check = loop.check_finite
def check_then_kill(measurements, s, n):
  check(measurements, s, n)
  if s == stage and n == step:
    os.kill(os.getpid(), signal.SIGKILL)
loop.check_finite = check_then_kill
pipeline.run(RunConfig.from_json(sys.argv[1]), progress=False)
"""

# (stage, step it is killed in): mid-Step I, Step II before block 1's first checkpoint (only
# the finished generator on disk), mid-block 2 (the reported case) and mid-Step III. With 4
# steps a stage and a checkpoint every 2, step 3 is killed with the checkpoint of step 2 kept.
KILL_POINTS = [
    pytest.param("generator", 3, marks=pytest.mark.slow, id="generator"),
    pytest.param("block1", 1, marks=pytest.mark.slow, id="block1-start"),
    pytest.param("block2", 3, id="block2"),
    pytest.param("finetune", 3, marks=pytest.mark.slow, id="finetune"),
]


@pytest.fixture(scope="module")
def teacher_paths(tmp_path_factory):
  d = tmp_path_factory.mktemp("teachers")
  return (_save(d / "a.keras", "tiny", ["cat", "dog"]),
          _save(d / "b.keras", "tiny", ["bus", "car", "tree"]))


def _config(teacher_paths, workdir) -> RunConfig:
  return RunConfig.build("byo", overrides=dict(
      teacher_paths=tuple(teacher_paths), num_teachers=len(teacher_paths), arch="tiny",
      batch_size=4, generator_width=16, latent_dim=16, generator_steps=4, block_steps=4,
      finetune_steps=4, checkpoint_every=2, seed=3, evaluate=False, export=False,
      workdir=str(workdir)))


@pytest.fixture(scope="module")
def unbroken(teacher_paths, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("unbroken")
  pipeline.run(_config(teacher_paths, workdir), progress=False)
  return workdir


def _latest_variables(directory):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(directory)))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def assert_same_run(resumed, unbroken, atol=0.0, ignore=()):
  """Every stage's final checkpoint (all variables, optimizer state included) and η, S_m;
  checkpoint entries named in `ignore` may differ."""
  stages = sorted(os.listdir(unbroken / "ckpt"))
  assert sorted(os.listdir(resumed / "ckpt")) == stages
  worst = 0.0
  for stage in stages:
    want, got = _latest_variables(unbroken / "ckpt" / stage), _latest_variables(
        resumed / "ckpt" / stage)
    assert sorted(got) == sorted(want), stage
    for name, value in want.items():
      if name in ignore:
        continue
      diff = float(np.max(np.abs(got[name].astype(np.float64) - value))) if value.size else 0.0
      assert diff <= atol, f"{stage}: {name} differs by {diff}"
      worst = max(worst, diff)
  state = [json.loads((w / "progress.json").read_text()) for w in (resumed, unbroken)]
  assert sorted(state[0]) == sorted(state[1])
  for key in set(state[1]) - {"times"}:  # done, η, S_m, L_u^b curves.
    assert state[0][key] == state[1][key], key
  return worst


def kill_in_child(config: RunConfig, stage: str, step: int, log, meanwhile=lambda: None):
  """Runs `config` in a child process that SIGKILLs itself inside step `step` of `stage`
  (`_KILLED_CHILD`); returns what `meanwhile()` returns, run while the child works."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  with open(log, "w") as out:
    child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, config.to_json(), stage,
                              str(step)], cwd=ROOT, env=env, stdout=out, stderr=out)
  try:
    result = meanwhile()
    child.wait(timeout=300)
  finally:
    if child.poll() is None:
      child.kill()
      child.wait()
  assert child.returncode == -signal.SIGKILL, log.read_text()[-3000:]
  return result


@pytest.mark.parametrize("stage,step", KILL_POINTS)
def test_sigkill_then_resume_matches_unbroken_run(request, teacher_paths, tmp_path, stage,
                                                  step):
  killed = tmp_path / "killed"
  config = _config(teacher_paths, killed)
  # The unbroken reference (computed once per module) runs while the child works.
  reference = kill_in_child(config, stage, step, tmp_path / "child.log",
                            lambda: request.getfixturevalue("unbroken"))
  progress = killed / "progress.json"
  done = json.loads(progress.read_text())["done"] if progress.exists() else []
  assert stage not in done and "finetune" not in done
  pipeline.run(config, progress=False, resume=True)
  # On CPU with the same seed the resumed run is bit-identical to the unbroken one.
  assert_same_run(killed, reference)


# As _KILLED_CHILD, but the child sends itself SIGTERM (a cluster's preemption notice) in
# step `step` of `stage`: the stage checkpoints the next step and the run stops.
_TERMINATED_CHILD = _KILLED_CHILD.replace("signal.SIGKILL", "signal.SIGTERM")


def test_sigterm_checkpoints_the_running_stage_and_resume_matches(request, teacher_paths,
                                                                  tmp_path):
  stopped = tmp_path / "stopped"
  config = _config(teacher_paths, stopped)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  reference = request.getfixturevalue("unbroken")
  proc = subprocess.run([sys.executable, "-c", _TERMINATED_CHILD, config.to_json(), "block2",
                         "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "PreemptedError: block2: stopped by SIGTERM at step 3 of 4" in proc.stderr
  # The notice came in step 2; step 3, off the every-2-steps schedule, was checkpointed
  # (with the part of the loss curve it reached) and the run stopped.
  assert tf.train.latest_checkpoint(str(stopped / "ckpt" / "block2")).endswith("ckpt-3")
  done = json.loads((stopped / "progress.json").read_text())["done"]
  assert "block2" not in done and "block1" in done
  pipeline.run(config, progress=False, resume=True)
  # The extra save at step 3 adds one to the manager's count of saves, and nothing else.
  assert_same_run(stopped, reference, ignore=("save_counter/.ATTRIBUTES/VARIABLE_VALUE",))


class _ListedLayers(keras.Model):
  """Layers kept in a Python list, as GroupStackGenerator keeps its groups."""

  def __init__(self):
    super().__init__()
    self.parts = [keras.layers.Dense(3), keras.layers.BatchNormalization()]
    for part, shape in zip(self.parts, [(None, 2), (None, 3)]):
      part.build(shape)

  def call(self, x, training=False):
    return self.parts[1](self.parts[0](x), training=training)


def test_stage_checkpoint_keeps_variables_keras_hides_from_tensorflow(tmp_path):
  model = _ListedLayers()
  optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
  optimizer.build(model.trainable_variables)
  ckpt = loop.StageCheckpoint(str(tmp_path / "ck"), model=model, optimizer=optimizer)
  x = tf.constant(np.random.RandomState(0).rand(8, 2).astype("float32"))
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(model(x, training=True))  # Moves the BN statistics too.
  optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
  ckpt.save(1)
  fresh = _ListedLayers()
  fresh_optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
  fresh_optimizer.build(fresh.trainable_variables)
  assert loop.StageCheckpoint(str(tmp_path / "ck"), model=fresh,
                              optimizer=fresh_optimizer).restore() == 1
  for want, got in zip(model.variables + optimizer.variables,
                       fresh.variables + fresh_optimizer.variables):
    np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=want.path)
  assert float(np.abs(fresh.parts[1].moving_mean.numpy()).max()) > 0


def test_stage_checkpoint_layout_unchanged_when_tensorflow_sees_everything(tmp_path):
  inputs = keras.Input((2,))
  model = keras.Model(inputs, keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs)))
  loop.StageCheckpoint(str(tmp_path / "ck"), model=model).save(1)
  names = tf.train.load_checkpoint(str(tmp_path / "ck")).get_variable_to_shape_map()
  assert not [n for n in names if n.startswith("keras_state")]
  assert any("moving_mean" in n for n in names)


def _outputs(workdir, x):
  serve = tf.saved_model.load(os.path.join(workdir, "target_net")).signatures["serving_default"]
  return serve(images=tf.constant(x))["probabilities"].numpy()


@pytest.mark.slow
def test_cli_kill_mid_stage_and_resume_matches_unbroken_run(tmp_path):
  """End to end through the CLI, killed from outside at a moment the test does not choose."""
  a = _save(tmp_path / "a.keras", "tiny", ["cat", "dog"])
  b = _save(tmp_path / "b.keras", "tiny", ["bus", "car", "tree"])
  teachers = [f"--teacher={a}", f"--teacher={b}"]
  killed, whole = tmp_path / "killed", tmp_path / "whole"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *teachers, *STEPS,
                           f"--workdir={killed}"], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  # Kill once block 2 of Step II has a checkpoint but has not finished.
  marker = killed / "ckpt" / "block2" / "checkpoint"
  deadline = time.time() + 400
  while not marker.exists() and time.time() < deadline and proc.poll() is None:
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be killed"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not (killed / "results.json").exists()
  resumed = run_cli(*teachers, *STEPS, f"--workdir={killed}", "--resume")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  unbroken = run_cli(*teachers, *STEPS, f"--workdir={whole}")
  assert unbroken.returncode == 0, unbroken.stderr[-3000:]
  x = np.random.RandomState(0).rand(4, 16, 16, 3).astype("float32")
  # Same seed, same checkpoints: on CPU the resumed model matches to float32 round-off.
  np.testing.assert_allclose(_outputs(killed, x), _outputs(whole, x), rtol=1e-4, atol=1e-5)
