"""The embedded scenes20 datasets: TFDS builders, determinism, label statistics, companions."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dfka_tf import data
from dfka_tf.data import builders, labels, render
from dfka_tf.errors import ConfigError


@pytest.fixture
def tiny_splits(monkeypatch):
  # The builder code path is the real one; only the split sizes shrink.
  monkeypatch.setitem(builders.SPLITS, "train", (0, 24))
  monkeypatch.setitem(builders.SPLITS, "test", (1, 12))
  monkeypatch.setitem(builders.SPLITS, "validation", (2, 12))


def _read(name, data_dir, split):
  builder = tfds.builder(name, data_dir=data_dir)
  builder.download_and_prepare()
  ds = builder.as_dataset(split=split, shuffle_files=False)
  return [(ex["image"].numpy(), ex["labels"].numpy()) for ex in ds]


def test_builder_is_deterministic_across_data_dirs(tiny_splits, tmp_path):
  a = _read("scenes20/32", str(tmp_path / "a"), "train")
  b = _read("scenes20/32", str(tmp_path / "b"), "train")
  assert len(a) == 24
  for (ia, la), (ib, lb) in zip(a, b):
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(la, lb)
  # What the builder stored is exactly what the renderer draws (PNG is lossless).
  images, multi_hot = render.generate("main", range(24), size=32, seed=builders.SEED, stream=0)
  stored = {ia.tobytes(): la for ia, la in a}
  for image, row in zip(images, multi_hot):
    np.testing.assert_array_equal(stored[image.tobytes()], row)


def test_scenes_have_one_to_three_balanced_labels_and_use_the_value_range():
  images, multi_hot = render.generate("main", range(400), size=32, seed=builders.SEED,
                                      stream=0)
  per_image = multi_hot.sum(1)
  assert per_image.min() == 1 and per_image.max() == 3
  assert set(np.unique(per_image)) == {1, 2, 3}
  per_label = multi_hot.sum(0)
  mean = per_label.mean()
  assert per_label.min() > 0.5 * mean and per_label.max() < 1.5 * mean, per_label
  assert images.dtype == np.uint8 and images.shape == (400, 32, 32, 3)
  assert images.min() < 20 and images.max() > 235
  # No flat images: every scene has clutter and objects.
  assert images.reshape(400, -1).std(axis=1).min() > 5


def test_each_class_draws_its_own_shape():
  # Shape masks on a 32x32 tile of the unit square: not specks, not the whole tile, and no
  # two classes (main or similar) coincide. Circle vs hexagon is the closest pair (4 %).
  c = (np.arange(32) + 0.5) / 16 - 1
  u, v = np.meshgrid(c, -c)
  for shapes in (render.MAIN_SHAPES, render.SIMILAR_SHAPES):
    masks = np.stack([f(u, v) < 0 for f in shapes.values()])
    fill = masks.mean(axis=(1, 2))
    assert fill.min() > 0.2 and fill.max() < 0.7
    diff = (masks[:, None] != masks[None]).mean(axis=(2, 3))
    np.fill_diagonal(diff, 1.0)
    assert diff.min() > 0.03


def test_similar_shapes_are_disjoint_from_the_main_ones():
  assert not set(labels.SCENES20_LABELS) & set(labels.SCENES20_SIMILAR_LABELS)
  assert len(set(labels.SCENES20_SIMILAR_LABELS)) == 20


def test_companions_and_64px_config_load(tiny_splits, tmp_path):
  d = str(tmp_path)
  similar = next(iter(data.load("scenes20_similar", "train", data_dir=d, batch_size=4)))
  assert similar["image"].shape == (4, 32, 32, 3)
  assert set(similar["labels"].numpy().sum(1)) <= {1.0, 2.0, 3.0}
  different = next(iter(data.load("scenes20_different", "train", data_dir=d, batch_size=4)))
  assert different["labels"].numpy().sum() == 0  # Textures: nothing to label.
  assert float(different["image"].numpy().std()) > 0.02
  with pytest.raises(ConfigError, match="test"):
    data.load("scenes20_different", "test", data_dir=d)
  big = next(iter(data.load("scenes20_64", "test", data_dir=d, batch_size=2)))
  assert big["image"].shape == (2, 64, 64, 3)
  assert 0.0 <= float(big["image"].numpy().min()) and float(big["image"].numpy().max()) <= 1.0
  assert data.num_examples("scenes20_64", "test", d) == 12


def test_the_validation_split_is_drawn_apart_from_train_and_test(tiny_splits, tmp_path):
  d = str(tmp_path)
  splits = {s: _read("scenes20/32", d, s) for s in ("train", "validation", "test")}
  assert len(splits["validation"]) == 12
  seen = {s: {image.tobytes() for image, _ in examples} for s, examples in splits.items()}
  assert not seen["validation"] & (seen["train"] | seen["test"])
  # Its own stream: adding the split left test as the renderer draws it on stream 1.
  test_images, _ = render.generate("main", range(12), size=32, seed=builders.SEED, stream=1)
  assert {image.tobytes() for image in test_images} == seen["test"]
  assert data.split_names("scenes20") == ["test", "train", "validation"]
  assert "validation" not in data.split_names("coco2014")
