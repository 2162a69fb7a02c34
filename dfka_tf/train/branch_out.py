"""Eq. 18: η^{b,m}, how well TargetNet block b stands in for teacher m's first b blocks, and
the branch-out blocks S_m = argmin_b η^{b,m} it chooses (also under a size budget).

η^{b,m} is L_dual^{b,m}(F_in^1) (Eq. 14) averaged over the last 10 % of block b's Step II
steps (`block_eta`); `EtaMeter` accumulates the same average step by step, in variables a
checkpoint saves, so a resumed block measures η exactly as an unbroken one.
"""

from typing import Dict, Mapping, Sequence

import numpy as np
import tensorflow as tf

from dfka_tf.models.regroup import RegroupSizes, check_param_budget, fits_budget
from dfka_tf.task import TaskMap


def eta_tail_start(block_steps: int) -> int:
  """η^{b,m} averages L_dual^{b,m}(F_in^1) over the steps after this one (the last 10 %)."""
  return block_steps - max(1, block_steps // 10)


def block_eta(dual_losses: Sequence[Mapping[int, float]], block_steps: int,
              active: Sequence[int]) -> Dict[int, float]:
  """η^{b,m} of Eq. 18 for one block b: {m: mean of L_dual^{b,m} over steps
  `eta_tail_start`+1..`block_steps`}, for the active teachers m.

  Args:
    dual_losses: per Step II step t = 1, 2, ... of block b, {m: L_dual^{b,m}(F_in^1)}.
    block_steps: the block's number of steps.
    active: the teachers to measure.

  The sum is taken in float32, step after step, as `EtaMeter` takes it.
  """
  sums = np.zeros([max(active, default=-1) + 1], np.float32)
  count = 0.0
  for step, values in enumerate(dual_losses, start=1):
    if step > eta_tail_start(block_steps):
      sums = sums + np.asarray([values.get(m, 0.0) for m in range(len(sums))], np.float32)
      count += 1.0
  count = max(count, 1.0)
  return {m: float(sums[m] / count) for m in active}


class EtaMeter:
  """`block_eta`, accumulated step by step in variables (`sum`, `count`) that a block's
  checkpoint saves.

  Args:
    num_teachers: M.
    block_steps: the block's number of steps.
  """

  def __init__(self, num_teachers: int, block_steps: int):
    self.num_teachers = int(num_teachers)
    self.tail_start = eta_tail_start(block_steps)
    self.sum = tf.Variable(tf.zeros([self.num_teachers]), trainable=False)
    self.count = tf.Variable(0.0, trainable=False)

  def update(self, step: int, dual_losses: Mapping[int, float]):
    """Adds step `step`'s (1-based) {m: L_dual^{b,m}} where it is in the tail."""
    if step > self.tail_start:
      self.count.assign_add(1.0)
      self.sum.assign_add([dual_losses.get(m, 0.0) for m in range(self.num_teachers)])

  def value(self, active: Sequence[int]) -> Dict[int, float]:
    """{m: η^{b,m}} for the active teachers."""
    sums, count = self.sum.numpy(), max(float(self.count.numpy()), 1.0)
    return {m: float(sums[m] / count) for m in active}


def branch_out_blocks(eta: Dict[int, Dict[int, float]], task: TaskMap) -> Dict[int, int]:
  """S_m = argmin_b η^{b,m} (Eq. 18), for every active teacher m.

  Args:
    eta: {block b (1-based): {teacher m: η^{b,m}}}.

  Returns:
    {m: S_m}; ties go to the deeper block (a smaller T_u needs fewer copied teacher blocks).
  """
  out = {}
  for m in task.active:
    values = {b: e[m] for b, e in eta.items() if m in e}
    best = min(values.values())
    out[m] = max(b for b, v in values.items() if v == best)
  return out


def branch_out_within_budget(eta: Dict[int, Dict[int, float]], task: TaskMap,
                             sizes: RegroupSizes, budget: float) -> Dict[int, int]:
  """Eq. 18 under a size budget (beyond the paper; --target_param_budget).

  Among the choices {m: S_m} whose T_u has at most `budget` × the teachers' parameters,
  the one with the least Σ_m η^{S_m,m}; without a binding budget this is Eq. 18's
  per-teacher argmin. Ties go to the smaller T_u.

  Raises:
    ConfigError: no choice fits (`check_param_budget`).
  """
  fits = [p for p in sizes.candidates(task) if fits_budget(sizes.regrouped(p), budget, sizes)]
  if not fits:  # Then the smallest T_u does not fit either: the error names it.
    check_param_budget(budget, sizes, task)
  return min(fits, key=lambda p: (sum(eta[p[m]][m] for m in task.active), sizes.regrouped(p)))
