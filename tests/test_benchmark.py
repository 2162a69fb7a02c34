"""benchmarks/steps.py end to end (tiny config), its FLOP counter, the teacher step's tracing."""

import os
import re
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from benchmarks import flops
from benchmarks import steps as bench
from dfka_tf.models.resnet import build_resnet
from dfka_tf.train.teachers import TeacherTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_benchmark(*args, timeout=300):
  env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, "-m", "benchmarks.steps", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _phase_line(out, name):
  # name, ms/step, (min), img/s, GFLOP, GFLOP/s, %matmul, memory, ratio, CPU-time ratio.
  pattern = (re.escape(name) + r"\s+" + r"\s+".join([r"[\d.]+"] * 5) + r"\s+[\d.]+%\s+\d+\s+"
             r"(?P<ratio>[\d.]+)x\s+(?P<cpu>[\d.]+)x")
  return re.search(pattern, out)


def test_benchmark_prints_every_phase_and_ratio():
  out = _run_benchmark("--config=tiny", "--repeats=2")
  for phase in bench.PHASES:
    line = _phase_line(out, phase.name)
    assert line, f"no line for {phase.name!r} in:\n{out}"
    assert float(line["ratio"]) > 0 and float(line["cpu"]) > 0
    if phase.target:
      assert re.search(rf"ratio {re.escape(phase.name)}\s+[\d.]+x plain \(work\s+[\d.]+x, "
                       rf"CPU time\s+[\d.]+x\) "
                       rf"target <= {phase.target:.1f}x .*: (met|NOT met)", out), phase.name
  assert re.search(r"^matmul 1024\^3 float32: [\d.]+ GFLOP/s", out, re.M)
  assert re.search(r"^%matmul: of [\d.]+ GFLOP/s, the best 1024\^3 float32 matmul", out, re.M)
  assert "plain step over the pass:" in out
  assert "RETRACED" not in out
  if not tf.config.list_physical_devices("GPU"):
    assert "mixed precision: skipped on CPU" in out
  assert re.search(r"^train: pipeline (IS|is not) the bottleneck", out, re.M), out
  assert re.search(r"^test: pipeline (IS|is not) the bottleneck", out, re.M), out


@pytest.mark.slow
def test_benchmark_compares_jit_and_mixed_precision():
  out = _run_benchmark("--config=tiny", "--repeats=2", "--phases=T4", "--compare_jit",
                       "--force_mixed", "--nopipeline")
  for label in ("float32, jit=off", "float32, jit=on", "mixed_float16, jit=on"):
    assert f"== {label}:" in out
  assert re.search(r"Step II T\^4 \(M=2\)\s+[\d.]+\s+[\d.]+\s+float32, jit=on / float32, "
                   r"jit=off =\s+[\d.]+x wall,\s+[\d.]+x CPU time", out), out
  assert "mixed_float16, jit=on / float32, jit=on" in out


def test_flops_count_forward_and_live_backward_convolutions():
  conv = keras.layers.Conv2D(16, 3, padding="same")
  dense = keras.layers.Dense(5)
  x = tf.random.uniform((4, 8, 8, 3))
  conv_flops = 2 * 4 * 8 * 8 * 16 * (3 * 3 * 3)
  dense_flops = 2 * 4 * (8 * 8 * 16) * 5
  dense(tf.reshape(conv(x), (4, -1)))

  def loss(image):
    return tf.reduce_sum(dense(tf.reshape(conv(image), (4, -1))))

  forward = tf.function(loss).get_concrete_function(x)
  assert flops.count(forward) == (conv_flops + dense_flops,
                                  {"Conv2D": conv_flops, "MatMul": dense_flops}, 0)

  @tf.function
  def weights_only(image):  # The image is not watched: its conv backprop is dead code.
    with tf.GradientTape() as tape:
      value = loss(image)
    return value, tape.gradient(value, conv.trainable_variables + dense.trainable_variables)

  total, by_type, _ = flops.count(weights_only.get_concrete_function(x))
  assert by_type["Conv2D"] == by_type["Conv2DBackpropFilter"] == conv_flops
  assert "Conv2DBackpropInput" not in by_type
  assert by_type["MatMul"] == 3 * dense_flops  # forward, d/dW and the (live) d/dx
  assert total == 2 * conv_flops + 3 * dense_flops
  # Without pruning, the dead Conv2DBackpropInput the tape built is counted too.
  assert flops.count(weights_only.get_concrete_function(x), prune=False)[0] == total + conv_flops


def test_teacher_training_step_does_not_retrace():
  shape, batch = (16, 16, 3), 4
  model = build_resnet("tiny", 3, shape, name="retrace")
  trainer = TeacherTrainer(model, [0, 2, 4], steps=10, learning_rate=0.01)

  def batch_of(seed):
    g = tf.random.Generator.from_seed(seed)
    return {"image": g.uniform((batch,) + shape),
            "labels": tf.cast(g.uniform((batch, 5)) > 0.5, tf.float32),
            "ignore": tf.zeros((batch, 5))}

  trainer.step(batch_of(0))
  traces = trainer.trace_count
  assert traces <= 2  # Creating the optimizer's variables on the first call traces twice.
  for seed in (1, 2, 3):
    loss = trainer.step(batch_of(seed))["loss"]
  assert trainer.trace_count == traces
  assert bool(tf.math.is_finite(loss))
