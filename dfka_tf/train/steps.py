"""The three steps of Algorithm 1, each one `tf.function` step returning a dict of scalars.

- `GeneratorTrainer`   Step I:   G and its teacher-level filters on L_joint (Eq. 12).
- `BlockTrainer`       Step II:  TargetNet block T^b and its filters on L_u^b (Eq. 13–17).
- `FinetuneTrainer`    Step III: T_u (`models.regroup`, Eq. 19–20) fine-tuned against the
                        teachers.
- `JointTrainer`       the DAFL baseline: G and a whole student trained together.

Teachers are frozen and always called with training=False (batch norm in inference mode);
their forward pass on the generated image is computed once per step (`TeacherPass`) and
shared by every loss term and prior that needs it. Image sources are in `sources.py`, the
optimisers in `optimizers.py`, Eq. 18's choice of branch-out blocks in `branch_out.py`.
"""

from typing import Dict, List, Optional, Sequence

import keras
import tensorflow as tf

from dfka_tf import analysis
from dfka_tf import distribute
from dfka_tf import losses
from dfka_tf import priors as priors_lib
from dfka_tf.models.filters import TeacherFilter, block_filters
from dfka_tf.models.target import freeze_batchnorm
from dfka_tf.options import DISTILL_LOSSES
from dfka_tf.task import TaskMap
from dfka_tf.train.augment import apply_flip_shift, flip_shift_draws
from dfka_tf.train.optimizers import maybe_loss_scaled, poly_sgd
from dfka_tf.train.teacher_pass import (TeacherPass, predictions_over_task, target_columns,
                                        task_predictions, task_predictions_and_features)


def _gather(probs, cols):
  return tf.gather(tf.cast(probs, tf.float32), cols, axis=1)


class Step:
  """Shared plumbing of every trainer: one compiled step, a trace counter, seeded noise,
  and its run under the active `tf.distribute` strategy.

  A step is split in two (`dfka_tf.distribute`): `_draw()` reads, in cross-replica context,
  every random number and data batch of the global batch (first axis: the batch), and
  `_step(draws)` trains on them; under a strategy of several replicas each replica runs
  `_step` on its rows of the draws and the measurements are averaged. `_after_step()` runs
  in cross-replica context after it (e.g. a projection of a variable every replica updated
  alike). Subclasses define `_draw`, `_step`, `trainable_variables` and `optimizer`, and
  may override `_build_layers`.

  The strategy is the one active when the trainer is built (build it inside
  `strategy.scope()`); under the default strategy `_step` is called directly.
  """

  def __init__(self, rng: Optional[tf.random.Generator], batch_size: int, latent_dim: int,
               jit: bool):
    self.rng = rng
    self.batch_size = int(batch_size)
    self.latent_dim = int(latent_dim)
    self.trace_count = 0
    self.strategy = tf.distribute.get_strategy()
    distribute.check_batch(self.batch_size, self.strategy)
    self._compiled, self._replica = distribute.compile_step(
        self._traced_step, self._replica_step, jit=jit, strategy=self.strategy)

  def _traced_step(self):
    self.trace_count += 1  # Runs only while tracing: counts retraces.
    draws = self._draw()
    if distribute.is_default(self.strategy):
      out = self._step(draws)
    else:
      out = distribute.run_replicated(self.strategy, self._replica, draws)
    self._after_step()
    return out

  def _replica_step(self, draws):
    return self._step(tf.nest.map_structure(distribute.local_rows, draws))

  def _after_step(self):
    pass

  def sample_noise(self):
    """z ~ N(0, I), [batch_size, latent_dim], from the trainer's generator."""
    return self.rng.normal([self.batch_size, self.latent_dim])

  def scale_loss(self, loss, optimizer=None):
    """What the gradient is taken of: `loss` / replicas, loss-scaled under mixed precision."""
    return (optimizer or self.optimizer).scale_loss(distribute.scale_for_replicas(loss))

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

  def _draw(self):
    raise NotImplementedError

  def _step(self, draws):
    raise NotImplementedError

  def apply_gradients(self, tape, loss, variables):
    grads = tape.gradient(loss, variables)
    self.optimizer.apply(grads, variables)

  # The student's loss against the teachers' predictions: the paper's cross-entropy, or
  # (beyond the paper, --distill_loss=logit_l1) DFAD's mean absolute error on logits, or
  # (beyond the paper, --distill_temperature other than 1) the cross-entropy at a temperature.
  distill_loss = "bce"
  distill_temperature = 1.0

  def distil(self, model, image, targets):
    """One step of `model` on the distillation loss to `targets`; returns the loss."""
    with tf.GradientTape() as tape:
      out = model(image, training=True)
      out = out["probs"] if isinstance(out, dict) else out
      if self.distill_loss == "logit_l1":
        loss = priors_lib.logit_l1_distillation(out, targets)
      elif self.distill_temperature != 1.0:
        loss = priors_lib.tempered_distillation(out, targets, self.distill_temperature)
      else:
        loss = losses.distillation_loss(out, targets)
      scaled = self.scale_loss(loss)
    self.apply_gradients(tape, scaled, model.trainable_variables)
    return loss


