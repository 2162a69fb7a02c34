r"""Regenerates the result tables of README.md and docs/*.md from the measured files.

  python docs/make_tables.py           # rewrite every generated block in place
  python docs/make_tables.py --check   # exit 1 if a block is out of date; writes nothing

A generated block sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->`, where NAME
is a key of TABLES below. Everything between the two markers is replaced, so edit the text
around a block, never inside it. The sources are the files the experiment suites and the
benchmark write: results/*.csv and *.md, results/beyond_paper/, results/inversion_pool/ and
benchmarks/results/*.txt. A source that disagrees with itself (a suite's .md table against its
.csv) is an error, not a silent pick of one of them.

Standard library only, so it runs without the project's dependencies (CI can call --check).
Exit status: 0 up to date (or rewritten), 1 out of date (--check), 2 a bad marker or source.
"""

import argparse
import csv
import glob
import json
import os
import re
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "results")
BENCH = os.path.join(ROOT, "benchmarks", "results")

# Longer names for the suites' row keys; other rows keep the label their .md file shows.
PRETTY = {
    "teacher": "teacher(s)",
    "ka": "KA (real unlabeled images)",
    "similar": "similar data (scenes20_similar)",
    "diff": "different data (scenes20_different)",
    "noise": "random noise",
    "dafl": "DAFL",
    "dfka": "DFKA (the paper's losses)",
    "dfka_paper": "DFKA, S-Table 1's weights",
    "dfka_k1": "DFKA, K = 1",
}
# Rows of the suites that are not the paper's method or baselines.
BEYOND = ("dfka+bns", "dfka+lh", "pool")

# Paper-scale estimate: the voc2007 preset's steps (teachers 20k each, Step I 20k, Step II
# 10k per block, Step III 10k; K = 2, M = 2) and an assumed sustained GPU rate.
PAPER_STEPS = {"teacher": 20000, "generator": 20000, "block": 10000, "finetune": 10000}
ASSUMED_TFLOPS = 50.0


class SourceError(Exception):
  """A results file is missing or does not say what a table needs."""


# ------------------------------------------------------------------------- reading sources
def _path(*parts):
  path = os.path.join(*parts)
  if not os.path.exists(path):
    raise SourceError(f"{os.path.relpath(path, ROOT)} is missing")
  return path


def read_csv(path):
  with open(_path(path), newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def read_md_table(path):
  """The first Markdown table of a file: (header, [row cells])."""
  with open(_path(path), encoding="utf-8") as f:
    lines = [l.rstrip("\n") for l in f]
  start = next((i for i, l in enumerate(lines) if l.startswith("| ")), None)
  if start is None:
    raise SourceError(f"{os.path.relpath(path, ROOT)} has no table")
  cells = lambda l: [c.strip() for c in l.strip().strip("|").split("|")]
  header, rows = cells(lines[start]), []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    rows.append(cells(line))
  return header, rows


def md_sentence(path, prefix):
  """The sentence of a suite's .md that starts with `prefix` (e.g. its wall time)."""
  with open(_path(path), encoding="utf-8") as f:
    m = re.search(re.escape(prefix) + r"[^\n]*", f.read())
  return m.group(0) if m else None


# ----------------------------------------------------------------------------- formatting
def f1(x):
  return f"{float(x):.1f}"


def mean_std(values, digits=1, unit=""):
  values = [float(v) for v in values]
  mean = statistics.mean(values)
  if len(values) == 1:
    return f"{mean:.{digits}f}{unit}"
  return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}{unit}"


def params(x):
  return f"{int(float(x)):,}" if x not in (None, "") else "—"


def params_share(target, teachers):
  """T_u's parameters and their fraction of the teachers' (all together)."""
  if target in (None, "") or teachers in (None, ""):
    return params(target)
  return f"{params(target)} ({float(target) / float(teachers):.2f})"


def measured(values):
  """Whether any of `values` (per-seed cells) holds a number."""
  return any(v not in (None, "", "nan") for v in values)


def mean_std_or_dash(values):
  """mean ± std of per-seed cells; "—" unless every one holds a number."""
  values = list(values)
  return mean_std(values) if values and all(v not in (None, "", "nan") for v in values) else "—"


