"""The inputs of a run (labels, teachers) checked, and the stages of the pretrained start and
the teachers: everything the data-free steps build on.

`check_inputs` runs every check that can fail fast before the workdir is touched.
"""

import dataclasses
import os
import shutil
from typing import List, Optional

import keras
import tensorflow as tf

from dfka_tf import data as dfka_data
from dfka_tf import distribute
from dfka_tf.config import RunConfig
from dfka_tf.data.unlabeled import check_unlabeled
from dfka_tf.errors import ConfigError
from dfka_tf.models import blocknet, teacher_files
from dfka_tf.models.filters import built_block_filters
from dfka_tf.models.generator import GroupStackGenerator, aligned_depths
from dfka_tf.models.regroup import check_param_budget, regroup_sizes
from dfka_tf.models.resnet import build_resnet
from dfka_tf.models.target import build_target, check_target, input_shape, target_blocknet
from dfka_tf.stages import cache
from dfka_tf.stages.base import BACKBONE_FILE, Parts, Run, Stage, run_stages
from dfka_tf.task import TaskMap
from dfka_tf.train.teachers import TeacherTrainer


@dataclasses.dataclass
class Inputs:
  """What a run is about: the customized task and where its teachers come from.

  Attributes:
    config: the config with what the inputs decide filled in (labels resolved to the
      dataset's names; the image size of your own teachers).
    task: Y_cst and the task-level filters g_m.
    dataset_labels: the dataset's label names (None with your own teachers).
    teacher_splits: each teacher's labels when dfka_tf trains them.
    loaded: your own teachers (BlockNets), loaded and checked; None otherwise.
  """
  config: RunConfig
  task: TaskMap
  dataset_labels: Optional[List[str]] = None
  teacher_splits: Optional[List[List[str]]] = None
  loaded: Optional[List[blocknet.BlockNet]] = None


def check_inputs(config: RunConfig) -> Inputs:
  """Resolves labels and teachers; raises a DfkaError before anything is written."""
  c = config
  if c.data.teacher_paths:
    teachers = [teacher_files.load_teacher(p, block_outputs=list(c.data.teacher_blocks) or None)
                for p in c.data.teacher_paths]
    blocknet.check_compatible(teachers, depths=range(len(teachers[0].blocks)))
    # K divides B, and each generator group can grow its input into its teacher shape.
    GroupStackGenerator.check_shapes(teachers[0].feature_shapes, c.generator.groups)
    task = TaskMap.build([t.label_names for t in teachers],
                         None if c.data.labels is None else list(c.data.labels))
    # The images the teachers take decide the generator's output size.
    c = c.replace(image_size=int(teachers[0].feature_shapes[0][0]))
    if c.student.mode != "ensemble":  # The TargetNet, built once here to check its blocks.
      model = build_target(c, teachers[0], len(task.labels), "target", backbone=None)
      check_target(c, teachers, target_blocknet(c, teachers[0], model, task.labels))
    inputs = Inputs(c, task, loaded=teachers)
  else:
    aligned_depths(c.data.num_blocks, c.generator.groups)
    names = dfka_data.label_names(c.data.dataset)
    splits = dfka_data.teacher_label_split(c.data.dataset, c.data.num_teachers)
    if c.data.labels is not None:
      c = c.replace(labels=tuple(dfka_data.resolve_labels(list(c.data.labels), names)))
    task = TaskMap.build(splits, c.data.labels)
    if c.eval.evaluate and c.eval.split not in dfka_data.split_names(c.data.dataset):
      raise ConfigError(f"--eval_split={c.eval.split}: {c.data.dataset} has no such split; "
                        f"use one of {dfka_data.split_names(c.data.dataset)} other than "
                        "train, or --noevaluate.")
    dfka_data.check_prepared(c.data.dataset, c.data.data_dir)
    if c.source.kind == "dataset" and c.source.dataset:
      dfka_data.check_prepared(c.source.dataset, c.data.data_dir)
    inputs = Inputs(c, task, dataset_labels=names, teacher_splits=splits)
  forge = c.source.forge
  if forge.enabled and forge.max_labels > len(task.labels):  # Known once teachers are read.
    raise ConfigError(f"--forge_max_labels={forge.max_labels} is more than the "
                      f"{len(task.labels)} customized labels; use 1..{len(task.labels)}.")
  if c.source.unlabeled:  # Seconds: the KA row's images exist and are images.
    check_unlabeled(c.source.unlabeled, batch_size=c.runtime.batch_size,
                    data_dir=c.data.data_dir)
  if c.student.param_budget is not None:  # Seconds: no run trains for a T_u that cannot fit.
    check_budget(c, inputs)
  if c.eval.evaluate and c.eval.data:
    from dfka_tf.stages.evaluation import eval_data  # pylint: disable=g-import-not-at-top
    eval_data(c, task.labels)  # Reads the file or checks TFDS: seconds, before any training.
  if pretrains_on_dataset(c):
    if c.data.pretrain not in dfka_data.DATASETS or not dfka_data.label_names(c.data.pretrain):
      raise ConfigError(f"--pretrain={c.data.pretrain} is not a labelled dataset to train a "
                        "backbone on; use imagenet (resnet50/101), a labelled dataset such as "
                        "scenes20_similar, or None.")
    if cache.find(c) is None:  # A cached backbone needs no pretraining data.
      dfka_data.check_prepared(c.data.pretrain, c.data.data_dir)
  return inputs


