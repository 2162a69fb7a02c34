"""Teacher files: read, load (split into blocks), save, and where a saved network's blocks end.

A teacher is a Keras 3 `.keras` file (or legacy `.h5`) beside `<file>.labels.json`, which
names its outputs and may record where its blocks end. Block ends are found without flags
for:

- dfka_tf's own ResNets (`block1_out`, `block2_out`, ... as `build_resnet` names them);
- keras-cv backbones (`ResNetBackbone` and the other backbones with `pyramid_level_inputs`),
  alone or inside an `ImageClassifier`;
- keras-hub backbones with a `pyramid_outputs` feature pyramid (`ResNetBackbone`,
  `EfficientNetBackbone`, `DenseNetBackbone`, `CSPNetBackbone`, ...), alone or inside their
  `...ImageClassifier` (keras-hub is an optional extra, imported only for such files);
- keras.applications ResNet50/101/152, V1 and V2 (`conv{stage}_block{k}_out`).

Every other network names its block ends with `--teacher_blocks`; when those are missing or
wrong, the error lists candidates: the last layer at each spatial resolution that the whole
graph passes through.
"""

import importlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import keras

from dfka_tf.errors import TeacherError
from dfka_tf.models.blocknet import BlockNet, split_model
from dfka_tf.models.resnet import InputNormalization
from dfka_tf.models.splitter import Splitter, flat_layers

LABELS_SUFFIX = ".labels.json"
CUSTOM_OBJECTS = {"InputNormalization": InputNormalization}
_KERAS_APPS_END = re.compile(r"^conv(\d+)_block(\d+)_out$")
_OWN_END = "block{}_out"


def read_keras_config(path) -> Optional[Dict]:
  """The model config a `.keras` file stores (its config.json), read without building the
  model; None for other formats or an unreadable archive (loading then says why)."""
  path = Path(path)
  if path.suffix != ".keras" or not path.is_file():
    return None
  try:
    with zipfile.ZipFile(path) as archive:
      return json.loads(archive.read("config.json"))
  except (OSError, KeyError, ValueError, zipfile.BadZipFile):
    return None


# Packages whose classes a `.keras` config may name ("module": "keras_cv.src...",
# "registered_name": "keras_hub>ResNetBackbone"); importing one registers its classes.
_PACKAGES = {"keras_cv": ("keras-cv", "requirements.txt pins it"),
             "keras_hub": ("keras-hub", "an optional extra: pip install keras-hub==0.32.0")}


def needed_packages(config: Optional[Dict]) -> List[str]:
  """The packages (keras_cv, keras_hub) whose classes a saved config holds."""
  if config is None:
    return []
  text = json.dumps(config)
  return [module for module in _PACKAGES if f'"{module}' in text]


def needs_keras_cv(config: Optional[Dict]) -> bool:
  """Whether a saved config holds keras-cv classes (which load only once keras_cv is
  imported: importing it registers them)."""
  return "keras_cv" in needed_packages(config)


def import_package(module, path):
  """Imports keras_cv or keras_hub for teacher `path`, or says how to install it."""
  pip_name, how = _PACKAGES[module]
  try:
    importlib.import_module(module)
  except ImportError as e:
    raise TeacherError(f"teacher {path} holds {pip_name} layers, but {module} cannot be "
                       f"imported ({e}); {how}") from None


def import_keras_cv(path):
  import_package("keras_cv", path)


def input_size(path) -> Optional[int]:
  """The image side a saved teacher takes, read from its config (None if not found).

  Runs in milliseconds, before anything is built, so the run's preset can follow the
  teachers' scale (32 px: the embedded budget; 224 px: the paper's).
  """
  config = read_keras_config(path)
  if config is None:
    return None
  found = []

  def visit(node):
    if found:
      return
    if isinstance(node, dict):
      for key in ("batch_shape", "batch_input_shape", "input_shape", "image_shape"):
        shape = node.get(key)
        if (isinstance(shape, list) and len(shape) in (3, 4) and shape[-1] == 3
            and isinstance(shape[-3], int)):
          found.append(int(shape[-3]))
          return
      for value in node.values():
        visit(value)
    elif isinstance(node, list):
      for value in node:
        visit(value)

  visit(config)
  return found[0] if found else None


