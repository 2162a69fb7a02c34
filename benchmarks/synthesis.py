r"""Synthesis speed: Forge's rounds against the DeepInversion pool, side by side in one process.

  python -m benchmarks.synthesis                      # default: small ResNets, 32 px, batch 64
  python -m benchmarks.synthesis --config=tiny --pool_steps=4 --rounds=2   # seconds (smoke)

Both make images against the same two teachers (untrained networks of the run's
architecture: speed does not depend on the weights) with their run's default settings:
- the pool: one batch optimised pixel by pixel for --pool_steps Adam steps (the option's
  default, 200), timed over --pool_batches batches;
- Forge: --rounds rounds of --forge_g_steps generator steps each, the adversarial term on
  (a fresh TargetNet of the run's architecture plays the student), as a run has them after
  its warm-up.
Prints seconds, images per second for each and the ratio. Steps are traced before timing.
What the images are worth is the other half: the rows of results/from_scratch/ give the mAP
each reaches and their synthesis seconds (docs/results.md, "From fresh weights").
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import tensorflow as tf

from benchmarks.steps import CONFIGS, World
from dfka_tf.models.resnet import build_resnet
from dfka_tf.stages import images
from dfka_tf.train import inversion
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_enum("config", "default", list(CONFIGS), "Which scale to measure.")
  flags.DEFINE_integer("pool_batches", 1, "Pool batches timed.")
  flags.DEFINE_integer("pool_steps", 200, "Adam steps per pool batch (--inversion_steps).")
  flags.DEFINE_integer("rounds", 10, "Forge rounds timed.")
  flags.DEFINE_integer("forge_g_steps", 5, "Generator steps per round (--forge_g_steps).")


def measure(config: str = "default", *, pool_batches: int = 1, pool_steps: int = 200,
            rounds: int = 10, g_steps: int = 5, log=print):
  """{"pool": (seconds, images), "forge": (seconds, images)} measured one after the other."""
  w = World(CONFIGS[config], jit=False)
  run = w.run(forge=True, forge_g_steps=g_steps)
  out = {}

  pool = inversion.InversionTrainer(w.teachers, rng=w.rng, num_images=w.batch * pool_batches,
                                    batch_size=w.batch, steps=pool_steps, jit=False).build()
  pool.step()  # Traces (and starts batch 1).
  t0 = time.perf_counter()
  for _ in range(pool.total_steps - 1):
    pool.step()
  seconds = (time.perf_counter() - t0) * pool.total_steps / (pool.total_steps - 1)
  out["pool"] = (seconds, w.batch * pool_batches)
  log(f"pool:  {w.batch * pool_batches} images in {seconds:.1f} s "
      f"({w.batch * pool_batches / seconds:.2f} images/s; {pool_steps} steps a batch)")

  engine = images.forge_engine(run, w.teachers, w.task)
  student_net = build_resnet(w.c["arch"], len(w.task.labels), w.shape, name="student")
  engine.bind(lambda x: tf.cast(student_net(x, training=False), tf.float32))
  engine.run_round(adversarial=True)  # Traces.
  t0 = time.perf_counter()
  for _ in range(rounds):
    engine.run_round(adversarial=True)
  seconds = time.perf_counter() - t0
  out["forge"] = (seconds, w.batch * rounds)
  log(f"forge: {w.batch * rounds} images in {seconds:.1f} s "
      f"({w.batch * rounds / seconds:.2f} images/s; {g_steps} generator steps a round)")
  ratio = (out["forge"][1] / out["forge"][0]) / (out["pool"][1] / out["pool"][0])
  log(f"forge / pool images per second: {ratio:.1f}x")
  out["ratio"] = ratio
  return out


def main(argv):
  del argv
  measure(FLAGS.config, pool_batches=FLAGS.pool_batches, pool_steps=FLAGS.pool_steps,
          rounds=FLAGS.rounds, g_steps=FLAGS.forge_g_steps)


if __name__ == "__main__":
  define_flags()
  app.run(main)
