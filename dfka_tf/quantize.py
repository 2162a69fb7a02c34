"""TFLite export of T_u: float32, and data-free full-integer int8 (beyond the paper).

The int8 model is calibrated on the run's own synthetic images only, so quantizing T_u
needs no real data either, in keeping with the rest of DFKA.

- `tflite_float(model)`: float32 [N, H, W, 3] in [0, 1] -> float32 probabilities [N, C].
- `tflite_int8(model, calibration_images)`: uint8 pixels [N, H, W, 3] in [0, 255] -> uint8
  probabilities [N, C]; every op runs on integers. The input is quantized with scale 1/255
  and zero point 0, so a raw pixel p is exactly the p / 255 the float model sees.
- `TFLiteModel(model_bytes)` / `tflite_predict(model_bytes, images)`: runs either flatbuffer
  on uint8 or [0, 1] float images and returns float32 probabilities [N, C].

Both converters return the flatbuffer as bytes; callers write it themselves, e.g.
`tf.io.gfile.GFile(path, "wb").write(model_bytes)`.
"""

import tempfile
import warnings
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

try:
  # tf.lite.Interpreter is deprecated in favour of LiteRT's, which has the same API; use
  # LiteRT when it is installed so this keeps working once TensorFlow drops its copy.
  from ai_edge_litert.interpreter import Interpreter as _Interpreter
except ImportError:
  _Interpreter = None

_SIGNATURE = "serve"


def _image_shape(model: keras.Model):
  shape = model.input_shape
  if not isinstance(shape, tuple) or len(shape) != 4 or shape[3] != 3 or None in shape[1:3]:
    raise ValueError(f"TFLite export needs a model with one image input of shape "
                     f"(None, H, W, 3) and H, W fixed, got input_shape={shape}; build the "
                     "model with keras.Input((H, W, 3)).")
  return tuple(int(v) for v in shape[1:])


def _converter(model: keras.Model, directory: str) -> tf.lite.TFLiteConverter:
  """A converter for `model` as images [N, H, W, 3] float32 in [0, 1] -> probabilities.

  Keras 3 models are not tf.Modules: `from_concrete_functions` keeps their variables as
  resources the converted model cannot read (READ_VARIABLE fails at run time), and
  `from_keras_model` prints the whole export. A SavedModel written by ExportArchive, as
  export.py does, freezes cleanly.
  """
  shape = _image_shape(model)
  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint(
      _SIGNATURE, lambda images: tf.cast(model(images, training=False), tf.float32),
      input_signature=[tf.TensorSpec((None,) + shape, tf.float32, name="images")])
  archive.write_out(directory, verbose=False)
  return tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=[_SIGNATURE])


def tflite_float(model: keras.Model) -> bytes:
  """A float32 TFLite flatbuffer of `model`.

  Args:
    model: image [N, H, W, 3] float32 in [0, 1] -> probabilities [N, C] (T_u), with H and W
      fixed.

  Returns:
    the flatbuffer: input float32 [N, H, W, 3] in [0, 1] (any N; resize the interpreter's
    input), output float32 [N, C], as `model(images, training=False)`.
  """
  with tempfile.TemporaryDirectory(prefix="dfka_tflite_") as directory:
    return _converter(model, directory).convert()


def _unit_float(images, shape, what: str) -> np.ndarray:
  """`images` as float32 in [0, 1]: uint8 is divided by 255, floats are checked."""
  images = np.asarray(images)
  if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape):
    raise ValueError(f"{what} must be an array of shape [N, {shape[0]}, {shape[1]}, "
                     f"{shape[2]}] (uint8 in [0, 255] or float in [0, 1]), got shape "
                     f"{images.shape}; resize the images to the model's input size.")
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  if not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f"{what} must be uint8 in [0, 255] or float in [0, 1], got dtype "
                     f"{images.dtype}; cast to uint8 or divide by 255.")
  images = images.astype(np.float32)
  if images.size and not (np.all(np.isfinite(images)) and images.min() >= 0.0
                          and images.max() <= 1.0):
    raise ValueError(f"{what} are float but not all finite and in [0, 1] (range "
                     f"[{np.nanmin(images):g}, {np.nanmax(images):g}]); pass uint8 pixels "
                     "or float pixels divided by 255.")
  return images


def tflite_int8(model: keras.Model, calibration_images, *, num_batches: Optional[int] = None,
                batch_size: int = 32) -> bytes:
  """A full-integer TFLite flatbuffer of `model`, calibrated on `calibration_images` only.

  Every op is int8 (int32 biases); the input is uint8 pixels and the output uint8
  probabilities. uint8 at both ends because that is what a camera gives and what a
  probability in [0, 1] needs (int8 would waste half its range on an offset): the input's
  scale is 1/255 with zero point 0, so raw pixels go in unchanged. A sigmoid output has
  TFLite's fixed scale 1/256, zero point 0 (the largest probability it can say is 255/256);
  T_u, which gathers its branches' sigmoids, gets the calibrated range instead (~1/255).
  `TFLiteModel` converts both ways.

  Calibration sees exactly what the float model sees: float32 in [0, 1]. Its input range
  sets the input's quantization, so one pixel value of the first calibration image is set
  to 0 and one to 1: synthetic images rarely reach both ends, and without them the scale
  would not be 1/255 and uint8 pixels would need rescaling. Two values of one image leave
  the calibrated activation ranges alone.

  Args:
    model: image [N, H, W, 3] float32 in [0, 1] -> probabilities [N, C] (T_u).
    calibration_images: [N, H, W, 3] numpy array, uint8 in [0, 255] or float in [0, 1]:
      the run's synthetic images, never real data.
    num_batches: calibrate on the first `num_batches` batches only (default: all images).
    batch_size: images per calibration batch.

  Returns:
    the flatbuffer: input uint8 [N, H, W, 3], output uint8 [N, C] (any N).

  Raises:
    ValueError: `calibration_images` is empty, of the wrong shape or range, or
      `num_batches` / `batch_size` is not positive.
  """
  shape = _image_shape(model)
  images = _unit_float(calibration_images, shape, "calibration_images")
  if not len(images):
    raise ValueError(f"calibration_images is empty (shape {images.shape}); pass at least one "
                     f"synthetic image of shape [{shape[0]}, {shape[1]}, {shape[2]}].")
  if int(batch_size) < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
  if num_batches is not None and int(num_batches) < 1:
    raise ValueError(f"num_batches must be >= 1 or None (all images), got {num_batches!r}.")
  batch_size = int(batch_size)
  if num_batches is not None:
    images = images[:int(num_batches) * batch_size]
  images = images.copy()
  images[0, 0, 0, 0] = 0.0
  images[0, -1, -1, -1] = 1.0

  def representative_dataset():
    for start in range(0, len(images), batch_size):
      yield [images[start:start + batch_size]]

  with tempfile.TemporaryDirectory(prefix="dfka_tflite_") as directory:
    converter = _converter(model, directory)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    # INT8 only: an op without an integer kernel fails the conversion instead of silently
    # staying float.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    return converter.convert()


