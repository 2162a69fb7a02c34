"""ResNet teachers and backbones, built from a spec table (TF Model Garden style).

Every model takes float32 RGB images in [0, 1] and starts with `InputNormalization`, so the
generator and the TargetNet never need to know how a teacher was pre-processed. The graph has
named endpoints:

  block1_out .. block4_out   the four stage outputs (post-ReLU), F^1 .. F^4
  pre_logits                 global average pool (the features of L_a, S-Eq. 2)
  logits                     dense layer, one unit per label
  probs                      sigmoid (the model output; multi-label)

`resnet50` / `resnet101` reproduce `keras.applications.ResNet50/101` (v1) layer for layer and
under the same layer names (conv biases, BN epsilon 1.001e-5, 7x7 stem + max-pool, stride on
the first 1x1 of each stage), so ImageNet weights are copied by name. `small` / `tiny` are
CIFAR-style networks for 32x32 images (3x3 stem, stride 1, no max-pool).
"""

import logging
from typing import NamedTuple

import keras
from keras import layers
from keras import ops

from dfka_tf.errors import ConfigError

logger = logging.getLogger(__name__)

BN_EPSILON = 1.001e-5  # keras.applications' value; kept everywhere for one convention.
ENDPOINTS = ("block1_out", "block2_out", "block3_out", "block4_out")
IMAGENET_WEIGHTS_WARNING = (
    "ImageNet weights unavailable (offline?): initialising randomly; place the weights file "
    "in ~/.keras/models to use them")


class ResNetSpec(NamedTuple):
  """One row of `RESNET_SPECS`.

  Attributes:
    block: "bottleneck" (1x1-3x3-1x1, output 4x width) or "basic" (3x3-3x3).
    depths: residual blocks per stage (4 stages).
    widths: filters per stage (the bottleneck width for "bottleneck").
    stem: "imagenet" (7x7 stride-2 conv + 3x3 stride-2 max-pool) or "cifar" (3x3 stride-1
      conv, no pooling; for 32x32 images).
    stem_width: filters of the stem convolution.
    use_bias: conv biases; True only to match keras.applications' v1 ResNets.
    keras_app: name of the `keras.applications` constructor with the same graph, or None.
    bn_momentum: batch-norm moving-average momentum. Keras' 0.99 for the paper's nets; 0.9
      for the small CPU nets, whose stages train for a few hundred steps only (Step II
      trains each TargetNet block alone), too few for 0.99's averages to settle.
  """
  block: str
  depths: tuple
  widths: tuple
  stem: str = "imagenet"
  stem_width: int = 64
  use_bias: bool = False
  keras_app: str | None = None
  bn_momentum: float = 0.99


RESNET_SPECS = {
    "resnet101": ResNetSpec("bottleneck", (3, 4, 23, 3), (64, 128, 256, 512),
                            use_bias=True, keras_app="ResNet101"),
    "resnet50": ResNetSpec("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512),
                           use_bias=True, keras_app="ResNet50"),
    "resnet18": ResNetSpec("basic", (2, 2, 2, 2), (64, 128, 256, 512)),
    "small": ResNetSpec("basic", (1, 1, 1, 1), (16, 32, 64, 128), stem="cifar",
                        stem_width=16, bn_momentum=0.9),
    "tiny": ResNetSpec("basic", (1, 1, 1, 1), (4, 8, 8, 16), stem="cifar", stem_width=4,
                       bn_momentum=0.9),
}

NORMALIZATIONS = ("imagenet", "caffe", "tf", "none")
# Mean/std of ImageNet in RGB on the [0, 1] scale ("imagenet" / torch mode).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe mode: BGR channel means on the [0, 255] scale (keras.applications' resnet weights).
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="dfka_tf")
class InputNormalization(keras.layers.Layer):
  """Maps [0, 1] RGB images to the input range a backbone was trained with.

  Modes (the data pipelines give [0, 1] images; each model normalises its own input):
    "imagenet": (x - mean) / std with ImageNet RGB statistics.
    "caffe": RGB -> BGR, scale to [0, 255], subtract the ImageNet BGR means (what
      keras.applications.resnet.preprocess_input does to [0, 255] images).
    "tf": 2x - 1, i.e. [-1, 1].
    "none": identity.

  Args:
    mode: one of NORMALIZATIONS.
    **kwargs: forwarded to keras.layers.Layer.
  """

  def __init__(self, mode="imagenet", **kwargs):
    super().__init__(**kwargs)
    if mode not in NORMALIZATIONS:
      raise ConfigError(
          f"InputNormalization mode={mode!r} is unknown; use one of {NORMALIZATIONS}")
    self.mode = mode

  def call(self, inputs):
    x = ops.cast(inputs, self.compute_dtype)
    if self.mode == "imagenet":
      mean = ops.convert_to_tensor(_IMAGENET_MEAN, dtype=self.compute_dtype)
      std = ops.convert_to_tensor(_IMAGENET_STD, dtype=self.compute_dtype)
      return (x - mean) / std
    if self.mode == "caffe":
      mean = ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=self.compute_dtype)
      return ops.flip(x, axis=-1) * 255.0 - mean
    if self.mode == "tf":
      return x * 2.0 - 1.0
    return x

  def inverse(self, normalised):
    """The [0, 1] image whose normalisation is `normalised` (unbounded where it is)."""
    x = ops.cast(normalised, self.compute_dtype)
    if self.mode == "imagenet":
      mean = ops.convert_to_tensor(_IMAGENET_MEAN, dtype=self.compute_dtype)
      std = ops.convert_to_tensor(_IMAGENET_STD, dtype=self.compute_dtype)
      return x * std + mean
    if self.mode == "caffe":
      mean = ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=self.compute_dtype)
      return ops.flip((x + mean) / 255.0, axis=-1)
    if self.mode == "tf":
      return (x + 1.0) / 2.0
    return x

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update({"mode": self.mode})
    return config


