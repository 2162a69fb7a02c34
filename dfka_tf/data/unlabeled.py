"""Unlabeled real images from a source you have (`--unlabeled_data`): the images of a KA row,
the bound a data-free figure is read against, for any teachers, your own included.

Two forms, as `--eval_data` takes them, without labels:

- `<file>.npz` holding `x` [N, H, W, 3] (uint8, or float in [0, 1]);
- a TFDS `name:split` (prepared beforehand; never downloaded) with an `image` feature;
  dfka_tf's own datasets (scenes20, voc2007, coco2014) are read by their own pipelines.

Images are resized to the teachers' size. `check_unlabeled` reads what it can in seconds, so a
missing or mismatched source stops the run before any training.
"""

from pathlib import Path
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from dfka_tf.data import loaders
from dfka_tf.errors import ConfigError

_HINT = ("pass an .npz holding x (images [N, height, width, 3], uint8 or float in [0, 1]), or a "
         "TFDS name:split with an image feature")


def _npz_images(path: Path, batch_size: int) -> np.ndarray:
  """The uint8 images of an .npz, checked."""
  if not path.is_file():
    raise ConfigError(f"--unlabeled_data={path} not found; {_HINT}")
  try:
    with np.load(path, allow_pickle=False) as f:
      if "x" not in f.files:
        raise ConfigError(f"--unlabeled_data={path} holds no x (it holds "
                          f"{', '.join(sorted(f.files)) or 'nothing'}); {_HINT}")
      x = f["x"]
  except (OSError, ValueError) as e:
    raise ConfigError(f"--unlabeled_data={path} is not a readable .npz ({e}); {_HINT}") from None
  images = loaders.uint8_images(x, f"--unlabeled_data={path}", _HINT)
  if len(images) < batch_size:
    raise ConfigError(f"--unlabeled_data={path} holds {len(images)} images, fewer than one "
                      f"batch of {batch_size}; give at least {batch_size}, or lower "
                      "--batch_size")
  return images


def _split(spec: str):
  if ":" not in spec:
    raise ConfigError(f"--unlabeled_data={spec} is neither an .npz file nor a TFDS name:split "
                      "(e.g. scenes20:train)")
  name, split = spec.rsplit(":", 1)
  return loaders.own_name(name), split


def _tfds_builder(spec: str, name: str, split: str, data_dir: Optional[str]):
  builder = loaders.prepared_builder(spec, name, split, flag="--unlabeled_data",
                                     data_dir=data_dir)
  image = builder.info.features["image"] if "image" in builder.info.features.keys() else None
  if not isinstance(image, tfds.features.Image) or image.shape[-1] not in (1, 3):
    raise ConfigError(f"--unlabeled_data={spec}: {name} has no RGB or greyscale 'image' "
                      f"feature; {_HINT}")
  return builder


def check_unlabeled(spec: str, *, batch_size: int, data_dir: Optional[str] = None):
  """Raises ConfigError / DataNotFoundError when `spec` gives no images (seconds, no
  download)."""
  spec = str(spec)
  if spec.endswith(".npz"):
    _npz_images(Path(spec), batch_size)
    return
  name, split = _split(spec)
  if name in loaders.TFDS_NAMES:
    if split not in loaders.split_names(name):
      raise ConfigError(f"--unlabeled_data={spec}: {name} has no split {split!r}; use one of "
                        f"{', '.join(loaders.split_names(name))}")
    loaders.check_prepared(name, data_dir)
    return
  _tfds_builder(spec, name, split, data_dir)


def load_unlabeled(spec: str, *, image_size: int, batch_size: int, seed: int,
                   data_dir: Optional[str] = None) -> tf.data.Dataset:
  """Shuffled batches {"image": [batch_size, image_size, image_size, 3] in [0, 1]} of `spec`,
  one pass (the image source repeats it)."""
  spec = str(spec)
  finish = dict(image_size=image_size, batch_size=batch_size, shuffle=True, seed=seed,
                augment=False, cache=False, drop_remainder=True, cache_ok=False)
  if spec.endswith(".npz"):
    images = _npz_images(Path(spec), batch_size)
    ds = tf.data.Dataset.from_tensor_slices({"image": images})
    return loaders._finish(ds, **finish)  # pylint: disable=protected-access
  name, split = _split(spec)
  if name in loaders.TFDS_NAMES:
    return loaders.load(name, split, data_dir=data_dir, image_size=image_size,
                        batch_size=batch_size, shuffle=True, seed=seed, drop_remainder=True)
  builder = _tfds_builder(spec, name, split, data_dir)
  grey = builder.info.features["image"].shape[-1] == 1

  def image(ex):
    return {"image": tf.image.grayscale_to_rgb(ex["image"]) if grey else ex["image"]}

  ds = builder.as_dataset(split=split, shuffle_files=False).map(image)
  return loaders._finish(ds, **finish)  # pylint: disable=protected-access
