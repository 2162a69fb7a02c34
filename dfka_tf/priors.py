"""Priors beyond the paper, beside the paper's losses (`losses.py`).

Each prior is a pure function (hand-computed tests in tests/test_losses.py) and, where a
training step sums it, a small object: `Prior.value(views)` reads the teachers' forward
pass (`train.teacher_pass.TeacherView`) and returns the unweighted term; the step adds
`weight * value` under the prior's name. A new prior is a new class here plus its option
(docs/configuration.md, "Adding an option").
"""

from typing import Dict, List, Sequence, Tuple

import keras
import tensorflow as tf

from dfka_tf import distribute
from dfka_tf.losses import _f32, binary_cross_entropy, elementwise_binary_cross_entropy


def disagreement_loss(student_probs, teacher_probs):
  """Student-teacher discrepancy of DFAD (Fang et al., 2019). Beyond the paper.

  mean |s − t| over the batch and the labels, on probabilities (DFAD's mean absolute error,
  on sigmoid outputs here). The generator *maximises* it during adversarial fine-tuning, so
  it keeps producing images on which T_u still disagrees with the teachers; both arguments
  carry gradient, since G reaches the loss through the student and the teachers alike.
  """
  return tf.reduce_mean(tf.abs(_f32(student_probs) - _f32(teacher_probs)))


def logit_l1_distillation(student_probs, teacher_probs, eps: float = 1e-6):
  """A student's distillation loss on logits, after DFAD (Fang et al., 2019). Beyond the
  paper.

  mean |logit(s) − logit(t)| over the batch and the labels, logit(p) = log(p / (1 − p)), both
  probabilities clipped to [eps, 1 − eps] first (so a logit is at most log((1−eps)/eps),
  13.8 at the default). Where the teachers are sure of a label on a synthetic image (t near
  0 or 1), the cross-entropy of `losses.distillation_loss` is near a hard label; on logits
  the student still learns by how much the teachers prefer one label to another.
  """
  return tf.reduce_mean(tf.abs(_logits(student_probs, eps) - _logits(teacher_probs, eps)))


def _logits(probs, eps: float):
  """logit(p) = log(p / (1 − p)) of probabilities clipped to [eps, 1 − eps] first."""
  p = tf.clip_by_value(_f32(probs), eps, 1.0 - eps)
  return tf.math.log(p) - tf.math.log(1.0 - p)


def tempered_distillation(student_probs, teacher_probs, temperature: float,
                          eps: float = 1e-6):
  """A student's distillation loss at a temperature, after Hinton et al. (2015), in the
  sigmoid form of multi-label outputs (`--distill_temperature`). Beyond the paper.

  T² · ℓ(σ(z_s / T), σ(z_t / T)), ℓ the paper's cross-entropy (`losses.distillation_loss`)
  and z = logit(p) = log(p / (1 − p)) of each probability, clipped to [eps, 1 − eps] first.
  Where the teachers are sure of a label (t near 0 or 1) the plain cross-entropy is near a
  hard label; at T > 1 the target keeps how sure they are. T² keeps the gradient's scale
  as T changes, as in Hinton et al.; T = 1 is the plain cross-entropy.
  """
  t_ = tf.cast(temperature, tf.float32)
  return tf.square(t_) * binary_cross_entropy(tf.sigmoid(_logits(student_probs, eps) / t_),
                                              tf.sigmoid(_logits(teacher_probs, eps) / t_))


def weighted_binary_cross_entropy(probs, targets, weights):
  """The paper's ℓ with a weight on each element: mean of w · −[t log y + (1 − t) log(1 − y)].
  Beyond the paper (Forge's `--forge_contrast` weights a few of its target entries).

  With every weight 1 it is `losses.binary_cross_entropy`. Neither targets nor weights are
  differentiated.
  """
  w = tf.stop_gradient(_f32(weights))
  return tf.reduce_mean(w * elementwise_binary_cross_entropy(probs, targets))


