"""T_u (Eq. 19–20): the TargetNet regrouped into one branch per teacher, the teachers side by
side as one model, and the parameter counts a size budget compares.

`regroup` builds T_u from Step II's TargetNet, its filters f_m^b and copies of the teachers'
blocks; `teacher_ensemble` is the "Teacher" row of Table 1 as one model; `RegroupSizes`
counts T_u's parameters for every branch-out choice without building it, for
`--target_param_budget` (beyond the paper).
"""

import dataclasses
import itertools
import math
from typing import Dict, List, Sequence

import keras

from dfka_tf.errors import ConfigError
from dfka_tf.models.filters import TaskFilter, TeacherFilter
from dfka_tf.models.target import freeze_batchnorm
from dfka_tf.task import TaskMap


def regroup(target, teachers: Sequence, block_filters: Dict[int, Sequence[TeacherFilter]],
            branch_points: Dict[int, int], task: TaskMap, name: str = "target_net", *,
            branch_bn: str = "train", branch_trainable: bool = False):
  """T_u (Eq. 19–20): shared T^1..T^{min S_m}, then one branch per teacher.

  T_m = [T^1..T^{S_m}, f_m^{S_m}, A_m^{S_m+1}..A_m^B, g_m] (Eq. 19). The teacher blocks are
  copies (the frozen teachers stay untouched: they are the fine-tuning targets), kept as the
  teachers have them or, with `branch_trainable`, fine-tuned with the rest of T_u; for
  S_m = B the branch is the TargetNet's own head. The output is one probability vector over
  Y_cst in the user's order.

  Args:
    target: the TargetNet (a BlockNet) after Step II.
    teachers: the frozen teachers (BlockNets).
    block_filters: {b: [f_1^b, ..., f_M^b]} trained in Step II.
    branch_points: {m: S_m}.
    branch_bn: with `branch_trainable`, "frozen" freezes the copies' batch norms
      (`freeze_batchnorm`), "train" leaves them to Step III's batches.
    branch_trainable: fine-tune the copies too (--finetune_trainable=all); False keeps them
      frozen, batch norm in inference mode (--finetune_trainable=trunk, the default).

  Returns:
    a functional keras.Model image -> probabilities [N, |Y_cst|].
  """
  num_blocks = len(target.blocks)
  image = keras.Input(target.feature_shapes[0], name="image")
  deepest = max(branch_points.values())
  trunk = [image]
  for i in range(min(deepest, num_blocks - 1)):
    trunk.append(target.blocks[i](trunk[-1]))
  pieces, head = [], None
  for m in task.active:
    s = branch_points[m]
    if s == num_blocks:
      if head is None:  # Teachers branching at B share T's own head: run it once.
        head = target.blocks[-1](trunk[num_blocks - 1])["probs"]
      pieces.append(TaskFilter(task.cst_cols[m], name=f"g{m + 1}")(head))
      continue
    x = block_filters[s][m](trunk[s])
    for i in range(s, num_blocks):
      copy = _branch_copy(teachers[m].blocks[i], f"t{m + 1}_branch_block{i + 1}",
                          branch_trainable)
      if branch_trainable and branch_bn == "frozen":
        freeze_batchnorm(copy)
      x = copy(x)
    pieces.append(TaskFilter(task.teacher_cols[m], name=f"g{m + 1}")(x["probs"]))
  merged = pieces[0] if len(pieces) == 1 else keras.layers.Concatenate(name="branches")(pieces)
  out = TaskFilter(task.order, name="probabilities")(merged)
  return keras.Model(image, out, name=name)


def teacher_ensemble(teachers: Sequence, task: TaskMap, name: str = "teachers") -> keras.Model:
  """The teachers side by side as one model over Y_cst (the "Teacher" row of Table 1)."""
  image = keras.Input(teachers[0].feature_shapes[0], name="image")
  pieces = []
  for m in task.active:
    x = image
    for i, blk in enumerate(teachers[m].blocks):
      x = blk(x, training=False)
    pieces.append(TaskFilter(task.teacher_cols[m], name=f"g{m + 1}")(x["probs"]))
  merged = pieces[0] if len(pieces) == 1 else keras.layers.Concatenate(name="branches")(pieces)
  return keras.Model(image, TaskFilter(task.order, name="probabilities")(merged), name=name)


def _branch_copy(model, name, trainable: bool):
  """A copy of a frozen teacher block, trainable or frozen in every layer.

  A clone keeps each inner layer's trainable=False from the frozen teacher's config, and
  setting `trainable` on the cloned block does not reach them, so every layer is set here.
  """
  copy = keras.models.clone_model(model)
  copy.set_weights(model.get_weights())
  for layer in copy._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    layer.trainable = trainable
  copy.name = name  # Unique in T_u: two teachers' blocks may share their names.
  return copy