class SourceStep(Step):
  """A trainer of the TargetNet that reads its images from `self.source` (an `ImageSource`):
  the source draws the batch, and does its own work between steps (Forge's rounds)."""

  def _draw(self):
    return self.source.draw()

  def step(self) -> Dict[str, tf.Tensor]:
    before = self.source.advance()  # The source's work between steps (Forge's rounds).
    return {**self._compiled(), **before}


class GeneratorTrainer(Step):
  """Step I of Algorithm 1: train G = G^1..G^K and its filters f_m^j on L_joint (Eq. 12).

  For each intermediate group j < K, teacher m judges f_m^j(F^j) with its blocks d_j+1..B
  (D^j, Eq. 5); the image goes to every teacher unfiltered. Adam (β1 = 0.5) is used for G,
  as DAFL's code does; the paper does not say. With `jitter` > 0 (beyond the paper,
  DeepInversion) the teachers judge the image flipped and shifted at random by up to `jitter`
  pixels, so G cannot rely on one exact pixel alignment.

  The priors beyond the paper that `bns_weight` and `lh_weight` turn on (`dfka_tf.priors`)
  are added to L_joint with their weights; they read the same teacher forward pass on the
  image as L_joint.
  """

  def __init__(self, generator, teachers: Sequence, *, rng: tf.random.Generator,
               batch_size: int, learning_rate: float = 1e-3, alpha: float = 1.0,
               beta: float = 1.0, gamma: float = 5.0, dis_sign: str = "sparse",
               epsilon: float = 0.5, bns_weight: float = 0.0, bns_form: str = "squared", lh_weight: float = 0.0,
               jitter: int = 0, filter_reduction: int = 4, beta_1: float = 0.5,
               jit: bool = False):
    self.generator = generator
    self.jitter = int(jitter)
    self.teachers = list(teachers)
    self.weights = dict(alpha=alpha, beta=beta, gamma=gamma, dis_sign=dis_sign,
                        epsilon=epsilon)
    self.teacher_pass = TeacherPass(self.teachers, bn_inputs=bns_weight > 0,
                                    features=lh_weight > 0)
    self.priors = []
    if bns_weight > 0:
      self.priors.append(priors_lib.BatchNormPrior(bns_weight, bns_form,
                                                   self.teacher_pass.running_stats))
    if lh_weight > 0:
      self.priors.append(priors_lib.AuxiliaryClassifierPrior(lh_weight, self.teachers))
    # One filter per teacher per intermediate group (the image is not filtered).
    self.filters = [[TeacherFilter(filter_reduction, name=f"f{m + 1}_g{j + 1}")
                     for m in range(len(self.teachers))]
                    for j in range(len(generator.depths) - 1)]
    self.optimizer = maybe_loss_scaled(keras.optimizers.Adam(learning_rate, beta_1=beta_1))
    super().__init__(rng, batch_size, generator.latent_dim, jit)
    distribute.sync_batchnorm(generator)

  @property
  def aux(self) -> List[keras.layers.Layer]:
    """L_H's classifiers h_m (empty when L_H is off); saved in Step I's checkpoint."""
    return [h for p in self.priors if isinstance(p, priors_lib.AuxiliaryClassifierPrior)
            for h in p.heads]

  @property
  def trainable_variables(self):
    return self.generator.trainable_variables + [
        v for row in self.filters for f in row for v in f.trainable_variables] + [
            v for p in self.priors for v in p.trainable_variables]

  def _build_layers(self):
    for p in self.priors:
      p.build()
    for j, depth in enumerate(self.generator.depths[:-1]):
      for f in self.filters[j]:
        f.build((None,) + tuple(self.generator.feature_shapes[depth]))

  def feature_predictions(self, outputs) -> List[tf.Tensor]:
    """O_gan of every intermediate F^j: teacher m judges f_m^j(F^j) with D^j (Eq. 5)."""
    feature_probs = []
    for j, depth in enumerate(self.generator.depths[:-1]):
      feature_probs.append(tf.concat([
          tf.cast(t.tail(self.filters[j][m](outputs[j]), depth, training=False)["probs"],
                  tf.float32)
          for m, t in enumerate(self.teachers)], axis=1))
    return feature_probs

  def draw(self):
    """The random numbers of one global batch: G's noise z and the jitter's offsets."""
    size = self.generator.feature_shapes[0][:2]
    return {"z": self.sample_noise(),
            "jitter": flip_shift_draws(self.rng, self.batch_size, self.jitter, size)}

  def objective(self, draws):
    """Step I's loss on the batch G(z) (G in training mode), z and jitter from `draws`.

    Returns (total, terms, image, image_probs): L_joint plus the weighted priors, its named
    terms (each prior unweighted under its name), the image the teachers judged (jittered
    where on) and their concatenated predictions on it.
    """
    outputs = self.generator(draws["z"], training=True)
    outputs = outputs[:-1] + [apply_flip_shift(outputs[-1], draws["jitter"], self.jitter)]
    views = self.teacher_pass(outputs[-1])
    image_probs = TeacherPass.concat_probs(views)
    total, terms = losses.joint_loss(image_probs, [v.pre_logits for v in views],
                                     self.feature_predictions(outputs), **self.weights)
    for p in self.priors:
      terms[p.name] = p.value(views)
      total = total + p.weight * terms[p.name]
    return total, terms, outputs[-1], image_probs

  def _draw(self):
    return self.draw()

  def _step(self, draws):
    with tf.GradientTape() as tape:
      total, terms, image, image_probs = self.objective(draws)
      scaled = self.scale_loss(total)
    self.apply_gradients(tape, scaled, self.trainable_variables)
    # Collapse shows in these first (label coverage and diversity fall), not in the loss.
    return {"loss": total, **terms, **analysis.batch_diagnostics(image, image_probs)}

  def summarize(self, z):
    """Writes to the default summary writer what Steps II–III would sample from G now.

    G runs on the fixed noise `z` in inference mode, as `GeneratorSource` samples it, so
    nothing it trains or draws changes: `sampled/*` scalars (`analysis.batch_diagnostics`),
    a histogram of the labels the teachers predict (bucket i is label i of the
    concatenated teachers' labels) and a grid of the first 16 images.

    `sampled/pull_<term>` is how hard each weighted term of L_gan pulls on the image: the
    RMS over pixels of its weight times its gradient with respect to the image, per image.
    It shows which term drives G once the others go flat.
    """
    from dfka_tf import report  # pylint: disable=g-import-not-at-top  (matplotlib)
    images = self.generator(z, training=False)[-1]
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(images)
      views = self.teacher_pass(images)
      probs = TeacherPass.concat_probs(views)
      _, terms = losses.gan_loss(probs, [v.pre_logits for v in views], **self.weights)
    w = self.weights
    for name, weight in (("oh", 1.0), ("a", w["alpha"]), ("ie", w["beta"]),
                         ("dis", w["gamma"])):
      grad = tape.gradient(terms[name], images)
      pull = 0.0 if grad is None else float(weight) * tf.sqrt(tf.reduce_mean(tf.square(grad)))
      tf.summary.scalar(f"sampled/pull_{name}", pull * int(images.shape[0]))
    del tape
    for name, value in analysis.batch_diagnostics(images, probs).items():
      tf.summary.scalar(f"sampled/{name}", value)
    predicted = tf.cast(tf.where(probs > 0.5)[:, 1], tf.float32)
    tf.summary.histogram("sampled/labels_predicted", predicted, buckets=int(probs.shape[1]))
    grid = report.image_grid(images[:16].numpy(), columns=4)
    tf.summary.image("sampled/images", grid[None], max_outputs=1)


