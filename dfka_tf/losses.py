"""Every loss of the paper, as pure functions.

"Eq. N" is the main paper's numbering (Ye et al., CVPR 2020), "S-Eq. N" the supplementary's.
Inputs are probabilities in [0, 1] (sigmoid outputs of multi-label teachers) unless said
otherwise; every function returns a float32 scalar (and some a dict of named terms).
Targets that the paper treats as labels are wrapped in `stop_gradient`, so a caller can pass
tensors that carry gradients without leaking them into the target side.
"""

from typing import Dict, Sequence, Tuple

import tensorflow as tf

from dfka_tf import distribute

# Probabilities are clipped before every log: sigmoid outputs of float32 networks saturate to
# exactly 0 or 1, and log(0) would turn a single confident label into an inf loss.
_EPS = 1e-7

DIS_SIGNS = ("sparse", "printed")


def _f32(x):
  return tf.cast(x, tf.float32)


def binary_cross_entropy(probs, targets):
  """Mean binary cross-entropy ℓ(y, t) over every element (the paper's ℓ).

  Args:
    probs: predicted probabilities y in [0, 1], any shape.
    targets: targets t in [0, 1] (hard or soft), broadcastable to `probs`; not differentiated.

  Returns:
    mean of -[t log y + (1 - t) log(1 - y)].
  """
  return tf.reduce_mean(elementwise_binary_cross_entropy(probs, targets))


def elementwise_binary_cross_entropy(probs, targets):
  """The paper's ℓ on each element, before the mean: −[t log y + (1 − t) log(1 − y)], with y
  clipped to [1e-7, 1 − 1e-7]; targets are not differentiated."""
  y = tf.clip_by_value(_f32(probs), _EPS, 1.0 - _EPS)
  t = tf.stop_gradient(_f32(targets))
  return -(t * tf.math.log(y) + (1.0 - t) * tf.math.log(1.0 - y))


def one_hot_loss(probs, epsilon: float = 0.5):
  """L_oh, Eq. 6–7: cross-entropy of each output against its own thresholded label.

  t^i = 1[y^i >= epsilon] (Eq. 6, epsilon = 0.5 in the paper), held constant; L_oh is the
  mean over labels (the 1/C of Eq. 7) and over the batch. It pushes each output towards 0 or 1.

  Args:
    probs: [N, C] probabilities.
    epsilon: threshold of Eq. 6.
  """
  probs = _f32(probs)
  t = tf.cast(probs >= epsilon, tf.float32)
  return binary_cross_entropy(probs, t)


def activation_loss(pre_logits: Sequence[tf.Tensor]):
  """L_a, S-Eq. 2: minus the mean L1 norm of the features before the fully connected layer.

  -1/(NM) Σ_n Σ_m ||F_m(n)||_1, with the L1 norm taken as the *mean* absolute value over
  feature dimensions (as DAFL's code does) so the scale does not depend on the width of the
  teacher; teachers of different widths may be mixed.

  Args:
    pre_logits: one [N, D_m] tensor per teacher (the pooled features inside block B).
  """
  if not pre_logits:
    raise ValueError("activation_loss needs at least one teacher's features.")
  per_teacher = [tf.reduce_mean(tf.abs(_f32(f))) for f in pre_logits]
  return -tf.add_n(per_teacher) / float(len(per_teacher))


def information_entropy_loss(probs):
  """L_ie, S-Eq. 3: (1/C) Σ_c H_info(mean_n y^c(n)), H_info(p) = p log p + (1 - p) log(1 - p).

  H_info is the *negative* binary entropy, so minimising L_ie drives every label's batch
  frequency towards 1/2: generated batches then cover each label in about half the samples
  rather than collapsing onto a few labels. Its minimum is -log 2 per label.

  Args:
    probs: [N, C] probabilities (the concatenated teacher outputs O_gan, Eq. 11).
  """
  # The label frequencies of the whole batch, also when replicas each hold a part of it.
  p = tf.clip_by_value(distribute.batch_mean(_f32(probs), axis=0), _EPS, 1.0 - _EPS)
  h = p * tf.math.log(p) + (1.0 - p) * tf.math.log(1.0 - p)
  return tf.reduce_mean(h)


def discrete_loss(probs, sign: str = "sparse"):
  """L_dis, Eq. 8: the L1 norm of the outputs, (1/C) Σ_i |y^i|, averaged over the batch.

  The paper prints L_dis = -(1/C) Σ|y^i| but says the loss makes outputs *sparse*; minimising
  the printed form pushes every output up (dense labels). Both readings are offered:

  - sign="sparse":  +(1/C) Σ|y^i|  (what the text says the loss is for), the default;
  - sign="printed": -(1/C) Σ|y^i|  (the equation as printed).

  docs/design.md, "L_dis sign", records the measurement that chose the default.

  Args:
    probs: [N, C] probabilities.
    sign: "sparse" or "printed".
  """
  if sign not in DIS_SIGNS:
    raise ValueError(f"discrete_loss sign must be one of {DIS_SIGNS}, got {sign!r}.")
  l1 = tf.reduce_mean(tf.abs(_f32(probs)))
  return l1 if sign == "sparse" else -l1