def check_budget(config: RunConfig, inputs: Inputs):
  """--target_param_budget against the networks' shapes (no weights needed): raises
  ConfigError, naming the smallest T_u, when no branch-out choice fits."""
  c, task = config, inputs.task
  teachers = inputs.loaded or [
      blocknet.split_model(build_resnet(c.data.arch, len(labels), input_shape(c),
                                        name=f"teacher{m + 1}"), label_names=labels)
      for m, labels in enumerate(inputs.teacher_splits)]
  template = inputs.loaded[0] if inputs.loaded else None
  target = target_blocknet(c, template, build_target(c, template, len(task.labels), "target",
                                                     backbone=None), task.labels)
  filters = dict(enumerate(built_block_filters(target, len(teachers), kind=c.student.filter),
                           start=1))
  check_param_budget(c.student.param_budget, regroup_sizes(target, teachers, filters, task),
                     task)


def classifier_parts(run: Run, model, dataset: str, columns, *, steps: int, seed: int) -> Parts:
  """Supervised multi-label training of `model` on `dataset`'s train split."""
  c = run.config
  trainer = TeacherTrainer(model, columns, steps=steps, learning_rate=c.data.teacher_lr,
                           weight_decay=c.runtime.weight_decay, jit=run.jit)
  train = dfka_data.load(dataset, "train", data_dir=c.data.data_dir,
                         image_size=c.data.image_size, batch_size=c.runtime.batch_size,
                         shuffle=True, seed=seed, augment=True, drop_remainder=True).repeat()
  iterator = iter(train)
  trainer.optimizer.build(model.trainable_variables)  # Slots exist before any restore.
  return Parts(lambda: trainer.step(next(iterator)),
               dict(model=model, optimizer=trainer.optimizer, data=iterator))


def teachers(run: Run, inputs: Inputs) -> List[blocknet.BlockNet]:
  """Stage teacher<m>: trains (or loads) every teacher; returns them frozen."""
  if inputs.loaded is not None:
    out = inputs.loaded
  else:
    backbone(run)  # Its own stage first, so its time is not counted in teacher1's.
    out = [None] * run.config.data.num_teachers
    run_stages(run, [_teacher_stage(run, inputs, m, out) for m in range(len(out))])
  for t in out:
    t.freeze()
  return out


