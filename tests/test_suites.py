"""The experiment suites (experiments/table*.py, fig*.py) in --quick mode, in-process.

Every suite writes its Markdown, CSV and plot into a temporary folder. All tests share one
--workdir_root, so the teachers (one set per number of teachers) and each generator are
trained once for the whole file, and rows that two suites share (Table 4's {1, 1} is
Table 1's DFKA row) run once. To stay within a few minutes on 2 CPU cores the default tests
run a subset of each suite's rows (--rows); `test_every_row_of_every_suite` (marked slow)
runs every row of every suite.
"""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from dfka_tf import analysis
from dfka_tf import config as config_lib
from dfka_tf.config import RunConfig
from dfka_tf.errors import ConfigError
from experiments import (collapse, fig4, fig5, from_scratch, suite_cache, suites_common, sweep,
                         sweep_forge, sweep_student, table1, table2, table4, table_s3, table_s5,
                         transfer_gap)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST10 = ["circle", "square", "triangle", "star", "plus", "ring", "diamond", "hexagon",
           "heart", "crescent"]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("suite_runs"))


def _csv(path, key):
  with open(path) as f:
    return [r[key] for r in csv.DictReader(f)]


def _assert_outputs(out, name, key, expected, plot=None):
  assert _csv(os.path.join(out, name + ".csv"), key) == expected
  png = os.path.join(out, (plot or name) + ".png")
  with open(png, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n", png
  import matplotlib.image  # pylint: disable=g-import-not-at-top
  assert matplotlib.image.imread(png)[..., :3].std() > 0, "the plot is blank"
  with open(os.path.join(out, name + ".md")) as f:
    text = f.read()
  assert "--quick smoke run" in text
  assert text.startswith("# ") and "| --- |" in text
  return text


@pytest.fixture(scope="module")
def table1_dfka(runs_root, tmp_path_factory):
  """Table 1's teacher and DFKA rows, cached in runs_root for the tests that reuse them."""
  out = tmp_path_factory.mktemp("table1_first")
  return table1.run_suite(rows=["teacher", "dfka"], out=str(out), workdir_root=runs_root,
                          quick=True, progress=False)


def _quick(tmp_path, runs_root):
  return dict(out=str(tmp_path / "out"), workdir_root=runs_root, quick=True, progress=False)


def test_histogram_by_hand():
  probs = np.array([[0.9, 0.1, 0.6], [0.7, 0.2, 0.1], [0.2, 0.3, 0.4], [0.8, 0.9, 0.2]])
  h = analysis.histogram_of(probs, ["a", "b", "c"])
  assert h["counts"] == [3, 1, 1]
  assert h["fraction"] == [0.75, 0.25, 0.25]
  assert h["labels_per_image"] == pytest.approx(5 / 4)
  assert h["empty_fraction"] == pytest.approx(1 / 4)
  p = np.array([3, 1, 1]) / 5
  assert h["evenness"] == pytest.approx(-(p * np.log(p)).sum() / np.log(3))
  assert analysis.histogram_of(np.zeros((2, 3)), ["a", "b", "c"])["evenness"] == 0.0
  even = analysis.histogram_of(np.eye(3), ["a", "b", "c"])
  assert even["evenness"] == pytest.approx(1.0)


def test_set_overrides_and_row_selection():
  from dfka_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  assert config_lib.parse_assignments(["block_steps=300", "generator.dis_sign=printed",
                                       "gamma=0.5"]) == {
      "student.block_steps": "300", "generator.dis_sign": "printed", "generator.gamma": "0.5"}
  rows = table1.table_rows(1.0)
  assert [r.name for r in rows] == ["teacher", "ka", "similar", "diff", "noise", "dafl",
                                    "dfka", "dfka_paper", "dfka+bns"]
  assert [r.name for r in table1.table_rows(0.0)][-1] == "dfka_paper"
  paper = rows[-2].overrides  # S-Table 1 as printed, whatever the preset's weights are.
  assert (paper["alpha"], paper["beta"], paper["gamma"], paper["epsilon"]) == (1.0, 1.0, 5.0, 0.5)
  assert [r.name for r in table1.table_rows(0.0, 1.0)][-1] == "dfka+lh"
  # An option added later stays out of the cache keys while it is off, so finished rows
  # keep their keys; turned on, it makes a new key.
  base = suites_common.make_config({"preset": "quick"})
  keys = lambda c: suite_cache.key(c, *suite_cache.GENERATOR_SECTIONS)
  assert keys(base.replace(lh_weight=0.0)) == keys(base)
  assert keys(base.replace(lh_weight=1.0)) != keys(base)
  assert keys(base.replace(block_steps=7)) == keys(base)  # Step II is not Step I's.
  assert keys(base.replace(gamma=1.0)) != keys(base)
  assert [r.name for r in suites_common.select(rows, ["dfka", "teacher"])] == [
      "teacher", "dfka"]
  with pytest.raises(Exception, match="unknown row"):
    suites_common.select(rows, ["nope"])


def test_table1(tmp_path, runs_root, table1_dfka):
  out = table1.run_suite(rows=["teacher", "dfka", "dfka+lh"], lh_weight=1.0,
                         **_quick(tmp_path, runs_root))
  text = _assert_outputs(str(tmp_path / "out"), "table1", "row",
                         ["teacher", "dfka", "dfka+lh"])
  assert "73.6" in text and "86.0" in text  # The paper's numbers are in the table.
  runs = out["runs"]
  assert runs["teacher"][0]["labels"] == FIRST10
  assert len(runs["teacher"][0]["target_ap"]) == 10
  # Each row loads the one shared set of teachers: they score the same on every row.
  assert len({r[0]["teacher_map"] for r in runs.values()}) == 1
  folders = [d for d in os.listdir(os.path.join(runs_root, "teachers"))
             if not d.endswith(".lock")]
  assert len(folders) == 1 and folders[0].startswith("m1-seed0-")
  assert _csv(str(tmp_path / "out" / "table1_seeds.csv"), "seed") == ["0", "0", "0"]
  assert runs["dfka+lh"][0]["config"]["generator"]["lh"]["weight"] == 1.0
  # The TargetNet alone (no teacher block) is scored too, where there is a TargetNet.
  assert 0.0 <= runs["dfka"][0]["targetnet_map"] <= 1.0
  assert "targetnet_map" not in runs["teacher"][0]
  assert "| TargetNet alone |" in text


def test_the_targetnet_alone_is_the_one_step_two_left(runs_root, table1_dfka):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
  from dfka_tf.stages import student  # pylint: disable=g-import-not-at-top
  workdir = table1_dfka["runs"]["dfka"][0]["workdir"]
  config = RunConfig.from_json(
      open(os.path.join(workdir, "config.json")).read())
  run, inputs = pipeline.start(config, progress=False, resume=True)
  model = student.step2_target_net(run, inputs.task, 4)
  path = tf.train.latest_checkpoint(os.path.join(workdir, "ckpt", "block4"))
  saved = tf.train.load_checkpoint(path)
  names = [n for n, _ in tf.train.list_variables(path)
           if n.startswith("target/") and "OPTIMIZER" not in n]
  # Every weight the last block's checkpoint holds is in the model (compared by their sums),
  # and they are not the ones it starts from.
  def sums(variables):
    return [float(np.abs(v.numpy()).sum()) for v in variables]

  def holds(model_sums, value):
    return any(abs(m - value) <= 1e-6 * max(1.0, abs(value)) for m in model_sums)

  stored = [float(np.abs(saved.get_tensor(n)).sum()) for n in names]
  mine = sums(model.variables)
  start = sums(student.fresh_or_pretrained(run, len(inputs.task.labels), "t").variables)
  assert stored and all(holds(mine, s) for s in stored)
  assert not all(holds(start, s) for s in stored)


def test_table4_reuses_shared_rows(tmp_path, runs_root, table1_dfka):
  # With one teacher on the first 10 labels, {1, 1} is exactly Table 1's DFKA row.
  out = table4.run_suite(rows=["in1", "in1+in2"], teachers=1, labels=FIRST10,
                         **_quick(tmp_path, runs_root))
  text = _assert_outputs(str(tmp_path / "out"), "table4", "row", ["in1", "in1+in2"])
  assert "| {1, 0} |" in text and "| {1, 1} |" in text
  assert out["runs"]["in1+in2"][0]["reused"]
  # Rows differing only in Step II share one generator.
  assert (out["runs"]["in1"][0]["stage_times"]["generator"]
          == out["runs"]["in1+in2"][0]["stage_times"]["generator"])


def test_table_s3(tmp_path, runs_root):
  out = table_s3.run_suite(rows=["K=2"], teachers=1, labels=FIRST10,
                           **_quick(tmp_path, runs_root))
  _assert_outputs(str(tmp_path / "out"), "table_s3", "row", ["K=2"])
  assert out["runs"]["K=2"][0]["config"]["generator"]["groups"] == 2


def test_fig5(tmp_path, runs_root):
  out = fig5.run_suite(rows=["sparse"], num_images=64, **_quick(tmp_path, runs_root))
  _assert_outputs(str(tmp_path / "out"), "fig5", "setting", ["sparse", "real"])
  h = out["histograms"]["sparse"][0]
  assert h["num_images"] == 64 and len(h["counts"]) == 20
  p = np.asarray(h["counts"], np.float64)
  p = p[p > 0] / p.sum()
  assert h["evenness"] == pytest.approx(-(p * np.log(p)).sum() / np.log(20))


def test_fig4(tmp_path, runs_root):
  out = fig4.run_suite(rows=["dfka"], bns_weight=0.0, num_images=32,
                       **_quick(tmp_path, runs_root))
  _assert_outputs(str(tmp_path / "out"), "fig4", "panel", ["real", "noise", "dfka"])
  stats = {r["panel"]: r for r in out["rows"]}
  assert stats["real"]["diversity"] > 0.05  # Real images differ from each other.


def test_table2(tmp_path, runs_root):
  out = table2.run_suite(rows=["teacher"], **_quick(tmp_path, runs_root))
  _assert_outputs(str(tmp_path / "out"), "table2", "row", ["teacher"])
  assert len(out["runs"]["teacher"][0]["labels"]) == 20
  # The row's record stands in for it on a fresh machine: nothing under the new root runs.
  fresh = tmp_path / "fresh_root"
  again = table2.run_suite(rows=["teacher"], **_quick(tmp_path, str(fresh)))
  assert again["runs"]["teacher"][0]["recorded"] and not fresh.exists()
  assert (again["runs"]["teacher"][0]["target_map"]
          == out["runs"]["teacher"][0]["target_map"])
  text = _assert_outputs(str(tmp_path / "out"), "table2", "row", ["teacher"])
  assert "1 of the 1 row runs were taken from their records in table2_rows/" in text


def test_collapse_reads_step_one_as_it_trained(tmp_path, runs_root):
  out = collapse.run_suite(summary_every=2, **_quick(tmp_path, runs_root))
  rows = out["rows"]
  # Quick Step I takes 5 steps: sampled at 2 and 4, and at the last step.
  assert [r["step"] for r in rows] == [2, 4, 5]
  last = rows[-1]
  assert 0.0 <= last["sampled_label_coverage"] <= 1.0 and last["sampled_pull_a"] > 0
  assert last["train_oh"] is not None  # Step 5 is also a step the training scalars log.
  assert _csv(str(tmp_path / "out" / "collapse.csv"), "step") == ["2", "4", "5"]


def test_sweeps_score_on_validation_only():
  assert suites_common.validation_overrides({"block_steps": 3}) == {
      "block_steps": 3, "eval_split": "validation"}
  for key in ("eval_split", "eval.split"):
    with pytest.raises(Exception, match="validation split"):
      suites_common.validation_overrides({key: "test"})


# Slow (about 50 s): the rows run through the table driver that test_table1/test_table2 run
# at tiny scale; the validation guard is test_sweeps_score_on_validation_only.
@pytest.mark.slow
def test_the_sweep_scores_on_validation_and_ranks_by_the_targetnet_alone(tmp_path, runs_root):
  kwargs = _quick(tmp_path, runs_root)
  out = sweep.run_suite(rows=["paper", "a0.1_b5_g5"], overrides={"summary_every": 2}, **kwargs)
  summaries = {s["row"]: s for s in out["summaries"]}
  assert set(summaries) == {"paper", "a0.1_b5_g5"}
  assert (summaries["a0.1_b5_g5"]["alpha"], summaries["a0.1_b5_g5"]["beta"]) == (0.1, 5.0)
  for s in summaries.values():
    assert 0.0 <= s["label_coverage"] <= 1.0  # Read back from Step I's log.
  for per_seed in out["runs"].values():
    assert per_seed[0]["eval_split"] == "validation"
  best = max(summaries.values(), key=lambda s: (s["targetnet_map_mean"], s["map_mean"]))
  assert out["best"] == best["row"]
  text = open(tmp_path / "out" / "sweep.md").read()
  assert f"Best by the TargetNet alone (T_u breaking ties): **{out['best']}**" in text
  with pytest.raises(Exception, match="validation split"):
    sweep.run_suite(rows=["paper"], overrides={"eval_split": "test"}, **kwargs)
  # The transfer gap scores the sweep's finished point against the teachers, training
  # nothing again: its TargetNet-alone figure is the sweep's.
  gap = transfer_gap.run_suite(rows=["a0.1_b5_g5"], overrides={"summary_every": 2}, **kwargs)
  (line,) = gap["lines"]
  assert line["targetnet_map"] == pytest.approx(summaries["a0.1_b5_g5"]["targetnet_map_mean"])
  assert 0.0 <= line["real_agreement"] <= 100.0
  # A smoke G may be judged to hold no label at all; then no label is counted (NaN).
  if line["generated_labels"]:
    assert 0.0 <= line["generated_agreement"] <= 100.0
  else:
    assert np.isnan(line["generated_agreement"])
  assert 0.0 < line["real_positives"] < 1.0  # The teachers call some labels present.
  assert "agreement on G's images" in open(tmp_path / "out" / "transfer_gap.md").read()


def test_the_student_sweep_ranks_t_u_then_the_targetnet_alone_within_a_point():
  def point(name, mean, std, alone):
    return {"row": name, "map_mean": mean, "map_std": std, "targetnet_map_mean": alone}
  points = [point("a", 95.0, 0.2, 20.0), point("b", 95.5, 1.0, 40.0),
            point("c", 94.9, 0.1, 30.0), point("d", 90.0, 0.0, 80.0),
            point("e", 60.0, 40.0, 10.0)]
  # Scores (mean - std): a 94.8, b 94.5, c 94.8, d 90.0, e 20.0. a, b and c are within a
  # point of the best, so the TargetNet alone orders them; d and e follow by score.
  assert [s["row"] for s in sweep_student.ranked(points)] == ["b", "c", "a", "d", "e"]
  # Within a point on both, the point changing fewer settings wins over a higher score.
  simple = dict(point("simple", 95.0, 0.3, 40.0), target_lr=0.03)
  busy = dict(point("busy", 95.1, 0.2, 40.0), target_lr=0.03, finetune_trainable="all",
              branch_bn="frozen")
  assert [s["row"] for s in sweep_student.ranked([busy, simple])] == ["simple", "busy"]


# Slow (about 35 s): the table driver as test_the_sweep_scores_on_validation_and_ranks_by_the_
# targetnet_alone; its ranking rule is test_the_student_sweep_ranks_t_u_then_the_targetnet_alone_
# within_a_point, the validation guard test_sweeps_score_on_validation_only.
@pytest.mark.slow
def test_the_student_sweep_scores_steps_two_three_on_validation(tmp_path, runs_root):
  kwargs = _quick(tmp_path, runs_root)
  out = sweep_student.run_suite(rows=["lr0.3", "lr0.03_all_branchfrozen"], **kwargs)
  summaries = {s["row"]: s for s in out["summaries"]}
  assert summaries["lr0.03_all_branchfrozen"]["branch_bn"] == "frozen"
  for per_seed in out["runs"].values():
    assert per_seed[0]["eval_split"] == "validation"
    assert 0.0 <= per_seed[0]["regrouped_map"] <= 1.0
  assert out["best"] == sweep_student.ranked(out["summaries"])[0]["row"]
  text = open(tmp_path / "out" / "sweep_student.md").read()
  assert "| T_u before Step III | T_u after Step III |" in text
  with pytest.raises(Exception, match="validation split"):
    sweep_student.run_suite(rows=["lr0.3"], overrides={"eval_split": "test"}, **kwargs)


def test_records_compare_only_the_options_a_method_reads():
  # G's loss weights reach T_u only through a Step I whose images Steps II-III train on.
  for method, extra in (("ka", {}), ("noise", {}), ("teacher", {}),
                        ("dfka", {"inversion_images": 64})):
    a = RunConfig.build("scenes20", method=method, overrides=extra)
    b = a.replace(alpha=0.3, beta=2.0, generator_steps=7, dis_sign="printed")
    assert set(a.differences(b)) == {"alpha", "beta", "generator_steps", "dis_sign"}
    assert suite_cache.read_differences(a, b) == []
  # DAFL's joint stage takes L_a's and L_ie's weights from student.joint, not G's ...
  dafl = RunConfig.build("scenes20", method="dafl")
  read = suite_cache.read_differences
  assert read(dafl, dafl.replace(alpha=0.3, beta=2.0)) == []
  assert read(dafl, dafl.replace(joint_beta=2.0)) == ["joint_beta"]
  assert read(dafl, dafl.replace(epsilon=0.3)) == ["epsilon"]
  # A pool row builds G before the TargetNet: G's layers still shift its initial weights.
  pool = RunConfig.build("scenes20", overrides={"inversion_images": 64})
  assert read(pool, pool.replace(groups=4)) == ["groups"]
  # ... and DFKA on G reads them all.
  dfka = RunConfig.build("scenes20")
  assert read(dfka, dfka.replace(alpha=0.3)) == ["alpha"]
  assert read(dfka, dfka.replace(gamma=0.0)) == ["gamma"]
  assert read(dfka, RunConfig.build("scenes20", method="ka"))[0] == "method"
  # Forge's G reads its size and head from generator.*, and none of G's loss weights.
  forge = RunConfig.build("scenes20", overrides={"forge": True, "student": "distill"})
  assert read(forge, forge.replace(image_bn=False)) == ["image_bn"]
  assert read(forge, forge.replace(generator_width=128)) == ["generator_width"]
  assert read(forge, forge.replace(alpha=0.3)) == []


def test_keys_ignore_options_at_their_default_and_resumable_ones():
  c = RunConfig.build("scenes20", overrides={"workdir": "a"})
  key = suite_cache.key
  assert key(c, "generator") == key(c.replace(lh_weight=0.0, workdir="b", jit=True), "generator")
  assert key(c, "generator") != key(c.replace(lh_weight=1.0), "generator")
  assert key(c, "generator") != key(c, "student")


def test_a_record_stands_in_for_its_row_only_while_the_config_matches(tmp_path):
  row = suites_common.Row("dfka", {"method": "dfka"})
  config = suites_common.row_config(row, setting={"num_teachers": 2}, quick=True, seed=1,
                                    overrides={})
  records = suite_cache.Records(str(tmp_path / "rows"))
  assert records.find("dfka", config) is None
  results = {"config": config.to_dict(), "method": "dfka", "target_map": 0.5, "reused": True}
  records.store("dfka", results)
  assert sorted(os.listdir(tmp_path / "rows")) == ["dfka-seed1.json"]
  found = records.find("dfka", config)
  assert found["target_map"] == 0.5 and found["recorded"]
  # The workdir does not change results; the seed and result-changing fields do.
  assert records.find("dfka", config.replace(workdir=str(tmp_path / "elsewhere")))
  assert records.find("dfka", config.replace(seed=2)) is None
  longer = suites_common.row_config(row, setting={"num_teachers": 2}, quick=True, seed=1,
                                    overrides={"block_steps": 7})
  assert records.find("dfka", longer) is None
  records.store("dfka", dict(results, target_map=None))  # Stopped before evaluation.
  assert records.find("dfka", config) is None


# Slow (about 1 min): the suites' machinery (rows, records, tables) is the default suite's in
# test_table1, test_table2 and test_table4; CI's daily slow test (.ci/run) runs it in turn.
@pytest.mark.slow
def test_table_s5(tmp_path, runs_root):
  out = table_s5.run_suite(rows=["teacher"], curves=["dfka"], **_quick(tmp_path, runs_root))
  text = _assert_outputs(str(tmp_path / "out"), "table_s5", "row", ["teacher", "dfka"])
  assert "Per block" in text
  assert out["runs"]["dfka"][0]["labels"] == ["circle", "arrow"]
  blocks = out["blocks"]
  assert [b["block"] for b in blocks] == [1, 2, 3, 4]
  assert _csv(str(tmp_path / "out" / "table_s5_blocks.csv"), "row") == [
      f"dfka@block{b}" for b in range(1, 5)]
  # Branching deeper keeps fewer teacher blocks; at b = B, T_u is the TargetNet alone.
  params = [b["target_params"] for b in blocks]
  assert params == sorted(params, reverse=True)
  assert all(np.isfinite(b["eta_teacher1_mean"]) for b in blocks)


def test_cli_reuses_rows(tmp_path, runs_root, table1_dfka):
  # The absl entry point end to end; the row is Table 1's DFKA row (cached), so this is cheap.
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.table4", "--quick", "--quiet", "--rows=in1+in2",
       "--teachers=1", f"--labels={','.join(FIRST10)}", f"--out={tmp_path / 'cli'}",
       f"--workdir_root={runs_root}"], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _csv(str(tmp_path / "cli" / "table4.csv"), "row") == ["in1+in2"]


