"""Run configuration: one dataclass, presets per dataset, validation with clear errors."""

import dataclasses
import json
from typing import List, Optional, Tuple

from dfka_tf.errors import ConfigError

METHODS = ("dfka", "teacher", "ka", "similar", "diff", "noise", "dafl")

# Per-dataset defaults. scenes20 is tuned so the whole default run (teachers included)
# fits in 10 minutes on 2 CPU cores; voc2007/coco2014 follow the paper (§5.1): ResNet-101 at
# 224 px, batch 16, SGD with poly LR base 0.01, power 0.9, weight decay 5e-3.
PRESETS = {
    "scenes20": dict(arch="small", image_size=32, batch_size=64, teacher_steps=600,
                     teacher_lr=0.3, generator_steps=300, generator_lr=1e-3,
                     block_steps=300, target_lr=0.3, finetune_steps=400, latent_dim=128,
                     generator_width=64, eval_batch_size=250),
    "voc2007": dict(arch="resnet101", image_size=224, batch_size=16, teacher_steps=20000,
                    teacher_lr=0.01, generator_steps=20000, generator_lr=1e-3,
                    block_steps=10000, target_lr=0.01, finetune_steps=10000, latent_dim=256,
                    generator_width=256, eval_batch_size=32),
}
PRESETS["coco2014"] = dict(PRESETS["voc2007"], teacher_steps=60000)


