"""What the teachers see in generated images: label histograms (paper Fig. 5) and diversity.

Fig. 5 of the paper plots, for generators trained without and with L_dis, how often each
label is predicted by the teachers on generated images; L_dis is meant to make that
distribution more even. `label_histogram` measures it; `image_statistics` gives the numbers
behind an image grid (Fig. 4), e.g. whether the generator collapsed to one image.
"""

import glob
import json
import os
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from dfka_tf import distribute
from dfka_tf.losses import _EPS as _CLIP  # pylint: disable=g-bad-import-order  (one clip)


def generated_images(generator, n: int, seed: int = 0, batch_size: int = 250) -> np.ndarray:
  """n images from the last group of G, [n, H, W, 3] in [0, 1], from a stateless seed."""
  out = []
  for i, start in enumerate(range(0, n, batch_size)):
    b = min(batch_size, n - start)
    z = tf.random.stateless_normal([b, generator.latent_dim], seed=[seed, 1000 + i])
    out.append(generator(z, training=False)[-1].numpy())
  return np.concatenate(out)[:n]


def teacher_predictions(images: np.ndarray, teachers: Sequence, batch_size: int = 250
                        ) -> np.ndarray:
  """O_gan (Eq. 11): every teacher's sigmoid outputs, concatenated, [N, Σ_m |Y_m|]."""
  shape = [None] + [int(d) for d in teachers[0].image_shape]
  fn = tf.function(lambda x: tf.concat(
      [tf.cast(t.tail(x, 0, training=False)["probs"], tf.float32) for t in teachers], axis=1),
                   input_signature=[tf.TensorSpec(shape, tf.float32)])
  return np.concatenate([fn(tf.constant(images[i:i + batch_size], tf.float32)).numpy()
                         for i in range(0, len(images), batch_size)])


def histogram_of(probs: np.ndarray, names: Sequence[str], threshold: float = 0.5) -> Dict:
  """Label histogram of predictions p > threshold, with summary numbers.

  Returns:
    counts: images predicted positive per label; fraction: counts / N;
    evenness: entropy of counts / Σ counts, divided by log C (1 = every label equally
      often, 0 = one label only; 0 when nothing is predicted);
    labels_per_image: mean number of positive labels per image;
    empty_fraction: share of images with no positive label;
    mean_prob: mean output per label.
  """
  positive = probs > threshold
  counts = positive.sum(axis=0).astype(np.int64)
  total = counts.sum()
  if total > 0 and len(counts) > 1:
    p = counts[counts > 0] / total
    evenness = float(-(p * np.log(p)).sum() / np.log(len(counts)))
  else:
    evenness = 0.0
  return {
      "labels": list(names),
      "num_images": int(len(probs)),
      "threshold": float(threshold),
      "counts": counts.tolist(),
      "fraction": (counts / max(len(probs), 1)).tolist(),
      "evenness": evenness,
      "labels_per_image": float(positive.sum(axis=1).mean()) if len(probs) else 0.0,
      "empty_fraction": float((~positive.any(axis=1)).mean()) if len(probs) else 0.0,
      "mean_prob": probs.mean(axis=0).tolist(),
  }


def label_histogram(generator, teachers: Sequence, n: int = 1000, seed: int = 0,
                    threshold: float = 0.5) -> Dict:
  """Fig. 5: how often each teacher label is predicted (p > threshold) on n generated images.

  Args:
    generator: a trained GroupStackGenerator (its last group's output is the image).
    teachers: the frozen teachers (BlockNets) the generator was trained against.
    n: number of generated images; seed: the stateless seed of their latent codes.

  Returns:
    `histogram_of`'s dict over the concatenated teacher labels.
  """
  images = generated_images(generator, n, seed)
  names = [name for t in teachers for name in t.label_names]
  return histogram_of(teacher_predictions(images, teachers), names, threshold)