@pytest.mark.slow
def test_every_row_of_every_suite(tmp_path):
  """Every row of every suite, --quick (about 15 minutes on 2 CPU cores)."""
  kw = dict(workdir_root=str(tmp_path / "runs"), quick=True, progress=False)
  out = str(tmp_path / "out")
  table1.run_suite(out=out, **kw)
  assert _csv(os.path.join(out, "table1.csv"), "row") == [
      "teacher", "ka", "similar", "diff", "noise", "dafl", "dfka", "dfka_paper", "dfka+bns",
      "pool"]
  table2.run_suite(out=out, **kw)
  assert _csv(os.path.join(out, "table2.csv"), "row") == [
      "teacher", "ka", "noise", "dafl", "dfka", "dfka_paper", "dfka+bns", "pool"]
  table4.run_suite(out=out, **kw)
  assert _csv(os.path.join(out, "table4.csv"), "row") == ["in1", "in2", "in1+in2"]
  table_s3.run_suite(out=out, **kw)
  assert _csv(os.path.join(out, "table_s3.csv"), "row") == ["K=1", "K=2", "K=4"]
  table_s5.run_suite(out=out, **kw)
  assert _csv(os.path.join(out, "table_s5.csv"), "row") == [
      "teacher", "noise", "ka", "dfka_k1", "dfka"]
  assert len(_csv(os.path.join(out, "table_s5_blocks.csv"), "row")) == 12
  fig4.run_suite(out=out, **kw)
  assert _csv(os.path.join(out, "fig4.csv"), "panel") == [
      "real", "noise", "dafl", "dfka", "dfka+bns"]
  fig5.run_suite(out=out, **kw)
  assert _csv(os.path.join(out, "fig5.csv"), "setting") == ["gamma0", "sparse", "printed",
                                                            "real"]
  from_scratch.run_suite(out=out, **kw)
  assert _csv(os.path.join(out, "from_scratch.csv"), "row") == [
      "teacher", "ka", "noise", "dafl", "dfka", "pool", "pool_distill", "ka_distill",
      "noise_distill", "dfka_forge", "dfka_forge_hint", "dfka_forge_hint_best",
      "dfka_forge_hint_bns1", "forge_nomix", "forge_adv1", "forge", "forge_bns1"]
  sweep_forge.run_suite(out=out, **kw)
  assert _csv(os.path.join(out, "sweep_forge.csv"), "row") == [
      r.name for r in sweep_forge.points()]
  for name in ("table1", "table2", "table4", "table_s3", "table_s5", "fig4", "fig5",
               "from_scratch", "sweep_forge", "sweep_forge_curves"):
    assert os.path.exists(os.path.join(out, name + ".png"))