def feature_hint_loss(adapted, teacher_features, eps: float = 1e-6):
  """Step II's feature term (`--step2_feature_weight`), after FitNets (Romero et al., 2015)
  and the feature-reconstructing block-wise amalgamation of Shen et al. (AAAI 2019). Beyond
  the paper.

  mean over the batch of ‖â − t̂‖², x̂ = x / ‖x‖ over each image's whole feature map: the
  squared distance of f_m^b(F_u^b) to teacher m's own block-b features on the same image,
  each scaled to unit norm. Unit norms keep the term in [0, 4] and its gradient bounded
  whatever the two networks' feature scales (a fresh TargetNet's are ~10-60× the trained
  teachers' mean square here, and a plain relative error diverged at LR 0.3 in 8 steps);
  the scale is left to L_dual. Only `adapted` carries gradient.
  """
  def unit(x):
    x = tf.reshape(_f32(x), [tf.shape(x)[0], -1])
    return x / (tf.norm(x, axis=1, keepdims=True) + eps)
  t = tf.stop_gradient(unit(teacher_features))
  return tf.reduce_mean(tf.reduce_sum(tf.square(unit(adapted) - t), axis=1))


def masked_kl_disagreement(student_probs, teacher_probs, eps: float = 1e-6):
  """The adversarial term of Forge (`train/forge.py`), after Fast-Datafree and CMI. Beyond
  the paper.

  Per label, the Bernoulli KL(t ‖ s) = t log(t/s) + (1−t) log((1−t)/(1−s)), kept only where
  student and teacher still decide alike, 1[s ≥ ½] = 1[t ≥ ½] (a constant mask), and averaged
  over the batch and the labels. The generator *maximises* it: it seeks images the student
  gets wrong without crossing the teachers' decision boundary, where maximising would only
  push the images off what the teachers know. The sigmoid counterpart of Fast-Datafree's
  masked softmax KL.
  """
  s = tf.clip_by_value(_f32(student_probs), eps, 1.0 - eps)
  t = tf.clip_by_value(_f32(teacher_probs), eps, 1.0 - eps)
  kl = t * tf.math.log(t / s) + (1.0 - t) * tf.math.log((1.0 - t) / (1.0 - s))
  mask = tf.stop_gradient(tf.cast((s >= 0.5) == (t >= 0.5), tf.float32))
  return tf.reduce_mean(mask * kl)


def batchnorm_statistics_loss(features: Sequence[tf.Tensor],
                              running_stats: Sequence[Tuple[tf.Tensor, tf.Tensor]],
                              form: str = "squared", history=None, momentum=0.0):
  """L_bns of DeepInversion (Yin et al., 2020; IFHE slides' L_bns). Beyond the paper.

  μ̃_l, σ̃_l² are the per-channel batch mean and variance of the input of teacher batch-norm
  layer l on the generated batch; μ_l, σ_l² its running mean and variance. Two forms:

  - "squared": (1/L) Σ_l ||μ̃_l − μ_l||_2² + ||σ̃_l − σ_l||_2² (standard deviations);
  - "norm": (1/L) Σ_l ||μ̃_l − μ_l||_2 + ||σ̃_l² − σ_l²||_2, the form of DeepInversion's
    code. Its gradient does not fade as the statistics approach their targets, so it keeps
    pulling on layers that are almost matched.

  With `history` (Fast-Datafree's `bn_mmt`), the batch's statistics are first blended with
  those of earlier batches: μ̃_l ← (1 − m) μ̃_l + m μ̄_l and σ̃_l² ← (1 − m) σ̃_l² + m σ̄_l²,
  so that one batch need not carry the statistics of the whole data on its own.

  Args:
    features: inputs of the L batch-norm layers, [N, H, W, C_l] (or [N, C_l]).
    running_stats: matching (moving_mean, moving_variance) pairs.
    form: "squared" or "norm".
    history: optional (mean, variance) pairs of earlier batches, one per layer
      (`blend_statistics` keeps them).
    momentum: m, the share of `history` in the compared statistics (0: the batch alone).
  """
  if len(features) != len(running_stats) or not features:
    raise ValueError("batchnorm_statistics_loss needs one (mean, variance) pair per feature.")
  if form not in ("squared", "norm"):
    raise ValueError(f"unknown L_bns form {form!r}; use 'squared' or 'norm'.")
  if history is not None and len(history) != len(features):
    raise ValueError("batchnorm_statistics_loss needs one history pair per feature.")
  stats = batch_statistics(features)  # Of the global batch.
  if history is not None:
    stats = blend_statistics(history, stats, momentum)
  terms = []
  for (bmean, bvar), (mu, var) in zip(stats, running_stats):
    if form == "norm":
      terms.append(tf.norm(bmean - _f32(mu)) + tf.norm(bvar - _f32(var)))
    else:
      terms.append(tf.reduce_sum(tf.square(bmean - _f32(mu))) +
                   tf.reduce_sum(tf.square(tf.sqrt(bvar + 1e-5) - tf.sqrt(_f32(var) + 1e-5))))
  return tf.add_n(terms) / float(len(terms))


