"""Tests of dfka_tf.models.resnet: spec-table ResNets, endpoints, normalisation, weights."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfka_tf.errors import ConfigError
from dfka_tf.models import resnet
from dfka_tf.models.resnet import build_resnet
from dfka_tf.models.resnet import InputNormalization

NUM_CLASSES = 20
# keras.applications ResNet50/101(include_top=False, weights=None), pinned: BN moving
# statistics included, as Model.count_params counts them.
RESNET50_BACKBONE_PARAMS = 23_587_712
RESNET101_BACKBONE_PARAMS = 42_658_176
HEAD_PARAMS = 2048 * NUM_CLASSES + NUM_CLASSES  # 40_980


def _backbone(model):
  return keras.Model(model.input, model.get_layer("block4_out").output)


def _shapes(model, names):
  return {n: tuple(model.get_layer(n).output.shape[1:]) for n in names}


ENDPOINT_NAMES = ("block1_out", "block2_out", "block3_out", "block4_out", "pre_logits",
                  "logits", "probs")


@pytest.fixture(scope="module", params=["resnet50", "resnet101"])
def big_pair(request):
  """(arch, ours, keras.applications reference), both at 224 with random init."""
  arch = request.param
  ours = build_resnet(arch, NUM_CLASSES)
  ref = getattr(keras.applications, resnet.RESNET_SPECS[arch].keras_app)(
      include_top=False, weights=None, input_shape=(224, 224, 3))
  return arch, ours, ref


def test_param_counts_match_keras_applications(big_pair):
  arch, ours, ref = big_pair
  pinned = {"resnet50": RESNET50_BACKBONE_PARAMS, "resnet101": RESNET101_BACKBONE_PARAMS}
  assert ref.count_params() == pinned[arch]
  assert _backbone(ours).count_params() == pinned[arch]
  assert ours.count_params() == pinned[arch] + HEAD_PARAMS
  assert HEAD_PARAMS == 40_980
  assert {"resnet50": 23_628_692, "resnet101": 42_699_156}[arch] == ours.count_params()


def test_layers_match_keras_applications_by_name(big_pair):
  _, ours, ref = big_pair
  compared = 0
  for layer in ref.layers:
    if not layer.weights:
      continue
    mine = ours.get_layer(layer.name)
    assert type(mine) is type(layer), layer.name
    assert [w.shape for w in mine.weights] == [w.shape for w in layer.weights], layer.name
    ours_cfg, ref_cfg = mine.get_config(), layer.get_config()
    for key in ("strides", "padding", "use_bias", "epsilon", "kernel_size", "filters"):
      assert ours_cfg.get(key) == ref_cfg.get(key), (layer.name, key)
    compared += 1
  # 53 convs + 53 BNs in ResNet-50, 104 + 104 in ResNet-101.
  assert compared == 2 * len([l for l in ref.layers if isinstance(l, keras.layers.Conv2D)])


def test_endpoint_shapes_at_224(big_pair):
  arch, ours, ref = big_pair
  assert _shapes(ours, ENDPOINT_NAMES) == {
      "block1_out": (56, 56, 256), "block2_out": (28, 28, 512),
      "block3_out": (14, 14, 1024), "block4_out": (7, 7, 2048), "pre_logits": (2048,),
      "logits": (NUM_CLASSES,), "probs": (NUM_CLASSES,)}
  # The endpoints sit on the Keras stage outputs of the same name scheme.
  last = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}[arch]
  for s, n in enumerate(last):
    keras_name = f"conv{s + 2}_block{n}_out"
    assert tuple(ref.get_layer(keras_name).output.shape[1:]) == _shapes(
        ours, [f"block{s + 1}_out"])[f"block{s + 1}_out"]
    endpoint = ours.get_layer(f"block{s + 1}_out")
    assert endpoint.input._keras_history.operation.name == keras_name
  assert ours.layers[1].name == "input_normalization"
  assert ours.layers[1].mode == "caffe"
  assert tuple(ours.output.shape) == (None, NUM_CLASSES)


@pytest.mark.parametrize("arch,expected", [
    ("small", [(32, 32, 16), (16, 16, 32), (8, 8, 64), (4, 4, 128), (128,)]),
    ("tiny", [(32, 32, 4), (16, 16, 8), (8, 8, 8), (4, 4, 16), (16,)]),
])
def test_endpoint_shapes_at_32(arch, expected):
  model = build_resnet(arch, 5, input_shape=(32, 32, 3))
  names = ["block1_out", "block2_out", "block3_out", "block4_out", "pre_logits"]
  assert [_shapes(model, names)[n] for n in names] == expected
  assert model.layers[1].mode == "imagenet"
  feats = keras.Model(model.input, [model.get_layer(n).output for n in names])(
      np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32))
  assert [tuple(f.shape[1:]) for f in feats] == expected
  assert float(keras.ops.min(feats[3])) >= 0.0  # post-ReLU


def test_resnet18_endpoint_shapes():
  model = build_resnet("resnet18", 3, input_shape=(64, 64, 3))
  assert _shapes(model, ["block1_out", "block2_out", "block3_out", "block4_out"]) == {
      "block1_out": (16, 16, 64), "block2_out": (8, 8, 128), "block3_out": (4, 4, 256),
      "block4_out": (2, 2, 512)}


def test_probs_are_sigmoid_of_logits():
  model = build_resnet("tiny", 4, input_shape=(32, 32, 3))
  # Large logits so that saturation (both ends of [0, 1]) is exercised.
  dense = model.get_layer("logits")
  kernel, _ = dense.get_weights()
  kernel = kernel * 50.0
  kernel[:, :2] = 0.0  # labels 0 and 1 saturate through their bias alone
  dense.set_weights([kernel, np.array([-30.0, 30.0, 0.0, 1.0], np.float32)])
  images = np.random.default_rng(1).random((3, 32, 32, 3), dtype=np.float32)
  logits, probs = keras.Model(model.input, [dense.output, model.output])(images)
  logits, probs = np.asarray(logits, np.float64), np.asarray(probs)
  assert probs.dtype == np.float32
  assert probs.min() >= 0.0 and probs.max() <= 1.0
  np.testing.assert_allclose(probs, 1.0 / (1.0 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
  assert probs[:, 0].max() < 1e-6 and probs[:, 1].min() > 1 - 1e-6
  np.testing.assert_allclose(probs, model(images), rtol=1e-6)


@pytest.mark.parametrize("mode,expected", [
    ("imagenet", [(0.2 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.8 - 0.406) / 0.225]),
    # BGR order on the [0, 255] scale minus the BGR means.
    ("caffe", [0.8 * 255 - 103.939, 0.5 * 255 - 116.779, 0.2 * 255 - 123.68]),
    ("tf", [-0.6, 0.0, 0.6]),
    ("none", [0.2, 0.5, 0.8]),
])
def test_input_normalization_by_hand(mode, expected):
  pixel = np.array([0.2, 0.5, 0.8], np.float32)
  images = np.tile(pixel, (2, 3, 4, 1))
  out = np.asarray(InputNormalization(mode)(images))
  assert out.shape == (2, 3, 4, 3)
  np.testing.assert_allclose(out, np.tile(np.array(expected, np.float32), (2, 3, 4, 1)),
                             rtol=1e-5, atol=1e-4)


def test_caffe_mode_matches_keras_preprocess_input():
  images = np.random.default_rng(2).random((2, 5, 5, 3), dtype=np.float32)
  expected = keras.applications.resnet.preprocess_input(images * 255.0)
  np.testing.assert_allclose(InputNormalization("caffe")(images), expected, atol=1e-3)


def test_input_normalization_config_round_trip():
  layer = InputNormalization("tf", name="norm")
  config = layer.get_config()
  assert config["mode"] == "tf" and config["name"] == "norm"
  clone = InputNormalization.from_config(config)
  assert clone.mode == "tf" and clone.name == "norm"
  serialized = keras.saving.serialize_keras_object(layer)
  assert serialized["registered_name"] == "dfka_tf>InputNormalization"
  restored = keras.saving.deserialize_keras_object(serialized)
  assert isinstance(restored, InputNormalization) and restored.mode == "tf"
  x = np.full((1, 2, 2, 3), 0.25, np.float32)
  np.testing.assert_allclose(restored(x), np.full((1, 2, 2, 3), -0.5, np.float32))


def test_input_normalization_rejects_unknown_mode():
  with pytest.raises(ConfigError, match="'bgr'"):
    InputNormalization("bgr")


def test_save_and_reload_tiny(tmp_path):
  model = build_resnet("tiny", 3, input_shape=(32, 32, 3), normalization="tf")
  # Non-default BN statistics, so a reload that dropped state would differ.
  bn = model.get_layer("conv1_bn")
  gamma, beta, mean, var = bn.get_weights()
  bn.set_weights([gamma * 2.0, beta + 0.1, mean + 0.3, var * 4.0])
  images = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32)
  expected = model(images)
  path = tmp_path / "tiny.keras"
  model.save(path)
  reloaded = keras.saving.load_model(path)
  assert reloaded.get_layer("input_normalization").mode == "tf"
  tf.debugging.assert_near(reloaded(images), expected, atol=1e-6)
  assert [l.name for l in reloaded.layers] == [l.name for l in model.layers]


@pytest.mark.parametrize("kwargs,match", [
    (dict(arch="resnet34"), "resnet34"),
    (dict(normalization="bgr"), "bgr"),
    (dict(weights="imagenet"), "arch='tiny'"),
    (dict(weights="/x.h5"), "/x.h5"),
    (dict(num_classes=0), "num_classes"),
    (dict(input_shape=(32, 32, 1)), r"\(32, 32, 1\)"),
])
def test_build_resnet_rejects_bad_arguments(kwargs, match):
  args = dict(arch="tiny", num_classes=3, input_shape=(32, 32, 3))
  args.update(kwargs)
  with pytest.raises(ConfigError, match=match):
    build_resnet(**args)


def test_imagenet_weights_unavailable_warns_once(monkeypatch, caplog):
  calls = []

  def offline(**kwargs):
    calls.append(kwargs)
    raise Exception("URL fetch failure on https://x: None -- [Errno -2] Name or service "
                    "not known")

  monkeypatch.setattr(keras.applications, "ResNet50", offline)
  with caplog.at_level(logging.WARNING, logger="dfka_tf.models.resnet"):
    model = build_resnet("resnet50", 2, input_shape=(32, 32, 3), weights="imagenet")
  assert calls == [dict(include_top=False, weights="imagenet", input_shape=(None, None, 3))]
  warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
  assert len(warnings) == 1
  assert warnings[0].getMessage().startswith(
      "ImageNet weights unavailable (offline?): initialising randomly; place the weights "
      "file in ~/.keras/models to use them")
  assert tuple(model.output.shape) == (None, 2)


def test_imagenet_weights_are_copied_and_compute_like_keras(monkeypatch):
  """Stands in a random-init keras ResNet50 for the ImageNet download, then compares."""
  real = keras.applications.ResNet50
  made = []

  def fake(**kwargs):
    assert kwargs["weights"] == "imagenet"
    made.append(real(include_top=False, weights=None, input_shape=(None, None, 3)))
    return made[0]

  monkeypatch.setattr(keras.applications, "ResNet50", fake)
  model = build_resnet("resnet50", 2, input_shape=(64, 64, 3), weights="imagenet")
  ref = made[0]
  weighted = [layer for layer in ref.layers if layer.weights]
  assert len(weighted) == 106  # 53 convs + 53 BNs
  for layer in weighted:
    for w_ref, w_ours in zip(layer.weights, model.get_layer(layer.name).weights):
      np.testing.assert_array_equal(np.asarray(w_ours), np.asarray(w_ref))
  # Same graph: our [0, 1] input + caffe layer == keras on preprocess_input(255 x).
  images = np.random.default_rng(4).random((1, 64, 64, 3), dtype=np.float32)
  ours = _backbone(model)(images)
  theirs = ref(keras.applications.resnet.preprocess_input(images * 255.0))
  assert tuple(ours.shape) == (1, 2, 2, 2048)
  np.testing.assert_allclose(ours, theirs, rtol=1e-4,
                             atol=1e-4 * float(np.abs(theirs).max()))


def test_copy_weights_by_name_skips_the_classifier():
  from dfka_tf.models.resnet import copy_weights_by_name
  source = build_resnet("tiny", 5, (32, 32, 3), name="src")
  target = build_resnet("tiny", 3, (32, 32, 3), name="dst")
  logits_before = [w.copy() for w in target.get_layer("logits").get_weights()]
  weighted = [l for l in target.layers if l.weights]
  assert copy_weights_by_name(source, target, skip=("logits",)) == len(weighted) - 1
  for layer in weighted:
    mine, theirs = layer.get_weights(), source.get_layer(layer.name).get_weights()
    if layer.name == "logits":
      for a, b in zip(mine, logits_before):
        np.testing.assert_array_equal(a, b)
    else:
      for a, b in zip(mine, theirs):
        np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="no layer"):
    copy_weights_by_name(
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="x")]), target)