def batch_diagnostics(images, probs, threshold: float = 0.5) -> Dict[str, tf.Tensor]:
  """Collapse indicators of one generated batch, as float32 scalars (monitoring only).

  The graph-mode counterpart of `histogram_of` and `image_statistics`, cheap enough for
  every training step:
    label_coverage: share of the C labels predicted (p > threshold) on at least one image;
    label_evenness: `histogram_of`'s evenness of the batch's label counts;
    labels_per_image: mean number of labels predicted per image;
    pixel_diversity: per-pixel std across the batch, averaged (0: every image the same);
    saturated_outputs: share of predictions outside [1e-7, 1 - 1e-7], where the losses'
      clip makes their gradient exactly zero.

  Args:
    images: [N, H, W, 3] generated images.
    probs: [N, C] the teachers' concatenated predictions on them (O_gan, Eq. 11).
  """
  probs = tf.cast(probs, tf.float32)
  positive = tf.cast(probs > threshold, tf.float32)
  counts = distribute.batch_sum(positive, axis=0)  # Over the global batch.
  share = counts / tf.maximum(tf.reduce_sum(counts), 1.0)
  entropy = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(share), share))
  num_labels = tf.cast(tf.shape(probs)[1], tf.float32)
  return {
      "label_coverage": tf.reduce_mean(tf.cast(counts > 0, tf.float32)),
      "label_evenness": tf.math.divide_no_nan(entropy, tf.math.log(num_labels)),
      "labels_per_image": tf.reduce_mean(tf.reduce_sum(positive, axis=1)),
      "pixel_diversity": tf.reduce_mean(distribute.batch_std(tf.cast(images, tf.float32),
                                                             axis=0)),
      "saturated_outputs": tf.reduce_mean(tf.cast(
          (probs < _CLIP) | (probs > 1.0 - _CLIP), tf.float32)),
  }


def image_statistics(images: np.ndarray) -> Dict:
  """Mean pixel value, and diversity: per-pixel std across the images, averaged.

  A collapsed generator (every sample the same image) has diversity near 0.
  """
  images = np.asarray(images, np.float32)
  return {"mean": float(images.mean()), "diversity": float(images.std(axis=0).mean()),
          "saturated_fraction": float(((images < 0.02) | (images > 0.98)).mean())}


BANK_VARIABLE = "forge_bank/.ATTRIBUTES/VARIABLE_VALUE"
BANK_COUNT = "forge_bank_count/.ATTRIBUTES/VARIABLE_VALUE"


def forge_bank(workdir: str) -> np.ndarray:
  """The images Forge's bank holds at the last checkpoint of a run (`--forge`), [N, H, W, 3]
  uint8 as stored (divide by 255 for the [0, 1] images the teachers take): from the last
  student stage whose checkpoint has one (distill, finetune, then the blocks, latest
  first)."""
  ckpt = os.path.join(workdir, "ckpt")
  stages = os.listdir(ckpt) if os.path.isdir(ckpt) else []
  blocks = [s for s in stages if s.startswith("block") and s[5:].isdigit()]
  order = [s for s in ("distill", "finetune") if s in stages] + sorted(
      blocks, key=lambda s: int(s[5:]), reverse=True)
  for stage in order:
    latest = tf.train.latest_checkpoint(os.path.join(ckpt, stage))
    if latest and BANK_VARIABLE in dict(tf.train.list_variables(latest)):
      count = int(tf.train.load_variable(latest, BANK_COUNT))
      return tf.train.load_variable(latest, BANK_VARIABLE)[:count]
  raise FileNotFoundError(f"{workdir} holds no checkpoint with a Forge bank (a run with "
                          "--forge writes one in ckpt/<stage>); pass the workdir of such a run.")


def co_called(probs: np.ndarray, names: Sequence[str], threshold: float = 0.5) -> Dict:
  """{label: (the label most often also called on the images called it, that share)}:
  which other label the teachers give alongside each one (None where the label is never
  called, or never with another)."""
  positive = probs > threshold
  out = {}
  for i, name in enumerate(names):
    rows = positive[positive[:, i]]
    if not len(rows):
      out[name] = None
      continue
    share = rows.mean(axis=0)
    share[i] = 0.0
    j = int(share.argmax())
    out[name] = (names[j], float(share[j])) if share[j] > 0 else None
  return out


def _bank_and_teachers(workdir: str):
  """(the workdir's config "data" section, its teachers, their label names, the bank)."""
  from dfka_tf.models.teacher_files import load_teacher  # pylint: disable=g-import-not-at-top
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path} does not exist; pass the workdir of a run with "
                            "--forge (it holds config.json).")
  with open(config_path) as fh:
    data = json.load(fh)["data"]
  # Your own teachers (--teacher_paths) stay where they are; the library's are in the workdir.
  paths = list(data.get("teacher_paths") or []) or sorted(
      glob.glob(os.path.join(workdir, "teachers", "*.keras")),
      key=lambda p: (len(p), p))
  if not paths:
    raise FileNotFoundError(f"{workdir}/teachers/ holds no .keras teacher; pass the workdir "
                            "of a run whose teachers stage finished.")
  bank = forge_bank(workdir)
  if not len(bank):
    raise FileNotFoundError(f"the bank in {workdir}'s last checkpoint holds no image yet; "
                            "pass the workdir of a run whose student has taken a step.")
  teachers = [load_teacher(p) for p in paths]
  return data, teachers, [n for t in teachers for n in t.label_names], bank


