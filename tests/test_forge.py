"""Forge (train/forge.py): its pure parts by hand, its options' checks, and a run killed
mid-stage that resumes bit-identical, the bank and the meta-generator included."""

import json
import math
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfka_tf import analysis
from dfka_tf import pipeline
from dfka_tf import priors
from dfka_tf.config import RunConfig
from dfka_tf.errors import ConfigError
from dfka_tf.models import teacher_files
from dfka_tf.train import steps
from dfka_tf.train.augment import apply_cutmix, cutmix_draws
from dfka_tf.train.forge import (Bank, ForgeEngine, ForgeSource, balanced_label_sets,
                                 contrast_weights, label_partners, spillover)
from dfka_tf.train.teacher_pass import TeacherPass, target_columns
from tests.test_cli import _save
from tests.test_resume import assert_same_run, kill_in_child
from tests.test_steps import _blocknet, world  # pylint: disable=unused-import  (a fixture)


def test_masked_kl_disagreement_by_hand():
  s = tf.constant([[0.8, 0.3]])
  t = tf.constant([[0.6, 0.7]])
  # Label 1: both >= 1/2, kept: 0.6 ln(0.6/0.8) + 0.4 ln(0.4/0.2). Label 2: they decide
  # apart (0.3 < 1/2 <= 0.7), masked out. Mean over the 2 entries.
  kept = 0.6 * math.log(0.6 / 0.8) + 0.4 * math.log(0.4 / 0.2)
  assert float(priors.masked_kl_disagreement(s, t)) == pytest.approx(kept / 2, rel=1e-5)
  assert float(priors.masked_kl_disagreement(t, t)) == pytest.approx(0.0, abs=1e-6)


def test_masked_kl_gradient_reaches_both_sides_where_kept_only():
  s = tf.Variable([[0.8, 0.3]])
  t = tf.Variable([[0.6, 0.7]])
  with tf.GradientTape() as tape:
    loss = priors.masked_kl_disagreement(s, t)
  gs, gt = tape.gradient(loss, [s, t])
  assert gs.numpy()[0, 0] != 0 and gt.numpy()[0, 0] != 0
  assert gs.numpy()[0, 1] == 0 and gt.numpy()[0, 1] == 0


def test_balanced_label_sets_take_the_least_used_label_first():
  rng = tf.random.Generator.from_seed(0)
  # One image, one label: the permutation the single slot falls in is ordered by use.
  counts = tf.constant([5.0, 0.0, 5.0, 5.0])
  for _ in range(5):
    got = balanced_label_sets(rng, counts, 1, 1).numpy()
    np.testing.assert_array_equal(got, [[0, 1, 0, 0]])


def test_balanced_label_sets_one_label_each_is_a_permutation():
  rng = tf.random.Generator.from_seed(1)
  got = balanced_label_sets(rng, tf.zeros([4]), 4, 1).numpy()
  np.testing.assert_array_equal(got.sum(axis=1), [1, 1, 1, 1])
  np.testing.assert_array_equal(got.sum(axis=0), [1, 1, 1, 1])


def test_balanced_label_sets_stay_even_over_many_batches():
  rng = tf.random.Generator.from_seed(2)
  counts = tf.Variable(tf.zeros([7]))
  for _ in range(30):
    t = balanced_label_sets(rng, counts, 16, 3)
    rows = t.numpy().sum(axis=1)
    assert rows.min() >= 1 and rows.max() <= 3
    counts.assign_add(tf.reduce_sum(t, axis=0))
  c = counts.numpy()
  # Up to one slot per batch is lost to a label drawn twice across a permutation boundary.
  assert c.max() - c.min() <= 30 * 1 + 1, c
  assert c.min() / c.max() > 0.85, c


def test_bank_is_a_ring():
  bank = Bank(3, [1, 1, 1])
  a = tf.constant([0.0, 1.0])[:, None, None, None]
  b = tf.constant([0.2, 0.4])[:, None, None, None]
  bank.add(a)
  assert int(bank.count) == 2 and int(bank.next) == 2
  bank.add(b)  # b0 -> row 2, b1 -> row 0 (the oldest).
  assert int(bank.count) == 3 and int(bank.next) == 1
  np.testing.assert_array_equal(bank.images.numpy().ravel(), [102, 255, 51])
  rng = tf.random.Generator.from_seed(0)
  assert set(bank.sample_indices(rng, 50).numpy()) <= {0, 1, 2}


