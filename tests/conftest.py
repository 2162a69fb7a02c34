"""Test setup: offline, quiet, deterministic and small."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(config, items):
  # tf.test.TestCase defines a deprecated `test_session` that pytest would report as a skip.
  items[:] = [item for item in items if item.name != "test_session"]
