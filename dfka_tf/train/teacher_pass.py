"""The teachers' forward pass on an image, once, as a named structure every term reads.

Teachers are frozen and always run with training=False (batch norm in inference mode). A
`TeacherPass` computes, per teacher, what the step's losses and priors need: the
predictions and pre-logits always; the inputs of every batch-norm layer (L_bns) and the
intermediate features F^1..F^{B-1} (L_H) when asked.
"""

from typing import List, NamedTuple, Optional, Sequence

import tensorflow as tf

from dfka_tf.models import blocknet


class TeacherView(NamedTuple):
  """One teacher's outputs on one batch."""
  probs: tf.Tensor                               # [N, C_m] sigmoid outputs
  pre_logits: tf.Tensor                          # [N, D] pooled features (L_a)
  bn_inputs: Optional[List[tf.Tensor]] = None    # inputs of its BN layers (L_bns)
  features: Optional[List[tf.Tensor]] = None     # F^1..F^{B-1} (L_H)


class TeacherPass:
  """Runs every teacher on an image and returns one `TeacherView` each.

  With `bn_inputs`, each teacher runs through its batch-norm tap model
  (`blocknet.batchnorm_taps`), so L_bns costs no extra pass; `running_stats` then holds the
  matching (moving_mean, moving_variance) pairs. With `features` the intermediate features
  come from the block-by-block pass (a second pass when `bn_inputs` is on too).
  """

  def __init__(self, teachers: Sequence, *, bn_inputs: bool = False, features: bool = False):
    self.teachers = list(teachers)
    self.features = bool(features)
    self.taps = [blocknet.batchnorm_taps(t) for t in self.teachers] if bn_inputs else None

  @property
  def running_stats(self):
    return None if self.taps is None else [stats for _, stats in self.taps]

  def __call__(self, image) -> List[TeacherView]:
    feats = ([t.features(image, training=False, with_outputs=True) for t in self.teachers]
             if self.features else None)
    if self.taps is not None:
      outs = [tap(image, training=False) for tap, _ in self.taps]
    elif feats is not None:
      outs = [out for _, out in feats]
    else:
      outs = [t.tail(image, 0, training=False) for t in self.teachers]
    views = []
    for m, o in enumerate(outs):
      views.append(TeacherView(
          probs=o["probs"], pre_logits=o["pre_logits"], bn_inputs=o.get("bn_inputs"),
          features=feats[m][0] if feats is not None else None))
    return views

  @staticmethod
  def concat_probs(views: Sequence[TeacherView]) -> tf.Tensor:
    """The teachers' predictions side by side, float32 [N, Σ C_m]."""
    return tf.concat([tf.cast(v.probs, tf.float32) for v in views], axis=1)