class BlockTrainer(SourceStep):
  """Step II of Algorithm 1 for one block b: train T^b (and f_m^b) on L_u^b (Eq. 17).

  G and T^1..T^{b-1} are frozen (inference mode). The two input streams (Eq. 16) are
  F_in^1 = T^{b-1..1}(I_gan) and F_in^2 = the generator output aligned with depth b-1. For
  b = 1 both are the image, so the loss is computed once and weighted λ_in^1 + λ_in^2; where
  no generator group aligns with depth b-1, only F_in^1 is used, with weight 1 (so no block
  goes untrained under λ_in = {0, 1}; docs/design.md, "Block alignment").

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
               batchnorm: str = "train", jit: bool = False, adversary: bool = False,
               filter_kind: str = "se", feature_weight: float = 0.0):
    self.target = target
    self.block = int(block)  # 1-based, as in the paper.
    self.num_blocks = len(target.blocks)
    self.source = source
    self.teachers = list(teachers)
    self.task = task
    self.lambda_in = tuple(float(v) for v in lambda_in)
    self.lambda_m = list(lambda_m) if lambda_m is not None else [1.0] * len(self.teachers)
    self.filters = block_filters(self.block, self.num_blocks, len(self.teachers),
                                 filter_reduction, kind=filter_kind)
    # The hint term needs a teacher feature to match: none at b = B (the head).
    self.feature_weight = float(feature_weight) if self.filters else 0.0
    if batchnorm == "frozen":  # Before the optimizer sees the block's trainable variables.
      freeze_batchnorm(target.blocks[self.block - 1])
    self.optimizer = poly_sgd(learning_rate, steps, weight_decay=weight_decay)
    super().__init__(source.rng, batch_size, 0, jit and source.jit_ok)
    distribute.sync_batchnorm(target.blocks[self.block - 1])
    # No whole student yet: Forge's adversary, when on, is block b's dual path.
    source.bind(self.dual_predict if adversary else None)

  def _build_layers(self):
    for f in self.filters:
      f.build((None,) + tuple(self.target.feature_shapes[self.block]))

  @property
  def trainable_variables(self):
    block = self.target.blocks[self.block - 1]
    return list(block.trainable_variables) + [
        v for m in self.task.active if self.filters for v in self.filters[m].trainable_variables]

  def dual_predict(self, image) -> tf.Tensor:
    """The prediction over Y_cst that block b's training shapes, in inference mode: for
    b < B each teacher m's blocks b+1..B on f_m^b(T^b..T^1(image)) (the dual path of
    Eq. 13), its customized labels placed in Y_cst order; for b = B the TargetNet itself.
    Forge's adversarial term plays against it with --forge_block_adv (beyond the paper)."""
    x = image
    for i in range(self.block):
      x = self.target.blocks[i](x, training=False)
    if self.block == self.num_blocks:
      return tf.cast(x["probs"], tf.float32)
    parts = [_gather(self.teachers[m].tail(self.filters[m](x), self.block,
                                           training=False)["probs"],
                     self.task.teacher_cols[m]) for m in self.task.active]
    return tf.gather(tf.concat(parts, axis=1), self.task.order, axis=1)

  def _per_teacher_losses(self, features_u, targets, teacher_features=None):
    """{m: L_dual^{b,m}} and, with `teacher_features` ({m: teacher m's F^b}), {m: the hint
    term of `priors.feature_hint_loss`} (beyond the paper)."""
    out, hints = {}, {}
    if self.block == self.num_blocks:
      probs = features_u["probs"]
      for m in self.task.active:
        out[m] = losses.dual_loss_per_teacher(_gather(probs, self.task.cst_cols[m]), targets[m])
    else:
      for m in self.task.active:
        adapted = self.filters[m](features_u)
        probs = self.teachers[m].tail(adapted, self.block, training=False)["probs"]
        out[m] = losses.dual_loss_per_teacher(_gather(probs, self.task.teacher_cols[m]),
                                              targets[m])
        if teacher_features is not None:
          hints[m] = priors_lib.feature_hint_loss(adapted, teacher_features[m])
    return out, hints

  def _step(self, draws):
    b = self.block
    image, link = self.source.render(draws)
    hinted = None
    if self.feature_weight > 0:  # Teacher m's own F^b too, from the targets' forward pass.
      targets, hinted = task_predictions_and_features(self.teachers, self.task, image, b)
    else:
      targets = task_predictions(self.teachers, self.task, image)
    x1 = image
    for i in range(b - 1):
      x1 = self.target.blocks[i](x1, training=False)
    x2 = image if b == 1 else link.get(b - 1)
    block = self.target.blocks[b - 1]
    with tf.GradientTape() as tape:
      per1, hints = self._per_teacher_losses(block(x1, training=True), targets, hinted)
      l1 = losses.dual_loss([per1[m] for m in self.task.active],
                            [self.lambda_m[m] for m in self.task.active])
      if b == 1 and link:  # Both streams are I_gan: one forward pass, both weights.
        total = losses.block_loss(l1, l1, *self.lambda_in)
      elif x2 is None or not link:  # No generator link (or no generator at all).
        total = losses.block_loss(l1, None, 1.0, 0.0)
      else:
        per2, _ = self._per_teacher_losses(block(x2, training=True), targets)
        l2 = losses.dual_loss([per2[m] for m in self.task.active],
                              [self.lambda_m[m] for m in self.task.active])
        total = losses.block_loss(l1, l2, *self.lambda_in)
      extra = {}
      if hints:  # Beyond the paper: on the F_in^1 stream, the one T_u runs.
        extra = {f"hint_t{m + 1}": hints[m] for m in self.task.active}
        total = total + self.feature_weight * tf.add_n(list(hints.values()))
      scaled = self.scale_loss(total)
    self.apply_gradients(tape, scaled, self.trainable_variables)
    return {"loss": total, **{f"dual_t{m + 1}": per1[m] for m in self.task.active}, **extra}


