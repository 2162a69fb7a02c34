"""A cache of trained backbones (the pretrained start on a labelled dataset), shared
between workdirs.

Training the scenes20 backbone takes longer than the rest of the quick start, and every run
with the same recipe trains the same network. A backbone is therefore looked up, before its
stage runs, by a key over everything that decides its weights: the dataset and its version,
the architecture, image size, steps, optimiser, batch, weight decay, precision and seed.

Where it is looked up, in order:
  1. `dfka_tf/assets/backbones/`: backbones shipped with the code (the quick start's, seed 0;
     the README there says what trained each);
  2. the user cache: --pretrain_cache, default $DFKA_TF_CACHE or ~/.cache/dfka_tf, under
     backbones/. A backbone a run trains is stored there for the next run.

Seeded training is bit-identical on one machine, so on the machine that filled the cache a
hit gives the weights training would give; on another machine it gives that machine's
weights, as a download of pretrained weights would. --pretrain_cache=none trains every time.
"""

import hashlib
import json
import os
import shutil
from typing import Optional

from dfka_tf.config import RunConfig

# Bump when the backbone's training code changes, so older cached backbones stop matching.
RECIPE = 1
BUNDLED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "assets", "backbones")
OFF = ("", "none", "off")


def user_dir(config: RunConfig) -> Optional[str]:
  """The user cache's backbones/ folder; None when the cache is off."""
  root = config.data.pretrain_cache
  if root is None:
    root = os.environ.get("DFKA_TF_CACHE") or os.path.join("~", ".cache", "dfka_tf")
  if root.strip().lower() in OFF:
    return None
  return os.path.join(os.path.expanduser(root), "backbones")


def backbone_name(config: RunConfig, replicas: int = 1) -> str:
  """The file name of `config`'s backbone: readable recipe, then a hash of all of it.

  `replicas` > 1 (a mirrored run) enters the hash: such a backbone equals the one-device
  backbone only to rounding, and a hit must give the weights training would give.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from dfka_tf.data import loaders  # pylint: disable=g-import-not-at-top  (registers builders)
  d, r = config.data, config.runtime
  # The version of the dataset the backbone trains on: a new split of scenes20 leaves
  # scenes20_similar, and its backbones, as they were.
  version = str(tfds.builder_cls(loaders.TFDS_NAMES[d.pretrain][0].split("/")[0]).VERSION)
  recipe = {"recipe": RECIPE, "dataset": d.pretrain, "version": version,
            "arch": d.arch, "image_size": d.image_size, "steps": d.pretrain_steps,
            "lr": d.teacher_lr, "batch_size": r.batch_size, "weight_decay": r.weight_decay,
            "mixed_precision": r.mixed_precision, "seed": r.seed}
  if replicas > 1:
    recipe["replicas"] = int(replicas)
  digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
  return (f"{d.pretrain}-{d.arch}-{d.image_size}px-{d.pretrain_steps}steps-seed{r.seed}-"
          f"{digest}.weights.h5")


def find(config: RunConfig, replicas: int = 1) -> Optional[str]:
  """The cached backbone of `config`'s recipe (trained on `replicas` replicas), or None."""
  user = user_dir(config)
  if user is None:
    return None
  name = backbone_name(config, replicas)
  for folder in (BUNDLED, user):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      return path
  return None


def store(config: RunConfig, path: str, replicas: int = 1) -> Optional[str]:
  """Copies a freshly trained backbone into the user cache; returns where (None: off).

  A full disk or a read-only cache costs the next run its shortcut, not this run its
  result, so failures to write are reported and skipped.
  """
  folder = user_dir(config)
  if folder is None:
    return None
  target = os.path.join(folder, backbone_name(config, replicas))
  try:
    os.makedirs(folder, exist_ok=True)
    partial = f"{target}.partial-{os.getpid()}"
    shutil.copyfile(path, partial)
    os.replace(partial, target)  # Readers never see a half-written file.
  except OSError as e:
    print(f"[pretrain] could not store the backbone in the cache {folder} ({e}); "
          "the next run trains it again.")
    return None
  return target
