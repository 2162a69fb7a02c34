"""Run configuration in sections, presets by name, one expansion of --method, clear errors.

A run is one `RunConfig`: the method plus six frozen sections (`DataConfig`, `GeneratorConfig`
with its priors, `SourceConfig`, `StudentConfig`, `EvalConfig`, `RuntimeConfig`). Every option
is one dataclass field made by `option(...)`: its default, its help, its check and its
short name. From that one place come the command-line flag (`--<name>`), the `--set
<section>.<field>=value` key, the validation and the cache keys of the experiment suites.
docs/configuration.md shows how a new option is added.

`RunConfig.build` starts from a named preset, applies overrides, then expands the method
into settings (e.g. dafl: one generator group, no L_dis, G and the student trained
together) once; the code
reads those settings, never the method's name.
"""

import dataclasses
import hashlib
import json
import typing
from typing import Any, Dict, List, Optional, Tuple

from dfka_tf.errors import ConfigError

METHODS = ("dfka", "teacher", "ka", "similar", "diff", "noise", "dafl", "dafl_2stage")
SOURCES = ("generator", "pool", "dataset", "noise", "none")
STUDENT_MODES = ("blockwise", "distill", "joint", "ensemble")
BN_MODES = ("train", "frozen")  # Batch norm of the TargetNet's and the branches' blocks.
STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")  # dfka_tf.distribute
PAPER_SCALE_ARCHS = ("resnet50", "resnet101")  # The archs with Keras ImageNet weights.
RESNET_ARCHS = ("small", "tiny", "resnet18", "resnet50", "resnet101")
# The TargetNet in the architecture of your own teachers (models/byo.py).
TEACHER_ARCH = "teacher"
# Your own teachers up to this input side get the embedded budget (the scenes20 preset),
# larger ones the paper's (voc2007).
BYO_SMALL_MAX_SIZE = 64
DEFAULT_NUM_BLOCKS = 4  # B: build_resnet's stages block1..block4, cut at block{1,2,3}_out.


