r"""Supplementary Table 3: the number of generator groups K (group-stack depth).

  python -m experiments.table_s3                     # 2 teachers -> 20 labels, 1 seed
  python -m experiments.table_s3 --quick --out=/tmp/s3 --workdir_root=/tmp/s3runs  # smoke

Rows K = 1, 2, 4 (K must divide B = 4; group j imitates teacher depth B − j·B/K). The
paper (VOC07, one teacher on the Table 1 task): 1 group 49.3, 2 groups 73.6, 4 groups 65.2
mAP. --teachers=1 --labels=<the first 10> is that setting.

Writes --out/table_s3.md, table_s3.csv, table_s3_seeds.csv, table_s3.png.
Runtime on 2 CPU cores: 452 s for K = 1 and K = 4 (K = 2 and the teachers are reused
from Table 2), with other jobs sharing the cores.
"""

from absl import app

from . import suites_common as common

NAME = "table_s3"
TITLE = "S-Table 3: generator groups K"
ROWS = [common.Row("K=1", {"groups": 1}, 49.3), common.Row("K=2", {"groups": 2}, 73.6),
        common.Row("K=4", {"groups": 4}, 65.2)]


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              rows=None, teachers=None, labels=None, log=print):
  return common.run_ablation(
      NAME, TITLE, ROWS, paper_header="paper mAP (VOC07, S-Table 3)", out=out,
      workdir_root=workdir_root, quick=quick, seeds=seeds, overrides=overrides,
      progress=progress, only=rows, teachers=teachers, labels=labels, log=log,
      note=("Each K trains its own generator; Steps II–III are the same."))


if __name__ == "__main__":
  app.run(common.suite_main(run_suite))