class FinetuneTrainer(SourceStep):
  """Step III, Algorithm 1 line 23: fine-tune T_u on generated images against the teachers.

  The target is, for each customized label, the prediction of the teacher it comes from,
  assembled in Y_cst order; the loss is plain distillation ℓ(T_u(I_gan), target). The same
  step distils a whole TargetNet for the DAFL baseline.
  """

  def __init__(self, target_net: keras.Model, source, teachers: Sequence, task: TaskMap, *,
               batch_size: int, steps: int, learning_rate: float = 0.01,
               weight_decay: float = 5e-3, jit: bool = False, distill_loss: str = "bce",
               distill_temperature: float = 1.0):
    if distill_loss not in DISTILL_LOSSES:
      raise ValueError(f"distill_loss={distill_loss!r}; use one of {DISTILL_LOSSES}.")
    if not distill_temperature > 0 or (distill_loss != "bce" and distill_temperature != 1.0):
      raise ValueError(f"distill_temperature={distill_temperature}; use a value > 0, and 1 "
                       f"with distill_loss={distill_loss!r}.")
    self.distill_loss = distill_loss
    self.distill_temperature = float(distill_temperature)
    self.target_net = target_net
    self.source = source
    self.teachers = list(teachers)
    self.task = task
    self.optimizer = poly_sgd(learning_rate, steps, weight_decay=weight_decay)
    super().__init__(source.rng, batch_size, 0, jit and source.jit_ok)
    distribute.sync_batchnorm(target_net)
    source.bind(self.predict)

  def predict(self, image) -> tf.Tensor:
    """The student's probabilities over Y_cst, in inference mode."""
    out = self.target_net(image, training=False)
    return tf.cast(out["probs"] if isinstance(out, dict) else out, tf.float32)

  def _step(self, draws):
    image, _ = self.source.render(draws)
    return {"loss": self.distil(self.target_net, image,
                                   predictions_over_task(self.teachers, self.task, image))}

  @property
  def trainable_variables(self):
    return self.target_net.trainable_variables


