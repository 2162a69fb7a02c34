"""Where Steps II–III get their images: one `ImageSource` interface, four sources.

- `GeneratorSource`: the frozen G of Step I (the paper), with its intermediate outputs.
- `PoolSource`: a fixed DeepInversion pool (beyond the paper).
- `DatasetSource`: real unlabeled images (the KA, Similar Data and Diff Data rows).
- `NoiseSource`: Gaussian noise (the Random Noise row).
- `forge.ForgeSource`: Forge's bank, synthesised while the student trains (beyond the paper).

`dfka_tf.stages.images.make_source` picks one from the config.
"""

from typing import Dict, Tuple

import tensorflow as tf

from dfka_tf import distribute
from dfka_tf.train.augment import apply_flip_shift, flip_shift_draws


class ImageSource:
  """Batches of images in [0, 1] and, where the source has them, intermediate features.

  Attributes:
    rng: the source's random generator (None where it has none).
    jit_ok: whether a step that samples it can be XLA-compiled.
  """

  rng = None
  jit_ok = True

  def sample(self) -> Tuple[tf.Tensor, Dict[int, tf.Tensor]]:
    """(images [N, H, W, 3], {teacher depth d: features aligned with F^d})."""
    return self.render(self.draw())

  def draw(self):
    """Every random number (or data) of one global batch, in cross-replica context; each
    tensor's first axis is the batch (`dfka_tf.distribute`)."""
    raise NotImplementedError

  def render(self, draws) -> Tuple[tf.Tensor, Dict[int, tf.Tensor]]:
    """The batch `draws` describe (this replica's rows of it, inside `strategy.run`)."""
    raise NotImplementedError

  def checkpoint_state(self) -> Dict:
    """What a stage checkpoint must save so the source resumes where it stopped."""
    return {"rng": self.rng}

  def advance(self) -> Dict[str, tf.Tensor]:
    """Runs, eagerly, before each student step: work the source does between steps (Forge's
    synthesis rounds, `forge.py`); returns measurements to log beside the step's."""
    return {}

  def bind(self, student_predict) -> None:
    """Learns the student (image -> probabilities over Y_cst, inference mode) where the
    source adapts to it; None where the stage has no whole student (Step II's blocks)."""

  def carry_over(self, directory: str) -> None:
    """Takes the source's shared state from the checkpoint in `directory` (the stage
    before) when this stage has none of its own."""


class GeneratorSource(ImageSource):
  """Generated batches: I_gan and every group's output, from frozen G.

  G runs in inference mode unless `training`: then its batch norms normalise each batch by
  its own statistics, as in Step I (its moving statistics still update, and nothing reads
  them but inference-mode sampling). With `jitter` > 0 (beyond the paper) each image is
  flipped and shifted at random by up to `jitter` pixels (`augment.apply_flip_shift`); the
  intermediate outputs are left as G made them.
  """

  def __init__(self, generator, rng: tf.random.Generator, batch_size: int, jitter: int = 0,
               training: bool = False):
    self.generator, self.rng, self.batch_size = generator, rng, int(batch_size)
    self.jitter = int(jitter)
    self.training = bool(training)
    if self.training:
      distribute.sync_batchnorm(generator)

  def draw(self):
    z = self.rng.normal([self.batch_size, self.generator.latent_dim])
    size = self.generator.feature_shapes[0][:2]
    return {"z": z, "jitter": flip_shift_draws(self.rng, self.batch_size, self.jitter, size)}

  def render(self, draws):
    outputs = self.generator(draws["z"], training=self.training)
    links = dict(zip(self.generator.depths, outputs))
    return apply_flip_shift(outputs[-1], draws["jitter"], self.jitter), links


class DatasetSource(ImageSource):
  """Real images without labels. Reading a tf.data iterator cannot be compiled by XLA, so
  steps fed by it run without jit."""

  jit_ok = False

  def __init__(self, dataset: tf.data.Dataset):
    self.iterator = iter(dataset.map(lambda ex: ex["image"] if isinstance(ex, dict) else ex)
                         .repeat())

  def draw(self):
    return {"images": next(self.iterator)}

  def render(self, draws):
    return draws["images"], {}

  def checkpoint_state(self):
    return {"data": self.iterator}


class PoolSource(ImageSource):
  """Batches of a fixed uint8 image pool (the DeepInversion option, beyond the paper).

  Images are drawn uniformly with replacement, then flipped and shifted at random by up to
  `jitter` pixels: a pool of a thousand images is seen hundreds of times over Steps II–III,
  and the augmentation keeps T_u from memorising it. Only the generator `rng` is state.
  """

  def __init__(self, pool: tf.Tensor, rng: tf.random.Generator, batch_size: int,
               jitter: int = 0):
    self.pool = tf.convert_to_tensor(pool)
    if self.pool.dtype != tf.uint8:
      raise ValueError(f"PoolSource takes a uint8 pool, got {self.pool.dtype.name}.")
    self.rng, self.batch_size, self.jitter = rng, int(batch_size), int(jitter)

  def draw(self):
    idx = self.rng.uniform([self.batch_size], 0, int(self.pool.shape[0]), dtype=tf.int64)
    size = tuple(int(d) for d in self.pool.shape[1:3])
    return {"idx": idx, "jitter": flip_shift_draws(self.rng, self.batch_size, self.jitter,
                                                   size)}

  def render(self, draws):
    images = tf.cast(tf.gather(self.pool, draws["idx"]), tf.float32) / 255.0
    return apply_flip_shift(images, draws["jitter"], self.jitter), {}


class NoiseSource(ImageSource):
  """Gaussian-noise images, N(0.5, 0.25²) clipped to [0, 1]."""

  def __init__(self, image_shape, rng: tf.random.Generator, batch_size: int):
    self.shape = [int(batch_size)] + [int(v) for v in image_shape]
    self.rng = rng

  def draw(self):
    return {"noise": self.rng.normal(self.shape)}

  def render(self, draws):
    return tf.clip_by_value(0.5 + 0.25 * draws["noise"], 0.0, 1.0), {}
