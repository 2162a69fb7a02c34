"""The paper-scale path (voc2007 / coco2014 through TFDS) end to end on tfds mock data.

No VOC or COCO is on this machine, so `tfds.testing.mock_data` stands in for the prepared
datasets. The default test swaps ResNet-101 for the tiny ResNet and 224 px for 32 px (the
preset itself is checked field by field); the slow test keeps ResNet-101.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from dfka_tf import data as dfka_data
from dfka_tf import pipeline
from dfka_tf.config import RunConfig
from dfka_tf.data import loaders

MOCK_EXAMPLES = 8


def test_voc_and_coco_presets_are_the_papers():
  for dataset, teacher_steps in (("voc2007", 20000), ("coco2014", 60000)):
    c = RunConfig.build(dataset, overrides={"workdir": "unused"})
    assert (c.data.arch, c.data.image_size, c.runtime.batch_size) == ("resnet101", 224, 16)
    assert (c.data.teacher_lr, c.student.lr, c.runtime.weight_decay) == (0.01, 0.01, 5e-3)
    g = c.generator
    assert (g.groups, g.alpha, g.beta, g.gamma) == (2, 1.0, 1.0, 5.0)
    assert c.data.teacher_steps == teacher_steps and c.data.pretrain == "imagenet"


@pytest.fixture
def mock_tfds(monkeypatch):
  # Mocked builders are never "prepared" and have no split sizes; the readiness check and
  # the fast failure without data are tested in test_data.py and test_cli.py.
  def prepared(name, data_dir=None):
    return tfds.builder(loaders.TFDS_NAMES[name][0])
  for module in (loaders, dfka_data):
    monkeypatch.setattr(module, "check_prepared", prepared)
    monkeypatch.setattr(module, "num_examples", lambda *a, **k: MOCK_EXAMPLES)
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
    yield


def _run(tmp_path, dataset, **overrides):
  steps = dict(teacher_steps=2, generator_steps=2, block_steps=2, finetune_steps=2)
  config = RunConfig.build(dataset, overrides=dict(
      steps, workdir=str(tmp_path / "w"), pretrain="None", eval_batch_size=4,
      checkpoint_every=1, **overrides))
  return config, pipeline.run(config, progress=False)


# COCO's run is slow (about 30 s) beside VOC's, which runs the same stages; its builder and
# labels are the default suite's elsewhere in this file. CI's daily slow test runs it in turn.
@pytest.mark.parametrize("dataset", ["voc2007", pytest.param("coco2014",
                                                           marks=pytest.mark.slow)])
def test_paper_dataset_runs_every_stage_on_mock_data(tmp_path, mock_tfds, dataset):
  config, results = _run(tmp_path, dataset, arch="tiny", image_size=32, batch_size=4,
                         latent_dim=16, generator_width=16)
  # Default Y_cst: every teacher's labels, teacher by teacher (the paper's 2-teacher split).
  names = [n for part in dfka_data.teacher_label_split(dataset, 2) for n in part]
  assert sorted(names) == sorted(dfka_data.label_names(dataset))
  assert results["labels"] == names and len(results["target_ap"]) == len(names)
  assert np.isfinite(results["teacher_map"]) and np.isfinite(results["target_map"])
  with open(os.path.join(config.workdir, "results.json")) as f:
    assert json.load(f)["labels"] == names
  # The export serves the dataset's label names (COCO's offline names ship with us).
  served = tf.saved_model.load(os.path.join(config.workdir, "target_net"))
  out = served.signatures["serving_default"](tf.zeros([2, 32, 32, 3]))
  assert out["probabilities"].shape == (2, len(names))
  assert [n.decode() for n in out["label_names"].numpy()[0]] == names


@pytest.mark.slow
def test_resnet101_voc_runs_a_few_steps_on_mock_data(tmp_path, mock_tfds):
  _, results = _run(tmp_path, "voc2007", image_size=64, batch_size=2, teacher_steps=1,
                    generator_steps=1, block_steps=1, finetune_steps=1)
  assert results["config"]["data"]["arch"] == "resnet101"
  assert np.isfinite(results["target_map"])
