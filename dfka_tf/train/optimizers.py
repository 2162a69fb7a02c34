"""The optimisers of the training steps: the paper's poly-LR SGD (§5.1) and DAFL's step decay."""

import keras


def poly_sgd(base_lr: float, steps: int, *, power: float = 0.9, momentum: float = 0.9,
             weight_decay: float = 5e-3) -> keras.optimizers.Optimizer:
  """The paper's optimiser (§5.1): SGD with momentum, poly LR (base 0.01, power 0.9), wd 5e-3."""
  schedule = keras.optimizers.schedules.PolynomialDecay(
      base_lr, decay_steps=max(int(steps), 1), end_learning_rate=0.0, power=power)
  return maybe_loss_scaled(keras.optimizers.SGD(
      schedule, momentum=momentum, weight_decay=weight_decay or None))


def maybe_loss_scaled(optimizer):
  """`optimizer`, wrapped in Keras' loss scaling under the mixed_float16 policy."""
  # Under mixed_float16 small float16 gradients underflow; Keras' loss scaling avoids it.
  if keras.config.dtype_policy().name == "mixed_float16":
    return keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def step_decay(base_lr: float, steps: int):
  """DAFL's LR schedule: x0.1 at 40 % and 80 % of the steps (its CIFAR code: epochs 800
  and 1600 of 2000)."""
  bounds = [max(1, int(0.4 * steps)), max(2, int(0.8 * steps))]
  return keras.optimizers.schedules.PiecewiseConstantDecay(
      bounds, [base_lr, base_lr * 0.1, base_lr * 0.01])


def step_decay_sgd(base_lr: float, steps: int, *, weight_decay: float,
                   momentum: float = 0.9) -> keras.optimizers.Optimizer:
  """DAFL's student optimiser: SGD with momentum and `step_decay`."""
  return maybe_loss_scaled(keras.optimizers.SGD(
      step_decay(base_lr, steps), momentum=momentum, weight_decay=weight_decay or None))
