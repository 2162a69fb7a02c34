"""dfka_tf from Python: `amalgamate` teachers into one network, `evaluate` a model on data.

  import dfka_tf
  result = dfka_tf.amalgamate([teacher_a, teacher_b],
                              teacher_labels=[["cat", "dog"], ["car", "bus"]],
                              labels=["dog", "car"], preset="quick")
  result.model.predict(images)          # (n, 2) probabilities over result.labels
  dfka_tf.evaluate(result.model, (x, y, ["cat", "dog", "car", "bus"]))
  result.export("target_net", tflite=True)

`amalgamate` runs the stages `python -m experiments.run` runs, through the same code
(`pipeline.execute`), with every check before work: the CLI is a thin caller of
`config_for` and `run_config` below. Options go by the flags' short names
(docs/configuration.md), or by dotted path through `set={...}`.
"""

import dataclasses
import os
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from dfka_tf import config as config_lib
from dfka_tf import options as options_lib
from dfka_tf.errors import ConfigError

# A keras.Model or the path of a .keras file (keras is imported only when a run starts).
TeacherLike = Union[str, os.PathLike, object]


def config_for(*, dataset: str = "scenes20", method: str = "dfka", preset=None,
               teacher_paths: Sequence[str] = (), workdir: Optional[str] = None,
               overrides: Optional[Dict] = None,
               none_is_a_value: bool = False) -> config_lib.RunConfig:
  """The RunConfig of a run: the dataset's preset (your own teachers' when `teacher_paths`
  are given: their image size picks it), then `preset`, then `overrides` ({short name or
  dotted path: value}; None skipped unless `none_is_a_value`, as `RunConfig.build`). The
  default workdir is runs/<dataset>-seed<seed>."""
  overrides = dict(overrides or {})
  teacher_paths = [str(p) for p in teacher_paths]
  if teacher_paths:
    overrides[options_lib.BY_NAME["teacher"].path] = teacher_paths
    overrides["data.num_teachers"] = len(teacher_paths)
    if "data.image_size" not in overrides:  # The teachers' scale picks the preset.
      from dfka_tf.models.teacher_files import input_size  # pylint: disable=g-import-not-at-top
      overrides["data.image_size"] = input_size(teacher_paths[0])
    if overrides.get("eval.evaluate") and not overrides.get("eval.data"):
      raise ConfigError("your own --teacher files come with no dataset to score them on; "
                        "pass --eval_data=<file.npz or tfds_name:split>.")
  dataset = "byo" if teacher_paths else dataset
  if workdir:
    overrides["runtime.workdir"] = str(workdir)
  config = config_lib.RunConfig.build(dataset, preset=preset, method=method,
                                      overrides=overrides, none_is_a_value=none_is_a_value)
  if not workdir:
    config = config.replace(workdir=os.path.join("runs", f"{dataset}-seed{config.seed}"))
  return config