def _scored_bank(bank: np.ndarray, teachers, chunk: int) -> np.ndarray:
  """The teachers' probabilities on the uint8 bank, `chunk` images made float at a time."""
  return np.concatenate([
      teacher_predictions(bank[i:i + chunk].astype(np.float32) / 255.0, teachers)
      for i in range(0, len(bank), chunk)])


def _split_images(data: Dict, split: str, chunk: int):
  """The run's dataset's `split`, `chunk` images at a time, in [0, 1]."""
  from dfka_tf import data as dfka_data  # pylint: disable=g-import-not-at-top
  for ex in dfka_data.load(data["dataset"], split, data_dir=data["data_dir"],
                           image_size=data["image_size"], batch_size=chunk):
    yield ex["image"].numpy()


def bank_labels(workdir: str, split: str = "validation", chunk: int = 1000) -> Dict:
  """What the teachers call the images in a --forge run's bank, beside a real split.

  Beyond the paper (a diagnostic of Forge's bank). Reads the workdir's config.json, its
  teachers (teachers/*.keras, or the run's --teacher_paths) and the bank of its last student
  checkpoint; trains nothing. Returns {"labels", "split", "bank" and "real" (histogram_of
  each), "bank_co_called" and "real_co_called" (co_called)}. Images are scored `chunk` at a
  time."""
  data, teachers, names, bank = _bank_and_teachers(workdir)
  on_bank = _scored_bank(bank, teachers, chunk)
  on_real = np.concatenate([teacher_predictions(images, teachers)
                            for images in _split_images(data, split, chunk)])
  return {"labels": names, "split": split,
          "bank": histogram_of(on_bank, names),
          "real": histogram_of(on_real, names),
          "bank_co_called": co_called(on_bank, names),
          "real_co_called": co_called(on_real, names)}


def called_apart(probs: np.ndarray, names: Sequence[str], show: Sequence[str],
                 threshold: float = 0.5) -> Dict[str, np.ndarray]:
  """{a: indices of the images called a (p > threshold) and none of the other labels of
  `show`}, for each a in `show`: the images that keep a apart from the labels it is shown
  beside."""
  positive = np.asarray(probs) > threshold
  columns = [names.index(a) for a in show]
  out = {}
  for a, i in zip(show, columns):
    others = [j for j in columns if j != i]
    alone = positive[:, i] & ~positive[:, others].any(axis=1) if others else positive[:, i]
    out[a] = np.flatnonzero(alone)
  return out


def bank_apart(workdir: str, show: Sequence[str], split: str = "validation",
               per_row: int = 12, chunk: int = 1000) -> Dict[str, np.ndarray]:
  """Bank images beside real ones, label by label: what Forge made for labels it blurs.

  Beyond the paper (a diagnostic of Forge's bank). For each label a of `show` (the
  teachers' names), up to `per_row` of the bank's images the teachers call a and none of the
  other labels of `show`, then up to `per_row` of the real split's, as {"bank: a, not b": uint8
  [n, H, W, 3], "<split>: a, not b": ...} in that order. Trains nothing.

  Raises:
    ValueError: a label of `show` the teachers do not have, or one given twice.
  """
  data, teachers, names, bank = _bank_and_teachers(workdir)
  unknown = [a for a in show if a not in names]
  if unknown or len(set(show)) != len(show) or not show:
    raise ValueError(f"labels to show apart {list(show)}: give distinct labels of the "
                     f"teachers' {names}.")
  on_bank = _scored_bank(bank, teachers, chunk)
  real = {a: [] for a in show}
  for images in _split_images(data, split, chunk):
    picked = called_apart(teacher_predictions(images, teachers), names, show)
    for a in show:
      real[a].extend(images[picked[a][:per_row - len(real[a])]])
    if all(len(real[a]) >= per_row for a in show):
      break
  shape = bank.shape[1:]
  apart = called_apart(on_bank, names, show)
  rows = {}
  for a in show:
    others = [b for b in show if b != a]
    what = a + (", not " + ", ".join(others) if others else "")
    rows[f"bank: {what}"] = bank[apart[a][:per_row]]
    rows[f"{split}: {what}"] = np.round(np.asarray(real[a], np.float32).reshape(
        (-1,) + shape) * 255.0).astype(np.uint8)
  return rows


