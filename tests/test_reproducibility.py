"""--seed fixes data order, noise and initialisation: same seed, same results.json."""

import json
import os

import pytest

from dfka_tf import pipeline
from dfka_tf.config import RunConfig

# The suites' --quick settings: every stage runs, teachers included, on scenes20.
NUMBERS = ("teacher_map", "target_map", "teacher_ap", "target_ap", "branch_out", "eta")


def _run(workdir, seed, method="dfka"):
  config = RunConfig.build("scenes20", preset="quick", method=method,
                           overrides={"workdir": str(workdir), "seed": seed})
  results = pipeline.run(config, progress=False)
  with open(os.path.join(workdir, "config.json")) as f:
    assert RunConfig.from_json(f.read()) == config  # The exact config is written.
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["target_map"] == results["target_map"]
  return results


@pytest.fixture(scope="module")
def first(tmp_path_factory):
  return _run(tmp_path_factory.mktemp("seed5a"), 5)


def test_same_seed_gives_identical_results(first, tmp_path):
  again = _run(tmp_path / "seed5b", 5)
  for key in NUMBERS:
    assert again[key] == first[key], key  # Tolerance 0: bit-identical on CPU.


def test_other_seed_gives_other_results(first, tmp_path):
  other = _run(tmp_path / "seed6", 6, method="teacher")  # The teachers alone tell.
  assert other["teacher_map"] != first["teacher_map"]
  assert other["teacher_ap"] != first["teacher_ap"]