def _conv(x, filters, kernel_size, strides, name, spec, padding="valid"):
  # He init for our own (from-scratch) nets; keras.applications' glorot default otherwise.
  init = "glorot_uniform" if spec.keras_app else "he_normal"
  return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                       use_bias=spec.use_bias, kernel_initializer=init,
                       name=f"{name}_conv")(x)


def _bn(x, name, spec):
  return layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, momentum=spec.bn_momentum,
                                   name=f"{name}_bn")(x)


def _bottleneck_block(x, filters, stride, conv_shortcut, name, spec):
  """keras.applications.resnet.residual_block_v1, with identical layer names."""
  if conv_shortcut:
    shortcut = _conv(x, 4 * filters, 1, stride, f"{name}_0", spec)
    shortcut = _bn(shortcut, f"{name}_0", spec)
  else:
    shortcut = x
  x = _conv(x, filters, 1, stride, f"{name}_1", spec)
  x = _bn(x, f"{name}_1", spec)
  x = layers.Activation("relu", name=f"{name}_1_relu")(x)
  x = _conv(x, filters, 3, 1, f"{name}_2", spec, padding="same")
  x = _bn(x, f"{name}_2", spec)
  x = layers.Activation("relu", name=f"{name}_2_relu")(x)
  x = _conv(x, 4 * filters, 1, 1, f"{name}_3", spec)
  x = _bn(x, f"{name}_3", spec)
  x = layers.Add(name=f"{name}_add")([shortcut, x])
  return layers.Activation("relu", name=f"{name}_out")(x)


def _basic_block(x, filters, stride, conv_shortcut, name, spec):
  """Two 3x3 convolutions (ResNet-18/34 style); projection shortcut when the shape changes."""
  if conv_shortcut:
    shortcut = _conv(x, filters, 1, stride, f"{name}_0", spec)
    shortcut = _bn(shortcut, f"{name}_0", spec)
  else:
    shortcut = x
  x = _conv(x, filters, 3, stride, f"{name}_1", spec, padding="same")
  x = _bn(x, f"{name}_1", spec)
  x = layers.Activation("relu", name=f"{name}_1_relu")(x)
  x = _conv(x, filters, 3, 1, f"{name}_2", spec, padding="same")
  x = _bn(x, f"{name}_2", spec)
  x = layers.Add(name=f"{name}_add")([shortcut, x])
  return layers.Activation("relu", name=f"{name}_out")(x)


def _backbone(x, spec):
  """Stem and four stages; returns the output of each stage (named block{s}_out)."""
  if spec.stem == "imagenet":
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(x)
    x = _conv(x, spec.stem_width, 7, 2, "conv1", spec)
    x = _bn(x, "conv1", spec)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
  else:
    x = _conv(x, spec.stem_width, 3, 1, "conv1", spec, padding="same")
    x = _bn(x, "conv1", spec)
    x = layers.Activation("relu", name="conv1_relu")(x)

  block_fn = _bottleneck_block if spec.block == "bottleneck" else _basic_block
  expansion = 4 if spec.block == "bottleneck" else 1
  channels = spec.stem_width
  endpoints = []
  for s, (depth, width) in enumerate(zip(spec.depths, spec.widths)):
    stride = 1 if s == 0 else 2
    for j in range(depth):
      first = j == 0
      # keras.applications always projects in the first block of a stage (even stage 1,
      # where 64 -> 256 channels); a basic block only when the shape changes.
      projection = first and (spec.block == "bottleneck" or stride != 1
                              or channels != width * expansion)
      x = block_fn(x, width, stride if first else 1, projection,
                   f"conv{s + 2}_block{j + 1}", spec)
      channels = width * expansion
    # An identity so the endpoint has one stable name whatever the block type; the Keras
    # name (e.g. conv2_block3_out) stays on the ReLU before it.
    x = layers.Identity(name=ENDPOINTS[s])(x)
    endpoints.append(x)
  return endpoints


