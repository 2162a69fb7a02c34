"""A DeepInversion image pool (Yin et al., CVPR 2020) for Steps II–III. Beyond the paper.

Instead of drawing every training image from G, a fixed pool of images is synthesised once:
each batch of pixels is optimised directly, from noise, so that the frozen teachers predict a
sampled set of labels on it (`priors.inversion_loss`), the teachers' batch-norm inputs match
their running statistics, and the image stays smooth. Direct optimisation has one free
variable per pixel, where G must draw every image through one shared network, and on
scenes20 the pool's images carry objects on scene-like backgrounds where G draws colour
blobs (docs/beyond_paper.md, "DeepInversion image pool").

The pool is built batch by batch inside one resumable stage: every variable (the pool so
far, the batch being optimised, its targets, Adam's state and the random generator) is in
the stage checkpoint, so an interrupted stage resumes at the step it reached.
"""

from typing import Dict, Sequence

import keras
import numpy as np
import tensorflow as tf

from dfka_tf import distribute
from dfka_tf import priors
from dfka_tf.train.augment import apply_flip_shift, flip_shift_draws
from dfka_tf.train.steps import Step
from dfka_tf.train.teacher_pass import TeacherPass


def sample_label_sets(rng: tf.random.Generator, n: int, num_labels: int,
                      max_labels: int) -> tf.Tensor:
  """[n, num_labels] multi-hot targets, each row with 1..max_labels distinct labels.

  The number of labels is uniform in 1..max_labels, and which labels uniform among the
  subsets of that size (the ranks of uniform noise pick them).
  """
  if not 1 <= max_labels <= num_labels:
    raise ValueError(f"max_labels={max_labels} must be in 1..{num_labels}.")
  counts = rng.uniform([n, 1], 1, max_labels + 1, dtype=tf.int32)
  ranks = tf.argsort(tf.argsort(rng.uniform([n, num_labels]), axis=1), axis=1)
  return tf.cast(ranks < counts, tf.float32)