def test_forge_options_expand_and_check():
  c = RunConfig.build("scenes20", method="dfka", overrides=dict(forge=True))
  assert c.source.kind == "forge" and not c.generator.enabled
  assert c.student.mode == "blockwise"
  c = RunConfig.build("scenes20", method="dfka", overrides=dict(forge=True, student="distill"))
  assert c.student.mode == "distill"
  c = RunConfig.build("scenes20", method="ka", overrides=dict(student="distill"))
  assert c.student.mode == "distill" and c.source.kind == "dataset"
  bad = [(dict(method="ka", overrides=dict(forge=True)), "--forge"),
         (dict(method="dfka", overrides=dict(forge=True, inversion_images=64)), "one of them"),
         (dict(method="dfka", overrides=dict(forge=True, adversarial_weight=1.0)),
          "--forge_adv"),
         (dict(method="dafl", overrides=dict(student="distill")), "its own"),
         (dict(method="dfka", overrides=dict(forge=True, forge_jitter=32)), "forge_jitter"),
         (dict(method="dfka", overrides=dict(forge=True, forge_reset="sometimes")), "meta"),
         (dict(method="dfka", overrides=dict(forge=True, forge_contrast=0.5)),
          "--forge_contrast=0.5 must be 0 .off. or a weight >= 1"),
         (dict(method="dfka", overrides=dict(forge_contrast=3.0)),
          "--forge_contrast change Forge's images; add --forge")]
  for kwargs, needle in bad:
    with pytest.raises(ConfigError, match=needle):
      RunConfig.build("scenes20", **kwargs)


def test_best_preset_stacks_on_the_budget_that_applies():
  c = RunConfig.build("scenes20", preset="from_scratch,best")
  assert c.source.kind == "forge" and c.student.mode == "distill" and c.student.lr == 0.3
  # The sweep's point mix_adv3_bns1.
  assert c.source.forge.mix == 0.5 and c.source.forge.bns == 1.0 and c.source.forge.adv == 3.0
  assert c.data.pretrain is None and c.student.block_steps == 1000  # from_scratch's budget.
  quick = RunConfig.build("scenes20", preset="quick,best")
  assert quick.student.block_steps == 5 and quick.source.kind == "forge"


@pytest.fixture(scope="module")
def teacher_paths(tmp_path_factory):
  d = tmp_path_factory.mktemp("teachers")
  return (_save(d / "a.keras", "tiny", ["cat", "dog"]),
          _save(d / "b.keras", "tiny", ["bus", "car", "tree"]))


def _config(teacher_paths, workdir, student) -> RunConfig:
  return RunConfig.build("byo", overrides=dict(
      teacher_paths=tuple(teacher_paths), num_teachers=len(teacher_paths), arch="tiny",
      batch_size=4, generator_width=16, latent_dim=16, block_steps=4, finetune_steps=4,
      checkpoint_every=2, seed=3, evaluate=False, export=False, forge=True, student=student,
      forge_round_every=3, forge_warmup_rounds=2, forge_g_steps=2, forge_bank_size=16,
      # BN matching with momentum and the contrast weights: what they keep must resume with
      # the engine too.
      forge_bns=1.0, forge_bns_mmt=0.5, forge_contrast=3.0, workdir=str(workdir)))


# (student, stage, step killed in): block 2's first step (no checkpoint of its own: the
# engine comes from block 1's), mid-Step III (the adversary is T_u), mid-distillation.
# The distilled TargetNet's path runs in the default suite through the Forge sweep's test
# (test_suites.py); its kill here is slow.
KILLS = [pytest.param("blockwise", "block2", 1, id="block2-start"),
         pytest.param("blockwise", "finetune", 3, marks=pytest.mark.slow, id="finetune"),
         pytest.param("distill", "distill", 11, marks=pytest.mark.slow, id="distill")]


