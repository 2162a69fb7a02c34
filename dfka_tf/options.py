"""Every option of a run: the six sections' fields (default, help, check, short name), and the
registry that finds a field by its dotted path or short name.

Every option is one dataclass field made by `option(...)`. From that one place come the
command-line flag (`--<name>`), the `--set <section>.<field>=value` key and the validation
(`config.RunConfig`), and the experiment suites' cache keys (experiments/suite_cache.py).
docs/configuration.md shows how a new option is added.
"""

import dataclasses
import typing
from typing import Any, Dict, List, Optional, Tuple

from dfka_tf.errors import ConfigError

METHODS = ("dfka", "teacher", "ka", "similar", "diff", "noise", "dafl", "dafl_2stage")
SOURCES = ("generator", "pool", "dataset", "noise", "forge", "none")
# The sources whose images are synthetic (what --export_tflite calibrates on).
SYNTHETIC_SOURCES = ("forge", "pool", "generator", "noise")
STUDENT_MODES = ("blockwise", "distill", "joint", "ensemble")
DISTILL_LOSSES = ("bce", "logit_l1")  # The student's loss in Step III and --student=distill.
BN_MODES = ("train", "frozen")  # Batch norm of the TargetNet's and the branches' blocks.
STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")  # dfka_tf.distribute
PAPER_SCALE_ARCHS = ("resnet50", "resnet101")  # The archs with Keras ImageNet weights.
RESNET_ARCHS = ("small", "tiny", "resnet18", "resnet50", "resnet101")
# The TargetNet in the architecture of your own teachers (models/target.py).
TEACHER_ARCH = "teacher"
# Your own teachers up to this input side get the embedded budget (the scenes20 preset),
# larger ones the paper's (voc2007).
BYO_SMALL_MAX_SIZE = 64
DEFAULT_NUM_BLOCKS = 4  # B: build_resnet's stages block1..block4, cut at block{1,2,3}_out.


def option(default, help: str, *, name: Optional[str] = None, check=None,
           choices: Optional[Tuple] = None, resumable: bool = False, flag: str = "auto"):
  """A config field: default, help text, short name (its flag) and check.

  Args:
    default: the value when neither a preset nor the user sets it.
    help: one sentence for --help and docs/configuration.md.
    name: the short name (`--<name>`, and a `--set` key); default the field's own name.
    check: value -> error text or None; "positive" and "nonneg" are shorthands.
    choices: the allowed values.
    resumable: changing it does not change results (may differ on --resume; never in keys).
    flag: "auto" (a flag of the field's type), "multi" (repeatable), "list"
      (comma-separated) or "none".
  """
  meta = dict(help=help, name=name, check=check, choices=choices, resumable=resumable,
              flag=flag)
  if isinstance(default, (dict, list)) or dataclasses.is_dataclass(default):
    factory = default if callable(default) else (lambda: default)
    return dataclasses.field(default_factory=factory, metadata=meta)
  return dataclasses.field(default=default, metadata=meta)


def _positive(v):
  return None if v is None or v >= 1 else "must be >= 1"


def _nonneg(v):
  return None if v is None or v >= 0 else "must be >= 0 (0 turns it off)"


def _open_unit(x):
  return None if 0 < x < 1 else "must be strictly between 0 and 1"


def _unit(x):
  return None if 0 <= x <= 1 else "must be a probability in [0, 1] (0 turns it off)"


def _momentum(x):
  return None if 0 <= x < 1 else "must be in [0, 1) (0 turns it off)"


def _above_zero(x):
  return None if x > 0 else "must be > 0"


