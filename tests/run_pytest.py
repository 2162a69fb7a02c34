"""Entry point of the Bazel py_test targets: runs pytest on the test files given as arguments.

A py_test whose `main` is a pytest-style test file runs it as a plain script, which defines
the test functions and calls none of them, so the target passes whatever the tests would
say. BUILD points every py_test at this file instead, with its test file in `args`:

  bazel test //:test_losses   # runs `pytest tests/test_losses.py -q` inside the sandbox

The exit status is pytest's: 0 when every selected test passed, non-zero on a failure, an
error, or when no test was collected at all (5), so an empty target cannot pass either.
"""

import os
import sys

import pytest


def main(argv):
  args = list(argv) + ["-q", "-p", "no:cacheprovider"]  # Runfiles are read-only.
  xml = os.environ.get("XML_OUTPUT_FILE")  # Set by `bazel test`: per-test results.
  if xml:
    args.append(f"--junitxml={xml}")
  return int(pytest.main(args))


if __name__ == "__main__":
  if len(sys.argv) < 2:
    sys.exit("usage: run_pytest.py TEST_FILE [pytest options]")
  sys.exit(main(sys.argv[1:]))
