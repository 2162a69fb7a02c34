"""Step I (the group-stack generator), the DeepInversion pool, and the image source of
Steps II–III chosen once from `config.source.kind`."""

from typing import Optional

import tensorflow as tf

from dfka_tf import data as dfka_data
from dfka_tf import distribute
from dfka_tf.data.unlabeled import load_unlabeled
from dfka_tf.errors import ConfigError
from dfka_tf.models import blocknet
from dfka_tf.models.generator import (GroupStackGenerator, aligned_depths,
                                      input_normalization_of)
from dfka_tf.models.target import input_shape
from dfka_tf.stages.base import Parts, Run, Stage, run_stages
from dfka_tf.train.forge import ForgeEngine, ForgeSource
from dfka_tf.train.inversion import InversionTrainer, pool_grid
from dfka_tf.train.sources import (DatasetSource, GeneratorSource, ImageSource, NoiseSource,
                                   PoolSource)
from dfka_tf.train.steps import GeneratorTrainer


def generator_trainer(run: Run, teachers, **overrides) -> GeneratorTrainer:
  """Step I's trainer (G, its filters, priors, optimizer), built but not trained.

  `overrides` replace GeneratorTrainer's settings from the config (DAFL's joint stage).
  """
  g = run.config.generator
  blocknet.check_compatible(teachers, depths=range(len(teachers[0].blocks)))
  generator = GroupStackGenerator(teachers[0].feature_shapes, num_groups=g.groups,
                                  latent_dim=g.latent_dim, width=g.width, image_bn=g.image_bn,
                                  image_head=g.image_head,
                                  normalization=input_normalization_of(teachers[0].source_model),
                                  name="generator")
  settings = dict(batch_size=run.config.runtime.batch_size, learning_rate=g.lr,
                  alpha=g.alpha, beta=g.beta, gamma=g.gamma, dis_sign=g.dis_sign,
                  epsilon=g.epsilon,
                  bns_weight=g.bns.weight, bns_form=g.bns.form, lh_weight=g.lh.weight,
                  jitter=g.jitter, jit=run.jit)
  settings.update(overrides)
  return GeneratorTrainer(generator, teachers, rng=run.rng(1), **settings).build()


def summary_noise(run: Run, trainer: GeneratorTrainer) -> tf.Tensor:
  """The fixed latent codes of G's TensorBoard summaries (stateless: no stream is drawn)."""
  n = min(64, run.config.runtime.batch_size)
  return tf.random.stateless_normal([n, trainer.generator.latent_dim],
                                    seed=[run.config.seed, 31])


def generator_state(trainer: GeneratorTrainer, prefix: str = ""):
  """What a checkpoint saves of Step I's trainer (with `prefix` inside another stage's)."""
  state = dict(generator=trainer.generator, filters=trainer.filters,
               optimizer=trainer.optimizer, rng=trainer.rng)
  if trainer.aux:  # Checkpoints written without L_H have no aux.
    state["aux"] = trainer.aux
  if prefix:
    state = {("generator" if k == "generator" else f"generator_{k}"): v
             for k, v in state.items()}
  return state


def generator(run: Run, teachers) -> Optional[GeneratorTrainer]:
  """Stage "generator" (Step I); None when the config trains no generator."""
  c = run.config
  if not c.generator.enabled:
    return None
  built = {}

  def setup():
    built["trainer"] = trainer = generator_trainer(run, teachers)
    z = summary_noise(run, trainer)
    return Parts(trainer.step, generator_state(trainer), summarize=lambda: trainer.summarize(z))

  stage = Stage("generator", c.generator.steps, setup,
                summary=f"[step I] group-stack generator, K={c.generator.groups} (depths "
                        f"{aligned_depths(teachers[0].num_blocks, c.generator.groups)}), "
                        f"{c.generator.steps} steps")
  run_stages(run, [stage])
  return built["trainer"]


