"""The shared stage loop: NaN guard, checkpoints, resume, corrupt checkpoints."""

import os

import pytest
import tensorflow as tf

from dfka_tf.errors import CheckpointError, NonFiniteLossError
from dfka_tf.train import loop


def _counter_step(var, nan_at=None):
  def step():
    var.assign_add(1.0)
    value = float("nan") if nan_at is not None and int(var.numpy()) >= nan_at else 1.0
    return {"loss": tf.constant(value), "term_a": tf.constant(0.5)}
  return step


def test_nan_stops_at_once_naming_stage_step_term_and_keeps_last_good_checkpoint(tmp_path):
  var = tf.Variable(0.0)
  ckpt = loop.StageCheckpoint(str(tmp_path / "ck"), var=var)
  with pytest.raises(NonFiniteLossError, match=r"generator: loss term 'loss' became nan at "
                     r"step 7.*last good checkpoint"):
    loop.run_stage(_counter_step(var, nan_at=7), stage="generator", steps=20, checkpoint=ckpt,
                   every=5, progress=False, log_every=10)
  assert ckpt.manager.latest_checkpoint.endswith("-5")
  fresh = tf.Variable(0.0)
  assert loop.StageCheckpoint(str(tmp_path / "ck"), var=fresh).restore() == 5
  assert float(fresh.numpy()) == 5.0


def test_resume_continues_from_last_checkpoint(tmp_path):
  var = tf.Variable(0.0)
  ckpt = loop.StageCheckpoint(str(tmp_path / "ck"), var=var)
  loop.run_stage(_counter_step(var), stage="s", steps=6, checkpoint=ckpt, every=3,
                 progress=False)
  var2 = tf.Variable(0.0)
  ckpt2 = loop.StageCheckpoint(str(tmp_path / "ck"), var=var2)
  calls = []
  step = _counter_step(var2)
  loop.run_stage(lambda: calls.append(1) or step(), stage="s", steps=10, checkpoint=ckpt2,
                 every=3, progress=False)
  assert len(calls) == 4 and float(var2.numpy()) == 10.0


def test_corrupt_checkpoint_raises_checkpoint_error(tmp_path):
  var = tf.Variable(0.0)
  ckpt = loop.StageCheckpoint(str(tmp_path / "ck"), var=var)
  loop.run_stage(_counter_step(var), stage="s", steps=2, checkpoint=ckpt, every=1,
                 progress=False)
  data = [f for f in os.listdir(tmp_path / "ck") if ".data-" in f and f.startswith("ckpt-2")]
  with open(tmp_path / "ck" / data[0], "r+b") as f:
    f.truncate(1)
  with pytest.raises(CheckpointError, match="corrupt"):
    loop.StageCheckpoint(str(tmp_path / "ck"), var=tf.Variable(0.0)).restore()