def gan_loss(probs, pre_logits: Sequence[tf.Tensor], alpha: float = 1.0, beta: float = 1.0,
             gamma: float = 5.0, dis_sign: str = "sparse",
             epsilon: float = 0.5) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
  """L_gan, Eq. 9 = S-Eq. 1: L_oh + α L_a + β L_ie + γ L_dis (α=1, β=1, γ=5, S-Table 1).

  Args:
    probs: [N, C] concatenated teacher outputs on generated images (O_gan, Eq. 11).
    pre_logits: per-teacher pooled features on the same images (for L_a).
    alpha, beta, gamma: the balancing weights.
    dis_sign: reading of L_dis (see `discrete_loss`).
    epsilon: threshold of L_oh (Eq. 6).

  Returns:
    (total, {"oh", "a", "ie", "dis"}) with the unweighted terms.
  """
  terms = {
      "oh": one_hot_loss(probs, epsilon),
      "a": activation_loss(pre_logits),
      "ie": information_entropy_loss(probs),
      "dis": discrete_loss(probs, dis_sign),
  }
  total = terms["oh"] + alpha * terms["a"] + beta * terms["ie"] + gamma * terms["dis"]
  return total, terms


def joint_loss(image_probs, image_pre_logits: Sequence[tf.Tensor],
               feature_probs: Sequence[tf.Tensor], alpha: float = 1.0, beta: float = 1.0,
               gamma: float = 5.0, dis_sign: str = "sparse",
               epsilon: float = 0.5) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
  """L_joint, Eq. 12: L_gan on the image + the mean over groups j < K of ℓ(O(F^j), O(I)).

  The adversarial loss is computed on the generated image only; each intermediate generator
  output F^j, passed through the remaining teacher blocks (D^j, Eq. 5) after its teacher-level
  filter, must make the same predictions as the image. The image-side predictions are the
  targets and carry no gradient. With K groups the sum has K-1 terms and the paper's
  1/(B-1) becomes 1/(K-1); with K = 1 the second part is absent.

  Args:
    image_probs: [N, C] O_gan(I_gan), concatenated over teachers.
    image_pre_logits: per-teacher pooled features of the image (for L_a).
    feature_probs: one [N, C] O_gan(F^j) per intermediate group j = 1..K-1.

  Returns:
    (total, terms) with terms "gan", "oh", "a", "ie", "dis", "align".
  """
  gan, terms = gan_loss(image_probs, image_pre_logits, alpha, beta, gamma, dis_sign, epsilon)
  if feature_probs:
    align = tf.add_n([binary_cross_entropy(p, image_probs) for p in feature_probs])
    align = align / float(len(feature_probs))
  else:
    align = tf.constant(0.0)
  terms = dict(terms, gan=gan, align=align)
  return gan + align, terms


def dual_loss_per_teacher(student_probs, teacher_probs):
  """L_dual^{b,m}, Eq. 14: ℓ(g_m(O_m(F_u^b)), g_m(O_m(I_gan))).

  Both arguments are already restricted to the customized labels of teacher m by the
  task-level filter g_m; the teacher's prediction on the generated image is the target.

  Args:
    student_probs: [N, C_m] predictions reached from the TargetNet's block-b features.
    teacher_probs: [N, C_m] teacher m's predictions on I_gan (no gradient).
  """
  return binary_cross_entropy(student_probs, teacher_probs)


def dual_loss(per_teacher: Sequence[tf.Tensor], lambdas: Sequence[float] = None):
  """L_dual^b, Eq. 15: Σ_m λ_m L_dual^{b,m} (λ_m = 1 in the paper)."""
  if lambdas is None:
    lambdas = [1.0] * len(per_teacher)
  if len(lambdas) != len(per_teacher):
    raise ValueError(f"dual_loss got {len(per_teacher)} teacher losses but {len(lambdas)} "
                     "weights λ_m.")
  return tf.add_n([float(w) * _f32(l) for w, l in zip(lambdas, per_teacher)])


def block_loss(dual_in1, dual_in2, lambda_in1: float = 1.0, lambda_in2: float = 1.0):
  """L_u^b, Eq. 17: λ_in^1 L_dual^b(F_in^1) + λ_in^2 L_dual^b(F_in^2) (both 1, S-Table 2).

  F_in^1 is the TargetNet's own path from I_gan (Eq. 16), F_in^2 the generator's link.
  Pass `dual_in2=None` where no generator group aligns with the block's input depth.
  """
  total = float(lambda_in1) * _f32(dual_in1)
  if dual_in2 is not None:
    total = total + float(lambda_in2) * _f32(dual_in2)
  return total


def distillation_loss(student_probs, teacher_probs):
  """Plain multi-label distillation: ℓ(student, teacher) with the teacher as soft target.

  Used to fine-tune the regrouped T_u (Algorithm 1, line 23) and by the DAFL baseline.
  """
  return binary_cross_entropy(student_probs, teacher_probs)
