"""Data pipelines: VOC/COCO on tfds mock data, the devkit rule, pycocotools, scenes20."""

import json
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from dfka_tf import data
from dfka_tf.data import loaders, render
from dfka_tf.errors import ConfigError, DataNotFoundError


def test_voc_devkit_rule_on_hand_made_example():
  # Objects: cat (7) easy, dog (11) difficult only, person (14) easy and difficult.
  ex = {"image": tf.zeros([4, 4, 3], tf.uint8),
        "objects": {"label": tf.constant([7, 11, 14, 14]),
                    "is_difficult": tf.constant([False, True, True, False])}}
  out = loaders.voc_example(ex)
  labels, ignore = out["labels"].numpy(), out["ignore"].numpy()
  assert np.nonzero(labels)[0].tolist() == [7, 14]
  assert np.nonzero(ignore)[0].tolist() == [11]
  empty = loaders.voc_example({"image": ex["image"], "objects": {
      "label": tf.zeros([0], tf.int64), "is_difficult": tf.zeros([0], tf.bool)}})
  assert empty["labels"].numpy().sum() == 0 and empty["ignore"].numpy().sum() == 0


@pytest.mark.parametrize("dataset,num_labels", [("voc2007", 20), ("coco2014", 80)])
def test_tfds_pipelines_on_mock_data(dataset, num_labels, monkeypatch):
  # Mocked builders are never "prepared"; the readiness check itself is tested below.
  monkeypatch.setattr(loaders, "check_prepared",
                      lambda name, data_dir=None: tfds.builder(loaders.TFDS_NAMES[name][0]))
  with tfds.testing.mock_data(num_examples=6):
    ds = data.load(dataset, "test", image_size=24, batch_size=3)
    batches = list(ds)
  assert len(batches) == 2
  b = batches[0]
  assert b["image"].shape == (3, 24, 24, 3) and b["image"].dtype == tf.float32
  assert 0.0 <= float(tf.reduce_min(b["image"])) and float(tf.reduce_max(b["image"])) <= 1.0
  assert b["labels"].shape == (3, num_labels) and b["ignore"].shape == (3, num_labels)
  assert set(np.unique(b["labels"].numpy())) <= {0.0, 1.0}
  assert float(tf.reduce_max(b["labels"] + b["ignore"])) <= 1.0  # ignore only where label 0
  assert len(data.label_names(dataset)) == num_labels


def test_missing_tfds_data_fails_fast(tmp_path):
  for dataset in ("voc2007", "coco2014"):
    start = time.time()
    with pytest.raises(DataNotFoundError, match="tfds build"):
      data.check_prepared(dataset, str(tmp_path))
    assert time.time() - start < 5


def test_coco_json_through_pycocotools(tmp_path):
  for name, colour in (("a.png", 0), ("b.png", 255)):
    tf.io.write_file(str(tmp_path / name),
                     tf.io.encode_png(tf.fill([6, 8, 3], tf.constant(colour, tf.uint8))))
  ann = {
      "images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 6},
                 {"id": 2, "file_name": "b.png", "width": 8, "height": 6}],
      # Category ids are sparse in COCO (1..90); indices follow ascending id order.
      "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"},
                     {"id": 90, "name": "toothbrush"}],
      "annotations": [
          {"id": 1, "image_id": 1, "category_id": 90, "bbox": [0, 0, 2, 2], "area": 4,
           "iscrowd": 0},
          {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4,
           "iscrowd": 0},
          {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 2, 2], "area": 4,
           "iscrowd": 0}],
  }
  path = tmp_path / "instances_val.json"
  path.write_text(json.dumps(ann))
  batch = next(iter(data.load_coco_json(str(path), str(tmp_path), image_size=4, batch_size=2)))
  # Always the 80 COCO_LABELS columns: person = 0, car = 2, toothbrush (id 90) = 79.
  expected = np.zeros([2, 80])
  expected[0, 79] = expected[1, 0] = expected[1, 2] = 1
  np.testing.assert_array_equal(batch["labels"].numpy(), expected)
  assert batch["ignore"].numpy().sum() == 0
  assert batch["image"].shape == (2, 4, 4, 3)
  np.testing.assert_allclose(batch["image"].numpy()[:, 0, 0, 0], [0.0, 1.0])
  with pytest.raises(DataNotFoundError):
    data.load_coco_json(str(tmp_path / "missing.json"), str(tmp_path))
  with pytest.raises(DataNotFoundError):
    data.load_coco_json(str(path), str(tmp_path / "no_such_folder"))
  ann["categories"][1]["name"] = "truck"  # Id 3 is car in COCO.
  path.write_text(json.dumps(ann))
  with pytest.raises(ConfigError, match="truck"):
    data.load_coco_json(str(path), str(tmp_path))


