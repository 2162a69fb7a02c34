r"""Paper Table 4: the two input streams of the dual generator, {λ_in^1, λ_in^2} (Eq. 17).

  python -m experiments.table4                       # 2 teachers -> 20 labels, 1 seed
  python -m experiments.table4 --teachers=1 \
      --labels=circle,square,triangle,star,plus,ring,diamond,hexagon,heart,crescent
  python -m experiments.table4 --quick --out=/tmp/t4 --workdir_root=/tmp/t4runs  # smoke

Rows (--rows / CSV name): in1 = {1, 0} (F_in^1 only: no link from G), in2 = {0, 1} (the
link stream F_in^2 only), in1+in2 = {1, 1} (both, the default). Only Step II differs
between the rows, so they share one teachers set and one Step I generator. The paper ran
this ablation with one teacher on the Table 1 task (its {1, 1} is Table 1's 73.6); the
second command above is that setting.

Writes --out/table4.md, table4.csv, table4_seeds.csv, table4.png.
Runtime on 2 CPU cores: 327 s for the 2 new rows (the {1, 1} row and the teachers are
reused from Table 2), with other jobs sharing the cores.
"""

from absl import app

from . import suites_common as common

NAME = "table4"
TITLE = "Table 4: links of the dual GAN, {λ_in^1, λ_in^2}"
# Row names (for --rows and the CSV) avoid commas; the Markdown shows {λ_in^1, λ_in^2}.
ROWS = [common.Row("in1", {"lambda_in1": 1.0, "lambda_in2": 0.0}, 70.2, "{1, 0}"),
        common.Row("in2", {"lambda_in1": 0.0, "lambda_in2": 1.0}, 59.8, "{0, 1}"),
        common.Row("in1+in2", {"lambda_in1": 1.0, "lambda_in2": 1.0}, 73.6, "{1, 1}")]


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              rows=None, teachers=None, labels=None, log=print):
  return common.run_ablation(
      NAME, TITLE, ROWS, paper_header="paper mAP (VOC07, Table 4)", out=out,
      workdir_root=workdir_root, quick=quick, seeds=seeds, overrides=overrides,
      progress=progress, only=rows, teachers=teachers, labels=labels, log=log,
      note=("The paper's ablation used 1 teacher -> 10 labels. Where no generator group aligns "
           "with depth b−1 (K < B), block b sees only F_in^1 (docs/design.md, 'Link stream "
           "F_in^2')."))


if __name__ == "__main__":
  app.run(common.suite_main(run_suite))
