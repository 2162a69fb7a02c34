"""Bring your own teachers of any Keras architecture (models/teacher_files.py,
models/target.py): block ends found without flags, the TargetNet in the teachers'
architecture, checks before anything runs, scoring on your own data (--eval_data) and of an
export (experiments.evaluate), KA on your own unlabeled images (--unlabeled_data)."""

import json
import os
import time

import keras
import numpy as np
import pytest

from dfka_tf.errors import TeacherError
from dfka_tf.models import blocknet, splitter, target, teacher_files
from tests import helpers
from tests.test_cli import assert_user_error, run_cli

QUICK = ["--preset=quick", "--batch_size=4", "--quiet"]


def foreign_teacher(labels, widths=(10, 18, 26, 34), size=32, name="foreign", names=True):
  """A plain residual network no preset builds: one 3x3 stem, one residual unit per stage
  (stride 2 from stage 2), stage outputs named block<s>_out (when `names`)."""
  images = keras.Input((size, size, 3), name="pixels")
  x = keras.layers.Conv2D(widths[0], 3, padding="same", name="stem")(images)
  for s, width in enumerate(widths):
    stride = 1 if s == 0 else 2
    shortcut = keras.layers.Conv2D(width, 1, strides=stride, name=f"s{s}_proj")(x)
    y = keras.layers.Conv2D(width, 3, strides=stride, padding="same", name=f"s{s}_a")(x)
    y = keras.layers.BatchNormalization(name=f"s{s}_bn")(y)
    y = keras.layers.Activation("relu", name=f"s{s}_relu")(y)
    y = keras.layers.Conv2D(width, 3, padding="same", name=f"s{s}_b")(y)
    x = keras.layers.Add(name=f"s{s}_add")([shortcut, y])
    x = keras.layers.Activation("relu", name=f"block{s + 1}_out" if names else f"s{s}_out")(x)
  x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
  out = keras.layers.Dense(len(labels), activation="sigmoid", name="scores")(x)
  return keras.Model(images, out, name=name)


def save(model, path, labels):
  model.save(path)
  with open(f"{path}.labels.json", "w") as f:
    json.dump({"labels": list(labels)}, f)
  return str(path)


def write_npz(path, labels, n=24, size=32, seed=0):
  rng = np.random.default_rng(seed)
  y = (rng.random((n, len(labels))) < 0.4).astype(np.float32)
  y[np.arange(len(labels)) % n, np.arange(len(labels))] = 1  # every label has a positive
  np.savez(path, x=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), y=y,
           labels=np.array(labels))
  return str(path)


def keras_cv_teacher(labels, name, filters=(8, 16, 24, 32)):
  import keras_cv  # pylint: disable=g-import-not-at-top
  backbone = keras_cv.models.ResNetBackbone(
      stackwise_filters=list(filters), stackwise_blocks=[1, 1, 1, 1],
      stackwise_strides=[1, 2, 2, 2], include_rescaling=False, input_shape=(32, 32, 3))
  return keras_cv.models.ImageClassifier(backbone=backbone, num_classes=len(labels),
                                         activation="sigmoid", name=name)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("byo")
  out = {"dir": d}
  out["a"] = save(foreign_teacher(["cat", "dog", "bus"], name="a"), d / "a.keras",
                  ["cat", "dog", "bus"])
  # Same block-end shapes, another width inside the last block: a compatible pair.
  out["b"] = save(foreign_teacher(["car", "tree"], widths=(10, 18, 26, 40), name="b"),
                  d / "b.keras", ["car", "tree"])
  # Block 2 ends 22 channels wide instead of 18.
  out["c"] = save(foreign_teacher(["boat"], widths=(10, 22, 26, 34), name="c"),
                  d / "c.keras", ["boat"])
  out["unnamed"] = save(foreign_teacher(["cat"], names=False, name="u"), d / "u.keras",
                        ["cat"])
  out["npz"] = write_npz(d / "test.npz", ["cat", "dog", "bus", "car", "tree"])
  return out