def branch_out(value):
  """'{"1": 3, "2": 1}' or '1:3 2:1' -> '3, 1'; null -> '—'."""
  if value in (None, "", "null"):
    return "—"
  if value.lstrip().startswith("{"):
    points = json.loads(value)
    return ", ".join(str(points[k]) for k in sorted(points, key=int))
  pairs = dict(p.split(":") for p in value.split())
  return ", ".join(pairs[k] for k in sorted(pairs, key=int))


def table(header, rows):
  out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
  out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return out


# ------------------------------------------------------------------------- suite tables
class Suite:
  """A suite's output: <dir>/<name>.md (labels, paper columns), .csv and _seeds.csv."""

  def __init__(self, name, directory=RESULTS):
    self.name = name
    self.dir = directory
    self.md = os.path.join(directory, name + ".md")
    self.summary = read_csv(os.path.join(directory, name + ".csv"))
    self.seeds = read_csv(os.path.join(directory, name + "_seeds.csv"))
    self.md_header, self.md_rows = read_md_table(self.md)
    if len(self.md_rows) != len(self.summary):
      raise SourceError(f"{self.rel(self.md)} has {len(self.md_rows)} rows but "
                        f"{self.rel(self.csv_path)} has {len(self.summary)}")
    for md_row, row in zip(self.md_rows, self.summary):
      shown = md_row[self.md_header.index("mAP")]
      if not shown.startswith(f"{float(row['map_mean']):.1f}"):
        raise SourceError(f"{self.rel(self.md)} row {md_row[0]!r} shows mAP {shown} but "
                          f"{self.rel(self.csv_path)} has {float(row['map_mean']):.2f}")

  @property
  def csv_path(self):
    return os.path.join(self.dir, self.name + ".csv")

  @staticmethod
  def rel(path):
    return os.path.relpath(path, ROOT)

  def sources(self):
    return [self.csv_path, os.path.join(self.dir, self.name + "_seeds.csv"), self.md]

  def label(self, i):
    key = self.summary[i]["row"]
    shown = PRETTY.get(key, self.md_rows[i][0])
    return shown + (", beyond the paper" if key in BEYOND else "")

  def md_cell(self, i, header):
    return self.md_rows[i][self.md_header.index(header)]

  def per_seed(self, key):
    return [r for r in self.seeds if r["row"] == key]

  def pct_of_teachers(self, key):
    runs = self.per_seed(key)
    return [100 * float(r["map"]) / float(r["teacher_map"]) for r in runs]

  def wall_time(self):
    return md_sentence(self.md, "Wall time of this suite")


def suite_table(name, directory=RESULTS, *, labels=False):
  """Rows of a suite: per-seed mAP (several seeds), mean ± std, % of the teachers' mAP,
  the paper's columns as the suite printed them, T_u's parameters and S_m of seed 0."""
  s = Suite(name, directory)
  seeds = sorted({int(r["seed"]) for r in s.seeds})
  label_names = [c[:-5] for c in s.summary[0] if c.endswith("_mean") and c not in (
      "map_mean", "map_voc07_mean", "teacher_map_mean", "time_s_mean",
      "targetnet_map_mean", "regrouped_map_mean")] if labels else []
  # Older suite files have no TargetNet-alone score; "nan" where a row has none (teacher).
  alone = any(r.get("targetnet_map", "") not in ("", "nan") for r in s.seeds)
  # T_u before Step III: records made before results.json held it have none ("—").
  before = measured(r.get("regrouped_map") for r in s.seeds)
  paper_cols = [h for h in s.md_header if h.startswith("paper")]
  header = (["row"] + label_names + ([f"seed {k}" for k in seeds] if len(seeds) > 1 else [])
            + (["T_u before Step III"] if before else [])
            + ["mAP" + (" (mean ± std)" if len(seeds) > 1 else ""), "% of teachers"]
            + (["TargetNet alone"] if alone else [])
            + paper_cols + ["T_u params (of the teachers')",
                            "S_m" + (" (per seed)" if alone and len(seeds) > 1
                                     else " (seed 0)" if len(seeds) > 1 else "")])
  rows = []
  for i, row in enumerate(s.summary):
    runs = {int(r["seed"]): r for r in s.per_seed(row["row"])}
    if set(runs) != set(seeds):
      raise SourceError(f"{s.rel(s.md)}: row {row['row']!r} has seeds {sorted(runs)}, "
                        f"the table {seeds}")
    cells = [s.label(i)] + [f1(row[f"{n}_mean"]) for n in label_names]
    if len(seeds) > 1:
      cells += [f1(runs[k]["map"]) for k in seeds]
    if before:
      cells.append(mean_std_or_dash([runs[k].get("regrouped_map") for k in seeds]))
    cells.append(mean_std([runs[k]["map"] for k in seeds]))
    cells.append("—" if row["row"] == "teacher" else
                 f"{statistics.mean(s.pct_of_teachers(row['row'])):.1f} %")
    if alone:
      values = [runs[k].get("targetnet_map", "") for k in seeds]
      cells.append("—" if all(v in ("", "nan") for v in values) else mean_std(values))
    cells += [s.md_cell(i, h) for h in paper_cols]
    shown = [branch_out(runs[k]["branch_out"]) for k in (seeds if alone else seeds[:1])]
    cells += [params_share(row["target_params"], row["teacher_params"]), " / ".join(shown)]
    rows.append(cells)
  teacher_params = params(s.summary[0]["teacher_params"])
  note = (f"Teachers' parameters, all together: {teacher_params}. {s.wall_time() or ''}")
  return table(header, rows) + ["", note.strip()], s.sources()


