r"""From fresh weights: Table 2's setting with no pretrained start anywhere.

  python -m experiments.from_scratch                 # 3 seeds -> results/from_scratch/
  python -m experiments.from_scratch --rows=teacher,ka,noise --seeds=1
  python -m experiments.from_scratch --quick --out=/tmp/fs --workdir_root=/tmp/fsruns  # smoke
  python -m experiments.from_scratch --setting=table1  # Table 1's -> results/from_scratch_table1/

Two teachers (scenes20 labels 0–9 and 10–19, the `small` ResNet) are trained from fresh
weights on their labels, and the TargetNet starts from fresh weights too (`--preset=
from_scratch`: no --pretrain). No backbone is shared, so nothing above chance can come from a
common start: what the TargetNet knows it learnt from the images each row feeds Steps II–III.

Rows, named as in results/table2.csv: teacher (the two side by side); ka (real unlabeled
scenes20 images: the bound at the same student budget); noise (the floor); dafl (G and a
whole TargetNet trained jointly, as DAFL's code runs); dfka (the paper's Steps I–III); and
beyond the paper, pool (Steps II–III on a DeepInversion pool; pool_distill, the pool for one
TargetNet distilled end to end), dfka_forge (Steps II–III on Forge's images, train/forge.py;
dfka_forge_hint with f_m^b a 1x1 convolution and a feature term, priors.feature_hint_loss;
dfka_forge_hint_best the same on the forge row's Forge, dfka_forge_hint_bns1 on
--preset=best's), forge_bns1 (one TargetNet distilled
end to end on Forge's images, --preset=best's recipe), forge (the same without BN matching;
forge_adv1 with its adversarial term at 1, forge_nomix also without its CutMix) with their
bound and floor on the same budget, ka_distill and noise_distill. Every row gives T_u and the
TargetNet alone; the TargetNet alone is what this table is about, since T_u keeps copies of
the teachers' blocks wherever Eq. 18 branches early.

--setting=table1 takes Table 1's setting instead: one teacher (all 20 labels, the `small`
ResNet, fresh weights) and a TargetNet for its first 10 labels; the rows are the same.

Writes --out/from_scratch.md, .csv, _seeds.csv, .png and each row's record in
from_scratch_rows/ (a rerun reuses them, so the table fills over several sittings).
"""

import os
import types
from typing import NamedTuple

from absl import app
from absl import flags

from dfka_tf import config as config_lib
from . import suites_common as common
from . import table1
from . import table2

FLAGS = flags.FLAGS

NAME = "from_scratch"


class Setting(NamedTuple):
  """One paper table's setting for this suite."""
  suite: types.ModuleType  # The paper table's suite, whose setting() the rows take.
  title: str
  paper_header: str  # The header of the table's paper column.
  out: str  # The default --out: one folder per setting, so their records never mix.


SETTINGS = {
    "table2": Setting(table2, "From fresh weights: 2 teachers (10 + 10 labels) -> 20 labels, "
                      "no pretrained start", "paper mAP (VOC07, Table 2)",
                      os.path.join("results", "from_scratch")),
    "table1": Setting(table1, "From fresh weights: 1 teacher (20 labels) -> 10 labels, no "
                      "pretrained start", "paper mAP (VOC07, Table 1)",
                      os.path.join("results", "from_scratch_table1")),
}

flags.DEFINE_enum("setting", "table2", list(SETTINGS),
                  "The paper table whose setting the rows take: table2 (2 teachers, 10 + 10 "
                  "labels -> 20) or table1 (1 teacher of 20 labels -> its first 10).")


def setting_of(name: str):
  """The RunConfig setting (num_teachers, labels) of `name` in SETTINGS: its table's own."""
  if name not in SETTINGS:
    raise ValueError(f"unknown setting {name!r}; choose one of {sorted(SETTINGS)}.")
  return SETTINGS[name].suite.setting()


ROWS = ("teacher", "ka", "noise", "dafl", "dfka")


# The end-to-end student, at the from_scratch preset's LR (0.3; validation, seed 0: KA
# distilled end to end reaches 32.2 mAP at 0.03 and 99.6 at 0.3; docs/results.md, "From
# fresh weights"). Named here too, so the sweep's points keep their meaning.
DISTILL = {"student": "distill", "target_lr": 0.3}


# Steps II–III with f_m^b a 1x1 convolution and the feature term of
# priors.feature_hint_loss at weight 10 (beyond the paper; sweep_forge's point
# blockwise_hint10, the best of its Steps II–III points on validation).
STEP2_HINT = {"step2_filter": "conv", "step2_feature_weight": 10.0}


# CutMix of half the student's bank images and the adversarial term at 3, on top of Forge's
# defaults (sweep_forge's point mix_adv3, chosen on validation with teachers fine-tuned from
# a backbone): the forge row, and the images of dfka_forge_hint_best.
MIX_ADV3 = {"forge_mix": 0.5, "forge_adv": 3.0}