def _config(files, tmp_path, teachers, **overrides):
  from dfka_tf.config import RunConfig  # pylint: disable=g-import-not-at-top
  values = {"data.teacher_paths": tuple(teachers), "eval.data": files["npz"],
            "runtime.workdir": str(tmp_path / "w"), "data.num_teachers": len(teachers),
            "runtime.batch_size": 4, "generator.latent_dim": 16, "generator.width": 16}
  values.update(overrides)
  return RunConfig.build("byo", preset="quick", overrides=values)


# ------------------------------------------------------------------ block ends
def test_block_ends_detected_for_known_families(files):
  import keras_cv  # pylint: disable=g-import-not-at-top,unused-import
  from dfka_tf.models.resnet import build_resnet  # pylint: disable=g-import-not-at-top
  cases = {
      "dfka_tf": (build_resnet("tiny", 2, (32, 32, 3)), ["block1_out", "block2_out",
                                                         "block3_out"]),
      "plain, block<s>_out": (keras.saving.load_model(files["a"]),
                              ["block1_out", "block2_out", "block3_out"]),
      "keras-cv": (keras_cv_teacher(["x"], "k"), ["v2_stack_0_block1_out",
                                                  "v2_stack_1_block1_out",
                                                  "v2_stack_2_block1_out"]),
      "ResNet50": (keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3),
                                               classes=2),
                   ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out"]),
      "ResNet50V2": (keras.applications.ResNet50V2(weights=None, input_shape=(32, 32, 3),
                                                   classes=2),
                     ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out"]),
  }
  for family, (model, want) in cases.items():
    ends, _ = teacher_files.detect_block_outputs(model)
    assert ends == want, family
    assert blocknet.split_model(model, ends).num_blocks == 4, family


def test_unknown_network_error_lists_candidates(files):
  with pytest.raises(TeacherError, match="--teacher_blocks") as e:
    teacher_files.load_teacher(files["unnamed"])
  text = str(e.value)
  # The last layer the whole graph passes through at each resolution: the stage outputs.
  for candidate in ("s0_out 32x32x10", "s1_out 16x16x18", "s2_out 8x8x26", "s3_out 4x4x34"):
    assert candidate in text, text
  assert "s1_relu" not in text  # inside a residual unit: no cut
  bn = teacher_files.load_teacher(files["unnamed"], block_outputs=["s0_out", "s1_out", "s2_out"])
  assert bn.num_blocks == 4


def test_wrong_teacher_blocks_list_candidates(files):
  with pytest.raises(TeacherError, match=r"inside a residual block.*Candidates.*s1_out "
                                         r"16x16x18"):
    teacher_files.load_teacher(files["unnamed"], block_outputs=["s0_out", "s1_relu", "s2_out"])


# ------------------------------------------------------------------ checks before any work
def test_mismatched_pair_refused_before_anything(files, tmp_path):
  proc = run_cli(f"--teacher={files['a']}", f"--teacher={files['c']}",
                 f"--eval_data={files['npz']}", f"--workdir={tmp_path / 'w'}", "--quiet")
  assert_user_error(proc, "teacher 2 (c)", "F^2", "(16, 16, 22)", "teacher 1 (a)",
                    "(16, 16, 18)")
  assert not os.path.exists(tmp_path / "w")


def test_forge_targets_more_labels_than_your_teachers_have_refused_before_work(files,
                                                                               tmp_path):
  from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
  from dfka_tf.errors import ConfigError  # pylint: disable=g-import-not-at-top
  config = _config(files, tmp_path, [files["a"], files["b"]], **{
      "source.forge.enabled": True, "source.forge.max_labels": 6})
  with pytest.raises(ConfigError, match="forge_max_labels=6 is more than the 5"):
    pipeline.start(config)
  assert not os.path.exists(tmp_path / "w")


def test_foreign_teachers_with_another_target_arch_refused(files, tmp_path):
  from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
  config = _config(files, tmp_path, [files["a"], files["b"]], **{"data.arch": "tiny"})
  with pytest.raises(TeacherError, match=r"TargetNet --arch=tiny .* teacher 1 \(a\).*"
                                         r"--arch=teacher"):
    pipeline.start(config)
  assert not os.path.exists(tmp_path / "w")


