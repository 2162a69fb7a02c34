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
from absl import flags

from experiments import suites_common as common

FLAGS = flags.FLAGS

NAME = "table_s3"
TITLE = "S-Table 3: generator groups K"
ROWS = [common.Row("K=1", {"groups": 1}, 49.3), common.Row("K=2", {"groups": 2}, 73.6),
        common.Row("K=4", {"groups": 4}, 65.2)]


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              rows=None, teachers=None, labels=None, log=print):
  setting = dict(method="dfka", num_teachers=teachers or 2,
                 labels=tuple(labels) if labels else None)
  return common.run_table(
      NAME, TITLE, ROWS, setting=setting, out=out, workdir_root=workdir_root, quick=quick,
      seeds=common.seeds_from(seeds, 1, quick), overrides=overrides or {}, progress=progress,
      paper_header="paper mAP (VOC07, S-Table 3)", only=rows, log=log,
      notes=[f"Setting: {setting['num_teachers']} teacher(s) -> "
             f"{'all labels' if not labels else ', '.join(labels)}. Each K trains its own "
             "generator; Steps II–III are the same."])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  run_suite(**common.settings_from_flags())


if __name__ == "__main__":
  app.run(main)
