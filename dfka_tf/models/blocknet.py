"""Teachers split into B blocks A^1..A^B (DESIGN.md, "Block alignment").

Block b (1-based, `blocks[b - 1]`) maps F^{b-1} to F^b, F^0 being the [0, 1] image. The last
block also holds the head and returns {"probs": [N, C], "pre_logits": [N, D]}; pre_logits are
the pooled features before the dense layer, which L_a (S-Eq. 2) needs.

`split_model` cuts any functional Keras model at named layers. It re-traces the model's graph
node by node, calling the model's own layer objects on fresh symbolic inputs, so the blocks
share every weight with the original model (nothing is copied) and nested sub-models (e.g. a
keras.applications backbone used as one layer) are split through. While tracing, each
tensor is tagged with the block that computes it; a layer whose inputs come from two blocks
means a cut inside a residual branch, which is refused.
"""

import difflib
import json
import os
from pathlib import Path

import keras
import numpy as np
from keras import tree

from dfka_tf.errors import ConfigError
from dfka_tf.errors import TeacherError
from dfka_tf.models import byo
from dfka_tf.models.resnet import InputNormalization

# The stage outputs of build_resnet that end blocks 1..3 (B = 4).
DEFAULT_BLOCK_OUTPUTS = ("block1_out", "block2_out", "block3_out")
LABELS_SUFFIX = ".labels.json"
CUSTOM_OBJECTS = {"InputNormalization": InputNormalization}


@keras.saving.register_keras_serializable(package="dfka_tf")
class BlockNet(keras.Model):
  """A network as a chain of B Keras models; the last one ends in the multi-label head.

  A Keras subclassed model: `call(x, start=0, stop=B)` runs blocks start+1..stop on
  x = F^start and returns F^stop, or the head's {"probs", "pre_logits"} when stop = B. It
  serves the teachers (frozen), the TargetNet during Step II, and the teachers' block tails
  D^j / D_dual^{b,m} (`tail`). The blocks share their weights with the model they were cut
  from; checkpoints save that whole model, so they see every variable.

  Attributes:
    blocks: list of B keras.Model; blocks[i] maps F^i to F^{i+1} (paper block i + 1), the
      last one maps F^{B-1} to {"probs", "pre_logits"}.
    label_names: one name per output of probs.
    source_model: the whole keras.Model the blocks were cut from (shares their weights), or
      None (also as `model`).
    block_output_names: the layer names the model was cut at, or None.
    pre_logits_name: the layer whose output is pre_logits, or None.
  """

  def __init__(self, blocks, label_names, name, model=None, block_output_names=None,
               pre_logits_name=None, **kwargs):
    if not blocks:
      raise ConfigError(f"BlockNet {name!r} needs at least one block, got {blocks!r}")
    super().__init__(name=name, **kwargs)
    self.blocks = list(blocks)
    self.label_names = list(label_names)
    self.source_model = model
    self.block_output_names = (None if block_output_names is None
                               else list(block_output_names))
    self.pre_logits_name = pre_logits_name
    # The blocks are built functional models: nothing is left to build, and building by a
    # symbolic call would assume start = 0.
    self.built = True
    head = getattr(self.blocks[-1], "output", None)
    if not (isinstance(head, dict) and {"probs", "pre_logits"} <= set(head)):
      raise ConfigError(f"the last block of BlockNet {name!r} must output a dict with "
                        f"'probs' and 'pre_logits', got {head!r}")
    num_outputs = head["probs"].shape[-1]
    if len(self.label_names) != num_outputs:
      raise TeacherError(
          f"teacher {name!r} has {num_outputs} outputs but {len(self.label_names)} label "
          "names; give one label name per output")

  @property
  def model(self):
    return self.source_model

  @property
  def num_blocks(self):
    return len(self.blocks)

  @property
  def num_labels(self):
    return len(self.label_names)

  @property
  def image_shape(self):
    return self.feature_shapes[0]

  @property
  def feature_shapes(self):
    """Shapes (without batch) of F^0 (the image) .. F^{B-1}, the inputs of the blocks."""
    return [tuple(block.inputs[0].shape[1:]) for block in self.blocks]

  def call(self, x, start=0, stop=None, training=False):
    """Runs blocks start..stop-1 (0-based) on x = F^start; stop defaults to B.

    Returns F^stop, or {"probs": [N, C], "pre_logits": [N, D]} when stop = B.
    """
    stop = self.num_blocks if stop is None else int(stop)
    if not 0 <= start < stop <= self.num_blocks:
      raise ValueError(f"need 0 <= start < stop <= {self.num_blocks}, got start={start}, "
                       f"stop={stop}")
    for block in self.blocks[start:stop]:
      x = block(x, training=training)
    return x

  def tail(self, x, start, training=False):
    """Runs blocks start..B-1 (0-based) on x = F^start (start = 0: x is the image).

    This is D^j / D_dual^{b,m} of the paper: the teacher's blocks after a depth.
    """
    if not 0 <= start < self.num_blocks:
      raise ValueError(f"start must be in [0, {self.num_blocks - 1}], got {start}")
    return self.call(x, start, training=training)

  def features(self, images, training=False, with_outputs=False):
    """Returns [F^1, .., F^{B-1}], and the head's dict too if with_outputs."""
    feats = []
    x = images
    for block in self.blocks[:-1]:
      x = block(x, training=training)
      feats.append(x)
    if not with_outputs:
      return feats
    return feats, self.blocks[-1](x, training=training)

  def _unique(self, attr):
    seen, out = set(), []
    for block in self.blocks:
      for v in getattr(block, attr):
        if id(v) not in seen:
          seen.add(id(v))
          out.append(v)
    return out

  @property
  def trainable_variables(self):
    return self._unique("trainable_variables")

  @property
  def variables(self):
    return self._unique("variables")

  def freeze(self):
    """Makes every block (hence the source model's layers) non-trainable."""
    for block in self.blocks:
      block.trainable = False
    return self

  def get_config(self):
    # A BlockNet is rebuilt from its source model (`split_model`), not from a config;
    # save teachers with `save_teacher`.
    raise NotImplementedError("save a BlockNet with blocknet.save_teacher, which writes its "
                              "source model and label file")

  def num_params(self):
    """Number of scalars in all variables (trainable or not), like Model.count_params."""
    return int(sum(np.prod(v.shape) for v in self.variables))

  def to_model(self):
    """A whole keras.Model for saving: the source model, or the blocks chained."""
    if self.model is not None:
      return self.model
    images = keras.Input(shape=self.image_shape, name="images")
    out = images
    for block in self.blocks:
      out = block(out)  # no `training` here: it would be pinned into the saved graph
    return keras.Model(images, {"probs": out["probs"], "pre_logits": out["pre_logits"]},
                       name=self.name)

  def __repr__(self):
    shapes = ", ".join(str(s) for s in self.feature_shapes)
    return (f"BlockNet({self.name!r}, B={self.num_blocks}, labels={self.num_labels}, "
            f"F^0..F^{self.num_blocks - 1}=[{shapes}])")


