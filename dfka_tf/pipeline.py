"""One run of data-free knowledge amalgamation, stage by stage, resumable.

Stages: teachers (train or load) -> Step I (generator) -> Step II (TargetNet blocks) ->
Step III (regroup + fine-tune) -> evaluation on the real test split -> SavedModel export.

Workdir layout:
  config.json      the exact configuration (written first; a resume must match it)
  progress.json    finished stages, η^{b,m}, S_m, stage times
  teachers/        teacher<m>.keras + teacher<m>.labels.json (trained teachers)
  ckpt/<stage>/    tf.train.CheckpointManager checkpoints of each stage
  logs/            TensorBoard scalars
  generated.png    generated images next to real test images (Fig. 4)
  block_losses.png L_u^b curves of Step II
  results.json     metrics, parameter counts, S_m, stage times
  target_net/      the exported SavedModel of T_u
"""

import dataclasses
import json
import logging
import os
import shutil
import time
from typing import Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from dfka_tf import data as dfka_data
from dfka_tf.config import RunConfig
from dfka_tf.errors import ConfigError, TeacherError
from dfka_tf.eval import metrics
from dfka_tf.models import blocknet
from dfka_tf.models.generator import GroupStackGenerator
from dfka_tf.models.resnet import build_resnet, copy_weights_by_name
from dfka_tf.task import TaskMap
from dfka_tf.train import loop
from dfka_tf.train.steps import (AdversarialFinetuneTrainer, BlockTrainer, DatasetSource,
                                 FinetuneTrainer, GeneratorSource, GeneratorTrainer,
                                 NoiseSource, PoolSource, branch_out_blocks, regroup,
                                 teacher_ensemble)
from dfka_tf.train.inversion import InversionTrainer, pool_grid
from dfka_tf.train.teachers import TeacherTrainer

logger = logging.getLogger(__name__)

PAPER_SCALE_ARCHS = ("resnet50", "resnet101")


def default_jit() -> bool:
  """XLA on GPU, off on CPU (measured 1.2–4.7× slower on a 2-core CPU)."""
  return bool(tf.config.list_physical_devices("GPU"))


def distribution_strategy() -> tf.distribute.Strategy:
  """The default (single-device) strategy; with several GPUs only the first is used.

  The steps are called directly, not through `strategy.run`, so building them under a
  MirroredStrategy fails ("DistributedVariable.handle is not available outside the replica
  context"). Data-parallel steps need strategy.run, distributed datasets, per-replica loss
  scaling and synchronized batch statistics; until then one GPU runs the whole job.
  """
  gpus = tf.config.list_physical_devices("GPU")
  if len(gpus) > 1:
    logger.warning("%d GPUs visible; dfka_tf runs on one (multi-GPU steps are not "
                   "implemented yet). Set CUDA_VISIBLE_DEVICES to choose it.", len(gpus))
  return tf.distribute.get_strategy()


class Workdir:
  """Paths and small JSON state of one run's directory."""

  def __init__(self, root: str):
    self.root = root

  def path(self, *parts) -> str:
    return os.path.join(self.root, *parts)

  def read_json(self, name, default=None):
    path = self.path(name)
    if not os.path.exists(path):
      return default
    with open(path) as f:
      return json.load(f)

  def write_json(self, name, value):
    # Write then rename, so a kill mid-write never leaves a truncated file behind.
    os.makedirs(self.root, exist_ok=True)
    tmp = self.path(name + ".tmp")
    with open(tmp, "w") as f:
      json.dump(value, f, indent=2, sort_keys=True, default=_json_default)
    os.replace(tmp, self.path(name))


def _json_default(v):
  if isinstance(v, (np.floating, np.integer)):
    return v.item()
  if isinstance(v, np.ndarray):
    return v.tolist()
  raise TypeError(type(v))


