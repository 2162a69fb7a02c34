"""Tests of dfka_tf.models.blocknet and teacher_files: splitting teachers into blocks, loading,
saving."""

import json
import time

import keras
import numpy as np
import pytest

from dfka_tf.errors import ConfigError
from dfka_tf.errors import TeacherError
from dfka_tf.models.blocknet import BlockNet
from dfka_tf.models.blocknet import check_compatible
from dfka_tf.models.blocknet import split_model
from dfka_tf.models.resnet import build_resnet
from dfka_tf.models.teacher_files import load_teacher
from dfka_tf.models.teacher_files import save_teacher

R101_CUTS = ["conv2_block3_out", "conv3_block4_out", "conv4_block23_out"]


def _images(n, size, seed=0):
  return np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)


def _perturb_bn(model, seed=0):
  """Non-trivial BN statistics, so a block that skipped or duplicated a layer would show."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      gamma, beta, mean, var = layer.get_weights()
      layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                         rng.normal(0.0, 0.1, beta.shape).astype(np.float32),
                         rng.normal(0.0, 0.1, mean.shape).astype(np.float32),
                         var * rng.uniform(0.5, 2.0, var.shape).astype(np.float32)])


def _chain(blocknet, x):
  for block in blocknet.blocks:
    x = block(x, training=False)
  return x


@pytest.fixture(scope="module")
def small():
  model = build_resnet("small", 6, input_shape=(32, 32, 3))
  _perturb_bn(model)
  return model


@pytest.fixture(scope="module")
def small_split(small):
  return split_model(small, label_names=[f"c{i}" for i in range(6)])


@pytest.fixture
def tiny():
  model = build_resnet("tiny", 5, input_shape=(32, 32, 3))
  _perturb_bn(model, seed=1)
  return model


def test_block_shapes(small_split):
  bn = small_split
  assert bn.num_blocks == 4 and bn.name == "small"
  assert bn.feature_shapes == [(32, 32, 3), (32, 32, 16), (16, 16, 32), (8, 8, 64)]
  assert bn.image_shape == (32, 32, 3)
  outs = [tuple(b.output.shape[1:]) for b in bn.blocks[:-1]]
  assert outs == [(32, 32, 16), (16, 16, 32), (8, 8, 64)]
  head = bn.blocks[-1].output
  assert set(head) == {"probs", "pre_logits"}
  assert tuple(head["probs"].shape[1:]) == (6,)
  assert tuple(head["pre_logits"].shape[1:]) == (128,)
  assert bn.block_output_names == ["block1_out", "block2_out", "block3_out"]
  assert bn.pre_logits_name == "pre_logits"
  assert bn.label_names == ["c0", "c1", "c2", "c3", "c4", "c5"]


def test_chained_blocks_equal_model(small, small_split):
  images = _images(2, 32)
  expected_probs = small(images)
  expected_pooled = keras.Model(small.input, small.get_layer("pre_logits").output)(images)
  out = _chain(small_split, images)
  np.testing.assert_allclose(out["probs"], expected_probs, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["pre_logits"], expected_pooled, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(small_split(images)["probs"], expected_probs, rtol=1e-5,
                             atol=1e-6)
  # The intermediate features are the model's stage outputs.
  stages = keras.Model(small.input,
                       [small.get_layer(f"block{i}_out").output for i in (1, 2, 3)])(images)
  for got, want in zip(small_split.features(images), stages):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_tail_equals_chaining(small_split):
  images = _images(2, 32, seed=1)
  feats, full = small_split.features(images, with_outputs=True)
  assert len(feats) == 3
  np.testing.assert_allclose(full["probs"], small_split(images)["probs"], rtol=1e-6)
  inputs = [images] + feats
  for start in range(4):
    out = small_split.tail(inputs[start], start)
    np.testing.assert_allclose(out["probs"], full["probs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["pre_logits"], full["pre_logits"], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="start"):
    small_split.tail(images, 4)


def test_resnet50_sized_model_splits_at_64px():
  model = build_resnet("resnet50", 4, input_shape=(64, 64, 3))
  _perturb_bn(model)
  bn = split_model(model)
  assert bn.feature_shapes == [(64, 64, 3), (16, 16, 256), (8, 8, 512), (4, 4, 1024)]
  images = _images(1, 64)
  np.testing.assert_allclose(bn(images)["probs"], model(images), rtol=1e-5, atol=1e-6)


def _keras_resnet101_teacher(num_classes=7):
  base = keras.applications.ResNet101(include_top=False, weights=None,
                                      input_shape=(64, 64, 3))
  x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
  x = keras.layers.Dense(num_classes, activation="sigmoid", name="predictions")(x)
  return keras.Model(base.input, x, name="r101")


def test_keras_applications_resnet101_split():
  start = time.perf_counter()
  model = _keras_resnet101_teacher()
  bn = split_model(model, R101_CUTS)
  assert bn.feature_shapes == [(64, 64, 3), (16, 16, 256), (8, 8, 512), (4, 4, 1024)]
  assert bn.pre_logits_name == "avg_pool"  # the input of the last Dense
  assert tuple(bn.blocks[-1].output["pre_logits"].shape) == (None, 2048)
  images = _images(1, 64)
  np.testing.assert_allclose(bn(images)["probs"], model(images), rtol=1e-5, atol=1e-6)
  # Every layer lands in exactly one block, and the blocks own all of the model's weights.
  block_layers = [l for b in bn.blocks for l in b.layers
                  if not isinstance(l, keras.layers.InputLayer)]
  model_layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
  assert sorted(id(l) for l in block_layers) == sorted(id(l) for l in model_layers)
  assert bn.num_params() == model.count_params() == 42_658_176 + 2048 * 7 + 7
  assert time.perf_counter() - start < 60


def test_nested_model_is_split_through(tiny):
  # A backbone used as one layer of a bigger model (the usual transfer-learning shape).
  inputs = keras.Input((32, 32, 3))
  outer = keras.Model(inputs, keras.layers.Identity(name="extra")(tiny(inputs)),
                      name="outer")
  bn = split_model(outer)
  assert bn.feature_shapes == [(32, 32, 3), (32, 32, 4), (16, 16, 8), (8, 8, 8)]
  images = _images(2, 32)
  np.testing.assert_allclose(bn(images)["probs"], outer(images), rtol=1e-5, atol=1e-6)


def test_blocks_share_weights_with_model(tiny):
  bn = split_model(tiny)
  assert {id(v) for v in bn.variables} == {id(v) for v in tiny.weights}
  assert bn.num_params() == tiny.count_params()
  logits = tiny.get_layer("logits")
  logits.set_weights([np.zeros_like(w) for w in logits.get_weights()])
  np.testing.assert_allclose(bn(_images(2, 32))["probs"], np.full((2, 5), 0.5), atol=1e-7)


def test_freeze(tiny):
  bn = split_model(tiny)
  assert len(bn.trainable_variables) == len(tiny.trainable_weights) > 0
  assert bn.freeze() is bn
  assert bn.trainable_variables == []
  assert tiny.trainable_weights == []
  assert all(not b.trainable for b in bn.blocks)


def test_save_load_round_trip(tmp_path, small_split):
  path, labels_path = save_teacher(small_split, tmp_path / "teachers" / "voc_a.keras")
  assert labels_path == tmp_path / "teachers" / "voc_a.keras.labels.json"
  assert json.loads(labels_path.read_text())["labels"] == small_split.label_names
  loaded = load_teacher(path)
  assert loaded.name == "voc_a"
  assert loaded.label_names == small_split.label_names
  assert loaded.feature_shapes == small_split.feature_shapes
  images = _images(2, 32, seed=3)
  want, got = small_split(images), loaded(images)
  np.testing.assert_allclose(got["probs"], want["probs"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["pre_logits"], want["pre_logits"], rtol=1e-5, atol=1e-6)


def test_save_load_keeps_custom_cuts_and_plain_label_list(tmp_path, tiny):
  cuts = ["conv2_block1_out", "conv3_block1_out", "conv4_block1_out"]
  bn = split_model(tiny, cuts, label_names=list("abcde"))
  path, labels_path = save_teacher(bn, tmp_path / "t.keras")
  loaded = load_teacher(path)  # cut names come from the label file
  assert loaded.block_output_names == cuts
  # A plain list is accepted too, with explicit cuts.
  plain = tmp_path / "plain.json"
  plain.write_text(json.dumps(list("vwxyz")))
  again = load_teacher(path, block_outputs=cuts, labels_json=plain)
  assert again.label_names == list("vwxyz")
  images = _images(1, 32)
  np.testing.assert_allclose(again(images)["probs"], bn(images)["probs"], rtol=1e-5)


def test_save_load_blocknet_without_source_model(tmp_path, tiny):
  src = split_model(tiny, label_names=list("abcde"))
  bare = BlockNet(src.blocks, src.label_names, "bare")
  path, _ = save_teacher(bare, tmp_path / "bare.keras")
  loaded = load_teacher(path)
  assert loaded.num_blocks == 4
  assert loaded.feature_shapes == src.feature_shapes
  images = _images(2, 32)
  np.testing.assert_allclose(loaded(images)["probs"], src(images)["probs"], rtol=1e-5)
  np.testing.assert_allclose(loaded(images)["pre_logits"], src(images)["pre_logits"],
                             rtol=1e-5)


def test_save_keras_model_needs_labels(tmp_path, tiny):
  with pytest.raises(TeacherError, match="label_names"):
    save_teacher(tiny, tmp_path / "m.keras")
  with pytest.raises(TeacherError, match=r"\.keras"):
    save_teacher(tiny, tmp_path / "m.h5", label_names=list("abcde"))
  path, _ = save_teacher(tiny, tmp_path / "m.keras", label_names=list("abcde"))
  assert load_teacher(path).block_output_names == ["block1_out", "block2_out", "block3_out"]


# --- errors -------------------------------------------------------------------------------


def test_unknown_layer_lists_close_matches(tiny):
  with pytest.raises(TeacherError, match=r"'block2_ot' not found in tiny; close matches: "
                     r"\['block2_out'"):
    split_model(tiny, ["block1_out", "block2_ot", "block3_out"])


def test_cut_inside_residual_block_is_refused(tiny):
  # conv3_block1_1_relu is inside a residual block: the add after it also needs the
  # projection shortcut, which is computed before the cut.
  with pytest.raises(TeacherError, match=r"layer 'conv3_block1_add' in block 3 also needs "
                     r"'conv3_block1_0_bn' from block 2"):
    split_model(tiny, ["block1_out", "conv3_block1_1_relu", "block3_out"])


def test_cuts_out_of_order_are_refused(tiny):
  with pytest.raises(TeacherError, match="ordered from input to output"):
    split_model(tiny, ["block2_out", "block1_out", "block3_out"])


def test_head_before_last_cut_is_refused(tiny):
  with pytest.raises(TeacherError, match="head must lie in the last block"):
    split_model(tiny, ["block1_out", "block2_out", "block3_out"], pre_logits="conv1_relu")


def test_missing_pre_logits_is_refused():
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(2, 3, name="c1")(inputs)
  x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
  model = keras.Model(inputs, keras.layers.Activation("sigmoid", name="s")(x))
  with pytest.raises(TeacherError, match="pre_logits=<layer name>"):
    split_model(model, ["c1"])
  bn = split_model(model, ["c1"], pre_logits="gap")  # given explicitly, it works
  assert bn.num_blocks == 2 and bn.num_labels == 2


def test_subclassed_model_is_refused():
  class Net(keras.Model):

    def __init__(self):
      super().__init__()
      self.dense = keras.layers.Dense(2)

    def call(self, x):
      return self.dense(x)

  with pytest.raises(TeacherError, match="subclassed"):
    split_model(Net(), [])


def test_label_count_mismatch(tiny):
  with pytest.raises(TeacherError, match="5 outputs but 2 label names"):
    split_model(tiny, label_names=["a", "b"])


def test_load_teacher_errors(tmp_path, tiny):
  with pytest.raises(TeacherError, match=r"nope\.keras not found"):
    load_teacher(tmp_path / "nope.keras")

  garbage = tmp_path / "garbage.keras"
  garbage.write_bytes(b"not a zip file")
  with pytest.raises(TeacherError, match=r"garbage\.keras could not be loaded as a Keras"):
    load_teacher(garbage)

  text = tmp_path / "weights.txt"
  text.write_text("x")
  with pytest.raises(TeacherError, match="not a Keras model file"):
    load_teacher(text)

  path = tmp_path / "t.keras"
  tiny.save(path)
  with pytest.raises(TeacherError, match=r"t\.keras\.labels\.json for teacher .* not found"):
    load_teacher(path)
  (tmp_path / "t.keras.labels.json").write_text(json.dumps({"labels": ["a", "b", "c"]}))
  with pytest.raises(TeacherError, match="has 5 outputs but its label file lists 3"):
    load_teacher(path)
  (tmp_path / "t.keras.labels.json").write_text("{bad json")
  with pytest.raises(TeacherError, match="not valid JSON"):
    load_teacher(path)
  (tmp_path / "t.keras.labels.json").write_text(json.dumps({"names": ["a"]}))
  with pytest.raises(TeacherError, match="must hold"):
    load_teacher(path)
  (tmp_path / "t.keras.labels.json").write_text(json.dumps(list("abcde")))
  with pytest.raises(TeacherError, match="'conv9' not found"):
    load_teacher(path, block_outputs=["conv9"])
  assert load_teacher(path).num_blocks == 4


def test_load_teacher_saved_model_directories(tmp_path):
  plain = tmp_path / "exported"
  plain.mkdir()
  (plain / "saved_model.pb").write_bytes(b"")
  with pytest.raises(TeacherError, match="SavedModel without Keras metadata.*cannot be "
                     "split"):
    load_teacher(plain)
  keras2 = tmp_path / "tf_keras_model"
  keras2.mkdir()
  (keras2 / "saved_model.pb").write_bytes(b"")
  (keras2 / "keras_metadata.pb").write_bytes(b"")
  with pytest.raises(TeacherError, match="Keras 2"):
    load_teacher(keras2)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(TeacherError, match="is a directory"):
    load_teacher(empty)


def test_error_messages_are_one_line(tmp_path, tiny):
  garbage = tmp_path / "g.keras"
  garbage.write_bytes(b"\x00\x01")
  for call in (lambda: load_teacher(garbage),
               lambda: split_model(tiny, ["block1_out", "conv3_block1_1_relu"])):
    with pytest.raises(TeacherError) as info:
      call()
    assert "\n" not in str(info.value)


# --- check_compatible ---------------------------------------------------------------------


def test_check_compatible(small_split, tiny):
  tiny_bn = split_model(tiny)
  other_small = split_model(build_resnet("small", 3, input_shape=(32, 32, 3)), name="s2")
  check_compatible([small_split, other_small], depths=[0, 1, 2, 3])
  check_compatible([small_split, tiny_bn], depths=[0])  # same image size only
  with pytest.raises(TeacherError, match=r"teacher 2 \(tiny\) has F\^2 \(block 2's output\) shape "
                     r"\(16, 16, 8\) but teacher 1 \(small\) has \(16, 16, 32\)"):
    check_compatible([small_split, tiny_bn], depths=[2])
  big = split_model(build_resnet("tiny", 5, input_shape=(64, 64, 3)), name="tiny64")
  with pytest.raises(TeacherError, match=r"image shape F\^0 \(64, 64, 3\)"):
    check_compatible([tiny_bn, big], depths=[])
  with pytest.raises(ConfigError, match="depth 4"):
    check_compatible([tiny_bn], depths=[4])
  with pytest.raises(ConfigError, match="at least one teacher"):
    check_compatible([], depths=[0])


def test_sequential_model_splits():
  model = keras.Sequential([
      keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c1"),
      keras.layers.ReLU(name="r1"), keras.layers.Conv2D(4, 3, name="c2"),
      keras.layers.GlobalAveragePooling2D(name="gap"),
      keras.layers.Dense(3, activation="sigmoid", name="d")])
  bn = split_model(model, ["r1"])
  assert bn.feature_shapes == [(8, 8, 3), (6, 6, 4)]
  assert bn.pre_logits_name == "gap"
  images = _images(2, 8)
  np.testing.assert_allclose(bn(images)["probs"], model(images), rtol=1e-6)
  with pytest.raises(TeacherError, match="no defined input"):
    split_model(keras.Sequential([keras.layers.Dense(3)]), [])


def test_blocknet_rejects_head_without_dict(tiny):
  with pytest.raises(ConfigError, match="'probs' and 'pre_logits'"):
    BlockNet([tiny], list("abcde"), "bad")


def test_blocknet_is_a_keras_model_whose_call_runs_a_range_of_blocks():
  model = build_resnet("tiny", 3, (16, 16, 3), name="ranged")
  net = split_model(model, label_names=["a", "b", "c"])
  assert isinstance(net, keras.Model)
  x = np.random.RandomState(0).rand(2, 16, 16, 3).astype("float32")
  f1 = net.blocks[0](x)
  f3 = net.blocks[2](net.blocks[1](f1))
  np.testing.assert_array_equal(net(x, stop=1).numpy(), f1.numpy())
  np.testing.assert_array_equal(net(f1, start=1, stop=3).numpy(), f3.numpy())
  head = net(f3, start=3)
  np.testing.assert_array_equal(head["probs"].numpy(), net.tail(f3, 3)["probs"].numpy())
  np.testing.assert_allclose(net(x)["probs"].numpy(), model(x).numpy(), rtol=1e-6)
  # Every weight is the source model's, counted once.
  assert net.num_params() == model.count_params()
  assert {id(v) for v in net.variables} == {id(v) for v in model.variables}
  with pytest.raises(ValueError, match="start < stop"):
    net(f3, start=3, stop=2)
