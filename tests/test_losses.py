"""Every loss against values worked out by hand on 2x2 tensors (arithmetic in comments).

The paper's losses are in `dfka_tf.losses`, the priors beyond the paper in `dfka_tf.priors`.
"""

import pytest
import tensorflow as tf

from dfka_tf import losses
from dfka_tf import priors

# The probabilities most tests share; rows are samples, columns labels.
P = [[0.8, 0.3], [0.5, 0.1]]


class LossesTest(tf.test.TestCase):

  def test_binary_cross_entropy(self):
    # -(ln .8 + ln .7) / 2 = (0.22314355 + 0.35667494) / 2
    self.assertAllClose(losses.binary_cross_entropy([[0.8, 0.3]], [[1.0, 0.0]]), 0.28990925)

  def test_binary_cross_entropy_is_finite_at_saturation(self):
    # Both entries are confidently wrong; y is clipped to [1e-7, 1 - 1e-7] before the log, so
    # each costs about -ln 1e-7 = 16.118 (not inf). In float32 1 - 1e-7 rounds to
    # 1 - 1.1920929e-7, so the first costs -ln 1.1920929e-7 = 15.942385:
    # (15.942385 + 16.118096) / 2 = 16.030240.
    loss = losses.binary_cross_entropy([[1.0, 0.0]], [[0.0, 1.0]])
    self.assertAllClose(loss, 16.030240, rtol=1e-5)

  def test_one_hot_loss_eq7(self):
    # t = 1[y >= .5] = [[1, 0], [1, 0]] (0.5 counts as positive, Eq. 6).
    # -ln .8, -ln .7, -ln .5, -ln .9 = .22314355, .35667494, .69314718, .10536052; mean:
    self.assertAllClose(losses.one_hot_loss(P), 0.34458155)

  def test_one_hot_loss_threshold_epsilon(self):
    # ε = 0.3: t = [[1, 1], [1, 0]], so y = .3 now counts as on and costs -ln .3 = 1.2039728.
    # (.22314355 + 1.2039728 + .69314718 + .10536052) / 4:
    self.assertAllClose(losses.one_hot_loss(P, epsilon=0.3), 0.55640601)

  def test_one_hot_loss_gradient_is_against_a_fixed_target(self):
    # t = 1[y >= .5] is a comparison, which never carries a gradient; the test is that ℓ is
    # taken against that t and not, say, against y itself (the soft self-entropy).
    y = tf.Variable([[0.8, 0.3]])
    with tf.GradientTape() as tape:
      loss = losses.one_hot_loss(y)
    # d/dy of -ln y = -1/y over 2 elements: -1/(2*.8); d/dy -ln(1-y) = 1/(1-y)/2 = 1/1.4.
    # (Against t = y the gradient would be -ln(y / (1 - y)) / 2 = [-.693, .424].)
    self.assertAllClose(tape.gradient(loss, y), [[-0.625, 1 / 1.4]])

  def test_cross_entropy_soft_targets_carry_no_gradient(self):
    # A soft target does have a gradient unless it is stopped: dℓ/dt = (ln(1-y) - ln y) / 2
    # = [-.693, .424] here. The prediction's: dℓ/dy = (y - t) / (y (1 - y)) / 2 elements:
    # (.8 - .6) / .16 / 2 = .625; (.3 - .5) / .21 / 2 = -.47619048.
    y = tf.Variable([[0.8, 0.3]])
    t = tf.Variable([[0.6, 0.5]])
    for loss_fn in (losses.binary_cross_entropy, losses.dual_loss_per_teacher,
                    losses.distillation_loss):
      with tf.GradientTape() as tape:
        loss = loss_fn(y, t)
      grad_y, grad_t = tape.gradient(loss, [y, t])
      self.assertIsNone(grad_t)
      self.assertAllClose(grad_y, [[0.625, -0.47619048]])

  def test_activation_loss_s_eq2(self):
    # Teacher 1: mean |.| of [[1,-2],[3,0]] = 6/4 = 1.5; teacher 2: mean of [.5, 1.5] = 1.
    # -(1.5 + 1.0) / 2 teachers.
    loss = losses.activation_loss([tf.constant([[1.0, -2.0], [3.0, 0.0]]),
                                   tf.constant([[0.5], [1.5]])])
    self.assertAllClose(loss, -1.25)

  def test_information_entropy_loss_s_eq3(self):
    # Batch means p = [.4, .5]. H(.4) = .4 ln .4 + .6 ln .6 = -.36651629 - .30649537;
    # H(.5) = ln .5 = -.69314718; (1/C) Σ = (-.67301166 - .69314718) / 2.
    self.assertAllClose(losses.information_entropy_loss([[0.2, 0.5], [0.6, 0.5]]), -0.68307942)

  def test_information_entropy_loss_prefers_balanced_labels(self):
    # Balanced: p = [.5, .5], each H = ln .5, the minimum -ln 2 = -.69314718.
    # Collapsed: p = [1, 0], clipped to [1 - 1e-7, 1e-7]: H = 1e-7 ln 1e-7 + ... ≈ -1.7e-6 ≈ 0.
    balanced = losses.information_entropy_loss([[1.0, 0.0], [0.0, 1.0]])
    collapsed = losses.information_entropy_loss([[1.0, 0.0], [1.0, 0.0]])
    self.assertAllClose(balanced, -0.69314718)
    self.assertAllClose(collapsed, 0.0, atol=1e-5)

  def test_discrete_loss_eq8_both_signs(self):
    # (1/C) Σ|y| averaged over the batch: (.2 + .4 + .6 + 0) / 4 = .3.
    probs = [[0.2, 0.4], [0.6, 0.0]]
    self.assertAllClose(losses.discrete_loss(probs, "sparse"), 0.3)
    self.assertAllClose(losses.discrete_loss(probs, "printed"), -0.3)
    with pytest.raises(ValueError, match="sign"):
      losses.discrete_loss(probs, "up")

  def test_gan_loss_eq9(self):
    # oh = .34458155 (above); a = -1.5 (features [[1,-2],[3,0]]);
    # ie: p = [.65, .2]: H(.65) = .65 ln .65 + .35 ln .35 = -.64744664,
    #     H(.2) = .2 ln .2 + .8 ln .8 = -.50040242, mean -.57392453;
    # dis (sparse) = mean(.8, .3, .5, .1) = .425.
    # total = .34458155 - 1.5 - .57392453 + 5 * .425 = .39565702.
    total, terms = losses.gan_loss(P, [tf.constant([[1.0, -2.0], [3.0, 0.0]])])
    self.assertAllClose(terms["oh"], 0.34458155)
    self.assertAllClose(terms["a"], -1.5)
    self.assertAllClose(terms["ie"], -0.57392453)
    self.assertAllClose(terms["dis"], 0.425)
    self.assertAllClose(total, 0.39565702)
    # Weights are applied: α=2, β=0, γ=0 -> .34458155 - 3.
    total, _ = losses.gan_loss(P, [tf.constant([[1.0, -2.0], [3.0, 0.0]])], 2.0, 0.0, 0.0)
    self.assertAllClose(total, 0.34458155 - 3.0)

  def test_joint_loss_eq12(self):
    # Feature-side predictions F = [[.6, .3], [.5, .2]] against image targets P (soft):
    # t=.8,y=.6: -(.8 ln .6 + .2 ln .4) = .59191865;  t=.3,y=.3: .61086430;
    # t=.5,y=.5: ln 2 = .69314718;                     t=.1,y=.2: -(.1 ln .2 + .9 ln .8) = .36177299
    # mean = .56442578; averaged over two identical groups it stays .56442578.
    f = tf.constant([[0.6, 0.3], [0.5, 0.2]])
    feats = [tf.constant([[1.0, -2.0], [3.0, 0.0]])]
    total, terms = losses.joint_loss(P, feats, [f, f])
    self.assertAllClose(terms["align"], 0.56442578)
    self.assertAllClose(terms["gan"], 0.39565702)
    self.assertAllClose(total, 0.39565702 + 0.56442578)
    # K = 1: no intermediate groups, L_joint = L_gan.
    total, terms = losses.joint_loss(P, feats, [])
    self.assertAllClose(total, 0.39565702)
    self.assertAllClose(terms["align"], 0.0)

  def test_joint_loss_alignment_targets_carry_no_gradient(self):
    image = tf.Variable(P)
    feature = tf.Variable([[0.6, 0.3], [0.5, 0.2]])
    with tf.GradientTape(persistent=True) as tape:
      _, terms = losses.joint_loss(image, [tf.ones([2, 1])], [feature])
    self.assertIsNone(tape.gradient(terms["align"], image))
    # dℓ/dy = (y - t) / (y (1 - y)) / 4 elements, t = P:
    # (.6 - .8) / .24 / 4 = -.20833333; (.3 - .3) -> 0; (.5 - .5) -> 0; (.2 - .1) / .16 / 4 = .15625.
    self.assertAllClose(tape.gradient(terms["align"], feature),
                        [[-0.20833333, 0.0], [0.0, 0.15625]])
    # The image side still trains through L_gan: d oh / dy at y = .8 (t = 1) is -1/(4 * .8).
    self.assertAllClose(tape.gradient(terms["oh"], image)[0, 0], -0.3125)

  def test_dual_losses_eq14_15_17(self):
    # Eq. 14 is ℓ against the teacher's soft prediction: same numbers as above.
    self.assertAllClose(
        losses.dual_loss_per_teacher([[0.6, 0.3], [0.5, 0.2]], P), 0.56442578)
    # Eq. 15: 1 * .5 + 2 * .25.
    self.assertAllClose(losses.dual_loss([0.5, 0.25], [1.0, 2.0]), 1.0)
    self.assertAllClose(losses.dual_loss([0.5, 0.25]), 0.75)
    with pytest.raises(ValueError, match="weights"):
      losses.dual_loss([0.5, 0.25], [1.0])
    # Eq. 17: λ1 * 1 + λ2 * .5.
    self.assertAllClose(losses.block_loss(1.0, 0.5, 1.0, 1.0), 1.5)
    self.assertAllClose(losses.block_loss(1.0, 0.5, 1.0, 0.0), 1.0)
    self.assertAllClose(losses.block_loss(1.0, 0.5, 0.0, 1.0), 0.5)
    self.assertAllClose(losses.block_loss(1.0, None, 1.0, 1.0), 1.0)

  def test_distillation_loss(self):
    self.assertAllClose(losses.distillation_loss([[0.6, 0.3], [0.5, 0.2]], P), 0.56442578)

  def test_disagreement_loss(self):
    # |.6-.5| + |.3-.9| + |.5-.5| + |.2-.0| = .1 + .6 + 0 + .2 = .9, over 4 entries = .225.
    self.assertAllClose(
        priors.disagreement_loss([[0.6, 0.3], [0.5, 0.2]], [[0.5, 0.9], [0.5, 0.0]]), 0.225)

  def test_logit_l1_distillation(self):
    # logit(.5) = 0, logit(.8) = log 4 = 1.386294; logit(.2) = -log 4 on both sides: 0.
    # Mean over 2 entries: .693147.
    self.assertAllClose(
        priors.logit_l1_distillation([[0.5, 0.2]], [[0.8, 0.2]]), 0.693147, atol=1e-5)
    # A sure teacher (t = 1) is clipped to 1 - 1e-6, which float32 holds as 0.99999899: its
    # 1 - t is 1.013279e-6 and its logit log(0.99999899 / 1.013279e-6) = 13.802318 (not
    # infinite); against s = .5 (logit 0), and t = s = .9 (0): mean 6.901159.
    self.assertAllClose(
        priors.logit_l1_distillation([[0.5, 0.9]], [[1.0, 0.9]]), 6.901159, atol=1e-3)

  def test_tempered_distillation(self):
    # T = 2. Label 1: s = .5 (logit 0 -> σ(0) = .5), t = .8 (logit log 4 -> σ(log 2) = 2/3):
    # ℓ(.5, 2/3) = -(2/3 log .5 + 1/3 log .5) = log 2. Label 2: s = t = .5: log 2. Mean log 2
    # = .693147, times T² = 2.772589.
    self.assertAllClose(
        priors.tempered_distillation([[0.5, 0.5]], [[0.8, 0.5]], 2.0), 2.772589, atol=1e-5)
    # T = 1 is the plain cross-entropy (up to the clipping at 1e-6).
    s, t = [[0.3, 0.9]], [[0.6, 0.05]]
    self.assertAllClose(priors.tempered_distillation(s, t, 1.0),
                        losses.distillation_loss(s, t), atol=1e-5)

  def test_weighted_binary_cross_entropy(self):
    # ℓ(.8, 1) = -log .8 = .223144; ℓ(.3, 0) = -log .7 = .356675. Weights 1 and 3:
    # (.223144 + 3 × .356675) / 2 = .646584. Weights of 1 give the paper's ℓ.
    self.assertAllClose(priors.weighted_binary_cross_entropy([[0.8, 0.3]], [[1.0, 0.0]],
                                                             [[1.0, 3.0]]), 0.646584)
    self.assertAllClose(priors.weighted_binary_cross_entropy([[0.8, 0.3]], [[1.0, 0.0]],
                                                             [[1.0, 1.0]]),
                        losses.binary_cross_entropy([[0.8, 0.3]], [[1.0, 0.0]]))

  def test_feature_hint_loss(self):
    # Image 0: a = [3, 4] -> [.6, .8]; t = [0, 2] -> [0, 1]: (.6)² + (.2)² = .4.
    # Image 1: a = [1, 0] -> [1, 0]; t = [0, 5] -> [0, 1]: 1 + 1 = 2. Mean (.4 + 2) / 2 = 1.2.
    a = tf.reshape(tf.constant([3.0, 4.0, 1.0, 0.0]), [2, 1, 1, 2])
    t = tf.reshape(tf.constant([0.0, 2.0, 0.0, 5.0]), [2, 1, 1, 2])
    self.assertAllClose(priors.feature_hint_loss(a, t), 1.2, atol=1e-5)
    self.assertAllClose(priors.feature_hint_loss(7.0 * t, t), 0.0, atol=1e-6)  # Scale-free.
    with tf.GradientTape() as tape:
      tape.watch(t)
      loss = priors.feature_hint_loss(a, t)
    self.assertIsNone(tape.gradient(loss, t))  # The teacher's features are the target.

  def test_total_variation_loss(self):
    # One 2x2 grey image [[0, 1], [2, 4]]: vertical differences 2, 3 -> mean square 6.5;
    # horizontal differences 1, 2 -> mean square 2.5; sum 9.
    image = tf.reshape(tf.constant([0.0, 1.0, 2.0, 4.0]), [1, 2, 2, 1])
    self.assertAllClose(priors.total_variation_loss(image), 9.0)

  def test_inversion_loss(self):
    # ℓ([[.8, .2]], [[1, 0]]) = -(log .8 + log .8) / 2 = -log .8 = 0.2231436;
    # L_tv of the image above is 9; total = 0.2231436 + 2 * 0.5 + 0.01 * 9 = 1.3131436.
    image = tf.reshape(tf.constant([0.0, 1.0, 2.0, 4.0]), [1, 2, 2, 1])
    total, terms = priors.inversion_loss([[0.8, 0.2]], [[1.0, 0.0]], image, 0.5,
                                         bns_weight=2.0, tv_weight=0.01)
    self.assertAllClose(terms["ce"], 0.2231436, atol=1e-6)
    self.assertAllClose(terms["bns"], 0.5)
    self.assertAllClose(terms["tv"], 9.0)
    self.assertAllClose(total, 1.3131436, atol=1e-6)

  def test_batchnorm_statistics_loss(self):
    # Batch [[1, 2], [3, 6]]: means [2, 4], variances [1, 4] -> stds [1, 2] (+1e-5 inside).
    # Running mean [2, 3], variance [1, 1]: ||Δμ||² = 0 + 1; ||Δσ||² = 0 + (2 - 1)² = 1.
    loss = priors.batchnorm_statistics_loss(
        [tf.constant([[1.0, 2.0], [3.0, 6.0]])],
        [(tf.constant([2.0, 3.0]), tf.constant([1.0, 1.0]))])
    self.assertAllClose(loss, 2.0, atol=1e-5)

  def test_batchnorm_statistics_loss_norm_form(self):
    # Same batch: ||Δμ||_2 = ||[0, 1]|| = 1; variances [1, 4] vs [1, 1]: ||Δσ²||_2 = 3.
    loss = priors.batchnorm_statistics_loss(
        [tf.constant([[1.0, 2.0], [3.0, 6.0]])],
        [(tf.constant([2.0, 3.0]), tf.constant([1.0, 1.0]))], form="norm")
    self.assertAllClose(loss, 4.0, atol=1e-5)
    with self.assertRaisesRegex(ValueError, "unknown L_bns form"):
      priors.batchnorm_statistics_loss([tf.zeros([2, 1])], [(tf.zeros([1]), tf.ones([1]))],
                                       form="l1")

  def test_batchnorm_statistics_loss_with_momentum(self):
    # Same batch (means [2, 4], variances [1, 4]) blended half and half with earlier means
    # [0, 2] and variances [1, 0]: [1, 3] and [1, 2]. Against running [2, 3] and [1, 1] the
    # norm form gives ||[-1, 0]|| + ||[0, 1]|| = 2.
    loss = priors.batchnorm_statistics_loss(
        [tf.constant([[1.0, 2.0], [3.0, 6.0]])],
        [(tf.constant([2.0, 3.0]), tf.constant([1.0, 1.0]))], form="norm",
        history=[(tf.constant([0.0, 2.0]), tf.constant([1.0, 0.0]))], momentum=0.5)
    self.assertAllClose(loss, 2.0, atol=1e-5)
    # Kept statistics at m = 0.25: 0.25 [0, 2] + 0.75 [2, 4] = [1.5, 3.5]; variances
    # 0.25 [1, 0] + 0.75 [1, 4] = [1, 3].
    (mean, var), = priors.blend_statistics(
        [(tf.constant([0.0, 2.0]), tf.constant([1.0, 0.0]))],
        priors.batch_statistics([tf.constant([[1.0, 2.0], [3.0, 6.0]])]), 0.25)
    self.assertAllClose(mean, [1.5, 3.5])
    self.assertAllClose(var, [1.0, 3.0])

  def test_auxiliary_classifier_loss(self):
    # Teacher [.9, .2] -> labels [1, 0]; BCE of [.8, .3] against them = .28990925.
    self.assertAllClose(
        priors.auxiliary_classifier_loss([[0.8, 0.3]], [[0.9, 0.2]]), 0.28990925)
