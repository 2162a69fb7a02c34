"""Label names, user aliases and the teachers' label splits.

Every dataset's labels are a list of canonical names in the dataset's own index order; the
index of a name is the position of its output in a teacher or TargetNet head.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dfka_tf.errors import ConfigError

# TFDS voc/2007 ClassLabel order (alphabetical, as in the VOC devkit).
VOC_LABELS: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

# Official COCO category ids of the 80 used categories, ascending. TFDS coco/2014 numbers its
# ClassLabel 0..79 in this order but stores no names offline, so the names ship here.
COCO_CATEGORY_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77,
    78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)
COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)

# The 20 shapes of the embedded scenes20 dataset (rendered by dfka_tf.data.render).
SCENES20_LABELS: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "plus", "ring", "diamond", "hexagon", "heart",
    "crescent", "arrow", "semicircle", "l_shape", "t_shape", "ellipse", "equals",
    "square_frame", "hourglass", "two_dots", "chevron",
)

# scenes20_similar: same renderer and style, 20 shapes disjoint from SCENES20_LABELS.
SCENES20_SIMILAR_LABELS: tuple[str, ...] = (
    "pentagon", "octagon", "trapezoid", "parallelogram", "u_shape", "h_shape",
    "triangle_frame", "star4", "star6", "three_dots", "arc", "teardrop", "z_shape", "kite",
    "stadium", "keyhole", "bullseye", "diamond_frame", "x_cross", "zigzag",
)

# Short names used by the paper (S-§3.2 writes "plane, bike, motor, table, plant, tv") and
# common spellings across VOC and COCO. An alias maps to the first candidate that exists in
# the label set at hand, so "tv" is "tvmonitor" on VOC and "tv" on COCO.
LABEL_ALIASES: dict[str, tuple[str, ...]] = {
    "plane": ("aeroplane", "airplane"),
    "airplane": ("aeroplane",),
    "aeroplane": ("airplane",),
    "bike": ("bicycle",),
    "motor": ("motorbike", "motorcycle"),
    "motorcycle": ("motorbike",),
    "motorbike": ("motorcycle",),
    "table": ("diningtable", "dining table"),
    "plant": ("pottedplant", "potted plant"),
    "tv": ("tvmonitor",),
    "monitor": ("tvmonitor", "tv"),
    "tvmonitor": ("tv",),
    "sofa": ("couch",),
    "couch": ("sofa",),
    "people": ("person",),
}

# Paper's two-teacher split of VOC 2007 (supplementary S-§3.2), as canonical TFDS names.
VOC_TWO_TEACHER_SPLIT: tuple[tuple[str, ...], tuple[str, ...]] = (
    ("aeroplane", "bicycle", "bird", "boat", "bus", "car", "horse", "motorbike", "person",
     "train"),
    ("bottle", "cat", "chair", "cow", "diningtable", "dog", "pottedplant", "sheep", "sofa",
     "tvmonitor"),
)

_DATASET_LABELS: dict[str, tuple[str, ...]] = {
    "voc2007": VOC_LABELS,
    "coco2014": COCO_LABELS,
    "scenes20": SCENES20_LABELS,
    "scenes20_64": SCENES20_LABELS,
    "scenes20_colour": SCENES20_LABELS,
    "scenes20_colour_64": SCENES20_LABELS,
    "scenes20_similar": SCENES20_SIMILAR_LABELS,
    "scenes20_similar_64": SCENES20_SIMILAR_LABELS,
    # Textures without objects: there is nothing to label.
    "scenes20_different": (),
    "scenes20_different_64": (),
}

DATASETS: tuple[str, ...] = tuple(_DATASET_LABELS)


def label_names(dataset: str) -> list[str]:
  """Returns the canonical label names of `dataset` in index order.

  Args:
    dataset: one of `DATASETS`.

  Raises:
    ConfigError: for an unknown dataset.
  """
  if dataset not in _DATASET_LABELS:
    raise ConfigError(f"Unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}.")
  return list(_DATASET_LABELS[dataset])


def _key(name: str) -> str:
  # "Dining Table", "dining_table" and "diningtable" all name the same label.
  return "".join(ch for ch in name.lower() if ch.isalnum())


def resolve_labels(names: Sequence[str], available: Sequence[str]) -> list[str]:
  """Maps user label names (aliases, any case and spacing) to canonical names.

  Args:
    names: the requested labels, e.g. `["bus", "table"]`, in the order the user wants
      them output.
    available: the canonical label names they must come from.

  Returns:
    The canonical names, in the order of `names`.

  Raises:
    ConfigError: `names` is empty, names an unknown label, or names a label twice.
  """
  if isinstance(names, str):
    names = [n for n in names.split(",") if n.strip()]
  names = list(names)
  if not names:
    raise ConfigError("The label list is empty; name at least one label.")
  by_key = {_key(a): a for a in available}
  resolved = []
  for name in names:
    key = _key(name)
    canonical = by_key.get(key)
    if canonical is None:
      for candidate in LABEL_ALIASES.get(key, ()):
        canonical = by_key.get(_key(candidate))
        if canonical is not None:
          break
    if canonical is None:
      raise ConfigError(
          f"Unknown label {name!r}; valid labels are: {', '.join(available)}.")
    if canonical in resolved:
      raise ConfigError(f"Label {name!r} ({canonical}) is listed twice; list each label once.")
    resolved.append(canonical)
  return resolved


def teacher_label_split(dataset: str, num_teachers: int) -> list[list[str]]:
  """The label sets Y_1..Y_M of M teachers on `dataset`.

  - 1 teacher: every label.
  - 2 teachers on voc2007: the paper's split (S-§3.2), Y_1 = plane, bike, bird, boat, bus,
    car, horse, motor, person, train and Y_2 = the other ten.
  - 2 teachers on coco2014: the paper does not list its split; we use the first 40 and the
    last 40 labels in COCO_LABELS order (ascending COCO category id).
  - 2 teachers on scenes20: labels 0..9 and 10..19.
  - M > 2 teachers (or any other dataset): contiguous index chunks, sizes differing by at
    most one, the earlier chunks taking the extra labels.

  Args:
    dataset: one of `DATASETS` with labels.
    num_teachers: M >= 1.

  Returns:
    M lists of canonical label names.

  Raises:
    ConfigError: unknown dataset, or M < 1 or M larger than the number of labels.
  """
  labels = label_names(dataset)
  if not isinstance(num_teachers, (int, np.integer)) or isinstance(num_teachers, bool):
    raise ConfigError(f"num_teachers must be an integer, got {num_teachers!r}.")
  if num_teachers < 1 or num_teachers > len(labels):
    raise ConfigError(
        f"num_teachers={num_teachers} does not fit {dataset} with {len(labels)} labels; "
        f"use 1..{len(labels)}.")
  if num_teachers == 2 and dataset == "voc2007":
    return [list(y) for y in VOC_TWO_TEACHER_SPLIT]
  chunks = np.array_split(np.arange(len(labels)), num_teachers)
  return [[labels[i] for i in chunk] for chunk in chunks]
