"""tf.data pipelines of canonical examples {"image", "labels", "ignore"}.

"image" is float32 RGB in [0, 1] (each teacher normalises its own input), "labels" a float32
multi-hot vector, "ignore" 1 where a label must not count in evaluation (VOC's
difficult-only objects, as the VOC devkit does).

Datasets: scenes20 (embedded, rendered locally), scenes20_similar / scenes20_different (its
companions), voc2007 and coco2014 through TFDS (prepared beforehand: never downloaded here),
and COCO from an official annotation JSON with pycocotools (`load_coco_json`).
"""

import os
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from dfka_tf.data import builders  # pylint: disable=unused-import  (registers the builders)
from dfka_tf.data import labels as labels_lib
from dfka_tf.errors import ConfigError, DataNotFoundError

# Our dataset name -> (TFDS name, {our split: TFDS split}). "validation" is for tuning
# (--eval_split=validation), "test" for reporting.
_SCENES_SPLITS = {"train": "train", "validation": "validation", "test": "test"}
TFDS_NAMES = {
    "scenes20": ("scenes20/32", _SCENES_SPLITS),
    "scenes20_64": ("scenes20/64", _SCENES_SPLITS),
    "scenes20_colour": ("scenes20_colour/32", _SCENES_SPLITS),
    "scenes20_colour_64": ("scenes20_colour/64", _SCENES_SPLITS),
    "scenes20_similar": ("scenes20_similar/32", {"train": "train"}),
    "scenes20_similar_64": ("scenes20_similar/64", {"train": "train"}),
    "scenes20_different": ("scenes20_different/32", {"train": "train"}),
    "scenes20_different_64": ("scenes20_different/64", {"train": "train"}),
    # Teachers train on VOC trainval and COCO train; evaluation uses VOC test, COCO val.
    # VOC's validation images are part of the teachers' trainval, never of the TargetNet's
    # data (it sees none); COCO keeps no split apart for tuning.
    "voc2007": ("voc/2007", {"train": "train+validation", "validation": "validation",
                             "test": "test"}),
    "coco2014": ("coco/2014", {"train": "train", "test": "validation"}),
}

_PREPARE_HINT = {
    "voc2007": ("run `tfds build voc/2007 --data_dir={d}` on a machine with internet (or copy "
                "a prepared voc/2007 folder into {d})"),
    "coco2014": ("download COCO 2014 and run `tfds build coco/2014 --data_dir={d} "
                 "--manual_dir=<folder with the zips>`, or read it from its annotation JSON "
                 "with dfka_tf.data.load_coco_json"),
}


def _tfds(dataset: str):
  if dataset not in TFDS_NAMES:
    raise ConfigError(f"unknown dataset {dataset!r}; use one of {', '.join(TFDS_NAMES)}.")
  return TFDS_NAMES[dataset]


def _is_local(dataset: str) -> bool:
  return dataset.startswith("scenes20")


def split_names(dataset: str):
  """Our split names `dataset` has ("train", "test", and "validation" where it has one)."""
  return sorted(_tfds(dataset)[1])


def check_prepared(dataset: str, data_dir: Optional[str] = None):
  """Makes sure `dataset` is on disk, in seconds, without any download.

  The embedded datasets are rendered on first use. VOC/COCO must be prepared beforehand:
  offline, a plain `tfds.load` would retry downloads for minutes.

  Raises:
    DataNotFoundError: naming the dataset, the folder and how to prepare it.
  """
  name, _ = _tfds(dataset)
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  if _is_local(dataset):
    builder.download_and_prepare()
    return builder
  where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
  raise DataNotFoundError(
      f"{dataset} ({name}) is not prepared in {where}; "
      + _PREPARE_HINT[dataset].format(d=where) + ".")


def num_examples(dataset: str, split: str, data_dir: Optional[str] = None) -> int:
  name, splits = _tfds(dataset)
  return int(tfds.builder(name, data_dir=data_dir).info.splits[splits[split]].num_examples)


def voc_example(ex):
  """VOC devkit labels: 1 if any non-difficult object; ignore if only difficult ones."""
  label = tf.one_hot(ex["objects"]["label"], 20)
  n = tf.shape(label)[0]
  # Real VOC has one flag per object; align anyway (tfds mock data draws lengths apart).
  difficult = tf.cast(ex["objects"]["is_difficult"], tf.float32)
  difficult = tf.pad(difficult, [[0, tf.maximum(n - tf.shape(difficult)[0], 0)]])[:n, None]
  easy = tf.reduce_max(tf.concat([label * (1.0 - difficult), tf.zeros([1, 20])], 0), axis=0)
  present = tf.reduce_max(tf.concat([label, tf.zeros([1, 20])], 0), axis=0)
  return {"image": ex["image"], "labels": easy, "ignore": present - easy}


