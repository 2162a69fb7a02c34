"""TeacherFilter f_m^j (Eq. 10, S-Fig. 1) against values worked out by hand."""

import json

import keras
import numpy as np
import pytest

from dfka_tf.models.filters import ConvFilter, TeacherFilter


def _set(layer, w1, b1, w2, b2):
  layer.squeeze.set_weights([np.asarray(w1, np.float32), np.asarray(b1, np.float32)])
  layer.excite.set_weights([np.asarray(w2, np.float32), np.asarray(b2, np.float32)])


def _by_hand(x, w1, b1, w2, b2):
  """GAP -> relu(s W1 + b1) -> sigmoid(h W2 + b2) -> x * a, in float64 numpy."""
  s = x.astype(np.float64).mean(axis=(1, 2))
  h = np.maximum(s @ np.asarray(w1, np.float64) + b1, 0.0)
  a = 1.0 / (1.0 + np.exp(-(h @ np.asarray(w2, np.float64) + b2)))
  return x * a[:, None, None, :]


def test_filter_on_a_hand_worked_example():
  # Two 1x2 images with 2 channels; r = 2 -> one hidden unit.
  x = np.array([[[[1.0, 2.0], [3.0, -2.0]]],
                [[[-2.0, 0.0], [-2.0, 0.0]]]], np.float32)
  f = TeacherFilter(reduction=2)
  f.build(x.shape)
  assert f.squeeze.kernel.shape == (2, 1) and f.excite.kernel.shape == (1, 2)
  _set(f, [[0.5], [1.0]], [-0.5], [[2.0, -2.0]], [0.0, 1.0])
  # Image 0: channel means (1 + 3) / 2 = 2 and (2 - 2) / 2 = 0.
  #   h = relu(2 * .5 + 0 * 1 - .5) = .5; logits = .5 * [2, -2] + [0, 1] = [1, 0];
  #   a = [sigmoid(1), sigmoid(0)] = [.73105858, .5];
  #   out = [[1 * .73105858, 2 * .5], [3 * .73105858, -2 * .5]].
  # Image 1: means -2 and 0: h = relu(-1 - .5) = 0 (the ReLU cuts); logits = b2 = [0, 1];
  #   a = [.5, .73105858]; out = [[-2 * .5, 0], [-2 * .5, 0]].
  s1 = 0.7310585786
  want = np.array([[[[s1, 1.0], [3 * s1, -1.0]]],
                   [[[-1.0, 0.0], [-1.0, 0.0]]]])
  np.testing.assert_allclose(f(x).numpy(), want, rtol=1e-6, atol=1e-7)


def test_filter_matches_numpy_on_random_weights():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 4, 5, 8)).astype(np.float32)
  f = TeacherFilter()  # r = 4: 8 channels -> 2 hidden units.
  f.build(x.shape)
  w1, b1 = rng.normal(size=(8, 2)), rng.normal(size=2)
  w2, b2 = rng.normal(size=(2, 8)), rng.normal(size=8)
  _set(f, w1, b1, w2, b2)
  np.testing.assert_allclose(f(x).numpy(), _by_hand(x, w1, b1, w2, b2), rtol=1e-5, atol=1e-6)
  # Few channels: the hidden width stays at least 1 (max(1, 3 // 4)).
  g = TeacherFilter(reduction=4)
  g.build((None, 2, 2, 3))
  assert g.squeeze.kernel.shape == (3, 1)


def test_filter_config_round_trip_and_bad_reduction():
  f = TeacherFilter(reduction=2, name="f1_g1")
  serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(f)))
  assert serialized["registered_name"] == "dfka_tf>TeacherFilter"
  again = keras.saving.deserialize_keras_object(serialized)
  assert type(again) is TeacherFilter and again.get_config() == f.get_config()
  assert again.reduction == 2 and again.name == "f1_g1"
  with pytest.raises(ValueError, match="reduction must be >= 1, got 0"):
    TeacherFilter(reduction=0)


def test_conv_filter_starts_as_the_identity_and_maps_channels_by_hand():
  x = np.array([[[[1.0, 2.0], [3.0, -2.0]]]], np.float32)  # One 1x2 image, 2 channels.
  f = ConvFilter(name="f1_t2")
  np.testing.assert_array_equal(f(x).numpy(), x)
  f.kernel.assign([[0.0, 1.0], [2.0, 0.5]])
  f.bias.assign([1.0, -1.0])
  # Pixel [1, 2]: [1*0 + 2*2 + 1, 1*1 + 2*.5 - 1] = [5, 1]; pixel [3, -2]: [-4 + 1,
  # 3 - 1 - 1] = [-3, 1].
  np.testing.assert_allclose(f(x).numpy(), [[[[5.0, 1.0], [-3.0, 1.0]]]])
  serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(f)))
  assert serialized["registered_name"] == "dfka_tf>ConvFilter"
  assert type(keras.saving.deserialize_keras_object(serialized)) is ConvFilter
