"""The teachers' forward pass on an image, once, as a named structure every term reads.

Teachers are frozen and always run with training=False (batch norm in inference mode). A
`TeacherPass` computes, per teacher, what the step's losses and priors need: the
predictions and pre-logits always; the inputs of every batch-norm layer (L_bns) and the
intermediate features F^1..F^{B-1} (L_H) when asked. `task_predictions` (with the features
at one block: `task_predictions_and_features`) and `predictions_over_task` are the teachers'
predictions over the customized labels Y_cst, each label from its teacher: the targets of
Steps II–III and the "Teacher" scores.
"""

from typing import Dict, List, NamedTuple, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import tree

from dfka_tf.errors import TeacherError
from dfka_tf.models.teacher_files import first_line
from dfka_tf.task import TaskMap


class TeacherView(NamedTuple):
  """One teacher's outputs on one batch."""
  probs: tf.Tensor                               # [N, C_m] sigmoid outputs
  pre_logits: tf.Tensor                          # [N, D] pooled features (L_a)
  bn_inputs: Optional[List[tf.Tensor]] = None    # inputs of its BN layers (L_bns)
  features: Optional[List[tf.Tensor]] = None     # F^1..F^{B-1} (L_H)


class TeacherPass:
  """Runs every teacher on an image and returns one `TeacherView` each.

  With `bn_inputs`, each teacher runs through its batch-norm tap model
  (`batchnorm_taps`), so L_bns costs no extra pass; `running_stats` then holds the
  matching (moving_mean, moving_variance) pairs. With `features` the intermediate features
  come from the block-by-block pass (a second pass when `bn_inputs` is on too).
  """

  def __init__(self, teachers: Sequence, *, bn_inputs: bool = False, features: bool = False):
    self.teachers = list(teachers)
    self.features = bool(features)
    self.taps = [batchnorm_taps(t) for t in self.teachers] if bn_inputs else None

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


def task_predictions(teachers: Sequence, task: TaskMap, image) -> Dict[int, tf.Tensor]:
  """{m: g_m(A_m(image))}: each active teacher's predictions on its customized labels
  (`task.teacher_cols[m]`), float32, the teachers in inference mode."""
  return {m: _task_probs(teachers[m], task, m, image, 0) for m in task.active}


def task_predictions_and_features(teachers: Sequence, task: TaskMap, image, block: int):
  """({m: predictions}, {m: teacher m's F^block}) from one forward pass per teacher, split
  at depth `block` (1..B-1): `task_predictions` and the features Step II's feature term
  reads, without running the teachers' first blocks twice."""
  preds, feats = {}, {}
  for m in task.active:
    feats[m] = teachers[m].call(image, 0, block, training=False)
    preds[m] = _task_probs(teachers[m], task, m, feats[m], block)
  return preds, feats


def _task_probs(teacher, task: TaskMap, m: int, x, start: int) -> tf.Tensor:
  probs = teacher.tail(x, start, training=False)["probs"]
  return tf.gather(tf.cast(probs, tf.float32), task.teacher_cols[m], axis=1)


def predictions_over_task(teachers: Sequence, task: TaskMap, image) -> tf.Tensor:
  """The teachers' predictions over Y_cst, in its order, each label from its teacher:
  `task_predictions` side by side, permuted by `task.order`. [N, |Y_cst|] float32."""
  parts = task_predictions(teachers, task, image)
  return tf.gather(tf.concat([parts[m] for m in task.active], axis=1), task.order, axis=1)


def target_columns(teachers: Sequence, task: TaskMap) -> List[int]:
  """Positions of Y_cst, in order, in the teachers' concatenated predictions (the
  `image_probs` of `GeneratorTrainer.objective`): the distillation targets of T_u there."""
  offsets = np.cumsum([0] + [t.num_labels for t in teachers])
  concat = [int(offsets[m]) + c for m in task.active for c in task.teacher_cols[m]]
  return [concat[i] for i in task.order]


def batchnorm_taps(teacher):
  """image -> {"probs", "pre_logits", "bn_inputs": [...]}: one forward pass with BN taps.

  For L_bns (DeepInversion's BN-statistics prior, an option beyond the paper): the input of
  every BatchNormalization layer of the teacher's source model, next to its usual outputs, so
  the prior costs no extra teacher forward pass. Returns the model and the matching list of
  (moving_mean, moving_variance) variables.

  Raises:
    TeacherError: the teacher has no source model, no BN layers, or a BN layer used twice.
  """
  model = teacher.source_model
  if model is None:
    raise TeacherError(f"teacher {teacher.name!r} was not cut from a whole model; the "
                       "batch-norm prior (--bns_weight) needs one")
  bns = [l for l in model._flatten_layers(include_self=False)  # pylint: disable=protected-access
         if isinstance(l, keras.layers.BatchNormalization)]
  if not bns:
    raise TeacherError(f"teacher {teacher.name!r} has no BatchNormalization layer; use "
                       "--bns_weight=0")
  try:
    taps = [bn.input for bn in bns]
  except (AttributeError, ValueError) as e:
    raise TeacherError(f"teacher {teacher.name!r}: a batch-norm layer is used more than once "
                       f"({first_line(e)}); use --bns_weight=0") from None
  out = model.output
  if isinstance(out, dict):
    probs, pre = out["probs"], out["pre_logits"]
  else:
    probs = tree.flatten(out)[0]
    pre = model.get_layer(teacher.pre_logits_name).output
  tap = keras.Model(model.inputs, {"probs": probs, "pre_logits": pre, "bn_inputs": taps},
                    name=f"{teacher.name}_bn_taps")
  tap.trainable = False
  return tap, [(bn.moving_mean, bn.moving_variance) for bn in bns]