CHECKS = {"positive": _positive, "nonneg": _nonneg, "open_unit": _open_unit, "unit": _unit,
          "momentum": _momentum, "above_zero": _above_zero}


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The teachers' data, the teachers themselves and the customized label set."""
  dataset: str = option("scenes20", "Dataset the teachers come from and T_u is evaluated on.",
                        flag="none")
  data_dir: Optional[str] = option(None, "TFDS data directory (default: TFDS's own).",
                                   resumable=True)
  num_teachers: int = option(2, "M, the number of teachers trained on label subsets.",
                             name="teachers", check="positive")
  teacher_paths: Tuple[str, ...] = option((), "Bring your own teacher: a .keras file saved by "
                                          "Keras 3 (repeat per teacher; a SavedModel holds no "
                                          "layers to split, the error says what to pass); "
                                          "label names from <file>.labels.json.",
                                          name="teacher", flag="multi")
  teacher_blocks: Tuple[str, ...] = option((), "Layer names ending blocks 1..B-1 of your "
                                           "teachers (default: found for dfka_tf, keras-cv and "
                                           "keras.applications ResNets; otherwise the error "
                                           "lists candidates).", flag="list")
  labels: Optional[Tuple[str, ...]] = option(None, "Customized labels Y_cst in output order "
                                             "(default: all).", flag="list")
  arch: str = option("small", "Teacher/TargetNet ResNet (small, tiny, resnet18, resnet50, "
                     "resnet101), or 'teacher' (the default with --teacher): the TargetNet "
                     "rebuilt from teacher 1's architecture with a new head.")
  target_init: Optional[str] = option(
      None, "With --arch=teacher: the TargetNet's pretrained start, a .keras model or "
      ".weights.h5 file of the teachers' architecture (layers matched by name and shape; the "
      "head is new). Default: fresh weights.")
  image_size: int = option(32, "Image side in pixels.", check="positive")
  teacher_steps: int = option(300, "Teacher training steps.", check="nonneg")
  teacher_lr: float = option(0.3, "Base LR of teacher training (poly, power 0.9).")
  pretrain: Optional[str] = option(
      None, "The pretrained start of teachers and TargetNet (§5.1): 'imagenet' (Keras' "
      "ImageNet weights, resnet50/101), a labelled dataset a backbone is trained on first "
      "(scenes20_similar stands in for ImageNet on scenes20; never the teachers' own data), "
      "or None (fresh weights). With your own --teacher files (which keep their weights) "
      "and --arch=teacher, the TargetNet's start is --target_init instead.")
  pretrain_steps: int = option(1200, "Steps of the backbone's training on --pretrain's "
                               "dataset (the teachers' optimiser).", check="nonneg")
  pretrain_cache: Optional[str] = option(
      None, "Folder of the trained-backbone cache (default $DFKA_TF_CACHE or "
      "~/.cache/dfka_tf; 'none' trains the backbone every time). A backbone of the same "
      "recipe and seed, shipped or trained before, is reused instead of trained.",
      resumable=True)

  @property
  def num_blocks(self) -> int:
    """B: the teachers' block count (their cut names + 1)."""
    return len(self.teacher_blocks) + 1 if self.teacher_blocks else DEFAULT_NUM_BLOCKS


@dataclasses.dataclass(frozen=True)
class BnsPrior:
  """L_bns, DeepInversion's batch-norm statistics prior on G's image (beyond the paper)."""
  weight: float = option(0.0, "Weight of L_bns (0 = off).", name="bns_weight", check="nonneg")
  form: str = option("squared", "'squared' (distances of means and standard deviations) or "
                     "'norm' (DeepInversion's code: means and variances).", name="bns_form",
                     choices=("squared", "norm"))


