"""Test setup: offline, quiet, deterministic and small.

Tests marked `slow` are deselected by default (pytest reports them as deselected); run them
with `python -m pytest -m slow tests`. CI runs one of them a day besides the default suite
(`python tests/run_pytest.py --one-slow --dry-run` prints today's pick).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every test trains its own backbone unless it names a cache (tests/test_beyond_paper.py).
os.environ["DFKA_TF_CACHE"] = "none"


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: minutes-long test, deselected by default")
  if not config.option.markexpr:
    config.option.markexpr = "not slow"


def pytest_collection_modifyitems(config, items):
  # tf.test.TestCase defines a deprecated `test_session` that pytest would report as a skip.
  items[:] = [item for item in items if item.name != "test_session"]