def test_the_forge_sweep_scores_on_validation_and_draws_its_curves(tmp_path, runs_root):
  out = sweep_forge.run_suite(rows=["full"], out=str(tmp_path / "out"),
                              workdir_root=runs_root, quick=True, progress=False)
  full = out["runs"]["full"][0]
  assert full["eval_split"] == "validation" and full["forge"]["rounds"] > 0
  assert [p["step"] for p in full["curves"]["distill"]] == [5, 10, 15, 20, 25]  # 4 x 5 + 5.
  assert full["targetnet_map"] == full["target_map"]  # One whole network, end to end.
  assert os.path.exists(tmp_path / "out" / "sweep_forge_curves.png")
  assert "Forge's own figures" in open(tmp_path / "out" / "sweep_forge.md").read()
  with pytest.raises(Exception, match="validation split"):
    sweep_forge.run_suite(rows=["full"], out=str(tmp_path / "out"), workdir_root=runs_root,
                          quick=True, progress=False, overrides={"eval_split": "test"})


def test_from_scratch_rows_share_no_pretrained_start():
  config = suites_common.row_config(
      suites_common.Row("ka", {"method": "ka"}), setting=dict(num_teachers=2, labels=None),
      quick=False, seed=0, overrides=from_scratch.suite_overrides(False))
  assert config.data.pretrain is None and config.source.kind == "dataset"
  assert config.student.block_steps == config_lib.preset_values("from_scratch")["block_steps"]
  quick = suites_common.row_config(
      suites_common.Row("dfka", {"method": "dfka"}), setting={}, quick=True, seed=0,
      overrides=from_scratch.suite_overrides(True))
  assert quick.data.pretrain is None and quick.data.arch == "tiny"
  # The shared stages the row reuses start fresh too: its teachers, and Step I's G beside them.
  stages = suite_cache.Stages("unused")
  teachers = suite_cache.restricted(config, suite_cache.TEACHER_SECTIONS, method="teacher",
                                    workdir="unused")
  dfka = suites_common.row_config(
      suites_common.Row("dfka", {"method": "dfka"}), setting=dict(num_teachers=2, labels=None),
      quick=False, seed=0, overrides=from_scratch.suite_overrides(False))
  assert teachers.data.pretrain is None
  assert stages._teacher_stages(teachers) == ["teacher1", "teacher2"]  # pylint: disable=protected-access
  assert stages.generator_config(dfka).data.pretrain is None


