"""Turns finished rows into a suite's files: summaries, CSV, Markdown, notes, plots, records.

Everything here takes plain values (results.json dicts, lists of rows, paths) and writes or
formats them; nothing trains or reads flags. Importing it loads no TensorFlow (a suite's
flag errors come at once): the plots import matplotlib, through dfka_tf.report, on first use.
"""

import csv
import json
import os
import warnings
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from dfka_tf import config as config_lib


def write_json(path: str, value):
  """`value` as JSON at `path`, written then renamed: a run stopped mid-write leaves no half a
  file. (`stages.base.Workdir.write_json` does the same for a workdir, but imports
  TensorFlow and indents records differently.)"""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)


def config_of(results: Dict):
  """The RunConfig a results.json records."""
  return config_lib.RunConfig.from_json(json.dumps(results["config"]))


# ---------------------------------------------------------------------- aggregation
def mean_std(values: Iterable[float]):
  """Mean and sample standard deviation (0 for a single value), ignoring NaN."""
  v = np.asarray([x for x in values if x is not None], dtype=np.float64)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return float("nan"), float("nan")
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def finite(x) -> float:
  """x, or -inf for NaN (a sort key that puts unmeasured points last)."""
  return x if x == x else float("-inf")


def pct(x) -> float:
  return float("nan") if x is None else 100.0 * float(x)


def fmt(mean, std=None, digits=1) -> str:
  if mean != mean:  # NaN
    return "—"
  if std is None:
    return f"{mean:.{digits}f}"
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarize(name: str, runs: List[Dict], labels: Sequence[str]) -> Dict:
  """One table row from the per-seed results of one row: mAP and per-label AP, in %."""
  out = {"row": name, "method": runs[0]["method"], "seeds": len(runs)}
  out["map_mean"], out["map_std"] = mean_std(pct(r.get("target_map")) for r in runs)
  out["map_voc07_mean"], out["map_voc07_std"] = mean_std(
      pct(r.get("target_map_voc07")) for r in runs)
  for label in labels:
    out[f"{label}_mean"], out[f"{label}_std"] = mean_std(
        pct(r.get("target_ap", {}).get(label)) for r in runs)
  out["teacher_map_mean"], _ = mean_std(pct(r.get("teacher_map")) for r in runs)
  out["targetnet_map_mean"], out["targetnet_map_std"] = mean_std(
      pct(r.get("targetnet_map")) for r in runs)
  # T_u before Step III: NaN in records made before results.json held it.
  out["regrouped_map_mean"], out["regrouped_map_std"] = mean_std(
      pct(r.get("regrouped_map")) for r in runs)
  out["target_params"] = runs[0]["params"]["target_net"]
  out["teacher_params"] = runs[0]["params"]["teachers_total"]
  out["target_params_share"] = out["target_params"] / max(out["teacher_params"], 1)
  out["time_s_mean"], _ = mean_std(r.get("total_time") for r in runs)
  return out


def per_seed_rows(name: str, runs: List[Dict], labels: Sequence[str]) -> List[Dict]:
  rows = []
  for r in runs:
    row = {"row": name, "method": r["method"], "seed": config_of(r).seed,
           "map": pct(r.get("target_map")), "map_voc07": pct(r.get("target_map_voc07")),
           "teacher_map": pct(r.get("teacher_map")),
           "targetnet_map": pct(r.get("targetnet_map")),
           "regrouped_map": pct(r.get("regrouped_map"))}
    row.update({label: pct(r.get("target_ap", {}).get(label)) for label in labels})
    row.update(target_params=r["params"]["target_net"],
               teacher_params=r["params"]["teachers_total"],
               target_params_share=r["params"]["target_net"]
               / max(r["params"]["teachers_total"], 1),
               branch_out=json.dumps(r.get("branch_out")), total_time=r.get("total_time"),
               workdir=r.get("workdir"))
    rows.append(row)
  return rows


# ---------------------------------------------------------------------- files
def write_csv(path: str, rows: List[Dict]):
  """One line per dict, the columns in the order they first appear; floats to 4 decimals."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  columns = list(dict.fromkeys(k for r in rows for k in r))
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    for r in rows:
      w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})


def md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = ["| " + " | ".join(map(str, header)) + " |",
           "| " + " | ".join("---" for _ in header) + " |"]
  lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
  return "\n".join(lines)


def write_md(path: str, title: str, sections: Sequence[str]):
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    f.write(f"# {title}\n\n" + "\n\n".join(s.strip() for s in sections if s) + "\n")


def setting_note(config, seeds: Sequence[int], quick: bool, seconds: float) -> str:
  """The lines every suite's Markdown ends with: settings, seeds and runtime."""
  keys = ("arch", "image_size", "batch_size", "pretrain", "pretrain_steps", "teacher_steps",
          "generator_steps", "block_steps", "finetune_steps", "groups", "alpha", "beta",
          "gamma", "dis_sign", "bns_weight")
  settings = ", ".join(f"{k}={config.get(k)}" for k in keys)
  note = (f"Dataset scenes20 (embedded, 2000 {config.eval.split} images); AP is the area "
          f"under the PR curve "
          f"in %. Seeds: {list(seeds)}. Settings (where a row does not set them): "
          f"{settings}. Wall time of this suite "
          f"(cached stages are reused): {seconds:.0f} s.")
  if quick:
    note = "**--quick smoke run: the numbers are meaningless.** " + note
  return note


