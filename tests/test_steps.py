"""Steps I–III on tiny networks: each step moves exactly the variables it should."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dfka_tf import losses
from dfka_tf import priors
from dfka_tf.errors import ConfigError
from dfka_tf.models import blocknet
from dfka_tf.models.generator import GroupStackGenerator
from dfka_tf.models.filters import ConvFilter
from dfka_tf.models.resnet import build_resnet
from dfka_tf.task import TaskMap
from dfka_tf.models import regroup as regroup_lib
from dfka_tf.train import optimizers, sources, steps, teacher_pass

SHAPE = (16, 16, 3)
BATCH = 4


def _blocknet(num_labels, name, labels=None):
  model = build_resnet("tiny", num_labels, SHAPE, name=name)
  labels = labels or [f"{name}_{i}" for i in range(num_labels)]
  return blocknet.split_model(model, label_names=labels)


@pytest.fixture(scope="module")
def world():
  keras.utils.set_random_seed(0)
  teachers = [_blocknet(3, "a"), _blocknet(2, "b")]
  for t in teachers:
    t.freeze()
  # Y_cst mixes both teachers and reorders: b_1, a_0, a_2.
  task = TaskMap.build([t.label_names for t in teachers], ["b_1", "a_0", "a_2"])
  generator = GroupStackGenerator(teachers[0].feature_shapes, num_groups=2, latent_dim=8,
                                  width=16)
  return teachers, task, generator


def _values(variables):
  return [v.numpy().copy() for v in variables]


def _changed(before, variables):
  return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


def _rng():
  return tf.random.Generator.from_seed(1)


def _source(generator):
  return sources.GeneratorSource(generator, _rng(), BATCH)


def test_task_map_orders_and_checks_labels():
  task = TaskMap.build([["a", "b", "c"], ["d", "e"]], ["e", "a", "c"])
  assert task.teacher_cols == [[0, 2], [1]]
  assert task.cst_cols == [[1, 2], [0]]
  # Concatenation is [a, c, e]; Y_cst order [e, a, c] takes positions 2, 0, 1.
  assert task.order == [2, 0, 1]
  assert TaskMap.build([["a"], ["b"]]).labels == ["a", "b"]
  with pytest.raises(ConfigError, match="unknown label"):
    TaskMap.build([["a"]], ["z"])
  with pytest.raises(ConfigError, match="more than once"):
    TaskMap.build([["a", "b"]], ["a", "a"])
  with pytest.raises(ConfigError, match="empty"):
    TaskMap.build([["a"]], [])


def test_generator_step_moves_only_generator_and_filters(world):
  teachers, _, generator = world
  trainer = steps.GeneratorTrainer(generator, teachers, rng=_rng(), batch_size=BATCH)
  trainer.step()  # Builds the optimizer's slots and the filters.
  traces = trainer.trace_count
  own = trainer.trainable_variables
  frozen = [v for t in teachers for v in t.variables]
  before_own, before_frozen = _values(own), _values(frozen)
  out = trainer.step()
  assert set(out) >= {"loss", "oh", "a", "ie", "dis", "align"}
  assert all(np.isfinite(float(v)) for v in out.values())
  changed = _changed(before_own, own)
  assert all(changed[:len(generator.trainable_variables)])
  assert any(changed[len(generator.trainable_variables):])  # the filters f_m^j
  assert not any(_changed(before_frozen, frozen))
  trainer.step()
  assert trainer.trace_count == traces  # No retracing after the first step.


def test_generator_summaries_show_what_steps_two_and_three_sample_and_change_nothing(
    world, tmp_path):
  teachers, _, generator = world
  trainer = steps.GeneratorTrainer(generator, teachers, rng=_rng(), batch_size=BATCH)
  out = trainer.step()
  assert 0.0 <= float(out["label_coverage"]) <= 1.0
  assert 0.0 <= float(out["labels_per_image"]) <= 5.0  # The teachers know 5 labels.
  assert float(out["pixel_diversity"]) > 0.0
  z = tf.random.stateless_normal([6, generator.latent_dim], seed=[0, 31])
  state = _values(generator.variables) + [trainer.rng.state.numpy().copy()]
  writer = tf.summary.create_file_writer(str(tmp_path))
  with writer.as_default(step=7):
    trainer.summarize(z)
  writer.flush()
  # G ran in inference mode and drew no noise: its BN statistics and the stream are as before.
  assert not any(_changed(state, generator.variables + [trainer.rng.state]))
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  events = event_accumulator.EventAccumulator(
      str(tmp_path), size_guidance={event_accumulator.TENSORS: 0})
  events.Reload()
  tags = events.Tags()["tensors"]
  assert {"sampled/images", "sampled/labels_predicted", "sampled/label_coverage",
          "sampled/pixel_diversity", "sampled/saturated_outputs", "sampled/pull_oh",
          "sampled/pull_a", "sampled/pull_ie", "sampled/pull_dis"} <= set(tags)
  pulls = [float(tf.make_ndarray(events.Tensors(f"sampled/pull_{t}")[0].tensor_proto))
           for t in ("oh", "a", "ie", "dis")]
  assert all(np.isfinite(pulls)) and pulls[1] > 0  # L_a always pulls on the image.
  image = events.Tensors("sampled/images")[0]
  assert image.step == 7
  # An image summary holds width, height and the PNG: a 4 x 2 grid of 16-pixel images.
  width, height = (int(v) for v in tf.make_ndarray(image.tensor_proto)[:2])
  assert (width, height) == (4 * 16, 2 * 16)


@pytest.mark.parametrize("block", [1, 2, 3, 4])
def test_block_step_moves_only_its_block(world, block):
  teachers, task, generator = world
  target = _blocknet(len(task.labels), f"target{block}", list(task.labels))
  trainer = steps.BlockTrainer(target, block, _source(generator), teachers, task,
                               batch_size=BATCH, steps=10)
  trainer.step()
  traces = trainer.trace_count
  others = [v for i, blk in enumerate(target.blocks) if i != block - 1 for v in blk.variables]
  frozen = [v for t in teachers for v in t.variables] + generator.variables + others
  own = trainer.trainable_variables
  before_own, before_frozen = _values(own), _values(frozen)
  out = trainer.step()
  trainer.step()
  assert {"loss", "dual_t1", "dual_t2"} <= set(out)
  assert all(_changed(before_own, own)[:len(target.blocks[block - 1].trainable_variables)])
  assert not any(_changed(before_frozen, frozen))
  assert trainer.trace_count == traces
  assert (len(trainer.filters) == 2) == (block < 4)


def _hand_block_loss(trainer, image, link, lambda_in):
  """L_u^b (Eq. 14–17) of one batch, by hand: the trainer's block in training mode (batch
  statistics), teacher m's blocks b+1..B after f_m^b, its columns against its prediction on
  the image. Returns (L_u^b, [L_dual^{b,m}(F_in^1) for each teacher m])."""
  b, task = trainer.block, trainer.task
  def per_teacher(x):
    features = trainer.target.blocks[b - 1](x, training=True)
    out = []
    for m in task.active:
      teacher = trainer.teachers[m]
      cols = task.teacher_cols[m]
      student = teacher.tail(trainer.filters[m](features), b, training=False)["probs"]
      want = teacher(image, training=False)["probs"]
      out.append(float(losses.dual_loss_per_teacher(tf.gather(student, cols, axis=1),
                                                    tf.gather(want, cols, axis=1))))
    return out
  x1 = image
  for blk in trainer.target.blocks[:b - 1]:
    x1 = blk(x1, training=False)
  per1, per2 = per_teacher(x1), per_teacher(link[b - 1])
  return lambda_in[0] * sum(per1) + lambda_in[1] * sum(per2), per1


@pytest.mark.parametrize("lambda_in", [(0.0, 1.0), (0.25, 1.5)])
def test_block_loss_uses_generator_link_where_aligned(world, lambda_in):
  teachers, task, generator = world
  target = _blocknet(len(task.labels), "target_link", list(task.labels))
  # K = 2 aligns depth 2: block 3 has a link stream, block 2 has none.
  _, link = _source(generator).sample()
  assert sorted(link) == [0, 2]
  trainer = steps.BlockTrainer(target, 3, _source(generator), teachers, task,
                               batch_size=BATCH, steps=5, lambda_in=lambda_in)
  before = trainer.rng.state.numpy().copy()
  trainer.build()  # Creates f_m^3 before the hand computation reads them.
  np.testing.assert_array_equal(trainer.rng.state.numpy(), before)  # Nothing drawn.
  # A same-seed source's first draw is the step's first draw.
  image, link = _source(generator).sample()
  want, want_per1 = _hand_block_loss(trainer, image, link, lambda_in)
  out = trainer.step()
  assert float(out["loss"]) == pytest.approx(want, rel=1e-5)
  # dual_t<m> reports the F_in^1 stream whatever λ_in is.
  assert [float(out["dual_t1"]), float(out["dual_t2"])] == pytest.approx(want_per1, rel=1e-5)


def test_block_loss_without_link_weight_is_the_reported_terms(world):
  teachers, task, generator = world
  target = _blocknet(len(task.labels), "target_nolink", list(task.labels))
  trainer = steps.BlockTrainer(target, 3, _source(generator), teachers, task,
                               batch_size=BATCH, steps=5, lambda_in=(1.0, 0.0))
  for _ in range(2):
    out = trainer.step()
    # 1·(L^1 + L^2) + 0·L_link is the float32 sum of the reported terms, bit for bit.
    assert out["loss"].numpy() == out["dual_t1"].numpy() + out["dual_t2"].numpy()


def test_block_step_with_conv_filters_adds_the_feature_term_by_hand(world):
  teachers, task, generator = world
  target = _blocknet(len(task.labels), "target_hint", list(task.labels))
  weight = 0.5
  trainer = steps.BlockTrainer(target, 2, _source(generator), teachers, task,
                               batch_size=BATCH, steps=5, lambda_in=(1.0, 0.0),
                               filter_kind="conv", feature_weight=weight).build()
  assert all(isinstance(f, ConvFilter) for f in trainer.filters)
  image, _ = _source(generator).sample()
  x1 = target.blocks[0](image, training=False)
  features = target.blocks[1](x1, training=True)
  hints = []
  for m in task.active:
    want = teachers[m].call(image, 0, 2, training=False).numpy()
    got = trainer.filters[m](features).numpy()  # The identity before the first step.
    np.testing.assert_allclose(got, features.numpy(), rtol=1e-6)
    got, want = got.reshape(len(got), -1), want.reshape(len(want), -1)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)
    hints.append(np.mean(np.sum((unit(got) - unit(want)) ** 2, axis=1)))
  out = trainer.step()
  assert [float(out["hint_t1"]), float(out["hint_t2"])] == pytest.approx(hints, rel=1e-4)
  # L_u^b of Eq. 17 plus the weighted feature terms (beyond the paper).
  dual = float(out["dual_t1"]) + float(out["dual_t2"])
  hint = float(out["hint_t1"]) + float(out["hint_t2"])
  assert float(out["loss"]) == pytest.approx(dual + weight * hint, rel=1e-6)
  assert any(_changed([np.eye(f.kernel.shape[0])], [f.kernel]) for f in trainer.filters)
  last = steps.BlockTrainer(target, 4, _source(generator), teachers, task, batch_size=BATCH,
                            steps=5, filter_kind="conv", feature_weight=weight)
  assert last.feature_weight == 0.0 and "hint_t1" not in last.step()  # No f_m^B.


@pytest.mark.parametrize("points", [{0: 2, 1: 3}, {0: 4, 1: 4}, {0: 1, 1: 4}])
def test_regroup_matches_hand_assembled_branches(world, points):
  teachers, task, _ = world
  target = _blocknet(len(task.labels), "target_rg", list(task.labels))
  filters = {b: [steps.TeacherFilter(name=f"rg_f{m}_{b}") for m in range(2)] for b in (1, 2, 3)}
  net = regroup_lib.regroup(target, teachers, filters, points, task)
  x = tf.random.uniform((2,) + SHAPE)
  got = net(x).numpy()
  assert got.shape == (2, 3)
  # By hand: T^1..T^S, f_m^S, teacher m's blocks S+1..B, then g_m; in Y_cst order.
  feats = [x]
  for blk in target.blocks[:-1]:
    feats.append(blk(feats[-1]))
  head = target.blocks[-1](feats[-1])["probs"].numpy()
  def branch(m):
    s = points[m]
    if s == 4:
      return head[:, task.cst_cols[m]]
    out = teachers[m].tail(filters[s][m](feats[s]), s)["probs"].numpy()
    return out[:, task.teacher_cols[m]]
  want = np.zeros((2, 3))
  for m in (0, 1):
    want[:, task.cst_cols[m]] = branch(m)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_finetune_step_moves_target_net_not_teachers(world):
  teachers, task, generator = world
  target = _blocknet(len(task.labels), "target_ft", list(task.labels))
  filters = {b: [steps.TeacherFilter(name=f"ft_f{m}_{b}") for m in range(2)] for b in (1, 2, 3)}
  net = regroup_lib.regroup(target, teachers, filters, {0: 2, 1: 4}, task)
  trainer = steps.FinetuneTrainer(net, _source(generator), teachers, task, batch_size=BATCH,
                                  steps=10)
  trainer.step()
  traces = trainer.trace_count
  frozen = [v for t in teachers for v in t.variables] + generator.variables
  before_own, before_frozen = _values(net.trainable_variables), _values(frozen)
  trainer.step()
  trainer.step()
  assert any(_changed(before_own, net.trainable_variables))
  assert not any(_changed(before_frozen, frozen))
  assert trainer.trace_count == traces
  # The teacher targets are in Y_cst order: b_1, a_0, a_2.
  image = tf.random.uniform((2,) + SHAPE)
  targets = teacher_pass.predictions_over_task(teachers, task, image).numpy()
  a = teachers[0](image)["probs"].numpy()
  b = teachers[1](image)["probs"].numpy()
  np.testing.assert_allclose(targets, np.stack([b[:, 1], a[:, 0], a[:, 2]], 1), rtol=1e-5)


def test_task_predictions_and_features_split_one_pass_at_a_block(world):
  teachers, task, _ = world
  image = tf.random.uniform((2,) + SHAPE)
  preds = teacher_pass.task_predictions(teachers, task, image)
  both, feats = teacher_pass.task_predictions_and_features(teachers, task, image, 2)
  assert sorted(both) == sorted(feats) == sorted(preds) == [0, 1]
  for m in (0, 1):
    np.testing.assert_allclose(both[m], preds[m], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[m], teachers[m].features(image)[1], rtol=1e-5, atol=1e-6)
  # Each teacher gives its own columns of Y_cst: teacher b its label 1, teacher a 0 and 2.
  np.testing.assert_allclose(preds[1], teachers[1](image)["probs"].numpy()[:, [1]], rtol=1e-5)
  np.testing.assert_allclose(preds[0], teachers[0](image)["probs"].numpy()[:, [0, 2]],
                             rtol=1e-5)


def test_batchnorm_taps_share_the_teacher_forward_pass(world):
  teachers, _, _ = world
  tap, stats = teacher_pass.batchnorm_taps(teachers[0])
  x = tf.random.uniform((3,) + SHAPE)
  out = tap(x, training=False)
  want = teachers[0](x)
  np.testing.assert_allclose(out["probs"], want["probs"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["pre_logits"], want["pre_logits"], rtol=1e-5, atol=1e-6)
  bns = [l for l in teachers[0].source_model._flatten_layers(include_self=False)  # pylint: disable=protected-access
         if isinstance(l, keras.layers.BatchNormalization)]
  assert len(out["bn_inputs"]) == len(stats) == len(bns)
  # The first BN reads the stem convolution's output: its channels match the BN's stats.
  assert out["bn_inputs"][0].shape[-1] == stats[0][0].shape[0]


def test_generator_step_with_bn_prior_adds_it_and_moves_only_generator(world):
  teachers, _, generator = world
  trainer = steps.GeneratorTrainer(generator, teachers, rng=_rng(), batch_size=BATCH,
                                   bns_weight=0.5)
  trainer.step()
  traces = trainer.trace_count
  frozen = [v for t in teachers for v in t.variables]
  before_frozen = _values(frozen)
  out = trainer.step()
  assert float(out["bns"]) > 0
  parts = float(out["gan"]) + float(out["align"]) + 0.5 * float(out["bns"])
  assert abs(float(out["loss"]) - parts) < 1e-4
  assert not any(_changed(before_frozen, frozen))
  trainer.step()
  assert trainer.trace_count == traces


def test_generator_step_with_aux_classifier_trains_h_with_g_and_freezes_teachers(world):
  teachers, _, generator = world
  trainer = steps.GeneratorTrainer(generator, teachers, rng=_rng(), batch_size=BATCH,
                                   lh_weight=2.0)
  trainer.step()
  frozen = [v for t in teachers for v in t.variables]
  aux = [v for h in trainer.aux for v in h.trainable_variables]
  # h_m reads the pooled F^1..F^{B-1} of teacher m and predicts its labels.
  assert [int(h.kernel.shape[0]) for h in trainer.aux] == [
      sum(s[-1] for s in t.feature_shapes[1:]) for t in teachers]
  assert [int(h.kernel.shape[1]) for h in trainer.aux] == [3, 2]
  before_frozen, before_aux = _values(frozen), _values(aux)
  before_g = _values(generator.trainable_variables)
  out = trainer.step()
  assert not any(_changed(before_frozen, frozen))
  assert all(_changed(before_aux, aux))
  assert any(_changed(before_g, generator.trainable_variables))
  parts = float(out["gan"]) + float(out["align"]) + 2.0 * float(out["lh"])
  assert abs(float(out["loss"]) - parts) < 1e-4
  # The L_H term equals its definition recomputed in numpy: per teacher, BCE of h_m on the
  # pooled, concatenated F^1..F^{B-1} against the teacher's thresholded labels; then the mean.
  outputs = generator(tf.random.normal((BATCH, generator.latent_dim), seed=3), training=False)
  lh = float(trainer.priors[-1].value(trainer.teacher_pass(outputs[-1])))
  want = []
  for h, t in zip(trainer.aux, teachers):
    feats, head = t.features(outputs[-1], with_outputs=True)
    p = h(np.concatenate([f.numpy().mean(axis=(1, 2)) for f in feats], axis=-1)).numpy()
    y = (head["probs"].numpy() >= 0.5).astype(np.float32)
    want.append(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
  np.testing.assert_allclose(lh, np.mean(want), rtol=1e-4)


def test_image_batch_norm_keeps_generated_channels_standardised():
  shapes = [(8, 8, 3), (4, 4, 8), (2, 2, 8), (2, 2, 8)]
  z = tf.random.normal((16, 4))
  for image_bn in (True, False):
    g = GroupStackGenerator(shapes, num_groups=1, latent_dim=4, width=8, image_bn=image_bn)
    image = g(z, training=True)[-1]
    logits = tf.math.log(image / (1 - image))  # Undo the sigmoid.
    mean, var = tf.nn.moments(logits, axes=[0, 1, 2])
    if image_bn:  # Batch norm without affine: zero mean, unit variance per channel.
      np.testing.assert_allclose(mean, 0.0, atol=1e-3)
      np.testing.assert_allclose(var, 1.0, rtol=1e-2)
    else:
      assert np.abs(var.numpy() - 1.0).max() > 0.05


@pytest.mark.parametrize("mode", ["imagenet", "caffe", "tf", "none"])
def test_dafl_image_head_standardises_what_the_teachers_normalisation_gives(mode):
  from dfka_tf.models.resnet import InputNormalization  # pylint: disable=g-import-not-at-top
  shapes = [(8, 8, 3), (4, 4, 8), (2, 2, 8), (2, 2, 8)]
  g = GroupStackGenerator(shapes, num_groups=1, latent_dim=4, width=8, image_head="dafl",
                          normalization=mode)
  image = g(tf.random.normal((16, 4)), training=True)[-1]
  # The teacher's own normalisation of G's image is tanh -> BN: standardised channels.
  seen = InputNormalization(mode)(image)
  mean, var = tf.nn.moments(seen, axes=[0, 1, 2])
  np.testing.assert_allclose(mean, 0.0, atol=1e-3)
  np.testing.assert_allclose(var, 1.0, rtol=1e-2)
  assert g.get_config()["image_head"] == "dafl"
  with pytest.raises(ConfigError, match="image_head"):
    GroupStackGenerator(shapes, num_groups=1, image_head="tanh")


def test_the_dafl_head_reads_the_teachers_normalisation():
  from dfka_tf.models import generator as generator_lib  # pylint: disable=g-import-not-at-top
  model = build_resnet("tiny", 2, SHAPE, normalization="tf")
  assert generator_lib.input_normalization_of(model) == "tf"
  assert generator_lib.input_normalization_of(None) == "none"


def test_generator_step_with_jitter_moves_only_generator(world):
  teachers, _, generator = world
  trainer = steps.GeneratorTrainer(generator, teachers, rng=_rng(), batch_size=BATCH,
                                   jitter=2)
  trainer.step()
  own, frozen = trainer.trainable_variables, [v for t in teachers for v in t.variables]
  before_own, before_frozen = _values(own), _values(frozen)
  out = trainer.step()
  assert all(np.isfinite(float(v)) for v in out.values())
  assert all(_changed(before_own, own)[:len(generator.trainable_variables)])
  assert not any(_changed(before_frozen, frozen))


def test_generator_source_samples_in_the_mode_asked(world):
  _, _, generator = world
  z = _rng().normal([BATCH, generator.latent_dim])
  inference, _ = sources.GeneratorSource(generator, _rng(), BATCH).sample()
  np.testing.assert_array_equal(inference.numpy(), generator(z, training=False)[-1].numpy())
  # Sampling in training mode also moves G's moving statistics (read after it, not before).
  expected = generator(z, training=True)[-1].numpy()
  training, _ = sources.GeneratorSource(generator, _rng(), BATCH, training=True).sample()
  np.testing.assert_allclose(training.numpy(), expected, atol=1e-6)
  # Batch statistics are not the moving ones: the two modes give other images.
  assert not np.allclose(inference.numpy(), training.numpy(), atol=1e-3)


def test_source_jitter_moves_the_image_not_the_links(world):
  _, _, generator = world
  plain_image, plain_links = sources.GeneratorSource(generator, _rng(), BATCH).sample()
  image, links = sources.GeneratorSource(generator, _rng(), BATCH, jitter=3).sample()
  # Same noise z (the first draw of the same seed), so the links are identical ...
  np.testing.assert_array_equal(links[2].numpy(), plain_links[2].numpy())
  # ... and the image is a flip/shift of the plain one: same values per image, moved.
  assert not np.array_equal(image.numpy(), plain_image.numpy())
  assert image.shape == plain_image.shape


def test_adversarial_finetune_moves_generator_and_target_net_not_teachers(world):
  teachers, task, _ = world
  generator = GroupStackGenerator(teachers[0].feature_shapes, num_groups=2, latent_dim=8,
                                  width=16, name="g_adv")
  gen = steps.GeneratorTrainer(generator, teachers, rng=_rng(), batch_size=BATCH).build()
  target = _blocknet(len(task.labels), "target_adv", list(task.labels))
  filters = {b: [steps.TeacherFilter(name=f"adv_f{m}_{b}") for m in range(2)] for b in (1, 2, 3)}
  net = regroup_lib.regroup(target, teachers, filters, {0: 2, 1: 4}, task)
  trainer = steps.AdversarialFinetuneTrainer(net, _source(generator), teachers, task, gen,
                                             weight=1.0, batch_size=BATCH, steps=10).build()
  trainer.step()
  traces = trainer.trace_count
  frozen = [v for t in teachers for v in t.variables]
  watched = net.trainable_variables + generator.trainable_variables
  before, before_frozen = _values(watched), _values(frozen)
  out = trainer.step()
  assert {"loss", "disagreement", "generator_loss"} <= set(out)
  assert all(np.isfinite(float(v)) for v in out.values())
  changed = _changed(before, watched)
  assert any(changed[:len(net.trainable_variables)])
  assert all(changed[len(net.trainable_variables):])  # every G variable moved
  assert not any(_changed(before_frozen, frozen))
  trainer.step()
  assert trainer.trace_count == traces
  # Its targets are GeneratorTrainer's concatenated predictions, re-indexed into Y_cst.
  image = tf.random.uniform((2,) + SHAPE)
  concat = tf.concat([t(image)["probs"] for t in teachers], axis=1)
  np.testing.assert_allclose(tf.gather(concat, trainer.target_cols, axis=1).numpy(),
                             teacher_pass.predictions_over_task(teachers, task, image).numpy(),
                             rtol=1e-5)


def test_joint_step_moves_g_and_the_student_each_by_its_own_loss_only(world):
  # DAFL's step (JointTrainer) from one state must equal, for G, a plain Step I update on
  # G's objective, and for the student, a distillation step on G's image before the update.
  teachers, task, _ = world
  settings = dict(batch_size=BATCH, alpha=0.1, beta=5.0, gamma=0.0, beta_1=0.9)
  make_g = lambda: GroupStackGenerator(teachers[0].feature_shapes, num_groups=1,
                                       latent_dim=8, width=16)
  make_s = lambda: build_resnet("tiny", len(task.labels), SHAPE, name="student")
  make_opt = lambda: optimizers.step_decay_sgd(0.05, 10, weight_decay=5e-4)
  g_joint, g_ref = make_g(), make_g()
  s_joint, s_ref = make_s(), make_s()
  z = _rng().normal([BATCH, 8])
  g_joint(z, training=False), g_ref(z, training=False)  # Builds both.
  g_ref.set_weights(g_joint.get_weights())
  s_ref.set_weights(s_joint.get_weights())
  frozen = [v for t in teachers for v in t.variables]
  before_frozen = _values(frozen)

  joint = steps.JointTrainer(steps.GeneratorTrainer(g_joint, teachers, rng=_rng(), **settings),
                             s_joint, teachers, task, optimizer=make_opt()).build()
  out = joint.step()
  assert set(out) >= {"loss", "generator_loss", "oh", "a", "ie"}

  # The reference: G's own step, and the student's distillation on G_0(z).
  image = g_ref(z, training=True)[-1]
  probs = tf.concat([t.tail(image, 0, training=False)["probs"] for t in teachers], axis=1)
  targets = tf.gather(probs, teacher_pass.target_columns(teachers, task), axis=1)
  steps.GeneratorTrainer(g_ref, teachers, rng=_rng(), **settings).build().step()
  optimizer = make_opt()
  with tf.GradientTape() as tape:
    loss = losses.distillation_loss(s_ref(image, training=True), targets)
  optimizer.apply(tape.gradient(loss, s_ref.trainable_variables), s_ref.trainable_variables)

  assert np.isclose(float(out["loss"]), float(loss), rtol=1e-5)
  for a, b in zip(g_joint.trainable_variables, g_ref.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
  for a, b in zip(s_joint.trainable_variables, s_ref.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
  assert not any(_changed(before_frozen, frozen))
  assert any(_changed(_values(s_ref.trainable_variables),
                      make_s().trainable_variables))  # The student did move.


def test_step_decay_sgd_drops_tenfold_at_40_and_80_percent():
  schedule = optimizers.step_decay(0.1, 100)
  lrs = [float(schedule(s)) for s in (0, 40, 41, 80, 81, 99)]
  np.testing.assert_allclose(lrs, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


@pytest.mark.parametrize("points", [{0: 1, 1: 1}, {0: 2, 1: 4}, {0: 4, 1: 4}, {0: 3, 1: 1}])
def test_regroup_sizes_count_what_regroup_builds(world, points):
  teachers, task, _ = world
  target = _blocknet(len(task.labels), "target_sz", list(task.labels))
  filters = {b: [steps.TeacherFilter(name=f"sz_f{m}_{b}") for m in range(2)] for b in (1, 2, 3)}
  for b, fs in filters.items():
    for f in fs:
      f.build((None,) + tuple(target.feature_shapes[b]))
  sizes = regroup_lib.regroup_sizes(target, teachers, filters, task)
  assert sizes.teachers_total == sum(t.num_params() for t in teachers)
  net = regroup_lib.regroup(target, teachers, filters, points, task)
  assert sizes.regrouped(points) == net.count_params()


def test_regroup_takes_teachers_whose_blocks_share_names(world):
  """Two teachers saved under one model name (your own, from one script): T_u names its
  copies of their blocks itself, so Keras finds every name in it once."""
  _, task, _ = world
  twins = [_blocknet(3, "same", ["a_0", "a_1", "a_2"]), _blocknet(2, "same", ["b_0", "b_1"])]
  for t in twins:
    t.freeze()
  assert twins[0].blocks[1].name == twins[1].blocks[1].name
  target = _blocknet(len(task.labels), "target_twins", list(task.labels))
  filters = {b: [steps.TeacherFilter(name=f"tw_f{m}_{b}") for m in range(2)] for b in (1, 2, 3)}
  net = regroup_lib.regroup(target, twins, filters, {0: 1, 1: 1}, task)
  names = [layer.name for layer in net.layers]
  assert len(names) == len(set(names))
  assert "t2_branch_block2" in names
  assert net(tf.random.uniform((2,) + SHAPE)).shape == (2, 3)


# ------------------------------------------------------- batch norm in Steps II–III
def _moving_stats(model):
  return [v.numpy().copy() for layer in model._flatten_layers(include_self=True, recursive=True)
          if isinstance(layer, keras.layers.BatchNormalization)
          for v in (layer.moving_mean, layer.moving_variance)]


@pytest.mark.parametrize("mode", ["train", "frozen"])
def test_block_step_batchnorm_mode(world, mode):
  """--target_bn: train moves block b's moving statistics; frozen keeps them and the
  affine parameters, while the convolutions still learn."""
  teachers, task, generator = world
  target = _blocknet(len(task.labels), f"target_bn_{mode}", list(task.labels))
  block = target.blocks[1]
  trainer = steps.BlockTrainer(target, 2, _source(generator), teachers, task,
                               batch_size=BATCH, steps=10, batchnorm=mode).build()
  stats = _moving_stats(block)
  assert stats
  bn_weights = [v.numpy().copy() for v in block.weights if "gamma" in v.path or "beta" in v.path]
  kernels = [v for v in block.trainable_variables if "kernel" in v.path]
  before = _values(kernels)
  trainer.step()
  trainer.step()
  moved = [not np.array_equal(a, b) for a, b in zip(stats, _moving_stats(block))]
  assert all(_changed(before, kernels))
  affine = [v for v in block.weights if "gamma" in v.path or "beta" in v.path]
  if mode == "frozen":
    assert not any(moved)
    assert not any(_changed(bn_weights, affine))
  else:
    assert all(moved)
    assert any(_changed(bn_weights, affine))


@pytest.mark.parametrize("branch_bn,trainable", [("train", True), ("frozen", True),
                                                 ("train", False)])
def test_finetune_leaves_branch_batchnorm_as_set(world, branch_bn, trainable):
  """--branch_bn and --finetune_trainable on T_u's copied teacher blocks in Step III."""
  teachers, task, generator = world
  target = _blocknet(len(task.labels), f"target_br_{branch_bn}_{trainable}", list(task.labels))
  filters = {b: [steps.TeacherFilter(name=f"br{branch_bn}{trainable}_f{m}_{b}")
                 for m in range(2)] for b in (1, 2, 3)}
  net = regroup_lib.regroup(target, teachers, filters, {0: 1, 1: 2}, task, branch_bn=branch_bn,
                      branch_trainable=trainable)
  copies = [layer for layer in net.layers if isinstance(layer, keras.Model)
            and not any(layer is b for b in target.blocks)]
  assert len(copies) == 5  # Teacher a's blocks 2-4, teacher b's 3-4.
  trunk = target.blocks[0]
  trainer = steps.FinetuneTrainer(net, _source(generator), teachers, task, batch_size=BATCH,
                                  steps=10).build()
  copy_stats, trunk_stats = [_moving_stats(c) for c in copies], _moving_stats(trunk)
  copy_weights = [_values(c.weights) for c in copies]
  trainer.step()
  trainer.step()
  for c, stats, weights in zip(copies, copy_stats, copy_weights):
    moved = [not np.array_equal(a, b) for a, b in zip(stats, _moving_stats(c))]
    assert any(moved) == (branch_bn == "train" and trainable)
    assert any(_changed(weights, c.weights)) == trainable
  # The TargetNet's own block keeps training with its batch statistics.
  assert any(not np.array_equal(a, b) for a, b in zip(trunk_stats, _moving_stats(trunk)))