def test_byo_preset_follows_the_teachers_size(files):
  from dfka_tf.config import RunConfig  # pylint: disable=g-import-not-at-top
  base = {"data.teacher_paths": (files["a"],), "eval.data": files["npz"]}
  small = RunConfig.build("byo", overrides=dict(base, **{"data.image_size": 32}))
  large = RunConfig.build("byo", overrides=dict(base, **{"data.image_size": 224}))
  assert (small.runtime.batch_size, small.generator.steps) == (64, 150)
  assert (large.runtime.batch_size, large.generator.steps) == (16, 20000)
  for c in (small, large):
    assert c.data.arch == "teacher" and c.data.pretrain is None and c.eval.evaluate
  mine = RunConfig.build("byo", overrides=dict(base, **{"data.image_size": 224,
                                                        "runtime.batch_size": 8}))
  assert mine.runtime.batch_size == 8
  assert teacher_files.input_size(files["a"]) == 32


@pytest.mark.parametrize("overrides,text", [
    ({"data.arch": "teacher", "data.teacher_paths": ()}, "--arch=teacher"),
    ({"data.target_init": "x.keras", "data.arch": "small"}, "--target_init"),
])
def test_byo_config_errors(files, overrides, text):
  from dfka_tf.config import RunConfig  # pylint: disable=g-import-not-at-top
  from dfka_tf.errors import ConfigError  # pylint: disable=g-import-not-at-top
  values = {"data.teacher_paths": (files["a"],), "eval.data": files["npz"]}
  values.update(overrides)
  dataset = "byo" if values["data.teacher_paths"] else "scenes20"
  with pytest.raises(ConfigError, match=text):
    RunConfig.build(dataset, overrides=values)


# ------------------------------------------------------------------ the TargetNet
def test_target_in_teacher_architecture_and_its_start(files, tmp_path):
  teacher = teacher_files.load_teacher(files["a"])
  trainable = len(target.target_model(teacher, 5, "t").trainable_weights)
  teacher.freeze()  # As the run does before it builds the TargetNet.
  fresh = target.target_model(teacher, 5, "t")
  # Every weight of the rebuilt layers trains, though the teacher it copies is frozen.
  assert len(fresh.trainable_weights) == trainable > 0
  assert fresh.trainable_weights[0].shape == teacher.source_model.get_layer("stem").weights[0].shape
  assert fresh.output_shape == (None, 5)
  names = {l.name for l in splitter.flat_layers(fresh)}
  assert {"stem", "s0_a", "block3_out", "s3_b"} <= names and "scores" not in names
  stem = teacher.source_model.get_layer("stem").get_weights()[0]
  assert not np.allclose(fresh.get_layer("stem").get_weights()[0], stem)  # fresh weights
  weights = str(tmp_path / "start.weights.h5")
  teacher.source_model.save_weights(weights)
  for init in (files["a"], weights):
    started = target.target_model(teacher, 5, "t", init=init)
    np.testing.assert_array_equal(started.get_layer("stem").get_weights()[0], stem)
  with pytest.raises(TeacherError, match="shares no layer"):
    target.target_model(teacher, 5, "t", init=save(keras_cv_teacher(["x"], "k"),
                                                tmp_path / "k.keras", ["x"]))


# ------------------------------------------------------------------ end to end
def test_foreign_pair_end_to_end_through_the_cli(files, tmp_path):
  """No --arch, no block flags: detected ends, TargetNet in the teachers' architecture,
  scored on an npz; the export scores the same through experiments.evaluate."""
  work = tmp_path / "w"
  proc = run_cli(f"--teacher={files['a']}", f"--teacher={files['b']}",
                 f"--eval_data={files['npz']}", f"--workdir={work}", "--batch_size=4",
                 "--generator_steps=2", "--block_steps=2", "--finetune_steps=2",
                 "--latent_dim=16", "--generator_width=16", "--quiet")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(work / "results.json") as f:
    results = json.load(f)
  assert results["config"]["data"]["arch"] == "teacher"
  assert results["labels"] == ["cat", "dog", "bus", "car", "tree"]
  assert results["eval_split"] == files["npz"] and results["num_test_images"] == 24
  for key in ("teacher_map", "target_map", "targetnet_map"):
    assert 0 <= results[key] <= 1
  scored = tmp_path / "scores.json"
  proc = run_cli(f"--model={work / 'target_net'}", f"--eval_data={files['npz']}",
                 f"--out={scored}", "--quiet", module="experiments.evaluate")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(scored) as f:
    again = json.load(f)
  assert again["map"] == pytest.approx(results["target_map"], abs=1e-6)
  assert again["ap"] == pytest.approx(results["target_ap"], abs=1e-6)


