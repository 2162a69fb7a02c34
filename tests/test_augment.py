"""random_flip_shift: every output is one flip-and-shift of its input, drawn reproducibly."""

import numpy as np
import pytest
import tensorflow as tf

from dfka_tf.train.augment import random_flip_shift


def _candidates(image, s):
  """Every image random_flip_shift may return for `image` (numpy, by hand)."""
  out = []
  for flip in (False, True):
    x = image[:, ::-1] if flip else image
    padded = np.pad(x, [[s, s], [s, s], [0, 0]], mode="reflect")
    for dy in range(2 * s + 1):
      for dx in range(2 * s + 1):
        out.append(((flip, dy - s, dx - s),
                    padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]))
  return out


def test_each_output_is_a_flip_and_shift_of_its_input():
  images = np.random.default_rng(0).random((32, 5, 6, 2)).astype(np.float32)
  out = random_flip_shift(tf.constant(images), tf.random.Generator.from_seed(1), 2).numpy()
  seen = set()
  for image, result in zip(images, out):
    matches = [t for t, c in _candidates(image, 2) if np.array_equal(c, result)]
    assert matches, "output is not a flip + shift of its input"
    seen.add(matches[0])
  assert len(seen) > 8  # Transforms differ between images of one batch.
  assert any(t[0] for t in seen) and any(not t[0] for t in seen)


def test_hand_computed_shift_by_reflection():
  # A 1-row image [a b c d] shifted right by 1 with reflection reads [b a b c].
  row = np.array([1., 2., 3., 4.], np.float32)
  cands = dict(_candidates(row.reshape(1, 4, 1), 1))
  np.testing.assert_array_equal(cands[(False, 0, -1)].ravel(), [2., 1., 2., 3.])
  np.testing.assert_array_equal(cands[(True, 0, 0)].ravel(), [4., 3., 2., 1.])


def test_zero_shift_is_identity_and_draws_nothing():
  rng = tf.random.Generator.from_seed(3)
  state = rng.state.numpy().copy()
  x = tf.random.uniform([2, 4, 4, 3])
  assert random_flip_shift(x, rng, 0) is x
  np.testing.assert_array_equal(rng.state.numpy(), state)


def test_seeded_and_differentiable():
  x = tf.random.uniform([4, 8, 8, 3], seed=0)
  a = random_flip_shift(x, tf.random.Generator.from_seed(5), 3)
  b = random_flip_shift(x, tf.random.Generator.from_seed(5), 3)
  np.testing.assert_array_equal(a.numpy(), b.numpy())
  c = tf.random.uniform([4, 8, 8, 3], seed=1)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    y = random_flip_shift(x, tf.random.Generator.from_seed(5), 3)
    total, weighted = tf.reduce_sum(y), tf.reduce_sum(c * y)
  np.testing.assert_array_equal(y.numpy(), a.numpy())
  # Every output pixel is one input pixel: d Σy / dx counts how often each input pixel is
  # read (reflection reads some twice, some never), so it holds non-negative integers that
  # add up to the 8 * 8 * 3 = 192 outputs of each image.
  counts = tape.gradient(total, x).numpy()
  np.testing.assert_array_equal(counts, np.round(counts))
  assert counts.min() >= 0
  np.testing.assert_array_equal(counts.sum(axis=(1, 2, 3)), [192] * 4)
  # The map is linear, so <d Σ(c·y) / dx, x> = Σ(c·y).
  grad = tape.gradient(weighted, x).numpy()
  np.testing.assert_allclose(np.sum(grad * x.numpy()), np.sum(c.numpy() * y.numpy()),
                             rtol=1e-5)


def test_shift_larger_than_image_is_refused():
  with pytest.raises(ValueError, match="does not fit"):
    random_flip_shift(tf.zeros([1, 4, 4, 1]), tf.random.Generator.from_seed(0), 4)
