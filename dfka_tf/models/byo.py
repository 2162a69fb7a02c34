"""Bring your own teachers: what a teacher file holds before it is loaded, where its blocks
end, and the TargetNet in its architecture (`--arch=teacher`).

Block ends are found without flags for:

- dfka_tf's own ResNets (`block1_out`, `block2_out`, ... as `build_resnet` names them);
- keras-cv backbones (`ResNetBackbone` and the other backbones with `pyramid_level_inputs`),
  alone or inside an `ImageClassifier`;
- keras.applications ResNet50/101/152, V1 and V2 (`conv{stage}_block{k}_out`).

Every other network names its block ends with `--teacher_blocks`; when those are missing or
wrong, the error lists candidates: the last layer at each spatial resolution that the whole
graph passes through.
"""

import json
import re
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import keras

from dfka_tf.errors import TeacherError

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


def needs_keras_cv(config: Optional[Dict]) -> bool:
  """Whether a saved config holds keras-cv classes (which load only once keras_cv is
  imported: importing it registers them)."""
  return config is not None and '"keras_cv' in json.dumps(config)


def import_keras_cv(path):
  try:
    import keras_cv  # pylint: disable=g-import-not-at-top,import-outside-toplevel,unused-import
  except ImportError as e:
    raise TeacherError(f"teacher {path} holds keras-cv layers, but keras_cv cannot be "
                       f"imported ({e}); pip install keras-cv (requirements.txt pins it)"
                       ) from None


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
      for key in ("batch_shape", "batch_input_shape", "input_shape"):
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
def flat_layers(model) -> List[keras.layers.Layer]:
  """Every layer of `model` in graph order, nested models expanded into their layers."""
  out = []
  for layer in model.layers:
    if isinstance(layer, keras.Model) and hasattr(layer, "layers"):
      out.extend(flat_layers(layer))
    else:
      out.append(layer)
  return out


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


def _pyramid_ends(model) -> Optional[List[str]]:
  # Keras' own walk reaches a backbone nested in its task (an ImageClassifier).
  for layer in model._flatten_layers():  # pylint: disable=protected-access
    levels = getattr(layer, "pyramid_level_inputs", None)
    if isinstance(levels, dict) and len(levels) >= 2:
      ordered = sorted(levels, key=lambda k: int(re.sub(r"\D", "", str(k)) or 0))
      return [levels[k] for k in ordered[:-1]]
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
                    ("keras-cv pyramid_level_inputs", _pyramid_ends(model)),
                    ("keras.applications ResNet stages", _keras_apps_ends(layers))):
    if ends:
      return list(ends), how
  raise TeacherError(
      f"cannot tell where the blocks of {model.name} end (it is not a dfka_tf, keras-cv or "
      "keras.applications ResNet); pass --teacher_blocks=<layer>,<layer>,... naming the "
      f"layers that end blocks 1..B-1. Candidates: {format_candidates(model)}")


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
  from dfka_tf.models.blocknet import _Splitter  # pylint: disable=g-import-not-at-top
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
        _Splitter(model, [name]).trace()
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


# ------------------------------------------------------------------ TargetNet = teacher's arch
def _rebuild(model, custom_objects):
  """`model`'s architecture from its config, with fresh weights (as loading a file does)."""
  config = keras.saving.serialize_keras_object(model)
  with keras.saving.custom_object_scope(custom_objects):
    return keras.saving.deserialize_keras_object(config)


def _weighted(model) -> Dict[str, keras.layers.Layer]:
  return {l.name: l for l in flat_layers(model) if l.weights}


def copy_matching_weights(source, target, skip: Sequence[str] = ()) -> int:
  """Copies every weighted layer of `source` into `target`'s layer of that name where all
  weight shapes agree; nested models are matched layer by layer. Returns how many."""
  src = _weighted(source)
  copied = 0
  for name, layer in _weighted(target).items():
    other = src.get(name)
    if (other is None or name in skip or
        [tuple(w.shape) for w in other.weights] != [tuple(w.shape) for w in layer.weights]):
      continue
    layer.set_weights(other.get_weights())
    copied += 1
  return copied


