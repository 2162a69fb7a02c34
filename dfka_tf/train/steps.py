"""The three steps of Algorithm 1, each one `tf.function` step returning a dict of scalars.

- `GeneratorTrainer`   Step I:   G and its teacher-level filters on L_joint (Eq. 12).
- `BlockTrainer`       Step II:  TargetNet block T^b and its filters on L_u^b (Eq. 13–17).
- `regroup` + `FinetuneTrainer` Step III: T_u (Eq. 18–20), fine-tuned against the teachers.

Teachers are frozen and always called with training=False (batch norm in inference mode);
their forward pass on the generated image is computed once per step and shared by every
loss term that needs it.
"""

from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from dfka_tf import losses
from dfka_tf.models import blocknet
from dfka_tf.train.augment import random_flip_shift
from dfka_tf.models.filters import TeacherFilter
from dfka_tf.task import TaskMap


def poly_sgd(base_lr: float, steps: int, *, power: float = 0.9, momentum: float = 0.9,
             weight_decay: float = 5e-3) -> keras.optimizers.Optimizer:
  """The paper's optimiser (§5.1): SGD with momentum, poly LR (base 0.01, power 0.9), wd 5e-3."""
  schedule = keras.optimizers.schedules.PolynomialDecay(
      base_lr, decay_steps=max(int(steps), 1), end_learning_rate=0.0, power=power)
  return _maybe_loss_scaled(keras.optimizers.SGD(
      schedule, momentum=momentum, weight_decay=weight_decay or None))


def _maybe_loss_scaled(optimizer):
  # Under mixed_float16 small float16 gradients underflow; Keras' loss scaling avoids it.
  if keras.config.dtype_policy().name == "mixed_float16":
    return keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def _gather(probs, cols):
  return tf.gather(tf.cast(probs, tf.float32), cols, axis=1)


class _Step:
  """Shared plumbing: one compiled step, a trace counter, noise from a seeded generator."""

  def __init__(self, rng: Optional[tf.random.Generator], batch_size: int, latent_dim: int,
               jit: bool):
    self.rng = rng
    self.batch_size = int(batch_size)
    self.latent_dim = int(latent_dim)
    self.trace_count = 0
    self._compiled = tf.function(self._traced_step, jit_compile=bool(jit))

  def _traced_step(self):
    self.trace_count += 1  # Runs only while tracing: counts retraces.
    return self._step()

  def _noise(self):
    return self.rng.normal([self.batch_size, self.latent_dim])

  def step(self) -> Dict[str, tf.Tensor]:
    return self._compiled()

  def build(self):
    """Creates every variable the step trains (filters, optimizer slots) before a restore.

    Keras 3 creates layer weights and optimizer slots on first use, where TensorFlow's
    deferred checkpoint restoration cannot reach them; building first makes a resumed stage
    restore all of its state.
    """
    self._build_layers()
    self.optimizer.build(self.trainable_variables)
    return self

  def _build_layers(self):
    pass

  def _step(self):
    raise NotImplementedError

  def _apply(self, tape, loss, variables):
    grads = tape.gradient(loss, variables)
    self.optimizer.apply(grads, variables)


def _teacher_outputs(teachers, image):
  return [t.tail(image, 0, training=False) for t in teachers]


def tapped_outputs(taps, image, form: str = "squared"):
  """Every teacher's outputs on `image` through its BN taps, and L_bns averaged over them.

  `taps` is one `blocknet.batchnorm_taps(teacher)` pair per teacher; one forward pass per
  teacher gives both the predictions and the batch-norm inputs L_bns compares.
  """
  outs = [tap(image, training=False) for tap, _ in taps]
  bns = tf.add_n([losses.batchnorm_statistics_loss(o["bn_inputs"], stats, form)
                  for o, (_, stats) in zip(outs, taps)]) / len(taps)
  return outs, bns