@dataclasses.dataclass(frozen=True)
class LhPrior:
  """L_H, IFHE's auxiliary classifier on the teachers' pooled intermediate features."""
  weight: float = option(0.0, "Weight of L_H (beyond the paper; 0 = off).", name="lh_weight",
                         check="nonneg")


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
  """Step I: the group-stack generator G, its loss weights (S-Table 1) and its priors."""
  enabled: bool = option(True, "Train G (set by --method).", flag="none")
  groups: int = option(2, "K, generator groups; must divide B.", check="positive")
  steps: int = option(150, "Step I steps.", name="generator_steps", check="nonneg")
  lr: float = option(1e-3, "Adam LR of the generator.", name="generator_lr")
  latent_dim: int = option(128, "Length of z.", check="positive")
  width: int = option(64, "Channels of G's first group.", name="generator_width",
                      check="positive")
  alpha: float = option(1.0, "Weight of L_a (S-Table 1: 1).")
  beta: float = option(1.0, "Weight of L_ie (S-Table 1: 1).")
  gamma: float = option(5.0, "Weight of L_dis (S-Table 1: 5).")
  dis_sign: str = option("sparse", "Reading of L_dis (Eq. 8).", choices=("sparse", "printed"))
  epsilon: float = option(0.5, "Threshold ε of L_oh's labels, t = 1[y >= ε] (Eq. 6; paper: "
                          "0.5).", check="open_unit")
  image_bn: bool = option(True, "End G in a batch norm without affine before the sigmoid "
                          "(image_head=sigmoid); Forge's G too.")
  image_head: str = option("sigmoid", "G's image head: sigmoid (an image in [0, 1]) or dafl "
                           "(tanh, then a batch norm without affine, as DAFL's generator "
                           "ends, in the teachers' normalised input space).",
                           choices=("sigmoid", "dafl"))
  jitter: int = option(0, "The teachers judge G's image flipped and shifted by up to this many "
                       "pixels (DeepInversion; beyond the paper; 0 = off).",
                       name="generator_jitter", check="nonneg")
  bns: BnsPrior = option(BnsPrior, "L_bns prior.")
  lh: LhPrior = option(LhPrior, "L_H prior.")


@dataclasses.dataclass(frozen=True)
class PoolConfig:
  """The DeepInversion image pool (beyond the paper), used when source.kind is "pool"."""
  images: int = option(0, "Train Steps II-III on a pool of this many images optimised pixel "
                       "by pixel against the teachers (DeepInversion; beyond the paper; 0 = "
                       "off).", name="inversion_images", check="nonneg")
  steps: int = option(200, "Adam steps per pool batch.", name="inversion_steps",
                      check="positive")
  lr: float = option(0.1, "Adam LR of the pool's pixels.", name="inversion_lr")
  bns: float = option(1.0, "Weight of L_bns in the pool's objective.", name="inversion_bns",
                      check="nonneg")
  bns_form: str = option("norm", "L_bns form of the pool.", name="inversion_bns_form",
                         choices=("squared", "norm"))
  tv: float = option(1e-3, "Weight of the smoothness prior L_tv.", name="inversion_tv",
                     check="nonneg")
  max_labels: int = option(3, "Each pool image targets 1 to this many labels.",
                           name="inversion_max_labels", check="positive")
  jitter: Optional[int] = option(None, "Pixels of the pool's jitter (default image_size // "
                                 "16, at least 1).", name="inversion_jitter", check="positive")