class InversionTrainer(Step):
  """Optimises `num_images` images against the frozen teachers, `batch_size` at a time.

  `step()` is one Adam step on the current batch; every `steps` steps the batch is written
  to `pool` (uint8, as real images are stored) and the next one starts from fresh noise,
  fresh targets and a fresh optimiser. `total_steps` steps fill the pool.

  Targets are drawn over the union of the teachers' labels; a label two teachers share gets
  the same target in both. Each step the teachers judge the batch flipped and shifted at
  random by up to `jitter` pixels (DeepInversion's jitter), so no image depends on one exact
  pixel alignment.
  """

  def __init__(self, teachers: Sequence, *, rng: tf.random.Generator, num_images: int,
               batch_size: int, steps: int, learning_rate: float = 0.1,
               bns_weight: float = 1.0, tv_weight: float = 1e-3, max_labels: int = 3,
               jitter: int = 2, bns_form: str = "norm", jit: bool = False):
    # `Step` holds rng and batch_size and compiles `_step`, the Adam step on the current
    # batch (`_compiled`, counted in `trace_count`).
    super().__init__(rng, batch_size, 0, jit)
    self.teachers = list(teachers)
    self.num_images, self.steps = int(num_images), int(steps)
    self.num_batches = -(-self.num_images // self.batch_size)
    self.total_steps = self.num_batches * self.steps
    self.bns_weight, self.tv_weight = float(bns_weight), float(tv_weight)
    self.bns_form, self.jitter = bns_form, int(jitter)
    self.max_labels = int(max_labels)
    names = list(dict.fromkeys(n for t in self.teachers for n in t.label_names))
    self.label_names = names
    # Column c of the concatenated teacher outputs is label names[index[c]].
    self.index = tf.constant([names.index(n) for t in self.teachers for n in t.label_names])
    self.teacher_pass = TeacherPass(self.teachers, bn_inputs=self.bns_weight > 0)
    self.bns = (priors.BatchNormPrior(self.bns_weight, bns_form, self.teacher_pass.running_stats)
                if self.bns_weight > 0 else None)
    shape = tuple(int(d) for d in self.teachers[0].feature_shapes[0])
    self.pool = tf.Variable(tf.zeros((self.num_batches * self.batch_size,) + shape, tf.uint8),
                            trainable=False, name="pool")
    self.images = tf.Variable(tf.zeros((self.batch_size,) + shape), name="images")
    self.targets = tf.Variable(tf.zeros([self.batch_size, len(names)]), trainable=False,
                               name="targets")
    self.counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="counter")
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(self.steps, 1))
    self.optimizer = keras.optimizers.Adam(schedule, beta_1=0.5, beta_2=0.99)
    # Built now, not in `build()`: `_start_batch` resets every optimizer variable, so the
    # slots must exist before it is first traced.
    self.optimizer.build([self.images])
    self._start = tf.function(self._start_batch)
    self._store = tf.function(self._store_batch)

  @property
  def trainable_variables(self):
    return [self.images]

  def _start_batch(self):
    self.images.assign(tf.clip_by_value(0.5 + 0.2 * self.rng.normal(self.images.shape), 0., 1.))
    self.targets.assign(sample_label_sets(self.rng, self.batch_size, len(self.label_names),
                                          self.max_labels))
    for v in self.optimizer.variables:  # The step counter too: the cosine schedule restarts.
      v.assign(tf.zeros_like(v))

  def _predict(self, images):
    views = self.teacher_pass(images)
    bns = tf.constant(0.0) if self.bns is None else self.bns.value(views)
    return TeacherPass.concat_probs(views), bns

  def _draw(self):
    size = tuple(int(d) for d in self.images.shape[1:3])
    return {"jitter": flip_shift_draws(self.rng, self.batch_size, self.jitter, size)}

  def _step(self, draws):
    # Each replica optimises its rows of the batch; the summed gradient updates them all.
    targets = distribute.local_rows(tf.gather(self.targets, self.index, axis=1))
    with tf.GradientTape() as tape:
      images = distribute.local_rows(tf.convert_to_tensor(self.images))
      probs, bns = self._predict(apply_flip_shift(images, draws["jitter"], self.jitter))
      total, terms = priors.inversion_loss(probs, targets, images, bns, self.bns_weight,
                                           self.tv_weight)
      scaled = distribute.scale_for_replicas(total)
    grad = tape.gradient(scaled, self.images)
    self.optimizer.apply([grad], [self.images])
    agree = tf.reduce_mean(tf.cast((probs >= 0.5) == (targets >= 0.5), tf.float32))
    return {"loss": total, **terms, "agree": agree}

  def _after_step(self):
    self.images.assign(tf.clip_by_value(self.images, 0.0, 1.0))

  def _store_batch(self, batch):
    start = batch * self.batch_size
    pixels = tf.cast(tf.round(self.images * 255.0), tf.uint8)
    self.pool.assign(tf.tensor_scatter_nd_update(
        self.pool, tf.range(start, start + self.batch_size)[:, None], pixels))

  def step(self) -> Dict[str, tf.Tensor]:
    """One optimisation step of the current batch (starting or storing it where due)."""
    k = int(self.counter.numpy())
    if k >= self.total_steps:
      raise RuntimeError(f"the pool is full: all {self.total_steps} steps are done.")
    batch, local = divmod(k, self.steps)
    if local == 0:
      self._start()
    out = self._compiled()
    if local == self.steps - 1:
      self._store(tf.constant(batch, tf.int64))
    self.counter.assign_add(1)
    return out

  def images_uint8(self) -> tf.Tensor:
    """The pool, [num_images, H, W, 3] uint8 (complete once `total_steps` steps ran)."""
    return self.pool[:self.num_images]


def pool_grid(pool: np.ndarray, n: int = 16) -> np.ndarray:
  """Up to `n` evenly spaced pool images as float [0, 1], for the report's PNG grid."""
  idx = np.linspace(0, len(pool) - 1, num=min(n, len(pool))).astype(int)
  return np.asarray(pool)[idx].astype(np.float32) / 255.0
