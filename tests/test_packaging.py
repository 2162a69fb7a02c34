"""pyproject.toml: its ranges admit the pinned requirements, and the wheel installs the
library, its shipped backbone and working console scripts, usable outside the checkout."""

import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _project():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)["project"]


def _pins():
  pins = {}
  with open(os.path.join(ROOT, "requirements.txt")) as f:
    for line in f:
      line = line.split("#")[0].strip()
      if line:
        name, version = line.split("==")
        pins[re.sub(r"[-_.]+", "-", name.lower())] = version
  return pins


def test_dependency_ranges_admit_the_pins():
  pins = _pins()
  ranges = {re.sub(r"[-_.]+", "-", Requirement(d).name.lower()): Requirement(d)
            for d in _project()["dependencies"]}
  assert set(ranges) == set(pins)  # one range per pinned package, nothing unpinned
  for name, requirement in ranges.items():
    assert requirement.specifier.contains(pins[name]), (name, pins[name])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """The wheel built from the checkout, installed (without dependencies: this venv has
  them) into a folder outside it."""
  tmp = tmp_path_factory.mktemp("install")
  # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
  source = tmp / "source"
  source.mkdir()
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(os.path.join(ROOT, name), source / name)
  for name in ("dfka_tf", "experiments"):
    shutil.copytree(os.path.join(ROOT, name), source / name,
                    ignore=shutil.ignore_patterns("__pycache__"))
  target = tmp / "site"
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                  "--no-build-isolation", f"--target={target}", str(source)], check=True,
                 capture_output=True, timeout=300)
  return tmp, target


def test_wheel_holds_library_backbone_and_scripts(installed):
  _, target = installed
  assert (target / "dfka_tf" / "config.py").exists()
  assert list((target / "dfka_tf" / "assets" / "backbones").glob("*.weights.h5"))
  assert not (target / "experiments").exists()  # installed under a namespaced name
  for script in ("dfka-run", "dfka-predict", "dfka-evaluate"):
    assert (target / "bin" / script).exists(), script


@pytest.mark.parametrize("script,text", [("dfka-run", "--teacher"),
                                         ("dfka-predict", "--threshold"),
                                         ("dfka-evaluate", "--eval_data")])
def test_console_scripts_work_outside_the_checkout(installed, script, text):
  cwd, target = installed
  env = dict(os.environ, PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, str(target / "bin" / script), "--helpfull"], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode in (0, 1), proc.stderr[-2000:]  # absl's --helpfull exits 1
  assert text in proc.stdout and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  # The code ran from the installed copy, not from the checkout.
  proc = subprocess.run([sys.executable, "-c", "import dfka_tf; print(dfka_tf.__file__)"],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
  assert proc.stdout.strip().startswith(str(target))


def test_dfka_run_errors_outside_the_checkout(installed, tmp_path):
  cwd, target = installed
  env = dict(os.environ, PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, str(target / "bin" / "dfka-run"),
                         "--labels=unicorn", f"--workdir={tmp_path / 'w'}"], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and "unicorn" in proc.stderr, proc.stderr[-2000:]