class GeneratorSource:
  """Generated batches for Steps II–III: I_gan and every group's output, from frozen G.

  With `jitter` > 0 (beyond the paper) each image is flipped and shifted at random by up to
  `jitter` pixels (`random_flip_shift`); the intermediate outputs are left as G made them.
  """

  def __init__(self, generator, rng: tf.random.Generator, batch_size: int, jitter: int = 0):
    self.generator, self.rng, self.batch_size = generator, rng, int(batch_size)
    self.jitter = int(jitter)

  def sample(self):
    """Returns (image, {teacher depth: generator output aligned with it})."""
    z = self.rng.normal([self.batch_size, self.generator.latent_dim])
    outputs = self.generator(z, training=False)
    links = dict(zip(self.generator.depths, outputs))
    return random_flip_shift(outputs[-1], self.rng, self.jitter), links

  @property
  def variables(self):
    return self.generator.variables


class DatasetSource:
  """Real images without labels (the KA, Similar Data and Diff Data rows of Table 1).

  Reading a tf.data iterator cannot be compiled by XLA, so steps fed by it run without jit.
  """

  jit_ok = False

  def __init__(self, dataset: tf.data.Dataset):
    self.iterator = iter(dataset.map(lambda ex: ex["image"] if isinstance(ex, dict) else ex)
                         .repeat())
    self.rng = None

  def sample(self):
    return next(self.iterator), {}

  variables = []


class PoolSource:
  """Batches of a fixed image pool (the DeepInversion option, beyond the paper).

  Images are drawn uniformly with replacement, then flipped and shifted at random by up to
  `jitter` pixels: a pool of a thousand images is seen hundreds of times over Steps II–III,
  and the augmentation keeps T_u from memorising it. Only the generator `rng` is state.
  """

  def __init__(self, pool: tf.Tensor, rng: tf.random.Generator, batch_size: int,
               jitter: int = 0):
    self.pool = tf.convert_to_tensor(pool)
    if self.pool.dtype != tf.uint8:
      raise ValueError(f"PoolSource takes a uint8 pool, got {self.pool.dtype.name}.")
    self.rng, self.batch_size, self.jitter = rng, int(batch_size), int(jitter)

  def sample(self):
    idx = self.rng.uniform([self.batch_size], 0, int(self.pool.shape[0]), dtype=tf.int64)
    images = tf.cast(tf.gather(self.pool, idx), tf.float32) / 255.0
    return random_flip_shift(images, self.rng, self.jitter), {}

  variables = []


class NoiseSource:
  """Gaussian-noise images, N(0.5, 0.25²) clipped to [0, 1] (the Random Noise row)."""

  def __init__(self, image_shape, rng: tf.random.Generator, batch_size: int):
    self.shape = [int(batch_size)] + [int(v) for v in image_shape]
    self.rng = rng

  def sample(self):
    return tf.clip_by_value(0.5 + 0.25 * self.rng.normal(self.shape), 0.0, 1.0), {}

  variables = []


