"""A run killed with SIGKILL mid-stage resumes to the same TargetNet as an unbroken run."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.test_cli import ROOT, _save, run_cli

STEPS = ["--arch=tiny", "--batch_size=8", "--generator_steps=30", "--block_steps=40",
         "--finetune_steps=20", "--checkpoint_every=5", "--quiet", "--seed=3"]


def _outputs(workdir, x):
  serve = tf.saved_model.load(os.path.join(workdir, "target_net")).signatures["serving_default"]
  return serve(images=tf.constant(x))["probabilities"].numpy()


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "known bug: resuming inside a Step II block loses earlier blocks' training (block 3's "
    "checkpoint lacks block 2's parameters); a finished run resumes exactly. See README."))
def test_kill_mid_stage_and_resume_matches_unbroken_run(tmp_path):
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