def _is_sequential(op):
  return isinstance(op, keras.Sequential)


def _is_functional(op):
  # Subclassed models have no graph (`_nodes_by_depth`) and stay opaque single layers.
  return (isinstance(op, keras.Model) and not _is_sequential(op)
          and hasattr(op, "_nodes_by_depth"))


def _layer_names(model):
  """All layer names in model, nested models included (names of the models too)."""
  names = []
  for layer in model.layers:
    names.append(layer.name)
    if isinstance(layer, keras.Model):
      names.extend(_layer_names(layer))
  return names


def _keras_tensors(structure):
  return [t for t in tree.flatten(structure) if isinstance(t, keras.KerasTensor)]


class _Splitter:
  """Re-traces a model, assigning each new tensor to the block that computes it."""

  def __init__(self, model, cuts):
    self.model = model
    self.cuts = {name: i for i, name in enumerate(cuts)}
    self.cut_names = list(cuts)
    self.block_inputs = []  # Input of each block, in order.
    self.block_outputs = [None] * len(cuts)
    self.named = {}  # layer name -> its (single) traced output
    self.last_dense_input = None
    # id(tensor) -> (tensor, block, name of the layer that made it); the tensor is kept so
    # that its id cannot be reused.
    self.info = {}

  def _tag(self, tensor, block, origin):
    self.info[id(tensor)] = (tensor, block, origin)

  def trace(self):
    """Returns the traced outputs of the model (its output structure)."""
    model = self.model
    try:
      model_inputs = model.inputs
    except (AttributeError, ValueError) as e:
      raise TeacherError(f"{model.name} has no defined input; build it on keras.Input "
                         "before splitting") from e
    if not model_inputs or len(model_inputs) != 1:
      raise TeacherError(
          f"{model.name} has {len(model_inputs or [])} inputs; a teacher takes one image "
          "input")
    source = model_inputs[0]
    images = keras.Input(batch_shape=source.shape, dtype=source.dtype,
                         name=f"{model.name}_images")
    self._tag(images, 0, "images")
    self.block_inputs.append(images)
    flat = self._apply(model, (images,), {})
    outputs_struct = model._outputs_struct if _is_functional(model) else model.outputs[0]
    return tree.pack_sequence_as(outputs_struct, flat)

  def _block_of(self, op, tensors):
    if not tensors:
      return len(self.block_inputs) - 1
    blocks = {self.info[id(t)][1] for t in tensors}
    if len(blocks) > 1:
      lo = min(blocks)
      outside = next(self.info[id(t)][2] for t in tensors if self.info[id(t)][1] == lo)
      raise TeacherError(
          f"cannot split {self.model.name} at {self.cut_names}: layer {op.name!r} in block "
          f"{max(blocks) + 1} also needs {outside!r} from block {lo + 1}; cut only where the "
          "whole graph passes through one tensor (e.g. a stage output, not inside a residual "
          "block)")
    return blocks.pop()

  def _apply(self, op, args, kwargs):
    """Calls op on traced tensors (expanding nested models); returns its flat outputs."""
    inputs = _keras_tensors((args, kwargs))
    if _is_functional(op):
      # Inlined layer by layer so that cuts may lie inside it. Non-tensor call arguments of
      # the nested model (e.g. training=False) are dropped: blocks receive `training` from
      # their caller, and teachers are always run with training=False.
      flat = self._trace_functional(op, inputs)
    elif _is_sequential(op):
      x = inputs
      for layer in op.layers:
        x = self._apply(layer, tuple(x), {})
      flat = x
    else:
      block = self._block_of(op, inputs)
      if isinstance(op, keras.layers.Dense):
        self.last_dense_input = inputs[0] if len(inputs) == 1 else None
      flat = tree.flatten(op(*args, **kwargs))
      for t in flat:
        self._tag(t, block, op.name)
    return self._maybe_cut(op, flat)

  def _trace_functional(self, model, inputs):
    if len(inputs) != len(model.inputs):
      raise TeacherError(f"nested model {model.name!r} is called with {len(inputs)} tensors "
                         f"but has {len(model.inputs)} inputs; cannot trace it")
    tensor_dict = {id(x): y for x, y in zip(model.inputs, inputs)}
    for depth in sorted(model._nodes_by_depth, reverse=True):
      for node in model._nodes_by_depth[depth]:
        if node.is_input or not node.operation:
          continue
        if any(id(x) not in tensor_dict for x in node.input_tensors):
          continue  # Not computable from the inputs (Keras skips these too).
        args, kwargs = node.arguments.fill_in(tensor_dict)
        flat = self._apply(node.operation, args, kwargs)
        for x, y in zip(node.outputs, flat):
          tensor_dict[id(x)] = y
    return [tensor_dict[id(x)] for x in model.outputs]

  def _maybe_cut(self, op, flat):
    if len(flat) == 1:
      self.named.setdefault(op.name, flat[0])
    i = self.cuts.get(op.name)
    if i is None:
      return flat
    if len(flat) != 1:
      raise TeacherError(f"cannot cut {self.model.name} at {op.name!r}: it has "
                         f"{len(flat)} outputs; cut at a layer with one output")
    if self.block_outputs[i] is not None:
      raise TeacherError(f"cannot cut {self.model.name} at {op.name!r}: the layer is called "
                         "more than once; cut at a layer used once")
    t = flat[0]
    block = self.info[id(t)][1]
    if block != i:
      raise TeacherError(
          f"cannot split {self.model.name}: block_outputs must be ordered from input to "
          f"output along one path, but {op.name!r} (cut {i + 1}) comes before "
          f"{self.cut_names[block]!r} (cut {block + 1}); got {self.cut_names}")
    self.block_outputs[i] = t
    nxt = keras.Input(batch_shape=t.shape, dtype=t.dtype, name=f"{op.name}_in")
    self._tag(nxt, i + 1, op.name)
    self.block_inputs.append(nxt)
    return [nxt]


