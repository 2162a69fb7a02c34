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


def _phase_row(out, name):
  # name, ms/step, (min), img/s, GFLOP, GFLOP/s, %matmul, memory, ratio, CPU-time ratio and,
  # for a phase with a target, "<= {target}x met|NOT met".
  num = r"\s+([\d.]+)"
  pattern = (r"^" + re.escape(name) + num * 6 + r"%\s+(\d+)\s+([\d.]+)x\s+([\d.]+)x"
             r"(?:\s+<= ([\d.]+)x (met|NOT met))?[ ]*$")
  match = re.search(pattern, out, re.M)
  if match is None:
    return None
  keys = ("ms", "min", "img_s", "gflop", "gflop_s", "matmul", "mem", "ratio", "cpu", "target",
          "verdict")
  return dict(zip(keys, match.groups()))


def _interval(text):
  """The reals that print as `text` (a decimal rounded to as many places as it shows)."""
  half = 0.5 * 10.0 ** -len(text.partition(".")[2])
  return max(float(text) - half, 0.0), float(text) + half


def _quotient_prints_as(printed, numerator, denominator, scale=1.0):
  """Whether scale * a / b, for some a, b that print as `numerator`, `denominator`, can print
  as `printed`: the three were rounded from the same unrounded values."""
  (a_lo, a_hi), (b_lo, b_hi), (p_lo, p_hi) = (_interval(numerator), _interval(denominator),
                                               _interval(printed))
  return p_lo <= scale * a_hi / b_lo * (1 + 1e-9) and scale * a_lo / b_hi <= p_hi * (1 + 1e-9)


def _verdict_fits(ratio, target, verdict):
  """'met' exactly when ratio <= target; the ratio is printed to 2 places, so only a printed
  ratio within 0.005 of the target may go either way."""
  lo, hi = _interval(ratio)
  return lo <= float(target) if verdict == "met" else hi > float(target)


# Slow (about 40 s): the benchmark's step without retracing is the default suite's
# (test_teacher_training_step_does_not_retrace); CI's daily slow test runs it in turn.
@pytest.mark.slow
def test_benchmark_prints_every_phase_and_ratio():
  repeats = 2
  out = _run_benchmark("--config=tiny", f"--repeats={repeats}")
  batch = int(re.search(r"^== float32, jit=\w+: batch (\d+),", out, re.M)[1])
  peak = re.search(r"^%matmul: of ([\d.]+) GFLOP/s, the best 1024\^3 float32 matmul of this "
                   r"run \(measured ([\d., ]+)\)", out, re.M)
  assert peak, out
  measured = peak[2].split(", ")
  assert float(peak[1]) == max(map(float, measured))  # the best of the samples it lists
  assert re.search(rf"^matmul 1024\^3 float32: {re.escape(measured[0])} GFLOP/s", out, re.M)
  rows = {}
  for phase in bench.PHASES:
    row = rows[phase.key] = _phase_row(out, phase.name)
    assert row, f"no line for {phase.name!r} in:\n{out}"
    assert float(row["min"]) <= float(row["ms"])
    assert _quotient_prints_as(row["img_s"], str(batch), row["ms"], scale=1000), row
    assert _quotient_prints_as(row["gflop_s"], row["gflop"], row["ms"], scale=1000), row
    assert _quotient_prints_as(row["matmul"], row["gflop_s"], peak[1], scale=100), row
    if not phase.target:
      assert row["target"] is None, row
      continue
    assert row["target"] == f"{phase.target:.1f}", row
    assert _verdict_fits(row["ratio"], row["target"], row["verdict"]), row
    # The summary line repeats the row's ratios and verdict; work is GFLOP over the plain's.
    line = re.search(rf"^ratio {re.escape(phase.name)}\s+([\d.]+)x plain \(work\s+([\d.]+)x, "
                     rf"CPU time\s+([\d.]+)x\) target <= {re.escape(row['target'])}x "
                     rf"\[{re.escape(phase.rule)}\]: (met|NOT met)$", out, re.M)
    assert line, phase.name
    assert (line[1], line[3], line[4]) == (row["ratio"], row["cpu"], row["verdict"])
    assert _quotient_prints_as(line[2], row["gflop"], rows["plain"]["gflop"]), (line[0], row)
  # The plain row is the reference: its ratios are 1 by definition, its times are those of
  # every plain sample of the pass (its own repeats, then one before each timed step).
  plain = rows["plain"]
  assert (plain["ratio"], plain["cpu"]) == ("1.00", "1.00")
  samples = repeats * len(bench.PHASES)
  assert f"plain row: all {samples} plain samples" in out
  summary = re.search(r"^plain step over the pass: min ([\d.]+), median ([\d.]+), max ([\d.]+) "
                      rf"ms wall, .* \({samples} samples;", out, re.M)
  assert summary, out
  assert (summary[1], summary[2]) == (plain["min"], plain["ms"])
  assert float(summary[2]) <= float(summary[3])
  assert "RETRACED" not in out
  if not tf.config.list_physical_devices("GPU"):
    # On CPU the memory column is the process's peak RSS so far: it never goes down.
    mem = [int(rows[p.key]["mem"]) for p in bench.PHASES]
    assert mem == sorted(mem), mem
    assert "mixed precision: skipped on CPU" in out
  for split in ("train", "test"):
    verdict = re.search(rf"^{split}: pipeline (IS|is not) the bottleneck \(alone it delivers "
                        r"([\d.]+)x", out, re.M)
    assert verdict, out
    # "IS" exactly when the pipeline alone is slower than the step (printed to 1 place).
    lo, hi = _interval(verdict[2])
    assert lo < 1.0 if verdict[1] == "IS" else hi >= 1.0, verdict[0]


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


def test_synthesis_benchmark_times_pool_and_forge_at_tiny_scale():
  from benchmarks import synthesis  # pylint: disable=g-import-not-at-top
  lines = []
  out = synthesis.measure("tiny", pool_steps=3, rounds=1, log=lines.append)
  assert out["pool"][1] == 8 and out["forge"][1] == 8  # One batch of the tiny config each.
  assert out["pool"][0] > 0 and out["forge"][0] > 0 and out["ratio"] > 0
  assert any(line.startswith("forge / pool") for line in lines)