# ------------------------------------------------------------------ block ends
def _own_ends(layers) -> Optional[List[str]]:
  names = {l.name for l in layers}
  ends = []
  while _OWN_END.format(len(ends) + 1) in names:
    ends.append(_OWN_END.format(len(ends) + 1))
  if not ends:
    return None
  # build_resnet names every stage, the last too; the last block must keep a weighted layer
  # besides the classifier, so a name right before the head is not a cut.
  order = [l.name for l in layers]
  after = layers[order.index(ends[-1]) + 1:]
  if not any(l.weights and not isinstance(l, keras.layers.Dense) for l in after):
    ends = ends[:-1]
  return ends or None


def _level(key) -> int:
  return int(re.sub(r"\D", "", str(key)) or 0)


def _producer(tensor) -> Optional[str]:
  """The name of the layer whose output `tensor` (a KerasTensor) is, or None."""
  history = getattr(tensor, "_keras_history", None)
  operation = getattr(history, "operation", None)
  return getattr(operation, "name", None)


def _pyramid_ends(model) -> Optional[List[str]]:
  """Levels P2, P3, ... but the last, as layer names, of a keras-cv backbone
  (`pyramid_level_inputs`: level -> layer name) or a keras-hub one (`pyramid_outputs`:
  level -> KerasTensor of the backbone's own graph), alone or inside its classifier."""
  # Keras' own walk reaches a backbone nested in its task (an ImageClassifier).
  for layer in model._flatten_layers():  # pylint: disable=protected-access
    levels = getattr(layer, "pyramid_level_inputs", None)
    if isinstance(levels, dict) and len(levels) >= 2:
      ordered = sorted(levels, key=_level)
      return [levels[k] for k in ordered[:-1]]
    outputs = getattr(layer, "pyramid_outputs", None)
    # keras-hub: only a spatial pyramid ("P<n>" keys, 4-D maps); ViTs (DINOv2) key theirs
    # "stem", "stage<n>" at one resolution, and have no block ends here.
    if (isinstance(outputs, dict) and len(outputs) >= 2
        and all(re.fullmatch(r"P\d+", str(k)) for k in outputs)):
      ordered = sorted(outputs, key=_level)
      names = [_producer(outputs[k]) for k in ordered[:-1]]
      if all(names) and len(set(names)) == len(names) and all(
          len(outputs[k].shape) == 4 for k in ordered):
        return names
  return None


def _keras_apps_ends(layers) -> Optional[List[str]]:
  last = {}
  for layer in layers:
    match = _KERAS_APPS_END.match(layer.name)
    if match:
      stage, block = int(match.group(1)), int(match.group(2))
      if block >= last.get(stage, (0, ""))[0]:
        last[stage] = (block, layer.name)
  if len(last) < 2:
    return None
  return [last[s][1] for s in sorted(last)[:-1]]


def detect_block_outputs(model) -> Tuple[List[str], str]:
  """The layers that end blocks 1..B-1 of `model`, and which rule found them.

  Raises:
    TeacherError: no rule applies; the message lists candidate layers.
  """
  layers = flat_layers(model)
  for how, ends in (("dfka_tf block names", _own_ends(layers)),
                    ("keras-cv/keras-hub feature pyramid", _pyramid_ends(model)),
                    ("keras.applications ResNet stages", _keras_apps_ends(layers))):
    if ends:
      return list(ends), how
  raise TeacherError(
      f"cannot tell where the blocks of {model.name} end (it is not a dfka_tf, keras-cv, "
      "keras-hub or keras.applications ResNet); pass --teacher_blocks=<layer>,<layer>,... "
      f"naming the layers that end blocks 1..B-1. Candidates: {format_candidates(model)}")


def _single_output_shape(layer):
  try:
    out = layer.output
  except (AttributeError, ValueError):  # Called more than once, or never.
    return None
  if isinstance(out, keras.KerasTensor) and len(out.shape) == 4:
    return tuple(out.shape[1:])
  return None


