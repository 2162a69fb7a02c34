"""TFDS builders of the embedded datasets: scenes20, its companions scenes20_similar and
scenes20_different, and its colour-coded control scenes20_colour.

After `import dfka_tf.data`, `tfds.load("scenes20")` works offline: preparing the dataset
renders it locally (dfka_tf.data.render), deterministically from a fixed seed. Configs "32"
(default) and "64" give the image side.
"""

import numpy as np
import tensorflow_datasets as tfds

from dfka_tf.data import render

SEED = 2020
# split: (stream, number of examples). Each split renders from its own stream, so adding
# "validation" (for tuning: docs/results.md) left train and test as they were.
SPLITS = {"train": (0, 6000), "test": (1, 2000), "validation": (2, 2000)}
_CHUNK = 500


class _Config(tfds.core.BuilderConfig):

  def __init__(self, *, size: int, **kwargs):
    super().__init__(name=str(size), description=f"{size}x{size} RGB images", **kwargs)
    self.size = size


class _Scenes(tfds.core.GeneratorBasedBuilder):
  """Shared builder: `KIND` picks the renderer ("main", "similar" or "different")."""

  VERSION = tfds.core.Version("2.1.0")
  RELEASE_NOTES = {"2.1.0": "A validation split; train and test unchanged.",
                   "2.0.0": "Object colour independent of class (shape decides the label).",
                   "1.0.0": "Objects in their class's typical hue (now scenes20_colour)."}
  BUILDER_CONFIGS = [_Config(size=32), _Config(size=64)]
  KIND = "main"
  STYLE = render.DEFAULT_STYLE
  SPLIT_NAMES = ("train", "validation", "test")

  def _info(self):
    size = self.builder_config.size
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"dfka_tf embedded multi-label scenes ({self.KIND}), rendered locally.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3)),
            "labels": tfds.features.Tensor(shape=(20,), dtype=np.uint8),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: every image is rendered here.
    return {name: self._generate_examples(*SPLITS[name]) for name in self.SPLIT_NAMES}

  def _generate_examples(self, stream, count):
    size = self.builder_config.size
    for start in range(0, count, _CHUNK):
      indices = range(start, min(start + _CHUNK, count))
      images, labels = render.generate(self.KIND, indices, size=size, seed=SEED, stream=stream,
                                       style=self.STYLE)
      for i, image, label in zip(indices, images, labels):
        yield i, {"image": image, "labels": label}


class Scenes20(_Scenes):
  """20 shape classes, 1–3 objects per image over clutter (the embedded default)."""
  KIND = "main"


class Scenes20Colour(_Scenes):
  """scenes20's scenes with each class in its typical hue: a colour-shortcut control, where
  a colour histogram alone scores ~42 mAP (docs/results.md, "The benchmark")."""
  KIND = "main"
  STYLE = render.COLOUR_STYLE


class Scenes20Similar(_Scenes):
  """Same renderer, 20 other shapes: the "Similar Data" baseline's images (Table 1)."""
  KIND = "similar"
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"2.0.0": "Object colour independent of class."}
  SPLIT_NAMES = ("train",)


class Scenes20Different(_Scenes):
  """Textures without objects: the "Diff Data" baseline's images (Table 1)."""
  KIND = "different"
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"2.0.0": "Object colour independent of class."}
  SPLIT_NAMES = ("train",)