class GeneratorTrainer(_Step):
  """Step I of Algorithm 1: train G = G^1..G^K and its filters f_m^j on L_joint (Eq. 12).

  For each intermediate group j < K, teacher m judges f_m^j(F^j) with its blocks d_j+1..B
  (D^j, Eq. 5); the image goes to every teacher unfiltered. Adam (β1 = 0.5) is used for G,
  as DAFL's code does; the paper does not say. With `jitter` > 0 (beyond the paper,
  DeepInversion) the teachers judge the image flipped and shifted at random by up to `jitter`
  pixels, so G cannot rely on one exact pixel alignment.
  """

  def __init__(self, generator, teachers: Sequence, *, rng: tf.random.Generator,
               batch_size: int, learning_rate: float = 1e-3, alpha: float = 1.0,
               beta: float = 1.0, gamma: float = 5.0, dis_sign: str = "sparse",
               bns_weight: float = 0.0, bns_form: str = "squared", lh_weight: float = 0.0,
               jitter: int = 0, filter_reduction: int = 4, jit: bool = False):
    self.generator = generator
    self.jitter = int(jitter)
    self.teachers = list(teachers)
    self.weights = dict(alpha=alpha, beta=beta, gamma=gamma, dis_sign=dis_sign)
    self.bns_weight = float(bns_weight)
    self.bns_form = bns_form
    # L_bns (beyond the paper) reads every teacher BN layer's input from the same forward
    # pass that gives the image's predictions.
    self.taps = ([blocknet.batchnorm_taps(t) for t in self.teachers]
                 if self.bns_weight > 0 else None)
    # L_H (beyond the paper): per teacher, an auxiliary classifier h_m on its pooled,
    # concatenated intermediate features, trained with G on the same loss (IFHE).
    self.lh_weight = float(lh_weight)
    self.aux = ([keras.layers.Dense(t.num_labels, activation="sigmoid", name=f"h{m + 1}")
                 for m, t in enumerate(self.teachers)] if self.lh_weight > 0 else [])
    # One filter per teacher per intermediate group (the image is not filtered).
    self.filters = [[TeacherFilter(filter_reduction, name=f"f{m + 1}_g{j + 1}")
                     for m in range(len(self.teachers))]
                    for j in range(len(generator.depths) - 1)]
    self.optimizer = _maybe_loss_scaled(keras.optimizers.Adam(learning_rate, beta_1=0.5))
    super().__init__(rng, batch_size, generator.latent_dim, jit)

  @property
  def trainable_variables(self):
    return self.generator.trainable_variables + [
        v for row in self.filters for f in row for v in f.trainable_variables] + [
            v for h in self.aux for v in h.trainable_variables]

  def _build_layers(self):
    for h, t in zip(self.aux, self.teachers):
      h.build((None, sum(int(shape[-1]) for shape in t.feature_shapes[1:])))
    for j, depth in enumerate(self.generator.depths[:-1]):
      for f in self.filters[j]:
        f.build((None,) + tuple(self.generator.feature_shapes[depth]))

  def generated_predictions(self, outputs):
    """O_gan of the image and of every intermediate F^j, plus the teachers' image features.

    With L_bns on, also the L_bns value of the image (else None); with L_H on, the L_H value
    (else None) as a fifth output.
    """
    bns = lh = None
    if self.aux:
      # The intermediate features come from the forward pass that gives the predictions,
      # except under L_bns, whose tap model has its own.
      pairs = [t.features(outputs[-1], training=False, with_outputs=True)
               for t in self.teachers]
      lh = tf.add_n([
          losses.auxiliary_classifier_loss(
              h(tf.concat([tf.reduce_mean(tf.cast(f, tf.float32), axis=[1, 2])
                           for f in feats], axis=-1)), out["probs"])
          for h, (feats, out) in zip(self.aux, pairs)]) / len(self.aux)
    if self.taps is None:
      image_out = ([out for _, out in pairs] if self.aux
                   else _teacher_outputs(self.teachers, outputs[-1]))
    else:
      image_out, bns = tapped_outputs(self.taps, outputs[-1], self.bns_form)
    image_probs = tf.concat([tf.cast(o["probs"], tf.float32) for o in image_out], axis=1)
    feature_probs = []
    for j, depth in enumerate(self.generator.depths[:-1]):
      feature_probs.append(tf.concat([
          tf.cast(t.tail(self.filters[j][m](outputs[j]), depth, training=False)["probs"],
                  tf.float32)
          for m, t in enumerate(self.teachers)], axis=1))
    return image_probs, [o["pre_logits"] for o in image_out], feature_probs, bns, lh

  def objective(self, z):
    """Step I's loss on the batch G(z) (G in training mode).

    Returns (total, terms, image, image_probs): L_joint plus the weighted L_bns and L_H
    where on, its named terms, the image the teachers judged (jittered where on) and their
    concatenated predictions on it.
    """
    outputs = self.generator(z, training=True)
    outputs = outputs[:-1] + [random_flip_shift(outputs[-1], self.rng, self.jitter)]
    image_probs, pre_logits, feature_probs, bns, lh = self.generated_predictions(outputs)
    total, terms = losses.joint_loss(image_probs, pre_logits, feature_probs, **self.weights)
    if bns is not None:
      terms["bns"] = bns
      total = total + self.bns_weight * bns
    if lh is not None:
      terms["lh"] = lh
      total = total + self.lh_weight * lh
    return total, terms, outputs[-1], image_probs

  def _step(self):
    with tf.GradientTape() as tape:
      total, terms, _, _ = self.objective(self._noise())
      scaled = self.optimizer.scale_loss(total)
    self._apply(tape, scaled, self.trainable_variables)
    return {"loss": total, **terms}