@pytest.mark.parametrize("student,stage,step", KILLS)
def test_forge_run_killed_then_resumed_matches_unbroken_run(teacher_paths, tmp_path, student,
                                                            stage, step):
  unbroken, killed = tmp_path / "unbroken", tmp_path / "killed"
  config = _config(teacher_paths, killed, student)
  results = kill_in_child(config, stage, step, tmp_path / "child.log", lambda: pipeline.run(
      _config(teacher_paths, unbroken, student), progress=False))
  pipeline.run(config, progress=False, resume=True)
  # Everything but the synthesis time (wall-clock) is bit-identical.
  assert_same_run(killed, unbroken, ignore=("forge_seconds/.ATTRIBUTES/VARIABLE_VALUE",))
  forge = results["forge"]
  # Warm-up, then one round every 3 student steps over the whole student budget: 4 blocks
  # of 4 steps and 4 of Step III, or as many steps of distillation.
  assert forge["rounds"] == 2 + -(-(4 * 4 + 4) // 3)
  assert forge["bank_images"] == 16 and forge["images_made"] == 4 * forge["rounds"]
  # experiments.bank_labels reads the bank the run checkpointed under the names Forge gives it.
  assert analysis.forge_bank(str(unbroken)).shape == (16, 16, 16, 3)
  assert os.path.exists(unbroken / "generated.png")


def _engine(world, **kw):
  teachers, task, _ = world
  settings = dict(batch_size=4, latent_dim=8, width=16, round_every=2, warmup_rounds=1,
                  g_steps=2, max_labels=2, jitter=2, bank_size=8)
  settings.update(kw)
  return ForgeEngine(teachers, task, rng=tf.random.Generator.from_seed(3), **settings)


def _values(variables):
  return [v.numpy().copy() for v in variables]


def test_a_round_moves_generator_and_bank_not_teachers_nor_student(world):
  teachers, task, _ = world
  engine = _engine(world)
  student = _blocknet(len(task.labels), "forge_student", list(task.labels))
  trainer = steps.FinetuneTrainer(student.source_model, ForgeSource(
      engine, tf.random.Generator.from_seed(4), 4), teachers, task, batch_size=4, steps=10)
  frozen = [v for t in teachers for v in t.variables]
  before_frozen = _values(frozen)
  before_meta = _values(engine.meta.trainable_variables)
  out = trainer.step()  # The warm-up round, a round, then the student's step.
  assert int(engine.rounds) == 2 and int(engine.bank.count) == 8
  assert {"loss", "forge_loss", "forge_adv", "forge_bank"} <= set(out)
  assert all(np.array_equal(a, b.numpy()) for a, b in zip(before_frozen, frozen))
  assert any(not np.array_equal(a, b.numpy())
             for a, b in zip(before_meta, engine.meta.trainable_variables))
  # An adversarial round moves G through the student, but not the student.
  before_student = _values(student.source_model.variables)
  engine.run_round(adversarial=True)
  assert float(engine.last["forge_adv"]) >= 0.0
  assert all(np.array_equal(a, b.numpy())
             for a, b in zip(before_student, student.source_model.variables))
  counts = engine.label_counts.numpy()
  assert counts.sum() > 0 and counts.min() / counts.max() >= 0.5


def test_bn_momentum_keeps_the_kept_batches_statistics_and_checkpoints_them(world):
  teachers, _, _ = world
  engine = _engine(world, bns=1.0, bns_momentum=0.75)
  prior = engine.bns
  assert float(prior.remembered) == 0.0  # Before any round the batch is compared alone.
  engine.run_round(adversarial=False)
  first = priors.batch_statistics(TeacherPass(teachers, bn_inputs=True)(engine.best)[0]
                                  .bn_inputs)
  for (hm, hv), (bm, bv) in zip(prior.history[0], first):  # The first batch replaces.
    np.testing.assert_allclose(hm.numpy(), bm.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hv.numpy(), bv.numpy(), rtol=1e-5, atol=1e-6)
  engine.run_round(adversarial=False)
  second = priors.batch_statistics(TeacherPass(teachers, bn_inputs=True)(engine.best)[0]
                                   .bn_inputs)
  for (hm, _), (m1, _), (m2, _) in zip(prior.history[0], first, second):
    np.testing.assert_allclose(hm.numpy(), 0.75 * m1.numpy() + 0.25 * m2.numpy(),
                               rtol=1e-5, atol=1e-6)
  state = engine.state()
  assert state["forge_bns_remembered"] is prior.remembered
  assert len(state["forge_bns_history"]) == sum(len(h) for h in prior.history)
  assert "forge_bns_history" not in _engine(world, bns=1.0).state()  # Off: nothing kept.
  with pytest.raises(ValueError, match="bns_momentum"):
    _engine(world, bns=1.0, bns_momentum=1.0)


def test_spillover_partners_and_contrast_weights_by_hand():
  # Image 0 made for label 0 (targets [1, 0, 0]), image 1 for labels 1 and 2.
  targets = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.6]])
  probs = tf.constant([[0.9, 0.2, 0.7], [0.4, 0.8, 0.9]])
  # spill[a, b] = Σ t_a (1 - t_b) p_b: from label 0, image 0's p_1 = .2 and p_2 = .7; from
  # labels 1 and 2, image 1's p_0 = .4; labels 1 and 2 are both targeted there: 0.
  np.testing.assert_allclose(spillover(targets, probs), [[0.0, 0.2, 0.7], [0.4, 0.0, 0.0],
                                                         [0.4, 0.0, 0.0]], atol=1e-6)
  # Label 0's partner is 2 (.7 > .2); 1's and 2's are 0; a label with no spill has none.
  spill = tf.constant([[5.0, 0.2, 0.7, 0.0], [0.4, 0.0, 0.0, 0.0], [0.4, 0.0, 9.0, 0.0],
                       [0.0, 0.0, 0.0, 0.0]])
  np.testing.assert_array_equal(label_partners(spill), [2, 0, 0, -1])
  # Row 0 targets label 0: its partner 2's entry weighs 3. Row 1 targets 1 and 2, whose
  # partner 0 weighs 3. Row 2 targets 0 and 2: 0's partner is targeted, 2's partner too:
  # nothing. Row 3 targets label 3, which has no partner.
  weights = contrast_weights(tf.constant([[1.0, 0, 0, 0], [0, 1.0, 1.0, 0], [1.0, 0, 1.0, 0],
                                          [0, 0, 0, 1.0]]), label_partners(spill), 3.0)
  np.testing.assert_array_equal(weights, [[1, 1, 3, 1], [3, 1, 1, 1], [1, 1, 1, 1],
                                          [1, 1, 1, 1]])