def headline():
  """Table 1's rows: the teacher, the bounds (KA, noise), DAFL, DFKA and beyond the paper."""
  t1 = Suite("table1")
  rows = []
  shown = {"teacher": "the teacher (reference)", "ka": "KA: real unlabeled images (bound)",
           "noise": "random noise (floor)", "dafl": "DAFL, joint (baseline)",
           "dfka": "DFKA, the paper's losses at weights chosen on validation",
           "dfka_paper": "DFKA, the paper's losses at S-Table 1's weights"}
  for i, row in enumerate(t1.summary):
    key = row["row"]
    if key in ("similar", "diff"):
      continue
    runs = t1.per_seed(key)
    paper = t1.md_cell(i, next(h for h in t1.md_header if h.startswith("paper")))
    pct = "—" if key == "teacher" else mean_std(t1.pct_of_teachers(key), unit=" %")
    alone = [r.get("targetnet_map", "") for r in runs]
    if key == "dafl":  # One whole network: its T_u is the TargetNet alone.
      alone = mean_std([r["map"] for r in runs]) + " (one network)"
    elif all(v in ("", "nan") for v in alone):
      alone = "—"
    else:
      alone = mean_std(alone)
    regrouped = mean_std_or_dash([r.get("regrouped_map") for r in runs])
    rows.append([shown.get(key, t1.label(i)), regrouped, mean_std([r["map"] for r in runs]),
                 alone, pct, params_share(row["target_params"], row["teacher_params"]),
                 str(len(runs)), paper])
  header = ["1 teacher (20 labels) → 10 labels", "T_u before Step III", "T_u mAP",
            "TargetNet alone", "T_u, % of the teacher", "T_u params (of the teacher's)",
            "seeds", "paper (VOC07)"]
  return table(header, rows), t1.sources()[:2]


def _stage_order(item):
  """Stages in the order a run takes them: pretrain, teachers, Step I, blocks, the rest."""
  name = item[0]
  order = ["pretrain", "teacher", "generator", "inversion", "joint", "distill", "block",
           "finetune", "evaluate", "export"]
  rank = next((i for i, prefix in enumerate(order) if name.startswith(prefix)), len(order))
  return rank, name


