r"""Data-free knowledge amalgamation end to end: teachers -> Steps I–III -> eval -> export.

  python -m experiments.run                                   # embedded scenes20, 2 teachers
  python -m experiments.run --dataset=voc2007 --teachers=2    # paper scale (GPU + VOC data)
  python -m experiments.run --teacher=a.keras --teacher=b.keras --labels=bus,diningtable

Writes <workdir>/results.json, TensorBoard logs, generated.png, block_losses.png and the
SavedModel <workdir>/target_net. User errors print one line and exit with status 2.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging as absl_logging

from dfka_tf.config import METHODS  # pylint: disable=g-import-not-at-top  (no TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "scenes20", ["scenes20", "voc2007", "coco2014"],
                  "Dataset the teachers come from and T_u is evaluated on.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: TFDS's own).")
flags.DEFINE_integer("teachers", 2, "M, the number of teachers trained on label subsets.")
flags.DEFINE_multi_string("teacher", [], "Bring your own teacher: a .keras file or SavedModel "
                          "directory (repeat per teacher); label names from <file>.labels.json.")
flags.DEFINE_list("teacher_blocks", [], "Layer names ending blocks 1..B-1 of your teachers "
                  "(default: block1_out,block2_out,block3_out).")
flags.DEFINE_list("labels", None, "Customized labels Y_cst in output order (default: all).")
flags.DEFINE_enum("method", "dfka", list(METHODS),
                  "dfka (this method) or a Table 1 baseline: teacher (the teachers "
                  "themselves), ka / similar / diff (block-wise training on unlabeled scenes20 / "
                  "scenes20_similar / scenes20_different images), noise (Gaussian noise "
                  "images), dafl (one generator, then plain distillation). The experiment "
                  "suites (experiments/table1.py, ...) run them side by side.")
flags.DEFINE_integer("groups", None, "K, generator groups; must divide B = 4 (default 2).")
flags.DEFINE_string("arch", None, "Teacher/TargetNet ResNet (small, tiny, resnet18, resnet50, "
                    "resnet101; default per dataset).")
flags.DEFINE_integer("image_size", None, "Image side in pixels (default per dataset).")
flags.DEFINE_string("workdir", None, "Run directory (default runs/<dataset>-seed<seed>).")
flags.DEFINE_integer("seed", 0, "Seed of data order, noise and initialisation.")
flags.DEFINE_integer("batch_size", None, "Batch size of every stage (paper: 16).")
flags.DEFINE_integer("teacher_steps", None, "Teacher training steps.")
flags.DEFINE_integer("generator_steps", None, "Step I steps.")
flags.DEFINE_integer("block_steps", None, "Step II steps per TargetNet block.")
flags.DEFINE_integer("finetune_steps", None, "Step III fine-tuning steps.")
flags.DEFINE_float("teacher_lr", None, "Base LR of teacher training (poly, power 0.9).")
flags.DEFINE_float("generator_lr", None, "Adam LR of the generator.")
flags.DEFINE_float("target_lr", None, "Base LR of the TargetNet blocks (poly, power 0.9).")
flags.DEFINE_float("alpha", None, "Weight of L_a (S-Table 1: 1).")
flags.DEFINE_float("beta", None, "Weight of L_ie (S-Table 1: 1).")
flags.DEFINE_float("gamma", None, "Weight of L_dis (S-Table 1: 5).")
flags.DEFINE_enum("dis_sign", None, ["sparse", "printed"], "Reading of L_dis (Eq. 8).")
flags.DEFINE_float("bns_weight", None, "Weight of L_bns, DeepInversion's BN-statistics prior "
                   "(beyond the paper; 0 = off).")
flags.DEFINE_enum("bns_form", None, ["squared", "norm"], "L_bns form: 'squared' (squared "
                  "distances of means and standard deviations) or 'norm' (DeepInversion's "
                  "code: distances of means and variances).")
flags.DEFINE_float("lh_weight", None, "Weight of L_H, IFHE's auxiliary-classifier loss on the "
                   "teachers' concatenated intermediate features (beyond the paper; 0 = off).")
flags.DEFINE_integer("generator_jitter", None, "Step I: the teachers judge G's image flipped "
                     "and shifted by up to this many pixels (DeepInversion; beyond the paper; "
                     "0 = off).")
flags.DEFINE_integer("student_jitter", None, "Steps II-III: flip and shift each generated "
                     "image by up to this many pixels (beyond the paper; 0 = off).")
flags.DEFINE_float("adversarial_weight", None, "Step III: keep training G to maximise T_u's "
                   "disagreement with the teachers, with this weight (DFAD; beyond the paper; "
                   "0 = off).")
flags.DEFINE_string("target_pretrain", None, "Start the TargetNet from a network trained on "
                    "this labelled dataset (scenes20_similar: the scenes20 stand-in for the "
                    "paper's ImageNet init; never the teachers' own data).")
flags.DEFINE_integer("pretrain_steps", None, "Steps of --target_pretrain (default 600).")
flags.DEFINE_integer("inversion_images", None, "Train Steps II-III on a pool of this many "
                     "images optimised pixel by pixel against the teachers (DeepInversion; "
                     "beyond the paper; 0 = off, G's images as in the paper).")
flags.DEFINE_integer("inversion_steps", None, "Adam steps per pool batch (default 200).")
flags.DEFINE_float("inversion_lr", None, "Adam learning rate of the pool's pixels (default 0.1).")
flags.DEFINE_float("inversion_bns", None, "Weight of L_bns in the pool's objective (default 1).")
flags.DEFINE_float("inversion_tv", None, "Weight of the smoothness prior L_tv in the pool's "
                   "objective (default 1e-3).")
flags.DEFINE_integer("inversion_max_labels", None, "Each pool image targets 1 to this many "
                     "labels (default 3).")
flags.DEFINE_bool("image_bn", None, "End G in a batch norm without affine before the sigmoid "
                  "(DAFL's generator; default on).")
flags.DEFINE_float("lambda_in1", None, "λ_in^1 of Eq. 17 (F_in^1 stream).")
flags.DEFINE_float("lambda_in2", None, "λ_in^2 of Eq. 17 (generator link stream).")
flags.DEFINE_integer("branch_out", None, "Force S_m for every teacher (default: Eq. 18).")
flags.DEFINE_enum("jit", "auto", ["auto", "true", "false"],
                  "XLA: auto = on with a GPU, off on CPU (slower there).")
flags.DEFINE_bool("mixed_precision", False, "mixed_float16 (GPU).")
flags.DEFINE_integer("checkpoint_every", None, "Steps between checkpoints (default 100).")
flags.DEFINE_bool("resume", False, "Continue the run in --workdir from its checkpoints.")
flags.DEFINE_bool("overwrite", False, "Discard whatever --workdir holds and start over.")
flags.DEFINE_bool("evaluate", True, "Evaluate teachers and T_u on the real test split.")
flags.DEFINE_bool("quiet", False, "No progress bars.")


def config_from_flags():
  """Builds the RunConfig; only flags the user set override the dataset's preset."""
  from dfka_tf.config import RunConfig  # pylint: disable=g-import-not-at-top
  f = FLAGS
  overrides = dict(
      data_dir=f.data_dir, num_teachers=f.teachers, groups=f.groups, arch=f.arch,
      image_size=f.image_size, batch_size=f.batch_size, seed=f.seed,
      teacher_steps=f.teacher_steps, generator_steps=f.generator_steps,
      block_steps=f.block_steps, finetune_steps=f.finetune_steps, teacher_lr=f.teacher_lr,
      generator_lr=f.generator_lr, target_lr=f.target_lr, alpha=f.alpha, beta=f.beta,
      gamma=f.gamma, dis_sign=f.dis_sign, bns_weight=f.bns_weight, bns_form=f.bns_form,
      lh_weight=f.lh_weight,
      generator_jitter=f.generator_jitter, student_jitter=f.student_jitter,
      adversarial_weight=f.adversarial_weight, target_pretrain=f.target_pretrain,
      pretrain_steps=f.pretrain_steps, inversion_images=f.inversion_images,
      inversion_steps=f.inversion_steps, inversion_lr=f.inversion_lr,
      inversion_bns=f.inversion_bns, inversion_tv=f.inversion_tv,
      inversion_max_labels=f.inversion_max_labels,
      image_bn=f.image_bn, lambda_in1=f.lambda_in1, lambda_in2=f.lambda_in2,
      branch_out=f.branch_out, mixed_precision=f.mixed_precision, evaluate=f.evaluate,
      checkpoint_every=f.checkpoint_every,
      method=f.method, jit=None if f.jit == "auto" else f.jit == "true")
  if f.labels is not None:
    overrides["labels"] = tuple(f.labels)
  if f.teacher:
    overrides.update(teacher_paths=tuple(f.teacher), teacher_blocks=tuple(f.teacher_blocks),
                     evaluate=False, num_teachers=len(f.teacher))
  dataset = "byo" if f.teacher else f.dataset
  overrides["workdir"] = f.workdir or os.path.join("runs", f"{dataset}-seed{f.seed}")
  return RunConfig.for_dataset(dataset, **overrides)