# Slow: the pipeline of your own teachers runs end to end in
# test_foreign_pair_end_to_end_through_the_cli, keras-cv block ends in
# test_block_ends_detected_for_known_families.
@pytest.mark.slow
def test_keras_cv_pair_end_to_end(files, tmp_path):
  from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
  paths = [save(keras_cv_teacher(["cat", "dog", "bus"], "ka"), tmp_path / "ka.keras",
                ["cat", "dog", "bus"]),
           save(keras_cv_teacher(["car", "tree"], "kb"), tmp_path / "kb.keras",
                ["car", "tree"])]
  results = pipeline.run(_config(files, tmp_path, paths), progress=False)
  assert results["branch_out"] and np.isfinite(results["target_map"])
  assert results["params"]["target_net"] > 0


def test_t_u_before_step_three_is_the_regrouped_t_u(files, tmp_path):
  """results.json's regrouped_map is T_u rebuilt from Step II's checkpoint: without Step III
  it is T_u itself, score for score, and so is T_u at every other S_m = b. (Your own pair:
  no teachers to train, so the check costs one short run.)"""
  from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
  results = pipeline.run(_config(files, tmp_path, [files["a"], files["b"]], finetune_steps=0,
                                 branch_out=1), progress=False)
  helpers.assert_scores_agree(results)
  # Branching at block 1, T_u holds the filters and the teachers' copies: rebuilt the same.
  assert results["branch_out"] == {"1": 1, "2": 1}
  assert results["regrouped_ap"] == results["target_ap"]
  # T_u at every S_m = b: at b = 1 it is this T_u, at b = B the TargetNet alone.
  by_b = results["regrouped_map_by_branch_out"]
  assert list(by_b) == ["1", "2", "3", "4"]
  assert by_b["1"] == results["target_map"] and by_b["4"] == results["targetnet_map"]
  assert all(0.0 <= v <= 1.0 for v in by_b.values())
  assert not [k for k in results if k.startswith("branch") and k != "branch_out"]


def test_keras_cv_teacher_loads_without_importing_keras_cv(files, tmp_path):
  path = save(keras_cv_teacher(["cat"], "kc"), tmp_path / "kc.keras", ["cat"])
  code = ("import sys; from dfka_tf.models import teacher_files; "
          f"bn = teacher_files.load_teacher({path!r}); "
          "print('keras_cv' in sys.modules, bn.num_blocks)")
  proc = run_cli("-c", code, module=None)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split()[-2:] == ["True", "4"]


# Slow (about 1 min, ResNet-50): as test_keras_cv_pair_end_to_end, covered by the plain pair
# end to end and by the keras.applications block ends of
# test_block_ends_detected_for_known_families.
@pytest.mark.slow
def test_keras_applications_pair_end_to_end(files, tmp_path):
  from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
  paths = []
  for name, labels in (("r1", ["cat", "dog", "bus"]), ("r2", ["car", "tree"])):
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3),
                                        classes=len(labels), classifier_activation="sigmoid",
                                        name=name)
    paths.append(save(model, tmp_path / f"{name}.keras", labels))
  results = pipeline.run(_config(files, tmp_path, paths, **{
      "generator.steps": 1, "student.block_steps": 1, "student.finetune_steps": 1,
      # The scenes20 preset's LR (0.3) sends a fresh ResNet-50 to NaN at batch 2.
      "runtime.batch_size": 2, "student.lr": 0.01}), progress=False)
  assert np.isfinite(results["target_map"])