def quickstart(folder="quickstart"):
  """The quick start over seeds: results/<folder>/seed<k>.json, the results.json of command 1
  with --seed=k; a line per seed, then mean ± sample std."""
  paths = sorted(glob.glob(os.path.join(RESULTS, folder, "seed*.json")),
                 key=lambda p: int(re.search(r"seed(\d+)", p).group(1)))
  if not paths:
    raise SourceError(f"results/{folder}/seed*.json is missing")
  runs = []
  for path in paths:
    with open(path) as f:
      runs.append(json.load(f))
  header = ["seed", "teachers", "T_u before Step III", "T_u after Step III",
            "T_u, % of the teachers'", "TargetNet alone", "S_m", "T_u params (of the teachers')"]
  rows, cols = [], {k: [] for k in ("teacher", "regrouped", "target", "pct", "targetnet")}

  def pct_of(r, key):
    return "" if r.get(key) is None else 100 * r[key]

  for r in runs:
    p = r["params"]
    cells = {"teacher": pct_of(r, "teacher_map"), "regrouped": pct_of(r, "regrouped_map"),
             "target": pct_of(r, "target_map"),
             "pct": 100 * r["target_map"] / r["teacher_map"],
             "targetnet": pct_of(r, "targetnet_map")}
    for k, v in cells.items():
      cols[k].append(v)
    rows.append([str(r["config"]["runtime"]["seed"])]
                + [f1(cells[k]) if cells[k] != "" else "—" for k in cols]
                + [branch_out(json.dumps(r["branch_out"])),
                   params_share(p["target_net"], p["teachers_total"])])
  if len(runs) > 1:
    rows.append([f"**mean ± std ({len(runs)} seeds)**"]
                + [f"**{mean_std_or_dash(cols[k])}**" for k in cols] + ["", ""])
  first = runs[0]
  times = ", ".join(f"{k} {v:.0f} s" + (" (cached)" if k == "pretrain" and
                                         first.get("pretrain_cached") else "")
                    for k, v in sorted(first["stage_times"].items(), key=_stage_order))
  note = (f"Stage times of seed {first['config']['runtime']['seed']}: {times}; "
          f"{first['total_time']:.0f} s in all.")
  return table(header, rows) + ["", note], paths


def budget():
  """The quick start under --target_param_budget (results/quickstart_budget/<F>-seed<k>.json)
  beside the unbounded runs of the same seeds (results/quickstart/seed<k>.json)."""
  folder = os.path.join(RESULTS, "quickstart_budget")
  paths = sorted(glob.glob(os.path.join(folder, "*-seed*.json")))
  if not paths:
    raise SourceError("results/quickstart_budget/*-seed*.json is missing")
  runs = {}
  for path in paths:
    name = os.path.basename(path)[:-5]
    fraction, seed = name.rsplit("-seed", 1)
    with open(path) as f:
      runs.setdefault(float(fraction), {})[int(seed)] = json.load(f)
  seeds = sorted(next(iter(runs.values())))
  unbounded = {}
  for k in seeds:
    with open(_path(RESULTS, "quickstart", f"seed{k}.json")) as f:
      unbounded[k] = json.load(f)
  header = (["--target_param_budget"] + [f"seed {k}: T_u (S_m)" for k in seeds]
            + ["T_u (mean ± std)", "before Step III", "T_u params (of the teachers')"])
  rows = []
  for fraction, by_seed in [(None, unbounded)] + sorted(runs.items(), reverse=True):
    if sorted(by_seed) != seeds:
      raise SourceError(f"budget {fraction}: seeds {sorted(by_seed)}, not {seeds}")
    shares = sorted({f"{r['params']['target_over_teachers']:.2f}" for r in by_seed.values()})
    rows.append([f"{fraction:g}" if fraction is not None else "none (Eq. 18)"]
                + [f"{f1(100 * by_seed[k]['target_map'])} "
                   f"({branch_out(json.dumps(by_seed[k]['branch_out']))})" for k in seeds]
                + [mean_std([100 * by_seed[k]["target_map"] for k in seeds]),
                   mean_std([100 * by_seed[k]["regrouped_map"] for k in seeds]),
                   " / ".join(shares)])
  return table(header, rows), paths + [os.path.join(RESULTS, "quickstart", f"seed{k}.json")
                                       for k in seeds]


def table_s5_blocks():
  path = os.path.join(RESULTS, "table_s5_blocks.csv")
  rows_in = read_csv(path)
  etas = sorted(c for c in rows_in[0] if re.fullmatch(r"eta_teacher\d+_mean", c))
  # The TargetNet alone is one figure per run, not per block: the main table has it.
  skip = ("map_mean", "map_voc07_mean", "teacher_map_mean", "targetnet_map_mean", "time_s_mean")
  names = [c[:-5] for c in rows_in[0] if c.endswith("_mean") and c not in skip
           and c not in etas]
  header = (["curve", "block b"] + [f"η^{{b,{c[len('eta_teacher'):-5]}}}" for c in etas]
            + [f"AP {n}" for n in names] + ["mAP", "T_u params"])
  rows = [[r["curve"], r["block"]] + [f"{float(r[c]):.4f}" for c in etas]
          + [f1(r[f"{n}_mean"]) for n in names] + [f1(r["map_mean"]), params(r["target_params"])]
          for r in rows_in]
  return table(header, rows), [path]


