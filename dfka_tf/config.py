"""A run's configuration: `RunConfig` built from presets by name, one expansion of --method,
and every check of option combinations, each with a clear error.

A run is one `RunConfig`: the method plus six frozen sections (`DataConfig`, `GeneratorConfig`
with its priors, `SourceConfig`, `StudentConfig`, `EvalConfig`, `RuntimeConfig`), whose
options are declared in `options.py`. `RunConfig.build` starts from a named preset, applies
overrides, then expands the method into settings (e.g. dafl: one generator group, no L_dis, G
and the student trained together) once; the code reads those settings, never the method's
name.
"""

import dataclasses
import json
from typing import Any, Dict, List, Optional

from dfka_tf.errors import ConfigError
from dfka_tf.options import (BY_PATH, BYO_SMALL_MAX_SIZE, CHECKS, FIELDS, METHODS,
                             PAPER_SCALE_ARCHS, RESNET_ARCHS, SYNTHETIC_SOURCES, TEACHER_ARCH,
                             DataConfig,
                             EvalConfig, GeneratorConfig, RuntimeConfig, SourceConfig,
                             StudentConfig, coerce, resolve)

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
    # From fresh weights (experiments.from_scratch): no pretrained start for the teachers or
    # the TargetNet. Teachers from fresh weights score 99.5 validation mAP at 1500 steps.
    # Steps II–III get the most steps that keep a row within about 15 CPU-minutes: KA's
    # TargetNet alone is still rising there (validation, seed 0: 13.8 at 100 steps a block,
    # 20.9 at 300, 64.7 at 1000; docs/results.md, "From fresh weights").
    # The TargetNet's LR is the teachers' 0.3: from fresh weights KA's TargetNet alone reaches
    # 98.1 validation mAP at 0.3 against 64.7 at the scenes20 preset's 0.03, which was chosen
    # for a TargetNet with a pretrained start.
    "from_scratch": {"data.pretrain": None, "data.teacher_steps": 1500,
                     "student.block_steps": 1000, "student.finetune_steps": 1000,
                     "student.lr": 0.3},
    # Beyond the paper: the data-free recipe that measured best from fresh weights
    # (experiments.sweep_forge, validation split, seed 0, teachers and TargetNet from fresh
    # weights: point `mix_adv3_bns1`, 92.5 mAP against KA's 98.6 on the same student, 90.7
    # without BN matching, 87.7 with it at 3; docs/results.md, "Re-tuned on validation with
    # these teachers"): Forge's images with BN-statistics matching at 1, its adversarial term
    # at 3, a round every 10 student steps into a bank of 16384, half the student's bank
    # images CutMixed, one whole TargetNet distilled end to end at the teachers' LR. It sets
    # no budget, so it stacks on the one that applies (--preset=from_scratch,best; your own
    # teachers get theirs by size).
    "best": {"source.forge.enabled": True, "student.form": "distill", "student.lr": 0.3,
             "source.forge.bns": 1.0, "source.forge.adv": 3.0, "source.forge.round_every": 10,
             "source.forge.bank_size": 16384, "source.forge.mix": 0.5},
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
            method: str = "dfka", overrides: Optional[Dict[str, Any]] = None,
            none_is_a_value: bool = False) -> "RunConfig":
    """The preset (default: the dataset's), then `overrides`, then the method's settings.

    Args:
      dataset: scenes20, voc2007, coco2014, or "byo" (your own teachers: `byo_preset` of
        the image size in `overrides`, data.arch "teacher", no --pretrain).
      preset: names in PRESETS applied after the dataset's, in order: a comma-separated
        string or a sequence (e.g. "quick", "tables,paper_weights").
      overrides: {short name or dotted path: value}; None values are ignored (an unset
        flag) unless `none_is_a_value`, where they set the option to None (`pretrain=None`
        from Python, or a value copied from another config: fresh weights).
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
    overrides = {resolve(k).path: v for k, v in (overrides or {}).items()
                 if v is not None or none_is_a_value}
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
    if c.student.form != "auto" and student in ("blockwise", "distill"):
      student = c.student.form  # Checked in `_validate_combinations` for the others.
    c = _replace(c, "student.mode", student)
    forge = c.source.forge.enabled and m in ("dfka", "dafl_2stage")
    # Step I runs before the TargetNet for dfka and dafl_2stage (not under Forge, which
    # makes its images in its own rounds); dafl trains G in its stage.
    c = _replace(c, "generator.enabled", m in ("dfka", "dafl_2stage") and not forge)
    if m in ("dafl", "dafl_2stage"):  # One generator judged on the image only: no L_dis.
      c = _replace(_replace(c, "generator.groups", 1), "generator.gamma", 0.0)
    if forge:
      kind = "forge"
    elif m in ("dfka", "dafl_2stage"):
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
      check = CHECKS.get(f.meta["check"], f.meta["check"])
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
    """The config `to_json` wrote (read for --resume and the suites' records).

    An option the file lacks takes its default, so files written before it was added still
    read; a value whose option is gone is ignored.
    """
    values = json.loads(text)
    config = cls(method=values.pop("method", "dfka"))
    for path, value in _leaves(values):
      if path in BY_PATH:
        config = _replace(config, path, coerce(BY_PATH[path], value))
    return config.expanded()

  def differences(self, other: "RunConfig") -> List[str]:
    """Short names of the result-changing options that differ (the method too)."""
    out = ["method"] if self.method != other.method else []
    return out + [f.name for f in FIELDS if not f.meta["resumable"]
                  and _get(self, f.path) != _get(other, f.path)]


def _leaves(values: Dict, prefix: str = ""):
  """(dotted path, value) of every non-dict value in nested dicts, as config.json nests them."""
  for k, v in values.items():
    if isinstance(v, dict):
      yield from _leaves(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v


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
      ("finetune_trainable", s.finetune_trainable, "trunk"),
      ("step2_filter", s.filter, "se"), ("step2_feature_weight", s.feature_weight, 0.0))
      if value != default]
  if changed and s.mode != "blockwise":
    raise ConfigError(f"{' '.join(changed)}: these apply to Steps II-III, which "
                      f"--method={c.method} does not run; use a method that runs them (dfka, "
                      "ka, similar, diff, noise) or leave them unset.")
  distill = [f"--{name}={value}" for name, value, default in (
      ("distill_loss", s.distill_loss, "bce"), ("distill_temperature", s.distill_temperature,
                                                1.0)) if value != default]
  if distill and s.mode in ("joint", "ensemble"):
    raise ConfigError(f"{' '.join(distill)}: these set the student's loss in Step III and in "
                      f"--student=distill; --method={c.method} trains no such student. Use "
                      "an image method (dfka, ka, ...) or leave them unset.")
  if s.distill_temperature != 1.0 and s.distill_loss != "bce":
    raise ConfigError(f"--distill_temperature={s.distill_temperature} tempers the "
                      f"cross-entropy, but --distill_loss={s.distill_loss} replaces it; use "
                      "--distill_loss=bce or leave --distill_temperature unset.")
  if s.branch_bn == "frozen" and s.finetune_trainable == "trunk":
    raise ConfigError("--branch_bn=frozen freezes the batch norms of copied teacher blocks "
                      "Step III trains, but --finetune_trainable=trunk (the default) keeps "
                      "them frozen whole; add --finetune_trainable=all, or leave --branch_bn "
                      "unset.")
  if s.adversarial_weight > 0 and c.method != "dfka":
    raise ConfigError(f"--adversarial_weight trains DFKA's generator in Step III; "
                      f"--method={c.method} has no Step III generator. Use --method=dfka or "
                      "--adversarial_weight=0.")
  if s.form != "auto" and c.method in ("teacher", "dafl"):
    raise ConfigError(f"--student={s.form} chooses the student of an image method; "
                      f"--method={c.method} has its own. Leave --student unset, or use dfka, "
                      "ka, similar, diff or noise.")
  if c.eval.export_tflite:
    if not c.eval.export:
      raise ConfigError("--export_tflite writes beside the SavedModel export; leave "
                        "eval.export on or drop --export_tflite.")
    if c.source.kind not in SYNTHETIC_SOURCES or c.student.mode == "ensemble":
      raise ConfigError(f"--export_tflite calibrates the int8 model on the run's synthetic "
                        f"images, and --method={c.method} makes none; use a data-free method "
                        "(dfka, dafl, dafl_2stage, noise) or drop --export_tflite.")
  f = c.source.forge
  if f.enabled:
    if c.method not in ("dfka", "dafl_2stage"):
      raise ConfigError(f"--forge makes the data-free images of dfka (and dafl_2stage); "
                        f"--method={c.method} reads no generated images. Use --method=dfka "
                        "or drop --forge.")
    if c.source.pool.images > 0:
      raise ConfigError("--forge and --inversion_images each make the images Steps II-III "
                        "read; give one of them.")
    if s.adversarial_weight > 0:
      raise ConfigError("--adversarial_weight trains Step I's G in Step III; --forge has "
                        "no Step I G (its own adversarial term is --forge_adv). Set "
                        "--adversarial_weight=0.")
    if f.max_labels > len(c.data.labels or ()) > 0:
      raise ConfigError(f"--forge_max_labels={f.max_labels} is more than the "
                        f"{len(c.data.labels)} labels of --labels; use 1..{len(c.data.labels)}.")
    if f.jitter is not None and f.jitter >= c.data.image_size:
      raise ConfigError(f"--forge_jitter={f.jitter} must be in 0..{c.data.image_size - 1} "
                        "pixels.")
    if f.lr <= 0 or f.lr_z <= 0:
      raise ConfigError(f"--forge_lr={f.lr} and --forge_lr_z={f.lr_z} must be > 0.")
    if f.block_adv and s.form == "distill":
      raise ConfigError("--forge_block_adv plays Forge's adversary against Step II's blocks; "
                        "--student=distill has no Step II. Drop one of them.")
  elif f.block_adv or f.mix > 0 or f.contrast > 0:
    raise ConfigError("--forge_block_adv, --forge_mix and --forge_contrast change Forge's "
                      "images; add --forge or drop them.")
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
  if c.source.unlabeled and (c.source.kind != "dataset" or c.source.dataset):
    raise ConfigError(f"--unlabeled_data={c.source.unlabeled} gives the images of "
                      f"--method=ka; --method={c.method} would not read it. Drop it, or use "
                      "--method=ka.")
  if c.data.teacher_paths and c.source.kind == "dataset" and not c.source.unlabeled:
    raise ConfigError(f"--method={c.method} trains on unlabeled real images; with your own "
                      "--teacher files pass them with --unlabeled_data=<.npz holding x, or a "
                      "TFDS name:split> and --method=ka, or use dfka, dafl, noise or teacher.")


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

