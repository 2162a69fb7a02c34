r"""Forge's mechanisms, each on and off, on the validation split, from fresh weights.

  python -m experiments.sweep_forge --seeds=1                       # every point
  python -m experiments.sweep_forge --rows=ka_distill,full,no_adv --seeds=1
  python -m experiments.sweep_forge --quick --out=/tmp/swf --workdir_root=/tmp/swfruns  # smoke

The setting is the from-scratch table's (experiments.from_scratch: two `small` teachers
trained from fresh weights, labels 0–9 and 10–19 -> all 20, a TargetNet from fresh weights,
`--preset=from_scratch`), with one whole TargetNet distilled end to end for the student
budget of Steps II–III (`--student=distill`). Points:
- ka_distill and noise_distill: real unlabeled images and noise, the bound and the floor;
- full: Forge with every mechanism on, at the sweep's `CENTRE` (named in every point);
- one point per mechanism turned off (no_bns, no_adv, no_jitter, no_replay: a bank of one
  round, interleaved: every round before the first student step, keep / reinit: the
  round's generator carried on or drawn fresh instead of meta-learnt, uniform_labels);
- more images (dense: a round every 10 student steps into a bank of 16384) and a few scales
  of the weights the references disagree on (bns, adv);
- from the winner, no_bns_dense: CutMix of the student's bank batches (mix); on top of mix
  the adversarial term at 3 (mix_adv3) or 10 (mix_adv10), or twice the generator steps a
  round (mix_g10); on top of mix_adv3 targets counted by the labels the teachers give the
  kept images (mix_adv3_realised), BN matching back at 0.5, 1 or 3 (mix_adv3_bns05,
  mix_adv3_bns1, mix_adv3_bns3; mix_adv3_bns1_g10 with twice the generator steps a round;
  mix_adv3_bns1_mmt and mix_adv3_bns3_mmt with --forge_bns_mmt=0.9), BN matching at 10
  with --forge_bns_mmt=0.9 (mix_adv3_bns10_mmt, the setting of Fast-Datafree's code),
  mix_adv3_bns1 with the student's cross-entropy at temperature 4 (mix_adv3_bns1_t4) or
  with the partner's "not b" entry weighted 5 in G's cross-entropy
  (mix_adv3_bns1_contrast5, --forge_contrast), with G two or four times as wide
  (mix_adv3_bns1_w128, mix_adv3_bns1_w256) or ending in a plain sigmoid
  (mix_adv3_bns1_noimgbn), or
  twice the generator steps a round (mix_adv3_g10);
  twice the generator steps a round without CutMix (g10, as Fast-10); and the
  paper's Steps II–III on its images, with and without the adversary on Step II's dual path
  (blockwise, blockwise_adv; their TargetNet alone is the one to read), and with f_m^b a 1x1
  convolution, the feature term of priors.feature_hint_loss, or both (blockwise_conv,
  blockwise_se_hint, blockwise_hint; blockwise_hint10 at 10 times the term's weight, and
  blockwise_hint10_best on mix_adv3's Forge). --preset=best is mix_adv3_bns1.
Scored on scenes20's **validation** split, never on test; the columns are the table suites'.
Forge's own figures (synthesis seconds, images per second, the label shares) are in each
row's results.json under "forge" (the records in --out/sweep_forge_rows/).
"""

import os
from typing import List

from absl import app
from absl import flags

from . import from_scratch
from . import suite_writers as writers
from . import suites_common as common
from . import table2

FLAGS = flags.FLAGS

NAME = "sweep_forge"
TITLE = "Forge's mechanisms on the validation split, from fresh weights (distilled end to end)"
# The centre every point changes. Every point names these values, so it means the same
# whatever Forge's defaults are (they were set from this sweep's winner afterwards).
CENTRE = dict(forge_bns=10.0, forge_adv=1.0, forge_bank_size=4096,
              forge_warmup_rounds=10, forge_round_every=25, forge_reset="meta",
              forge_labels="balanced")
FULL = dict(from_scratch.DISTILL, method="dfka", forge=True, **CENTRE)
# The sweep's winner before CutMix and the stronger adversary (points mix, mix_adv3 add
# --forge_mix=0.5 and --forge_adv=3), which the later points start from.
DENSE = dict(forge_bns=0.0, forge_round_every=10, forge_bank_size=16384)
CURVE_EVERY = 500  # Student steps between the points of each row's validation curve.