def test_contrast_weights_the_partners_entries_from_the_second_round_on(world):
  engine = _engine(world, contrast=4.0)
  assert "forge_spill" not in _engine(world).state()  # Off: nothing kept.
  with pytest.raises(ValueError, match="contrast"):
    _engine(world, contrast=0.5)
  engine.run_round(adversarial=False)
  # The first round has no spill yet: every weight 1. The kept batch's spill is then summed.
  np.testing.assert_array_equal(engine.oh_weights.numpy(), 1.0)
  kept = tf.gather(TeacherPass.concat_probs(engine.teacher_pass(engine.best)), engine.cols,
                   axis=1)
  np.testing.assert_allclose(engine.spill.numpy(), spillover(engine.targets, kept).numpy(),
                             rtol=1e-5, atol=1e-6)
  first = engine.spill.numpy()
  assert (label_partners(first).numpy() >= 0).any()
  engine.run_round(adversarial=False)  # Its weights: its targets, the first round's spill.
  np.testing.assert_array_equal(engine.oh_weights.numpy(), contrast_weights(
      engine.targets, label_partners(first), 4.0).numpy())
  state = engine.state()
  assert state["forge_spill"] is engine.spill and state["forge_oh_weights"] is engine.oh_weights


def test_contrast_changes_g_only_through_its_weights(world):
  keras.utils.set_random_seed(7)  # The same generator weights in both engines.
  plain = _engine(world)
  keras.utils.set_random_seed(7)
  weighted = _engine(world, contrast=4.0)
  plain.run_round(adversarial=False)
  weighted.run_round(adversarial=False)
  # Round 1's weights are all 1: the same images and loss, and no extra random draws.
  np.testing.assert_array_equal(plain.best.numpy(), weighted.best.numpy())
  assert float(plain.last["forge_oh"]) == float(weighted.last["forge_oh"])
  plain.run_round(adversarial=False)
  weighted.run_round(adversarial=False)
  np.testing.assert_array_equal(plain.targets.numpy(), weighted.targets.numpy())
  assert weighted.oh_weights.numpy().max() > 1.0, "no partner entry this round"
  assert float(plain.last["forge_oh"]) != float(weighted.last["forge_oh"])


