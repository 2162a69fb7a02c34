"""Every step type on 2 replicas against 1, on the same global batch (run by test_distribute).

Run as a script in its own process: the CPU is split into two logical devices before
TensorFlow starts, which a process that already ran TensorFlow cannot do. For each step
type the same networks are built (same seed) once under the default strategy and once under
a MirroredStrategy over the two devices; both take `STEPS` steps on the same global batches
(drawn from the same seeded generators), and the script prints, as one JSON object per
case, the largest difference between the two runs' variables (trained, moving statistics,
optimizer state) and measurements, and how far the steps moved the variables.

  python tests/distributed_cases.py [case ...]
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top

_CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _CPUS[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from dfka_tf.models import blocknet  # pylint: disable=g-import-not-at-top
from dfka_tf.models.generator import GroupStackGenerator  # pylint: disable=g-import-not-at-top
from dfka_tf.models.resnet import build_resnet  # pylint: disable=g-import-not-at-top
from dfka_tf.models import regroup as regroup_lib  # pylint: disable=g-import-not-at-top
from dfka_tf.task import TaskMap  # pylint: disable=g-import-not-at-top
from dfka_tf.train import optimizers, sources, steps  # pylint: disable=g-import-not-at-top
from dfka_tf.train.inversion import InversionTrainer  # pylint: disable=g-import-not-at-top
from dfka_tf.train.teachers import TeacherTrainer  # pylint: disable=g-import-not-at-top

SHAPE = (16, 16, 3)
BATCH = 8  # The global batch: 4 per replica.
STEPS = 2  # Two steps: the second applies momentum and Adam's moments from the first.


def _blocknet(num_labels, name):
  model = build_resnet("tiny", num_labels, SHAPE, name=name)
  return blocknet.split_model(model, label_names=[f"{name}_{i}" for i in range(num_labels)])


def _world():
  keras.utils.set_random_seed(0)
  teachers = [_blocknet(3, "a"), _blocknet(2, "b")]
  # Teachers with moving statistics away from (0, 1), as trained ones have: L_bns then
  # pulls somewhere.
  for t in teachers:
    for v in t.source_model.non_trainable_variables:
      v.assign(v + 0.1 * tf.random.stateless_normal(v.shape, [1, 2]))
    t.freeze()
  task = TaskMap.build([t.label_names for t in teachers], ["b_1", "a_0", "a_2"])
  generator = GroupStackGenerator(teachers[0].feature_shapes, num_groups=2, latent_dim=8,
                                  width=16)
  generator(tf.zeros([1, 8]))
  return teachers, task, generator


def _sgd_for_generator(trainer):
  """G's Adam replaced by SGD. Adam divides each gradient by its own magnitude, so where a
  gradient is zero up to rounding (a bias before a batch norm) it turns rounding noise into
  steps of ±lr, which no two summation orders share; SGD keeps the comparison about the
  step's gradients."""
  trainer.optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
  return trainer


def _rng(seed=1):
  return tf.random.Generator.from_seed(seed)


def _images(n=32):
  return tf.random.stateless_uniform([n] + list(SHAPE), [3, 4])


def case_teacher():
  keras.utils.set_random_seed(0)
  model = build_resnet("tiny", 3, SHAPE, name="t")
  trainer = TeacherTrainer(model, [0, 2, 3], steps=10, learning_rate=0.1)
  trainer.optimizer.build(model.trainable_variables)
  labels = tf.cast(tf.random.stateless_uniform([BATCH, 4], [5, 6]) < 0.5, tf.float32)
  ignore = tf.cast(tf.random.stateless_uniform([BATCH, 4], [7, 8]) < 0.3, tf.float32)
  batch = {"image": _images(BATCH), "labels": labels, "ignore": ignore}
  return lambda: trainer.step(batch), model.variables + trainer.optimizer.variables


def case_generator():
  teachers, _, generator = _world()
  trainer = _sgd_for_generator(steps.GeneratorTrainer(
      generator, teachers, rng=_rng(), batch_size=BATCH, jitter=2, bns_weight=1.0,
      lh_weight=1.0)).build()
  return trainer.step, (generator.variables + trainer.trainable_variables + trainer.optimizer.variables
                + [trainer.rng.state])


def _target():
  keras.utils.set_random_seed(5)
  return _blocknet(3, "target")


