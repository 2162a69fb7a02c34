"""The customized task Y_cst and the task-level filters g_m (Eq. 14, 19)."""

import dataclasses
from typing import List, Sequence

from dfka_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TaskMap:
  """Where each customized label comes from.

  Attributes:
    labels: Y_cst in the order the user gave; T_u's output follows this order.
    teacher_labels: every teacher's label names Y_m.
    teacher_cols: per teacher m, the columns of A_m's output that g_m keeps.
    cst_cols: per teacher m, the positions in Y_cst of those same labels.

  A label that several teachers know is taken from the first of them, so every customized
  label has exactly one teacher to imitate.
  """
  labels: List[str]
  teacher_labels: List[List[str]]
  teacher_cols: List[List[int]]
  cst_cols: List[List[int]]

  @classmethod
  def build(cls, teacher_labels: Sequence[Sequence[str]], labels: Sequence[str] = None):
    """Checks Y_cst ⊆ ∪ Y_m and derives g_m.

    Args:
      teacher_labels: the label names of each teacher.
      labels: customized labels; None means every teacher's labels, in teacher order.

    Raises:
      ConfigError: empty or duplicate labels, or a label no teacher predicts.
    """
    teacher_labels = [list(t) for t in teacher_labels]
    known = [name for t in teacher_labels for name in t]
    if labels is None:
      labels = list(dict.fromkeys(known))
    labels = list(labels)
    if not labels:
      raise ConfigError("--labels is empty; name at least one label, e.g. "
                        f"--labels={','.join(known[:2])}.")
    dupes = sorted({name for name in labels if labels.count(name) > 1})
    if dupes:
      raise ConfigError(f"--labels names {', '.join(dupes)} more than once; list each label once.")
    unknown = [name for name in labels if name not in known]
    if unknown:
      raise ConfigError(f"unknown label(s) {', '.join(unknown)}: no teacher predicts them. "
                        f"Known labels: {', '.join(dict.fromkeys(known))}.")
    teacher_cols = [[] for _ in teacher_labels]
    cst_cols = [[] for _ in teacher_labels]
    for pos, name in enumerate(labels):
      m = next(i for i, t in enumerate(teacher_labels) if name in t)
      teacher_cols[m].append(teacher_labels[m].index(name))
      cst_cols[m].append(pos)
    return cls(labels, teacher_labels, teacher_cols, cst_cols)

  @property
  def num_teachers(self) -> int:
    return len(self.teacher_labels)

  @property
  def active(self) -> List[int]:
    """Teachers with at least one customized label (the others take no part in Step II)."""
    return [m for m in range(self.num_teachers) if self.teacher_cols[m]]

  @property
  def order(self) -> List[int]:
    """Permutation taking the per-teacher concatenation of g_m outputs to Y_cst order."""
    concat = [pos for m in self.active for pos in self.cst_cols[m]]
    return [concat.index(pos) for pos in range(len(self.labels))]