# What --preset=best sets on top of Forge's defaults: MIX_ADV3 with BN-statistics matching at
# 1 (sweep_forge's point mix_adv3_bns1, chosen on validation with teachers from fresh
# weights). Spelled out rather than read from the preset, so a row's records keep their
# meaning if the preset moves; tests/test_suites.py checks that the forge_bns1 row is
# --preset=from_scratch,best today.
BEST_FORGE = dict(MIX_ADV3, forge_bns=1.0)


def forge_rows():
  """Beyond the paper: Forge's images (train/forge.py) for the paper's Steps II–III
  (dfka_forge, dfka_forge_hint*) and for one TargetNet distilled end to end (forge_bns1, which
  is --preset=best; forge, forge_adv1 and forge_nomix without parts of it), and the e2e
  student's bound and floor on the same budget (ka_distill, noise_distill)."""
  return [common.Row("ka_distill", dict(DISTILL, method="ka"),
                     label="KA, distilled end to end"),
          common.Row("noise_distill", dict(DISTILL, method="noise"),
                     label="noise, distilled end to end"),
          common.Row("dfka_forge", {"method": "dfka", "forge": True},
                     label="Steps II–III on Forge"),
          common.Row("dfka_forge_hint", dict(STEP2_HINT, method="dfka", forge=True),
                     label="Steps II–III on Forge, 1x1-conv f_m^b and the feature term"),
          common.Row("dfka_forge_hint_best", dict(STEP2_HINT, method="dfka", forge=True,
                                                  **MIX_ADV3),
                     label="Steps II–III on the forge row's Forge (CutMix, adversarial term "
                           "at 3), 1x1-conv f_m^b and the feature term"),
          common.Row("dfka_forge_hint_bns1", dict(STEP2_HINT, method="dfka", forge=True,
                                                  **BEST_FORGE),
                     label="Steps II–III on --preset=best's Forge (CutMix, adversarial term "
                           "at 3, BN matching at 1), 1x1-conv f_m^b and the feature term"),
          common.Row("forge_nomix", dict(DISTILL, method="dfka", forge=True),
                     label="Forge without CutMix, distilled end to end"),
          common.Row("forge_adv1", dict(DISTILL, method="dfka", forge=True, forge_mix=0.5,
                                        forge_adv=1.0),
                     label="Forge with CutMix, adversarial term at 1, distilled end to end"),
          common.Row("forge", dict(DISTILL, method="dfka", forge=True, **MIX_ADV3),
                     label="Forge with CutMix, adversarial term at 3, no BN matching, "
                           "distilled end to end"),
          common.Row("forge_bns1", dict(DISTILL, method="dfka", forge=True, **BEST_FORGE),
                     label="Forge (--preset=best: CutMix, adversarial term at 3, BN matching "
                           "at 1), distilled end to end")]


def pool_distill_row(images: int) -> common.Row:
  """Beyond the paper: the DeepInversion pool of `images` (with the pool row's student-side
  jitter) for the end-to-end student, so Forge's forge row has the pool beside it on the
  same student and budget (mAP per CPU-minute of the two engines)."""
  return common.Row("pool_distill", dict(common.pool_row(images).overrides, **DISTILL),
                    label=f"DeepInversion pool ({images}), distilled end to end")


def table_rows(pool_images: int = 0):
  pool = [common.pool_row(pool_images), pool_distill_row(pool_images)] if pool_images > 0 else []
  return [common.Row(m, {"method": m}) for m in ROWS] + pool + forge_rows()


def suite_overrides(quick: bool, overrides=None):
  """The suite's overrides: the from_scratch preset on top of the tables' budget (quick: no
  pretrained start, the quick budget)."""
  extra = dict(overrides or {})
  if quick:
    extra["pretrain"] = "None"  # A None override would be ignored: "None" sets it.
  else:
    extra["preset"] = ",".join(["from_scratch"] + config_lib.preset_names(extra.get("preset")))
  return extra


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              rows=None, pool_images=1024, setting="table2", log=print):
  setting_args = setting_of(setting)  # Refuses an unknown setting first.
  chosen = SETTINGS[setting]
  pool_images = common.pool_images_for(pool_images, quick)
  return common.run_table(
      NAME, chosen.title, table_rows(pool_images), setting=setting_args,
      out=out, workdir_root=workdir_root, quick=quick,
      seeds=common.seeds_from(seeds, 3, quick), overrides=suite_overrides(quick, overrides),
      progress=progress, paper_header=chosen.paper_header, only=rows, log=log,
      notes=["Teachers and TargetNet start from fresh weights (no --pretrain). KA (unlabeled "
             "scenes20 images) bounds the data-free rows from above at the same student "
             "budget, noise from below. "
             + common.beyond_paper_note(0.0, 0.0, pool_images)
             + (" 'pool_distill' distils one whole TargetNet end to end on the same pool."
                if pool_images > 0 else "")])


def default_out(setting: str) -> str:
  """--out when it is not given: the setting's own folder."""
  return SETTINGS[setting].out


def _suite_args():
  if not FLAGS["out"].present:
    FLAGS.out = default_out(FLAGS.setting)
  return dict(pool_images=FLAGS.pool_images, setting=FLAGS.setting)


if __name__ == "__main__":
  app.run(common.suite_main(run_suite, _suite_args, setting_flags=False))