def coco_example(ex):
  label = tf.one_hot(ex["objects"]["label"], 80)
  labels = tf.reduce_max(tf.concat([label, tf.zeros([1, 80])], 0), axis=0)
  return {"image": ex["image"], "labels": labels, "ignore": tf.zeros([80])}


def scenes_example(ex):
  labels = tf.cast(ex["labels"], tf.float32)
  return {"image": ex["image"], "labels": labels, "ignore": tf.zeros_like(labels)}


_CONVERT = {"voc2007": voc_example, "coco2014": coco_example}


def to_unit_range(ex):
  """uint8 image -> float32 in [0, 1]."""
  return dict(ex, image=tf.cast(ex["image"], tf.float32) / 255.0)


def resize(size: int):
  def fn(ex):
    image = tf.image.resize(ex["image"], (size, size), antialias=True)
    return dict(ex, image=tf.clip_by_value(image, 0.0, 1.0))  # Antialiasing overshoots.
  return fn


def random_flip(seed: int):
  """Horizontal flip, stateless in (seed, index): checkpointable and reproducible."""
  def fn(index, ex):
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
    return dict(ex, image=tf.image.stateless_random_flip_left_right(ex["image"], key))
  return fn


def _finish(ds, *, image_size, batch_size, shuffle, seed, augment, cache, drop_remainder,
            cache_ok):
  ds = ds.map(to_unit_range, num_parallel_calls=tf.data.AUTOTUNE)
  if image_size:
    ds = ds.map(resize(image_size), num_parallel_calls=tf.data.AUTOTUNE)
  if cache and cache_ok:
    ds = ds.cache()
  if shuffle:
    ds = ds.shuffle(10000, seed=seed, reshuffle_each_iteration=True)
  if augment:
    # Indices are taken after the shuffle, so each epoch flips a different half.
    ds = ds.enumerate().map(random_flip(seed), num_parallel_calls=tf.data.AUTOTUNE)
  if batch_size:
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  return ds.prefetch(tf.data.AUTOTUNE)


def load(dataset: str, split: str, *, data_dir: Optional[str] = None,
         image_size: Optional[int] = None, batch_size: Optional[int] = None,
         shuffle: bool = False, seed: int = 0, augment: bool = False, cache: bool = True,
         drop_remainder: bool = False) -> tf.data.Dataset:
  """A tf.data pipeline of canonical examples.

  Args:
    dataset: scenes20[_64], scenes20_similar[_64], scenes20_different[_64], voc2007,
      coco2014.
    split: "train" (teachers' training split), "validation" (for tuning) or "test" (the
      split results are reported on).
    image_size: resize to this square size (None: keep the stored size).
    cache: cache decoded images in memory (only for the small embedded datasets).

  Raises:
    DataNotFoundError: the data is not prepared (see `check_prepared`).
    ConfigError: unknown dataset or split.
  """
  name, splits = _tfds(dataset)
  if split not in splits:
    raise ConfigError(f"{dataset} has no {split!r} split; use one of {sorted(splits)}.")
  builder = check_prepared(dataset, data_dir)
  ds = builder.as_dataset(split=splits[split], shuffle_files=False,
                          read_config=tfds.ReadConfig(shuffle_seed=seed))
  ds = ds.map(_CONVERT.get(dataset, scenes_example), num_parallel_calls=tf.data.AUTOTUNE)
  return _finish(ds, image_size=image_size, batch_size=batch_size, shuffle=shuffle, seed=seed,
                 augment=augment, cache=cache, drop_remainder=drop_remainder,
                 cache_ok=_is_local(dataset))


