"""Test setup: offline, quiet, deterministic and small.

Tests marked `slow` are deselected by default (pytest reports them as deselected); run them
with `python -m pytest -m slow tests`. CI runs one of them a day besides the default suite
(`python tests/run_pytest.py --one-slow --dry-run` prints today's pick).
"""

import os
import shutil
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The tests' backbones go to a cache of this session's own (its command-line runs inherit it),
# never the user's: a quick run's 10-step backbone is trained once per recipe and seed, and
# a hit gives the weights training gives on this machine. The cache's own tests name theirs
# (tests/test_beyond_paper.py).
_CACHE = tempfile.mkdtemp(prefix="dfka_tf_tests_cache_")
os.environ["DFKA_TF_CACHE"] = _CACHE


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: minutes-long test, deselected by default")
  if not config.option.markexpr:
    config.option.markexpr = "not slow"


def pytest_unconfigure(config):  # pylint: disable=unused-argument
  shutil.rmtree(_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
  # tf.test.TestCase defines a deprecated `test_session` that pytest would report as a skip.
  items[:] = [item for item in items if item.name != "test_session"]
