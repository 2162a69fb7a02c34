"""Test setup: offline, quiet, deterministic and small.

Tests marked `slow` are deselected by default (pytest reports them as deselected); run them
with `python -m pytest -m slow tests`. CI runs one of them a day besides the default suite
(`python tests/run_pytest.py --one-slow --dry-run` prints today's pick).
"""

import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The tests' backbones go to a cache of this session's own (its command-line runs inherit it),
# never the user's: a quick run's 10-step backbone is trained once per recipe and seed, and
# a hit gives the weights training gives on this machine. The cache's own tests name theirs
# (tests/test_beyond_paper.py). Under pytest-xdist each worker process has its own.
_CACHE = tempfile.mkdtemp(prefix="dfka_tf_tests_cache_")
os.environ["DFKA_TF_CACHE"] = _CACHE


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: minutes-long test, deselected by default")
  if not config.option.markexpr:
    config.option.markexpr = "not slow"


def pytest_unconfigure(config):
  proc = getattr(config, "dfka_cases_process", None)
  if proc is not None and proc.poll() is None:  # Started, never read (test_distribute off).
    proc.kill()
    proc.communicate()
  shutil.rmtree(_CACHE, ignore_errors=True)


# The step types test_distribute compares in the default suite. The others are its slow
# test's: block 1 and the last block, the fine-tune on a dataset and the adversarial fine-tune
# are the block, fine-tune and generator steps compared here, with another block, source or
# pairing. Each case is about half a CPU-minute of tracing.
DEFAULT_CASES = ("block2", "finetune_pool", "generator", "inversion", "joint", "teacher")


def start_distributed_cases(names=DEFAULT_CASES):
  """tests/distributed_cases.py over `names` in a process of its own (test_distribute reads
  its output)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=root)
  return subprocess.Popen([sys.executable, os.path.join(root, "tests", "distributed_cases.py"),
                           *names],
                          cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def pytest_collection_finish(session):
  # The cases are minutes of tracing with little to compute: started with the session they
  # run beside the whole suite, not only beside test_distribute's own few tests. Under
  # pytest-xdist every worker collects every test but one runs test_distribute, so there its
  # fixture starts them.
  if os.environ.get("PYTEST_XDIST_WORKER"):
    return
  if any("equivalence" in getattr(item, "fixturenames", ()) for item in session.items):
    session.config.dfka_cases_process = start_distributed_cases()


def pytest_collection_modifyitems(config, items):
  # tf.test.TestCase defines a deprecated `test_session` that pytest would report as a skip.
  items[:] = [item for item in items if item.name != "test_session"]