def inversion_pool(run: Run, teachers) -> tf.Tensor:
  """Stage "inversion": the DeepInversion pool Steps II–III train on (beyond the paper).

  --inversion_images images, optimised --batch_size at a time for --inversion_steps Adam
  steps each (`train/inversion.py`). The whole pool lives in the stage checkpoint, so the
  stage resumes mid-batch; later stages read it back from there. Returns it as uint8.
  """
  c = run.config
  p = c.source.pool
  trainer = InversionTrainer(
      teachers, rng=run.rng(30), num_images=p.images, batch_size=c.runtime.batch_size,
      steps=p.steps, learning_rate=p.lr, bns_weight=p.bns, tv_weight=p.tv,
      max_labels=p.max_labels, bns_form=p.bns_form,
      jitter=p.jitter or max(1, c.data.image_size // 16), jit=run.jit).build()
  num_labels = len(trainer.label_names)
  if p.max_labels > num_labels:
    raise ConfigError(f"--inversion_max_labels={p.max_labels} is more than the "
                      f"{num_labels} labels the teachers know; use 1..{num_labels}.")
  state = dict(rng=trainer.rng, pool=trainer.pool, images=trainer.images,
               targets=trainer.targets, counter=trainer.counter, optimizer=trainer.optimizer)
  def summarize():  # Pool images made so far (the batches still to come are blank).
    shown = pool_grid(trainer.images_uint8().numpy())
    tf.summary.image("pool/images", shown, max_outputs=len(shown))

  run_stages(run, [Stage("inversion", trainer.total_steps,
                         lambda: Parts(trainer.step, state, summarize=summarize),
                         summary=f"[pool] DeepInversion: {p.images} images in "
                                 f"{trainer.num_batches} batches of {p.steps} steps")])
  return tf.constant(trainer.images_uint8())


def forge_engine(run: Run, teachers, task) -> ForgeEngine:
  """Forge's engine (`train/forge.py`), from `source.forge`'s options; one per run."""
  c = run.config
  f = c.source.forge
  if not distribute.is_default(tf.distribute.get_strategy()):
    raise ConfigError("--forge runs its synthesis rounds on one device; use "
                      "--strategy=one_device (or drop --forge).")
  return ForgeEngine(
      teachers, task, rng=run.rng(40), batch_size=c.runtime.batch_size,
      latent_dim=c.generator.latent_dim, width=c.generator.width,
      image_bn=c.generator.image_bn, round_every=f.round_every,
      warmup_rounds=f.warmup_rounds, g_steps=f.g_steps, reset=f.reset,
      reset_every=f.reset_every, lr=f.lr, lr_z=f.lr_z, oh=f.oh, bns=f.bns,
      bns_form=f.bns_form, bns_momentum=f.bns_momentum, adv=f.adv, max_labels=f.max_labels,
      labels=f.labels, jitter=forge_jitter(c), bank_size=f.bank_size, mix=f.mix,
      contrast=f.contrast)


def forge_jitter(c) -> int:
  """--forge_jitter, or image_size // 8 (4 px at 32 px, as Fast-Datafree pads CIFAR)."""
  j = c.source.forge.jitter
  return j if j is not None else c.data.image_size // 8


class Images:
  """Makes the image source of Steps II–III, one per stage, from the config.

  The pool and Forge's engine are built on first use and shared by every stage.
  """

  def __init__(self, run: Run, teachers, generator=None, task=None):
    self.run, self.teachers, self.generator, self.task = run, teachers, generator, task
    self.pool = None
    self.forge = None

  def source(self, stream: int) -> ImageSource:
    run, c = self.run, self.run.config
    batch, kind = c.runtime.batch_size, c.source.kind
    if kind == "pool":
      if self.pool is None:
        self.pool = inversion_pool(run, self.teachers)
      return PoolSource(self.pool, run.rng(stream), batch, jitter=c.source.jitter)
    if kind == "forge":
      if self.forge is None:
        self.forge = forge_engine(run, self.teachers, self.task)
      return ForgeSource(self.forge, run.rng(stream), batch)
    if kind == "generator":
      return GeneratorSource(self.generator, run.rng(stream), batch, jitter=c.source.jitter,
                             training=c.source.generator_mode == "training")
    if kind == "noise":
      return NoiseSource(input_shape(c), run.rng(stream), batch)
    if kind == "dataset" and c.source.unlabeled:
      return DatasetSource(load_unlabeled(c.source.unlabeled, image_size=c.data.image_size,
                                          batch_size=batch, seed=c.seed + stream,
                                          data_dir=c.data.data_dir))
    if kind == "dataset":
      name = c.source.dataset or c.data.dataset
      if c.data.image_size != 32 and name.startswith("scenes20_"):
        name += f"_{c.data.image_size}"
      images = dfka_data.load(name, "train", data_dir=c.data.data_dir,
                              image_size=c.data.image_size, batch_size=batch, shuffle=True,
                              seed=c.seed + stream, drop_remainder=True)
      return DatasetSource(images)
    raise ConfigError(f"source.kind={kind!r} gives no images; use generator, pool, dataset, "
                      "noise or forge.")


def synthetic_images(config, images: Optional[Images], n: int, seed: int = 0) -> tf.Tensor:
  """n of the images a data-free run's student learnt from, float32 [n, H, W, 3] in [0, 1]:
  the bank's (Forge, evenly spaced over it), the pool's first, or new draws of Step I's G or
  of the noise (from `seed`: the run's own random streams are left as they are).

  For what needs images and has no data (`dfka_tf.amalgamate(...).generated`, the int8
  calibration of `--export_tflite`). Raises ValueError for a run that made none.
  """
  kind = config.source.kind
  if n < 1:
    raise ValueError(f"asked for {n} synthetic images; ask for at least 1.")
  if kind == "forge" and images is not None and images.forge is not None:
    return tf.cast(images.forge.images_uint8(n), tf.float32) / 255.0
  if kind == "pool" and images is not None and images.pool is not None:
    return tf.cast(images.pool[:n], tf.float32) / 255.0
  rng = tf.random.Generator.from_seed(seed)
  if kind == "generator" and images is not None and images.generator is not None:
    source = GeneratorSource(images.generator, rng, n,
                             training=config.source.generator_mode == "training")
    return source.sample()[0]
  if kind == "noise":
    return NoiseSource(input_shape(config), rng, n).sample()[0]
  raise ValueError(f"this run (--method={config.method}, images: {kind}) made no synthetic "
                   "images: only a data-free method (dfka, dafl, dafl_2stage, noise) has them.")