def test_image_bn_off_ends_g_in_a_plain_sigmoid(world):
  # --noimage_bn reaches Forge's G (CMI's and Fast-Datafree's G end in a plain sigmoid).
  def layer_names(engine):
    return [layer.name for layer in engine.generator.layers]
  assert any(n.endswith("_image_bn") for n in layer_names(_engine(world)))
  plain = _engine(world, image_bn=False)
  assert not any(n.endswith("_image_bn") for n in layer_names(plain))
  plain.run_round(adversarial=False)
  assert np.isfinite(float(plain.last["forge_oh"]))


def test_realised_labels_count_what_the_teachers_give_the_kept_images(world):
  teachers, task, _ = world
  engine = _engine(world, labels="realised")
  engine.run_round(adversarial=False)
  # The counts are the teachers' labels (p >= 0.5) on the batch the round kept, in Y_cst
  # order, not the round's targets.
  kept = tf.gather(TeacherPass.concat_probs(TeacherPass(teachers)(engine.best)),
                   target_columns(teachers, task), axis=1).numpy()
  given = (kept >= 0.5).sum(axis=0)
  assert 0 < given.sum() and not np.array_equal(given, engine.targets.numpy().sum(axis=0))
  np.testing.assert_array_equal(engine.label_counts.numpy(), given)
  balanced = _engine(world)
  balanced.run_round(adversarial=False)
  np.testing.assert_array_equal(balanced.label_counts.numpy(),
                                balanced.targets.numpy().sum(axis=0))
  # The next round's targets are balanced_label_sets' on those counts (least given first).
  counts = [0.0] + [5.0] * (len(task.labels) - 1)
  engine.label_counts.assign(counts)
  rng = tf.random.Generator.from_state(engine.rng.state.numpy(), engine.rng.algorithm)
  expected = balanced_label_sets(rng, tf.constant(counts), 4, 2)
  engine.run_round(adversarial=False)
  np.testing.assert_array_equal(engine.targets.numpy(), expected.numpy())


def test_reinit_draws_fresh_weights_and_keep_carries_on(world):
  fresh = _engine(world, reset="reinit", reset_every=1)
  fresh.run_round(adversarial=False)
  after_one = _values(fresh.generator.trainable_variables)
  fresh.run_round(adversarial=False)  # Round 2 starts from new random weights.
  kernels = [v for v in fresh.generator.trainable_variables if "kernel" in v.path]
  assert kernels and all(abs(float(tf.math.reduce_std(k)) - 0.02) < 0.01 for k in kernels[:1])
  assert any(not np.array_equal(a, b.numpy())
             for a, b in zip(after_one, fresh.generator.trainable_variables))
  kept = _engine(world, reset="keep")
  assert kept.meta is None
  kept.run_round(adversarial=False)
  state = _values(kept.generator.trainable_variables)
  opt_steps = int(kept.g_optimizer.iterations)
  kept.run_round(adversarial=False)
  assert int(kept.g_optimizer.iterations) == opt_steps + 2  # Adam carries on.
  assert any(not np.array_equal(a, b.numpy())
             for a, b in zip(state, kept.generator.trainable_variables))