@dataclasses.dataclass(frozen=True)
class ForgeConfig:
  """Forge, data-free images made while the student learns (train/forge.py; beyond the
  paper): used when --forge is on, in place of Step I's G. The defaults are the point
  no_bns_dense of experiments.sweep_forge (validation, seed 0); --preset=best adds what
  measured better after it (--forge_mix=0.5, point mix; --forge_adv=3, point mix_adv3;
  --forge_bns=1 with teachers from fresh weights, point mix_adv3_bns1)."""
  enabled: bool = option(False, "Feed the student Forge's images: a generator trained in "
                         "rounds between student steps against the teachers (BN matching, "
                         "balanced label targets, a masked adversarial term) into a bank the "
                         "student replays (beyond the paper; replaces Step I).", name="forge")
  round_every: int = option(10, "Student steps between synthesis rounds.",
                            name="forge_round_every", check="positive")
  warmup_rounds: int = option(10, "Rounds before the first student step (no adversarial "
                              "term).", name="forge_warmup_rounds", check="nonneg")
  g_steps: int = option(5, "Generator steps a round.", name="forge_g_steps", check="positive")
  reset: str = option("meta", "What a round's generator starts from: meta (a learnt "
                      "initialisation, Fast-Datafree), reinit (fresh weights every "
                      "--forge_reset_every rounds, CMI/NAYER) or keep (carries on).",
                      name="forge_reset", choices=("meta", "reinit", "keep"))
  reset_every: int = option(1, "With --forge_reset=reinit: rounds between fresh weights.",
                            name="forge_reset_every", check="positive")
  lr: float = option(3e-3, "Adam LR of the generator (the meta step's: x g_steps).",
                     name="forge_lr")
  lr_z: float = option(0.01, "Adam LR of a round's latent codes.", name="forge_lr_z")
  oh: float = option(1.0, "Weight of the BCE of the teachers' predictions to the round's "
                     "label targets.", name="forge_oh", check="nonneg")
  bns: float = option(0.0, "Weight of BN-statistics matching (mean over a teacher's BN "
                      "layers, mean over teachers; 0 = off: for a fresh TargetNet it cost 6 "
                      "validation mAP at 10, its teachers fine-tuned from a backbone; with "
                      "teachers from fresh weights 1 gave +1.8, 3 gave -3.0; --preset=best "
                      "sets 1).", name="forge_bns", check="nonneg")
  bns_form: str = option("norm", "Form of the BN-statistics term.", name="forge_bns_form",
                         choices=("squared", "norm"))
  bns_momentum: float = option(0.0, "Share of earlier rounds' kept batches in the statistics "
                               "the BN-statistics term compares (Fast-Datafree's bn_mmt, "
                               "0.9 there; 0 = the batch alone). Not yet measured here.",
                               name="forge_bns_mmt", check="momentum")
  adv: float = option(1.0, "Weight of the masked adversarial term after the warm-up (0 = "
                      "off).", name="forge_adv", check="nonneg")
  contrast: float = option(0.0, "Weight in G's cross-entropy of the \"not b\" entry of an "
                           "image made for label a, b being the label the teachers most "
                           "call on Forge's images made for a and not for b (its partner, "
                           "counted on the kept batches; 0 = off, else >= 1). At 5 on "
                           "--preset=best: -1.2 validation mAP.", name="forge_contrast",
                           check=lambda v: None if v == 0 or v >= 1 else
                           "must be 0 (off) or a weight >= 1")
  max_labels: int = option(3, "Each image targets 1 to this many labels of Y_cst.",
                           name="forge_max_labels", check="positive")
  labels: str = option("balanced", "How targets are drawn: balanced (every label's share "
                       "even, least used first), realised (as balanced, but \"used\" counts "
                       "the labels the teachers give the kept images: the least given get "
                       "a round's spare slots) or uniform.",
                       name="forge_labels", choices=("balanced", "realised", "uniform"))
  jitter: Optional[int] = option(None, "Pixels of the flip-and-shift on G's images and on "
                                 "the student's bank batches (default image_size // 8).",
                                 name="forge_jitter", check="nonneg")
  bank_size: int = option(16384, "Images the bank holds (a ring: the oldest go first).",
                          name="forge_bank_size", check="positive")
  mix: float = option(0.0, "Probability that a student's bank image gets a CutMix box of "
                      "another (the teachers label the mixed image; 0 = off).",
                      name="forge_mix", check="unit")
  block_adv: bool = option(False, "In Step II, the adversarial term plays against block b's "
                           "dual path (TargetNet blocks 1..b, f_m^b, teacher m's blocks "
                           "b+1..B); off: Step II's rounds have no adversary (on, the "
                           "TargetNet alone fell from 42.1 to 28.2 validation mAP).",
                           name="forge_block_adv")


@dataclasses.dataclass(frozen=True)
class SourceConfig:
  """Where Steps II-III get their images."""
  kind: str = option("generator", "generator, pool, dataset (unlabeled real images), noise or "
                     "none (set by --method and --inversion_images).", flag="none",
                     choices=SOURCES)
  dataset: Optional[str] = option(None, "The unlabeled images of kind=dataset (default: the "
                                  "teachers' dataset).", name="source_dataset", flag="none")
  unlabeled: Optional[str] = option(
      None, "Unlabeled real images for --method=ka instead of the teachers' dataset's train "
      "split: an .npz holding x (images, uint8 or float in [0, 1]) or a TFDS name:split. With "
      "your own --teacher files KA needs it: the bound beside the data-free figure.",
      name="unlabeled_data")
  jitter: int = option(0, "Flip and shift each image by up to this many pixels (beyond the "
                       "paper; 0 = off).", name="student_jitter", check="nonneg")
  generator_mode: str = option("inference", "Mode G samples Steps II-III's images in: "
                               "inference (its batch norms' moving statistics) or training "
                               "(each batch's own statistics, as Step I trains it and DAFL "
                               "samples).", choices=("inference", "training"))
  pool: PoolConfig = option(PoolConfig, "The DeepInversion pool.")
  forge: ForgeConfig = option(ForgeConfig, "Forge.")


