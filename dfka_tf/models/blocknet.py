"""Networks as chains of B blocks A^1..A^B (`BlockNet`), cut from a whole Keras model.

Block b (1-based, `blocks[b - 1]`) maps F^{b-1} to F^b, F^0 being the [0, 1] image. The last
block also holds the head and returns {"probs": [N, C], "pre_logits": [N, D]}; pre_logits are
the pooled features before the dense layer, which L_a (S-Eq. 2) needs.

`split_model` cuts any functional Keras model at named layers (`splitter.Splitter`); the
blocks share every weight with the model they were cut from. Teacher files are read and
written by `teacher_files`.
"""

import difflib

import keras
import numpy as np
from keras import tree

from dfka_tf.errors import ConfigError
from dfka_tf.errors import TeacherError
from dfka_tf.models.splitter import Splitter, is_functional, is_sequential, layer_names

# The stage outputs of build_resnet that end blocks 1..3 (B = 4).
DEFAULT_BLOCK_OUTPUTS = ("block1_out", "block2_out", "block3_out")


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
      None.
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
    # save teachers with `teacher_files.save_teacher`.
    raise NotImplementedError("save a BlockNet with teacher_files.save_teacher, which writes "
                              "its source model and label file")

  def num_params(self):
    """Number of scalars in all variables (trainable or not), like Model.count_params."""
    return int(sum(np.prod(v.shape) for v in self.variables))

  def to_model(self):
    """A whole keras.Model for saving: the source model, or the blocks chained."""
    if self.source_model is not None:
      return self.source_model
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
  if not (is_functional(model) or is_sequential(model)):
    raise TeacherError(f"{model.name} is a subclassed {type(model).__name__}, which has no "
                       "layer graph to split; rebuild it as a functional keras.Model")
  block_outputs = list(block_outputs)
  names = layer_names(model)
  wanted = block_outputs + ([pre_logits] if pre_logits else [])
  for layer_name in wanted:
    if layer_name not in names:
      close = difflib.get_close_matches(layer_name, names, n=5, cutoff=0.5)
      raise TeacherError(
          f"layer {layer_name!r} not found in {model.name}; close matches: {close}; pass the "
          "names of the layers that end blocks 1..B-1 (and pre_logits)")
  if len(set(block_outputs)) != len(block_outputs):
    raise TeacherError(f"block_outputs has a repeated name: {block_outputs}")

  splitter = Splitter(model, block_outputs)
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
