"""Forge: data-free images made while the student learns, kept in a bank it replays. Beyond
the paper.

The paper's G is trained once (Step I) and frozen; a TargetNet that starts from fresh weights
learns nothing from it (docs/results.md, "From fresh weights"). Forge follows what the
field's data-free methods share (Fast-Datafree, CMI, DFAD, DeepInversion, NAYER), written
for sigmoid multi-label teachers:

1. BN-statistics matching against every teacher (`priors.BatchNormPrior`), teachers in
   inference mode;
2. an adversarial term after a warm-up: G seeks images where the student still disagrees
   with the teachers, only on labels where the two still decide alike
   (`priors.masked_kl_disagreement`);
3. differentiable flip and shift of the image inside the synthesis loop
   (`augment.apply_flip_shift`);
4. a bank (a uint8 ring, `Bank`) that keeps every round's images, which the student
   replays uniformly with the same flip and shift;
5. synthesis and student training interleaved: one round of `g_steps` generator steps every
   `round_every` student steps. Each round starts G from a meta-learnt initialisation
   (`reset="meta"`, Fast-Datafree: first-order meta step on the summed round gradients),
   from fresh weights every `reset_every` rounds (`"reinit"`, CMI with 1, NAYER with 10),
   or carries on (`"keep"`); the latent codes are learnt within the round;
6. balanced multi-label targets over Y_cst: 1..k labels an image, every label's share of a
   round even and the least-used labels first (`balanced_label_sets`). "Used" counts the
   targets (`labels="balanced"`) or, with `labels="realised"`, the labels the teachers give
   the images the round keeps (probability >= 0.5). Every label still gets ⌊S/C⌋ of a
   round's S slots; the counts only choose which labels get the S mod C spare ones, so a
   label G fails to draw is asked for at most one slot more a round.

Beyond those six, off by default: `contrast` (`--forge_contrast`) weighs, in G's
cross-entropy, the "not b" entry of each image made for label a, b being a's partner: the
label the teachers most call on the kept images made for a and not for b (`spillover`,
`label_partners`, `contrast_weights`). A student distilled on Forge's images confuses the
labels the bank's images blur together (docs/results.md: circle and hexagon), so these
entries ask G for images that keep such pairs apart.

`ForgeEngine` holds all of it; `ForgeSource` is the `ImageSource` a student stage reads, and
its `advance()` (called by the student's trainer before each step) runs the rounds that are
due. One engine serves every student stage of a run: its state is in each stage's
checkpoint, and a stage with no checkpoint of its own takes it from the stage before
(`ForgeSource.carry_over`). A round runs inside one student step, so no checkpoint falls in
the middle of one and a resumed run is bit-identical to an unbroken one.
"""

import time
from typing import Callable, Dict, Optional, Sequence

import keras
import tensorflow as tf

from dfka_tf import losses
from dfka_tf import priors
from dfka_tf.models.generator import GroupStackGenerator
from dfka_tf.task import TaskMap
from dfka_tf.train.augment import (apply_cutmix, apply_flip_shift, cutmix_draws,
                                   flip_shift_draws)
from dfka_tf.train.inversion import sample_label_sets
from dfka_tf.train.loop import StageCheckpoint
from dfka_tf.train.sources import ImageSource
from dfka_tf.train.teacher_pass import TeacherPass, target_columns

RESETS = ("meta", "reinit", "keep")
LABEL_SAMPLERS = ("balanced", "realised", "uniform")
MEASURES = ("forge_loss", "forge_oh", "forge_bns", "forge_adv", "forge_agree", "forge_bank")