@dataclasses.dataclass(frozen=True)
class JointConfig:
  """DAFL as its code runs (--method=dafl): G and the student trained together.

  The learning rates are DAFL's CIFAR-10 settings at its batch of 1024, scaled linearly to
  --batch_size; the loss weights are its code's (oh 1, a 0.1, ie 5).
  """
  steps: Optional[int] = option(None, "Joint steps (default: the TargetNet's budget in "
                                "DFKA, B x block_steps + finetune_steps).", name="joint_steps",
                                check="nonneg")
  generator_lr: float = option(0.02, "G's Adam LR at batch 1024 (DAFL: 0.02), scaled by "
                               "batch_size / 1024.", name="joint_generator_lr")
  student_lr: float = option(0.1, "The student's SGD LR at batch 1024 (DAFL: 0.1), scaled "
                             "by batch_size / 1024; x0.1 at 40 % and 80 % of the steps.",
                             name="joint_student_lr")
  weight_decay: float = option(5e-4, "The student's SGD weight decay (DAFL: 5e-4).",
                               name="joint_weight_decay", check="nonneg")
  alpha: float = option(0.1, "Weight of L_a (DAFL: 0.1).", name="joint_alpha")
  beta: float = option(5.0, "Weight of L_ie (DAFL: 5).", name="joint_beta")


