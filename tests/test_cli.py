"""Bad input to `python -m experiments.run`: one clear line, exit 2, nothing damaged.

Most cases use two tiny bring-your-own teachers, so no dataset is needed.
"""

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from dfka_tf.models import blocknet, teacher_files
from dfka_tf.models.resnet import build_resnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--arch=tiny", "--batch_size=4", "--generator_steps=2", "--block_steps=2",
        "--finetune_steps=2", "--quiet"]


def run_cli(*args, module="experiments.run", timeout=300):
  """Runs `python -m module args` (module None: `python args`) in the checkout."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  start = time.time()
  command = [sys.executable, *(["-m", module] if module else []), *args]
  proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                        env=env)
  proc.seconds = time.time() - start
  return proc


def assert_user_error(proc, *fragments):
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, proc.stderr[-3000:]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]
  return errors[0]


def _save(path, arch, labels, shape=(16, 16, 3)):
  model = build_resnet(arch, len(labels), shape, name=os.path.basename(path)[:-6])
  teacher_files.save_teacher(blocknet.split_model(model, label_names=labels), path)
  return str(path)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
  d = tmp_path_factory.mktemp("teachers")
  return {
      "a": _save(d / "a.keras", "tiny", ["cat", "dog"]),
      "b": _save(d / "b.keras", "tiny", ["bus", "car", "tree"]),
      "wide": _save(d / "wide.keras", "small", ["boat"]),
      "dir": str(d),
  }


def _digest(directory):
  h = hashlib.sha256()
  for root, _, files in sorted(os.walk(directory)):
    for name in sorted(files):
      with open(os.path.join(root, name), "rb") as f:
        h.update(name.encode() + f.read())
  return h.hexdigest()


def test_unknown_label(teachers, tmp_path):
  proc = run_cli(f"--teacher={teachers['a']}", f"--teacher={teachers['b']}",
                 "--labels=cat,unicorn", f"--workdir={tmp_path / 'w'}", *TINY)
  assert_user_error(proc, "unicorn", "Known labels")
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.parametrize("labels,text", [("--labels=", "empty"),
                                         ("--labels=cat,bus,cat", "more than once")])
def test_empty_or_duplicate_labels(teachers, tmp_path, labels, text):
  proc = run_cli(f"--teacher={teachers['a']}", f"--teacher={teachers['b']}", labels,
                 f"--workdir={tmp_path / 'w'}", *TINY)
  assert_user_error(proc, text)


@pytest.mark.parametrize("count", ["0", "21"])
def test_teacher_count_out_of_range(tmp_path, count):
  proc = run_cli(f"--teachers={count}", f"--workdir={tmp_path / 'w'}", "--quiet")
  assert_user_error(proc, f"teachers={count}")


def test_groups_must_divide_blocks(tmp_path):
  proc = run_cli("--groups=3", f"--workdir={tmp_path / 'w'}", "--quiet")
  assert_user_error(proc, "--groups=3", "[1, 2, 4]")


@pytest.mark.parametrize("flag", ["--bns_weight=-1", "--lh_weight=-1",
                                  "--generator_jitter=-1", "--student_jitter=32",
                                  "--adversarial_weight=-1", "--inversion_images=-1"])
def test_negative_beyond_paper_weight(tmp_path, flag):
  proc = run_cli(flag, f"--workdir={tmp_path / 'w'}", "--quiet")
  assert_user_error(proc, flag)
  assert not os.path.exists(tmp_path / "w")


def test_an_unknown_preset_among_several_is_named(tmp_path):
  proc = run_cli("--preset=quick,paper_weigths", f"--workdir={tmp_path / 'w'}", "--quiet")
  assert_user_error(proc, "unknown preset 'paper_weigths'", "paper_weights")
  assert not os.path.exists(tmp_path / "w")


def test_a_dataset_without_a_validation_split_is_refused_before_any_work(tmp_path):
  proc = run_cli("--dataset=coco2014", "--eval_split=validation",
                 f"--workdir={tmp_path / 'w'}", "--quiet")
  assert_user_error(proc, "--eval_split=validation", "coco2014 has no such split")
  assert not os.path.exists(tmp_path / "w")


def test_dataset_baseline_needs_a_dataset(teachers, tmp_path):
  # --method takes every baseline; KA-style ones read real images, which BYO teachers lack.
  proc = run_cli(f"--teacher={teachers['a']}", f"--teacher={teachers['b']}", "--method=ka",
                 f"--workdir={tmp_path / 'w'}", *TINY)
  assert_user_error(proc, "--method=ka", "dfka, dafl, noise or teacher")
  assert not os.path.exists(tmp_path / "w")


def test_teacher_file_missing(tmp_path):
  proc = run_cli(f"--teacher={tmp_path / 'nope.keras'}", f"--workdir={tmp_path / 'w'}")
  assert_user_error(proc, "nope.keras", "not found")


def test_teacher_file_not_a_keras_model(tmp_path):
  bad = tmp_path / "bad.keras"
  bad.write_text("not a model")
  (tmp_path / "bad.keras.labels.json").write_text('{"labels": ["x"]}')
  proc = run_cli(f"--teacher={bad}", f"--workdir={tmp_path / 'w'}")
  assert_user_error(proc, "bad.keras")


def test_label_json_disagrees_with_output_size(teachers, tmp_path):
  path = _save(tmp_path / "c.keras", "tiny", ["x", "y"])
  with open(path + ".labels.json") as f:
    meta = json.load(f)
  meta["labels"] = ["x", "y", "z"]
  with open(path + ".labels.json", "w") as f:
    json.dump(meta, f)
  proc = run_cli(f"--teacher={path}", f"--workdir={tmp_path / 'w'}")
  assert_user_error(proc, "c.keras")


def test_teachers_whose_blocks_do_not_fit(teachers, tmp_path):
  proc = run_cli(f"--teacher={teachers['a']}", f"--teacher={teachers['wide']}",
                 f"--workdir={tmp_path / 'w'}", *TINY)
  assert_user_error(proc, "wide")
  assert not os.path.exists(tmp_path / "w")


def test_missing_tfds_data_fails_fast_with_hint(tmp_path):
  empty = tmp_path / "tfds"
  empty.mkdir()
  proc = run_cli("--dataset=voc2007", f"--data_dir={empty}", f"--workdir={tmp_path / 'w'}")
  assert_user_error(proc, "tfds build")
  assert proc.seconds < 30
  assert not os.path.exists(tmp_path / "w")


# Slow (about 50 s, four command-line runs): a busy workdir is refused in the default suite
# (tests/test_lock.py), resume in tests/test_resume.py, serving the export in
# tests/test_export.py; CI's daily slow test (.ci/run) runs it in turn.
@pytest.mark.slow
def test_workdir_with_other_config_is_refused_and_kept(teachers, tmp_path):
  work = tmp_path / "w"
  args = [f"--teacher={teachers['a']}", f"--teacher={teachers['b']}", f"--workdir={work}"]
  first = run_cli(*args, *TINY)
  assert first.returncode == 0, first.stderr[-3000:]
  before = _digest(work)
  proc = run_cli(*args, *TINY, "--seed=5")
  assert_user_error(proc, "different config", "seed", "--overwrite")
  proc = run_cli(*args, *TINY)
  assert_user_error(proc, "--resume")
  assert _digest(work) == before
  # The same config with --resume finds every stage done and rewrites the same results.
  again = run_cli(*args, *TINY, "--resume")
  assert again.returncode == 0, again.stderr[-3000:]
  # The prediction CLI serves the export without importing dfka_tf.
  image = tmp_path / "x.png"
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.io.write_file(str(image), tf.io.encode_png(
      np.random.RandomState(0).randint(0, 255, (20, 24, 3)).astype("uint8")))
  pred = run_cli(f"--model={work / 'target_net'}", "--threshold=0", str(image),
                 module="experiments.predict")
  assert pred.returncode == 0, pred.stderr[-3000:]
  assert pred.stdout.startswith(f"{image}: ") and "cat" in pred.stdout


def test_non_finite_loss_names_stage_step_and_term(teachers, tmp_path):
  proc = run_cli(f"--teacher={teachers['a']}", f"--teacher={teachers['b']}",
                 f"--workdir={tmp_path / 'w'}", "--alpha=nan", *TINY)
  assert_user_error(proc, "generator", "step 1", "'loss'")
  ckdir = tmp_path / "w" / "ckpt" / "generator"
  assert not ckdir.exists() or not os.listdir(ckdir)  # No NaN state was saved.


def test_corrupt_checkpoint_on_resume(teachers, tmp_path):
  work = tmp_path / "w"
  args = [f"--teacher={teachers['a']}", f"--teacher={teachers['b']}", f"--workdir={work}"]
  assert run_cli(*args, *TINY).returncode == 0
  ckdir = work / "ckpt" / "generator"
  for name in os.listdir(ckdir):
    if ".data-" in name:
      with open(ckdir / name, "r+b") as f:
        f.truncate(3)
  proc = run_cli(*args, *TINY, "--resume")
  assert_user_error(proc, "corrupt", "generator")