def fig4():
  path = os.path.join(RESULTS, "fig4.csv")
  rows = [[r["description"], f"{float(r['mean']):.3f}", f"{float(r['diversity']):.3f}",
           f"{100 * float(r['saturated_fraction']):.0f} %", f"{float(r['labels_per_image']):.2f}",
           f"{float(r['evenness']):.3f}"] for r in read_csv(path)]
  header = ["panel", "pixel mean", "diversity (std across images)", "saturated pixels",
            "teacher labels / image", "label evenness"]
  return table(header, rows), [path, os.path.join(RESULTS, "fig4.md")]


def fig5():
  path = os.path.join(RESULTS, "fig5.csv")
  rows = []
  for r in read_csv(path):
    fractions = [(c[:-len("_fraction")], float(r[c])) for c in r
                 if c.endswith("_fraction") and c != "empty_fraction"]
    top = max(fractions, key=lambda kv: kv[1])  # First of ties, in label order.
    rows.append([r["description"], f"{float(r['evenness_mean']):.3f}",
                 f"{float(r['labels_per_image_mean']):.2f}",
                 f"{100 * float(r['empty_fraction_mean']):.0f} %",
                 f"{top[0]} ({100 * top[1]:.0f} % of images)"])
  header = ["setting", "label evenness (1 = even)", "labels / image", "images with no label",
            "most frequent label"]
  return table(header, rows), [path, os.path.join(RESULTS, "fig5.md")]


def sweep(folder, name="sweep"):
  """A sweep on the validation split (experiments.sweep, experiments.sweep_student): its
  table and its verdict."""
  path = os.path.join(RESULTS, folder, f"{name}.md")
  header, rows = read_md_table(path)
  best = md_sentence(path, "Best by")
  if best is None:
    raise SourceError(f"{os.path.relpath(path, ROOT)} names no best point")
  return table(header, rows) + ["", best], [path, os.path.join(RESULTS, folder, f"{name}.csv")]


def inversion_pool():
  path = os.path.join(RESULTS, "inversion_pool", "seeds.csv")
  runs = read_csv(path)
  rows = [[r["seed"], r["teacher_map"], r["target_map"],
           f"{float(r['pct_of_teachers']):.1f} %", branch_out(r["branch_out"]),
           params(r["target_params"]), f"{r['inversion_s']} s"] for r in runs]
  rows.append(["mean ± std", mean_std([r["teacher_map"] for r in runs]),
               f"**{mean_std([r['target_map'] for r in runs])}**",
               f"**{mean_std([r['pct_of_teachers'] for r in runs], unit=' %')}**", "", "", ""])
  header = ["seed", "teachers' mAP", "T_u mAP", "% of teachers", "S_m", "T_u params",
            "pool stage"]
  return table(header, rows), [path]


# ---------------------------------------------------------------------- benchmark tables
PHASE_LINE = re.compile(
    r"^(?P<name>\S.*?)\s{2,}(?P<ms>[\d.]+)\s+(?P<min>[\d.]+)\s+(?P<ips>[\d.]+)\s+"
    r"(?P<gflop>[\d.]+)\s+(?P<gflops>[\d.]+)\s+(?P<pct>[\d.]+)%\s+(?P<mem>\d+)\s+"
    r"(?P<x>[\d.]+)x\s+(?P<cpu>[\d.]+)x(?:\s+<= (?P<target>[\d.]+)x (?P<verdict>.+))?$")
XLA_LINE = re.compile(
    r"^(?P<name>\S.*?)\s{2,}(?P<off>[\d.]+)\s+(?P<on>[\d.]+)\s+.*=\s+(?P<wall>[\d.]+)x wall,"
    r"\s+(?P<cpu>[\d.]+)x CPU time")


def bench_phases(filename):
  """The phases of a benchmark output's first pass (float32, XLA off), in order."""
  path = _path(BENCH, filename)
  phases, inside = {}, False
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.rstrip()
      if line.startswith("== float32, jit=off"):
        inside = True
        continue
      if inside and line.startswith("phase "):
        continue
      if inside:
        m = PHASE_LINE.match(line)
        if not m:
          break
        phases[" ".join(m["name"].split())] = m.groupdict()
  if not phases:
    raise SourceError(f"{os.path.relpath(path, ROOT)}: no 'float32, jit=off' phase table")
  return phases, path