@dataclasses.dataclass(frozen=True)
class StudentConfig:
  """The TargetNet: Step II block by block, Step III regrouping and fine-tuning."""
  mode: str = option("blockwise", "blockwise (Steps II-III), distill (one network, plain "
                     "distillation from a trained G: dafl_2stage), joint (DAFL: G and one "
                     "network together) or ensemble (the teachers themselves); set by --method.",
                     flag="none", choices=STUDENT_MODES)
  form: str = option("auto", "The student of an image method (dfka, ka, noise, ...): "
                     "blockwise (the paper's Steps II-III), distill (one whole TargetNet "
                     "distilled end to end on the same images, for the same number of "
                     "steps; beyond the paper) or auto (the method's own).", name="student",
                     choices=("auto", "blockwise", "distill"))
  block_steps: int = option(100, "Step II steps per TargetNet block.", check="nonneg")
  lr: float = option(0.03, "Base LR of the TargetNet blocks (poly, power 0.9).",
                     name="target_lr")
  finetune_steps: int = option(100, "Step III fine-tuning steps.", check="nonneg")
  finetune_lr_scale: float = option(0.1, "Step III's base LR as a fraction of --target_lr.")
  lambda_in1: float = option(1.0, "λ_in^1 of Eq. 17 (F_in^1 stream).", check="nonneg")
  lambda_in2: float = option(1.0, "λ_in^2 of Eq. 17 (generator link stream).", check="nonneg")
  filter: str = option("se", "Teacher-level filter f_m^b of Steps II-III: se (the paper's "
                       "channel attention, Eq. 10) or conv (a 1x1 convolution into teacher "
                       "m's feature space; beyond the paper).", name="step2_filter",
                       choices=("se", "conv"))
  feature_weight: float = option(0.0, "Step II: weight of the squared distance of "
                                 "f_m^b(F_u^b) to teacher m's own block-b features, both "
                                 "scaled to unit norm (a hint term; beyond the paper; 0 = "
                                 "off).",
                                 name="step2_feature_weight", check="nonneg")
  branch_out: Optional[int] = option(None, "Force S_m for every teacher (default: Eq. 18).",
                                     check="positive")
  target_bn: str = option("train", "Batch norm of the TargetNet's blocks in Steps II-III: "
                         "train (each batch's statistics; moving averages updated) or frozen "
                         "(the start's statistics and affine parameters kept, inference mode).",
                         choices=BN_MODES)
  branch_bn: str = option("train", "With --finetune_trainable=all, batch norm of T_u's "
                          "copied teacher blocks in Step III: train or frozen (the teacher's "
                          "statistics and affine parameters kept, inference mode).",
                          choices=BN_MODES)
  finetune_trainable: str = option("trunk", "What Step III fine-tunes: trunk (the "
                                   "TargetNet's blocks and filters; T_u's copies of the "
                                   "teachers' blocks stay as the teachers have them, batch "
                                   "norm included) or all of T_u.", choices=("trunk", "all"))
  param_budget: Optional[float] = option(
      None, "Eq. 18 chooses S_m only among branch-out points whose T_u has at most this "
      "fraction of the teachers' total parameters (beyond the paper; default: no budget).",
      name="target_param_budget", check=lambda v: None if v is None or 0 < v < float("inf")
      else "must be a finite number > 0 (a fraction of the teachers' parameters)")
  joint: JointConfig = option(JointConfig, "DAFL's joint training.")
  distill_loss: str = option("bce", "The student's loss against the teachers' predictions "
                             "in Step III and in --student=distill: bce (the paper's "
                             "cross-entropy) or logit_l1 (mean absolute error on logits, "
                             "after DFAD; beyond the paper).", choices=DISTILL_LOSSES)
  distill_temperature: float = option(1.0, "T of the student's cross-entropy in Step III "
                                      "and in --student=distill: T² · ℓ(σ(z_s/T), σ(z_t/T)) "
                                      "on logits z (after Hinton et al.; beyond the paper; 1 = "
                                      "the paper's plain cross-entropy).", check="above_zero")
  adversarial_weight: float = option(0.0, "Step III: keep training G to maximise T_u's "
                                     "disagreement with the teachers (DFAD; beyond the paper; "
                                     "0 = off).", check="nonneg")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Evaluation on a real split (test by default) and export."""
  evaluate: bool = option(True, "Evaluate teachers and T_u on the real --eval_split.",
                          resumable=True)
  split: str = option("test", "Real split the teachers and T_u are scored on: test (what "
                      "results report) or validation (what settings are tuned on).",
                      name="eval_split", choices=("test", "validation"))
  data: Optional[str] = option(
      None, "Score on your own labelled data instead of the dataset's --eval_split: a TFDS "
      "'name:split' (label names matched to the teachers') or an .npz holding x (images, "
      "float in [0, 1] or uint8), y (multi-hot) and labels (names). Needed to score a run "
      "of your own --teacher files.", name="eval_data", resumable=True)
  curve_every: int = option(0, "Every this many steps of a whole student (the distilled "
                            "TargetNet, Step III's T_u), score it on the first "
                            "--curve_images images of --eval_split: the mAP-against-synthesis-"
                            "time curve in results.json (0 = off).", check="nonneg",
                            resumable=True)
  curve_images: int = option(500, "Images each point of the curve is scored on.",
                             check="positive", resumable=True)
  batch_size: int = option(250, "Batch size of evaluation.", name="eval_batch_size",
                           check="positive", resumable=True)
  export: bool = option(True, "Export T_u as a SavedModel.", resumable=True, flag="none")
  export_tflite: bool = option(False, "Also write T_u as target_net.tflite (float) and "
                               "target_net_int8.tflite (full integer, calibrated on the run's "
                               "own synthetic images, never real data; beyond the paper) in "
                               "the export folder, scored beside the SavedModel.",
                               resumable=True)
  tflite_calibration: int = option(512, "Synthetic images the int8 model is calibrated on.",
                                   check="positive", resumable=True)


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
  """Seed, batch, optimiser settings shared by every stage, devices and checkpoints."""
  workdir: str = option("runs/default", "Run directory (default runs/<dataset>-seed<seed>).",
                        resumable=True, flag="none")
  seed: int = option(0, "Seed of data order, noise and initialisation.")
  batch_size: int = option(64, "Batch size of every training stage (paper: 16).",
                           check="positive")
  weight_decay: float = option(5e-3, "SGD weight decay of teachers and TargetNet (paper: "
                               "5e-3).", check="nonneg")
  jit: Optional[bool] = option(None, "XLA: None = on with a GPU, off on CPU (slower there).",
                               resumable=True, flag="none")
  mixed_precision: bool = option(False, "mixed_float16 (GPU).")
  strategy: str = option("auto", "tf.distribute strategy: auto (mirrored over the GPUs when "
                         "more than one is visible, else one device), mirrored (every GPU, "
                         "else every logical CPU device), multi_worker (the cluster in "
                         "TF_CONFIG) or one_device.", choices=STRATEGIES, resumable=True)
  checkpoint_every: int = option(100, "Steps between checkpoints.", check="positive",
                                 resumable=True)
  summary_every: int = option(50, "Steps between the TensorBoard image grid, label histogram "
                              "and sampled/* scalars of G as Steps II-III sample it (Step I, "
                              "DAFL's joint stage); 0 = none.", check="nonneg",
                              resumable=True)


SECTIONS = {"data": DataConfig, "generator": GeneratorConfig, "source": SourceConfig,
            "student": StudentConfig, "eval": EvalConfig, "runtime": RuntimeConfig}


# ------------------------------------------------------------------ field registry
@dataclasses.dataclass(frozen=True)
class Field:
  """One option: its dotted path, short name, type and metadata."""
  path: str
  name: str
  type: Any
  default: Any
  meta: Dict

  @property
  def help(self) -> str:
    return self.meta["help"]


def _fields_of(cls, prefix: str) -> List[Field]:
  hints = typing.get_type_hints(cls)
  out = []
  for f in dataclasses.fields(cls):
    path = f"{prefix}.{f.name}"
    if dataclasses.is_dataclass(hints[f.name]):
      out.extend(_fields_of(hints[f.name], path))
      continue
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    out.append(Field(path, f.metadata.get("name") or f.name, hints[f.name], default,
                     dict(f.metadata)))
  return out


FIELDS: List[Field] = [f for s, cls in SECTIONS.items() for f in _fields_of(cls, s)]
BY_NAME = {f.name: f for f in FIELDS}
BY_PATH = {f.path: f for f in FIELDS}
assert len(BY_NAME) == len(FIELDS), "option short names must be unique"


def resolve(key: str) -> Field:
  """The field of a dotted path or a short name; ConfigError with close matches if none."""
  field = BY_PATH.get(key) or BY_NAME.get(key)
  if field is None:  # A field's own name where it is unique (num_teachers, teacher_paths).
    same = [f for f in FIELDS if f.path.rsplit(".", 1)[-1] == key]
    field = same[0] if len(same) == 1 else None
  if field is None:
    import difflib  # pylint: disable=g-import-not-at-top
    close = difflib.get_close_matches(key, list(BY_PATH) + list(BY_NAME), n=3)
    raise ConfigError(f"unknown config option {key!r}; close matches: {close}. "
                      "docs/configuration.md lists every option.")
  return field


def base_type(field: Field):
  """The field's type without Optional, as a class (tuple for Tuple[str, ...])."""
  typ = field.type
  if typing.get_origin(typ) is typing.Union:
    typ = [a for a in typing.get_args(typ) if a is not type(None)][0]
  return typing.get_origin(typ) or typ


def coerce(field: Field, value):
  """`value` as the field's type (tuples from lists, numbers from strings of --set)."""
  if value is None or (value == "None" and typing.get_origin(field.type) is typing.Union):
    return None
  kind = base_type(field)
  try:
    if kind is tuple:
      items = value.split(",") if isinstance(value, str) else list(value)
      return tuple(str(v) for v in items)
    if kind is bool and isinstance(value, str):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(value)
      return value.lower() in ("true", "1")
    if kind is bool:
      return bool(value)
    return kind(value)
  except (TypeError, ValueError):
    raise ConfigError(f"{field.path}={value!r} is not of type {kind.__name__}.") from None