# ------------------------------------------------------------------ your own data
def _tiny_export(tmp_path, labels):
  from dfka_tf.export import export_target_net  # pylint: disable=g-import-not-at-top
  from dfka_tf.models.resnet import build_resnet  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  directory = str(tmp_path / "export")
  export_target_net(build_resnet("tiny", len(labels), (16, 16, 3)), labels, directory)
  return directory


def test_eval_data_npz_forms_and_errors(tmp_path):
  from dfka_tf.data.eval_data import load_eval_data  # pylint: disable=g-import-not-at-top
  from dfka_tf.errors import ConfigError  # pylint: disable=g-import-not-at-top
  labels = ["Cat", "dog", "tree"]
  path = write_npz(tmp_path / "u8.npz", labels, n=5)
  with np.load(path) as f:
    x, y = f["x"], f["y"]
  np.savez(tmp_path / "f.npz", x=x / 255.0, y=y, labels=np.array(labels))
  # Names match as --labels do (any case); the columns follow the model's order.
  u8 = load_eval_data(path, ["tree", "cat"], image_size=8, batch_size=2)
  fl = load_eval_data(str(tmp_path / "f.npz"), ["tree", "cat"], image_size=8, batch_size=2)
  assert u8.columns == fl.columns == [2, 0]
  a, b = (np.concatenate([e["image"].numpy() for e in d.dataset]) for d in (u8, fl))
  assert a.shape == (5, 8, 8, 3)
  np.testing.assert_allclose(a, b, atol=1e-6)
  bad = {"lacks y": dict(x=x, labels=np.array(labels)),
         "float images must lie in": dict(x=x * 1.0, y=y, labels=np.array(labels)),
         "y has shape": dict(x=x, y=y[:, :2], labels=np.array(labels))}
  for text, content in bad.items():
    np.savez(tmp_path / "bad.npz", **content)
    with pytest.raises(ConfigError, match=text):
      load_eval_data(str(tmp_path / "bad.npz"), ["cat"], image_size=8, batch_size=2)
  with pytest.raises(ConfigError, match="has no label boat"):
    load_eval_data(path, ["cat", "boat"], image_size=8, batch_size=2)
  with pytest.raises(ConfigError, match="neither an .npz"):
    load_eval_data("scores.csv", ["cat"], image_size=8, batch_size=2)


def test_eval_data_tfds_unprepared_fails_fast(tmp_path):
  from dfka_tf.data.eval_data import load_eval_data  # pylint: disable=g-import-not-at-top
  from dfka_tf.errors import DataNotFoundError  # pylint: disable=g-import-not-at-top
  start = time.time()
  with pytest.raises(DataNotFoundError, match="tfds build cifar10"):
    load_eval_data("cifar10:test", ["cat"], image_size=8, batch_size=2,
                   data_dir=str(tmp_path))
  assert time.time() - start < 30  # no download attempt (those take minutes offline)


