"""The configuration: sections, presets, the method's expansion, --set, config.json."""

import json
import os

import pytest

from dfka_tf import config as config_lib
from dfka_tf import options
from dfka_tf.config import RunConfig
from dfka_tf.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_option_has_one_short_name_help_and_a_documented_row():
  names = [f.name for f in options.FIELDS]
  assert len(names) == len(set(names))
  assert all(f.help.strip() for f in options.FIELDS)
  with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
    assert config_lib.option_table() in f.read()  # Regenerate the docs' table if this fails.


def test_method_is_expanded_once_into_settings():
  dafl = RunConfig.build("scenes20", method="dafl", overrides=dict(groups=2, gamma=5.0))
  assert (dafl.generator.groups, dafl.generator.gamma) == (1, 0.0)
  # DAFL trains G in its joint stage, not in a Step I before it; dafl_2stage does.
  assert (dafl.student.mode, dafl.source.kind, dafl.generator.enabled) == (
      "joint", "generator", False)
  two = RunConfig.build("scenes20", method="dafl_2stage", overrides=dict(groups=2, gamma=5.0))
  assert (two.generator.groups, two.generator.gamma) == (1, 0.0)
  assert (two.student.mode, two.source.kind, two.generator.enabled) == (
      "distill", "generator", True)
  similar = RunConfig.build("scenes20", method="similar")
  assert (similar.source.kind, similar.source.dataset, similar.generator.enabled) == (
      "dataset", "scenes20_similar", False)
  assert RunConfig.build("scenes20", method="ka").source.dataset is None
  assert RunConfig.build("scenes20", method="noise").source.kind == "noise"
  assert RunConfig.build("scenes20", method="teacher").student.mode == "ensemble"
  pool = RunConfig.build("scenes20", overrides=dict(inversion_images=64))
  assert pool.source.kind == "pool"
  assert pool.expanded() == pool  # Expanding twice changes nothing.


def test_presets_and_overrides_by_short_name_or_path():
  voc = RunConfig.build("voc2007")
  assert (voc.data.arch, voc.data.image_size, voc.runtime.batch_size) == ("resnet101", 224, 16)
  quick = RunConfig.build("scenes20", preset="quick")
  assert (quick.data.arch, quick.generator.steps, quick.eval.export) == ("tiny", 5, False)
  # Presets stack in order; paper_weights puts S-Table 1's printed weights back.
  printed = RunConfig.build("scenes20", preset="quick,paper_weights")
  assert printed == RunConfig.build("scenes20", preset=["quick", "paper_weights"])
  assert printed.generator.steps == 5
  assert (printed.generator.alpha, printed.generator.beta, printed.generator.gamma,
          printed.generator.epsilon) == (1.0, 1.0, 5.0, 0.5)
  with pytest.raises(ConfigError, match="unknown preset 'papr'"):
    RunConfig.build("scenes20", preset="quick,papr")
  a = RunConfig.build("scenes20", overrides=config_lib.parse_assignments(
      ["generator.bns.weight=20", "alpha=0", "labels=circle,star", "image_bn=false"]))
  assert a.generator.bns.weight == 20.0 and a.generator.alpha == 0.0
  assert a.data.labels == ("circle", "star") and a.generator.image_bn is False
  assert a == RunConfig.build("scenes20", overrides=dict(
      bns_weight=20, alpha=0.0, labels=["circle", "star"], image_bn=False))


@pytest.mark.parametrize("overrides,text", [
    (dict(bns_weigth=1), "close matches: ['bns_weight'"),
    (dict(batch_size="many"), "is not of type int"),
    (dict(bns_form="cubic"), "--bns_form='cubic' must be one of squared, norm"),
    (dict(groups=0), "--groups=0 must be >= 1"),
    (dict(epsilon=1.0), "--epsilon=1.0 must be strictly between 0 and 1"),
    (dict(student_jitter=32), "--student_jitter=32 must be in 0..31"),
    (dict(distill_temperature=0.0), "--distill_temperature=0.0 must be > 0"),
    (dict(distill_temperature=4.0, distill_loss="logit_l1"),
     "--distill_temperature=4.0 tempers the cross-entropy, but --distill_loss=logit_l1"),
])
def test_bad_values_name_the_option_and_the_fix(overrides, text):
  with pytest.raises(ConfigError, match=None) as e:
    RunConfig.build("scenes20", overrides=overrides)
  assert text in str(e.value)


@pytest.mark.parametrize("method", ["dafl", "teacher"])
def test_the_students_loss_is_refused_where_no_such_student_trains(method):
  with pytest.raises(ConfigError, match="--distill_loss=logit_l1 --distill_temperature=4.0: "
                     f"these set the student's loss .* --method={method} trains no such"):
    RunConfig.build("scenes20", method=method,
                    overrides=dict(distill_temperature=4.0, distill_loss="logit_l1"))
  RunConfig.build("scenes20", method="dafl_2stage", overrides=dict(distill_temperature=4.0))


def test_json_round_trip_and_files_of_other_versions():
  c = RunConfig.build("scenes20", method="dafl", overrides=dict(
      labels=["circle"], seed=4, teacher_paths=["t.keras"], teacher_blocks=["x", "y"],
      workdir="w"))
  assert RunConfig.from_json(c.to_json()) == c
  # A file written before an option was added reads it at its default; a value whose option
  # is gone is ignored.
  values = c.to_dict()
  del values["student"]["adversarial_weight"]
  values["generator"]["gone"] = 1.0
  assert RunConfig.from_json(json.dumps(values)) == c
  values["data"]["pretrain"] = None  # A resume with another start must refuse.
  assert RunConfig.from_json(json.dumps(values)).differences(c) == ["pretrain"]


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
  c = RunConfig.build("scenes20", overrides=dict(branch_out="None", labels="circle,star"))
  assert c.student.branch_out is None and c.data.labels == ("circle", "star")
  with pytest.raises(ConfigError, match="--teacher_blocks names the layers"):
    RunConfig.build("scenes20", overrides=dict(teacher_blocks=["a", "b"]))