@dataclasses.dataclass
class Amalgamation:
  """A finished run, in memory and in its workdir.

  Attributes:
    model: T_u, a keras.Model: images [n, H, W, 3] float in [0, 1] -> probabilities
      [n, len(labels)], in the order of `labels`.
    targetnet: the TargetNet alone (no teacher block): as Step II left it for the paper's
      Steps II–III, the distilled network itself for one distilled end to end; None where
      there is none (--method=teacher).
    labels: the customized label set Y_cst, in the models' output order.
    results: results.json's content (scores where the run had data to score on).
    workdir: where the run's checkpoints, logs and results.json are.
    config: the run's RunConfig.
  """
  model: object
  targetnet: Optional[object]
  labels: List[str]
  results: Dict
  workdir: str
  config: config_lib.RunConfig
  _finished: object = dataclasses.field(repr=False, default=None)

  def generated(self, n: int = 16, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """n of the run's synthetic images, float32 [n, H, W, 3] in [0, 1], and the teachers'
    probabilities for them over `labels` [n, len(labels)].

    The images are those the student learnt from: the bank's (Forge), the pool's, or new
    draws of Step I's G (latent codes from `seed`, the run's own streams untouched).
    Raises ValueError for a run that made none (real images, or the teachers themselves).
    """
    from dfka_tf.stages.images import synthetic_images  # pylint: disable=g-import-not-at-top
    from dfka_tf.train.teacher_pass import predictions_over_task  # pylint: disable=g-import-not-at-top
    made = self._finished.made
    batch = synthetic_images(self.config, made.get("images"), n, seed=seed)
    teachers, task = made["teachers"], self._finished.inputs.task
    probs = predictions_over_task(teachers, task, batch)
    return batch.numpy().astype(np.float32), probs.numpy().astype(np.float32)

  def export(self, path: str, *, tflite: bool = False, calibration_images: int = 512) -> Dict:
    """Writes T_u as the SavedModel the CLI writes (`export.export_target_net`) at `path`.

    With `tflite`, also `path`/target_net.tflite (float) and target_net_int8.tflite, fully
    integer, calibrated on `calibration_images` of the run's own synthetic images
    (`generated`), never on real data (beyond the paper). Returns {file: size in bytes}.
    """
    from dfka_tf import export  # pylint: disable=g-import-not-at-top
    export.export_target_net(self.model, self.labels, path)
    sizes = {"saved_model": export.saved_model_bytes(path)}
    if tflite:
      from dfka_tf.quantize import write_tflite  # pylint: disable=g-import-not-at-top
      calibration, _ = self.generated(calibration_images)
      sizes.update(write_tflite(self.model, path, calibration))
    return sizes


def _option_overrides(options: Dict) -> Dict:
  """{dotted path: value} of options given by short name (or dotted path)."""
  return {options_lib.resolve(k).path: v for k, v in options.items()}


def _teacher_files(teachers: Sequence[TeacherLike], teacher_labels, folder: str) -> List[str]:
  """Paths of the teachers: files as given; in-memory models saved as `.keras` with their
  labels in `folder` (outside the workdir, which --overwrite clears)."""
  import keras  # pylint: disable=g-import-not-at-top
  from dfka_tf.models.teacher_files import save_teacher  # pylint: disable=g-import-not-at-top
  if teacher_labels is not None and len(teacher_labels) != len(teachers):
    raise ConfigError(f"teacher_labels holds {len(teacher_labels)} lists for "
                      f"{len(teachers)} teachers; give one list of label names per teacher.")
  paths = []
  for m, teacher in enumerate(teachers):
    names = teacher_labels[m] if teacher_labels is not None else None
    if isinstance(teacher, (str, os.PathLike)):
      if names is not None:
        raise ConfigError(f"teacher {m + 1} is a file ({teacher}): its labels come from "
                          f"{teacher}.labels.json; pass None for it in teacher_labels.")
      paths.append(str(teacher))
    elif isinstance(teacher, keras.Model):
      if names is None:
        raise ConfigError(f"teacher {m + 1} ({teacher.name}) is an in-memory model: pass its "
                          "label names, teacher_labels=[[...], ...] (one list per teacher).")
      path = os.path.join(folder, f"teacher{m + 1}.keras")
      save_teacher(teacher, path, label_names=[str(n) for n in names])
      paths.append(path)
    else:
      raise ConfigError(f"teacher {m + 1} is a {type(teacher).__name__}; pass keras.Model "
                        "objects or paths to .keras files.")
  return paths


def run_config(config: config_lib.RunConfig, *, progress: bool = True, resume: bool = False,
               overwrite: bool = False) -> Amalgamation:
  """Runs `config` (`pipeline.execute`) and wraps what it made: the CLI's path."""
  from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
  finished = pipeline.execute(config, progress=progress, resume=resume, overwrite=overwrite)
  return _wrap(finished)


def _wrap(finished) -> Amalgamation:
  from dfka_tf.stages import student  # pylint: disable=g-import-not-at-top
  run, made = finished.run, finished.made
  task = finished.inputs.task
  mode = run.config.student.mode
  if not finished.results:  # A non-chief worker of --strategy=multi_worker: the chief's run.
    return Amalgamation(model=None, targetnet=None, labels=list(task.labels), results={},
                        workdir=run.config.workdir, config=run.config, _finished=finished)
  if mode == "blockwise":
    targetnet = student.step2_target_net(run, task, len(made["blocks"]["target"].blocks))
  elif mode in ("distill", "joint"):
    targetnet = made["target_net"]
  else:
    targetnet = None
  return Amalgamation(model=made["target_net"], targetnet=targetnet, labels=list(task.labels),
                      results=finished.results, workdir=run.config.workdir,
                      config=run.config, _finished=finished)


def amalgamate(teachers: Optional[Sequence[TeacherLike]] = None, *,
               teacher_labels: Optional[Sequence[Optional[Sequence[str]]]] = None,
               labels: Optional[Sequence[str]] = None, workdir: Optional[str] = None,
               progress: bool = True, dataset: str = "scenes20", method: str = "dfka",
               preset=None, resume: bool = False, overwrite: bool = False,
               set: Optional[Dict] = None, **options) -> Amalgamation:  # pylint: disable=redefined-builtin
  """Amalgamates `teachers` into one network for `labels`, with no data: Steps I–III.

  Args:
    teachers: keras.Model objects and/or paths to `.keras` files (each with its
      `.labels.json`), whose block ends dfka_tf finds as it does for --teacher files
      (docs/bring_your_own_teachers.md). None: `dataset`'s own teachers, trained or loaded
      as `python -m experiments.run --dataset=...` does.
    teacher_labels: one list of label names per teacher (None for a file's: it has its
      `.labels.json`).
    labels: the customized label set Y_cst (default: every teacher label).
    workdir: the run's directory (default: a new temporary one, printed). In-memory
      teachers are saved beside it, in `<workdir>-teachers/`.
    progress: progress bars and stage lines.
    dataset: with `teachers=None`, scenes20, voc2007 or coco2014.
    method, preset, resume, overwrite: as the CLI's flags.
    set: {dotted path: value}, as --set.
    **options: any option by its flag's short name (docs/configuration.md), e.g.
      `generator_steps=5`, `forge=True`, `eval_data="test.npz"`.

  Returns:
    an `Amalgamation`: `.model`, `.targetnet`, `.labels`, `.results`, `.generated(n)`,
    `.export(path)`.

  Raises:
    ConfigError (and the other `dfka_tf.errors`): the CLI's checks, before any work.
  """
  overrides = _option_overrides(options)
  overrides.update(_option_overrides(set or {}))
  if labels is not None:
    if isinstance(labels, str):
      raise ConfigError(f"labels={labels!r} is one string; pass a list of label names.")
    overrides[options_lib.resolve("labels").path] = [str(n) for n in labels]
  if workdir is None:
    workdir = os.path.join(tempfile.mkdtemp(prefix="dfka_"), "run")
    if progress:
      print(f"[dfka_tf] workdir: {workdir}")
  workdir = str(workdir)
  paths = []
  if teachers is not None:
    if isinstance(teachers, (str, os.PathLike)) or not len(teachers):
      raise ConfigError("teachers must be a list of keras.Model objects or .keras paths (at "
                        "least one).")
    paths = _teacher_files(list(teachers), teacher_labels, workdir.rstrip("/") + "-teachers")
  elif teacher_labels is not None:
    raise ConfigError("teacher_labels names the labels of in-memory teachers; pass teachers "
                      "too.")
  # An option passed here as None is a choice (`pretrain=None`: fresh weights), not an
  # unset flag.
  config = config_for(dataset=dataset, method=method, preset=preset, teacher_paths=paths,
                      workdir=workdir, overrides=overrides, none_is_a_value=True)
  return run_config(config, progress=progress, resume=resume, overwrite=overwrite)


def evaluate(model, data, *, batch_size: int = 64, data_dir: Optional[str] = None,
             labels: Optional[Sequence[str]] = None, progress: bool = False) -> Dict:
  """mAP and AP per label of `model` on labelled `data`: the figures of
  `python -m experiments.evaluate`.

  Args:
    model: a keras.Model (images float in [0, 1] -> probabilities), an `Amalgamation`, the
      directory of an export (`<workdir>/target_net`), or a `.tflite` file of
      --export_tflite (or a `quantize.TFLiteModel`).
    data: an .npz path (x, y, labels), a TFDS `name:split` (e.g. "voc2007:test"), or a tuple
      (x, y, label_names) of arrays: x [N, H, W, 3] uint8 or float in [0, 1], y multi-hot.
    labels: the model's output label names (an Amalgamation's and an export's are known;
      a keras.Model's and a TFLite model's are not).

  Returns:
    {"map", "map_voc07", "ap": {label: AP}, "num_images", "labels"}.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from dfka_tf.data.eval_data import from_arrays, load_eval_data  # pylint: disable=g-import-not-at-top
  from dfka_tf.eval import evaluate as evaluate_fn  # pylint: disable=g-import-not-at-top
  from dfka_tf.export import load_export, score_summary  # pylint: disable=g-import-not-at-top
  if isinstance(model, Amalgamation):
    labels, model = labels or model.labels, model.model
  if isinstance(model, (str, os.PathLike)) and str(model).endswith(".tflite"):
    from dfka_tf.quantize import TFLiteModel  # pylint: disable=g-import-not-at-top
    if not os.path.isfile(str(model)):
      raise ConfigError(f"{model} not found; pass a .tflite file written by --export_tflite.")
    with open(str(model), "rb") as f:
      model = TFLiteModel(f.read())
  if isinstance(model, (str, os.PathLike)):
    predict, names, size = load_export(str(model))
    labels = labels or names
  elif labels is None:
    raise ConfigError("evaluate(model, data) needs labels=[...]: the names of the model's "
                      "outputs, in order.")
  elif not hasattr(model, "input_shape"):  # A TFLiteModel takes the batches as they come.
    predict, size = model, int(model.image_shape[0])
  else:
    size = int(model.input_shape[1])
    predict = tf.function(lambda x: _probs(model(x, training=False)))
  labels = [str(n) for n in labels]
  if isinstance(data, tuple):
    if len(data) != 3:
      raise ConfigError("data as arrays is a tuple (x, y, label_names).")
    loaded = from_arrays(*data, labels, image_size=size, batch_size=batch_size,
                         name="evaluate(data=(x, y, label_names))")
  else:
    loaded = load_eval_data(str(data), labels, image_size=size, batch_size=batch_size,
                            data_dir=data_dir)
  scores = evaluate_fn(predict, loaded.dataset, label_indices=loaded.columns,
                       topk=loaded.topk, progress=progress)
  return score_summary(scores, labels, loaded.topk)


def _probs(out):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.cast(out["probs"] if isinstance(out, dict) else out, tf.float32)
