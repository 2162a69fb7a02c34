"""The Python API (dfka_tf.amalgamate, dfka_tf.evaluate): in-memory teachers in, a model out;
the CLI's checks raised as exceptions before any work."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import dfka_tf
from dfka_tf.errors import ConfigError
from tests.test_byo import foreign_teacher, write_npz

TINY = dict(batch_size=4, generator_steps=2, block_steps=2, finetune_steps=2, latent_dim=16,
            generator_width=16, progress=False)
A_LABELS, B_LABELS = ["cat", "dog", "bus"], ["car", "tree"]


@pytest.fixture(scope="module")
def pair():
  keras.utils.set_random_seed(0)
  return (foreign_teacher(A_LABELS, name="api_a", size=16),
          foreign_teacher(B_LABELS, name="api_b", size=16))


@pytest.fixture(scope="module")
def done(pair, tmp_path_factory):
  """Two in-memory functional teachers, amalgamated for three of their labels."""
  root = tmp_path_factory.mktemp("api")
  npz = write_npz(root / "test.npz", A_LABELS + B_LABELS, n=12, size=16)
  result = dfka_tf.amalgamate(list(pair), teacher_labels=[A_LABELS, B_LABELS],
                              labels=["tree", "cat", "bus"], workdir=str(root / "run"),
                              eval_data=npz, export_tflite=True, tflite_calibration=8, **TINY)
  return result, npz, root


def test_amalgamate_in_memory_teachers_returns_a_model_over_the_labels(done):
  result, _, root = done
  assert result.labels == ["tree", "cat", "bus"]
  images = np.random.default_rng(1).random((5, 16, 16, 3)).astype(np.float32)
  probs = result.model.predict(images, verbose=0)
  assert probs.shape == (5, 3) and probs.min() >= 0.0 and probs.max() <= 1.0
  alone = result.targetnet(images, training=False)
  assert tuple(alone.shape) == (5, 3)
  # The run is the CLI's: its results.json, its teachers saved beside the workdir.
  assert result.results["labels"] == result.labels
  assert os.path.exists(os.path.join(result.workdir, "results.json"))
  assert sorted(os.listdir(str(root / "run-teachers"))) == [
      "teacher1.keras", "teacher1.keras.labels.json", "teacher2.keras",
      "teacher2.keras.labels.json"]
  # Y_cst order: the model's column j is label j of .labels, as the run scored it.
  scored = dfka_tf.evaluate(result, done[1])
  assert scored["map"] == pytest.approx(result.results["target_map"], abs=1e-6)
  assert list(scored["ap"]) == result.labels


def test_export_serves_without_the_library_and_evaluate_reads_it(done, tmp_path):
  result, npz, _ = done
  sizes = result.export(str(tmp_path / "export"))
  assert sizes["saved_model"] > 0
  serve = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
  images = np.random.default_rng(2).random((3, 16, 16, 3)).astype(np.float32)
  served = serve(images=tf.constant(images))["probabilities"].numpy()
  np.testing.assert_allclose(served, result.model.predict(images, verbose=0), atol=1e-5)
  from_dir = dfka_tf.evaluate(str(tmp_path / "export"), npz)
  assert from_dir["map"] == pytest.approx(result.results["target_map"], abs=1e-6)


def test_tflite_files_written_scored_and_sized_beside_the_saved_model(done, tmp_path):
  result, npz, _ = done
  tfl = result.results["tflite"]
  assert tfl["calibration"] == {"images": 8, "source": "generator"}
  for name in ("saved_model", "target_net.tflite", "target_net_int8.tflite"):
    assert tfl[name]["bytes"] > 0 and 0.0 <= tfl[name]["map"] <= 1.0
    if name != "saved_model":
      assert os.path.getsize(os.path.join(result.workdir, "target_net", name)) == \
          tfl[name]["bytes"]
  assert tfl["saved_model"]["map"] == result.results["target_map"]
  # The float file scores as the SavedModel does.
  assert tfl["target_net.tflite"]["map"] == pytest.approx(tfl["saved_model"]["map"], abs=1e-4)
  sizes = result.export(str(tmp_path / "again"), tflite=True, calibration_images=8)
  assert set(sizes) == {"saved_model", "target_net.tflite", "target_net_int8.tflite"}
  with pytest.raises(ConfigError, match="makes none"):
    dfka_tf.amalgamate(None, method="ka", export_tflite=True, workdir=str(tmp_path / "k"),
                       progress=False)


def test_evaluate_takes_arrays_and_matches_the_npz(done):
  result, npz, _ = done
  with np.load(npz) as f:
    x, y, names = f["x"], f["y"], list(f["labels"])
  from_arrays = dfka_tf.evaluate(result.model, (x, y, names), labels=result.labels)
  assert from_arrays["map"] == pytest.approx(dfka_tf.evaluate(result, npz)["map"], abs=1e-9)
  with pytest.raises(ConfigError, match="needs labels"):
    dfka_tf.evaluate(result.model, (x, y, names))
  with pytest.raises(ConfigError, match=r"x has shape \(12, 16, 16, 1\)"):
    dfka_tf.evaluate(result, (x[..., :1], y, names))
  with pytest.raises(ConfigError, match="tree"):  # A label of the model the data lacks.
    dfka_tf.evaluate(result, (x, y[:, :4], names[:4]))


def test_generated_images_come_with_the_teachers_predictions(done):
  result, _, _ = done
  images, probs = result.generated(6)
  assert images.shape == (6, 16, 16, 3) and images.dtype == np.float32
  assert 0.0 <= images.min() and images.max() <= 1.0
  assert probs.shape == (6, 3) and 0.0 <= probs.min() and probs.max() <= 1.0
  again, _ = result.generated(6)
  np.testing.assert_array_equal(images, again)  # Its own seed: the run's streams untouched.


@pytest.mark.parametrize("kwargs, text", [
    (dict(teacher_labels=None), "pass its label names"),
    (dict(teacher_labels=[A_LABELS]), "one list of label names per teacher"),
    (dict(teacher_labels=[A_LABELS, B_LABELS], labels=["zebra"]), "zebra"),
    (dict(teacher_labels=[A_LABELS, B_LABELS], no_such_option=1), "unknown config option"),
    (dict(teacher_labels=[A_LABELS, B_LABELS], labels="cat"), "one string"),
])
def test_bad_input_raises_before_any_work(pair, tmp_path, kwargs, text):
  with pytest.raises(ConfigError, match=text):
    dfka_tf.amalgamate(list(pair), workdir=str(tmp_path / "run"), **TINY, **kwargs)
  assert not os.path.exists(tmp_path / "run")  # Nothing written where the run would go.


def test_an_option_passed_as_none_is_set_not_skipped(tmp_path, monkeypatch):
  # The CLI reads None as an unset flag; from Python `pretrain=None` means fresh weights.
  configs = []
  monkeypatch.setattr(dfka_tf.api, "run_config", lambda config, **_: configs.append(config))
  dfka_tf.amalgamate(preset="quick", workdir=str(tmp_path / "a"), pretrain=None)
  dfka_tf.amalgamate(preset="quick", workdir=str(tmp_path / "b"))
  assert configs[0].data.pretrain is None
  assert configs[1].data.pretrain == "scenes20_similar"  # scenes20's own start, untouched.


def test_the_guide_script_runs(tmp_path, monkeypatch):
  """docs/python_api.md's script, at a budget of seconds (its BUDGET and TEACHER_STEPS)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "docs", "python_api.md")) as f:
    text = f.read()
  script = text.split("```python\n", 1)[1].split("```", 1)[0]
  tiny = dict(batch_size=4, block_steps=1, finetune_steps=1, forge_warmup_rounds=1,
              forge_g_steps=1, forge_round_every=2, forge_bank_size=16, latent_dim=8,
              generator_width=8, tflite_calibration=8, progress=False,
              workdir=str(tmp_path / "run"))
  assert "BUDGET = {}" in script and "TEACHER_STEPS = 1500" in script
  script = script.replace("BUDGET = {}", f"BUDGET = {tiny!r}").replace(
      "TEACHER_STEPS = 1500", "TEACHER_STEPS = 2")
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(script, "docs/python_api.md", "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["result"].labels == namespace["NAMES"]
  assert namespace["images"].shape == (8, 32, 32, 3)
  assert os.path.exists(tmp_path / "my_target_net" / "target_net_int8.tflite")
  assert 0.0 <= namespace["int8"]["map"] <= 1.0