def bank_labels_table(figures: Dict) -> str:
  """bank_labels' figures as a markdown table, one row a label."""
  split = figures["split"]
  lines = [f"| label | bank: called it (%) | {split}: called it (%) | bank: most often "
           f"called with it (% of those) | {split}: most often called with it (% of those) |",
           "| --- | --- | --- | --- | --- |"]

  def co(which, name):
    pair = figures[which][name]
    return f"{pair[0]} ({100 * pair[1]:.0f})" if pair else "—"

  for i, name in enumerate(figures["labels"]):
    lines.append(f"| {name} | {100 * figures['bank']['fraction'][i]:.1f} | "
                 f"{100 * figures['real']['fraction'][i]:.1f} | {co('bank_co_called', name)} | "
                 f"{co('real_co_called', name)} |")
  lines.append(f"\nImages: bank {figures['bank']['num_images']}, {figures['split']} "
               f"{figures['real']['num_images']}; labels an image: bank "
               f"{figures['bank']['labels_per_image']:.2f}, {figures['split']} "
               f"{figures['real']['labels_per_image']:.2f}.")
  return "\n".join(lines)


def distilled_target_net(workdir: str):
  """The TargetNet of a finished --student=distill run (a --preset=best run, the ka_distill
  and noise_distill rows), from its last `distill` checkpoint, with its label names.

  For the library's ResNets (--arch small, tiny, resnet18/50/101): the TargetNet of
  --arch=teacher takes teacher 1's architecture, which this does not rebuild."""
  from dfka_tf.models.resnet import build_resnet  # pylint: disable=g-import-not-at-top
  from dfka_tf.options import RESNET_ARCHS  # pylint: disable=g-import-not-at-top
  paths = {k: os.path.join(workdir, k) for k in ("config.json", "results.json")}
  for path in paths.values():
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path} does not exist; pass the workdir of a finished run "
                              "with --student=distill.")
  with open(paths["config.json"]) as fh:
    config = json.load(fh)
  with open(paths["results.json"]) as fh:
    names = list(json.load(fh)["labels"])
  arch, size = config["data"]["arch"], int(config["data"]["image_size"])
  if arch not in RESNET_ARCHS:
    raise ValueError(f"--arch={arch}: only the library's ResNets {RESNET_ARCHS} are rebuilt "
                     "here.")
  latest = tf.train.latest_checkpoint(os.path.join(workdir, "ckpt", "distill"))
  if latest is None:
    raise FileNotFoundError(f"{workdir}/ckpt/distill holds no checkpoint; pass the workdir "
                            "of a run with --student=distill.")
  model = build_resnet(arch, len(names), (size, size, 3), name="target_net")
  tf.train.Checkpoint(target_net=model).restore(latest).expect_partial()
  return model, names


def confusions(probs: np.ndarray, labels: np.ndarray, names: Sequence[str],
               below: float = 0.95, top: int = 3) -> list:
  """Where a student goes wrong on labelled images, for each label of AP under `below`.

  For label c with P positives: its AP; of the P images the student ranks highest for c,
  how many are not c and which true labels those carry most (`top` of them, with counts);
  the positives ranked below P and the other labels they carry most; and the mean score on
  positives and on negatives. [{"label", "ap", "positives", "false_positives",
  "false_positives_carry", "missed", "missed_carry", "mean_positive", "mean_negative"}]."""
  from dfka_tf.eval.metrics import average_precision_per_label  # pylint: disable=g-import-not-at-top
  probs, labels = np.asarray(probs, np.float64), np.asarray(labels) > 0
  ap = average_precision_per_label(probs, labels.astype(np.float64))

  def carried(rows, skip):
    counts = labels[rows].sum(axis=0)
    counts[skip] = 0
    order = np.argsort(-counts, kind="stable")[:top]
    return [(names[j], int(counts[j])) for j in order if counts[j] > 0]

  out = []
  for c, name in enumerate(names):
    if np.isnan(ap[c]) or ap[c] >= below:
      continue
    positive = labels[:, c]
    count = int(positive.sum())
    ranked = np.argsort(-probs[:, c], kind="stable")
    head, tail = ranked[:count], ranked[count:]
    wrong = head[~positive[head]]
    missed = tail[positive[tail]]
    out.append({"label": name, "ap": float(ap[c]), "positives": count,
                "false_positives": len(wrong), "false_positives_carry": carried(wrong, c),
                "missed": len(missed), "missed_carry": carried(missed, c),
                "mean_positive": float(probs[positive, c].mean()),
                "mean_negative": float(probs[~positive, c].mean())})
  return out