@dataclasses.dataclass
class RunConfig:
  """Everything one run needs; written to <workdir>/config.json at start.

  Flags map one to one onto these fields (experiments/run.py).
  """
  workdir: str = "runs/default"
  dataset: str = "scenes20"
  data_dir: Optional[str] = None
  num_teachers: int = 2
  teacher_paths: Tuple[str, ...] = ()
  teacher_blocks: Tuple[str, ...] = ()
  labels: Optional[Tuple[str, ...]] = None
  method: str = "dfka"
  groups: int = 2
  arch: str = "small"
  image_size: int = 32
  batch_size: int = 64
  eval_batch_size: int = 250
  seed: int = 0
  teacher_steps: int = 600
  teacher_lr: float = 0.3
  generator_steps: int = 300
  generator_lr: float = 1e-3
  block_steps: int = 300
  target_lr: float = 0.3
  finetune_steps: int = 400
  weight_decay: float = 5e-3
  latent_dim: int = 128
  generator_width: int = 64
  alpha: float = 1.0
  beta: float = 1.0
  gamma: float = 5.0
  dis_sign: str = "sparse"
  bns_weight: float = 0.0
  bns_form: str = "squared"
  lh_weight: float = 0.0
  generator_jitter: int = 0
  student_jitter: int = 0
  adversarial_weight: float = 0.0
  target_pretrain: Optional[str] = None
  pretrain_steps: int = 600
  inversion_images: int = 0
  inversion_steps: int = 200
  inversion_lr: float = 0.1
  inversion_bns: float = 1.0
  inversion_tv: float = 1e-3
  inversion_max_labels: int = 3
  image_bn: bool = True
  lambda_in1: float = 1.0
  lambda_in2: float = 1.0
  branch_out: Optional[int] = None
  imagenet_init: bool = True
  jit: Optional[bool] = None
  mixed_precision: bool = False
  checkpoint_every: int = 100
  evaluate: bool = True
  export: bool = True

  @classmethod
  def for_dataset(cls, dataset: str = "scenes20", **overrides) -> "RunConfig":
    """The preset of `dataset` (paper settings for voc2007/coco2014) with overrides."""
    preset = PRESETS.get(dataset, PRESETS["scenes20"] if dataset == "byo" else None)
    if preset is None:
      raise ConfigError(f"unknown --dataset={dataset!r}; use one of {sorted(PRESETS)} "
                        "(or pass --teacher files to bring your own teachers).")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
      raise ConfigError(f"unknown config field(s) {unknown}.")
    values = dict(preset, dataset=dataset)
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = cls(**values)
    config.validate()
    return config

  def validate(self):
    """Raises ConfigError naming the first bad value and what to use instead."""
    positive = ["num_teachers", "groups", "image_size", "batch_size", "eval_batch_size",
                "latent_dim", "generator_width", "checkpoint_every"]
    for name in positive:
      if int(getattr(self, name)) < 1:
        raise ConfigError(f"--{name}={getattr(self, name)} must be >= 1.")
    for name in ["teacher_steps", "generator_steps", "block_steps", "finetune_steps",
                 "pretrain_steps"]:
      if int(getattr(self, name)) < 0:
        raise ConfigError(f"--{name}={getattr(self, name)} must be >= 0.")
    if self.method not in METHODS:
      raise ConfigError(f"--method={self.method!r} is unknown; use one of {', '.join(METHODS)}.")
    if self.dis_sign not in ("sparse", "printed"):
      raise ConfigError(f"--dis_sign={self.dis_sign!r}; use 'sparse' or 'printed'.")
    if self.bns_weight < 0:
      raise ConfigError(f"--bns_weight={self.bns_weight} must be >= 0 (0 turns L_bns off).")
    if self.bns_form not in ("squared", "norm"):
      raise ConfigError(f"--bns_form={self.bns_form!r}; use 'squared' or 'norm'.")
    if self.lh_weight < 0:
      raise ConfigError(f"--lh_weight={self.lh_weight} must be >= 0 (0 turns L_H off).")
    if self.target_pretrain is not None:
      base = lambda name: name[:-3] if name.endswith("_64") else name
      if base(self.target_pretrain) == base(self.dataset):
        raise ConfigError(f"--target_pretrain={self.target_pretrain} is the teachers' own data; "
                          "the TargetNet must not see it (data-free). Pretrain on another "
                          "labelled dataset, e.g. scenes20_similar for scenes20.")
    if self.adversarial_weight < 0:
      raise ConfigError(f"--adversarial_weight={self.adversarial_weight} must be >= 0 (0 turns "
                        "adversarial fine-tuning off).")
    if self.adversarial_weight > 0 and self.method != "dfka":
      raise ConfigError(f"--adversarial_weight trains DFKA's generator in Step III; "
                        f"--method={self.method} has no Step III generator. Use --method=dfka "
                        "or --adversarial_weight=0.")
    for name in ("generator_jitter", "student_jitter"):
      value = int(getattr(self, name))
      if value < 0 or value >= self.image_size:
        raise ConfigError(f"--{name}={value} must be in 0..{self.image_size - 1} pixels "
                          "(0 turns it off).")
    if self.inversion_images < 0:
      raise ConfigError(f"--inversion_images={self.inversion_images} must be >= 0 (0 turns the "
                        "DeepInversion pool off).")
    if self.inversion_images > 0:
      if self.method not in ("dfka", "dafl"):
        raise ConfigError(f"--inversion_images replaces the generated images of dfka and dafl; "
                          f"--method={self.method} does not train on generated images. Use "
                          "--method=dfka or --inversion_images=0.")
      if self.adversarial_weight > 0:
        raise ConfigError("--adversarial_weight trains G against T_u in Step III, but with "
                          "--inversion_images T_u trains on the fixed pool, not on G; set one "
                          "of them to 0.")
      if self.inversion_steps < 1 or self.inversion_lr <= 0:
        raise ConfigError(f"--inversion_steps={self.inversion_steps} must be >= 1 and "
                          f"--inversion_lr={self.inversion_lr} > 0.")
      if self.inversion_bns < 0 or self.inversion_tv < 0:
        raise ConfigError(f"--inversion_bns={self.inversion_bns} and --inversion_tv="
                          f"{self.inversion_tv} must be >= 0.")
      if self.inversion_max_labels < 1:
        raise ConfigError(f"--inversion_max_labels={self.inversion_max_labels} must be >= 1.")
    if self.lambda_in1 < 0 or self.lambda_in2 < 0 or self.lambda_in1 + self.lambda_in2 == 0:
      raise ConfigError(f"--lambda_in1={self.lambda_in1}, --lambda_in2={self.lambda_in2}: "
                        "both must be >= 0 and not both 0.")
    if self.labels is not None and len(self.labels) == 0:
      raise ConfigError("--labels is empty; name at least one label or leave it unset.")
    if self.teacher_paths and self.method in ("ka", "similar", "diff"):
      raise ConfigError(f"--method={self.method} trains on unlabeled images of a dataset; with "
                        "your own --teacher files there is none. Use dfka, dafl, noise or "
                        "teacher.")
    if self.teacher_paths and len(self.teacher_paths) < 1:
      raise ConfigError("--teacher needs at least one file.")

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "RunConfig":
    values = json.loads(text)
    for key in ("teacher_paths", "teacher_blocks"):
      values[key] = tuple(values.get(key) or ())
    if values.get("labels") is not None:
      values["labels"] = tuple(values["labels"])
    return cls(**values)

  # Fields that may change between a run and its resumption without changing the results.
  RESUMABLE = ("evaluate", "export", "eval_batch_size", "checkpoint_every", "jit",
               "data_dir")

  def differences(self, other: "RunConfig") -> List[str]:
    a, b = dataclasses.asdict(self), dataclasses.asdict(other)
    return [k for k in sorted(a) if k not in self.RESUMABLE and _norm(a[k]) != _norm(b.get(k))]


def _norm(v):
  return list(v) if isinstance(v, tuple) else v
