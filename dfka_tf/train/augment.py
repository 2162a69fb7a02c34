"""Random flips and shifts of image batches, drawn from a seeded `tf.random.Generator`.

Beyond the paper. DeepInversion (Yin et al., 2020) jitters and flips the synthesized image
before the teacher sees it, so the image cannot rely on one exact pixel alignment; the same
transform on the generated images of Steps II–III shows the student more varied inputs.
Every draw comes from the stage's own generator, so runs stay seeded and resumable.
"""

import tensorflow as tf


def random_flip_shift(images: tf.Tensor, rng: tf.random.Generator, max_shift: int) -> tf.Tensor:
  """Flips each image left-right with probability 1/2, then shifts it by up to ±max_shift px.

  The shift is per image and per axis, uniform in [-max_shift, max_shift]; the border is
  filled by reflection, so no constant bands appear. Differentiable in `images` (Step I
  back-propagates through it into G). `max_shift` = 0 leaves the batch untouched.

  Args:
    images: [N, H, W, C] with static H, W.
    rng: the stage's random generator.
    max_shift: largest shift in pixels; at most H - 1 and W - 1 (a reflection limit).
  """
  s = int(max_shift)
  if s <= 0:
    return images
  height, width = int(images.shape[1]), int(images.shape[2])
  if s >= min(height, width):
    raise ValueError(f"a shift of {s} px does not fit a {height}x{width} image; use less than "
                     f"{min(height, width)}.")
  n = tf.shape(images)[0]
  flip = rng.uniform([n]) < 0.5
  images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
  padded = tf.pad(images, [[0, 0], [s, s], [s, s], [0, 0]], mode="REFLECT")
  dy = rng.uniform([n], 0, 2 * s + 1, dtype=tf.int32)
  dx = rng.uniform([n], 0, 2 * s + 1, dtype=tf.int32)
  rows = dy[:, None] + tf.range(height)[None, :]
  cols = dx[:, None] + tf.range(width)[None, :]
  padded = tf.gather(padded, rows, axis=1, batch_dims=1)
  return tf.gather(padded, cols, axis=2, batch_dims=1)