def option(default, help: str, *, name: Optional[str] = None, check=None,
           choices: Optional[Tuple] = None, resumable: bool = False, flag: str = "auto"):
  """A config field: default, help text, short name (flag and legacy key) and check.

  Args:
    default: the value when neither a preset nor the user sets it.
    help: one sentence for --help and docs/configuration.md.
    name: the flat name (`--<name>` and the key in older flat config.json files); default
      the field's own name.
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


_CHECKS = {"positive": _positive, "nonneg": _nonneg, "open_unit": _open_unit}


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
                          "(image_head=sigmoid).")
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
class SourceConfig:
  """Where Steps II-III get their images."""
  kind: str = option("generator", "generator, pool, dataset (unlabeled real images), noise or "
                     "none (set by --method and --inversion_images).", flag="none",
                     choices=SOURCES)
  dataset: Optional[str] = option(None, "The unlabeled images of kind=dataset (default: the "
                                  "teachers' dataset).", name="source_dataset", flag="none")
  jitter: int = option(0, "Flip and shift each image by up to this many pixels (beyond the "
                       "paper; 0 = off).", name="student_jitter", check="nonneg")
  generator_mode: str = option("inference", "Mode G samples Steps II-III's images in: "
                               "inference (its batch norms' moving statistics) or training "
                               "(each batch's own statistics, as Step I trains it and DAFL "
                               "samples).", choices=("inference", "training"))
  pool: PoolConfig = option(PoolConfig, "The DeepInversion pool.")


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
  block_steps: int = option(100, "Step II steps per TargetNet block.", check="nonneg")
  lr: float = option(0.03, "Base LR of the TargetNet blocks (poly, power 0.9).",
                     name="target_lr")
  finetune_steps: int = option(100, "Step III fine-tuning steps.", check="nonneg")
  finetune_lr_scale: float = option(0.1, "Step III's base LR as a fraction of --target_lr.")
  lambda_in1: float = option(1.0, "λ_in^1 of Eq. 17 (F_in^1 stream).", check="nonneg")
  lambda_in2: float = option(1.0, "λ_in^2 of Eq. 17 (generator link stream).", check="nonneg")
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
  batch_size: int = option(250, "Batch size of evaluation.", name="eval_batch_size",
                           check="positive", resumable=True)
  export: bool = option(True, "Export T_u as a SavedModel.", resumable=True, flag="none")


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

# Named presets: dotted paths -> values. scenes20 is the quick start: the whole default run
# (teachers included, the backbone from the cache) in 10 minutes on 2 CPU cores. "tables" is
# the suites' budget, chosen where the loss curves flatten (docs/results.md, "The tables'
# budget"). voc2007/coco2014 follow the paper (§5.1): ResNet-101 at 224 px, batch 16, SGD
# with poly LR base 0.01, power 0.9, weight decay 5e-3.
PRESETS: Dict[str, Dict[str, Any]] = {
    "scenes20": {"data.arch": "small", "data.image_size": 32, "runtime.batch_size": 64,
                 "data.teacher_steps": 300, "data.teacher_lr": 0.3, "generator.steps": 150,
                 "generator.lr": 1e-3, "student.block_steps": 100,
                 "student.finetune_steps": 100, "generator.latent_dim": 128,
                 "generator.width": 64, "eval.batch_size": 250,
                 "data.pretrain": "scenes20_similar",
                 # Step I's weights, chosen on scenes20's validation split (experiments.sweep;
                 # docs/results.md, "Step I's settings"): S-Table 1's collapse G onto one or
                 # two labels within 60 steps here. --preset=paper_weights restores them.
                 "generator.alpha": 0.1, "generator.beta": 5.0, "generator.gamma": 10.0,
                 # Steps II–III's LR, chosen on scenes20's validation split over 3 seeds
                 # (experiments.sweep_student; docs/design.md, "Steps II–III"): at 0.3 Step II
                 # moves block 1 away from what the teachers' blocks 2–4 expect.
                 "student.lr": 0.03},
    "voc2007": {"data.arch": "resnet101", "data.image_size": 224, "runtime.batch_size": 16,
                "data.teacher_steps": 20000, "data.teacher_lr": 0.01,
                "generator.steps": 20000, "generator.lr": 1e-3, "student.block_steps": 10000,
                "student.lr": 0.01, "student.finetune_steps": 10000,
                "generator.latent_dim": 256, "generator.width": 256, "eval.batch_size": 32,
                "data.pretrain": "imagenet"},
    # The suites' rows (scenes20): Step I, Step II and Step III each past where their losses
    # flatten; a DFKA row takes about 10 minutes on 2 CPU cores.
    "tables": {"data.pretrain_steps": 1200, "data.teacher_steps": 300, "generator.steps": 400,
               "student.block_steps": 200, "student.finetune_steps": 200},
    # S-Table 1's loss weights as printed, for the paper's VOC / ResNet-101 setting. The
    # scenes20 preset replaces them with the weights its validation split chose
    # (docs/results.md, "Step I's settings"); this preset puts the printed ones back.
    "paper_weights": {"generator.alpha": 1.0, "generator.beta": 1.0, "generator.gamma": 5.0,
                      "generator.epsilon": 0.5},
    # Smoke runs (tests, suites' --quick): every stage a handful of steps; numbers meaningless.
    "quick": {"data.arch": "tiny", "data.image_size": 32, "runtime.batch_size": 8,
              "data.teacher_steps": 20, "generator.steps": 5, "student.block_steps": 5,
              "student.finetune_steps": 5, "data.pretrain_steps": 10, "eval.export": False},
}
PRESETS["coco2014"] = dict(PRESETS["voc2007"], **{"data.teacher_steps": 60000})
DATASET_PRESET = {"scenes20": "scenes20", "voc2007": "voc2007", "coco2014": "coco2014",
                  "byo": "scenes20"}

def byo_preset(image_size) -> str:
  """The preset your own teachers get: the embedded budget (scenes20) up to
  BYO_SMALL_MAX_SIZE pixels or when the size is unknown, the paper's (voc2007) above."""
  if image_size is not None and int(image_size) > BYO_SMALL_MAX_SIZE:
    return "voc2007"
  return "scenes20"