def candidate_block_ends(model, max_tries: int = 8) -> List[Tuple[str, Tuple[int, ...]]]:
  """[(layer name, output shape)]: per spatial resolution, in order, the last layer the
  whole graph passes through (a valid cut), for error messages."""
  groups: List[List[Tuple[str, Tuple[int, ...]]]] = []
  for layer in flat_layers(model):
    shape = _single_output_shape(layer)
    if shape is None:
      continue
    if groups and groups[-1][-1][1][:2] == shape[:2]:
      groups[-1].append((layer.name, shape))
    else:
      groups.append([(layer.name, shape)])
  out = []
  for group in groups:
    for name, shape in list(reversed(group))[:max_tries]:
      try:
        Splitter(model, [name]).trace()
      except TeacherError:
        continue
      except Exception:  # pylint: disable=broad-except
        # A layer Keras cannot re-trace alone is no candidate; the list is only a hint.
        continue
      out.append((name, shape))
      break
  return out


def format_candidates(model) -> str:
  found = candidate_block_ends(model)
  if not found:
    return "none found (no 4-D layer the whole graph passes through)"
  return ", ".join(f"{n} {'x'.join(str(v) for v in s)}" for n, s in found)


# ------------------------------------------------------------------ read, load, save
def _labels_path(path):
  return f"{os.fspath(path).rstrip(os.sep)}{LABELS_SUFFIX}"


def first_line(e) -> str:
  """`e`'s type and the first line of its message, for one-line errors."""
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:200] if text else ''}"


def _read_labels(labels_json, teacher_path):
  path = Path(labels_json)
  if not path.is_file():
    raise TeacherError(f"label file {path} for teacher {teacher_path} not found; write "
                       "{\"labels\": [...]} there or pass labels_json=<file>")
  try:
    content = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise TeacherError(f"label file {path} is not valid JSON ({first_line(e)}); write "
                       "{\"labels\": [...]} or a plain list of names") from e
  meta = {}
  if isinstance(content, dict):
    meta = content
    content = content.get("labels")
  if not (isinstance(content, list) and all(isinstance(c, str) for c in content)):
    raise TeacherError(f"label file {path} must hold {{\"labels\": [names]}} or a list of "
                       "names")
  return content, meta


def load_teacher(path, block_outputs=None, labels_json=None, pre_logits=None):
  """Loads a saved teacher and splits it into blocks.

  Args:
    path: a `.keras` (or legacy `.h5`) file saved from a functional model.
    block_outputs: layer names ending blocks 1..B-1. Default: those recorded in the label
      file by save_teacher, else found by `detect_block_outputs` (dfka_tf, keras-cv and
      keras.applications ResNets).
    labels_json: the label file; default `<path>.labels.json`. Format {"labels": [...]}
      (optionally with "block_outputs" and "pre_logits") or a plain list of names.
    pre_logits: layer name of the pooled features; default as recorded, else auto-detected.

  Returns:
    A BlockNet named after the file.

  Raises:
    TeacherError: the file is missing or not a Keras model, it is a SavedModel (which
      Keras 3 cannot turn back into layers), the labels are missing or do not match the
      outputs, or the block ends are not given and cannot be detected, or do not cut the
      model (both errors list candidate layers).
  """
  path = Path(path)
  model = read_keras_model(path)
  labels, meta = _read_labels(labels_json or _labels_path(path), path)
  how = "given"
  if block_outputs is None:
    block_outputs, how = meta.get("block_outputs"), "recorded in its label file"
  if block_outputs is None:
    block_outputs, rule = detect_block_outputs(model)
    how = f"found by {rule}"
  pre_logits = pre_logits or meta.get("pre_logits")
  num_outputs = _num_outputs(model)
  if num_outputs is not None and num_outputs != len(labels):
    raise TeacherError(f"teacher {path} has {num_outputs} outputs but its label file lists "
                       f"{len(labels)} labels; fix {labels_json or _labels_path(path)}")
  try:
    return split_model(model, block_outputs, pre_logits=pre_logits, label_names=labels,
                       name=path.stem)
  except TeacherError as e:
    if "pre_logits" in str(e):
      raise
    hint = "" if how == "given" else f" (block ends {how}); pass --teacher_blocks"
    raise TeacherError(f"{e}{hint}. Candidates (the last layer at each resolution): "
                       f"{format_candidates(model)}") from None