def points(student_steps: int = 5000) -> List[common.Row]:
  """Every point; `student_steps` is the student's budget (for the one-shot schedule)."""
  def forge(name, label, **changes):
    return common.Row(name, dict(FULL, **changes), label=label)
  rows = [r for r in from_scratch.forge_rows() if r.name in ("ka_distill", "noise_distill")]
  return rows + [
      forge("full", "Forge, every mechanism"),
      forge("no_bns", "no BN matching", forge_bns=0.0),
      forge("no_adv", "no adversarial term", forge_adv=0.0),
      forge("no_jitter", "no flip-and-shift", forge_jitter=0),
      forge("no_replay", "bank of one round (no replay)", forge_bank_size=64),
      forge("one_shot", "every round before the student",
            forge_warmup_rounds=student_steps // 25 + 10, forge_round_every=student_steps),
      forge("keep", "generator carried on (no reset)", forge_reset="keep"),
      forge("reinit10", "fresh generator every 10 rounds", forge_reset="reinit",
            forge_reset_every=10),
      forge("uniform_labels", "uniform label targets", forge_labels="uniform"),
      forge("dense", "a round every 10 steps, bank 16384", forge_round_every=10,
            forge_bank_size=16384),
      forge("no_bns_dense", "no BN matching, a round every 10 steps, bank 16384", **DENSE),
      forge("bns100", "BN matching x10 (100)", forge_bns=100.0),
      forge("adv10", "adversarial x10 (10)", forge_adv=10.0),
      forge("mix", "no_bns_dense + CutMix of bank images (p 0.5)", **DENSE, forge_mix=0.5),
      forge("g10", "no_bns_dense, 10 generator steps a round", **DENSE, forge_g_steps=10),
      forge("mix_adv3", "mix with the adversarial term x3 (3)", **DENSE,
            **from_scratch.MIX_ADV3),
      forge("mix_adv10", "mix with the adversarial term x10 (10)", **DENSE,
            **dict(from_scratch.MIX_ADV3, forge_adv=10.0)),
      forge("mix_adv3_realised", "mix_adv3, targets counted by the labels the teachers "
            "give the kept images", **DENSE, **from_scratch.MIX_ADV3,
            forge_labels="realised"),
      forge("mix_adv3_bns1", "mix_adv3 with BN matching at 1", **dict(
          DENSE, forge_bns=1.0), **from_scratch.MIX_ADV3),
      forge("mix_adv3_bns3", "mix_adv3 with BN matching at 3", **dict(
          DENSE, forge_bns=3.0), **from_scratch.MIX_ADV3),
      forge("mix_adv3_bns05", "mix_adv3 with BN matching at 0.5", **dict(
          DENSE, forge_bns=0.5), **from_scratch.MIX_ADV3),
      forge("mix_adv3_bns1_g10", "mix_adv3_bns1 with 10 generator steps a round", **dict(
          DENSE, forge_bns=1.0), **from_scratch.MIX_ADV3, forge_g_steps=10),
      forge("mix_adv3_bns1_mmt", "mix_adv3_bns1, BN statistics blended with earlier rounds' "
            "(--forge_bns_mmt=0.9)", **dict(DENSE, forge_bns=1.0), **from_scratch.MIX_ADV3,
            forge_bns_mmt=0.9),
      forge("mix_adv3_bns3_mmt", "mix_adv3_bns3, BN statistics blended with earlier rounds' "
            "(--forge_bns_mmt=0.9)", **dict(DENSE, forge_bns=3.0), **from_scratch.MIX_ADV3,
            forge_bns_mmt=0.9),
      # Fast-Datafree's and NAYER's setting. With m = 0.9 the batch is a tenth of the compared
      # statistics, so in the norm form weight 10 pulls a batch as hard as weight 1 without m.
      forge("mix_adv3_bns10_mmt", "mix_adv3 with BN matching at 10, statistics blended with "
            "earlier rounds' (--forge_bns_mmt=0.9)", **dict(DENSE, forge_bns=10.0),
            **from_scratch.MIX_ADV3, forge_bns_mmt=0.9),
      forge("mix_adv3_bns1_t4", "mix_adv3_bns1 with the student's cross-entropy at "
            "temperature 4 (--distill_temperature=4)", **dict(DENSE, forge_bns=1.0),
            **from_scratch.MIX_ADV3, distill_temperature=4.0),
      # The student's worst labels are pairs the bank's images blur (circle and hexagon):
      # the partner's "not b" entry at 5 in G's cross-entropy asks for images that part them.
      forge("mix_adv3_bns1_contrast5", "mix_adv3_bns1 with the partner's \"not b\" entry "
            "weighted 5 in G's cross-entropy (--forge_contrast=5)",
            **dict(DENSE, forge_bns=1.0), **from_scratch.MIX_ADV3, forge_contrast=5.0),
      # The bank's images are smooth blobs of saturated colour where real ones have edges
      # (docs/results.md): a wider G, or one ending in CMI's and Fast-Datafree's plain
      # sigmoid. At 32 px G's convs have width, width/2, width/4 (at least 32) channels at
      # 8, 16, 32 px: 64/32/32 by default, 128/64/32 at 128, 256/128/64 at 256; CMI's and
      # Fast-Datafree's G has 128 at 16 px and 64 at 32 px.
      forge("mix_adv3_bns1_w128", "mix_adv3_bns1 with G twice as wide (--generator_width=128)",
            **dict(DENSE, forge_bns=1.0), **from_scratch.MIX_ADV3, generator_width=128),
      forge("mix_adv3_bns1_w256", "mix_adv3_bns1 with G four times as wide "
            "(--generator_width=256)", **dict(DENSE, forge_bns=1.0), **from_scratch.MIX_ADV3,
            generator_width=256),
      forge("mix_adv3_bns1_noimgbn", "mix_adv3_bns1 with G ending in a plain sigmoid "
            "(--noimage_bn)", **dict(DENSE, forge_bns=1.0), **from_scratch.MIX_ADV3,
            image_bn=False),
      forge("mix_adv3_g10", "mix_adv3 with 10 generator steps a round", **DENSE,
            **from_scratch.MIX_ADV3, forge_g_steps=10),
      forge("mix_adv3_logit_l1", "mix_adv3, the student's loss on logits (--distill_loss="
            "logit_l1)", **DENSE, **from_scratch.MIX_ADV3, distill_loss="logit_l1"),
      forge("mix_g10", "mix with 10 generator steps a round", **DENSE, forge_mix=0.5,
            forge_g_steps=10),
      forge("blockwise", "no_bns_dense images, the paper's Steps II–III",
            **DENSE, student="blockwise"),
      forge("blockwise_adv", "no_bns_dense images, Steps II–III, adversary on Step II's "
            "dual path", **DENSE, student="blockwise", forge_block_adv=True),
      forge("blockwise_hint", "no_bns_dense images, Steps II–III with 1x1-conv f_m^b and "
            "the feature term (weight 1)", **DENSE, student="blockwise", step2_filter="conv",
            step2_feature_weight=1.0),
      forge("blockwise_hint10", "blockwise_hint with the feature term at weight 10",
            **DENSE, student="blockwise", step2_filter="conv", step2_feature_weight=10.0),
      forge("blockwise_conv", "no_bns_dense images, Steps II–III with 1x1-conv f_m^b",
            **DENSE, student="blockwise", step2_filter="conv"),
      forge("blockwise_hint10_best", "blockwise_hint10 on mix_adv3's Forge (CutMix, "
            "adversarial term at 3)", **DENSE, **from_scratch.MIX_ADV3,
            student="blockwise", step2_filter="conv", step2_feature_weight=10.0),
      forge("blockwise_se_hint", "no_bns_dense images, Steps II–III with the feature term "
            "(weight 1) through the paper's f_m^b", **DENSE, student="blockwise",
            step2_feature_weight=1.0),
  ]


def run_suite(*, out, workdir_root, quick=False, seeds=None, overrides=None, progress=False,
              rows=None, log=print):
  overrides = common.validation_overrides(from_scratch.suite_overrides(quick, overrides))
  overrides.setdefault("curve_every", 5 if quick else CURVE_EVERY)
  out_dict = common.run_table(
      NAME, TITLE, points(25 if quick else 5000), setting=table2.setting(),
      out=out, workdir_root=workdir_root, quick=quick, seeds=common.seeds_from(seeds, 1, quick),
      overrides=overrides, progress=progress, paper_header="paper mAP (none: beyond it)",
      only=rows, log=log,
      notes=["Teachers and TargetNet start from fresh weights; every row but the blockwise "
             "ones distils one whole TargetNet end to end for the same number of steps (B x "
             "block_steps + finetune_steps), so mAP and TargetNet alone are the same "
             "network; the blockwise rows run the paper's Steps II–III on Forge's images "
             "(read their TargetNet alone). Beyond the paper: Forge (train/forge.py), and "
             "in the blockwise rows named conv or hint Step II's 1x1-conv f_m^b and feature "
             "term."])
  shown = {r.label or r.name: r.name for r in points()}
  curves = {label: res[0].get("curves", {}).get("distill", [])
            for label, name in shown.items() for res in [out_dict["runs"].get(name)] if res}
  writers.curve_plot(os.path.join(out, f"{NAME}_curves.png"), curves,
                     title="Validation mAP against synthesis time (seed 0)")
  lines = ["| point | synthesis s | images made | images / s | label share min/max (of the "
           "targets; realised: of the teachers' labels on the kept images) | student s |", "| --- | --- | --- | --- | --- | --- |"]
  for label, name in shown.items():
    res = (out_dict["runs"].get(name) or [None])[0]
    f = (res or {}).get("forge")
    if f:
      # The student's stages (distill, or Step II's blocks and Step III), less synthesis.
      student = sum(v for k, v in res["stage_times"].items()
                    if k == "distill" or k == "finetune" or k.startswith("block")
                    ) - f["synthesis_seconds"]
      lines.append(f"| {label} | {f['synthesis_seconds']:.0f} | {f['images_made']} | "
                   f"{f['images_per_second']:.1f} | {f['label_share_min_over_max']:.2f} | "
                   f"{student:.0f} |")
  with open(os.path.join(out, f"{NAME}.md"), "a") as fh:
    fh.write("\n## Forge's own figures (seed 0)\n\n" + "\n".join(lines) + "\n\n"
             f"Curves (validation mAP on the first images, every {overrides['curve_every']} "
             "student steps, "
             f"against synthesis seconds): {NAME}_curves.png.\n")
  return out_dict


if __name__ == "__main__":
  flags.FLAGS.set_default("out", "results/from_scratch/validation/sweep_forge")
  app.run(common.suite_main(run_suite, setting_flags=False))