# Companion datasets of the Table 1 rows trained on unlabeled real images.
COMPANIONS = {"ka": None, "similar": "scenes20_similar", "diff": "scenes20_different"}


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


def _get(obj, path: str):
  for part in path.split("."):
    obj = getattr(obj, part)
  return obj


def _replace(obj, path: str, value):
  head, _, rest = path.partition(".")
  if not rest:
    return dataclasses.replace(obj, **{head: value})
  return dataclasses.replace(obj, **{head: _replace(getattr(obj, head), rest, value)})


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Everything one run needs; written to <workdir>/config.json at start."""
  method: str = "dfka"
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  generator: GeneratorConfig = dataclasses.field(default_factory=GeneratorConfig)
  source: SourceConfig = dataclasses.field(default_factory=SourceConfig)
  student: StudentConfig = dataclasses.field(default_factory=StudentConfig)
  eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
  runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

  # ---------------------------------------------------------------- building
  @classmethod
  def build(cls, dataset: str = "scenes20", *, preset=None,
            method: str = "dfka", overrides: Optional[Dict[str, Any]] = None) -> "RunConfig":
    """The preset (default: the dataset's), then `overrides`, then the method's settings.

    Args:
      dataset: scenes20, voc2007, coco2014, or "byo" (your own teachers: `byo_preset` of
        the image size in `overrides`, data.arch "teacher", no --pretrain).
      preset: names in PRESETS applied after the dataset's, in order: a comma-separated
        string or a sequence (e.g. "quick", "tables,paper_weights").
      overrides: {short name or dotted path: value}; None values are ignored.
    """
    if dataset not in DATASET_PRESET:
      raise ConfigError(f"unknown --dataset={dataset!r}; use one of "
                        f"{sorted(k for k in DATASET_PRESET if k != 'byo')} (or pass "
                        "--teacher files to bring your own teachers).")
    names = preset_names(preset)
    for name in names:
      if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; use one of {sorted(PRESETS)} (several "
                          "go in order, comma-separated: --preset=tables,paper_weights).")
    if method not in METHODS:
      raise ConfigError(f"--method={method!r} is unknown; use one of {', '.join(METHODS)}.")
    config = cls(method=method)
    overrides = {resolve(k).path: v for k, v in (overrides or {}).items() if v is not None}
    values = dict(PRESETS[byo_preset(overrides.get("data.image_size")) if dataset == "byo"
                          else DATASET_PRESET[dataset]], **{"data.dataset": dataset})
    for name in names:
      values.update(PRESETS[name])
    if dataset == "byo":
      # Your teachers keep their weights; the TargetNet takes their architecture (whatever
      # the named presets build) and starts fresh unless --target_init names a start.
      values.update({"data.pretrain": None, "data.arch": TEACHER_ARCH,
                     "eval.evaluate": bool(overrides.get("eval.data"))})
    values.update(overrides)
    for path, value in values.items():
      config = _replace(config, path, coerce(resolve(path), value))
    config = config.expanded()
    config.validate()
    return config

  @classmethod
  def for_dataset(cls, dataset: str = "scenes20", **overrides) -> "RunConfig":
    """`build` with flat keyword overrides (short names or dotted paths); `method=` too."""
    method = overrides.pop("method", None) or "dfka"
    preset = overrides.pop("preset", None)
    return cls.build(dataset, preset=preset, method=method, overrides=overrides)

  def replace(self, **overrides) -> "RunConfig":
    """A copy with overrides (short names or dotted paths), expanded and validated."""
    config = self
    for key, value in overrides.items():
      field = resolve(key)
      config = _replace(config, field.path, coerce(field, value))
    config = config.expanded()
    config.validate()
    return config

  def expanded(self) -> "RunConfig":
    """The method's settings, applied once: which stages run and on which images."""
    m, c = self.method, self
    student = {"teacher": "ensemble", "dafl": "joint", "dafl_2stage": "distill"}.get(
        m, "blockwise")
    c = _replace(c, "student.mode", student)
    # Step I runs before the TargetNet for dfka and dafl_2stage; dafl trains G in its stage.
    c = _replace(c, "generator.enabled", m in ("dfka", "dafl_2stage"))
    if m in ("dafl", "dafl_2stage"):  # One generator judged on the image only: no L_dis.
      c = _replace(_replace(c, "generator.groups", 1), "generator.gamma", 0.0)
    if m in ("dfka", "dafl_2stage"):
      kind = "pool" if c.source.pool.images > 0 else "generator"
    elif m == "dafl":
      kind = "generator"
    elif m == "noise":
      kind = "noise"
    elif m in COMPANIONS:
      kind = "dataset"
      c = _replace(c, "source.dataset", COMPANIONS[m])
    else:
      kind = "none"
    return _replace(c, "source.kind", kind)

  # ---------------------------------------------------------------- access
  @property
  def workdir(self) -> str:
    return self.runtime.workdir

  @property
  def seed(self) -> int:
    return self.runtime.seed

  def get(self, key: str):
    """The value of a short name or dotted path."""
    return _get(self, resolve(key).path)

  # ---------------------------------------------------------------- validation
  def validate(self):
    """Raises ConfigError naming the first bad value and what to use instead."""
    for f in FIELDS:
      value = _get(self, f.path)
      check = _CHECKS.get(f.meta["check"], f.meta["check"])
      problem = check(value) if check else None
      if problem is None and f.meta["choices"] and value not in f.meta["choices"]:
        problem = f"must be one of {', '.join(map(str, f.meta['choices']))}"
      if problem:
        raise ConfigError(f"--{f.name}={value!r} {problem}.")
    _validate_combinations(self)

  # ---------------------------------------------------------------- (de)serialisation
  def to_dict(self) -> Dict:
    return json.loads(json.dumps(dataclasses.asdict(self), default=list))

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "RunConfig":
    """A config.json in sections, or the flat one older runs wrote (read for --resume)."""
    values = json.loads(text)
    method = values.pop("method", "dfka")
    if not any(k in SECTIONS for k in values):  # Flat: every key is an option's short name.
      values = {resolve(LEGACY_NAMES.get(k, k)).path: v for k, v in values.items()
                if k not in DROPPED_NAMES}
    else:
      values = {f.path: _get_dict(values, f.path) for f in FIELDS
                if _has_dict(values, f.path)}
    config = cls(method=method)
    for path, value in values.items():
      config = _replace(config, path, coerce(BY_PATH[path], value))
    return config.expanded()

  def unread(self) -> Tuple[str, ...]:
    """Dotted paths of the options this config's method never reads, so they cannot change
    T_u: the generator's where no G is trained (teacher, ka, similar, diff, noise); where
    Steps II–III train on the pool instead of G, all but those that shape G's layers; L_a's
    and L_ie's weights, G's LR and Step I's steps under DAFL's joint stage, which takes its
    own (`student.joint`); L_dis's reading where γ = 0."""
    g = [f.path for f in FIELDS if f.path.startswith("generator.")]
    # How G is built still matters where it is built but not used: its layers draw
    # initializer seeds before the TargetNet's are drawn.
    built = ("generator.groups", "generator.width", "generator.latent_dim",
             "generator.image_bn", "generator.image_head", "generator.lh.weight")
    if self.student.mode == "joint":
      out = ["generator.alpha", "generator.beta", "generator.lr", "generator.steps"]
    elif not self.generator.enabled:
      return tuple(g)
    elif self.source.kind == "pool":
      return tuple(p for p in g if p not in built)
    else:
      out = []
    if self.generator.gamma == 0:
      out.append("generator.dis_sign")
    return tuple(out)

  def differences(self, other: "RunConfig", *, read_only: bool = False) -> List[str]:
    """Short names of the result-changing options that differ (the method too).

    With `read_only`, options that neither config's method reads (`unread`) are left out:
    two such configs give the same T_u (the suites' row records compare this way).
    """
    out = ["method"] if self.method != other.method else []
    skip = set(self.unread()) & set(other.unread()) if read_only else set()
    return out + [f.name for f in FIELDS if not f.meta["resumable"] and f.path not in skip
                  and _get(self, f.path) != _get(other, f.path)]

  def key(self, *sections: str, exclude: Tuple[str, ...] = ()) -> str:
    """A short hash of the result-changing fields of `sections` that differ from their
    defaults, so an option added later at its default (off) changes no existing key."""
    values = {f.path: _get(self, f.path) for f in FIELDS
              if f.path.split(".")[0] in sections and not f.meta["resumable"]
              and f.path not in exclude and _get(self, f.path) != f.default}
    text = json.dumps([sections, values], sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# Short names older config.json files used: renamed, or dropped where the option is gone
# (imagenet_init: --pretrain=imagenet, the voc2007/coco2014 default, replaces it).
LEGACY_NAMES = {"target_pretrain": "pretrain"}
DROPPED_NAMES = ("imagenet_init",)


def _has_dict(d, path):
  for part in path.split("."):
    if not isinstance(d, dict) or part not in d:
      return False
    d = d[part]
  return True


def _get_dict(d, path):
  for part in path.split("."):
    d = d[part]
  return d


def _validate_combinations(c: RunConfig):
  """Checks that involve more than one option."""
  if c.data.labels is not None and len(c.data.labels) == 0:
    raise ConfigError("--labels is empty; name at least one label or leave it unset.")
  s = c.student
  if s.lambda_in1 + s.lambda_in2 == 0:
    raise ConfigError(f"--lambda_in1={s.lambda_in1}, --lambda_in2={s.lambda_in2}: both must "
                      "be >= 0 and not both 0.")
  for name, value in (("generator_jitter", c.generator.jitter),
                      ("student_jitter", c.source.jitter)):
    if value >= c.data.image_size:
      raise ConfigError(f"--{name}={value} must be in 0..{c.data.image_size - 1} pixels "
                        "(0 turns it off).")
  _validate_pretrain(c)
  if s.param_budget is not None and s.branch_out is not None:
    raise ConfigError(f"--target_param_budget={s.param_budget} chooses S_m within a size "
                      f"budget, but --branch_out={s.branch_out} forces it; give one of them.")
  if s.param_budget is not None and s.mode != "blockwise":
    raise ConfigError(f"--target_param_budget bounds T_u's regrouping (Eq. 18-20); "
                      f"--method={c.method} does not regroup. Use --method=dfka or leave "
                      "--target_param_budget unset.")
  changed = [f"--{name}={value}" for name, value, default in (
      ("target_bn", s.target_bn, "train"), ("branch_bn", s.branch_bn, "train"),
      ("finetune_trainable", s.finetune_trainable, "trunk")) if value != default]
  if changed and s.mode != "blockwise":
    raise ConfigError(f"{' '.join(changed)}: these apply to Steps II-III, which "
                      f"--method={c.method} does not run; use a method that runs them (dfka, "
                      "ka, similar, diff, noise) or leave them unset.")
  if s.branch_bn == "frozen" and s.finetune_trainable == "trunk":
    raise ConfigError("--branch_bn=frozen freezes the batch norms of copied teacher blocks "
                      "Step III trains, but --finetune_trainable=trunk (the default) keeps "
                      "them frozen whole; add --finetune_trainable=all, or leave --branch_bn "
                      "unset.")
  if s.adversarial_weight > 0 and c.method != "dfka":
    raise ConfigError(f"--adversarial_weight trains DFKA's generator in Step III; "
                      f"--method={c.method} has no Step III generator. Use --method=dfka or "
                      "--adversarial_weight=0.")
  if c.source.pool.images > 0:
    if c.method not in ("dfka", "dafl_2stage"):
      raise ConfigError(f"--inversion_images replaces the generated images of dfka and "
                        f"dafl_2stage; --method={c.method} does not train on a fixed set of "
                        "generated images. Use --method=dfka or --inversion_images=0.")
    if s.adversarial_weight > 0:
      raise ConfigError("--adversarial_weight trains G against T_u in Step III, but with "
                        "--inversion_images T_u trains on the fixed pool, not on G; set one "
                        "of them to 0.")
    if c.source.pool.lr <= 0:
      raise ConfigError(f"--inversion_lr={c.source.pool.lr} must be > 0.")
  if c.data.teacher_blocks and not c.data.teacher_paths:
    raise ConfigError("--teacher_blocks names the layers that end the blocks of your own "
                      "--teacher files; pass --teacher too, or leave --teacher_blocks unset.")
  if c.data.arch == TEACHER_ARCH and not c.data.teacher_paths:
    raise ConfigError("--arch=teacher builds the TargetNet in your own teachers' "
                      "architecture; pass --teacher files, or an --arch of dfka_tf's ResNets "
                      f"({', '.join(RESNET_ARCHS)}).")
  if c.data.target_init is not None and c.data.arch != TEACHER_ARCH:
    raise ConfigError(f"--target_init starts a TargetNet in your teachers' architecture "
                      f"(--arch=teacher), not --arch={c.data.arch}; use --pretrain for "
                      "dfka_tf's ResNets.")
  if c.data.arch == TEACHER_ARCH and c.data.pretrain is not None:
    raise ConfigError(f"--pretrain={c.data.pretrain} trains or loads a dfka_tf ResNet; with "
                      "--arch=teacher the TargetNet's start is --target_init=<.keras or "
                      ".weights.h5 of the teachers' architecture>.")
  if c.data.teacher_paths and c.source.kind == "dataset":
    raise ConfigError(f"--method={c.method} trains on unlabeled images of a dataset; with "
                      "your own --teacher files there is none. Use dfka, dafl, noise or "
                      "teacher.")


def _validate_pretrain(c: RunConfig):
  pretrain = c.data.pretrain
  if pretrain is None:
    return
  if pretrain == "imagenet":
    if c.data.arch not in PAPER_SCALE_ARCHS:
      raise ConfigError(f"--pretrain=imagenet: ImageNet weights exist for "
                        f"{', '.join(PAPER_SCALE_ARCHS)}, not --arch={c.data.arch}. Use one of "
                        "them, or pretrain on a labelled dataset (scenes20_similar).")
    return
  # scenes20_colour draws scenes20's very scenes; the _64 variants its images at 64 px.
  family = lambda name: name.removesuffix("_64").replace("_colour", "")
  if family(pretrain) == family(c.data.dataset):
    raise ConfigError(f"--pretrain={pretrain} holds the teachers' own images; the TargetNet "
                      "must not see them (data-free). Pretrain on a labelled dataset of other "
                      "classes, e.g. scenes20_similar for scenes20.")


def parse_assignments(items) -> Dict[str, str]:
  """['generator.bns.weight=20', 'block_steps=300'] -> {dotted path: value text}.

  The values are coerced to each field's type when the config is built.
  """
  merged = []  # "a=1,b=2" is two assignments; "labels=x,y" one (a part without "=").
  for item in items:
    for part in item.split(","):
      if "=" in part or not merged:
        merged.append(part)
      else:
        merged[-1] += "," + part
  out = {}
  for item in merged:
    if "=" not in item:
      raise ConfigError(f"--set={item!r} is not <option>=<value>, e.g. "
                        "--set=generator.bns.weight=20.")
    key, value = item.split("=", 1)
    out[resolve(key.strip()).path] = value.strip()
  return out


def preset_names(preset) -> List[str]:
  """The named presets of `preset`: None, one name, "a,b" or a sequence of names."""
  if preset is None:
    return []
  if isinstance(preset, str):
    preset = preset.split(",")
  return [p.strip() for p in preset if p and p.strip()]


def preset_values(name: str) -> Dict[str, Any]:
  """{short name: value} of a preset, for --helpfull and the docs."""
  return {BY_PATH[p].name: v for p, v in PRESETS[name].items()}


def option_table() -> str:
  """Markdown table of every option: path, flag, default, presets, help (docs)."""
  lines = ["| option | flag | default | help |", "| --- | --- | --- | --- |"]
  for f in FIELDS:
    flag = "—" if f.meta["flag"] == "none" else f"`--{f.name}`"
    lines.append(f"| `{f.path}` | {flag} | `{f.default!r}` | {f.help} |")
  return "\n".join(lines)