def _teacher_stage(run: Run, inputs: Inputs, m: int, out: List) -> Stage:
  c = run.config
  name = f"teacher{m + 1}"
  path = run.wd.path("teachers", f"{name}.keras")
  labels = inputs.teacher_splits[m]
  built = {}

  def setup():
    model = fresh_or_pretrained(run, len(labels), name)
    built["model"] = model
    columns = [inputs.dataset_labels.index(n) for n in labels]
    return classifier_parts(run, model, c.data.dataset, columns, steps=c.data.teacher_steps,
                            seed=c.seed + m)

  def load():
    out[m] = teacher_files.load_teacher(path)

  def finish():
    # A teacher file's config does not keep the run's synchronized batch norm.
    distribute.sync_batchnorm(built["model"], synchronized=False)
    out[m] = blocknet.split_model(built["model"], label_names=labels)
    teacher_files.save_teacher(out[m], path)

  return Stage(name, c.data.teacher_steps, setup,
               summary=f"[{name}] training on {len(labels)} labels for "
                       f"{c.data.teacher_steps} steps",
               load=load, finish=finish, output=path)


def backbone(run: Run) -> Optional[keras.Model]:
  """The pretrained start of §5.1, shared by the teachers and the TargetNet; None when off.

  The paper fine-tunes its teachers from ImageNet ResNet-101s and starts the TargetNet from
  ImageNet too. --pretrain=imagenet builds that network (Keras' weights). Where ImageNet is
  missing (the embedded benchmark), --pretrain=D trains data.arch on every label of D first,
  stage "pretrain" (scenes20_similar for scenes20: 20 other shapes, none of the teachers'
  classes, so the TargetNet never sees the teachers' data). The backbone is trained once
  per recipe and seed: a cached one (stages/cache.py) stands in for the stage, and the
  suites share it between rows like the teachers.
  """
  c = run.config
  if c.data.pretrain is None:
    return None
  if run.backbone is not None:
    return run.backbone
  if c.data.pretrain == "imagenet":
    run.backbone = build_resnet(c.data.arch, 1000, input_shape(c), weights="imagenet",
                                name="pretrain")
    return run.backbone
  path = run.wd.path(*BACKBONE_FILE)
  names = dfka_data.label_names(c.data.pretrain)
  built = {}
  # Off on a cluster: every worker must take the same path, and each sees only its own disk.
  cached_ok = distribute.num_workers() == 1
  replicas = tf.distribute.get_strategy().num_replicas_in_sync
  cached = None if run.done("pretrain") or not cached_ok else cache.find(c, replicas)
  if cached is not None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(cached, path)
    run.mark_done("pretrain", 0.0, pretrain_cached=cached)
    run.say(f"[pretrain] backbone of this recipe and seed from the cache: {cached} "
            "(--pretrain_cache=none trains it)")

  def setup():
    built["model"] = build_resnet(c.data.arch, len(names), input_shape(c), name="pretrain")
    return classifier_parts(run, built["model"], c.data.pretrain, list(range(len(names))),
                            steps=c.data.pretrain_steps, seed=c.seed + 500)

  def load():
    built["model"] = build_resnet(c.data.arch, len(names), input_shape(c), name="pretrain")
    built["model"].load_weights(path)

  def finish():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    built["model"].save_weights(path)
    if cached_ok:
      cache.store(c, path, replicas)

  run_stages(run, [Stage("pretrain", c.data.pretrain_steps, setup,
                         summary=f"[pretrain] backbone on {c.data.pretrain} ({len(names)} "
                                 f"labels) for {c.data.pretrain_steps} steps",
                         load=load, finish=finish, output=path)])
  run.backbone = built["model"]
  return run.backbone


def pretrains_on_dataset(config: RunConfig) -> bool:
  """Whether the pretrained start is stage "pretrain" (a backbone trained on a dataset, or
  the cached one of its recipe), not Keras' ImageNet weights or none."""
  return config.data.pretrain not in (None, "imagenet")


def fresh_or_pretrained(run: Run, num_labels: int, name: str) -> keras.Model:
  """data.arch with `num_labels` outputs, from the pretrained start where there is one
  (every layer but the classifier), else from fresh weights."""
  return build_target(run.config, run.template, num_labels, name, backbone=backbone(run))
