"""TFLite export: the float model matches Keras, the int8 one is all-integer and close."""

import keras
import numpy as np
import pytest

from dfka_tf import quantize

SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def model():
  """A tiny T_u stand-in with ~3k weights, so int8 storage shows in the file size."""
  keras.utils.set_random_seed(0)
  image = keras.Input(SHAPE)
  x = keras.layers.Conv2D(32, 3)(image)
  bn = keras.layers.BatchNormalization()
  x = keras.layers.ReLU()(bn(x))
  x = keras.layers.GlobalAveragePooling2D()(x)
  x = keras.layers.Dense(64, activation="relu")(x)
  probs = keras.layers.Dense(3, activation="sigmoid")(x)
  net = keras.Model(image, probs)
  # Fresh batch norm statistics (mean 0, variance 1) would make it the identity; give it
  # some, as a trained T_u has, so folding it into the conv is tested.
  rng = np.random.RandomState(1)
  bn.set_weights([rng.uniform(0.5, 1.5, 32), rng.normal(0, 0.1, 32),
                  rng.normal(0, 0.2, 32), rng.uniform(0.05, 0.5, 32)])
  return net


def _images(n, seed):
  # Pixels on the uint8 grid, so the uint8 and the float model see the same image.
  return np.random.RandomState(seed).randint(0, 256, (n,) + SHAPE).astype(np.uint8)


@pytest.fixture(scope="module")
def calibration():
  return _images(32, 0)


@pytest.fixture(scope="module")
def float_bytes(model):
  return quantize.tflite_float(model)


@pytest.fixture(scope="module")
def int8_bytes(model, calibration):
  return quantize.tflite_int8(model, calibration, batch_size=8)


def test_float_matches_keras(model, float_bytes):
  x = _images(5, 1)
  want = model(x.astype(np.float32) / 255.0, training=False).numpy()
  tfl = quantize.TFLiteModel(float_bytes)
  # uint8 and [0, 1] float give the same; batch 2 also exercises resizing and a last,
  # smaller batch.
  got_uint8 = tfl(x, batch_size=2)
  got_float = quantize.tflite_predict(float_bytes, x.astype(np.float32) / 255.0)
  assert got_uint8.shape == (5, 3) and got_uint8.dtype == np.float32
  np.testing.assert_allclose(got_uint8, want, atol=1e-5)
  np.testing.assert_allclose(got_float, want, atol=1e-5)


def test_int8_is_fully_integer(int8_bytes):
  interpreter = quantize.TFLiteModel(int8_bytes).interpreter
  (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
  assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
  # Pixel p is p / 255 exactly: scale 1/255, zero point 0.
  scale, zero_point = inp["quantization"]
  assert zero_point == 0
  np.testing.assert_allclose(scale, 1 / 255, rtol=1e-6)
  # TFLite's int8 sigmoid has a fixed output scale of 1/256 (zero point 0 as uint8).
  assert out["quantization"] == (1 / 256, 0)
  tensors = interpreter.get_tensor_details()
  ops = interpreter._get_ops_details()  # pylint: disable=protected-access
  names = {op["op_name"] for op in ops}
  assert {"CONV_2D", "FULLY_CONNECTED", "LOGISTIC"} <= names, names
  for op in ops:
    dtypes = {tensors[i]["dtype"].__name__ for i in list(op["inputs"]) + list(op["outputs"])
              if i >= 0}
    # int32 is the biases' and MEAN's axes'; no op reads or writes a float.
    assert dtypes <= {"uint8", "int8", "int32"}, (op["op_name"], dtypes)


def test_int8_close_to_float_and_smaller(model, float_bytes, int8_bytes):
  x = _images(16, 2)
  want = model(x.astype(np.float32) / 255.0, training=False).numpy()
  got = quantize.tflite_predict(int8_bytes, x)
  assert got.shape == (16, 3) and got.dtype == np.float32
  assert np.abs(got - want).max() < 0.05
  # ~3.3k weights: 4 bytes each as float, 1 as int8.
  assert len(int8_bytes) < 0.75 * len(float_bytes), (len(int8_bytes), len(float_bytes))


def test_int8_calibrates_on_float_images(model):
  # [0, 1] floats off the uint8 grid (as synthetic images are); num_batches uses a subset.
  x = np.random.RandomState(3).uniform(0.1, 0.9, (8,) + SHAPE).astype(np.float32)
  tfl = quantize.TFLiteModel(quantize.tflite_int8(model, x, num_batches=1, batch_size=4))
  scale, zero_point = tfl.interpreter.get_input_details()[0]["quantization"]
  assert zero_point == 0
  np.testing.assert_allclose(scale, 1 / 255, rtol=1e-6)
  assert np.abs(tfl(x) - model(x, training=False).numpy()).max() < 0.05


@pytest.mark.parametrize("images, match", [
    (np.zeros((0,) + SHAPE, np.uint8), "is empty"),
    (np.zeros((4, 8, 8, 3), np.uint8), r"shape \[N, 16, 16, 3\]"),
    (np.zeros(SHAPE, np.uint8), r"shape \[N, 16, 16, 3\]"),
    (np.full((2,) + SHAPE, 255.0, np.float32), r"not all finite and in \[0, 1\]"),
])
def test_int8_rejects_bad_calibration_images(model, images, match):
  with pytest.raises(ValueError, match=match):
    quantize.tflite_int8(model, images)


def test_predict_rejects_wrong_shape(float_bytes):
  with pytest.raises(ValueError, match=r"shape \[N, 16, 16, 3\]"):
    quantize.tflite_predict(float_bytes, np.zeros((2, 32, 32, 3), np.uint8))
