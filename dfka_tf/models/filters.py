"""The paper's filters: teacher-level f_m^j (Eq. 10, S-Fig. 1), task-level g_m (Eq. 14, 19)."""

from typing import List

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dfka_tf")
class TeacherFilter(keras.layers.Layer):
  """Teacher-level filter f_m^j of Eq. 10: squeeze-and-excitation channel attention.

  S-Fig. 1: global average pooling -> dense c/r (ReLU) -> dense c (sigmoid) -> channel-wise
  scale of the input, r = 4. One filter per teacher and per aligned depth turns a shared
  feature map F^j into the stream F^{j,m} that teacher m's remaining blocks read.

  Args:
    reduction: r; the hidden width is max(1, c // r).
  """

  def __init__(self, reduction: int = 4, **kwargs):
    super().__init__(**kwargs)
    if int(reduction) < 1:
      raise ValueError(f"TeacherFilter reduction must be >= 1, got {reduction!r}.")
    self.reduction = int(reduction)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    hidden = max(1, channels // self.reduction)
    self.squeeze = keras.layers.Dense(hidden, activation="relu", name="squeeze")
    self.excite = keras.layers.Dense(channels, activation="sigmoid", name="excite")
    self.squeeze.build((None, channels))
    self.excite.build((None, hidden))

  def call(self, x):
    s = ops.mean(x, axis=(1, 2))
    s = self.excite(self.squeeze(s))
    return x * s[:, None, None, :]

  def get_config(self):
    return {**super().get_config(), "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="dfka_tf")
class ConvFilter(keras.layers.Layer):
  """f_m^b as a 1x1 convolution with bias (`--step2_filter=conv`). Beyond the paper.

  The paper's f_m^b (`TeacherFilter`) only rescales channels, so one TargetNet feature map
  must already be in every teacher's feature space: true of teachers fine-tuned from one
  backbone, not of teachers trained apart from fresh weights, whose channels share no order.
  A 1x1 convolution maps the shared map linearly into teacher m's space, as the adapters of
  common-feature amalgamation do (Luo et al., IJCAI 2019). It starts as the identity.
  """

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.kernel = self.add_weight(name="kernel", shape=(channels, channels),
                                  initializer=keras.initializers.Identity())
    self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")

  def call(self, x):
    return ops.matmul(x, ops.cast(self.kernel, x.dtype)) + ops.cast(self.bias, x.dtype)


@keras.saving.register_keras_serializable(package="dfka_tf")
class TaskFilter(keras.layers.Layer):
  """Task-level filter g_m of Eq. 14 and 19: keeps the given columns of a prediction, in the
  given order (teacher m's columns that are customized labels; in T_u also the permutation
  of the branches' concatenation to Y_cst's order). Outputs float32.

  Args:
    columns: the indices of the kept columns, in output order.
  """

  def __init__(self, columns, **kwargs):
    super().__init__(**kwargs)
    self.columns = [int(c) for c in columns]

  def call(self, x):
    return keras.ops.take(keras.ops.cast(x, "float32"), self.columns, axis=1)

  def get_config(self):
    return {**super().get_config(), "columns": self.columns}


def block_filters(block: int, num_blocks: int, num_teachers: int, reduction: int = 4,
                  kind: str = "se") -> List[keras.layers.Layer]:
  """f_m^b (Eq. 10, S-Fig. 1) of block b (1-based) for every teacher; none for b = B, where
  the TargetNet's own head predicts Y_cst. kind "conv" makes `ConvFilter`s instead (beyond
  the paper)."""
  if block >= num_blocks:
    return []
  if kind == "conv":
    return [ConvFilter(name=f"f{m + 1}_t{block}") for m in range(num_teachers)]
  return [TeacherFilter(reduction, name=f"f{m + 1}_t{block}") for m in range(num_teachers)]


def built_block_filters(target, num_teachers: int, kind: str = "se"
                        ) -> List[List[keras.layers.Layer]]:
  """[f^1, ..., f^B]: `block_filters` of every block of the TargetNet `target` (a BlockNet),
  built on its feature shapes, as Step II's trainers hold them (the last list empty)."""
  num_blocks = len(target.blocks)
  out = [block_filters(b, num_blocks, num_teachers, kind=kind)
         for b in range(1, num_blocks + 1)]
  for b, filters in enumerate(out, start=1):
    for f in filters:
      f.build((None,) + tuple(target.feature_shapes[b]))
  return out