def test_cutmix_pastes_the_partners_box_by_hand():
  images = tf.reshape(tf.range(3 * 4 * 4, dtype=tf.float32), [3, 4, 4, 1])
  draws = {"active": tf.constant([True, False, True]), "partner": tf.constant([2, 0, 1]),
           "y0": tf.constant([1, 0, 0]), "y1": tf.constant([3, 4, 1]),
           "x0": tf.constant([0, 0, 3]), "x1": tf.constant([2, 4, 4])}
  out = apply_cutmix(images, draws).numpy()
  expected = images.numpy().copy()
  expected[0, 1:3, 0:2] = images.numpy()[2, 1:3, 0:2]  # Image 2's box into image 0.
  expected[2, 0:1, 3:4] = images.numpy()[1, 0:1, 3:4]  # Image 1's pixel into image 2.
  np.testing.assert_array_equal(out, expected)  # Image 1 is inactive: left as it was.
  assert apply_cutmix(images, None) is images


def test_cutmix_draws_stay_inside_the_image_and_off_at_zero():
  rng = tf.random.Generator.from_seed(5)
  assert cutmix_draws(rng, 8, (6, 6), 0.0) is None
  d = cutmix_draws(rng, 64, (6, 6), 1.0)
  assert bool(tf.reduce_all(d["active"]))
  assert sorted(d["partner"].numpy().tolist()) == list(range(64))
  for lo, hi in (("y0", "y1"), ("x0", "x1")):
    assert bool(tf.reduce_all((d[lo] >= 0) & (d[lo] <= d[hi]) & (d[hi] <= 6)))


def test_block_adversary_is_the_dual_path_by_hand(world):
  teachers, task, _ = world
  engine = _engine(world)
  target = _blocknet(len(task.labels), "forge_block_target", list(task.labels))
  source = ForgeSource(engine, tf.random.Generator.from_seed(4), 4)
  trainer = steps.BlockTrainer(target, 2, source, teachers, task, batch_size=4, steps=10,
                               adversary=True).build()
  assert engine.adversary == trainer.dual_predict
  image = tf.random.uniform([4] + engine.image_shape, seed=1)
  x = target.blocks[1](target.blocks[0](image, training=False), training=False)
  # Y_cst = [b_1, a_0, a_2]: teacher b's column 1, then teacher a's columns 0 and 2.
  a = teachers[0].tail(trainer.filters[0](x), 2, training=False)["probs"].numpy()
  b = teachers[1].tail(trainer.filters[1](x), 2, training=False)["probs"].numpy()
  expected = np.stack([b[:, 1], a[:, 0], a[:, 2]], axis=1)
  np.testing.assert_allclose(trainer.dual_predict(image).numpy(), expected, rtol=1e-6)
  last = steps.BlockTrainer(target, len(target.blocks), source, teachers, task,
                            batch_size=4, steps=10, adversary=True).build()
  whole = steps.FinetuneTrainer(target.source_model, source, teachers, task, batch_size=4,
                                steps=10)  # Its predict is the TargetNet's own.
  np.testing.assert_allclose(last.dual_predict(image).numpy(),
                             whole.predict(image).numpy(), rtol=1e-5, atol=1e-6)
  last.source.bind(trainer.dual_predict)
  # An adversarial round moves G through the dual path but leaves the TargetNet as it was.
  before = _values(target.source_model.variables)
  engine.run_round(adversarial=True)
  assert float(engine.last["forge_adv"]) > 0.0
  assert all(np.array_equal(v, w.numpy()) for v, w in zip(before,
                                                          target.source_model.variables))
  plain = steps.BlockTrainer(target, 2, source, teachers, task, batch_size=4, steps=10)
  assert engine.adversary is None and plain.block == 2  # Off by default, as the paper.


def test_co_called_names_the_label_most_often_given_alongside():
  probs = np.array([[0.9, 0.9, 0.1], [0.9, 0.1, 0.1], [0.1, 0.9, 0.9], [0.1, 0.1, 0.1]])
  out = analysis.co_called(probs, ["a", "b", "c"])
  # a on rows 0-1: b on one of them, c on none; b on rows 0 and 2: a and c once each (the
  # first wins the tie); c on row 2 only, with b.
  assert out == {"a": ("b", 0.5), "b": ("a", 0.5), "c": ("b", 1.0)}
  assert analysis.co_called(np.zeros((2, 2)), ["a", "b"]) == {"a": None, "b": None}
  # Called, but never with another label.
  assert analysis.co_called(np.array([[0.9, 0.1]]), ["a", "b"]) == {"a": None, "b": None}