class BlockTrainer(_Step):
  """Step II of Algorithm 1 for one block b: train T^b (and f_m^b) on L_u^b (Eq. 17).

  G and T^1..T^{b-1} are frozen (inference mode). The two input streams (Eq. 16) are
  F_in^1 = T^{b-1..1}(I_gan) and F_in^2 = the generator output aligned with depth b-1. For
  b = 1 both are the image, so the loss is computed once and weighted λ_in^1 + λ_in^2; where
  no generator group aligns with depth b-1, only F_in^1 is used, with weight 1 (so no block
  goes untrained under λ_in = {0, 1}; DESIGN.md, "Block alignment").

  For b < B, teacher m reads f_m^b(F_u^b) with its blocks b+1..B (D_dual^{b,m}, Eq. 13); for
  b = B the TargetNet's own head predicts Y_cst and each teacher's columns are compared with
  g_m of its output. L_dual^{b,m} (Eq. 14) uses teacher m's prediction on I_gan as target.

  Each step returns "loss" (L_u^b) and "dual_t<m>" = L_dual^{b,m}(F_in^1), whose mean over
  the last steps is η^{b,m} of Eq. 18.
  """

  def __init__(self, target, block: int, source, teachers: Sequence, task: TaskMap, *,
               batch_size: int, steps: int, learning_rate: float = 0.01,
               weight_decay: float = 5e-3, lambda_in=(1.0, 1.0),
               lambda_m: Optional[Sequence[float]] = None, filter_reduction: int = 4,
               jit: bool = False):
    self.target = target
    self.block = int(block)  # 1-based, as in the paper.
    self.num_blocks = len(target.blocks)
    self.source = source
    self.teachers = list(teachers)
    self.task = task
    self.lambda_in = tuple(float(v) for v in lambda_in)
    self.lambda_m = list(lambda_m) if lambda_m is not None else [1.0] * len(self.teachers)
    self.filters = ([TeacherFilter(filter_reduction, name=f"f{m + 1}_t{self.block}")
                     for m in range(len(self.teachers))]
                    if self.block < self.num_blocks else [])
    self.optimizer = poly_sgd(learning_rate, steps, weight_decay=weight_decay)
    super().__init__(source.rng, batch_size, 0, jit and getattr(source, "jit_ok", True))

  def _build_layers(self):
    for f in self.filters:
      f.build((None,) + tuple(self.target.feature_shapes[self.block]))

  @property
  def trainable_variables(self):
    block = self.target.blocks[self.block - 1]
    return list(block.trainable_variables) + [
        v for m in self.task.active if self.filters for v in self.filters[m].trainable_variables]

  def _per_teacher_losses(self, features_u, targets):
    out = {}
    if self.block == self.num_blocks:
      probs = features_u["probs"]
      for m in self.task.active:
        out[m] = losses.dual_loss_per_teacher(_gather(probs, self.task.cst_cols[m]), targets[m])
    else:
      for m in self.task.active:
        probs = self.teachers[m].tail(self.filters[m](features_u), self.block,
                                      training=False)["probs"]
        out[m] = losses.dual_loss_per_teacher(_gather(probs, self.task.teacher_cols[m]),
                                              targets[m])
    return out

  def _step(self):
    b = self.block
    image, link = self.source.sample()
    targets = {m: _gather(self.teachers[m].tail(image, 0, training=False)["probs"],
                          self.task.teacher_cols[m]) for m in self.task.active}
    x1 = image
    for i in range(b - 1):
      x1 = self.target.blocks[i](x1, training=False)
    x2 = image if b == 1 else link.get(b - 1)
    block = self.target.blocks[b - 1]
    with tf.GradientTape() as tape:
      per1 = self._per_teacher_losses(block(x1, training=True), targets)
      l1 = losses.dual_loss([per1[m] for m in self.task.active],
                            [self.lambda_m[m] for m in self.task.active])
      if b == 1 and link:  # Both streams are I_gan: one forward pass, both weights.
        total = losses.block_loss(l1, l1, *self.lambda_in)
      elif x2 is None or not link:  # No generator link (or no generator at all).
        total = losses.block_loss(l1, None, 1.0, 0.0)
      else:
        per2 = self._per_teacher_losses(block(x2, training=True), targets)
        l2 = losses.dual_loss([per2[m] for m in self.task.active],
                              [self.lambda_m[m] for m in self.task.active])
        total = losses.block_loss(l1, l2, *self.lambda_in)
      scaled = self.optimizer.scale_loss(total)
    self._apply(tape, scaled, self.trainable_variables)
    return {"loss": total, **{f"dual_t{m + 1}": per1[m] for m in self.task.active}}


