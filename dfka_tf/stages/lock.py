"""One writer per workdir: `<workdir>/.lock` names the process that holds it.

A second process that finds the lock held by a live process stops at once with one line
naming it. A lock whose process is gone (killed, crashed, the machine rebooted) is stale and
is taken over. A process may take its own lock again (one process runs the suites' rows one
after another in shared workdirs). Locks are released when the run ends, and at exit.
"""

import atexit
import json
import os
import socket
import time
from typing import Dict, Optional

from dfka_tf.errors import WorkdirBusyError

LOCK_FILE = ".lock"
_HELD = set()  # Lock files this process holds, released at exit.


def _path(workdir: str) -> str:
  return os.path.join(workdir, LOCK_FILE)


def holder(workdir: str) -> Optional[Dict]:
  """{"pid", "host", "since"} of the lock on `workdir`, or None (no lock, or unreadable)."""
  try:
    with open(_path(workdir)) as f:
      info = json.load(f)
    return info if isinstance(info, dict) and "pid" in info else None
  except (OSError, ValueError):
    return None


def _alive(info: Dict) -> bool:
  """Whether the holder still runs. On another host nothing can be checked: held."""
  if info.get("host") != socket.gethostname():
    return True
  try:
    os.kill(int(info["pid"]), 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's live process.
    return True
  return True


def _ours(info: Dict) -> bool:
  return info.get("host") == socket.gethostname() and int(info["pid"]) == os.getpid()


def check(workdir: str):
  """Raises WorkdirBusyError if another live process holds `workdir`; touches nothing."""
  info = holder(workdir)
  if info is not None and not _ours(info) and _alive(info):
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    raise WorkdirBusyError(
        f"workdir {workdir} is in use by process {info['pid']} on {info.get('host')} (since "
        f"{since}); wait for it to finish, stop it, or use another --workdir. If that process "
        f"is gone, delete {_path(workdir)}.")


def acquire(workdir: str):
  """Takes the lock on `workdir` (created if missing); stale locks are taken over.

  Raises:
    WorkdirBusyError: a live process holds it.
  """
  os.makedirs(workdir, exist_ok=True)
  path = _path(workdir)
  for _ in range(3):
    check(workdir)
    info = holder(workdir)
    if info is not None and _ours(info):
      _HELD.add(path)
      return
    if os.path.exists(path):  # Stale (or unreadable): its process is gone.
      try:
        os.remove(path)
      except FileNotFoundError:
        pass
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:  # Another process took it between the check and here.
      continue
    with os.fdopen(fd, "w") as f:
      json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}, f)
    _HELD.add(path)
    return
  check(workdir)
  raise WorkdirBusyError(f"workdir {workdir}: could not take {path}; another process keeps "
                         "taking it. Use another --workdir.")


def release(workdir: str):
  """Drops this process's lock on `workdir` (nothing if another process holds it)."""
  path = _path(workdir)
  info = holder(workdir)
  if info is not None and _ours(info):
    try:
      os.remove(path)
    except FileNotFoundError:
      pass
  _HELD.discard(path)


@atexit.register
def _release_all():
  for path in list(_HELD):
    release(os.path.dirname(path))