def split_model(model, block_outputs=DEFAULT_BLOCK_OUTPUTS, pre_logits=None,
                label_names=None, name=None):
  """Splits a functional Keras model into B = len(block_outputs) + 1 blocks.

  The blocks reuse the model's layer objects, so they share its weights.

  Args:
    model: a functional (or Sequential) keras.Model with one image input whose output is the
      sigmoid probabilities, or a dict with keys "probs" and "pre_logits".
    block_outputs: names of the B-1 layers whose outputs end blocks 1..B-1, from input to
      output (layers inside nested models may be named too).
    pre_logits: name of the layer giving the pooled features before the dense layer. Default:
      the layer named "pre_logits", else the input of the last Dense layer.
    label_names: one name per output; default "label_0", "label_1", ...
    name: name of the BlockNet; default model.name.

  Returns:
    A BlockNet.

  Raises:
    TeacherError: a name is not found (close matches listed), the cut is invalid (a block
      needs a tensor from outside it), or the head cannot be identified.
  """
  name = name or model.name
  if not (_is_functional(model) or _is_sequential(model)):
    raise TeacherError(f"{model.name} is a subclassed {type(model).__name__}, which has no "
                       "layer graph to split; rebuild it as a functional keras.Model")
  block_outputs = list(block_outputs)
  names = _layer_names(model)
  wanted = block_outputs + ([pre_logits] if pre_logits else [])
  for layer_name in wanted:
    if layer_name not in names:
      close = difflib.get_close_matches(layer_name, names, n=5, cutoff=0.5)
      raise TeacherError(
          f"layer {layer_name!r} not found in {model.name}; close matches: {close}; pass the "
          "names of the layers that end blocks 1..B-1 (and pre_logits)")
  if len(set(block_outputs)) != len(block_outputs):
    raise TeacherError(f"block_outputs has a repeated name: {block_outputs}")

  splitter = _Splitter(model, block_outputs)
  outputs = splitter.trace()
  missing = [n for n, t in zip(block_outputs, splitter.block_outputs) if t is None]
  if missing:
    raise TeacherError(f"layers {missing} of {model.name} are not on the path from its input "
                       "to its output; cut at layers between the two")

  if isinstance(outputs, dict) and {"probs", "pre_logits"} <= set(outputs):
    probs, pooled = outputs["probs"], outputs["pre_logits"]
    pre_logits = pre_logits or "pre_logits"
  else:
    flat = tree.flatten(outputs)
    if len(flat) != 1:
      raise TeacherError(f"{model.name} has {len(flat)} outputs; a teacher outputs one "
                         "tensor of sigmoid probabilities (or a dict with probs, pre_logits)")
    probs = flat[0]
    if pre_logits is None and "pre_logits" in splitter.named:
      pre_logits = "pre_logits"
    if pre_logits is not None:
      pooled = splitter.named.get(pre_logits)
      if pooled is None:
        raise TeacherError(f"layer {pre_logits!r} of {model.name} has no single output to "
                           "use as pre_logits; pass pre_logits=<pooling layer name>")
    elif splitter.last_dense_input is not None:
      pooled = splitter.last_dense_input
      pre_logits = splitter.info[id(pooled)][2]
    else:
      raise TeacherError(f"cannot find the pre-logits features of {model.name} (no layer "
                         "named 'pre_logits', no Dense layer); pass pre_logits=<layer name>")
  last = len(block_outputs)
  for what, t in (("probs", probs), ("pre_logits", pooled)):
    if splitter.info[id(t)][1] != last:
      raise TeacherError(f"{what} of {model.name} ({splitter.info[id(t)][2]!r}) is computed "
                         f"before the last cut {block_outputs[-1]!r}; the head must lie in "
                         "the last block")
  if len(probs.shape) != 2 or len(pooled.shape) != 2:
    raise TeacherError(f"{model.name}: probs {probs.shape} and pre_logits {pooled.shape} "
                       "must be [batch, features]; pass pre_logits=<pooled layer name>")

  blocks = []
  for i, inp in enumerate(splitter.block_inputs):
    out = (splitter.block_outputs[i] if i < last
           else {"probs": probs, "pre_logits": pooled})
    blocks.append(keras.Model(inp, out, name=f"{name}_block{i + 1}"))
  num_labels = probs.shape[-1]
  if label_names is None:
    label_names = [f"label_{c}" for c in range(num_labels)]
  return BlockNet(blocks, label_names, name, model=model, block_output_names=block_outputs,
                  pre_logits_name=pre_logits)