def branch_out_blocks(eta: Dict[int, Dict[int, float]], task: TaskMap) -> Dict[int, int]:
  """S_m = argmin_b η^{b,m} (Eq. 18), for every active teacher m.

  Args:
    eta: {block b (1-based): {teacher m: η^{b,m}}}.

  Returns:
    {m: S_m}; ties go to the deeper block (a smaller T_u needs fewer copied teacher blocks).
  """
  out = {}
  for m in task.active:
    values = {b: e[m] for b, e in eta.items() if m in e}
    best = min(values.values())
    out[m] = max(b for b, v in values.items() if v == best)
  return out


def regroup(target, teachers: Sequence, block_filters: Dict[int, Sequence[TeacherFilter]],
            branch_points: Dict[int, int], task: TaskMap, name: str = "target_net"):
  """T_u (Eq. 19–20): shared T^1..T^{min S_m}, then one branch per teacher.

  T_m = [T^1..T^{S_m}, f_m^{S_m}, A_m^{S_m+1}..A_m^B, g_m] (Eq. 19). The teacher blocks are
  trainable copies (the frozen teachers stay untouched: they are the fine-tuning targets);
  for S_m = B the branch is the TargetNet's own head. The output is one probability vector
  over Y_cst in the user's order.

  Args:
    target: the TargetNet (a BlockNet) after Step II.
    teachers: the frozen teachers (BlockNets).
    block_filters: {b: [f_1^b, ..., f_M^b]} trained in Step II.
    branch_points: {m: S_m}.

  Returns:
    a functional keras.Model image -> probabilities [N, |Y_cst|].
  """
  num_blocks = len(target.blocks)
  image = keras.Input(target.feature_shapes[0], name="image")
  deepest = max(branch_points.values())
  trunk = [image]
  for i in range(min(deepest, num_blocks - 1)):
    trunk.append(target.blocks[i](trunk[-1]))
  pieces, head = [], None
  for m in task.active:
    s = branch_points[m]
    if s == num_blocks:
      if head is None:  # Teachers branching at B share T's own head: run it once.
        head = target.blocks[-1](trunk[num_blocks - 1])["probs"]
      pieces.append(_KeepColumns(task.cst_cols[m], name=f"g{m + 1}")(head))
      continue
    x = block_filters[s][m](trunk[s])
    for i in range(s, num_blocks):
      x = _trainable_copy(teachers[m].blocks[i], f"t{m + 1}_branch_block{i + 1}")(x)
    pieces.append(_KeepColumns(task.teacher_cols[m], name=f"g{m + 1}")(x["probs"]))
  merged = pieces[0] if len(pieces) == 1 else keras.layers.Concatenate(name="branches")(pieces)
  out = _KeepColumns(task.order, name="probabilities")(merged)
  return keras.Model(image, out, name=name)


def teacher_ensemble(teachers: Sequence, task: TaskMap, name: str = "teachers") -> keras.Model:
  """The teachers side by side as one model over Y_cst (the "Teacher" row of Table 1)."""
  image = keras.Input(teachers[0].feature_shapes[0], name="image")
  pieces = []
  for m in task.active:
    x = image
    for i, blk in enumerate(teachers[m].blocks):
      x = blk(x, training=False)
    pieces.append(_KeepColumns(task.teacher_cols[m], name=f"g{m + 1}")(x["probs"]))
  merged = pieces[0] if len(pieces) == 1 else keras.layers.Concatenate(name="branches")(pieces)
  return keras.Model(image, _KeepColumns(task.order, name="probabilities")(merged), name=name)


def _trainable_copy(model, name):
  copy = keras.models.clone_model(model)
  copy.set_weights(model.get_weights())
  copy.trainable = True
  copy._name = name  # pylint: disable=protected-access  (names must be unique in T_u)
  return copy


@keras.saving.register_keras_serializable(package="dfka_tf")
class _KeepColumns(keras.layers.Layer):
  """Task-level filter g_m: keep the given output columns, in the given order."""

  def __init__(self, columns, **kwargs):
    super().__init__(**kwargs)
    self.columns = [int(c) for c in columns]

  def call(self, x):
    return keras.ops.take(keras.ops.cast(x, "float32"), self.columns, axis=1)

  def get_config(self):
    return {**super().get_config(), "columns": self.columns}