def perf_ratios():
  """Time per step over the plain step, wall / CPU, per benchmark output; work = FLOP ratio."""
  files = [("default.txt", "default", "default"),
           ("default_compare_jit.txt", "default, 2nd run", "default"),
           ("default_inv.txt", "default, pool run", "default"),
           ("paper_k2.txt", "paper scale", "paper")]
  passes = [(label, scale, *bench_phases(name)) for name, label, scale in files]
  names = []
  for _, _, phases, _ in passes:
    names += [n for n in phases if n not in names]
  plain = "plain teacher step"

  def work(n, scale):
    for _, s, phases, _ in passes:
      if s == scale and n in phases:
        return f"{float(phases[n]['gflop']) / float(phases[plain]['gflop']):.2f}"
    return "—"

  rows = []
  for n in names:
    target = next((p[n]["target"] for _, _, p, _ in passes if n in p and p[n]["target"]), None)
    cells = [n, f"≤ {float(target):g}×" if target else "—"]
    for scale in ("default", "paper"):
      cells.append(work(n, scale))
      for _, s, phases, _ in passes:
        if s == scale:
          cells.append(f"{float(phases[n]['x']):.2f} / {float(phases[n]['cpu']):.2f}"
                       if n in phases else "not run")
    rows.append(cells)
  header = ["phase", "target"]
  for scale in ("default", "paper"):
    header.append(f"work ({scale} scale)")
    header += [label for label, s, _, _ in passes if s == scale]
  return table(header, rows), [path for _, _, _, path in passes]


def perf_xla():
  path = _path(BENCH, "default_compare_jit.txt")
  rows, inside = [], False
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.rstrip()
      if line.startswith("== XLA:"):
        inside = True
        continue
      if inside:
        m = XLA_LINE.match(line)
        if not m:
          break
        rows.append([" ".join(m["name"].split()), m["off"], m["on"], f"{m['wall']}×",
                     f"{m['cpu']}×"])
  if not rows:
    raise SourceError("benchmarks/results/default_compare_jit.txt: no '== XLA:' section")
  header = ["phase", "XLA off, ms/step", "XLA on, ms/step", "on / off, wall", "on / off, CPU"]
  return table(header, rows), [path]


def paper_estimate():
  phases, path = bench_phases("paper_k2.txt")
  get = lambda n: (float(phases[n]["gflop"]), float(phases[n]["ms"]) / 1000.0)
  blocks = [n for n in phases if n.startswith("Step II T^")]
  stages = [
      ("teachers (×2)", [("plain teacher step", 2 * PAPER_STEPS["teacher"])],
       f"2 × {PAPER_STEPS['teacher']:,}"),
      ("Step I (G, K = 2)", [("Step I G (K=2, M=2)", PAPER_STEPS["generator"])],
       f"{PAPER_STEPS['generator']:,}"),
      (f"Step II (T^1..T^{len(blocks)})", [(n, PAPER_STEPS["block"]) for n in blocks],
       f"{len(blocks)} × {PAPER_STEPS['block']:,}"),
      ("Step III (fine-tune)", [("Step III fine-tune T_u", PAPER_STEPS["finetune"])],
       f"{PAPER_STEPS['finetune']:,}"),
  ]
  rows, total_pflop, total_cpu = [], 0.0, 0.0
  for name, parts, steps in stages:
    pflop = sum(get(n)[0] * k for n, k in parts) / 1e6
    cpu = sum(get(n)[1] * k for n, k in parts)
    total_pflop, total_cpu = total_pflop + pflop, total_cpu + cpu
    rows.append([name, steps, " / ".join(f"{get(n)[0]:,.0f}" for n, _ in parts),
                 f"{pflop:.1f}", " / ".join(f"{get(n)[1]:.1f}" for n, _ in parts),
                 f"{cpu / 3600:.0f} h", f"{pflop * 1e3 / ASSUMED_TFLOPS / 60:.0f} min"])
  rows.append(["total", "", "", f"{total_pflop:.0f}", "", f"{total_cpu / 86400:.1f} days",
               f"{total_pflop * 1e3 / ASSUMED_TFLOPS / 60:.0f} min"])
  header = ["stage", "steps", "GFLOP / step", "total PFLOP", "CPU s / step (2 cores)",
            "CPU total", f"GPU at an assumed {ASSUMED_TFLOPS:g} TFLOP/s"]
  return table(header, rows), [path]


