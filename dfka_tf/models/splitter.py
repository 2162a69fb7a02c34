"""The graph splitter: re-traces a functional Keras model, tagging each tensor with its block.

`Splitter` calls the model's own layer objects, node by node, on fresh symbolic inputs, so
what it traces shares every weight with the original model (nothing is copied) and nested
sub-models (e.g. a keras.applications backbone used as one layer) are traced through. Each
tensor is tagged with the block that computes it; a layer whose inputs come from two blocks
means a cut inside a residual branch, which is refused. `blocknet.split_model` cuts teachers
with it; `teacher_files` tries candidate cuts with it; `target` rebuilds a teacher's
architecture up to its pooled features with it.
"""

from typing import List

import keras
from keras import tree

from dfka_tf.errors import TeacherError


def is_sequential(op):
  """Whether `op` is a keras.Sequential (traced layer after layer)."""
  return isinstance(op, keras.Sequential)


def is_functional(op):
  """Whether `op` is a functional keras.Model, whose graph can be traced node by node."""
  # Subclassed models have no graph (`_nodes_by_depth`) and stay opaque single layers.
  return (isinstance(op, keras.Model) and not is_sequential(op)
          and hasattr(op, "_nodes_by_depth"))


def layer_names(model):
  """All layer names in model, nested models included (names of the models too)."""
  names = []
  for layer in model.layers:
    names.append(layer.name)
    if isinstance(layer, keras.Model):
      names.extend(layer_names(layer))
  return names


def flat_layers(model) -> List[keras.layers.Layer]:
  """Every layer of `model` in graph order, nested models expanded into their layers."""
  out = []
  for layer in model.layers:
    if isinstance(layer, keras.Model) and hasattr(layer, "layers"):
      out.extend(flat_layers(layer))
    else:
      out.append(layer)
  return out


def _keras_tensors(structure):
  return [t for t in tree.flatten(structure) if isinstance(t, keras.KerasTensor)]


class Splitter:
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
    outputs_struct = model._outputs_struct if is_functional(model) else model.outputs[0]
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
    if is_functional(op):
      # Inlined layer by layer so that cuts may lie inside it. Non-tensor call arguments of
      # the nested model (e.g. training=False) are dropped: blocks receive `training` from
      # their caller, and teachers are always run with training=False.
      flat = self._trace_functional(op, inputs)
    elif is_sequential(op):
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