def _check_args(arch, num_classes, input_shape, normalization, weights):
  if arch not in RESNET_SPECS:
    raise ConfigError(f"unknown ResNet arch={arch!r}; use one of {sorted(RESNET_SPECS)}")
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}")
  if len(input_shape) != 3 or input_shape[-1] != 3:
    raise ConfigError(f"input_shape must be (height, width, 3), got {input_shape!r}")
  if normalization not in NORMALIZATIONS:
    raise ConfigError(
        f"unknown normalization={normalization!r}; use one of {NORMALIZATIONS}")
  if weights not in (None, "imagenet"):
    raise ConfigError(f"weights must be None or 'imagenet', got {weights!r}")
  if weights == "imagenet" and RESNET_SPECS[arch].keras_app is None:
    raise ConfigError(
        f"weights='imagenet' exists only for "
        f"{sorted(a for a, s in RESNET_SPECS.items() if s.keras_app)}, not arch={arch!r}; "
        "use weights=None")


def build_resnet(arch, num_classes, input_shape=(224, 224, 3), normalization=None,
                 weights=None, name=None):
  """Builds a multi-label ResNet on [0, 1] images.

  Args:
    arch: a key of RESNET_SPECS ("resnet101", "resnet50", "resnet18", "small", "tiny").
    num_classes: number of labels (sigmoid outputs).
    input_shape: (height, width, 3); small/tiny are meant for 32x32.
    normalization: InputNormalization mode. None picks "caffe" for resnet50/101 (what their
      keras.applications ImageNet weights expect) and "imagenet" otherwise.
    weights: None (random init) or "imagenet" (resnet50/101 only; copied from
      keras.applications; if the file can neither be found in ~/.keras/models nor
      downloaded, one warning is logged and the model keeps its random init).
    name: model name; defaults to arch.

  Returns:
    A functional keras.Model whose output is `probs` [N, num_classes] in [0, 1], with the
    named layers block1_out..block4_out, pre_logits, logits and probs.

  Raises:
    ConfigError: an argument is invalid (the message echoes it).
  """
  input_shape = tuple(input_shape)
  spec = RESNET_SPECS.get(arch)
  if normalization is None and spec is not None:
    normalization = "caffe" if spec.keras_app else "imagenet"
  _check_args(arch, num_classes, input_shape, normalization, weights)
  if weights == "imagenet" and normalization != "caffe":
    logger.warning("keras.applications' ImageNet ResNet weights expect caffe input "
                   "normalization, but normalization=%r", normalization)

  images = keras.Input(shape=input_shape, name="images")
  x = InputNormalization(normalization, name="input_normalization")(images)
  endpoints = _backbone(x, spec)
  x = layers.GlobalAveragePooling2D(name="pre_logits")(endpoints[-1])
  x = layers.Dense(num_classes, name="logits")(x)
  # float32 probabilities even under a mixed-precision policy (losses take float32).
  probs = layers.Activation("sigmoid", name="probs", dtype="float32")(x)
  model = keras.Model(images, probs, name=name or arch)

  if weights == "imagenet":
    load_imagenet_weights(model, arch)
  return model


def load_imagenet_weights(model, arch):
  """Copies keras.applications' ImageNet weights into `model` by layer name.

  Args:
    model: a model from build_resnet(arch, ...).
    arch: "resnet50" or "resnet101".

  Returns:
    True if the weights were copied, False if they were unavailable (one warning logged).
  """
  app_fn = getattr(keras.applications, RESNET_SPECS[arch].keras_app)
  try:
    # Spatial size does not affect the weights, and (None, None) passes Keras' size checks.
    reference = app_fn(include_top=False, weights="imagenet", input_shape=(None, None, 3))
  except Exception as e:  # pylint: disable=broad-except
    # get_file raises a bare Exception offline; whatever the cause, random init is the
    # documented fallback and the reason goes into the one warning.
    reason = str(e).splitlines()[0] if str(e) else ""
    logger.warning("%s (%s: %s)", IMAGENET_WEIGHTS_WARNING, type(e).__name__, reason[:200])
    return False
  copy_weights_by_name(reference, model)
  return True


def copy_weights_by_name(source, target, skip=()):
  """Copies every weighted layer of `source` into the layer of `target` with its name.

  Layers named in `skip` are left as they are (e.g. "logits", when the TargetNet starts from a
  network pretrained on another label set).

  Raises:
    ValueError: a weighted source layer has no counterpart or shapes differ (for ImageNet
      weights a bug, since build_resnet mirrors keras.applications; for a pretrained
      TargetNet, a different architecture).
  """
  copied = 0
  for layer in source.layers:
    if not layer.weights or layer.name in skip:
      continue
    try:
      target_layer = target.get_layer(layer.name)
    except ValueError as e:
      raise ValueError(f"{target.name} has no layer {layer.name!r} to receive "
                       f"{source.name}'s weights") from e
    target_layer.set_weights(layer.get_weights())
    copied += 1
  logger.info("copied %d layers of weights from %s into %s", copied, source.name,
              target.name)
  return copied