def batch_statistics(features: Sequence[tf.Tensor]) -> List[Tuple[tf.Tensor, tf.Tensor]]:
  """Per-channel (mean, variance) of each batch-norm input over the global batch (every axis
  but the last). Beyond the paper (L_bns)."""
  out = []
  for x in features:
    x = _f32(x)
    out.append(distribute.batch_moments(x, list(range(len(x.shape) - 1))))
  return out


def blend_statistics(history, stats, momentum):
  """Fast-Datafree's BN momentum (`bn_mmt`): each (mean, variance) of `history` becomes
  m · history + (1 − m) · stats, stats being a batch's (`batch_statistics`). Beyond the paper.
  """
  m = tf.cast(momentum, tf.float32)
  return [(m * _f32(hm) + (1.0 - m) * bm, m * _f32(hv) + (1.0 - m) * bv)
          for (hm, hv), (bm, bv) in zip(history, stats)]


def auxiliary_classifier_loss(aux_probs, teacher_probs, epsilon: float = 0.5):
  """L_H of IFHE (Chen et al., 2023), multi-label form. Beyond the paper.

  An auxiliary classifier h reads the concatenated (pooled) intermediate teacher features and
  is trained to predict the teacher's thresholded labels t = 1[y >= epsilon]:
  L_H = ℓ(h(f_T), t). The generator minimising it makes intermediate features separable by
  label (IFHE replaces L_oh by it).

  Args:
    aux_probs: [N, C] the auxiliary classifier's sigmoid outputs.
    teacher_probs: [N, C] teacher outputs whose thresholds give the labels (no gradient).
  """
  t = tf.cast(tf.stop_gradient(_f32(teacher_probs)) >= epsilon, tf.float32)
  return binary_cross_entropy(aux_probs, t)


def total_variation_loss(images):
  """The smoothness prior of DeepInversion (Yin et al., 2020), squared form. Beyond the paper.

  mean over pixels of (x[i+1, j] − x[i, j])² plus the same across columns: the mean squared
  difference of vertical neighbours plus that of horizontal ones. Optimised pixels would
  otherwise fill with high-frequency patterns that excite the teachers but no real image has.

  Args:
    images: [N, H, W, C].
  """
  x = _f32(images)
  dv = x[:, 1:, :, :] - x[:, :-1, :, :]
  dh = x[:, :, 1:, :] - x[:, :, :-1, :]
  return tf.reduce_mean(tf.square(dv)) + tf.reduce_mean(tf.square(dh))


def inversion_loss(probs, targets, images, bns, bns_weight: float = 1.0,
                   tv_weight: float = 1e-3) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
  """DeepInversion's objective for multi-label teachers. Beyond the paper.

  ℓ(O(x), y) + w_bns L_bns + w_tv L_tv: the teachers' concatenated predictions O(x) on the
  optimised images x should match the sampled multi-hot targets y, their batch-norm inputs
  the running statistics (`batchnorm_statistics_loss`, passed in as `bns`), and x should
  be smooth (`total_variation_loss`).

  Args:
    probs: [N, C] teacher predictions on the images.
    targets: [N, C] multi-hot targets (no gradient).
    images: [N, H, W, C] the images being optimised.
    bns: the L_bns value on the same forward pass (0 where it is off).

  Returns:
    (total, {"ce", "bns", "tv"}) with the unweighted terms.
  """
  terms = {"ce": binary_cross_entropy(probs, targets), "bns": _f32(bns),
           "tv": total_variation_loss(images)}
  total = terms["ce"] + float(bns_weight) * terms["bns"] + float(tv_weight) * terms["tv"]
  return total, terms