# The most branch-out choices (B^M) the size budget searches one by one.
MAX_BUDGET_CHOICES = 100_000


@dataclasses.dataclass(frozen=True)
class RegroupSizes:
  """The parameter counts T_u is assembled from (Eq. 19–20), for the size budget.

  Attributes:
    target_blocks: parameters of TargetNet blocks 1..B (block B with its head).
    teacher_blocks: {m: parameters of teacher m's blocks 1..B}, for the active teachers.
    filters: {m: parameters of f_m^1..f_m^{B-1}}.
    teachers_total: every teacher's parameters together (results.json's
      params.teachers_total), what the budget is a fraction of.
  """
  target_blocks: Sequence[int]
  teacher_blocks: Dict[int, Sequence[int]]
  filters: Dict[int, Sequence[int]]
  teachers_total: int

  def regrouped(self, points: Dict[int, int]) -> int:
    """Parameters of T_u at branch-out blocks `points` ({m: S_m}), as `regroup` builds it:
    the shared trunk T^1..T^{min(max S_m, B-1)}, T's head where some S_m = B, and for each
    S_m < B the filter f_m^{S_m} and the copies of teacher m's blocks S_m+1..B."""
    num_blocks = len(self.target_blocks)
    deepest = max(points.values())
    total = sum(self.target_blocks[:min(deepest, num_blocks - 1)])
    if deepest == num_blocks:
      total += self.target_blocks[-1]
    for m, s in points.items():
      if s < num_blocks:
        total += self.filters[m][s - 1] + sum(self.teacher_blocks[m][s:])
    return int(total)

  def candidates(self, task: TaskMap) -> List[Dict[int, int]]:
    """Every choice of {m: S_m}, S_m in 1..B, for the active teachers."""
    num_blocks = len(self.target_blocks)
    if num_blocks ** len(task.active) > MAX_BUDGET_CHOICES:
      raise ConfigError(
          f"--target_param_budget searches every choice of S_m, {num_blocks}^"
          f"{len(task.active)} for {len(task.active)} teachers of {num_blocks} blocks: more "
          f"than {MAX_BUDGET_CHOICES:,}. Use fewer teachers, or --branch_out instead.")
    blocks = range(1, num_blocks + 1)
    return [dict(zip(task.active, c)) for c in itertools.product(blocks, repeat=len(task.active))]

  def smallest(self, task: TaskMap) -> Dict[int, int]:
    """The branch-out points of the smallest T_u (ties: the deeper points)."""
    return min(self.candidates(task),
               key=lambda p: (self.regrouped(p), [-p[m] for m in task.active]))


def regroup_sizes(target, teachers: Sequence,
                  block_filters: Dict[int, Sequence[TeacherFilter]], task: TaskMap
                  ) -> RegroupSizes:
  """The sizes of `regroup`'s parts: the TargetNet's and the teachers' blocks (BlockNets)
  and the built filters {b: [f_1^b, ..., f_M^b]}."""
  num_blocks = len(target.blocks)
  return RegroupSizes(
      target_blocks=[int(b.count_params()) for b in target.blocks],
      teacher_blocks={m: [int(b.count_params()) for b in teachers[m].blocks]
                      for m in task.active},
      filters={m: [int(block_filters[b][m].count_params()) for b in range(1, num_blocks)]
               for m in task.active},
      teachers_total=int(sum(t.num_params() for t in teachers)))


def fits_budget(params: int, budget: float, sizes: RegroupSizes) -> bool:
  """Whether a T_u of `params` parameters fits --target_param_budget=`budget` (a fraction of
  the teachers' total; beyond the paper). The relative slack absorbs float rounding, so the
  budget the error suggests is always accepted."""
  return params <= budget * sizes.teachers_total * (1 + 1e-9)


def check_param_budget(budget: float, sizes: RegroupSizes, task: TaskMap):
  """Raises ConfigError when no T_u fits the budget, naming the smallest there is."""
  smallest = sizes.smallest(task)
  need = sizes.regrouped(smallest)
  if not fits_budget(need, budget, sizes):
    shown = {f"teacher{m + 1}": v for m, v in smallest.items()}
    raise ConfigError(
        f"--target_param_budget={budget:g} allows T_u {int(budget * sizes.teachers_total):,} "
        f"parameters ({budget:g} x the teachers' {sizes.teachers_total:,}), but the smallest "
        f"T_u these teachers and TargetNet make has {need:,} ({need / sizes.teachers_total:.3f} "
        f"of the teachers', S_m = {shown}); raise the budget to at least "
        f"{math.ceil(1000 * need / sizes.teachers_total) / 1000:g}.")