def read_keras_model(path, what="teacher"):
  """A Keras 3 model from a `.keras` (or legacy `.h5`) file, keras-cv classes included.

  Raises:
    TeacherError: the file is missing, a directory (a SavedModel holds no layer graph
      Keras 3 can split), another format, or unreadable.
  """
  path = Path(path)
  if not path.exists():
    raise TeacherError(f"{what} {path} not found; pass the .keras file written by "
                       "save_teacher (or model.save('teacher.keras'))")
  if path.is_dir():
    if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
      if (path / "keras_metadata.pb").exists():
        raise TeacherError(
            f"{what} {path} is a tf.keras (Keras 2) SavedModel, which Keras 3 cannot load "
            "as layers; load it with tf_keras and save it as .keras (or .h5), or rebuild it "
            "and load its weights")
      raise TeacherError(
          f"{what} {path} is a SavedModel without Keras metadata: it holds only serving "
          "functions, no layer graph, so it cannot be split into blocks; save the Keras "
          "model as .keras instead")
    raise TeacherError(f"{what} {path} is a directory, not a Keras model; pass a .keras file")
  if path.suffix not in (".keras", ".h5", ".hdf5"):
    raise TeacherError(f"{what} {path} is not a Keras model file (expected .keras); save "
                       "it with save_teacher or model.save('teacher.keras')")
  for module in needed_packages(read_keras_config(path)):
    import_package(module, path)
  try:
    model = keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
  except Exception as e:  # pylint: disable=broad-except
    # Keras raises many types (zip, h5py, deserialisation); all mean "not a model we read".
    raise TeacherError(f"{what} {path} could not be loaded as a Keras model "
                       f"({first_line(e)}); pass a .keras file saved by Keras 3") from e
  if not isinstance(model, keras.Model):
    raise TeacherError(f"{what} {path} holds a {type(model).__name__}, not a keras.Model")
  return model


def _num_outputs(model):
  """Size of the probs output, or None when split_model will have to judge the outputs."""
  try:
    out = model.output
  except (AttributeError, ValueError):
    return None
  if isinstance(out, dict):
    out = out.get("probs")
  return out.shape[-1] if isinstance(out, keras.KerasTensor) else None


def save_teacher(blocknet_or_model, path, label_names=None):
  """Writes a teacher as `<path>` (.keras) and its labels as `<path>.labels.json`.

  Args:
    blocknet_or_model: a BlockNet, or a keras.Model (then label_names is required).
    path: destination ending in ".keras"; parent directories are created.
    label_names: label names; default the BlockNet's.

  Returns:
    (model path, label file path).
  """
  path = Path(path)
  if path.suffix != ".keras":
    raise TeacherError(f"teacher path {path} must end in .keras (Keras 3's format)")
  meta = {}
  if isinstance(blocknet_or_model, BlockNet):
    bn = blocknet_or_model
    model = bn.to_model()
    labels = list(label_names or bn.label_names)
    if bn.source_model is not None:
      meta = {"block_outputs": bn.block_output_names, "pre_logits": bn.pre_logits_name}
    else:
      # The chained model nests the blocks, so its cut points are the blocks themselves.
      meta = {"block_outputs": [b.name for b in bn.blocks[:-1]]}
  elif isinstance(blocknet_or_model, keras.Model):
    model = blocknet_or_model
    if label_names is None:
      raise TeacherError(f"save_teacher({model.name}) needs label_names for a keras.Model")
    labels = list(label_names)
  else:
    raise TeacherError(f"save_teacher takes a BlockNet or keras.Model, got "
                       f"{type(blocknet_or_model).__name__}")
  path.parent.mkdir(parents=True, exist_ok=True)
  model.save(path)
  labels_path = Path(_labels_path(path))
  labels_path.write_text(json.dumps({"labels": labels, **meta}, indent=1))
  return path, labels_path
