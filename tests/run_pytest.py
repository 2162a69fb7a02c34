"""Runs pytest for Bazel's py_test targets, and picks CI's slow test of the day.

1. The entry point of BUILD's py_test targets. A py_test whose `main` is a pytest-style test
   file runs it as a plain script, which defines the test functions and calls none of them,
   so the target passes whatever the tests would say. BUILD points every py_test at this
   file instead, with its test file in `args`:

     bazel test //:test_losses   # runs `pytest tests/test_losses.py -q` inside the sandbox

   The exit status is pytest's: 0 when every selected test passed, non-zero on a failure, an
   error, or when no test was collected at all (5), so an empty target cannot pass either. A
   file whose tests are all marked `slow` (deselected, as tests/conftest.py does by default)
   passes; `--test_arg=-m --test_arg=slow` runs them.

2. `python tests/run_pytest.py --one-slow [--dry-run] [--date YYYY-MM-DD] [PATH ...]`: CI
   (.ci/run) runs the default suite, which leaves the `slow` tests out, and then this: it
   collects the slow tests (`pytest --collect-only -m slow tests`), picks one by the UTC date
   (days since 1970-01-01 modulo their number, in collection order, so over as many days as
   there are slow tests each of them runs), prints which, and runs it as
   `python -m pytest -q -m slow NODE_ID`; the exit status is that run's. --dry-run lists the
   slow tests and the pick and runs nothing; --date picks for another day.
"""

import argparse
import contextlib
import datetime
import io
import os
import subprocess
import sys

import pytest


class _Collected:
  """pytest plugin: the node ids left after collection and how many were deselected."""

  def __init__(self):
    self.node_ids = []
    self.deselected = 0
    self.rootdir = None

  def pytest_deselected(self, items):
    self.deselected += len(items)

  def pytest_collection_finish(self, session):
    self.node_ids = [item.nodeid for item in session.items]
    self.rootdir = str(session.config.rootpath)


def _python_for_subprocesses(tmpdir):
  """A Python for the processes that the tests start, with the target's dependencies.

  Under Bazel the dependencies (the @pypi wheels, the runfiles tree) reach Python through
  PYTHONPATH, which tests that run `python -m experiments.run ...` replace with the checkout
  (tests/test_cli.py's run_cli and others). This builds a venv in the test's temporary folder
  on the same interpreter whose site-packages has a .pth file naming this process's sys.path,
  so `sys.executable` finds them whatever PYTHONPATH says. Returns its python.
  """
  venv = os.path.join(tmpdir, "run_pytest_venv")
  base = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
  bin_dir = os.path.join(venv, "bin")
  site = os.path.join(venv, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
  os.makedirs(bin_dir, exist_ok=True)
  os.makedirs(site, exist_ok=True)
  python = os.path.join(bin_dir, "python3")
  if not os.path.lexists(python):
    os.symlink(base, python)
  with open(os.path.join(venv, "pyvenv.cfg"), "w") as f:
    # System site-packages: the interpreter's own pip (tests/test_packaging.py).
    f.write("home = %s\ninclude-system-site-packages = true\nversion = %d.%d.%d\n"
            % ((os.path.dirname(base),) + tuple(sys.version_info[:3])))
  here = os.path.dirname(os.path.abspath(__file__))
  paths = [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)]
  with open(os.path.join(site, "bazel_deps.pth"), "w") as f:
    f.write("".join(p + "\n" for p in paths if p != here))
  return python


def main(argv):
  """Runs pytest on argv (test files, then pytest options); returns the exit status."""
  args = list(argv) + ["-q", "-p", "no:cacheprovider"]  # Runfiles are read-only.
  xml = os.environ.get("XML_OUTPUT_FILE")  # Set by `bazel test`: per-test results.
  if xml:
    args.append(f"--junitxml={xml}")
  if os.environ.get("TEST_TMPDIR") and os.environ.get("TEST_SRCDIR"):  # Under `bazel test`.
    sys.executable = _python_for_subprocesses(os.environ["TEST_TMPDIR"])
  collected = _Collected()
  status = int(pytest.main(args, plugins=[collected]))
  if (status == pytest.ExitCode.NO_TESTS_COLLECTED and collected.deselected
      and not collected.node_ids):
    print(f"run_pytest: all {collected.deselected} tests deselected (slow-marked by default); "
          "pass `-m slow` to run them")
    return 0
  return status


def _pick(node_ids, date):
  """(index, day number) of the test to run on `date`: UTC days since 1970-01-01 modulo."""
  day = (date - datetime.date(1970, 1, 1)).days
  return day % len(node_ids), day


def one_slow(paths, date, dry_run):
  """Collects the slow tests under paths and runs the one for `date`; returns the status."""
  collected = _Collected()
  output = io.StringIO()
  with contextlib.redirect_stdout(output):
    status = int(pytest.main(["--collect-only", "-q", "-m", "slow", *paths], plugins=[collected]))
  if status not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
    print(output.getvalue())
    print(f"run_pytest: collecting the slow tests failed (pytest exit status {status})")
    return status
  node_ids = collected.node_ids
  if not node_ids:
    print("run_pytest: no slow test collected; nothing to run")
    return 0
  index, day = _pick(node_ids, date)
  chosen = node_ids[index]
  if dry_run:
    for i, node_id in enumerate(node_ids):
      print(f"{'->' if i == index else '  '} {i}  {node_id}")
  print(f"run_pytest: slow test of {date.isoformat()} (UTC day {day} % {len(node_ids)} = "
        f"{index}): {chosen}")
  if dry_run:
    return 0
  command = [sys.executable, "-m", "pytest", "-q", "-m", "slow", chosen]
  print("run_pytest: " + " ".join(command), flush=True)
  return subprocess.call(command, cwd=collected.rootdir)


def _one_slow_cli(argv):
  parser = argparse.ArgumentParser(prog="run_pytest.py --one-slow",
                                   description="Runs the slow test of the UTC day.")
  parser.add_argument("--one-slow", action="store_true", required=True)
  parser.add_argument("--dry-run", action="store_true",
                      help="list the slow tests and print the pick; run nothing")
  parser.add_argument("--date", type=datetime.date.fromisoformat,
                      default=datetime.datetime.now(datetime.timezone.utc).date(),
                      help="pick for this day (YYYY-MM-DD) instead of today (UTC)")
  parser.add_argument("paths", nargs="*", default=["tests"])
  args = parser.parse_args(argv)
  return one_slow(args.paths, args.date, args.dry_run)


if __name__ == "__main__":
  if "--one-slow" in sys.argv[1:]:
    sys.exit(_one_slow_cli(sys.argv[1:]))
  if len(sys.argv) < 2:
    sys.exit("usage: run_pytest.py TEST_FILE [pytest options]\n"
             "       run_pytest.py --one-slow [--dry-run] [--date YYYY-MM-DD] [PATH ...]")
  sys.exit(main(sys.argv[1:]))
