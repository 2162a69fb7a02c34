"""The DeepInversion pool (beyond the paper): targets, the pixel step, resume, the source."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfka_tf import pipeline
from dfka_tf.config import RunConfig
from dfka_tf.errors import ConfigError
from dfka_tf.models import blocknet
from dfka_tf.models.resnet import build_resnet
from dfka_tf.train import inversion, loop, sources
from tests import helpers

SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def teachers():
  keras.utils.set_random_seed(0)
  # Teacher b shares label "x" with teacher a: the union has 4 labels, the outputs 5 columns.
  nets = [blocknet.split_model(build_resnet("tiny", len(names), SHAPE, name=n),
                               label_names=names)
          for n, names in (("a", ["x", "a1", "a2"]), ("b", ["b0", "x"]))]
  for t in nets:
    t.freeze()
  return nets


def _trainer(teachers, **kw):
  args = dict(rng=tf.random.Generator.from_seed(3), num_images=6, batch_size=4, steps=3,
              jitter=1)
  args.update(kw)
  return inversion.InversionTrainer(teachers, **args)


def test_label_sets_have_one_to_max_distinct_labels():
  y = inversion.sample_label_sets(tf.random.Generator.from_seed(0), 2000, 6, 3).numpy()
  counts = y.sum(axis=1)
  assert set(np.unique(y)) == {0.0, 1.0}
  assert set(counts.astype(int)) == {1, 2, 3}  # Every count occurs, none outside 1..3.
  assert np.all(np.abs(y.mean(axis=0) - y.mean()) < 0.05)  # No label is favoured.
  one = inversion.sample_label_sets(tf.random.Generator.from_seed(0), 50, 6, 1).numpy()
  assert np.all(one.sum(axis=1) == 1)
  with pytest.raises(ValueError, match="max_labels"):
    inversion.sample_label_sets(tf.random.Generator.from_seed(0), 5, 6, 7)


def test_step_moves_only_the_images_and_fills_the_pool_batch_by_batch(teachers):
  trainer = _trainer(teachers)
  assert trainer.num_batches == 2 and trainer.total_steps == 6
  assert trainer.label_names == ["x", "a1", "a2", "b0"]
  frozen = [v for t in teachers for v in t.variables]
  before = [v.numpy().copy() for v in frozen]
  out = trainer.step()
  assert set(out) == {"loss", "ce", "bns", "tv", "agree"}
  assert all(np.isfinite(float(v)) for v in out.values())
  start = trainer.images.numpy().copy()
  targets = trainer.targets.numpy().copy()
  # The shared label "x" has one target, read by both teachers' columns (0 and 4).
  np.testing.assert_array_equal(tf.gather(targets, trainer.index, axis=1).numpy()[:, [0, 4]],
                                targets[:, [0, 0]])
  assert np.all(targets.sum(axis=1) >= 1) and np.all(targets.sum(axis=1) <= 3)
  trainer.step()
  assert not np.array_equal(start, trainer.images.numpy())
  assert 0.0 <= trainer.images.numpy().min() and trainer.images.numpy().max() <= 1.0
  assert np.all(trainer.pool.numpy() == 0)  # The batch is stored once it is finished.
  trainer.step()
  first = trainer.pool.numpy()[:4]
  np.testing.assert_array_equal(first, np.round(trainer.images.numpy() * 255).astype(np.uint8))
  assert np.all(trainer.pool.numpy()[4:] == 0)
  trainer.step()  # The next batch starts from fresh targets and a fresh optimiser.
  assert int(trainer.optimizer.iterations.numpy()) == 1
  for _ in range(2):
    trainer.step()
  assert trainer.images_uint8().shape == (6,) + SHAPE  # 8 optimised, the last 2 dropped.
  assert not np.all(trainer.pool.numpy()[4:] == 0)
  for b, v in zip(before, frozen):
    np.testing.assert_array_equal(b, v.numpy())
  with pytest.raises(RuntimeError, match="full"):
    trainer.step()


def test_optimisation_lowers_the_loss(teachers):
  trainer = _trainer(teachers, num_images=4, steps=40, learning_rate=0.1)
  first = float(trainer.step()["loss"])
  for _ in range(38):
    last = float(trainer.step()["loss"])
  assert last < first


def test_interrupted_pool_resumes_to_the_same_images(teachers, tmp_path):
  def checkpoint(trainer):
    return loop.StageCheckpoint(str(tmp_path / "ckpt"), rng=trainer.rng, pool=trainer.pool,
                                images=trainer.images, targets=trainer.targets,
                                counter=trainer.counter, optimizer=trainer.optimizer)
  whole = _trainer(teachers)
  for _ in range(whole.total_steps):
    whole.step()
  first = _trainer(teachers)
  loop.run_stage(first.step, stage="inversion", steps=4, checkpoint=checkpoint(first),
                 every=4, progress=False)  # Stops inside the second batch.
  second = _trainer(teachers)
  loop.run_stage(second.step, stage="inversion", steps=second.total_steps,
                 checkpoint=checkpoint(second), every=4, progress=False)
  np.testing.assert_array_equal(second.images_uint8().numpy(), whole.images_uint8().numpy())


def test_pool_source_draws_pool_images():
  pool = np.random.default_rng(0).integers(0, 256, (5,) + SHAPE).astype(np.uint8)
  source = sources.PoolSource(pool, tf.random.Generator.from_seed(0), batch_size=7)
  images, links = source.sample()
  assert links == {} and images.shape == (7,) + SHAPE and images.dtype == tf.float32
  flat = pool.reshape(5, -1).astype(np.float32) / 255.0
  for image in images.numpy():  # Without jitter every image is one of the pool's.
    assert np.min(np.abs(flat - image.reshape(1, -1)).max(axis=1)) < 1e-6
  with pytest.raises(ValueError, match="uint8"):
    sources.PoolSource(pool.astype(np.float32), tf.random.Generator.from_seed(0), 2)


# Slow (about 35 s): the pool's parts run at tiny scale (the pixel step, a pool interrupted
# mid-batch resuming to the same images, PoolSource drawing only pool images, the refusals);
# this test runs the pool's stages end to end with a resume.
@pytest.mark.slow
def test_run_with_a_pool_trains_on_it_and_resumes(tmp_path):
  config = RunConfig.build("scenes20", preset="quick", overrides=dict(
      workdir=str(tmp_path / "w"), inversion_images=12, inversion_steps=3, student_jitter=1,
      checkpoint_every=2))
  results = pipeline.run(config, progress=False)
  helpers.assert_scores_agree(results)
  with open(tmp_path / "w" / "progress.json") as f:
    done = json.load(f)["done"]
  assert done.index("generator") < done.index("inversion") < done.index("block1")
  assert "inversion" in results["stage_times"]
  assert os.path.exists(tmp_path / "w" / "generated.png")
  # TensorBoard: G's and the pool's image grids, G's label histogram, the final mAPs and
  # the run's options as hyperparameters.
  tags = helpers.tensorboard_tags(tmp_path / "w" / "logs")
  for tag, kind in {"generator/sampled/images": "images", "inversion/pool/images": "images",
                    "generator/sampled/labels_predicted": "histograms",
                    "results/teacher_map": "scalars", "results/target_map": "scalars",
                    "results/targetnet_map": "scalars", "results/regrouped_map": "scalars",
                    "results/target_over_teachers_params": "scalars"}.items():
    assert tags.get(tag) == kind, (tag, sorted(tags))
  assert "hparams" in tags.values()
  again = pipeline.run(config, progress=False, resume=True)  # Reads the pool back.
  assert again["target_map"] == results["target_map"]


@pytest.mark.parametrize("overrides, message", [
    (dict(method="ka"), "replaces the generated images"),
    (dict(adversarial_weight=1.0), "set one of them to 0"),
    (dict(inversion_images=-1), ">= 0"),
    (dict(inversion_steps=0), "inversion_steps"),
    (dict(inversion_tv=-1.0), "inversion_tv"),
    (dict(inversion_max_labels=0), "inversion_max_labels"),
])
def test_bad_pool_settings_are_refused(overrides, message):
  values = dict(inversion_images=8)
  values.update(overrides)
  with pytest.raises(ConfigError, match=message):
    RunConfig.build("scenes20", method=values.pop("method", "dfka"), overrides=values)


def test_more_labels_per_image_than_teachers_know_is_refused_before_training(tmp_path):
  config = RunConfig.build("scenes20", preset="quick", overrides=dict(
      workdir=str(tmp_path / "w"), inversion_images=8, inversion_max_labels=21))
  with pytest.raises(ConfigError, match="inversion_max_labels=21"):
    pipeline.run(config, progress=False)