def records_note(name: str, runs: Dict[str, List[Dict]]) -> str:
  """Says how many row runs came from records, and where each row's own time is."""
  results = [r for per_seed in runs.values() for r in per_seed]
  recorded = sum(bool(r.get("recorded")) for r in results)
  note = (f"Each row's own time (its stages, shared ones included) is total_time in "
          f"{name}_seeds.csv.")
  if recorded:
    note += (f" {recorded} of the {len(results)} row runs were taken from their records in "
             f"{name}_rows/, measured by an earlier run of this suite (on this machine or "
             f"another: seeded runs are bit-identical on one machine only).")
  return note


def write_sweep(out: str, name: str, title: str, sections: Sequence[str], *, summaries,
                per_seed, best: str, runs, config, seeds, quick: bool, seconds: float,
                log=print) -> Dict:
  """A sweep's <name>.md (`sections`, then its setting and records notes), .csv (a line per
  point) and _seeds.csv; returns run_suite's dict."""
  write_md(os.path.join(out, f"{name}.md"), title,
           list(sections) + [setting_note(config, seeds, quick, seconds),
                             records_note(name, runs)])
  write_csv(os.path.join(out, f"{name}.csv"), summaries)
  write_csv(os.path.join(out, f"{name}_seeds.csv"), per_seed)
  log(f"[{name}] wrote {os.path.join(out, name)}.md/.csv; best {best}")
  return {"summaries": summaries, "runs": runs, "best": best}


# ---------------------------------------------------------------------- plots
def pyplot():
  """matplotlib.pyplot on dfka_tf.report's Agg backend, imported at the first plot."""
  # report sets the Agg backend, and loads TensorFlow: deferred so flag errors come first.
  from dfka_tf import report  # pylint: disable=g-import-not-at-top,unused-import  (deferred)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top  (after report's backend)
  return plt


def bar_plot(path: str, names: Sequence[str], means: Sequence[float], stds: Sequence[float],
             *, title: str = "", paper: Optional[Sequence] = None):
  """mAP bars with error bars; the paper's values (VOC07) as black markers where given."""
  plt = pyplot()
  x = np.arange(len(names))
  fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.2))
  ax.bar(x, np.nan_to_num(means), yerr=np.nan_to_num(stds), capsize=3, color="#4c72b0",
         label="ours (scenes20)")
  if paper is not None and any(p is not None for p in paper):
    px = [i for i, p in enumerate(paper) if p is not None]
    ax.scatter(px, [paper[i] for i in px], marker="_", s=400, color="black", zorder=3,
               label="paper (VOC07)")
    ax.legend(fontsize=7)
  ax.set_xticks(x)
  ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
  ax.set_ylabel("mAP (%)")
  ax.set_ylim(0, 100)
  ax.set_title(title, fontsize=9)
  save_figure(fig, path)


def curve_plot(path: str, curves: Dict[str, List[Dict]], *, title: str = ""):
  """mAP against synthesis seconds, one line per recipe ({name: [{"synthesis_seconds",
  "map", "step"}, ...]}, `--curve_every`'s points); a recipe whose images were all made
  before the student (pool, Step I's G, real images) stands at one x."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 3.4))
  for name, points in curves.items():
    if points:
      ax.plot([p["synthesis_seconds"] for p in points], [100 * p["map"] for p in points],
              marker="o", markersize=3, label=name)
  ax.set_xlabel("synthesis time (s, 2 CPU cores)")
  ax.set_ylabel("validation mAP (%)")
  ax.set_ylim(0, 100)
  ax.set_title(title, fontsize=9)
  # Below the axes: inside, a long legend hides the curves it names.
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.2), frameon=False)
  save_figure(fig, path, tight=False)


def image_rows_plot(path: str, rows: Dict[str, np.ndarray], per_row: int = 12):
  """Rows of uint8 images [n, H, W, 3], each under its title (analysis.bank_apart's)."""
  plt = pyplot()
  fig, axes = plt.subplots(len(rows), per_row, figsize=(per_row, 1.15 * len(rows)),
                           squeeze=False)
  for r, (title, images) in enumerate(rows.items()):
    for c in range(per_row):
      axes[r, c].axis("off")
      if c < len(images):
        axes[r, c].imshow(images[c], interpolation="nearest")
    axes[r, 0].set_title(f"{title} ({len(images)})", fontsize=8, loc="left")
  save_figure(fig, path, tight=False)


def save_figure(fig, path: str, *, tight: bool = True):
  """Lays out, writes (120 dpi, cropped to what is drawn) and closes a matplotlib figure."""
  if tight:
    with warnings.catch_warnings():
      # Long tick labels can leave no room for it; bbox_inches="tight" below keeps them.
      warnings.simplefilter("ignore", UserWarning)
      fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  pyplot().close(fig)