def balanced_label_sets(rng: tf.random.Generator, counts: tf.Tensor, n: int,
                        max_labels: int) -> tf.Tensor:
  """[n, C] multi-hot targets, 1..max_labels labels a row, every label used evenly.

  Each row gets c_i ~ U{1..max_labels} slots; the S = Σ c_i slots are filled, row after row,
  from a sequence of permutations of the C labels (each label once per permutation), so in
  the batch every label gets ⌊S/C⌋ or ⌈S/C⌉ slots. The permutation the sequence ends in
  orders the labels by `counts` (their use in earlier batches), least used first, ties at
  random, so over many batches the shares stay within about one image of each other. A row
  whose slots span two permutations may draw a label twice; it then holds it once.

  Args:
    rng: the random generator.
    counts: [C] float, each label's use so far.
    n: rows.
    max_labels: k, at most C.
  """
  num_labels = int(counts.shape[0])
  k = int(max_labels)
  if not 1 <= k <= num_labels:
    raise ValueError(f"max_labels={k} must be in 1..{num_labels}.")
  per_row = rng.uniform([n], 1, k + 1, dtype=tf.int32)
  total = tf.reduce_sum(per_row)
  num_perms = -(-n * k // num_labels) + 1
  noise = rng.uniform([num_perms, num_labels])
  last = total // num_labels  # The permutation the slots end in (partly used).
  by_use = tf.cast(counts, tf.float32)[None, :] + 0.5 * noise
  keys = tf.where(tf.range(num_perms)[:, None] == last, by_use, noise)
  sequence = tf.reshape(tf.argsort(keys, axis=1), [-1])
  start = tf.cumsum(per_row, exclusive=True)
  slots = start[:, None] + tf.range(k)[None, :]
  used = tf.range(k)[None, :] < per_row[:, None]
  labels = tf.gather(sequence, tf.minimum(slots, num_perms * num_labels - 1))
  hot = tf.one_hot(labels, num_labels) * tf.cast(used, tf.float32)[:, :, None]
  return tf.minimum(tf.reduce_sum(hot, axis=1), 1.0)


def spillover(targets: tf.Tensor, probs: tf.Tensor) -> tf.Tensor:
  """[C, C] Σ over images of t_a (1 − t_b) p_b: how much the teachers call label b on images
  made for label a and not for b (t the targets, as 0/1 at ½; p the teachers'
  probabilities on the images). Beyond the paper (`--forge_contrast`)."""
  t = tf.cast(targets >= 0.5, tf.float32)
  return tf.matmul(t, (1.0 - t) * tf.cast(probs, tf.float32), transpose_a=True)


def label_partners(spill: tf.Tensor) -> tf.Tensor:
  """[C] int32: for each label a, the label b ≠ a with the most `spillover` from a (the one
  the teachers most confuse with it on Forge's images), or −1 where a has none yet."""
  num_labels = tf.shape(spill)[0]
  off = tf.where(tf.eye(num_labels, dtype=tf.bool), tf.zeros_like(spill), spill)
  best = tf.argmax(off, axis=1, output_type=tf.int32)
  return tf.where(tf.reduce_max(off, axis=1) > 0, best, -tf.ones_like(best))


def contrast_weights(targets: tf.Tensor, partners: tf.Tensor, weight: float) -> tf.Tensor:
  """[n, C] weights of the target entries in G's cross-entropy: `weight` on the entry of
  each targeted label's partner that the row does not target (its "not b" for an image
  made for a), 1 elsewhere. Beyond the paper (`--forge_contrast`)."""
  t = tf.cast(targets >= 0.5, tf.float32)
  num_labels = tf.shape(targets)[1]
  # [C, C]: 1 where b is a's partner (rows of labels without one are zero).
  pairs = tf.one_hot(partners, num_labels, dtype=tf.float32)
  partner_of_a_target = tf.minimum(tf.matmul(t, pairs), 1.0)
  return 1.0 + (float(weight) - 1.0) * partner_of_a_target * (1.0 - t)


class Bank:
  """A ring of `capacity` uint8 images: `add` overwrites the oldest once it is full."""

  def __init__(self, capacity: int, image_shape: Sequence[int]):
    self.capacity = int(capacity)
    self.images = tf.Variable(tf.zeros([self.capacity] + [int(d) for d in image_shape],
                                       tf.uint8), trainable=False, name="bank")
    self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="bank_count")
    self.next = tf.Variable(0, dtype=tf.int64, trainable=False, name="bank_next")

  def add(self, images: tf.Tensor):
    """Stores float images in [0, 1] (rounded to uint8)."""
    n = int(images.shape[0])
    rows = (self.next + tf.range(n, dtype=tf.int64)) % self.capacity
    pixels = tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)
    self.images.scatter_nd_update(rows[:, None], pixels)
    self.next.assign((self.next + n) % self.capacity)
    self.count.assign(tf.minimum(self.count + n, self.capacity))

  def sample_indices(self, rng: tf.random.Generator, n: int) -> tf.Tensor:
    """n rows drawn uniformly, with replacement, among the filled ones."""
    return rng.uniform([n], 0, tf.maximum(self.count, 1), dtype=tf.int64)

  def gather(self, indices) -> tf.Tensor:
    return tf.cast(tf.gather(self.images, indices), tf.float32) / 255.0

  def state(self) -> Dict:
    return {"bank": self.images, "bank_count": self.count, "bank_next": self.next}