def prepare_workdir(config: RunConfig, *, resume: bool = False, overwrite: bool = False):
  """Checks the workdir against `config` before anything is written.

  A workdir holding a run with another config is refused unless `overwrite`; one with the
  same config needs `resume` (to continue it) or `overwrite` (to start over).
  """
  wd = Workdir(config.workdir)
  existing = wd.read_json("config.json")
  if existing is not None:
    old = RunConfig.from_json(json.dumps(existing))
    diff = config.differences(old)
    if overwrite:
      shutil.rmtree(config.workdir)
    elif diff:
      raise ConfigError(
          f"workdir {config.workdir} holds a run with a different config ({', '.join(diff)}); "
          "use another --workdir, or --overwrite to discard it.")
    elif not resume:
      raise ConfigError(f"workdir {config.workdir} already holds this run; pass --resume to "
                        "continue it or --overwrite to start over.")
  os.makedirs(config.workdir, exist_ok=True)
  wd.write_json("config.json", json.loads(config.to_json()))
  return wd


class Amalgamation:
  """Runs the stages of one configuration inside its workdir."""

  def __init__(self, config: RunConfig, *, progress: bool = True, resume: bool = False,
               overwrite: bool = False):
    config.validate()
    self.config = config
    self.progress = progress
    self.jit = default_jit() if config.jit is None else bool(config.jit)
    self._check_inputs()
    self.wd = prepare_workdir(config, resume=resume, overwrite=overwrite)
    self.state = self.wd.read_json("progress.json", {"done": [], "times": {}})
    self.strategy = distribution_strategy()
    self._pool = None
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
      keras.mixed_precision.set_global_policy("mixed_float16")

  # ---------------------------------------------------------------- validation
  def _check_inputs(self):
    """Every check that can fail fast runs before the workdir is touched."""
    c = self.config
    from dfka_tf.models.generator import aligned_depths  # pylint: disable=g-import-not-at-top
    aligned_depths(4, c.groups)  # K must divide B = 4 whatever the teachers are.
    self._loaded_teachers = None
    if c.teacher_paths:
      self.dataset_labels = None
      teachers = [blocknet.load_teacher(p, block_outputs=list(c.teacher_blocks) or None)
                  for p in c.teacher_paths]
      blocknet.check_compatible(teachers, depths=range(len(teachers[0].blocks)))
      self.task = TaskMap.build([t.label_names for t in teachers],
                                None if c.labels is None else list(c.labels))
      # The images the teachers take decide the generator's output size.
      self.config = c = dataclasses.replace(c, image_size=int(teachers[0].feature_shapes[0][0]))
      self._loaded_teachers = teachers
    else:
      self.dataset_labels = dfka_data.label_names(c.dataset)
      self.teacher_splits = dfka_data.teacher_label_split(c.dataset, c.num_teachers)
      if c.labels is not None:
        labels = dfka_data.resolve_labels(list(c.labels), self.dataset_labels)
        self.config = c = dataclasses.replace(c, labels=tuple(labels))
      self.task = TaskMap.build(self.teacher_splits, c.labels)
      dfka_data.check_prepared(c.dataset, c.data_dir)
      if c.method in self.COMPANIONS and self.COMPANIONS[c.method]:
        dfka_data.check_prepared(self.COMPANIONS[c.method], c.data_dir)
    if c.target_pretrain is not None:
      if not dfka_data.label_names(c.target_pretrain):
        raise ConfigError(f"--target_pretrain={c.target_pretrain} has no labels to train on; "
                          "use a labelled dataset such as scenes20_similar.")
      dfka_data.check_prepared(c.target_pretrain, c.data_dir)

  # ---------------------------------------------------------------- helpers
  def _done(self, stage) -> bool:
    return stage in self.state["done"]

  def _mark_done(self, stage, seconds, **extra):
    if stage not in self.state["done"]:
      self.state["done"].append(stage)
    self.state["times"][stage] = self.state["times"].get(stage, 0.0) + seconds
    self.state.update(extra)
    self.wd.write_json("progress.json", self.state)

  def _rng(self, stream: int) -> tf.random.Generator:
    # One generator per stage so a stage's noise does not depend on how long earlier ones ran.
    return tf.random.Generator.from_seed(self.config.seed * 1000 + stream)

  def _input_shape(self):
    s = self.config.image_size
    return (s, s, 3)

  def _imagenet(self, arch) -> Optional[str]:
    return "imagenet" if (self.config.imagenet_init and arch in PAPER_SCALE_ARCHS) else None

  # ---------------------------------------------------------------- stage 0: teachers
  def teachers(self) -> List[blocknet.BlockNet]:
    c = self.config
    if self._loaded_teachers is not None:
      teachers = self._loaded_teachers
    else:
      teachers = [self._train_or_load_teacher(m) for m in range(c.num_teachers)]
    for t in teachers:
      t.freeze()
    return teachers

  def _train_or_load_teacher(self, m) -> blocknet.BlockNet:
    c = self.config
    path = self.wd.path("teachers", f"teacher{m + 1}.keras")
    stage = f"teacher{m + 1}"
    if self._done(stage) and os.path.exists(path):
      return blocknet.load_teacher(path)
    labels = self.teacher_splits[m]
    columns = [self.dataset_labels.index(name) for name in labels]
    start = time.time()
    model = build_resnet(c.arch, len(labels), self._input_shape(),
                         weights=self._imagenet(c.arch), name=f"teacher{m + 1}")
    if self.progress:
      print(f"[{stage}] training on {len(labels)} labels for {c.teacher_steps} steps")
    self._train_classifier(model, c.dataset, columns, stage=stage, steps=c.teacher_steps,
                           seed=c.seed + m)
    os.makedirs(self.wd.path("teachers"), exist_ok=True)
    teacher = blocknet.split_model(model, label_names=labels)
    blocknet.save_teacher(teacher, path)
    self._mark_done(stage, time.time() - start)
    return teacher

  def _train_classifier(self, model, dataset, columns, *, stage, steps, seed):
    """Supervised multi-label training of `model` on `dataset`'s train split (resumable)."""
    c = self.config
    trainer = TeacherTrainer(model, columns, steps=steps, learning_rate=c.teacher_lr,
                             weight_decay=c.weight_decay, jit=self.jit)
    train = dfka_data.load(dataset, "train", data_dir=c.data_dir, image_size=c.image_size,
                           batch_size=c.batch_size, shuffle=True, seed=seed,
                           augment=True, drop_remainder=True).repeat()
    iterator = iter(train)
    trainer.optimizer.build(model.trainable_variables)  # Slots exist before any restore.
    ckpt = loop.StageCheckpoint(self.wd.path("ckpt", stage), model=model,
                                optimizer=trainer.optimizer, data=iterator)
    loop.run_stage(lambda: trainer.step(next(iterator)), stage=stage, steps=steps,
                   checkpoint=ckpt, every=c.checkpoint_every, log_dir=self.wd.path("logs"),
                   progress=self.progress)

  # ---------------------------------------------------------------- TargetNet init
  def pretrained_target(self) -> Optional[str]:
    """Stage "pretrain": the TargetNet's starting point where ImageNet weights are missing.

    The paper starts T from ImageNet: a network trained on other labelled images. With
    --target_pretrain=D the TargetNet's architecture is first trained on every label of D
    (scenes20_similar for scenes20: 20 other shapes, none of the teachers' classes), then
    T starts from it, classifier excepted. Returns the weights file, or None when off.
    """
    c = self.config
    if c.target_pretrain is None:
      return None
    path = self.wd.path("pretrained", "target_init.weights.h5")
    if self._done("pretrain") and os.path.exists(path):
      return path
    names = dfka_data.label_names(c.target_pretrain)
    start = time.time()
    model = build_resnet(c.arch, len(names), self._input_shape(),
                         weights=self._imagenet(c.arch), name="pretrain")
    if self.progress:
      print(f"[pretrain] TargetNet on {c.target_pretrain} ({len(names)} labels) for "
            f"{c.pretrain_steps} steps")
    self._train_classifier(model, c.target_pretrain, list(range(len(names))), stage="pretrain",
                           steps=c.pretrain_steps, seed=c.seed + 500)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.save_weights(path)
    self._mark_done("pretrain", time.time() - start)
    return path

  def _target_init(self, target_model, path):
    c = self.config
    source = build_resnet(c.arch, len(dfka_data.label_names(c.target_pretrain)),
                          self._input_shape(), name="pretrain")
    source.load_weights(path)
    copy_weights_by_name(source, target_model, skip=("logits",))

  # ---------------------------------------------------------------- step I
  def generator(self, teachers) -> GeneratorTrainer:
    c = self.config
    shapes = self._check_teacher_shapes(teachers)
    # DAFL: one generator judged by the teachers on the image, L_oh + α L_a + β L_ie.
    dafl = c.method == "dafl"
    generator = GroupStackGenerator(shapes, num_groups=1 if dafl else c.groups,
                                    latent_dim=c.latent_dim, width=c.generator_width,
                                    image_bn=c.image_bn, name="generator")
    trainer = GeneratorTrainer(generator, teachers, rng=self._rng(1), batch_size=c.batch_size,
                               learning_rate=c.generator_lr, alpha=c.alpha, beta=c.beta,
                               gamma=0.0 if dafl else c.gamma, dis_sign=c.dis_sign,
                               bns_weight=c.bns_weight, bns_form=c.bns_form,
                               lh_weight=c.lh_weight,
                               jitter=c.generator_jitter, jit=self.jit).build()
    extra = {"aux": trainer.aux} if trainer.aux else {}  # Old checkpoints have no aux.
    ckpt = loop.StageCheckpoint(self.wd.path("ckpt", "generator"), generator=generator,
                                filters=trainer.filters, optimizer=trainer.optimizer,
                                rng=trainer.rng, **extra)
    start = time.time()
    if self._done("generator"):
      ckpt.restore()
      return trainer
    if self.progress:
      print(f"[step I] group-stack generator, K={c.groups} (depths {generator.depths}), "
            f"{c.generator_steps} steps")
    loop.run_stage(trainer.step, stage="generator", steps=c.generator_steps, checkpoint=ckpt,
                   every=c.checkpoint_every, log_dir=self.wd.path("logs"),
                   progress=self.progress)
    self._mark_done("generator", time.time() - start)
    return trainer

  def _check_teacher_shapes(self, teachers):
    blocknet.check_compatible(teachers, depths=range(len(teachers[0].blocks)))
    return teachers[0].feature_shapes

  # ---------------------------------------------------------------- image sources
  COMPANIONS = {"ka": None, "similar": "scenes20_similar", "diff": "scenes20_different"}

  def _source(self, generator, stream: int, teachers):
    """Where Steps II–III get their images: G (or its pool), real unlabeled images, noise."""
    c = self.config
    if c.inversion_images > 0:
      return PoolSource(self.inversion_pool(teachers), self._rng(stream), c.batch_size,
                        jitter=c.student_jitter)
    if c.method in ("dfka", "dafl"):
      return GeneratorSource(generator, self._rng(stream), c.batch_size,
                             jitter=c.student_jitter)
    if c.method == "noise":
      return NoiseSource(self._input_shape(), self._rng(stream), c.batch_size)
    name = self.COMPANIONS[c.method] or c.dataset
    if c.image_size != 32 and name.startswith("scenes20_"):
      name += f"_{c.image_size}"
    images = dfka_data.load(name, "train", data_dir=c.data_dir, image_size=c.image_size,
                            batch_size=c.batch_size, shuffle=True, seed=c.seed + stream,
                            drop_remainder=True)
    return DatasetSource(images)

  def _source_state(self, source) -> Dict:
    """The checkpointable state of a source (noise generator or data iterator)."""
    if isinstance(source, DatasetSource):
      return {"data": source.iterator}
    return {"rng": source.rng}

  # ---------------------------------------------------------------- image pool
  def inversion_pool(self, teachers) -> tf.Tensor:
    """Stage "inversion": the DeepInversion pool Steps II–III train on (beyond the paper).

    --inversion_images images, optimised --batch_size at a time for --inversion_steps Adam
    steps each (`train/inversion.py`). The whole pool lives in the stage checkpoint, so the
    stage resumes mid-batch; later stages read it back from there. Returns it as uint8.
    """
    if self._pool is not None:
      return self._pool
    c = self.config
    trainer = InversionTrainer(
        teachers, rng=self._rng(30), num_images=c.inversion_images, batch_size=c.batch_size,
        steps=c.inversion_steps, learning_rate=c.inversion_lr, bns_weight=c.inversion_bns,
        tv_weight=c.inversion_tv, max_labels=c.inversion_max_labels,
        jitter=max(1, c.image_size // 16), jit=self.jit).build()
    num_labels = len(trainer.label_names)
    if c.inversion_max_labels > num_labels:
      raise ConfigError(f"--inversion_max_labels={c.inversion_max_labels} is more than the "
                        f"{num_labels} labels the teachers know; use 1..{num_labels}.")
    ckpt = loop.StageCheckpoint(self.wd.path("ckpt", "inversion"), rng=trainer.rng,
                                pool=trainer.pool, images=trainer.images,
                                targets=trainer.targets, counter=trainer.counter,
                                optimizer=trainer.optimizer)
    if self._done("inversion"):
      ckpt.restore()
    else:
      start = time.time()
      if self.progress:
        print(f"[pool] DeepInversion: {c.inversion_images} images in {trainer.num_batches} "
              f"batches of {c.inversion_steps} steps")
      loop.run_stage(trainer.step, stage="inversion", steps=trainer.total_steps,
                     checkpoint=ckpt, every=c.checkpoint_every, log_dir=self.wd.path("logs"),
                     progress=self.progress)
      self._mark_done("inversion", time.time() - start)
    self._pool = tf.constant(trainer.images_uint8())
    return self._pool

  # ---------------------------------------------------------------- step II
  def target_blocks(self, teachers, generator) -> Dict:
    """Trains T^1..T^B in turn; returns the TargetNet, its filters and η^{b,m}."""
    c = self.config
    pretrained = self.pretrained_target()
    target_model = build_resnet(c.arch, len(self.task.labels), self._input_shape(),
                                weights=self._imagenet(c.arch), name="target")
    if pretrained is not None:
      self._target_init(target_model, pretrained)
    target = blocknet.split_model(target_model, label_names=list(self.task.labels))
    num_blocks = len(target.blocks)
    if target.feature_shapes[:num_blocks] != teachers[0].feature_shapes[:num_blocks]:
      raise TeacherError(
          f"TargetNet --arch={c.arch} has block shapes {target.feature_shapes} but the "
          f"teachers have {teachers[0].feature_shapes}; choose the teachers' architecture.")
    trainers = [BlockTrainer(target, b, self._source(generator, 10 + b, teachers), teachers,
                             self.task, batch_size=c.batch_size, steps=c.block_steps,
                             learning_rate=c.target_lr, weight_decay=c.weight_decay,
                             lambda_in=(c.lambda_in1, c.lambda_in2), jit=self.jit).build()
                for b in range(1, num_blocks + 1)]
    eta = {int(k): {int(m): v for m, v in e.items()}
           for k, e in self.state.get("eta", {}).items()}
    curves = self.state.get("block_curves", {})
    for tr in trainers:
      b = tr.block
      stage = f"block{b}"
      # Each block's checkpoint holds the whole TargetNet so far, every filter, and the
      # running sums behind η^{b,m}, so a resumed block measures η exactly as an unbroken one.
      eta_sum = tf.Variable(tf.zeros([self.task.num_teachers]), trainable=False)
      eta_count = tf.Variable(0.0, trainable=False)
      ckpt = loop.StageCheckpoint(
          self.wd.path("ckpt", stage), target=target_model,
          filters=[t.filters for t in trainers], optimizer=tr.optimizer,
          eta_sum=eta_sum, eta_count=eta_count, **self._source_state(tr.source))
      if self._done(stage):
        continue
      if b > 1 and ckpt.manager.latest_checkpoint is None:
        # Start from the end of block b-1 (the whole TargetNet and filters so far).
        prev = tf.train.Checkpoint(target=target_model, filters=[t.filters for t in trainers])
        prev.restore(tf.train.latest_checkpoint(self.wd.path("ckpt", f"block{b - 1}"))
                     ).expect_partial()
      start = time.time()
      if self.progress:
        print(f"[step II] TargetNet block {b}/{num_blocks}, {c.block_steps} steps")
      # η^{b,m}: mean of L_dual^{b,m}(F_in^1) over the last 10% of the block's steps.
      tail_start = c.block_steps - max(1, c.block_steps // 10)
      # L_u^b per step. Its part up to each checkpoint goes to progress.json with it, so a
      # block resumed from checkpoint step s (named ckpt-s) starts from the first s losses.
      latest = ckpt.manager.latest_checkpoint
      reached = int(latest.rsplit("-", 1)[-1]) if latest else 0
      curve = list(self.state.get("partial_curve", {}).get(str(b), []))[:reached]

      def on_step(step, values, b=b, curve=curve, tail_start=tail_start, eta_sum=eta_sum,
                  eta_count=eta_count):
        curve.append(values["loss"])
        if step > tail_start:
          eta_count.assign_add(1.0)
          eta_sum.assign_add([values.get(f"dual_t{m + 1}", 0.0)
                              for m in range(self.task.num_teachers)])
        if step % c.checkpoint_every == 0 or step == c.block_steps:  # run_stage saves next.
          self.state["partial_curve"] = {str(b): list(curve)}
          self.wd.write_json("progress.json", self.state)

      loop.run_stage(tr.step, stage=stage, steps=c.block_steps, checkpoint=ckpt,
                     every=c.checkpoint_every, log_dir=self.wd.path("logs"),
                     progress=self.progress, on_step=on_step)
      sums, count = eta_sum.numpy(), max(float(eta_count.numpy()), 1.0)
      eta[b] = {m: float(sums[m] / count) for m in self.task.active}
      curves[str(b)] = curve
      self.state.pop("partial_curve", None)
      self._mark_done(stage, time.time() - start,
                      eta={str(k): {str(m): v for m, v in e.items()} for k, e in eta.items()},
                      block_curves=curves)
    # Load the final state of the last block (also when every block was already done).
    tf.train.Checkpoint(target=target_model, filters=[t.filters for t in trainers]).restore(
        tf.train.latest_checkpoint(self.wd.path("ckpt", f"block{num_blocks}"))).expect_partial()
    filters = {t.block: t.filters for t in trainers if t.filters}
    return {"target": target, "model": target_model, "filters": filters, "eta": eta}

  # ---------------------------------------------------------------- step III
  def regrouped(self, teachers, generator, blocks, generator_trainer=None) -> keras.Model:
    """Step III: T_u regrouped by Eq. 18–20, then fine-tuned on generated images.

    With --adversarial_weight > 0 G keeps training during the fine-tuning (DFAD, beyond the
    paper); G, its filters and its optimizer are then saved in the fine-tuning checkpoint.
    """
    c = self.config
    num_blocks = len(blocks["target"].blocks)
    if c.branch_out is not None:
      if not 1 <= c.branch_out <= num_blocks:
        raise ConfigError(f"--branch_out={c.branch_out} must be in 1..{num_blocks}.")
      points = {m: c.branch_out for m in self.task.active}
    else:
      points = branch_out_blocks(blocks["eta"], self.task)
    target_net = regroup(blocks["target"], teachers, blocks["filters"], points, self.task)
    settings = dict(batch_size=c.batch_size, steps=c.finetune_steps,
                    learning_rate=c.target_lr * 0.1, weight_decay=c.weight_decay, jit=self.jit)
    source = self._source(generator, 20, teachers)
    extra = {}
    if c.adversarial_weight > 0 and generator_trainer is not None:
      trainer = AdversarialFinetuneTrainer(target_net, source, teachers, self.task,
                                           generator_trainer, weight=c.adversarial_weight,
                                           **settings).build()
      g = generator_trainer
      extra = dict(generator=g.generator, generator_filters=g.filters,
                   generator_optimizer=g.optimizer, generator_rng=g.rng)
      if g.aux:
        extra["generator_aux"] = g.aux
    else:
      trainer = FinetuneTrainer(target_net, source, teachers, self.task, **settings).build()
    ckpt = loop.StageCheckpoint(self.wd.path("ckpt", "finetune"), target_net=target_net,
                                optimizer=trainer.optimizer,
                                **self._source_state(trainer.source), **extra)
    start = time.time()
    if self._done("finetune"):
      ckpt.restore()
    else:
      if self.progress:
        print(f"[step III] regrouped T_u, branch-out blocks S_m = "
              f"{ {f'teacher{m + 1}': s for m, s in points.items()} }, "
              f"fine-tuning {c.finetune_steps} steps")
      loop.run_stage(trainer.step, stage="finetune", steps=c.finetune_steps, checkpoint=ckpt,
                     every=c.checkpoint_every, log_dir=self.wd.path("logs"),
                     progress=self.progress)
      self._mark_done("finetune", time.time() - start,
                      branch_out={str(m + 1): s for m, s in points.items()})
    return target_net

  def distilled(self, teachers, generator) -> keras.Model:
    """DAFL's second stage: plain distillation of a whole TargetNet on generated images.

    It gets the step budget of Steps II + III together (B × block_steps + finetune_steps),
    so the Table 1 rows compare methods, not budgets.
    """
    c = self.config
    pretrained = self.pretrained_target()
    model = build_resnet(c.arch, len(self.task.labels), self._input_shape(),
                         weights=self._imagenet(c.arch), name="target_net")
    if pretrained is not None:
      self._target_init(model, pretrained)
    steps = 4 * c.block_steps + c.finetune_steps
    trainer = FinetuneTrainer(model, self._source(generator, 20, teachers), teachers, self.task,
                              batch_size=c.batch_size, steps=steps, learning_rate=c.target_lr,
                              weight_decay=c.weight_decay, jit=self.jit).build()
    ckpt = loop.StageCheckpoint(self.wd.path("ckpt", "distill"), target_net=model,
                                optimizer=trainer.optimizer,
                                **self._source_state(trainer.source))
    start = time.time()
    if self._done("distill"):
      ckpt.restore()
      return model
    if self.progress:
      print(f"[dafl] distilling a TargetNet on generated images, {steps} steps")
    loop.run_stage(trainer.step, stage="distill", steps=steps, checkpoint=ckpt,
                   every=c.checkpoint_every, log_dir=self.wd.path("logs"),
                   progress=self.progress)
    self._mark_done("distill", time.time() - start)
    return model

  # ---------------------------------------------------------------- evaluation
  def evaluate(self, teachers, target_net) -> Dict:
    """Teacher and T_u AP on the real test split, both on the customized labels."""
    c = self.config
    start = time.time()
    test = dfka_data.load(c.dataset, "test", data_dir=c.data_dir, image_size=c.image_size,
                          batch_size=c.eval_batch_size)
    columns = [self.dataset_labels.index(name) for name in self.task.labels]
    teacher_fns = [tf.function(lambda x, t=t: t.tail(x, 0, training=False)["probs"])
                   for t in teachers]
    target_fn = tf.function(lambda x: target_net(x, training=False))
    scores_t, scores_u, labels, ignore = [], [], [], []
    total = dfka_data.num_examples(c.dataset, "test", c.data_dir)
    bar = keras.utils.Progbar(total, unit_name="image", verbose=1 if self.progress else 0)
    seen = 0
    for batch in test:
      probs = [fn(batch["image"]).numpy() for fn in teacher_fns]
      parts = [probs[m][:, self.task.teacher_cols[m]] for m in self.task.active]
      scores_t.append(np.concatenate(parts, axis=1)[:, self.task.order])
      scores_u.append(target_fn(batch["image"]).numpy())
      labels.append(batch["labels"].numpy()[:, columns])
      ignore.append(batch["ignore"].numpy()[:, columns])
      seen += len(labels[-1])
      bar.update(seen)
    scores_t, scores_u = np.concatenate(scores_t), np.concatenate(scores_u)
    labels, ignore = np.concatenate(labels), np.concatenate(ignore)
    ap_t = metrics.average_precision_per_label(scores_t, labels, ignore, kind="area")
    ap_u = metrics.average_precision_per_label(scores_u, labels, ignore, kind="area")
    out = {
        "labels": list(self.task.labels),
        "teacher_map": float(metrics.nanmean_ap(ap_t)[0]),
        "target_map": float(metrics.nanmean_ap(ap_u)[0]),
        "teacher_ap": dict(zip(self.task.labels, map(float, ap_t))),
        "target_ap": dict(zip(self.task.labels, map(float, ap_u))),
        "teacher_map_voc07": metrics.mean_ap(scores_t, labels, ignore, kind="voc07"),
        "target_map_voc07": metrics.mean_ap(scores_u, labels, ignore, kind="voc07"),
        "num_test_images": int(len(labels)),
    }
    if c.dataset.startswith("coco"):
      out["teacher_top3"] = metrics.topk_metrics(scores_t, labels, k=3)
      out["target_top3"] = metrics.topk_metrics(scores_u, labels, k=3)
    out["target_over_teacher"] = out["target_map"] / max(out["teacher_map"], 1e-12)
    self.state["times"]["evaluate"] = time.time() - start
    return out

  # ---------------------------------------------------------------- all stages
  def run(self) -> Dict:
    c = self.config
    t0 = time.time()
    generator, generator_trainer, blocks = None, None, {"eta": {}}
    with self.strategy.scope():
      teachers = self.teachers()
      if c.method == "teacher":
        target_net = teacher_ensemble(teachers, self.task)
      else:
        if c.method in ("dfka", "dafl"):
          generator_trainer = self.generator(teachers)
          generator = generator_trainer.generator
        if c.method == "dafl":
          target_net = self.distilled(teachers, generator)
        else:
          blocks = self.target_blocks(teachers, generator)
          target_net = self.regrouped(teachers, generator, blocks, generator_trainer)
    results = {
        "config": json.loads(c.to_json()),
        "method": c.method,
        "labels": list(self.task.labels),
        "teacher_labels": self.task.teacher_labels,
        "eta": {str(b): {f"teacher{m + 1}": v for m, v in e.items()}
                for b, e in blocks["eta"].items()},
        "branch_out": self.state.get("branch_out"),
        "params": {
            "teachers": [int(t.num_params()) for t in teachers],
            "teachers_total": int(sum(t.num_params() for t in teachers)),
            "target_net": int(target_net.count_params()),
            "generator": int(generator.count_params()) if generator is not None else 0,
        },
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "jit": self.jit,
    }
    from dfka_tf import report  # pylint: disable=g-import-not-at-top
    if generator is not None:
      report.save_generated_grid(
          generator, self.wd.path("generated.png"), seed=c.seed,
          real=self._real_images() if c.evaluate else None,
          pool=pool_grid(self._pool.numpy()) if self._pool is not None else None)
    report.save_block_curves(self.state.get("block_curves", {}), self.wd.path("block_losses.png"))
    if c.evaluate and not c.teacher_paths:
      results.update(self.evaluate(teachers, target_net))
    if c.export:
      from dfka_tf import export  # pylint: disable=g-import-not-at-top
      start = time.time()
      export.export_target_net(target_net, list(self.task.labels), self.wd.path("target_net"))
      self.state["times"]["export"] = time.time() - start
    results["stage_times"] = dict(self.state["times"])
    results["total_time"] = float(sum(self.state["times"].values()))
    results["wall_time_this_process"] = time.time() - t0
    self.wd.write_json("progress.json", self.state)
    self.wd.write_json("results.json", results)
    return results

  def _real_images(self, n=16):
    c = self.config
    test = dfka_data.load(c.dataset, "test", data_dir=c.data_dir, image_size=c.image_size,
                          batch_size=n)
    return next(iter(test))["image"].numpy()


def run(config: RunConfig, *, progress: bool = True, resume: bool = False,
        overwrite: bool = False) -> Dict:
  """Runs every stage of `config`; returns (and writes) results.json's content."""
  return Amalgamation(config, progress=progress, resume=resume, overwrite=overwrite).run()
