r"""Where the time goes: one line per training phase, against a plain teacher step.

  python -m benchmarks.steps                     # embedded default (small ResNet, 32 px, b64)
  python -m benchmarks.steps --config=paper --repeats=3    # ResNet-101, 224 px, batch 16

For each phase it prints the median step time after warm-up, images/s, and the ratio to a
plain Keras training step of one teacher on the same batch (forward + backward + SGD), all
in one process. It also prints the machine's matmul GFLOP/s for scale. Targets (issue 6):
Step I <= (K + 1) x the plain step per teacher; each T^b step <= 2 x the plain step.
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_enum("config", "default", ["default", "paper"], "Which scale to measure.")
flags.DEFINE_integer("repeats", 10, "Timed steps per phase (after 2 warm-up steps).")
flags.DEFINE_bool("jit", False, "Compile the steps with XLA.")

CONFIGS = {
    "default": dict(arch="small", size=32, batch=64, latent=128, width=64),
    "paper": dict(arch="resnet101", size=224, batch=16, latent=256, width=256),
}


def _time(fn, repeats):
  for _ in range(2):
    out = fn()
  float(list(out.values())[0])
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    float(list(out.values())[0])  # Wait for the step to finish.
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _matmul_gflops(n=2048, repeats=5):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  a = tf.random.normal([n, n])
  f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, a)))
  f()
  start = time.perf_counter()
  for _ in range(repeats):
    f().numpy()
  return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from dfka_tf.models import blocknet  # pylint: disable=g-import-not-at-top
  from dfka_tf.models.generator import GroupStackGenerator  # pylint: disable=g-import-not-at-top
  from dfka_tf.models.resnet import build_resnet  # pylint: disable=g-import-not-at-top
  from dfka_tf.task import TaskMap  # pylint: disable=g-import-not-at-top
  from dfka_tf.train import steps  # pylint: disable=g-import-not-at-top
  from dfka_tf.train.teachers import TeacherTrainer  # pylint: disable=g-import-not-at-top

  c = CONFIGS[FLAGS.config]
  shape = (c["size"], c["size"], 3)
  batch = c["batch"]
  print(f"config={FLAGS.config} arch={c['arch']} {c['size']}px batch={batch} jit={FLAGS.jit} "
        f"device={'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}")
  print(f"matmul 2048^3: {_matmul_gflops():.1f} GFLOP/s")

  def teacher(name, n):
    return blocknet.split_model(build_resnet(c["arch"], n, shape, name=name),
                                label_names=[f"{name}{i}" for i in range(n)])

  plain_model = build_resnet(c["arch"], 10, shape, name="plain")
  plain = TeacherTrainer(plain_model, list(range(10)), steps=100, learning_rate=0.01,
                         jit=FLAGS.jit)
  data = {"image": tf.random.uniform((batch,) + shape),
          "labels": tf.cast(tf.random.uniform((batch, 10)) > 0.9, tf.float32),
          "ignore": tf.zeros((batch, 10))}
  base = _time(lambda: plain.step(data), FLAGS.repeats)

  def line(name, seconds, target=None):
    ratio = seconds / base
    goal = f"  (target <= {target:.1f}x: {'met' if ratio <= target else 'NOT met'})" if target else ""
    print(f"{name:<28} {1000 * seconds:9.1f} ms/step {batch / seconds:9.1f} img/s "
          f"{ratio:6.2f}x plain{goal}")

  line("plain teacher step", base)
  teachers = [teacher("a", 10).freeze(), teacher("b", 10).freeze()]
  task = TaskMap.build([t.label_names for t in teachers])
  rng = tf.random.Generator.from_seed(0)
  for k in (1, 2, 4):
    gen = GroupStackGenerator(teachers[0].feature_shapes, num_groups=k,
                              latent_dim=c["latent"], width=c["width"])
    g = steps.GeneratorTrainer(gen, teachers, rng=rng, batch_size=batch, jit=FLAGS.jit).build()
    # Per teacher: the target is (K + 1) plain steps for each of the M = 2 teachers.
    line(f"Step I  G (K={k}, M=2)", _time(g.step, FLAGS.repeats), target=2 * (k + 1))
    if k == 2:
      generator = gen
  target = teacher("t", len(task.labels))
  source = steps.GeneratorSource(generator, rng, batch)
  for b in range(1, 5):
    t = steps.BlockTrainer(target, b, source, teachers, task, batch_size=batch, steps=100,
                           jit=FLAGS.jit).build()
    line(f"Step II T^{b} (M=2)", _time(t.step, FLAGS.repeats), target=2.0)
  filters = {b: [steps.TeacherFilter() for _ in teachers] for b in (1, 2, 3)}
  net = steps.regroup(target, teachers, filters, {0: 3, 1: 3}, task)
  ft = steps.FinetuneTrainer(net, source, teachers, task, batch_size=batch, steps=100,
                             jit=FLAGS.jit).build()
  line("Step III fine-tune T_u", _time(ft.step, FLAGS.repeats))


if __name__ == "__main__":
  app.run(main)
