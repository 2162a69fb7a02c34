"""Your own labelled data to score teachers and TargetNets on (`--eval_data`).

Two forms:

- `<file>.npz` holding `x` [N, H, W, 3] (uint8, or float in [0, 1]), `y` [N, C] multi-hot and
  `labels` [C] names;
- a TFDS `name:split` (prepared beforehand; never downloaded). dfka_tf's datasets (scenes20,
  voc2007, coco2014, by our name or TFDS's, e.g. `voc/2007:test`) are read by their own
  pipelines; any other TFDS dataset needs an `image` feature and a `ClassLabel` feature
  (`labels`, `label`, or `objects/label`).

Label names are matched to the model's as `--labels` are (any case and spacing, aliases).
"""

import dataclasses
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from dfka_tf.data import labels as labels_lib
from dfka_tf.data import loaders
from dfka_tf.errors import ConfigError

# The datasets' own pipeline end (unit range, resize, batch, prefetch).
_finish = loaders._finish  # pylint: disable=protected-access


@dataclasses.dataclass
class EvalData:
  """A finite, batched tf.data pipeline of {"image", "labels", "ignore"} and what it covers.

  Attributes:
    dataset: the pipeline (images resized to the model's size, in [0, 1]).
    columns: per requested label, its column in the pipeline's "labels".
    name: what was asked for (the file or name:split), for results.json.
    topk: 3 for COCO (its top-3 metrics), else None.
  """
  dataset: tf.data.Dataset
  columns: List[int]
  name: str
  topk: Optional[int] = None


def _match(wanted: Sequence[str], available: Sequence[str], where: str) -> List[int]:
  """Columns of `available` holding each of `wanted` (names matched as --labels are)."""
  available = [str(a) for a in available]
  columns, missing = [], []
  for name in wanted:
    try:
      columns.append(available.index(labels_lib.resolve_labels([name], available)[0]))
    except ConfigError:
      missing.append(name)
  if missing:
    raise ConfigError(f"{where} has no label {', '.join(missing)} (it has "
                      f"{', '.join(available[:30])}{' ...' if len(available) > 30 else ''}); "
                      "score on data labelled with the model's labels, or choose --labels "
                      "it has.")
  return columns


def _npz(path: Path, labels, *, image_size, batch_size) -> EvalData:
  try:
    with np.load(path, allow_pickle=False) as f:
      content = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise ConfigError(f"--eval_data={path} is not a readable .npz ({e}); write it with "
                      "np.savez(path, x=images, y=multi_hot, labels=names)") from None
  missing = [k for k in ("x", "y", "labels") if k not in content]
  if missing:
    raise ConfigError(f"--eval_data={path} lacks {', '.join(missing)} (it holds "
                      f"{', '.join(sorted(content)) or 'nothing'}); write x (images), y "
                      "(multi-hot) and labels (names) with np.savez")
  return from_arrays(content["x"], content["y"], content["labels"], labels,
                     image_size=image_size, batch_size=batch_size,
                     name=f"--eval_data={path}", source=str(path))


def from_arrays(x, y, names, labels: Sequence[str], *, image_size: int, batch_size: int,
                name: str = "eval data", source: str = "arrays") -> EvalData:
  """Images `x` [N, H, W, 3] (uint8, or float in [0, 1]) with multi-hot `y` [N, C] over
  label `names` (C), scored on the columns of `labels`: an .npz's content, or arrays a
  Python caller holds (`dfka_tf.evaluate`). `name` is how errors call them."""
  images = loaders.uint8_images(x, name)
  y = np.asarray(y)
  names = [str(n) for n in np.asarray(names).reshape(-1)]
  if y.shape != (len(images), len(names)):
    raise ConfigError(f"{name}: y has shape {y.shape}, but x holds {len(images)} "
                      f"images and labels {len(names)} names; y must be [{len(images)}, "
                      f"{len(names)}] multi-hot")
  columns = _match(labels, names, name)
  ds = tf.data.Dataset.from_tensor_slices(
      {"image": images, "labels": y.astype(np.float32),
       "ignore": np.zeros(y.shape, np.float32)})
  ds = _finish(ds, image_size=image_size, batch_size=batch_size, shuffle=False, seed=0,
               augment=False, cache=False, drop_remainder=False, cache_ok=False)
  return EvalData(ds, columns, source)