def _block_case(block, source_kind):
  teachers, task, generator = _world()
  target = _target()
  if source_kind == "generator":  # G in training mode: its batch norms are synchronized.
    source = sources.GeneratorSource(generator, _rng(2), BATCH, jitter=2, training=True)
  else:
    source = sources.NoiseSource(SHAPE, _rng(2), BATCH)
  trainer = steps.BlockTrainer(target, block, source, teachers, task, batch_size=BATCH,
                               steps=10, learning_rate=0.1).build()
  return trainer.step, (target.source_model.variables
                        + [v for f in trainer.filters for v in f.variables]
                        + trainer.optimizer.variables + generator.variables)


def case_block1():
  return _block_case(1, "generator")


def case_block2():
  return _block_case(2, "generator")


def case_block_last():
  return _block_case(4, "noise")


def _finetune_case(source):
  teachers, task, _ = _world()
  target = _target()
  trainer = steps.FinetuneTrainer(target.source_model, source, teachers, task, batch_size=BATCH,
                                  steps=10, learning_rate=0.1).build()
  return trainer.step, target.source_model.variables + trainer.optimizer.variables


def case_finetune_pool():
  pool = tf.cast(_images(24) * 255.0, tf.uint8)
  return _finetune_case(sources.PoolSource(pool, _rng(3), BATCH, jitter=2))


def case_finetune_dataset():
  data = tf.data.Dataset.from_tensor_slices({"image": _images(32)}).batch(
      BATCH, drop_remainder=True)
  return _finetune_case(sources.DatasetSource(data))


def case_adversarial():
  teachers, task, generator = _world()
  target = _target()
  g = _sgd_for_generator(steps.GeneratorTrainer(generator, teachers, rng=_rng(),
                                                batch_size=BATCH)).build()
  source = sources.GeneratorSource(generator, _rng(2), BATCH)
  net = regroup_lib.regroup(target, teachers, {}, {0: 4, 1: 4}, task)
  trainer = steps.AdversarialFinetuneTrainer(net, source, teachers, task, g, weight=1.0,
                                             batch_size=BATCH, steps=10,
                                             learning_rate=0.1).build()
  return trainer.step, (net.variables + generator.variables + trainer.optimizer.variables
                + g.optimizer.variables)


def case_joint():
  teachers, task, generator = _world()
  target = _target()
  g = _sgd_for_generator(steps.GeneratorTrainer(generator, teachers, rng=_rng(),
                                                batch_size=BATCH, gamma=0.0))
  trainer = steps.JointTrainer(g, target.source_model, teachers, task,
                               optimizer=optimizers.step_decay_sgd(0.1, 10, weight_decay=5e-4)
                               ).build()
  return trainer.step, (target.source_model.variables + generator.variables
                        + trainer.optimizer.variables + g.optimizer.variables)


def case_inversion():
  teachers, _, _ = _world()
  trainer = InversionTrainer(teachers, rng=_rng(), num_images=BATCH, batch_size=BATCH,
                             steps=STEPS + 1, learning_rate=0.1, bns_weight=1.0, jitter=2)
  # The targets are drawn when the batch starts (the first step), not trained: left out.
  return trainer.step, [trainer.images] + trainer.optimizer.variables


CASES = {name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")}


def _values(variables):
  return [np.asarray(tf.convert_to_tensor(v)).astype(np.float64) for v in variables]


def _run(fn, strategy):
  with strategy.scope():
    step, variables = fn()
    before = _values(variables)
    outs = [{k: float(v) for k, v in step().items()} for _ in range(STEPS)]
  after = _values(variables)
  moved = max(float(np.max(np.abs(a - b), initial=0.0)) for a, b, v in
              zip(before, after, variables) if tf.as_dtype(v.dtype).is_floating)
  return outs, after, moved


_MIRRORED = []  # One for every case: strategies in one process would share collective keys.


def compare(name):
  if not _MIRRORED:
    _MIRRORED.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
  two_strategy = _MIRRORED[0]
  one = _run(CASES[name], tf.distribute.get_strategy())
  two = _run(CASES[name], two_strategy)
  if os.environ.get("SHOW"):
    for i, (a, b) in enumerate(zip(one[1], two[1])):
      d = float(np.max(np.abs(a - b), initial=0.0))
      if d > 1e-5:
        print(i, a.shape, d, float(np.max(np.abs(a))))
  diffs = [float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(one[1], two[1])]
  measured = max(abs(one[0][s][k] - two[0][s][k]) for s in range(STEPS) for k in one[0][s])
  return {"case": name, "replicas": two_strategy.num_replicas_in_sync,
          "variables": len(diffs), "max_variable_diff": max(diffs), "moved": one[2],
          "max_measurement_diff": measured, "keys_match": all(
              set(a) == set(b) for a, b in zip(one[0], two[0])),
          "measurements": sorted(one[0][-1])}


def main(names):
  for name in names or sorted(CASES):
    print(json.dumps(compare(name)), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
