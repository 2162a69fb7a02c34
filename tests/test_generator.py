"""GroupStackGenerator (Eq. 3): per-group shapes against a teacher, and Keras serialization."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfka_tf.errors import ConfigError
from dfka_tf.models import blocknet
from dfka_tf.models.generator import GroupStackGenerator
from dfka_tf.models.generator import aligned_depths
from dfka_tf.models.resnet import build_resnet

SHAPE = (16, 16, 3)
LATENT = 8


@pytest.fixture(scope="module")
def teacher():
  return blocknet.split_model(build_resnet("tiny", 3, SHAPE, name="t"),
                              label_names=["a", "b", "c"]).freeze()


def _generator(feature_shapes, num_groups=2, **kwargs):
  return GroupStackGenerator(feature_shapes, num_groups=num_groups, latent_dim=LATENT,
                             width=8, min_width=4, **kwargs)


def _z(n=2, seed=0):
  return tf.constant(np.random.default_rng(seed).normal(size=(n, LATENT)), tf.float32)


def test_aligned_depths():
  # d_j = B - j·B/K with B = 4.
  assert aligned_depths(4, 1) == [0]
  assert aligned_depths(4, 2) == [2, 0]
  assert aligned_depths(4, 4) == [3, 2, 1, 0]
  for bad in (0, 3, 5):
    with pytest.raises(ConfigError, match=rf"--groups={bad} does not divide .* \[1, 2, 4\]"):
      aligned_depths(4, bad)


@pytest.mark.parametrize("num_groups,expected", [
    (1, [(16, 16, 3)]),
    (2, [(8, 8, 8), (16, 16, 3)]),
    (4, [(4, 4, 8), (8, 8, 8), (16, 16, 4), (16, 16, 3)]),
])
def test_each_group_has_the_teacher_shape_at_its_depth(teacher, num_groups, expected):
  assert teacher.feature_shapes == [(16, 16, 3), (16, 16, 4), (8, 8, 8), (4, 4, 8)]
  g = _generator(teacher.feature_shapes, num_groups)
  assert g.depths == aligned_depths(4, num_groups)
  outputs = g(_z(), training=False)
  assert [tuple(o.shape) for o in outputs] == [(2,) + s for s in expected]
  assert expected == [teacher.feature_shapes[d] for d in g.depths]  # Image (F^0) last.
  # G^j reads F^{j-1}: each group's input is the previous group's output (z for G^1).
  assert [tuple(grp.input_shape[1:]) for grp in g.groups] == [(LATENT,)] + expected[:-1]
  # The image is a sigmoid in [0, 1]; features end in a ReLU, like the teacher's.
  image = outputs[-1].numpy()
  assert image.min() >= 0.0 and image.max() <= 1.0
  for f in outputs[:-1]:
    assert float(tf.reduce_min(f)) >= 0.0
  # The remaining teacher blocks d_j+1..B read F^j as they read their own F^{d_j} (D^j).
  for f, d in zip(outputs, g.depths):
    assert tuple(teacher.tail(f, d)["probs"].shape) == (2, 3)


def test_config_round_trip_rebuilds_the_same_generator(teacher):
  g = _generator(teacher.feature_shapes, 2, image_bn=False, name="g_rt")
  config = g.get_config()
  assert {k: config[k] for k in ("feature_shapes", "num_groups", "latent_dim", "width",
                                 "min_width", "image_bn", "name")} == {
      "feature_shapes": teacher.feature_shapes, "num_groups": 2, "latent_dim": LATENT,
      "width": 8, "min_width": 4, "image_bn": False, "name": "g_rt"}
  # Through JSON, as a .keras file stores it; the class is found by its registered name.
  serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(g)))
  assert serialized["registered_name"] == "dfka_tf>GroupStackGenerator"
  for rebuilt in (keras.saving.deserialize_keras_object(serialized),
                  GroupStackGenerator.from_config(config)):
    assert type(rebuilt) is GroupStackGenerator
    assert rebuilt.get_config() == config
    assert rebuilt.depths == g.depths
    assert [w.path for w in rebuilt.weights] == [w.path for w in g.weights]
    assert [tuple(w.shape) for w in rebuilt.weights] == [tuple(w.shape) for w in g.weights]
    for dst, src in zip(rebuilt.weights, g.weights):  # Same order: the paths match.
      dst.assign(src.value)
    z = _z(3, seed=1)
    for got, want in zip(rebuilt(z, training=False), g(z, training=False)):
      np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)


def test_saved_generator_reloads_with_its_weights(tmp_path, teacher):
  g = _generator(teacher.feature_shapes, 4, name="g_save")
  path = str(tmp_path / "g.keras")
  g.save(path)
  loaded = keras.saving.load_model(path)
  assert type(loaded) is GroupStackGenerator and loaded.get_config() == g.get_config()
  z = _z(2, seed=2)
  for got, want in zip(loaded(z, training=False), g(z, training=False)):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)
