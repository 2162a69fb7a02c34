"""The configuration: sections, presets, the method's expansion, --set, old config.json."""

import json
import os

import pytest

from dfka_tf import config as config_lib
from dfka_tf.config import RunConfig
from dfka_tf.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_option_has_one_short_name_help_and_a_documented_row():
  names = [f.name for f in config_lib.FIELDS]
  assert len(names) == len(set(names))
  assert all(f.help.strip() for f in config_lib.FIELDS)
  with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
    assert config_lib.option_table() in f.read()  # Regenerate the docs' table if this fails.


def test_method_is_expanded_once_into_settings():
  dafl = RunConfig.for_dataset("scenes20", method="dafl", groups=2, gamma=5.0)
  assert (dafl.generator.groups, dafl.generator.gamma) == (1, 0.0)
  # DAFL trains G in its joint stage, not in a Step I before it; dafl_2stage does.
  assert (dafl.student.mode, dafl.source.kind, dafl.generator.enabled) == (
      "joint", "generator", False)
  two = RunConfig.for_dataset("scenes20", method="dafl_2stage", groups=2, gamma=5.0)
  assert (two.generator.groups, two.generator.gamma) == (1, 0.0)
  assert (two.student.mode, two.source.kind, two.generator.enabled) == (
      "distill", "generator", True)
  similar = RunConfig.for_dataset("scenes20", method="similar")
  assert (similar.source.kind, similar.source.dataset, similar.generator.enabled) == (
      "dataset", "scenes20_similar", False)
  assert RunConfig.for_dataset("scenes20", method="ka").source.dataset is None
  assert RunConfig.for_dataset("scenes20", method="noise").source.kind == "noise"
  assert RunConfig.for_dataset("scenes20", method="teacher").student.mode == "ensemble"
  pool = RunConfig.for_dataset("scenes20", inversion_images=64)
  assert pool.source.kind == "pool"
  assert pool.expanded() == pool  # Expanding twice changes nothing.


def test_presets_and_overrides_by_short_name_or_path():
  voc = RunConfig.for_dataset("voc2007")
  assert (voc.data.arch, voc.data.image_size, voc.runtime.batch_size) == ("resnet101", 224, 16)
  quick = RunConfig.for_dataset("scenes20", preset="quick")
  assert (quick.data.arch, quick.generator.steps, quick.eval.export) == ("tiny", 5, False)
  # Presets stack in order; paper_weights puts S-Table 1's printed weights back.
  printed = RunConfig.for_dataset("scenes20", preset="quick,paper_weights")
  assert printed == RunConfig.build("scenes20", preset=["quick", "paper_weights"])
  assert printed.generator.steps == 5
  assert (printed.generator.alpha, printed.generator.beta, printed.generator.gamma,
          printed.generator.epsilon) == (1.0, 1.0, 5.0, 0.5)
  with pytest.raises(ConfigError, match="unknown preset 'papr'"):
    RunConfig.for_dataset("scenes20", preset="quick,papr")
  a = RunConfig.build("scenes20", overrides=config_lib.parse_assignments(
      ["generator.bns.weight=20", "alpha=0", "labels=circle,star", "image_bn=false"]))
  assert a.generator.bns.weight == 20.0 and a.generator.alpha == 0.0
  assert a.data.labels == ("circle", "star") and a.generator.image_bn is False
  assert a == RunConfig.for_dataset("scenes20", bns_weight=20, alpha=0.0,
                                    labels=["circle", "star"], image_bn=False)


@pytest.mark.parametrize("overrides,text", [
    (dict(bns_weigth=1), "close matches: ['bns_weight'"),
    (dict(batch_size="many"), "is not of type int"),
    (dict(bns_form="cubic"), "--bns_form='cubic' must be one of squared, norm"),
    (dict(groups=0), "--groups=0 must be >= 1"),
    (dict(epsilon=1.0), "--epsilon=1.0 must be strictly between 0 and 1"),
    (dict(student_jitter=32), "--student_jitter=32 must be in 0..31"),
])
def test_bad_values_name_the_option_and_the_fix(overrides, text):
  with pytest.raises(ConfigError, match=None) as e:
    RunConfig.for_dataset("scenes20", **overrides)
  assert text in str(e.value)