def _reinit_like(variable: tf.Variable, rng: tf.random.Generator) -> tf.Tensor:
  """CMI's reset: kernels N(0, 0.02²), batch-norm scales N(1, 0.02²), biases and shifts 0."""
  name = variable.path if hasattr(variable, "path") else variable.name
  if "gamma" in name:
    return 1.0 + 0.02 * rng.normal(variable.shape)
  if "beta" in name or "bias" in name:
    return tf.zeros(variable.shape)
  return 0.02 * rng.normal(variable.shape)


class ForgeEngine:
  """Synthesis rounds against the frozen teachers, into a bank (see the module's notes).

  Args:
    teachers: the frozen teachers (`BlockNet`s).
    task: the customized label set Y_cst.
    rng: the engine's random generator (targets, latent codes, jitter, resets).
    batch_size: images a round makes.
    latent_dim, width, image_bn: G's size and head, as `generator.*` names them.
    rounds_settings: the rest, as `source.forge`'s options name them.
  """

  def __init__(self, teachers: Sequence, task: TaskMap, *, rng: tf.random.Generator,
               batch_size: int, latent_dim: int = 128, width: int = 64,
               image_bn: bool = True, round_every: int = 10, warmup_rounds: int = 10,
               g_steps: int = 5, reset: str = "meta", reset_every: int = 1, lr: float = 3e-3,
               lr_z: float = 0.01, oh: float = 1.0, bns: float = 0.0,
               bns_form: str = "norm", bns_momentum: float = 0.0, adv: float = 1.0,
               max_labels: int = 3, labels: str = "balanced", jitter: int = 4,
               bank_size: int = 16384, mix: float = 0.0, contrast: float = 0.0):
    if reset not in RESETS:
      raise ValueError(f"reset={reset!r}; use one of {RESETS}.")
    if labels not in LABEL_SAMPLERS:
      raise ValueError(f"labels={labels!r}; use one of {LABEL_SAMPLERS}.")
    self.teachers, self.task, self.rng = list(teachers), task, rng
    self.batch_size, self.latent_dim = int(batch_size), int(latent_dim)
    self.round_every, self.warmup_rounds = int(round_every), int(warmup_rounds)
    self.g_steps, self.reset, self.reset_every = int(g_steps), reset, int(reset_every)
    self.oh, self.bns_weight, self.adv = float(oh), float(bns), float(adv)
    self.max_labels, self.labels, self.jitter = int(max_labels), labels, int(jitter)
    if not 0.0 <= float(mix) <= 1.0:
      raise ValueError(f"mix={mix}; use a probability in [0, 1].")
    self.mix = float(mix)
    if float(contrast) != 0.0 and float(contrast) < 1.0:
      raise ValueError(f"contrast={contrast}; use 0 (off) or a weight >= 1.")
    self.contrast = float(contrast)
    self.cols = tf.constant(target_columns(self.teachers, task), tf.int32)
    self.num_labels = len(task.labels)
    shape = [int(d) for d in self.teachers[0].feature_shapes[0]]
    self.image_shape = shape

    def make_generator(name):
      return GroupStackGenerator([shape], num_groups=1, latent_dim=self.latent_dim,
                                 width=width, image_bn=image_bn, name=name).groups[0]

    # The generator a round trains, and (meta) the initialisation each round starts from.
    self.generator = make_generator("forge_generator")
    self.meta = make_generator("forge_meta_generator") if reset == "meta" else None
    self.g_optimizer = keras.optimizers.Adam(lr, beta_1=0.5, beta_2=0.999)
    self.z_optimizer = keras.optimizers.Adam(lr_z, beta_1=0.5, beta_2=0.999)
    self.z = tf.Variable(tf.zeros([self.batch_size, self.latent_dim]), name="forge_z")
    self.g_optimizer.build(self.generator.trainable_variables)
    self.z_optimizer.build([self.z])
    if self.meta is not None:
      self.meta.set_weights(self.generator.get_weights())
      self.meta_optimizer = keras.optimizers.Adam(lr * self.g_steps, beta_1=0.5,
                                                  beta_2=0.999)
      self.meta_optimizer.build(self.meta.trainable_variables)
      self.meta_grads = [tf.Variable(tf.zeros_like(v), trainable=False)
                         for v in self.generator.trainable_variables]
    self.targets = tf.Variable(tf.zeros([self.batch_size, self.num_labels]), trainable=False,
                               name="forge_targets")
    self.label_counts = tf.Variable(tf.zeros([self.num_labels]), trainable=False,
                                    name="forge_label_counts")
    if self.contrast:  # `spillover` summed over the kept batches, and this round's weights.
      self.spill = tf.Variable(tf.zeros([self.num_labels, self.num_labels]), trainable=False,
                               name="forge_spill")
      self.oh_weights = tf.Variable(tf.ones([self.batch_size, self.num_labels]),
                                    trainable=False, name="forge_oh_weights")
    self.best = tf.Variable(tf.zeros([self.batch_size] + shape), trainable=False,
                            name="forge_best")
    self.best_loss = tf.Variable(float("inf"), trainable=False, name="forge_best_loss")
    self.rounds = tf.Variable(0, dtype=tf.int64, trainable=False, name="forge_rounds")
    self.student_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                     name="forge_student_steps")
    self.synthesis_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                         name="forge_seconds")
    self.last = {k: tf.Variable(0.0, trainable=False, name=k) for k in MEASURES}
    self.bank = Bank(bank_size, shape)
    self.teacher_pass = TeacherPass(self.teachers, bn_inputs=self.bns_weight > 0)
    if not 0.0 <= float(bns_momentum) < 1.0:
      raise ValueError(f"bns_momentum={bns_momentum}; use a value in [0, 1).")
    self.bns = (priors.BatchNormPrior(self.bns_weight, bns_form,
                                      self.teacher_pass.running_stats, bns_momentum)
                if self.bns_weight > 0 else None)
    self.adversary: Optional[Callable[[tf.Tensor], tf.Tensor]] = None
    self._start = tf.function(self._start_round)
    self._finish = tf.function(self._finish_round)
    self._steps = {}

  # ------------------------------------------------------------------ binding and state
  def bind(self, student_predict: Optional[Callable[[tf.Tensor], tf.Tensor]]):
    """The student the adversarial term plays against: image -> probabilities over Y_cst,
    in inference mode (None: no adversarial term, as in Step II's blocks)."""
    self.adversary = student_predict
    self._steps = {}

  def state(self) -> Dict:
    """Every variable a checkpoint must hold for the engine to resume exactly."""
    out = dict(forge_generator=self.generator, forge_g_optimizer=self.g_optimizer,
               forge_z_optimizer=self.z_optimizer, forge_z=self.z, forge_rng=self.rng,
               forge_targets=self.targets, forge_label_counts=self.label_counts,
               forge_best=self.best, forge_best_loss=self.best_loss,
               forge_rounds=self.rounds, forge_student_steps=self.student_steps,
               forge_seconds=self.synthesis_seconds,
               forge_last=dict(self.last),
               **{f"forge_{k}": v for k, v in self.bank.state().items()})
    if self.meta is not None:
      out.update(forge_meta_generator=self.meta, forge_meta_optimizer=self.meta_optimizer,
                 forge_meta_grads=list(self.meta_grads))
    if self.bns is not None:
      out.update({f"forge_{k}": v for k, v in self.bns.state().items()})
    if self.contrast:
      out.update(forge_spill=self.spill, forge_oh_weights=self.oh_weights)
    return out

  # ------------------------------------------------------------------ one round
  def _start_round(self):
    if self.labels in ("balanced", "realised"):
      targets = balanced_label_sets(self.rng, self.label_counts, self.batch_size,
                                    self.max_labels)
    else:
      targets = sample_label_sets(self.rng, self.batch_size, self.num_labels,
                                  self.max_labels)
    self.targets.assign(targets)
    if self.contrast:
      self.oh_weights.assign(contrast_weights(targets, label_partners(self.spill),
                                              self.contrast))
    if self.labels != "realised":
      self.label_counts.assign_add(tf.reduce_sum(targets, axis=0))
    self.z.assign(self.rng.normal(self.z.shape))
    fresh = self.reset == "reinit" and self.rounds % self.reset_every == 0
    if self.meta is not None:
      for v, m in zip(self.generator.trainable_variables, self.meta.trainable_variables):
        v.assign(m)
      for g in self.meta_grads:
        g.assign(tf.zeros_like(g))
    elif fresh:
      for v in self.generator.trainable_variables:
        v.assign(_reinit_like(v, self.rng))
    restart = self.meta is not None or fresh
    for v in self.g_optimizer.variables:  # A new round's G starts its Adam afresh.
      if restart:
        v.assign(tf.zeros_like(v))
    for v in self.z_optimizer.variables:
      v.assign(tf.zeros_like(v))
    self.best_loss.assign(float("inf"))

  def _over_task(self, views) -> tf.Tensor:
    """The teachers' probabilities over Y_cst, in the task's label order."""
    return tf.gather(TeacherPass.concat_probs(views), self.cols, axis=1)

  def _generator_step(self, adversarial: bool):
    draws = flip_shift_draws(self.rng, self.batch_size, self.jitter, self.image_shape[:2])
    variables = self.generator.trainable_variables
    with tf.GradientTape() as tape:
      image = self.generator(self.z, training=True)
      seen = apply_flip_shift(image, draws, self.jitter)
      views = self.teacher_pass(seen)
      probs = self._over_task(views)
      if self.contrast:
        oh = priors.weighted_binary_cross_entropy(probs, self.targets, self.oh_weights)
      else:
        oh = losses.binary_cross_entropy(probs, self.targets)
      bns = self.bns.value(views) if self.bns is not None else tf.constant(0.0)
      if adversarial:
        adv = priors.masked_kl_disagreement(self.adversary(seen), probs)
      else:
        adv = tf.constant(0.0)
      loss = self.oh * oh + self.bns_weight * bns - self.adv * adv
    grads = tape.gradient(loss, variables + [self.z])
    # Fast-Datafree keeps the batch of least loss a round made.
    better = loss < self.best_loss
    self.best.assign(tf.where(better, image, self.best))
    self.best_loss.assign(tf.where(better, loss, self.best_loss))
    if self.meta is not None:
      for acc, g in zip(self.meta_grads, grads[:-1]):
        acc.assign_add(g)
    self.g_optimizer.apply(grads[:-1], variables)
    self.z_optimizer.apply(grads[-1:], [self.z])
    agree = tf.reduce_mean(tf.cast((probs >= 0.5) == (self.targets >= 0.5), tf.float32))
    return {"forge_loss": loss, "forge_oh": oh, "forge_bns": bns, "forge_adv": adv,
            "forge_agree": agree}

  def _finish_round(self):
    if self.meta is not None:
      self.meta_optimizer.apply(list(self.meta_grads), self.meta.trainable_variables)
    remember = self.bns is not None and self.bns.history is not None
    if self.labels == "realised" or remember or self.contrast:
      kept_views = self.teacher_pass(self.best)  # One pass serves them all.
    if self.labels == "realised" or self.contrast:
      kept = self._over_task(kept_views)
    if self.labels == "realised":
      self.label_counts.assign_add(tf.reduce_sum(tf.cast(kept >= 0.5, tf.float32), axis=0))
    if self.contrast:
      self.spill.assign_add(spillover(self.targets, kept))
    if remember:
      self.bns.remember(kept_views)  # The kept batch's statistics.
    self.bank.add(self.best)
    self.rounds.assign_add(1)
    self.last["forge_bank"].assign(tf.cast(self.bank.count, tf.float32))

  def run_round(self, adversarial: bool):
    """One round: new targets and codes, `g_steps` steps of G, its best batch into the bank."""
    t0 = time.perf_counter()
    adversarial = bool(adversarial and self.adversary is not None and self.adv > 0)
    if adversarial not in self._steps:
      self._steps[adversarial] = tf.function(
          lambda: self._generator_step(adversarial))  # pylint: disable=cell-var-from-loop
    self._start()
    for _ in range(self.g_steps):
      out = self._steps[adversarial]()
    for k, v in out.items():
      self.last[k].assign(v)
    self._finish()
    self.synthesis_seconds.assign_add(time.perf_counter() - t0)

  def advance(self) -> Dict[str, tf.Tensor]:
    """Runs the rounds due before the next student step; returns the last round's measures.

    The first call runs the `warmup_rounds` (no adversarial term: the student has not
    learnt yet); after that one round every `round_every` student steps.
    """
    while int(self.rounds.numpy()) < self.warmup_rounds:
      self.run_round(adversarial=False)
    if int(self.student_steps.numpy()) % self.round_every == 0:
      self.run_round(adversarial=True)
    self.student_steps.assign_add(1)
    return {k: tf.identity(v) for k, v in self.last.items()}

  def summary(self) -> Dict:
    """What results.json reports: rounds, images made, synthesis time and rate, bank, and
    how evenly the labels were used (min / max share over Y_cst): the targets' labels, or
    with `labels="realised"` the labels the teachers gave the kept images."""
    rounds = int(self.rounds.numpy())
    seconds = float(self.synthesis_seconds.numpy())
    counts = self.label_counts.numpy()
    return {"rounds": rounds, "images_made": rounds * self.batch_size,
            "synthesis_seconds": seconds,
            "images_per_second": rounds * self.batch_size / seconds if seconds else 0.0,
            "bank_images": int(self.bank.count.numpy()),
            "label_share_min_over_max": float(counts.min() / counts.max()) if counts.max() else 0.0,
            "last_round": {k: float(v.numpy()) for k, v in self.last.items()}}

  def images_uint8(self, n: int = 16):
    """Up to n of the bank's images, evenly spaced over what it holds (for the report)."""
    count = int(self.bank.count.numpy())
    idx = tf.cast(tf.linspace(0.0, float(max(count - 1, 0)), min(n, max(count, 1))), tf.int64)
    return tf.gather(self.bank.images, idx)