class FinetuneTrainer(_Step):
  """Step III, Algorithm 1 line 23: fine-tune T_u on generated images against the teachers.

  The target is, for each customized label, the prediction of the teacher it comes from,
  assembled in Y_cst order; the loss is plain distillation ℓ(T_u(I_gan), target). The same
  step distils a whole TargetNet for the DAFL baseline.
  """

  def __init__(self, target_net: keras.Model, source, teachers: Sequence, task: TaskMap, *,
               batch_size: int, steps: int, learning_rate: float = 0.01,
               weight_decay: float = 5e-3, jit: bool = False):
    self.target_net = target_net
    self.source = source
    self.teachers = list(teachers)
    self.task = task
    self.optimizer = poly_sgd(learning_rate, steps, weight_decay=weight_decay)
    super().__init__(source.rng, batch_size, 0, jit and getattr(source, "jit_ok", True))

  def teacher_targets(self, image):
    """Every customized label's teacher prediction on `image`, in Y_cst order."""
    parts = [_gather(self.teachers[m].tail(image, 0, training=False)["probs"],
                     self.task.teacher_cols[m]) for m in self.task.active]
    return tf.gather(tf.concat(parts, axis=1), self.task.order, axis=1)

  def _step(self):
    image, _ = self.source.sample()
    targets = self.teacher_targets(image)
    with tf.GradientTape() as tape:
      out = self.target_net(image, training=True)
      out = out["probs"] if isinstance(out, dict) else out
      loss = losses.distillation_loss(out, targets)
      scaled = self.optimizer.scale_loss(loss)
    self._apply(tape, scaled, self.trainable_variables)
    return {"loss": loss}

  @property
  def trainable_variables(self):
    return self.target_net.trainable_variables


class AdversarialFinetuneTrainer(FinetuneTrainer):
  """Step III with adversarial generator updates, after DFAD (Fang et al., 2019).

  Beyond the paper. A frozen G keeps producing the same kind of image, so T_u only learns
  the teachers where G already goes. Here every step first moves G (and its filters) one
  step on Step I's objective minus `weight` × the disagreement between T_u (inference mode)
  and the teachers on G's image (`losses.disagreement_loss`), so G seeks images T_u still
  gets wrong while Step I's terms keep them plausible to the teachers; then T_u takes its
  usual distillation step on a fresh batch of the updated G. Teachers stay frozen.

  Args:
    generator_trainer: Step I's `GeneratorTrainer` (G, its filters and optimizer, the
      loss weights); it keeps its own random stream.
    weight: weight of the disagreement term in G's loss.
  """

  def __init__(self, target_net: keras.Model, source, teachers: Sequence, task: TaskMap,
               generator_trainer: GeneratorTrainer, *, weight: float, batch_size: int,
               steps: int, learning_rate: float = 0.01, weight_decay: float = 5e-3,
               jit: bool = False):
    self.generator_trainer = generator_trainer
    self.weight = float(weight)
    # Positions of Y_cst in the teachers' concatenated predictions (GeneratorTrainer's
    # image_probs), in the order teacher_targets assembles them.
    offsets = np.cumsum([0] + [t.num_labels for t in teachers])
    concat = [int(offsets[m]) + c for m in task.active for c in task.teacher_cols[m]]
    self.target_cols = [concat[i] for i in task.order]
    super().__init__(target_net, source, teachers, task, batch_size=batch_size, steps=steps,
                     learning_rate=learning_rate, weight_decay=weight_decay, jit=jit)

  def _step(self):
    g = self.generator_trainer
    with tf.GradientTape() as tape:
      objective, _, image, image_probs = g.objective(g._noise())  # pylint: disable=protected-access
      student = self.target_net(image, training=False)
      student = student["probs"] if isinstance(student, dict) else student
      gap = losses.disagreement_loss(student, tf.gather(image_probs, self.target_cols, axis=1))
      g_loss = objective - self.weight * gap
      scaled = g.optimizer.scale_loss(g_loss)
    g._apply(tape, scaled, g.trainable_variables)  # pylint: disable=protected-access
    out = super()._step()
    return dict(out, disagreement=gap, generator_loss=g_loss)