class Prior:
  """A weighted term a step adds to its loss. Beyond the paper.

  Attributes:
    name: the key of its unweighted value in the step's measurements.
    weight: its weight in the loss.
  """
  name = ""

  def __init__(self, weight: float):
    self.weight = float(weight)

  @property
  def trainable_variables(self) -> List[tf.Variable]:
    return []

  def build(self):
    pass

  def value(self, views) -> tf.Tensor:
    raise NotImplementedError


class BatchNormPrior(Prior):
  """L_bns on the image, averaged over teachers (`batchnorm_statistics_loss`).

  With `momentum` m > 0 (Fast-Datafree's `bn_mmt`) it keeps, per teacher and layer, the
  statistics of earlier batches (`remember`, once a round) and compares the running
  statistics with the batch's blended with them; until the first `remember` the batch is
  compared alone."""
  name = "bns"

  def __init__(self, weight: float, form: str, running_stats: Sequence,
               momentum: float = 0.0):
    super().__init__(weight)
    self.form = form
    self.running_stats = list(running_stats)  # One [(mean, var), ...] list per teacher.
    self.momentum = float(momentum)
    self.history, self.remembered = None, None
    if self.momentum > 0:
      self.history = [[(tf.Variable(tf.zeros_like(mu), trainable=False, name="bns_mean"),
                        tf.Variable(tf.zeros_like(var), trainable=False, name="bns_var"))
                       for mu, var in stats] for stats in self.running_stats]
      self.remembered = tf.Variable(0.0, trainable=False, name="bns_remembered")

  def value(self, views) -> tf.Tensor:
    histories = self.history or [None] * len(views)
    m = self.momentum * self.remembered if self.history else 0.0  # 0 before the first one.
    return tf.add_n([batchnorm_statistics_loss(v.bn_inputs, stats, self.form, history, m)
                     for v, stats, history in zip(views, self.running_stats, histories)]
                    ) / len(views)

  def remember(self, views):
    """Folds the batch of `views` into the kept statistics (the first one replaces them)."""
    m = self.momentum * self.remembered
    for v, history in zip(views, self.history):
      blended = blend_statistics(history, batch_statistics(v.bn_inputs), m)
      for (hm, hv), (bm, bv) in zip(history, blended):
        hm.assign(bm)
        hv.assign(bv)
    self.remembered.assign(1.0)

  def state(self) -> Dict:
    """The variables a checkpoint holds ({} without momentum)."""
    if self.history is None:
      return {}
    return {"bns_history": [list(pair) for stats in self.history for pair in stats],
            "bns_remembered": self.remembered}


class AuxiliaryClassifierPrior(Prior):
  """L_H: per teacher, a classifier h_m on its pooled, concatenated intermediate features,
  trained with G on the same loss (IFHE, `auxiliary_classifier_loss`)."""
  name = "lh"

  def __init__(self, weight: float, teachers: Sequence):
    super().__init__(weight)
    self.teachers = list(teachers)
    self.heads = [keras.layers.Dense(t.num_labels, activation="sigmoid", name=f"h{m + 1}")
                  for m, t in enumerate(self.teachers)]

  @property
  def trainable_variables(self):
    return [v for h in self.heads for v in h.trainable_variables]

  def build(self):
    for h, t in zip(self.heads, self.teachers):
      h.build((None, sum(int(shape[-1]) for shape in t.feature_shapes[1:])))

  def value(self, views) -> tf.Tensor:
    return tf.add_n([
        auxiliary_classifier_loss(
            h(tf.concat([tf.reduce_mean(tf.cast(f, tf.float32), axis=[1, 2])
                         for f in v.features], axis=-1)), v.probs)
        for h, v in zip(self.heads, views)]) / len(self.heads)