def summary(results) -> str:
  lines = []
  if "teacher_map" in results:
    lines.append(f"teacher mAP on the {len(results['labels'])} customized labels: "
                 f"{100 * results['teacher_map']:.1f}")
    lines.append(f"TargetNet T_u mAP on the same labels:        "
                 f"{100 * results['target_map']:.1f} "
                 f"({100 * results['target_over_teacher']:.1f}% of the teachers')")
  p = results["params"]
  lines.append(f"parameters: T_u {p['target_net']:,} vs teachers {p['teachers_total']:,} "
               f"({' + '.join(f'{n:,}' for n in p['teachers'])})")
  lines.append(f"branch-out blocks S_m: {results.get('branch_out')}")
  times = ", ".join(f"{k} {v:.0f}s" for k, v in results["stage_times"].items())
  lines.append(f"stage times: {times}; total {results['total_time']:.0f}s")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag.")
  if not FLAGS["verbosity"].present:  # TF logs every checkpoint and export line at INFO.
    absl_logging.set_verbosity(absl_logging.WARNING)
  from dfka_tf import pipeline  # pylint: disable=g-import-not-at-top
  from dfka_tf.errors import DfkaError  # pylint: disable=g-import-not-at-top
  try:
    config = config_from_flags()
    results = pipeline.run(config, progress=not FLAGS.quiet, resume=FLAGS.resume,
                           overwrite=FLAGS.overwrite)
  except DfkaError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(summary(results))
  print(f"results: {os.path.join(config.workdir, 'results.json')}; "
        f"SavedModel: {os.path.join(config.workdir, 'target_net')}")


if __name__ == "__main__":
  app.run(main)