def _interpreter(model_bytes: bytes):
  # TFLite's built-in kernels only: the default XNNPACK delegate fails to prepare some of
  # T_u's graphs ("failed to create XNNPACK runtime", the quick start's regrouped T_u), and
  # the scores must not depend on which delegate a machine picks.
  if _Interpreter is not None:
    from ai_edge_litert.interpreter import OpResolverType  # pylint: disable=g-import-not-at-top
    return _Interpreter(model_content=model_bytes,
                        experimental_op_resolver_type=(
                            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
  with warnings.catch_warnings():
    # Its deprecation notice names LiteRT, which the project does not depend on.
    warnings.filterwarnings("ignore", message=r"[\s\S]*tf\.lite\.Interpreter is deprecated")
    return tf.lite.Interpreter(
        model_content=model_bytes,
        experimental_op_resolver_type=(
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))


class TFLiteModel:
  """A TFLite flatbuffer from `tflite_float` or `tflite_int8`, callable on numpy images.

  Quantized inputs and outputs are handled here: images are quantized with the input's
  scale and zero point, outputs dequantized with the output's.

  Args:
    model_bytes: the flatbuffer.
  """

  def __init__(self, model_bytes: bytes):
    self.model_bytes = model_bytes
    self.interpreter = _interpreter(model_bytes)
    self.interpreter.allocate_tensors()
    self._input = self.interpreter.get_input_details()[0]
    self._output = self.interpreter.get_output_details()[0]
    self.image_shape = tuple(int(v) for v in self._input["shape"][1:])
    self.num_outputs = int(self._output["shape"][-1])
    self._batch = int(self._input["shape"][0])

  def _resize(self, batch: int):
    # Reallocating costs a little, so only when the batch size changes (the last batch).
    if batch != self._batch:
      self.interpreter.resize_tensor_input(self._input["index"], (batch,) + self.image_shape)
      self.interpreter.allocate_tensors()
      self._batch = batch

  def _quantize(self, images: np.ndarray) -> np.ndarray:
    dtype = self._input["dtype"]
    if dtype == np.float32:
      return images
    scale, zero_point = self._input["quantization"]
    info = np.iinfo(dtype)
    # At scale 1/255, zero point 0, uint8 pixels come back unchanged: p / 255 * 255 rounds to p.
    q = np.round(images / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)

  def _dequantize(self, outputs: np.ndarray) -> np.ndarray:
    if self._output["dtype"] == np.float32:
      return outputs.astype(np.float32)
    scale, zero_point = self._output["quantization"]
    return ((outputs.astype(np.float32) - zero_point) * scale).astype(np.float32)

  def __call__(self, images, batch_size: int = 64) -> np.ndarray:
    """Probabilities [N, C] float32 for `images` [N, H, W, 3], uint8 or float in [0, 1]."""
    if int(batch_size) < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
    images = _unit_float(images, self.image_shape, "images")
    out = []
    for start in range(0, len(images), int(batch_size)):
      batch = images[start:start + int(batch_size)]
      self._resize(len(batch))
      self.interpreter.set_tensor(self._input["index"], self._quantize(batch))
      self.interpreter.invoke()
      out.append(self._dequantize(self.interpreter.get_tensor(self._output["index"])))
    if not out:
      return np.zeros((0, self.num_outputs), np.float32)
    return np.concatenate(out)


def tflite_predict(model_bytes: bytes, images, batch_size: int = 64) -> np.ndarray:
  """`TFLiteModel(model_bytes)(images, batch_size)`: probabilities [N, C] float32."""
  return TFLiteModel(model_bytes)(images, batch_size=batch_size)


FLOAT_FILE, INT8_FILE = "target_net.tflite", "target_net_int8.tflite"


def write_tflite(model: keras.Model, directory: str, calibration_images) -> dict:
  """Writes `directory`/target_net.tflite (float) and target_net_int8.tflite (full integer,
  calibrated on `calibration_images`, the run's synthetic images); returns {file name: size
  in bytes}. Each file is written whole or not at all (a temporary name, then renamed)."""
  tf.io.gfile.makedirs(directory)
  sizes = {}
  for name, content in ((FLOAT_FILE, tflite_float(model)),
                        (INT8_FILE, tflite_int8(model, calibration_images))):
    path = f"{directory.rstrip('/')}/{name}"
    with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
      f.write(content)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    sizes[name] = len(content)
  return sizes
