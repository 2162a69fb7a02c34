"""The TargetNet: built (a dfka_tf ResNet, or your teachers' architecture), cut into blocks
where the teachers are, and checked against them.

`build_target` makes the whole network; `target_blocknet` cuts it as the teachers are cut;
`check_target` refuses a TargetNet whose blocks do not take the teachers' feature shapes.
With `--arch=teacher` the TargetNet is `target_model`: teacher 1's architecture rebuilt with
fresh weights (or `--target_init`'s) and a new head.
"""

from pathlib import Path
from typing import Dict, Optional, Sequence

import keras

from dfka_tf.config import RunConfig
from dfka_tf.options import TEACHER_ARCH
from dfka_tf.errors import TeacherError
from dfka_tf.models.blocknet import DEFAULT_BLOCK_OUTPUTS, BlockNet, split_model
from dfka_tf.models.resnet import build_resnet, copy_weights_by_name
from dfka_tf.models.splitter import Splitter, flat_layers
from dfka_tf.models.teacher_files import CUSTOM_OBJECTS, read_keras_model


def input_shape(config: RunConfig):
  """(H, W, 3) of the run's images."""
  s = config.data.image_size
  return (s, s, 3)


def build_target(config: RunConfig, template: Optional[BlockNet], num_labels: int,
                 name: str, backbone: Optional[keras.Model]) -> keras.Model:
  """A TargetNet (or teacher) of data.arch: a dfka_tf ResNet, from `backbone` where given;
  with --arch=teacher, teacher 1's architecture (`template`) from --target_init or fresh."""
  c = config
  if c.data.arch == TEACHER_ARCH:
    return target_model(template, num_labels, name, init=c.data.target_init)
  model = build_resnet(c.data.arch, num_labels, input_shape(c), name=name)
  if backbone is not None:
    copy_weights_by_name(backbone, model, skip=("logits",))
  return model


def target_blocknet(config: RunConfig, template: Optional[BlockNet], model,
                    labels) -> BlockNet:
  """The TargetNet `model` cut into blocks where the teachers are (their layer names with
  --arch=teacher, build_resnet's stage outputs otherwise)."""
  cuts = (template.block_output_names if config.data.arch == TEACHER_ARCH
          else DEFAULT_BLOCK_OUTPUTS)
  return split_model(model, cuts, label_names=list(labels))


def check_target(config: RunConfig, teachers, target: BlockNet):
  """The TargetNet's blocks must take and give the teachers' feature shapes (Step II trains
  block b on teacher features F^{b-1})."""
  ref = teachers[0]
  if target.feature_shapes != ref.feature_shapes:
    arch = config.data.arch
    hint = ("" if arch == TEACHER_ARCH else
            "; leave --arch unset (or --arch=teacher) to build it in the teachers' "
            "architecture")
    raise TeacherError(
        f"TargetNet --arch={arch} has {target.num_blocks} blocks taking "
        f"{target.feature_shapes}, but teacher 1 ({ref.name}) has {ref.num_blocks} taking "
        f"{ref.feature_shapes}{hint}.")


def freeze_batchnorm(model):
  """Every batch norm inside `model` frozen (beyond the paper; --target_bn, --branch_bn):
  not trainable, so Keras runs it in inference mode. Its moving statistics, scale and shift
  stay as the start (or the teacher) left them."""
  for layer in model._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.trainable = False


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
  source = teacher.source_model
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
  tracer = Splitter(rebuilt, [])
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