class ForgeSource(ImageSource):
  """A student stage's view of the engine: bank batches, flipped and shifted like G's, and
  with `mix` > 0 CutMixed within the batch (`augment.apply_cutmix`)."""

  def __init__(self, engine: ForgeEngine, rng: tf.random.Generator, batch_size: int):
    self.engine, self.rng, self.batch_size = engine, rng, int(batch_size)

  def bind(self, student_predict):
    self.engine.bind(student_predict)

  def advance(self):
    return self.engine.advance()

  def draw(self):
    e = self.engine
    out = {"idx": e.bank.sample_indices(self.rng, self.batch_size),
           "jitter": flip_shift_draws(self.rng, self.batch_size, e.jitter,
                                      e.image_shape[:2])}
    if e.mix > 0:  # Drawn only when on, so runs without it take the numbers they always did.
      out["mix"] = cutmix_draws(self.rng, self.batch_size, e.image_shape[:2], e.mix)
    return out

  def render(self, draws):
    images = self.engine.bank.gather(draws["idx"])
    images = apply_flip_shift(images, draws["jitter"], self.engine.jitter)
    return apply_cutmix(images, draws.get("mix")), {}

  def checkpoint_state(self):
    return {"rng": self.rng, **self.engine.state()}

  def carry_over(self, directory: str):
    """Takes the engine's state from the checkpoint in `directory` (the stage before)."""
    latest = tf.train.latest_checkpoint(directory)
    if latest is not None:  # That stage's own variables are not this one's: left unread.
      StageCheckpoint(directory, **self.engine.state()).checkpoint.restore(
          latest).expect_partial().assert_existing_objects_matched()
