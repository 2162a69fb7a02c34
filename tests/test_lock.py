"""One writer per workdir (stages/lock.py): a busy workdir is refused, a stale lock taken
over, and a finished run leaves no lock behind."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from dfka_tf.config import RunConfig
from dfka_tf.errors import WorkdirBusyError
from dfka_tf.stages import lock
from dfka_tf.stages.base import prepare_workdir
from tests.test_cli import TINY, _save, assert_user_error, run_cli


@pytest.fixture
def other_process():
  """A live process that is not this one, to hold locks."""
  proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  yield proc
  proc.kill()
  proc.wait()


def _hold(workdir, pid):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, lock.LOCK_FILE), "w") as f:
    json.dump({"pid": pid, "host": socket.gethostname(), "since": time.time()}, f)


def test_busy_workdir_refused_before_anything_is_written(tmp_path, other_process):
  workdir = str(tmp_path / "w")
  _hold(workdir, other_process.pid)
  config = RunConfig.build("scenes20", overrides={"workdir": workdir})
  for overwrite in (False, True):
    with pytest.raises(WorkdirBusyError, match=f"in use by process {other_process.pid}"):
      prepare_workdir(config, overwrite=overwrite)
  assert os.listdir(workdir) == [lock.LOCK_FILE]  # --overwrite deleted nothing either
  # Once its process is gone the lock is stale and is taken over.
  other_process.kill()
  other_process.wait()
  prepare_workdir(config)
  assert lock.holder(workdir)["pid"] == os.getpid()
  prepare_workdir(config, resume=True)  # A process may take its own lock again.
  lock.release(workdir)
  assert lock.holder(workdir) is None


def test_second_process_on_a_busy_workdir_stops_at_once(tmp_path, other_process):
  teacher = _save(tmp_path / "a.keras", "tiny", ["cat", "dog"])
  workdir = tmp_path / "w"
  _hold(str(workdir), other_process.pid)
  proc = run_cli(f"--teacher={teacher}", f"--workdir={workdir}", "--resume", *TINY)
  assert_user_error(proc, f"in use by process {other_process.pid}", "another --workdir")
  assert sorted(os.listdir(workdir)) == [lock.LOCK_FILE]
  other_process.kill()
  other_process.wait()
  proc = run_cli(f"--teacher={teacher}", f"--workdir={workdir}", "--noevaluate", *TINY)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert lock.holder(str(workdir)) is None  # released when the run ended


def test_workdir_of_another_config_is_refused_and_kept(tmp_path):
  # The library's side of test_cli's slow test_workdir_with_other_config_is_refused_and_kept.
  from dfka_tf.errors import ConfigError  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "w")
  config = RunConfig.build("scenes20", overrides={"workdir": workdir})
  prepare_workdir(config)
  lock.release(workdir)
  marker = os.path.join(workdir, "results.json")
  with open(marker, "w") as f:
    f.write("{}")
  before = sorted(os.listdir(workdir)), open(os.path.join(workdir, "config.json")).read()
  with pytest.raises(ConfigError, match=r"different config \(.*seed.*\).*--overwrite"):
    prepare_workdir(config.replace(seed=5))
  with pytest.raises(ConfigError, match="already holds this run; pass --resume"):
    prepare_workdir(config)
  after = sorted(os.listdir(workdir)), open(os.path.join(workdir, "config.json")).read()
  assert after == before  # Nothing written, nothing removed.
  prepare_workdir(config, resume=True)  # The same config goes on.
  lock.release(workdir)