def test_scenes_renderer_is_deterministic_and_multi_label():
  a, la = render.generate("main", range(40, 60), size=32, seed=3, stream=0)
  b, lb = render.generate("main", [45, 50], size=32, seed=3, stream=0)
  np.testing.assert_array_equal(a[[5, 10]], b)  # An example depends on its index only.
  np.testing.assert_array_equal(la[[5, 10]], lb)
  counts = la.sum(1)
  assert counts.min() >= 1 and counts.max() <= 3
  assert a.dtype == np.uint8 and a.shape == (20, 32, 32, 3)
  c, _ = render.generate("main", range(40, 60), size=32, seed=3, stream=1)
  assert not np.array_equal(a, c)  # Train and test streams differ.
  tex, lt = render.generate("different", range(4), size=32, seed=3, stream=0)
  assert lt.sum() == 0 and tex.std() > 5


def test_labels_and_splits():
  assert data.resolve_labels(["bus", "table", "tv"], data.label_names("voc2007")) == [
      "bus", "diningtable", "tvmonitor"]
  with pytest.raises(ConfigError, match="unicorn"):
    data.resolve_labels(["unicorn"], data.label_names("voc2007"))
  split = data.teacher_label_split("voc2007", 2)
  assert split[0][:3] == ["aeroplane", "bicycle", "bird"] and "diningtable" in split[1]
  assert [len(s) for s in data.teacher_label_split("scenes20", 2)] == [10, 10]
  with pytest.raises(ConfigError):
    data.teacher_label_split("scenes20", 0)


def test_scenes20_builder_prepares_offline(tmp_path, monkeypatch):
  # A small split size keeps the test fast; the builder code path is the real one.
  monkeypatch.setitem(data.builders.SPLITS, "train", (0, 40))
  monkeypatch.setitem(data.builders.SPLITS, "test", (1, 20))
  ds = data.load("scenes20", "train", data_dir=str(tmp_path), batch_size=8, shuffle=True,
                 seed=1, augment=True, drop_remainder=True)
  first = [b["labels"].numpy() for b in ds]
  again = [b["labels"].numpy() for b in data.load(
      "scenes20", "train", data_dir=str(tmp_path), batch_size=8, shuffle=True, seed=1,
      augment=True, drop_remainder=True)]
  assert len(first) == 5
  np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
  assert data.num_examples("scenes20", "test", str(tmp_path)) == 20
  # A checkpointable pipeline: the iterator's state serialises (no stateful random ops).
  it = iter(ds.repeat())
  next(it)
  tf.train.Checkpoint(data=it).write(str(tmp_path / "it"))


def test_label_aliases_errors_and_more_splits():
  coco = data.label_names("coco2014")
  assert len(coco) == 80 and coco[0] == "person" and coco[-1] == "toothbrush"
  assert data.resolve_labels(["TV", "motor", "Dining_Table", "plane"], coco) == [
      "tv", "motorcycle", "dining table", "airplane"]
  assert data.resolve_labels(["Plane", "motorcycle"], data.label_names("voc2007")) == [
      "aeroplane", "motorbike"]
  with pytest.raises(ConfigError, match="twice"):
    data.resolve_labels(["tv", "tvmonitor"], data.label_names("voc2007"))
  with pytest.raises(ConfigError, match="empty"):
    data.resolve_labels([], data.label_names("voc2007"))
  y1, y2 = data.teacher_label_split("voc2007", 2)
  assert y1 == ["aeroplane", "bicycle", "bird", "boat", "bus", "car", "horse", "motorbike",
                "person", "train"]
  assert sorted(y1 + y2) == sorted(data.label_names("voc2007"))
  c1, c2 = data.teacher_label_split("coco2014", 2)
  assert c1 == coco[:40] and c2 == coco[40:]
  assert [len(s) for s in data.teacher_label_split("scenes20", 3)] == [7, 7, 6]
  assert data.teacher_label_split("scenes20", 1) == [data.label_names("scenes20")]
  with pytest.raises(ConfigError, match="1..20"):
    data.teacher_label_split("voc2007", 21)
