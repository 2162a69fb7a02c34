"""Group-stack generator G = G^1..G^K (Eq. 3, S-Fig. 2)."""

from typing import List, Sequence, Tuple

import keras

from dfka_tf.errors import ConfigError


def aligned_depths(num_blocks: int, num_groups: int) -> List[int]:
  """Teacher depth d_j = B - j·B/K that generator group j imitates, j = 1..K.

  d_K = 0 is the image; with K = B group j aligns with teacher block B - j (Eq. 10); the
  default K = 2 with B = 4 gives [2, 0]: one feature map of block 2's shape, then the image.
  (docs/design.md, "Block alignment".)

  Raises:
    ConfigError: if K is not in 1..B or does not divide B.
  """
  if num_groups < 1 or num_groups > num_blocks or num_blocks % num_groups:
    divisors = [k for k in range(1, num_blocks + 1) if num_blocks % k == 0]
    raise ConfigError(
        f"--groups={num_groups} does not divide the {num_blocks} teacher blocks; use one of "
        f"{divisors}.")
  step = num_blocks // num_groups
  return [num_blocks - j * step for j in range(1, num_groups + 1)]


def _start_size(size: int) -> Tuple[int, int]:
  """Smallest size reached by halving `size` while it stays even and above 4, and the count."""
  n = 0
  while size % 2 == 0 and size > 4:
    size //= 2
    n += 1
  return size, n


def _upsample_count(source: int, target: int, group: int) -> int:
  ratio = target // source if source else 0
  if source <= 0 or target % source or ratio & (ratio - 1):
    raise ConfigError(
        f"generator group {group} cannot grow a {source}-pixel map into the teachers' "
        f"{target}-pixel map by doubling; use teachers whose block sizes differ by powers of 2.")
  return ratio.bit_length() - 1


IMAGE_HEADS = ("sigmoid", "dafl")


def input_normalization_of(model) -> str:
  """The mode of the first `InputNormalization` layer of `model` ("none" if it has none)."""
  from dfka_tf.models.resnet import InputNormalization  # pylint: disable=g-import-not-at-top
  if model is not None:
    for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
      if isinstance(layer, InputNormalization):
        return layer.mode
  return "none"


def build_group(input_shape: Sequence[int], output_shape: Sequence[int], *, is_image: bool,
                width: int = 128, min_width: int = 32, image_bn: bool = True,
                image_head: str = "sigmoid", normalization: str = "none",
                name: str = "group") -> keras.Model:
  """One group G^j (S-Fig. 2): [dense] -> (upsample ×2, conv 3×3, BN, LeakyReLU)* -> output.

  A DAFL-style stack. The first group reads the latent vector through a dense layer onto a
  small map; later groups read the previous group's map. Hidden widths halve at every
  upsampling, not below `min_width`. A feature output ends in BN + ReLU, non-negative like the
  post-ReLU teacher features it imitates. The image head is one of IMAGE_HEADS:

  - "sigmoid": [BN without affine, when image_bn] -> sigmoid, an image in [0, 1], the
    library's image range (each teacher normalises its own input);
  - "dafl": tanh -> BN without affine, as DAFL's generator ends, read as the teachers'
    *normalised* input (`normalization`, their `InputNormalization` mode) and mapped back to
    the library's range by its inverse, so the teachers' first layer sees standardised
    channels. The image is unbounded.

  Args:
    input_shape: (latent_dim,) or (h, w, c).
    output_shape: (H, W, C) of the teacher depth this group aligns with.
    is_image: whether the output is the generated image.
  """
  height, width_px, channels = (int(v) for v in output_shape)
  inputs = keras.Input(tuple(input_shape), name=f"{name}_in")
  x = inputs
  if len(input_shape) == 1:
    h0, n = _start_size(height)
    w0 = width_px // (height // h0)
    x = keras.layers.Dense(h0 * w0 * width, name=f"{name}_dense")(x)
    x = keras.layers.Reshape((h0, w0, width))(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn0")(x)
  else:
    n = _upsample_count(int(input_shape[0]), height, group=name)
  stages = max(n, 1)  # A feature map of the same size still passes through one conv stage.
  for i in range(stages):
    if i < n:
      x = keras.layers.UpSampling2D(2, name=f"{name}_up{i}")(x)
    filters = max(width // 2**i, min_width)
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv{i}")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i + 1}")(x)
    x = keras.layers.LeakyReLU(0.2, name=f"{name}_lrelu{i}")(x)
  x = keras.layers.Conv2D(channels, 3, padding="same", name=f"{name}_out")(x)
  if is_image and image_head == "dafl":
    from dfka_tf.models.resnet import InputNormalization  # pylint: disable=g-import-not-at-top
    x = keras.layers.Activation("tanh", name=f"{name}_tanh")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, center=False, scale=False,
                                        name=f"{name}_image_bn")(x)
    inverse = InputNormalization(normalization).inverse
    x = keras.layers.Lambda(inverse, name=f"{name}_image")(x)
  elif is_image:
    if image_bn:
      # DAFL's generator ends in a batch norm without affine parameters: every channel of
      # the batch keeps zero mean and unit variance before the squashing, so G cannot
      # collapse onto saturated, nearly constant images (which L_a alone rewards).
      x = keras.layers.BatchNormalization(momentum=0.9, center=False, scale=False,
                                          name=f"{name}_image_bn")(x)
    x = keras.layers.Activation("sigmoid", name=f"{name}_image")(x)
  else:
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_out_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
  return keras.Model(inputs, x, name=name)