def _get(features, key):
  """features[key] of a FeaturesDict (which has no .get), or None."""
  try:
    return features[key] if key in features.keys() else None
  except (AttributeError, TypeError):
    return None


def _label_feature(features):
  """(path, ClassLabel, multi) of the label feature of a TFDS dataset, or None."""
  for key in ("labels", "label"):
    feature = _get(features, key)
    if isinstance(feature, tfds.features.ClassLabel):
      return (key,), feature, False
    if isinstance(feature, tfds.features.Sequence) and isinstance(
        feature.feature, tfds.features.ClassLabel):
      return (key,), feature.feature, True
  objects = _get(features, "objects")
  if objects is not None:
    label = _get(getattr(objects, "feature", objects), "label")
    if isinstance(label, tfds.features.ClassLabel):
      return ("objects", "label"), label, True
  return None


def _tfds_generic(name, split, spec, labels, *, data_dir, image_size, batch_size) -> EvalData:
  builder = loaders.prepared_builder(spec, name, split, flag="--eval_data", data_dir=data_dir)
  found = _label_feature(builder.info.features)
  if found is None or _get(builder.info.features, "image") is None:
    raise ConfigError(f"--eval_data={spec}: {name} has no 'image' feature with a ClassLabel "
                      "'labels', 'label' or 'objects/label'; write your data as an .npz")
  path, feature, multi = found
  width = feature.num_classes

  def convert(ex):
    value = ex
    for key in path:
      value = value[key]
    hot = tf.one_hot(value, width) if multi else tf.one_hot(value, width)[None]
    multi_hot = tf.reduce_max(tf.concat([hot, tf.zeros([1, width])], 0), axis=0)
    return {"image": ex["image"], "labels": multi_hot, "ignore": tf.zeros([width])}

  ds = builder.as_dataset(split=split, shuffle_files=False).map(convert)
  columns = _match(labels, feature.names, f"--eval_data={spec}")
  ds = _finish(ds, image_size=image_size, batch_size=batch_size, shuffle=False, seed=0,
               augment=False, cache=False, drop_remainder=False, cache_ok=False)
  return EvalData(ds, columns, spec)


def load_eval_data(spec: str, labels: Sequence[str], *, image_size: int, batch_size: int,
                   data_dir: Optional[str] = None) -> EvalData:
  """The data `spec` names, with the columns of `labels` (the model's label names).

  Raises:
    ConfigError: the file or dataset does not hold images and labels as described, or lacks
      one of `labels`.
    DataNotFoundError: the TFDS dataset is not prepared (checked in seconds, no download).
  """
  spec = str(spec)
  path = Path(spec)
  if spec.endswith(".npz"):
    if not path.is_file():
      raise ConfigError(f"--eval_data={spec} not found; pass an .npz holding x, y, labels, "
                        "or a TFDS name:split")
    return _npz(path, labels, image_size=image_size, batch_size=batch_size)
  if ":" not in spec:
    raise ConfigError(f"--eval_data={spec} is neither an .npz file nor a TFDS name:split "
                      "(e.g. voc2007:test)")
  name, split = spec.rsplit(":", 1)
  name = loaders.own_name(name)
  if name in loaders.TFDS_NAMES:
    if split not in loaders.split_names(name):
      raise ConfigError(f"--eval_data={spec}: {name} has no split {split!r}; use one of "
                        f"{', '.join(loaders.split_names(name))}")
    columns = _match(labels, labels_lib.label_names(name), f"--eval_data={spec}")
    ds = loaders.load(name, split, data_dir=data_dir, image_size=image_size,
                      batch_size=batch_size)
    return EvalData(ds, columns, spec, topk=3 if name.startswith("coco") else None)
  return _tfds_generic(name, split, spec, labels, data_dir=data_dir, image_size=image_size,
                       batch_size=batch_size)
