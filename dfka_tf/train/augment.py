"""Random flips and shifts of image batches, drawn from a seeded `tf.random.Generator`.

Beyond the paper. DeepInversion (Yin et al., 2020) jitters and flips the synthesized image
before the teacher sees it, so the image cannot rely on one exact pixel alignment; the same
transform on the generated images of Steps II–III shows the student more varied inputs.
Every draw comes from the stage's own generator, so runs stay seeded and resumable.

The draw (`flip_shift_draws`) and its application (`apply_flip_shift`) are separate so that
a distributed step draws for the global batch once and each replica applies its rows
(`dfka_tf.distribute`); `random_flip_shift` does both.
"""

from typing import Dict, Optional

import tensorflow as tf


def flip_shift_draws(rng: tf.random.Generator, n, max_shift: int, size=None
                     ) -> Optional[Dict[str, tf.Tensor]]:
  """The random numbers of `random_flip_shift` for `n` images (None when `max_shift` = 0).

  Args:
    rng: the stage's random generator.
    n: the number of images (an int or a scalar tensor).
    max_shift: largest shift in pixels.
    size: (height, width) of the images, to check that the shift fits.
  """
  s = int(max_shift)
  if s <= 0:
    return None
  if size is not None and s >= min(size):
    raise ValueError(f"a shift of {s} px does not fit a {size[0]}x{size[1]} image; use less "
                     f"than {min(size)}.")
  flip = rng.uniform([n]) < 0.5
  dy = rng.uniform([n], 0, 2 * s + 1, dtype=tf.int32)
  dx = rng.uniform([n], 0, 2 * s + 1, dtype=tf.int32)
  return {"flip": flip, "dy": dy, "dx": dx}


def apply_flip_shift(images: tf.Tensor, draws: Optional[Dict[str, tf.Tensor]],
                     max_shift: int) -> tf.Tensor:
  """Flips and shifts `images` by `draws` (from `flip_shift_draws`); None leaves them."""
  if draws is None:
    return images
  s = int(max_shift)
  height, width = int(images.shape[1]), int(images.shape[2])
  images = tf.where(draws["flip"][:, None, None, None], tf.reverse(images, axis=[2]), images)
  padded = tf.pad(images, [[0, 0], [s, s], [s, s], [0, 0]], mode="REFLECT")
  rows = draws["dy"][:, None] + tf.range(height)[None, :]
  cols = draws["dx"][:, None] + tf.range(width)[None, :]
  padded = tf.gather(padded, rows, axis=1, batch_dims=1)
  return tf.gather(padded, cols, axis=2, batch_dims=1)


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
  draws = flip_shift_draws(rng, tf.shape(images)[0], max_shift,
                           (int(images.shape[1]), int(images.shape[2])))
  return apply_flip_shift(images, draws, max_shift)


def cutmix_draws(rng: tf.random.Generator, n: int, size, prob: float
                 ) -> Optional[Dict[str, tf.Tensor]]:
  """The random numbers of `apply_cutmix` for `n` images (None when `prob` = 0).

  Each image, with probability `prob`, receives a box of another image of the batch (a
  random permutation): the box's side is sqrt(1 − λ) of the image's, λ ~ U(0, 1), and its
  centre is uniform, the box clipped at the borders (Yun et al., 2019, CutMix). Beyond the
  paper.
  """
  if prob <= 0:
    return None
  height, width = int(size[0]), int(size[1])
  cut = tf.sqrt(1.0 - rng.uniform([n]))
  cy = rng.uniform([n], 0, height, dtype=tf.int32)
  cx = rng.uniform([n], 0, width, dtype=tf.int32)
  half_h = tf.cast(cut * height / 2.0, tf.int32)
  half_w = tf.cast(cut * width / 2.0, tf.int32)
  # A permutation from uniform keys: one draw, so resumed runs take the same numbers.
  return {"active": rng.uniform([n]) < prob,
          "partner": tf.argsort(rng.uniform([n]), stable=True),
          "y0": tf.maximum(cy - half_h, 0), "y1": tf.minimum(cy + half_h, height),
          "x0": tf.maximum(cx - half_w, 0), "x1": tf.minimum(cx + half_w, width)}


def apply_cutmix(images: tf.Tensor, draws: Optional[Dict[str, tf.Tensor]]) -> tf.Tensor:
  """Pastes the boxes of `draws` (from `cutmix_draws`); None leaves the batch untouched.
  The labels are not mixed: a distilled student's targets are the teachers' predictions on
  the mixed image itself."""
  if draws is None:
    return images
  height, width = int(images.shape[1]), int(images.shape[2])
  rows = tf.range(height)[None, :]
  cols = tf.range(width)[None, :]
  in_rows = (rows >= draws["y0"][:, None]) & (rows < draws["y1"][:, None])
  in_cols = (cols >= draws["x0"][:, None]) & (cols < draws["x1"][:, None])
  box = in_rows[:, :, None] & in_cols[:, None, :] & draws["active"][:, None, None]
  return tf.where(box[..., None], tf.gather(images, draws["partner"]), images)