def load_coco_json(annotation_json: str, image_dir: str, *, image_size: int = 224,
                   batch_size: Optional[int] = None, shuffle: bool = False, seed: int = 0,
                   augment: bool = False) -> tf.data.Dataset:
  """COCO from an official `instances_*.json` and its image folder, through pycocotools.

  Labels are always the 80 columns of COCO_LABELS (ascending official category id), the
  same columns as the coco2014 TFDS pipeline, whichever categories the file lists.

  Raises:
    DataNotFoundError: the annotation file or the image folder does not exist.
    ConfigError: the file uses a category id or name that is not one of COCO's 80.
  """
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(annotation_json):
    raise DataNotFoundError(f"COCO annotation file {annotation_json} not found; pass the "
                            "instances_<split>.json of the official release.")
  if not os.path.isdir(image_dir):
    raise DataNotFoundError(f"COCO image folder {image_dir} not found; pass the folder that "
                            "holds the images named in the annotation file (e.g. val2014/).")
  coco = COCO(annotation_json)
  index = {cat_id: i for i, cat_id in enumerate(labels_lib.COCO_CATEGORY_IDS)}
  for cat in coco.loadCats(coco.getCatIds()):
    i = index.get(cat["id"])
    if i is None or labels_lib.COCO_LABELS[i] != cat["name"]:
      raise ConfigError(
          f"{annotation_json} has category {cat['id']} {cat['name']!r}, which is not one of "
          "COCO's 80 (id, name) pairs; use an official instances_*.json.")
  num = len(labels_lib.COCO_LABELS)
  paths, labels = [], []
  for img_id in sorted(coco.getImgIds()):
    info = coco.loadImgs(img_id)[0]
    row = np.zeros(num, np.float32)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=None)):
      row[index[ann["category_id"]]] = 1.0
    paths.append(os.path.join(image_dir, info["file_name"]))
    labels.append(row)
  if not paths:
    raise DataNotFoundError(f"{annotation_json} lists no images; pass an instances_*.json "
                            "of the official release.")
  ds = tf.data.Dataset.from_tensor_slices({"path": paths, "labels": np.stack(labels)})
  ds = ds.map(lambda ex: {"image": tf.io.decode_image(tf.io.read_file(ex["path"]), channels=3,
                                                      expand_animations=False),
                          "labels": ex["labels"], "ignore": tf.zeros_like(ex["labels"])},
              num_parallel_calls=tf.data.AUTOTUNE)
  return _finish(ds, image_size=image_size, batch_size=batch_size, shuffle=shuffle, seed=seed,
                 augment=augment, cache=False, drop_remainder=False, cache_ok=False)


def uint8_images(x, name: str, hint: str = "it must hold images [N, height, width, 3], N >= 1"
                 ) -> np.ndarray:
  """Images x [N, H, W, 3] of an .npz or a caller's arrays as uint8: uint8 kept, floats in
  [0, 1] scaled by 255; anything else stops with one line naming `name` (`hint` follows a
  bad shape)."""
  x = np.asarray(x)
  if x.ndim != 4 or x.shape[-1] != 3 or not len(x):
    raise ConfigError(f"{name}: x has shape {x.shape}; {hint}")
  if x.dtype == np.uint8:
    return x
  if not np.issubdtype(x.dtype, np.floating):
    raise ConfigError(f"{name}: x is {x.dtype}; store uint8 images or floats in [0, 1]")
  if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
    raise ConfigError(f"{name}: float images must lie in [0, 1] (found "
                      f"{np.nanmin(x):.3g}..{np.nanmax(x):.3g}); scale them, or store uint8")
  return (x.astype(np.float32) * 255.0).round().astype(np.uint8)


def prepared_builder(spec: str, name: str, split: str, *, flag: str,
                     data_dir: Optional[str] = None):
  """The TFDS builder of a user's `name:split` (`flag`={spec}), prepared and holding `split`.

  Raises:
    ConfigError: TFDS has no dataset `name`, or it has no split `split`.
    DataNotFoundError: it is not prepared (checked in seconds, never downloaded).
  """
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    # TFDS raises its own DatasetNotFoundError and others for unknown names.
    raise ConfigError(f"{flag}={spec}: no TFDS dataset {name!r} "
                      f"({str(e).splitlines()[0][:150]}); pass name:split of a prepared "
                      "TFDS dataset, or an .npz") from None
  if not builder.is_prepared():
    where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    raise DataNotFoundError(f"{flag}={spec}: {name} is not prepared in {where}; run "
                            f"`tfds build {name} --data_dir={where}` on a machine with "
                            "internet, or pass an .npz")
  known = set(builder.info.splits)
  # "test[:50%]" and "train+test" are TFDS split expressions: TFDS checks those itself.
  if known and "[" not in split and "+" not in split and split not in known:
    raise ConfigError(f"{flag}={spec}: {name} has no split {split!r}; use one of "
                      f"{', '.join(sorted(known))}")
  return builder


def own_name(name: str) -> str:
  """dfka_tf's name of a dataset named as TFDS names it (voc/2007 -> voc2007), so a user's
  `name:split` of a dataset dfka_tf reads goes through its own pipeline; other names as
  given."""
  ours = {tfds_name: our for our, (tfds_name, _) in TFDS_NAMES.items()}
  return ours.get(name, name)