def target_model(teacher, num_labels: int, name: str, *,
                 init: Optional[str] = None) -> keras.Model:
  """The TargetNet in `teacher`'s architecture (a BlockNet cut from a whole model).

  Every layer up to the teacher's pooled features (pre_logits) is rebuilt from its config
  with fresh weights; a new head, Dense(num_labels) -> sigmoid, replaces the teacher's.
  Layer names are the teacher's, so `teacher.block_output_names` cut it the same way.

  Args:
    init: None (fresh weights) or a pretrained start: a `.keras` model or a `.weights.h5`
      file of the teacher's architecture; every layer whose name and weight shapes match is
      copied (the head is new).

  Raises:
    TeacherError: the teacher has no whole model, or `init` is missing, unreadable or shares
      no layer with the TargetNet.
  """
  # pylint: disable=g-import-not-at-top
  from dfka_tf.models.blocknet import CUSTOM_OBJECTS, _Splitter
  source = teacher.model
  if source is None:
    raise TeacherError(f"teacher {teacher.name!r} was not cut from a whole model, so its "
                       "architecture cannot be rebuilt; pass --arch=<a dfka_tf ResNet>")
  if init is not None:
    _check_init(init)
  rebuilt = _rebuild(source, CUSTOM_OBJECTS)
  # The config records the frozen teacher's trainable=False on every layer (setting it on
  # the functional model does not reach them).
  for layer in rebuilt._flatten_layers():  # pylint: disable=protected-access
    layer.trainable = True
  weights_file = init is not None and str(init).endswith(".weights.h5")
  if weights_file:
    try:
      rebuilt.load_weights(init)
    except Exception as e:  # pylint: disable=broad-except
      raise TeacherError(f"--target_init={init} does not fit teacher {teacher.name}'s "
                         f"architecture ({str(e).splitlines()[0][:200]}); pass weights saved "
                         "from that architecture, or a .keras model") from None
  tracer = _Splitter(rebuilt, [])
  outputs = tracer.trace()
  if isinstance(outputs, dict) and "pre_logits" in outputs:
    pooled = outputs["pre_logits"]
  else:
    pooled = tracer.named.get(teacher.pre_logits_name)
  if pooled is None:
    raise TeacherError(f"cannot find teacher {teacher.name}'s pooled features "
                       f"({teacher.pre_logits_name!r}) in its rebuilt architecture")
  used = {l.name for l in flat_layers(rebuilt)}
  head = "logits" if "logits" not in used else f"{name}_logits"
  logits = keras.layers.Dense(num_labels, name=head)(pooled)
  probs = keras.layers.Activation("sigmoid", name="probs" if "probs" not in used
                                  else f"{name}_probs", dtype="float32")(logits)
  model = keras.Model(tracer.block_inputs[0], probs, name=name)
  if init is not None and not weights_file:
    from dfka_tf.models.blocknet import read_keras_model  # pylint: disable=g-import-not-at-top
    start = read_keras_model(init, what="--target_init")
    if not copy_matching_weights(start, model, skip=(head,)):
      raise TeacherError(f"--target_init={init} shares no layer (same name and weight "
                         f"shapes) with the TargetNet in {teacher.name}'s architecture; pass "
                         "a model of that architecture")
  return model


def _check_init(init):
  path = Path(init)
  if not path.is_file():
    raise TeacherError(f"--target_init={init} not found; pass a .keras model or .weights.h5 "
                       "file of the teachers' architecture")
  if not (path.suffix == ".keras" or str(path).endswith(".weights.h5")):
    raise TeacherError(f"--target_init={init} is neither a .keras model nor a .weights.h5 "
                       "file; save the start with model.save(...) or model.save_weights(...)")