def test_eval_data_any_tfds_dataset_on_mock_data(monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from dfka_tf.data.eval_data import load_eval_data  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  with tfds.testing.mock_data(num_examples=6):
    # A mock builder reads no metadata: its class names are the indices.
    data = load_eval_data("cifar10:test", ["5", "0"], image_size=8, batch_size=4)
    batches = list(data.dataset)
  assert data.columns == [5, 0]
  labels = np.concatenate([b["labels"].numpy() for b in batches])
  assert labels.shape == (6, 10) and np.all(labels.sum(1) == 1)  # one class each


_MOCK_EVALUATE = """
import sys
import tensorflow_datasets as tfds
from absl import app
from dfka_tf.data import loaders
loaders.check_prepared = lambda name, data_dir=None: tfds.builder(loaders.TFDS_NAMES[name][0])
from experiments import evaluate
with tfds.testing.mock_data(num_examples=8):
  app.run(evaluate.main, argv=sys.argv)
"""


def test_evaluate_cli_on_a_mock_tfds_split(tmp_path):
  export = _tiny_export(tmp_path, ["aeroplane", "dog", "person"])
  for data in ("--dataset=voc2007", "--eval_data=voc/2007:test"):
    out = tmp_path / "s.json"
    proc = run_cli("-c", _MOCK_EVALUATE, f"--model={export}", data, f"--out={out}",
                   "--quiet", module=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
      scores = json.load(f)
    assert scores["num_images"] == 8 and list(scores["ap"]) == ["aeroplane", "dog", "person"]
  proc = run_cli(f"--model={export}", "--dataset=voc2007", f"--data_dir={tmp_path}",
                 module="experiments.evaluate")
  assert_user_error(proc, "voc2007", "not prepared", "tfds build voc/2007")
  proc = run_cli(f"--model={tmp_path}", "--dataset=voc2007", module="experiments.evaluate")
  assert_user_error(proc, "not a TargetNet export")


def test_generator_growth_checked_without_building():
  from dfka_tf.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from dfka_tf.models.generator import GroupStackGenerator  # pylint: disable=g-import-not-at-top
  shapes = [(24, 24, 3), (24, 24, 4), (12, 12, 4), (6, 6, 4)]
  assert GroupStackGenerator.check_shapes(shapes, 2) == [2, 0]
  with pytest.raises(ConfigError, match="group G2 cannot grow a 10-pixel map into the "
                                        "teachers' 24-pixel map"):
    GroupStackGenerator.check_shapes([(24, 24, 3), (24, 24, 4), (10, 10, 4), (5, 5, 4)], 2)
  with pytest.raises(ConfigError, match="does not divide"):
    GroupStackGenerator.check_shapes(shapes, 3)


# ------------------------------------------------------------------ KA with your own teachers
def test_ka_with_your_own_teachers_trains_on_the_unlabeled_images(files, tmp_path):
  """KA, the bound beside a data-free figure, for teachers dfka_tf did not train: Steps II–III
  on the images of --unlabeled_data, no Step I."""
  from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
  from dfka_tf.config import RunConfig  # pylint: disable=g-import-not-at-top
  values = {"data.teacher_paths": (files["a"], files["b"]), "eval.data": files["npz"],
            "runtime.workdir": str(tmp_path / "w"), "data.num_teachers": 2,
            "runtime.batch_size": 4, "source.unlabeled": files["npz"]}
  config = RunConfig.build("byo", preset="quick", method="ka", overrides=values)
  results = pipeline.run(config, progress=False)
  assert "generator" not in results["stage_times"] and "block1" in results["stage_times"]
  assert results["config"]["source"]["unlabeled"] == files["npz"]
  for key in ("teacher_map", "target_map", "targetnet_map"):
    assert 0 <= results[key] <= 1


def test_unlabeled_images_are_the_files_images_shuffled(tmp_path):
  from dfka_tf.data.unlabeled import load_unlabeled  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
  np.savez(tmp_path / "u.npz", x=x)
  batches = list(load_unlabeled(str(tmp_path / "u.npz"), image_size=32, batch_size=4, seed=0))
  assert len(batches) == 2 and all(set(b) == {"image"} for b in batches)
  seen = np.concatenate([b["image"].numpy() for b in batches])
  assert seen.shape == (8, 32, 32, 3) and seen.min() >= 0 and seen.max() <= 1
  order = [int(np.argmin(np.abs(x / 255.0 - img).sum(axis=(1, 2, 3)))) for img in seen]
  assert sorted(order) == list(range(8))  # Each image once, in a shuffled order.
  np.testing.assert_allclose(seen, x[order] / 255.0, atol=1e-5)


@pytest.mark.parametrize("write,text", [
    (None, "not found"),
    (lambda p: np.savez(p, y=np.zeros((8, 2))), "holds no x"),
    (lambda p: np.savez(p, x=np.zeros((2, 32, 32, 3), np.uint8)), "fewer than one batch"),
    (lambda p: np.savez(p, x=np.full((8, 32, 32, 3), 2.0, np.float32)), r"must lie in \[0, 1\]"),
    (lambda p: np.savez(p, x=np.zeros((8, 32, 32), np.uint8)), "has shape"),
])
def test_unlabeled_data_errors_name_the_fix(tmp_path, write, text):
  from dfka_tf.data.unlabeled import check_unlabeled  # pylint: disable=g-import-not-at-top
  from dfka_tf.errors import ConfigError  # pylint: disable=g-import-not-at-top
  path = tmp_path / "u.npz"
  if write is not None:
    write(path)
  with pytest.raises(ConfigError, match=text):
    check_unlabeled(str(path), batch_size=4)
  with pytest.raises(ConfigError, match="neither an .npz file nor a TFDS name:split"):
    check_unlabeled("images.png", batch_size=4)
  with pytest.raises(ConfigError, match="no TFDS dataset"):
    check_unlabeled("no_such_dataset_here:train", batch_size=4)


def test_ka_with_your_own_teachers_needs_unlabeled_data_and_only_ka_reads_it(files, tmp_path):
  from dfka_tf.config import RunConfig  # pylint: disable=g-import-not-at-top
  from dfka_tf.errors import ConfigError  # pylint: disable=g-import-not-at-top
  base = {"data.teacher_paths": (files["a"], files["b"]), "eval.data": files["npz"],
          "data.num_teachers": 2}
  with pytest.raises(ConfigError, match="--unlabeled_data="):
    RunConfig.build("byo", preset="quick", method="ka", overrides=base)
  with pytest.raises(ConfigError, match="would not read it"):
    RunConfig.build("byo", preset="quick", method="dfka",
                    overrides=dict(base, **{"source.unlabeled": files["npz"]}))
  with pytest.raises(ConfigError, match="would not read it"):
    RunConfig.build("scenes20", preset="quick", method="similar",
                    overrides={"source.unlabeled": files["npz"]})


def keras_hub_teacher(labels, name, size=32):
  """A tiny keras-hub ResNet classifier, built from config (no preset, no download)."""
  keras_hub = pytest.importorskip("keras_hub")
  backbone = keras_hub.models.ResNetBackbone(
      input_conv_filters=[64], input_conv_kernel_sizes=[3],
      stackwise_num_filters=[64, 16, 24, 32], stackwise_num_blocks=[1, 1, 1, 1],
      stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
      use_pre_activation=False, image_shape=(size, size, 3))
  return keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=len(labels),
                                                activation="sigmoid", name=name)


HUB_LABELS = (["cat", "dog"], ["bus", "car", "tree"])


def test_keras_hub_teachers_found_saved_and_loaded(tmp_path):
  """keras-hub (the optional extra, requirements-test.txt installs it): block ends from the
  backbone's pyramid_outputs, image size from its image_shape, the file loaded as a teacher."""
  labels = HUB_LABELS
  teachers = [keras_hub_teacher(labels[0], "hub0", size=16)]
  ends, how = teacher_files.detect_block_outputs(teachers[0])
  assert ends == ["stack0_block0_out", "stack1_block0_out", "stack2_block0_out"]
  assert "keras-hub" in how
  path = save(teachers[0], tmp_path / "hub.keras", labels[0])
  assert teacher_files.input_size(path) == 16
  loaded = teacher_files.load_teacher(path)
  x = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
  np.testing.assert_allclose(loaded.to_model()(x), teachers[0](x), atol=1e-5)


# Slow: keras-hub files load as teachers in test_keras_hub_teachers_found_saved_and_loaded,
# and in-memory teachers amalgamate in tests/test_api.py.
@pytest.mark.slow
def test_keras_hub_pair_amalgamated(tmp_path):
  import dfka_tf  # pylint: disable=g-import-not-at-top
  teachers = [keras_hub_teacher(names, f"hub{m}", size=16) for m, names in enumerate(HUB_LABELS)]
  x = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
  result = dfka_tf.amalgamate(teachers, teacher_labels=list(HUB_LABELS), labels=["tree", "dog"],
                              workdir=str(tmp_path / "run"), batch_size=4, generator_steps=1,
                              block_steps=1, finetune_steps=1, latent_dim=8,
                              generator_width=8, progress=False)
  assert result.model.predict(x, verbose=0).shape == (2, 2)