def _labels_path(path):
  return f"{os.fspath(path).rstrip(os.sep)}{LABELS_SUFFIX}"


def _first_line(e):
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
    raise TeacherError(f"label file {path} is not valid JSON ({_first_line(e)}); write "
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
      file by save_teacher, else found by `byo.detect_block_outputs` (dfka_tf, keras-cv and
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
    block_outputs, rule = byo.detect_block_outputs(model)
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
                       f"{byo.format_candidates(model)}") from None


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
  if byo.needs_keras_cv(byo.read_keras_config(path)):
    byo.import_keras_cv(path)
  try:
    model = keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
  except Exception as e:  # pylint: disable=broad-except
    # Keras raises many types (zip, h5py, deserialisation); all mean "not a model we read".
    raise TeacherError(f"{what} {path} could not be loaded as a Keras model "
                       f"({_first_line(e)}); pass a .keras file saved by Keras 3") from e
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
    if bn.model is not None:
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


def check_compatible(teachers, depths):
  """Checks that teachers agree on the image shape and on F^d for every d in depths.

  Args:
    teachers: list of BlockNet.
    depths: feature depths d (0 = image .. B-1) that a generator group or TargetNet block
      aligns with.

  Raises:
    ConfigError: no teachers, or a depth out of range.
    TeacherError: teachers differ in block count, image shape or a feature shape.
  """
  if not teachers:
    raise ConfigError("check_compatible needs at least one teacher, got none")
  ref = teachers[0]
  for d in depths:
    if not 0 <= d < ref.num_blocks:
      raise ConfigError(f"depth {d} is out of range for {ref.num_blocks}-block teachers; "
                        f"use 0..{ref.num_blocks - 1}")
  for i, t in enumerate(teachers[1:], start=2):
    if t.num_blocks != ref.num_blocks:
      raise TeacherError(f"teacher {i} ({t.name}) has {t.num_blocks} blocks but teacher 1 "
                         f"({ref.name}) has {ref.num_blocks}; split all teachers alike")
    for d in sorted({0, *depths}):
      a, b = ref.feature_shapes[d], t.feature_shapes[d]
      if a != b:
        what = "image shape F^0" if d == 0 else f"F^{d} (block {d}'s output) shape"
        raise TeacherError(f"teacher {i} ({t.name}) has {what} {b} but teacher 1 "
                           f"({ref.name}) has {a}; use teachers with the same input size and "
                           "feature shapes at the aligned depths")


def batchnorm_taps(teacher: "BlockNet"):
  """image -> {"probs", "pre_logits", "bn_inputs": [...]}: one forward pass with BN taps.

  For L_bns (DeepInversion's BN-statistics prior, an option beyond the paper): the input of
  every BatchNormalization layer of the teacher's source model, next to its usual outputs, so
  the prior costs no extra teacher forward pass. Returns the model and the matching list of
  (moving_mean, moving_variance) variables.

  Raises:
    TeacherError: the teacher has no source model, no BN layers, or a BN layer used twice.
  """
  model = teacher.model
  if model is None:
    raise TeacherError(f"teacher {teacher.name!r} was not cut from a whole model; the "
                       "batch-norm prior (--bns_weight) needs one")
  bns = [l for l in model._flatten_layers(include_self=False)  # pylint: disable=protected-access
         if isinstance(l, keras.layers.BatchNormalization)]
  if not bns:
    raise TeacherError(f"teacher {teacher.name!r} has no BatchNormalization layer; use "
                       "--bns_weight=0")
  try:
    taps = [bn.input for bn in bns]
  except (AttributeError, ValueError) as e:
    raise TeacherError(f"teacher {teacher.name!r}: a batch-norm layer is used more than once "
                       f"({_first_line(e)}); use --bns_weight=0") from None
  out = model.output
  if isinstance(out, dict):
    probs, pre = out["probs"], out["pre_logits"]
  else:
    probs = tree.flatten(out)[0]
    pre = model.get_layer(teacher.pre_logits_name).output
  tap = keras.Model(model.inputs, {"probs": probs, "pre_logits": pre, "bn_inputs": taps},
                    name=f"{teacher.name}_bn_taps")
  tap.trainable = False
  return tap, [(bn.moving_mean, bn.moving_variance) for bn in bns]