class AdversarialFinetuneTrainer(FinetuneTrainer):
  """Step III with adversarial generator updates, after DFAD (Fang et al., 2019).

  Beyond the paper. A frozen G keeps producing the same kind of image, so T_u only learns
  the teachers where G already goes. Here every step first moves G (and its filters) one
  step on Step I's objective minus `weight` × the disagreement between T_u (inference mode)
  and the teachers on G's image (`priors.disagreement_loss`), so G seeks images T_u still
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
               jit: bool = False, distill_loss: str = "bce",
               distill_temperature: float = 1.0):
    self.generator_trainer = generator_trainer
    self.weight = float(weight)
    self.target_cols = target_columns(teachers, task)
    super().__init__(target_net, source, teachers, task, batch_size=batch_size, steps=steps,
                     learning_rate=learning_rate, weight_decay=weight_decay, jit=jit,
                     distill_loss=distill_loss, distill_temperature=distill_temperature)

  def _draw(self):
    return {"generator": self.generator_trainer.draw(), "source": self.source.draw()}

  def _step(self, draws):
    g = self.generator_trainer
    with tf.GradientTape() as tape:
      objective, _, image, image_probs = g.objective(draws["generator"])
      student = self.target_net(image, training=False)
      student = student["probs"] if isinstance(student, dict) else student
      gap = priors_lib.disagreement_loss(student, tf.gather(image_probs, self.target_cols, axis=1))
      g_loss = objective - self.weight * gap
      scaled = self.scale_loss(g_loss, g.optimizer)
    g.apply_gradients(tape, scaled, g.trainable_variables)
    out = super()._step(draws["source"])
    return dict(out, disagreement=gap, generator_loss=g_loss)


class JointTrainer(Step):
  """DAFL as its code trains (Chen et al., ICCV 2019; huawei-noah's DAFL_train.py): G and
  the student together, the teachers as a fixed discriminator.

  Each step draws one batch G(z), G in training mode. G takes a step on its objective
  (`generator_trainer`'s: L_oh + α L_a + β L_ie with DAFL's weights, the supplementary's
  multi-label forms S-Eq. 2–3), and the student a step on the distillation loss to the
  teachers' predictions on the same images, images and targets detached. The two losses
  are taped apart, so each network moves only through its own loss. The student thus sees
  every state G passes through.

  Args:
    generator_trainer: G, its optimizer and loss weights (K = 1, γ = 0), built here.
    student: the whole TargetNet (image -> Y_cst probabilities).
    optimizer: the student's (`step_decay_sgd` for DAFL's).
  """

  def __init__(self, generator_trainer: GeneratorTrainer, student: keras.Model,
               teachers: Sequence, task: TaskMap, *, optimizer, jit: bool = False):
    self.generator_trainer = generator_trainer
    self.student = student
    self.target_cols = target_columns(teachers, task)
    self.optimizer = optimizer
    super().__init__(generator_trainer.rng, generator_trainer.batch_size,
                     generator_trainer.latent_dim, jit)
    distribute.sync_batchnorm(student)

  def _build_layers(self):
    self.generator_trainer.build()

  @property
  def trainable_variables(self):
    return self.student.trainable_variables

  def _draw(self):
    return self.generator_trainer.draw()

  def _step(self, draws):
    g = self.generator_trainer
    with tf.GradientTape() as g_tape:
      objective, terms, image, image_probs = g.objective(draws)
      g_scaled = self.scale_loss(objective, g.optimizer)
    g.apply_gradients(g_tape, g_scaled, g.trainable_variables)
    targets = tf.gather(image_probs, self.target_cols, axis=1)
    loss = self.distil(self.student, tf.stop_gradient(image), tf.stop_gradient(targets))
    return {"loss": loss, "generator_loss": objective, **terms,
            **analysis.batch_diagnostics(image, image_probs)}