def test_bank_labels_reads_the_last_bank_and_what_the_teachers_call_it(teacher_paths, tmp_path):
  workdir = tmp_path / "run"
  (workdir / "teachers").mkdir(parents=True)
  for path in teacher_paths:
    for suffix in ("", ".labels.json"):
      shutil.copy(path + suffix, workdir / "teachers" / (os.path.basename(path) + suffix))
  (workdir / "config.json").write_text(json.dumps(
      {"data": {"dataset": "scenes20", "data_dir": None, "image_size": 16}}))
  with pytest.raises(FileNotFoundError, match="--forge"):
    analysis.forge_bank(str(workdir))
  pixels = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
  # A ring of 5 holding 3 images: only the filled rows are read.
  tf.train.Checkpoint(forge_bank=tf.Variable(pixels),
                      forge_bank_count=tf.Variable(3, dtype=tf.int64)).save(
                          str(workdir / "ckpt" / "distill" / "ckpt"))
  figures = analysis.bank_labels(str(workdir))
  teachers = [teacher_files.load_teacher(p) for p in teacher_paths]
  probs = analysis.teacher_predictions(pixels[:3].astype(np.float32) / 255.0, teachers)
  assert figures["labels"] == ["cat", "dog", "bus", "car", "tree"]
  assert figures["bank"]["num_images"] == 3
  assert figures["bank"]["counts"] == (probs > 0.5).sum(axis=0).tolist()
  assert figures["real"]["num_images"] > 3
  assert set(figures["real_co_called"]) == set(figures["labels"])
  assert "| cat |" in analysis.bank_labels_table(figures)
  # Beside real images: for a pair (a, b) the teachers part on some bank image (their weights
  # are drawn fresh each session), bank images called a and not b, and b and not a.
  names = figures["labels"]
  a, b = next(((a, b) for a in names for b in names if a != b and
               len(analysis.called_apart(probs, names, [a, b])[a])), (None, None))
  assert a is not None, "the fresh teachers call every label alike on the 3 bank images"
  rows = analysis.bank_apart(str(workdir), [a, b], per_row=2)
  assert list(rows) == [f"bank: {a}, not {b}", f"validation: {a}, not {b}",
                        f"bank: {b}, not {a}", f"validation: {b}, not {a}"]
  apart = analysis.called_apart(probs, names, [a, b])
  np.testing.assert_array_equal(rows[f"bank: {a}, not {b}"], pixels[:3][apart[a][:2]])
  np.testing.assert_array_equal(rows[f"bank: {b}, not {a}"], pixels[:3][apart[b][:2]])
  assert len(rows[f"bank: {a}, not {b}"]) > 0
  # The real rows: the split's first images (in its order) the teachers call so, as uint8.
  data = {"dataset": "scenes20", "data_dir": None, "image_size": 16}
  # pylint: disable-next=protected-access
  real = np.concatenate(list(analysis._split_images(data, "validation", 1000)))
  called = np.concatenate([analysis.teacher_predictions(real[i:i + 1000], teachers)
                           for i in range(0, len(real), 1000)])
  real_apart = analysis.called_apart(called, names, [a, b])
  for x, y in ((a, b), (b, a)):
    expected = np.round(real[real_apart[x][:2]] * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(rows[f"validation: {x}, not {y}"], expected)
  assert len(rows[f"validation: {a}, not {b}"]) + len(rows[f"validation: {b}, not {a}"]) > 0
  with pytest.raises(ValueError, match="distinct labels"):
    analysis.bank_apart(str(workdir), ["cat", "zebra"])


def test_called_apart_by_hand():
  probs = np.array([[0.9, 0.8, 0.1], [0.9, 0.2, 0.1], [0.2, 0.7, 0.6], [0.1, 0.1, 0.9]])
  names = ["a", "b", "c"]
  apart = analysis.called_apart(probs, names, ["a", "b"])
  assert apart["a"].tolist() == [1] and apart["b"].tolist() == [2]
  assert analysis.called_apart(probs, names, ["c"])["c"].tolist() == [2, 3]


def test_confusions_name_what_a_label_is_mistaken_for():
  # Images: 0 = a, 1 = a + b, 2 = b, 3 = b. Scores for a rank 0, 2, 1, 3: of a's top 2
  # (it has 2 positives) image 2 is not a and carries b; image 1, an a ranked below, also
  # carries b. Mean score on a's positives (.9 + .2) / 2, on its negatives (.8 + .1) / 2.
  # b's positives all rank first (AP 1): not listed.
  labels = np.array([[1, 0], [1, 1], [0, 1], [0, 1]])
  probs = np.array([[0.9, 0.1], [0.2, 0.9], [0.8, 0.8], [0.1, 0.7]])
  (a,) = analysis.confusions(probs, labels, ["a", "b"])
  assert a["label"] == "a" and a["positives"] == 2
  assert a["false_positives"] == 1 and a["false_positives_carry"] == [("b", 1)]
  assert a["missed"] == 1 and a["missed_carry"] == [("b", 1)]
  np.testing.assert_allclose([a["mean_positive"], a["mean_negative"]], [0.55, 0.45])
  assert a["ap"] < 0.95
  assert analysis.confusions(probs, labels, ["a", "b"], below=0.0) == []


def test_recalibrate_batchnorm_averages_the_batches_statistics():
  inputs = keras.Input((1,))
  bn = keras.layers.BatchNormalization(momentum=0.99)
  model = keras.Model(inputs, bn(inputs))
  # Batches [0, 2] (mean 1, variance 1) and [4, 4] (mean 4, variance 0): moving mean 2.5,
  # moving variance 0.5, whatever they were; the layer's momentum is left as it was.
  analysis.recalibrate_batchnorm(model, np.array([[0.0], [2.0], [4.0], [4.0]]), batch_size=2)
  np.testing.assert_allclose([bn.moving_mean.numpy()[0], bn.moving_variance.numpy()[0]],
                             [2.5, 0.5], rtol=1e-6)
  assert bn.momentum == 0.99


def test_student_errors_restores_the_distilled_target_net_and_scores_it(tmp_path):
  from dfka_tf.data import label_names  # pylint: disable=g-import-not-at-top
  from dfka_tf.eval.metrics import mean_ap  # pylint: disable=g-import-not-at-top
  from dfka_tf.models.resnet import build_resnet  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "run"
  with pytest.raises(FileNotFoundError, match="--student=distill"):
    analysis.student_errors(str(workdir))
  names = label_names("scenes20")[::-1]  # Y_cst in another order than the dataset's.
  (workdir / "ckpt" / "distill").mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps({"data": {
      "dataset": "scenes20", "data_dir": None, "image_size": 16, "arch": "tiny"}}))
  (workdir / "results.json").write_text(json.dumps({"labels": names}))
  saved = build_resnet("tiny", len(names), (16, 16, 3), name="target_net")
  tf.train.Checkpoint(target_net=saved).save(str(workdir / "ckpt" / "distill" / "ckpt"))
  with pytest.raises(ValueError, match="recalibrate_on"):
    analysis.student_errors(str(workdir), recalibrate_on=["bnak"])
  out = analysis.student_errors(str(workdir), below=100.0, recalibrate_on=["train"],
                                train_images=64)
  x, y = analysis._labelled("scenes20", "validation", None, 16)  # pylint: disable=protected-access
  want = 100 * mean_ap(saved.predict(x, verbose=0), y[:, ::-1])
  np.testing.assert_allclose(out["map"], want, rtol=1e-5)
  assert [r["label"] for r in out["labels"]] == names  # All under 100 %.
  assert "map_recalibrated_on_train" in out and out["map_recalibrated_on_train"] != out["map"]
  assert "| " + names[0] + " |" in analysis.student_errors_table(out)
