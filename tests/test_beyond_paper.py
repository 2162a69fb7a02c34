"""The beyond-paper options of a run, end to end on the quick config (tiny shapes)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from dfka_tf import pipeline
from dfka_tf.config import RunConfig
from dfka_tf.errors import ConfigError
from dfka_tf.models import teacher_files
from dfka_tf.models.resnet import build_resnet
from tests import helpers

QUICK = dict(preset="quick")


def _config(dataset="scenes20", *, preset=None, method="dfka", **overrides):
  """`RunConfig.build` with keyword overrides."""
  return RunConfig.build(dataset, preset=preset, method=method, overrides=overrides)


# Slow (about 40 s): each option runs at tiny scale on its own (test_steps.py: the adversarial,
# L_bns and jitter steps; test_augment.py; test_teachers_start_from_the_pretrained_backbone for
# the pretrain stage); this test runs them together, with a resume.
@pytest.mark.slow
def test_every_option_together_runs_and_records_the_pretrain_stage(tmp_path):
  config = _config(
      "scenes20", workdir=str(tmp_path / "w"), pretrain="scenes20_similar",
      pretrain_steps=3, adversarial_weight=1.0, bns_weight=1.0, bns_form="norm",
      generator_jitter=1, student_jitter=1, **QUICK)
  results = pipeline.run(config, progress=False)
  helpers.assert_scores_agree(results)
  assert os.path.exists(tmp_path / "w" / "pretrained" / "backbone.weights.h5")
  with open(tmp_path / "w" / "progress.json") as f:
    progress = json.load(f)
  assert progress["done"].index("pretrain") < progress["done"].index("teacher1")
  # Adversarial fine-tuning keeps G in Step III's checkpoint.
  latest = tf.train.latest_checkpoint(str(tmp_path / "w" / "ckpt" / "finetune"))
  names = [name for name, _ in tf.train.list_variables(latest)]
  assert any(name.startswith("generator_optimizer/") for name in names)
  assert any(name.startswith("generator/") or name.startswith("keras_state/generator/")
             for name in names)
  again = pipeline.run(config, progress=False, resume=True)  # Nothing left to train.
  assert again["target_map"] == results["target_map"]


def test_teachers_start_from_the_pretrained_backbone(tmp_path):
  # With no teacher steps a teacher is the backbone itself, classifier excepted.
  config = _config("scenes20", workdir=str(tmp_path / "w"), pretrain_steps=3,
                   teacher_steps=0, method="teacher", **QUICK)
  pipeline.run(config, progress=False)
  backbone = build_resnet(config.data.arch, 20, (32, 32, 3), name="pretrain")
  backbone.load_weights(str(tmp_path / "w" / "pretrained" / "backbone.weights.h5"))
  teacher = teacher_files.load_teacher(str(tmp_path / "w" / "teachers" / "teacher1.keras"))
  layers = {l.name: l for l in teacher.source_model.layers}
  compared = 0
  for layer in backbone.layers:
    if layer.name != "logits" and layer.weights and layer.name in layers:
      for a, b in zip(layer.get_weights(), layers[layer.name].get_weights()):
        np.testing.assert_array_equal(a, b)
      compared += 1
  assert compared >= 10


def _teacher_weights(workdir):
  return teacher_files.load_teacher(os.path.join(workdir, "teachers", "teacher1.keras")).source_model \
      .get_weights()


def test_the_quick_start_finds_the_backbone_that_ships(tmp_path, monkeypatch):
  # The shipped file's name is the recipe's key: a change to what the key reads (say, a
  # dataset version) would silently make every quick start train its backbone again.
  from dfka_tf.stages import cache  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("DFKA_TF_CACHE", str(tmp_path))
  path = cache.find(_config("scenes20"))
  assert path is not None and os.path.dirname(path) == cache.BUNDLED


# Slow (about 50 s, four runs): the cache's key and the bundled backbone are the default
# suite's (test_the_quick_start_finds_the_backbone_that_ships and the quick runs, which hit the
# tests' own cache); CI's daily slow test (.ci/run) runs it in turn.
@pytest.mark.slow
def test_a_cached_backbone_stands_in_for_its_stage_with_the_weights_training_gives(tmp_path):
  cache_root = str(tmp_path / "cache")
  def config(name, **overrides):
    # Nothing is scored: the test compares the backbones and teachers, not their mAP.
    return _config("scenes20", workdir=str(tmp_path / name), pretrain_steps=3,
                   teacher_steps=2, method="teacher", pretrain_cache=cache_root,
                   evaluate=False, **QUICK, **overrides)

  trained = pipeline.run(config("a"), progress=False)
  stored = os.listdir(os.path.join(cache_root, "backbones"))
  assert len(stored) == 1 and "pretrain_cached" not in trained
  assert trained["stage_times"]["pretrain"] > 0

  hit = pipeline.run(config("b"), progress=False)
  assert hit["pretrain_cached"] == os.path.join(cache_root, "backbones", stored[0])
  assert hit["stage_times"]["pretrain"] == 0.0
  with open(tmp_path / "a" / "pretrained" / "backbone.weights.h5", "rb") as a, \
      open(tmp_path / "b" / "pretrained" / "backbone.weights.h5", "rb") as b:
    assert a.read() == b.read()
  for x, y in zip(_teacher_weights(str(tmp_path / "a")), _teacher_weights(str(tmp_path / "b"))):
    np.testing.assert_array_equal(x, y)  # The teachers cannot tell a hit from training.

  other_seed = pipeline.run(config("c", seed=1), progress=False)  # Another recipe: no hit.
  assert "pretrain_cached" not in other_seed
  assert len(os.listdir(os.path.join(cache_root, "backbones"))) == 2

  off = pipeline.run(config("d", seed=2).replace(pretrain_cache="none"), progress=False)
  assert "pretrain_cached" not in off
  assert len(os.listdir(os.path.join(cache_root, "backbones"))) == 2


@pytest.mark.parametrize("name, message", [
    ("scenes20", "teachers' own"), ("scenes20_64", "teachers' own"),
    ("scenes20_colour", "teachers' own"), ("scenes20_different", "not a labelled dataset"),
    ("no_such_data", "not a labelled dataset"), ("imagenet", "ImageNet weights exist for")])
def test_bad_pretrain_dataset_is_refused_before_anything_is_written(tmp_path, name, message):
  with pytest.raises(ConfigError, match=message):
    config = _config("scenes20", workdir=str(tmp_path / "w"),
                     pretrain=name, **QUICK)
    pipeline.start(config, progress=False)
  assert not os.path.exists(tmp_path / "w")


def test_adversarial_weight_needs_dfka():
  with pytest.raises(ConfigError, match="adversarial_weight"):
    _config("scenes20", method="dafl", adversarial_weight=1.0)


# Slow (about 30 s): the regrouped T_u is checked in the default suite by tests/test_byo.py's
# test_t_u_before_step_three_is_the_regrouped_t_u, the budget's choice by
# tests/test_branch_out.py; CI's daily slow test (.ci/run) runs it in turn.
@pytest.mark.slow
def test_t_u_before_step_three_holds_under_frozen_batchnorm_and_a_budget(tmp_path):
  config = _config("scenes20", workdir=str(tmp_path / "w"), finetune_steps=0,
                   target_bn="frozen", target_param_budget=0.6, **QUICK)
  results = pipeline.run(config, progress=False)
  helpers.assert_scores_agree(results)
  assert results["regrouped_ap"] == results["target_ap"]
  assert results["regrouped_map"] == results["target_map"]
  p = results["params"]
  assert p["target_net"] <= 0.6 * p["teachers_total"]
  assert results["branch_out"] == {"1": 4, "2": 4}  # The only T_u within 0.6 (tiny ResNets).


@pytest.mark.parametrize("overrides, message", [
    (dict(target_param_budget=0.5, branch_out=2), "give one of them"),
    (dict(target_param_budget=0.5, method="dafl"), "does not regroup"),
    (dict(target_param_budget=0.0), "number > 0"),
    (dict(target_bn="off"), "target_bn"),
    (dict(target_param_budget=float("inf")), "finite"),
    (dict(branch_bn="frozen", method="dafl"), "does not run"),
    (dict(step2_feature_weight=1.0, student="distill"), "step2_feature_weight=1.0: these"),
    (dict(step2_filter="conv", method="dafl"), "--step2_filter=conv: these apply"),
    (dict(branch_bn="frozen"), "add --finetune_trainable=all"),
])
def test_bad_step_two_three_settings_are_refused(overrides, message):
  with pytest.raises(ConfigError, match=message):
    _config("scenes20", workdir="unused", **QUICK, **overrides).validate()


def test_a_budget_nothing_fits_stops_before_any_work(tmp_path):
  from tests.test_cli import assert_user_error, run_cli  # pylint: disable=g-import-not-at-top
  proc = run_cli("--preset=quick", "--target_param_budget=0.3", f"--workdir={tmp_path / 'w'}",
                 "--quiet")
  assert_user_error(proc, "--target_param_budget=0.3", "smallest T_u", "raise the budget")
  assert not os.path.exists(tmp_path / "w")