def test_a_cached_shared_workdir_of_other_options_is_refused(tmp_path):
  row = suites_common.row_config(
      suites_common.Row("ka", {"method": "ka"}), setting=dict(num_teachers=2, labels=None),
      quick=False, seed=0, overrides=from_scratch.suite_overrides(False))
  folder = str(tmp_path / "teachers")
  fresh = suite_cache.restricted(row, suite_cache.TEACHER_SECTIONS, method="teacher",
                                 workdir=folder)
  os.makedirs(folder)
  with open(os.path.join(folder, "config.json"), "w") as f:
    f.write(fresh.replace(pretrain="scenes20_similar").to_json())  # Teachers of another start.
  with pytest.raises(ConfigError, match="other pretrain than this row asks for; delete"):
    suite_cache.check_cached(folder, fresh, suite_cache.TEACHER_SECTIONS)
  with open(os.path.join(folder, "config.json"), "w") as f:
    f.write(fresh.to_json())
  suite_cache.check_cached(folder, fresh, suite_cache.TEACHER_SECTIONS)  # Its own: taken.


def test_from_scratch_takes_table_one_setting_with_its_own_records(tmp_path):
  config = suites_common.row_config(
      suites_common.Row("ka", {"method": "ka"}), setting=from_scratch.setting_of("table1"),
      quick=False, seed=0, overrides=from_scratch.suite_overrides(False))
  assert config.data.num_teachers == 1 and config.data.pretrain is None
  assert list(config.data.labels) == suites_common.scenes_labels(10)
  assert from_scratch.setting_of("table2") == dict(num_teachers=2, labels=None)
  with pytest.raises(ValueError, match="unknown setting 'table3'"):
    from_scratch.run_suite(out=str(tmp_path), workdir_root=str(tmp_path), setting="table3")
  assert not os.listdir(tmp_path)  # Refused before anything is written.
  # The CLI's --out follows --setting, so the two tables never share records.
  assert from_scratch.default_out("table1") == os.path.join("results", "from_scratch_table1")
  assert from_scratch.default_out("table2") == os.path.join("results", "from_scratch")