def recalibrate_batchnorm(model, images: np.ndarray, batch_size: int = 256):
  """Sets every BatchNormalization layer's moving mean and variance to the average, over
  the batches of `images`, of the statistics a training-mode pass computes (each batch's
  own statistics upstream, as in training); trains nothing else. In place.

  A diagnostic beyond the paper: which images' statistics the student's inference runs
  on (Forge's bank, or real unlabeled images) and what that does to its mAP."""
  import keras  # pylint: disable=g-import-not-at-top
  layers = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]  # pylint: disable=protected-access
  momenta = [l.momentum for l in layers]
  try:
    for t, start in enumerate(range(0, len(images), batch_size)):
      for l in layers:  # Cumulative average: moving = (t * moving + batch) / (t + 1).
        l.momentum = t / (t + 1.0)
      model(tf.constant(images[start:start + batch_size], tf.float32), training=True)
  finally:
    for l, m in zip(layers, momenta):
      l.momentum = m


def _labelled(dataset, split, data_dir, image_size, limit=None):
  """(images, multi-hot labels) of a split of a library dataset, at most `limit`."""
  from dfka_tf import data as dfka_data  # pylint: disable=g-import-not-at-top
  xs, ys, n = [], [], 0
  for ex in dfka_data.load(dataset, split, data_dir=data_dir, image_size=image_size,
                           batch_size=500):
    xs.append(ex["image"].numpy())
    ys.append(ex["labels"].numpy())
    n += len(xs[-1])
    if limit and n >= limit:
      break
  return np.concatenate(xs)[:limit], np.concatenate(ys)[:limit]


def student_errors(workdir: str, split: str = "validation", below: float = 95.0,
                   recalibrate_on: Sequence[str] = (), train_images: int = 8000) -> Dict:
  """A --student=distill run's TargetNet on a real split: its mAP (%), `confusions` of the
  labels under `below` (%), and with `recalibrate_on` ("bank": Forge's bank; "train": real
  unlabeled train images, a diagnostic) its mAP after `recalibrate_batchnorm` on them
  (its weights put back after each). Beyond the paper."""
  from dfka_tf import data as dfka_data  # pylint: disable=g-import-not-at-top
  from dfka_tf.eval.metrics import mean_ap  # pylint: disable=g-import-not-at-top
  unknown = sorted(set(recalibrate_on) - {"bank", "train"})
  if unknown:
    raise ValueError(f"recalibrate_on={unknown}: use bank (Forge's bank) or train (real "
                     "unlabeled train images).")
  model, names = distilled_target_net(workdir)
  with open(os.path.join(workdir, "config.json")) as fh:
    data = json.load(fh)["data"]
  if data.get("teacher_paths"):
    raise ValueError("this run's teachers are your own files (--teacher_paths), with no "
                     "dataset to score on; pass a run on the library's datasets.")
  x, y = _labelled(data["dataset"], split, data["data_dir"], data["image_size"])
  y = y[:, [dfka_data.label_names(data["dataset"]).index(n) for n in names]]  # Y_cst order.
  predict = lambda: model.predict(x, batch_size=500, verbose=0)  # pylint: disable=unnecessary-lambda-assignment
  probs = predict()
  out = {"split": split, "map": 100 * mean_ap(probs, y),
         "labels": confusions(probs, y, names, below / 100.0)}
  stored = [w.numpy() for w in model.weights]
  for source in recalibrate_on:
    if source == "bank":
      images = forge_bank(workdir).astype(np.float32) / 255.0
    else:
      images = _labelled(data["dataset"], "train", data["data_dir"], data["image_size"],
                         train_images)[0]
    recalibrate_batchnorm(model, images)
    out[f"map_recalibrated_on_{source}"] = 100 * mean_ap(predict(), y)
    for w, v in zip(model.weights, stored):
      w.assign(v)
  return out


def student_errors_table(out: Dict) -> str:
  """student_errors' figures as lines and a markdown table."""
  lines = [f"{out['split']} mAP {out['map']:.1f}"] + [
      f"after batch-norm statistics re-estimated on {k.rsplit('_', 1)[1]}: {v:.1f}"
      for k, v in out.items() if k.startswith("map_recalibrated_on_")]
  lines += ["", "| label | AP | positives | wrongly in its top (they carry) | positives "
            "ranked below (they carry) | mean score: positives / negatives |",
            "| --- | --- | --- | --- | --- | --- |"]
  carry = lambda pairs: ", ".join(f"{n} {c}" for n, c in pairs) or "—"  # pylint: disable=unnecessary-lambda-assignment
  for r in out["labels"]:
    lines.append(f"| {r['label']} | {100 * r['ap']:.1f} | {r['positives']} | "
                 f"{r['false_positives']} ({carry(r['false_positives_carry'])}) | "
                 f"{r['missed']} ({carry(r['missed_carry'])}) | "
                 f"{r['mean_positive']:.2f} / {r['mean_negative']:.3f} |")
  return "\n".join(lines)
