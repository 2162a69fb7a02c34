"""Eq. 18 by hand: η^{b,m}, the branch-out blocks S_m, and S_m under a size budget."""

import numpy as np
import pytest

from dfka_tf.errors import ConfigError
from dfka_tf.models import regroup as regroup_lib
from dfka_tf.task import TaskMap
from dfka_tf.train import branch_out


def test_eta_tail_is_the_last_tenth_of_the_steps():
  assert branch_out.eta_tail_start(100) == 90
  assert branch_out.eta_tail_start(20) == 18
  assert branch_out.eta_tail_start(5) == 4  # At least one step.


def test_block_eta_by_hand():
  # 20 steps: η averages steps 19 and 20 (the last 10 %). Teacher 1 (m = 1) is inactive.
  losses = [{0: 9.0, 1: 9.0, 2: 9.0}] * 18 + [{0: 0.5, 1: 7.0, 2: 0.25},
                                               {0: 1.5, 1: 7.0, 2: 0.75}]
  assert branch_out.block_eta(losses, 20, active=[0, 2]) == {0: 1.0, 2: 0.5}
  # A teacher missing from a step counts 0 there.
  assert branch_out.block_eta([{0: 2.0}, {2: 4.0}], 2, active=[0, 2]) == {0: 0.0, 2: 4.0}


def test_the_meter_measures_block_eta_bit_for_bit():
  rng = np.random.default_rng(0)
  steps = 37
  losses = [{m: float(v) for m, v in enumerate(rng.random(3))} for _ in range(steps)]
  meter = branch_out.EtaMeter(3, steps)
  for step, values in enumerate(losses, start=1):
    meter.update(step, values)
  assert meter.value([0, 1, 2]) == branch_out.block_eta(losses, steps, [0, 1, 2])


def test_branch_out_picks_argmin_and_deeper_on_ties():
  task = TaskMap.build([["a"], ["b"]])
  eta = {1: {0: 0.5, 1: 0.2}, 2: {0: 0.3, 1: 0.2}, 3: {0: 0.4, 1: 0.9}}
  assert branch_out.branch_out_blocks(eta, task) == {0: 2, 1: 2}


# --------------------------------------------------------------- the size budget (beyond the paper)
def _sizes():
  """Hand-made block sizes: B = 3, two teachers; T_u's parameter count at each choice is
  worked out below."""
  return regroup_lib.RegroupSizes(target_blocks=[10, 20, 30],
                                  teacher_blocks={0: [10, 20, 40], 1: [10, 20, 50]},
                                  filters={0: [1, 2], 1: [3, 4]}, teachers_total=150)


def test_regrouped_params_by_hand():
  s = _sizes()
  assert s.teachers_total == 150
  # {3, 3}: the TargetNet itself, 10 + 20 + 30.
  assert s.regrouped({0: 3, 1: 3}) == 60
  # {1, 1}: T^1 + (f_1^1 + 20 + 40) + (f_2^1 + 20 + 50) = 10 + 61 + 73.
  assert s.regrouped({0: 1, 1: 1}) == 144
  # {2, 3}: T^1, T^2, T's head 30, then f_1^2 + 40 = 42 for teacher 1.
  assert s.regrouped({0: 2, 1: 3}) == 10 + 20 + 30 + 42
  # {1, 2}: T^1, T^2 (the deepest point), f_1^1 + 20 + 40, f_2^2 + 50.
  assert s.regrouped({0: 1, 1: 2}) == 10 + 20 + 61 + 54
  assert s.smallest(TaskMap.build([["a"], ["b"]])) == {0: 3, 1: 3}


def test_budget_picks_least_eta_among_the_choices_that_fit():
  task = TaskMap.build([["a"], ["b"]])
  s = _sizes()
  # Eq. 18 alone picks {1, 1} (144 parameters, 0.96 of the teachers').
  eta = {1: {0: 0.1, 1: 0.1}, 2: {0: 0.3, 1: 0.2}, 3: {0: 0.5, 1: 0.6}}
  assert branch_out.branch_out_blocks(eta, task) == {0: 1, 1: 1}
  assert branch_out.branch_out_within_budget(eta, task, s, 1.0) == {0: 1, 1: 1}
  # Budget 0.6 (90 parameters) fits {3, 3} = 60, {2, 3} = 102 no, {3, 2} = 10+20+30+54 no,
  # {2, 2} = 10 + 20 + 42 + 54 = 126 no: only {3, 3}.
  assert branch_out.branch_out_within_budget(eta, task, s, 0.6) == {0: 3, 1: 3}
  # Budget 0.75 (112): {2, 3} = 102 (η 0.3 + 0.6) fits; {3, 2} = 114 does not.
  assert branch_out.branch_out_within_budget(eta, task, s, 0.75) == {0: 2, 1: 3}


def test_budget_that_nothing_fits_names_the_smallest_t_u():
  task = TaskMap.build([["a"], ["b"]])
  with pytest.raises(ConfigError, match=r"smallest T_u .* has 60 \(0\.400 of the "
                     r"teachers', S_m = \{'teacher1': 3, 'teacher2': 3\}\); raise the "
                     r"budget to at least 0\.4"):
    regroup_lib.check_param_budget(0.39, _sizes(), task)
  regroup_lib.check_param_budget(0.4, _sizes(), task)  # 60 of 150 fits exactly.
  # The budget the error suggests always fits, float rounding included (0.29 * 100 < 29).
  sizes = regroup_lib.RegroupSizes([29], {0: [50]}, {0: []}, teachers_total=100)
  regroup_lib.check_param_budget(0.29, sizes, TaskMap.build([["a"]]))


def test_budget_refuses_a_search_too_large_to_enumerate():
  task = TaskMap.build([[f"l{m}"] for m in range(10)])  # 4^10 > 100,000 choices.
  sizes = regroup_lib.RegroupSizes([1] * 4, {m: [1] * 4 for m in range(10)},
                                   {m: [0] * 3 for m in range(10)}, teachers_total=40)
  with pytest.raises(ConfigError, match="--branch_out instead"):
    regroup_lib.check_param_budget(0.5, sizes, task)