TABLES = {
    "headline": headline,
    "quickstart": quickstart,
    "quickstart_lr03": lambda: quickstart("quickstart_lr0.3"),
    "budget": budget,
    "table1": lambda: suite_table("table1"),
    "table2": lambda: suite_table("table2"),
    "table2_beyond": lambda: suite_table("table2", os.path.join(RESULTS, "beyond_paper")),
    "table2_lr_0_3": lambda: suite_table("table2", os.path.join(RESULTS, "table2_lr0.3")),
    "table1_lr_0_3": lambda: suite_table("table1", os.path.join(RESULTS, "table1_lr0.3")),
    "table1_colour": lambda: suite_table("table1", os.path.join(RESULTS, "scenes20_colour")),
    "table2_colour": lambda: suite_table("table2", os.path.join(RESULTS, "scenes20_colour")),
    "table4": lambda: suite_table("table4"),
    "table_s3": lambda: suite_table("table_s3"),
    "table_s5": lambda: suite_table("table_s5", labels=True),
    "table_s5_blocks": table_s5_blocks,
    "fig4": fig4,
    "fig5": fig5,
    "inversion_pool": inversion_pool,
    "sweep": lambda: sweep("sweep"),
    "sweep_seeds": lambda: sweep("sweep_3seeds"),
    "sweep_student": lambda: sweep("", "sweep_student"),
    "perf_ratios": perf_ratios,
    "perf_xla": perf_xla,
    "paper_estimate": paper_estimate,
}


# ------------------------------------------------------------------------ rewriting docs
# A marker is a line of its own, so a page can quote the syntax inline.
BLOCK = re.compile(r"^(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)^(<!-- /table:(?P=name) -->)$",
                   re.S | re.M)


def render(name, doc_path):
  """The body of block `name` as it should read in `doc_path` (links relative to it)."""
  lines, sources = TABLES[name]()
  here = os.path.dirname(doc_path)
  links = ", ".join(f"[`{os.path.relpath(p, ROOT)}`]({os.path.relpath(p, here)})"
                    for p in dict.fromkeys(sources))
  return "\n".join(lines + ["", f"Generated by `python docs/make_tables.py` from {links}.",
                            ""]) + "\n"


def documents():
  return [os.path.join(ROOT, "README.md")] + sorted(
      glob.glob(os.path.join(ROOT, "docs", "*.md")))


def update(doc_path):
  """Returns (old text, new text, [names of blocks that changed])."""
  with open(doc_path, encoding="utf-8") as f:
    text = f.read()
  opened = re.findall(r"^<!-- table:([\w-]+) -->$", text, re.M)
  closed = re.findall(r"^<!-- /table:([\w-]+) -->$", text, re.M)
  if sorted(opened) != sorted(closed):
    raise SourceError(f"{os.path.relpath(doc_path, ROOT)}: unmatched table markers "
                      f"(opened {opened}, closed {closed})")
  unknown = [n for n in opened if n not in TABLES]
  if unknown:
    raise SourceError(f"{os.path.relpath(doc_path, ROOT)}: unknown table(s) {unknown}; "
                      f"known: {', '.join(TABLES)}")
  changed = []

  def replace(m):
    body = render(m["name"], doc_path)
    if body != m["body"]:
      changed.append(m["name"])
    return m.group(1) + body + m.group(4)

  return text, BLOCK.sub(replace, text), changed


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="exit 1 if a generated block is out of date; write nothing")
  args = parser.parse_args(argv)
  stale = []
  try:
    for doc in documents():
      old, new, changed = update(doc)
      rel = os.path.relpath(doc, ROOT)
      stale += [f"{rel}: {name}" for name in changed]
      if changed and not args.check:
        with open(doc, "w", encoding="utf-8") as f:
          f.write(new)
  except (SourceError, OSError, KeyError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.check and stale:
    print("out of date (run `python docs/make_tables.py`): " + ", ".join(stale),
          file=sys.stderr)
    return 1
  if stale:
    print("rewrote " + ", ".join(stale))
  return 0


if __name__ == "__main__":
  sys.exit(main())
