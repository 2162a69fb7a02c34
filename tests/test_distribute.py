"""tf.distribute: every step type on 2 replicas gives the 1-replica update (six in the default
suite, the other four in a slow test), a mirrored run
on 2 logical CPU devices exports a working T_u, and a 2-worker run on localhost writes only
from its chief, stops together on one worker's SIGTERM and resumes."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from dfka_tf import distribute
from dfka_tf.errors import ConfigError

from tests.conftest import DEFAULT_CASES
from tests.conftest import start_distributed_cases
from tests.test_cli import ROOT, run_cli

CASES = ["adversarial", "block1", "block2", "block_last", "finetune_dataset",
         "finetune_pool", "generator", "inversion", "joint", "teacher"]
SLOW_CASES = sorted(set(CASES) - set(DEFAULT_CASES))


@pytest.fixture(scope="module")
def _cases_process(request):
  """tests/distributed_cases.py's process, started with the session (tests/conftest.py) so
  that it runs beside the other tests; started here when the session did not."""
  proc = getattr(request.config, "dfka_cases_process", None) or start_distributed_cases()
  yield proc
  if proc.poll() is None:
    proc.kill()
    proc.communicate()


@pytest.fixture(scope="module")
def equivalence(_cases_process):  # pylint: disable=redefined-outer-name
  """{case: comparison} for DEFAULT_CASES from tests/distributed_cases.py."""
  return _comparisons(_cases_process)


def test_helpers_are_the_identity_on_one_replica():
  x = tf.reshape(tf.range(12.0), [4, 3])
  assert distribute.local_rows(x) is x
  assert distribute.scale_for_replicas(x) is x
  np.testing.assert_array_equal(distribute.batch_mean(x), tf.reduce_mean(x, axis=0))
  np.testing.assert_array_equal(distribute.batch_std(x), tf.math.reduce_std(x, axis=0))
  mean, var = distribute.batch_moments(x, [0])
  ref_mean, ref_var = tf.nn.moments(x, axes=[0])
  np.testing.assert_array_equal(mean, ref_mean)
  np.testing.assert_array_equal(var, ref_var)
  assert distribute.is_chief() and distribute.num_workers() == 1
  assert distribute.any_worker(tf.distribute.get_strategy(), True)
  assert distribute.same_on_every_worker(tf.distribute.get_strategy(), 3.0)


def test_overwrite_leaves_the_other_workers_folders_to_them(tmp_path):
  from dfka_tf.stages import base  # pylint: disable=g-import-not-at-top
  for name in ("worker1/ckpt", "ckpt/block1", "logs", "workers_notes"):
    (tmp_path / name).mkdir(parents=True)
  (tmp_path / "results.json").write_text("{}")
  base._remove_run(str(tmp_path))  # pylint: disable=protected-access
  assert sorted(os.listdir(tmp_path)) == ["worker1"]
  assert (tmp_path / "worker1" / "ckpt").is_dir()


def test_a_mirrored_backbone_has_its_own_cache_key():
  from dfka_tf.config import RunConfig  # pylint: disable=g-import-not-at-top
  from dfka_tf.stages import cache  # pylint: disable=g-import-not-at-top
  config = RunConfig.build("scenes20")
  assert cache.backbone_name(config, 1) == cache.backbone_name(config)
  assert cache.backbone_name(config, 2) != cache.backbone_name(config)


def test_strategy_errors_name_the_fix(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(ConfigError, match="needs TF_CONFIG"):
    distribute.make_strategy("multi_worker")
  monkeypatch.setenv("TF_CONFIG", "{not json")
  with pytest.raises(ConfigError, match="not valid JSON"):
    distribute.make_strategy("multi_worker")
  with pytest.raises(ConfigError, match="is not one of"):
    distribute.make_strategy("tpu")
  assert distribute.is_default(distribute.make_strategy("auto"))  # No GPU here.


def test_batch_that_does_not_split_is_refused_before_the_workdir(tmp_path):
  workdir = tmp_path / "w"
  proc = run_cli(os.path.join(ROOT, "tests", "logical_cpus.py"), "2", "experiments.run",
                 "--preset=quick", "--strategy=mirrored", "--batch_size=7",
                 f"--workdir={workdir}", "--quiet", module=None)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "error: --batch_size=7 does not split over 2 replicas" in proc.stderr
  assert not workdir.exists()


# Slow (about 1.5 min): every step type on two replicas is checked at tiny scale by
# test_two_replicas_give_the_one_replica_update, the export by test_export.py.
@pytest.mark.slow
def test_mirrored_run_on_two_logical_cpus_exports_a_working_target_net(tmp_path):
  from dfka_tf.export import score_export  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "mirrored"
  proc = run_cli(os.path.join(ROOT, "tests", "logical_cpus.py"), "2", "experiments.run",
                 "--preset=quick", "--strategy=mirrored", "--set=eval.export=true",
                 f"--workdir={workdir}", "--quiet", module=None, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["config"]["runtime"]["strategy"] == "mirrored"
  scores = score_export(str(workdir / "target_net"), "scenes20:test", progress=False)
  assert scores["map"] == pytest.approx(results["target_map"], abs=1e-6)


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start_workers(workdir, *extra):
  ports = [_free_port(), _free_port()]
  cluster = {"worker": [f"localhost:{p}" for p in ports]}
  procs = []
  for i in range(2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT,
               TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                  "index": i}}))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "experiments.run", "--preset=quick", "--teacher_steps=120",
         "--strategy=multi_worker", f"--workdir={workdir}", "--quiet", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  return procs


def _finish(procs, timeout=300):
  out = []
  for p in procs:
    try:
      stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
    out.append((p.returncode, stdout, stderr))
  return out


def _done(workdir):
  try:
    return json.loads((workdir / "progress.json").read_text())["done"]
  except (OSError, ValueError, KeyError):
    return []


# Slow (about 2.5 min): the collective step is checked at tiny scale by
# test_two_replicas_give_the_one_replica_update, the workers' folders by
# test_overwrite_leaves_the_other_workers_folders_to_them; the stop on one worker's SIGTERM is
# this test's alone, and CI's daily slow test (.ci/run) runs it in turn.
@pytest.mark.slow
def test_two_workers_write_from_the_chief_stop_together_and_resume(tmp_path):
  workdir = tmp_path / "cluster"
  procs = _start_workers(workdir)
  deadline = time.time() + 300
  while "teacher1" not in _done(workdir) and time.time() < deadline:
    if any(p.poll() is not None for p in procs):
      break
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGTERM)  # One worker's notice stops both at the same step.
  first = _finish(procs)
  for rc, _, stderr in first:
    assert rc == 128 + signal.SIGTERM, stderr[-3000:]
    assert "stopped: teacher2: stopped by SIGTERM at step" in stderr, stderr[-3000:]
  steps = {stderr.split("at step ")[1].split()[0] for _, _, stderr in first}
  assert len(steps) == 1  # The same step on both workers.

  second = _finish(_start_workers(workdir, "--resume", "--set=eval.export=true"))
  for rc, _, stderr in second:
    assert rc == 0, stderr[-3000:]
  assert "results:" in second[0][1] and second[1][1].strip() == ""  # The chief reports.
  chief = set(os.listdir(workdir))
  assert {"results.json", "logs", "target_net", "generated.png", "worker1"} <= chief
  # Worker 1 keeps its own checkpoints and progress, and writes none of the run's outputs.
  other = set(os.listdir(workdir / "worker1"))
  assert {"ckpt", "progress.json"} <= other
  assert not other & {"results.json", "logs", "target_net", "generated.png"}
  assert _done(workdir / "worker1") == _done(workdir)


def _comparisons(proc):
  stdout, stderr = proc.communicate(timeout=600)
  assert proc.returncode == 0, stderr[-3000:]
  rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
  return {row["case"]: row for row in rows}


def _check_update(row):
  assert row["replicas"] == 2
  assert row["keys_match"]
  # The steps moved the variables by far more than the two runs differ: the comparison
  # is of updates, not of variables left alone. (Without the 1/R loss scaling the runs
  # differ by 3e-2, without synchronized batch norm by 0.16.)
  assert row["moved"] > 1e-2, row
  assert row["max_variable_diff"] < 1e-5, row
  assert row["max_measurement_diff"] < 1e-4, row


def test_every_case_of_the_script_is_compared_by_a_test():
  with open(os.path.join(ROOT, "tests", "distributed_cases.py")) as f:
    script = sorted(re.findall(r"^def case_(\w+)\(", f.read(), flags=re.M))
  assert script == CASES
  assert set(DEFAULT_CASES) <= set(CASES) and SLOW_CASES


# Last in the module: the cases' process has had the longest to run beside the other tests.
def test_every_default_step_type_is_compared(equivalence):  # pylint: disable=redefined-outer-name
  assert sorted(equivalence) == sorted(DEFAULT_CASES)


@pytest.mark.parametrize("case", DEFAULT_CASES)
def test_two_replicas_give_the_one_replica_update(equivalence, case):  # pylint: disable=redefined-outer-name
  _check_update(equivalence[case])


@pytest.mark.slow
def test_the_other_step_types_on_two_replicas_give_the_one_replica_update():
  proc = start_distributed_cases(SLOW_CASES)
  try:
    rows = _comparisons(proc)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.communicate()
  assert sorted(rows) == SLOW_CASES
  for case in SLOW_CASES:
    _check_update(rows[case])