def test_forge_bns1_is_the_best_preset_and_the_hint_row_feeds_steps_two_three_forges_images():
  def config(row, preset=None):
    overrides = from_scratch.suite_overrides(False, {"preset": preset} if preset else None)
    return suites_common.row_config(row, setting=dict(num_teachers=2, labels=None),
                                    quick=False, seed=0, overrides=overrides)
  rows = {r.name: r for r in from_scratch.forge_rows()}
  best = config(suites_common.Row("best", {}), preset="best")
  assert config(rows["forge_bns1"]).differences(best) == []
  # forge is the same without BN matching, forge_adv1 that with the adversarial term at 1.
  forge = config(rows["forge"])
  assert forge.differences(best) == ["forge_bns"] and forge.source.forge.bns == 0.0
  assert config(rows["forge_adv1"]).differences(forge) == ["forge_adv"]
  hint_best = config(rows["dfka_forge_hint_best"])
  assert hint_best.source.forge == forge.source.forge
  assert hint_best.student.feature_weight == 10.0 and hint_best.student.form != "distill"
  hint_bns1 = config(rows["dfka_forge_hint_bns1"])  # The same Steps II–III on the preset's.
  assert hint_bns1.source.forge == best.source.forge
  assert hint_bns1.differences(hint_best) == ["forge_bns"]