def test_distill_temperature_is_the_loss_the_student_takes(world):
  teachers, task, generator = world
  net = _blocknet(len(task.labels), "target_t", list(task.labels)).source_model
  for bad in (dict(distill_temperature=0.0),
              dict(distill_temperature=4.0, distill_loss="logit_l1")):
    with pytest.raises(ValueError, match="distill_temperature"):
      steps.FinetuneTrainer(net, _source(generator), teachers, task, batch_size=BATCH,
                            steps=2, **bad)
  trainer = steps.FinetuneTrainer(net, _source(generator), teachers, task, batch_size=BATCH,
                                  steps=2, distill_temperature=4.0)
  image = tf.random.uniform((2,) + SHAPE)
  targets = teacher_pass.predictions_over_task(teachers, task, image)
  out = net(image, training=True)
  student = out["probs"] if isinstance(out, dict) else out
  want = priors.tempered_distillation(student, targets, 4.0)
  assert abs(float(want) - float(losses.distillation_loss(student, targets))) > 1e-3
  np.testing.assert_allclose(trainer.distil(net, image, targets), want, rtol=1e-5)


def test_distill_loss_logit_l1_is_the_loss_the_student_takes(world):
  teachers, task, generator = world
  net = _blocknet(len(task.labels), "target_l1", list(task.labels)).source_model
  with pytest.raises(ValueError, match="distill_loss"):
    steps.FinetuneTrainer(net, _source(generator), teachers, task, batch_size=BATCH, steps=2,
                          distill_loss="l2")
  trainer = steps.FinetuneTrainer(net, _source(generator), teachers, task, batch_size=BATCH,
                                  steps=2, distill_loss="logit_l1")
  image = tf.random.uniform((2,) + SHAPE)
  targets = teacher_pass.predictions_over_task(teachers, task, image)
  out = net(image, training=True)
  student = out["probs"] if isinstance(out, dict) else out
  want = priors.logit_l1_distillation(student, targets)
  assert abs(float(want) - float(losses.distillation_loss(student, targets))) > 1e-3
  np.testing.assert_allclose(trainer.distil(net, image, targets), want, rtol=1e-5)
