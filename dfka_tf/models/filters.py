"""Teacher-level filter f_m^j (Eq. 10, S-Fig. 1)."""

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
