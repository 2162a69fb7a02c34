"""The exported T_u serves from a fresh process, without dfka_tf, and matches Keras."""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from dfka_tf import export
from dfka_tf.models import blocknet
from dfka_tf.models import regroup as regroup_lib
from dfka_tf.models.filters import TeacherFilter
from dfka_tf.models.resnet import build_resnet
from dfka_tf.task import TaskMap

SHAPE = (16, 16, 3)

# Runs in a fresh interpreter with dfka_tf unimportable: serving needs TensorFlow only.
_RELOAD = r"""
import json, sys
import numpy as np
sys.modules["dfka_tf"] = None
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])
f = m.signatures["serving_default"](images=tf.constant(x))
u = m.signatures["serve_uint8"](images=tf.constant((x * 255).round().astype("uint8")))
big = m.signatures["serving_default"](images=tf.image.resize(tf.constant(x), (32, 32)))
print(json.dumps({"float": f["probabilities"].numpy().tolist(),
                  "uint8": u["probabilities"].numpy().tolist(),
                  "resized": big["probabilities"].numpy().tolist(),
                  "names": [n.decode() for n in f["label_names"].numpy()[0]]}))
"""


def _target_net():
  teachers = []
  for name, n in (("a", 3), ("b", 2)):
    t = blocknet.split_model(build_resnet("tiny", n, SHAPE, name=name),
                             label_names=[f"{name}{i}" for i in range(n)])
    teachers.append(t.freeze())
  task = TaskMap.build([t.label_names for t in teachers], ["b1", "a0"])
  target = blocknet.split_model(build_resnet("tiny", 2, SHAPE, name="target"),
                                label_names=task.labels)
  filters = {b: [TeacherFilter(name=f"x{m}_{b}") for m in range(2)] for b in (1, 2, 3)}
  return regroup_lib.regroup(target, teachers, filters, {0: 2, 1: 3}, task), task.labels


def test_saved_model_reloads_in_fresh_process(tmp_path):
  model, labels = _target_net()
  out_dir = str(tmp_path / "target_net")
  export.export_target_net(model, labels, out_dir)
  assert json.load(open(os.path.join(out_dir, "labels.json")))["labels"] == labels
  # Pixel values on the uint8 grid, so both signatures see the same image.
  x = (np.random.RandomState(0).randint(0, 256, (3,) + SHAPE) / 255.0).astype("float32")
  np.save(tmp_path / "x.npy", x)
  proc = subprocess.run([sys.executable, "-c", _RELOAD, out_dir, str(tmp_path / "x.npy")],
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  got = json.loads(proc.stdout.strip().splitlines()[-1])
  want = model(x, training=False).numpy()
  np.testing.assert_allclose(got["float"], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["uint8"], want, rtol=1e-5, atol=1e-6)
  # Any image size is resized to the model's 16x16 inside the graph: serving a 32x32 copy
  # of x gives the model's prediction on that copy resized back to 16x16.
  resized = tf.image.resize(tf.image.resize(x, (32, 32)), SHAPE[:2])
  np.testing.assert_allclose(got["resized"], model(resized, training=False).numpy(),
                             rtol=1e-5, atol=1e-6)
  assert got["names"] == ["b1", "a0"]


def test_export_replaces_previous_export_atomically(tmp_path):
  model, labels = _target_net()
  out_dir = str(tmp_path / "target_net")
  export.export_target_net(model, labels, out_dir)
  with open(os.path.join(out_dir, "stale.txt"), "w") as f:
    f.write("from the first export")
  os.mkdir(out_dir + ".tmp")  # Left behind by an export that was killed half-way.
  open(os.path.join(out_dir + ".tmp", "junk"), "w").close()
  export.export_target_net(model, ["second", "names"], out_dir)
  # The new export replaced the old directory (nothing merged, nothing left over).
  assert sorted(os.listdir(tmp_path)) == ["target_net"]
  assert not os.path.exists(os.path.join(out_dir, "stale.txt"))
  assert json.load(open(os.path.join(out_dir, "labels.json"))) == {
      "labels": ["second", "names"], "image_size": [16, 16]}
  served = tf.saved_model.load(out_dir).signatures["serving_default"](
      images=tf.zeros((1,) + SHAPE))
  assert [n.decode() for n in served["label_names"].numpy()[0]] == ["second", "names"]