@keras.saving.register_keras_serializable(package="dfka_tf")
class GroupStackGenerator(keras.Model):
  """G = G^K ∘ ... ∘ G^1 (Eq. 3): F^1 = G^1(z), F^j = G^j(F^{j-1}); F^K is the image.

  Group j emits F^j with the shape of the teachers' block-d_j output (`aligned_depths`), so
  the remaining teacher blocks d_j+1..B can judge it (D^j, Eq. 5).

  Args:
    feature_shapes: shapes (without batch) of the teachers' F^0..F^{B-1}; F^0 is the image.
    num_groups: K, a divisor of B = len(feature_shapes).
    latent_dim: size of z.
    width: hidden width of each group's first conv stage.
    image_head, normalization: the image's last layers (`build_group`).
  """

  def __init__(self, feature_shapes: Sequence[Sequence[int]], num_groups: int = 2,
               latent_dim: int = 128, width: int = 128, min_width: int = 32,
               image_bn: bool = True, image_head: str = "sigmoid",
               normalization: str = "none", **kwargs):
    super().__init__(**kwargs)
    self.feature_shapes = [tuple(int(v) for v in s) for s in feature_shapes]
    self.num_groups = int(num_groups)
    self.latent_dim = int(latent_dim)
    self.width = int(width)
    self.min_width = int(min_width)
    self.image_bn = bool(image_bn)
    if image_head not in IMAGE_HEADS:
      raise ConfigError(f"image_head={image_head!r} is unknown; use one of {IMAGE_HEADS}.")
    self.image_head, self.normalization = image_head, normalization
    self.depths = self.check_shapes(self.feature_shapes, self.num_groups)
    shapes = [self.feature_shapes[d] for d in self.depths]
    inputs = [(self.latent_dim,)] + shapes[:-1]
    self.groups = [
        build_group(inputs[j], shapes[j], is_image=(self.depths[j] == 0), width=self.width,
                    min_width=self.min_width, image_bn=self.image_bn,
                    image_head=self.image_head, normalization=self.normalization,
                    name=f"G{j + 1}")
        for j in range(self.num_groups)
    ]
    self.built = True  # Every group is a built functional model: nothing is created lazily.

  @staticmethod
  def check_shapes(feature_shapes: Sequence[Sequence[int]], num_groups: int) -> List[int]:
    """The aligned depths, after checking that each group can grow its input map into the
    next aligned shape by doubling (before any layer is built: the runs' pre-flight check).

    Raises:
      ConfigError: K does not divide B, or two aligned sizes differ by no power of 2.
    """
    depths = aligned_depths(len(feature_shapes), num_groups)
    shapes = [feature_shapes[d] for d in depths]
    for j in range(1, len(shapes)):
      _upsample_count(int(shapes[j - 1][0]), int(shapes[j][0]), group=f"G{j + 1}")
    return depths

  def call(self, z, training=False):
    """Returns [F^1, ..., F^K]; the last entry is the image (in [0, 1] for "sigmoid")."""
    outputs, x = [], z
    for group in self.groups:
      x = group(x, training=training)
      outputs.append(x)
    return outputs

  def get_config(self):
    return {**super().get_config(), "feature_shapes": self.feature_shapes,
            "num_groups": self.num_groups, "latent_dim": self.latent_dim,
            "width": self.width, "min_width": self.min_width, "image_bn": self.image_bn,
            "image_head": self.image_head, "normalization": self.normalization}