def test_json_round_trip_and_old_flat_files():
  c = RunConfig.for_dataset("scenes20", method="dafl", labels=["circle"], seed=4,
                            teacher_paths=["t.keras"], teacher_blocks=["x", "y"], workdir="w")
  assert RunConfig.from_json(c.to_json()) == c
  # The flat config.json of older runs: every option under its short (old field) name.
  flat = {"workdir": "w", "dataset": "scenes20", "num_teachers": 2,
          "teacher_paths": ["t.keras"],
          "labels": ["circle"], "method": "dafl", "seed": 4, "bns_weight": 0.0,
          "teacher_blocks": ["x", "y"], "groups": 2, "gamma": 5.0, "block_steps": 100,
          "image_bn": True, "jit": None, "alpha": 0.1, "beta": 5.0,
          # Renamed (student.pretrain -> data.pretrain) and dropped (imagenet_init) options.
          "target_pretrain": "scenes20_similar", "imagenet_init": True}
  old = RunConfig.from_json(json.dumps(flat))
  assert old.differences(c) == []
  flat.pop("target_pretrain")  # Older runs started from fresh weights: a resume must refuse.
  assert RunConfig.from_json(json.dumps(flat)).differences(c) == ["pretrain"]


def test_records_compare_only_the_options_a_method_reads():
  # G's loss weights reach T_u only through a Step I whose images Steps II-III train on.
  for method, extra in (("ka", {}), ("noise", {}), ("teacher", {}),
                        ("dfka", {"inversion_images": 64})):
    a = RunConfig.for_dataset("scenes20", method=method, **extra)
    b = a.replace(alpha=0.3, beta=2.0, generator_steps=7, dis_sign="printed")
    assert set(a.differences(b)) == {"alpha", "beta", "generator_steps", "dis_sign"}
    assert a.differences(b, read_only=True) == []
  # DAFL's joint stage takes L_a's and L_ie's weights from student.joint, not G's ...
  dafl = RunConfig.for_dataset("scenes20", method="dafl")
  assert dafl.differences(dafl.replace(alpha=0.3, beta=2.0), read_only=True) == []
  assert dafl.differences(dafl.replace(joint_beta=2.0), read_only=True) == ["joint_beta"]
  assert dafl.differences(dafl.replace(epsilon=0.3), read_only=True) == ["epsilon"]
  # A pool row builds G before the TargetNet: G's layers still shift its initial weights.
  pool = RunConfig.for_dataset("scenes20", inversion_images=64)
  assert pool.differences(pool.replace(groups=4), read_only=True) == ["groups"]
  # ... and DFKA on G reads them all.
  dfka = RunConfig.for_dataset("scenes20")
  assert dfka.differences(dfka.replace(alpha=0.3), read_only=True) == ["alpha"]
  assert dfka.differences(dfka.replace(gamma=0.0), read_only=True) == ["gamma"]


def test_keys_ignore_options_at_their_default_and_resumable_ones():
  c = RunConfig.for_dataset("scenes20", workdir="a")
  assert c.key("generator") == c.replace(lh_weight=0.0, workdir="b", jit=True).key("generator")
  assert c.key("generator") != c.replace(lh_weight=1.0).key("generator")
  assert c.key("generator") != c.key("student")


def test_docs_result_tables_match_the_results_files():
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "make_tables.py"),
                         "--check"], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_set_takes_comma_lists_none_and_refuses_stray_teacher_blocks():
  assert config_lib.parse_assignments(["generator_steps=600,block_steps=300",
                                       "labels=circle,star", "branch_out=None"]) == {
      "generator.steps": "600", "student.block_steps": "300", "data.labels": "circle,star",
      "student.branch_out": "None"}
  c = RunConfig.for_dataset("scenes20", branch_out="None", labels="circle,star")
  assert c.student.branch_out is None and c.data.labels == ("circle", "star")
  with pytest.raises(ConfigError, match="--teacher_blocks names the layers"):
    RunConfig.for_dataset("scenes20", teacher_blocks=["a", "b"])
