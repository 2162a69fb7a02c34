r"""Where the time goes: one line per training phase, against a plain teacher step.

  python -m benchmarks.steps --repeats=10                 # default: small ResNet, 32 px, b64
  python -m benchmarks.steps --compare_jit --repeats=10   # each phase with XLA off and on
  python -m benchmarks.steps --config=paper --repeats=10 --phases=G2,T1,T2,T3,T4,FT
      # ResNet-101, 224 px, batch 16: ~50 min on 2 shared CPU cores (a plain step is 5-27 s)
  python -m benchmarks.steps --config=tiny --repeats=2    # seconds; the smoke test's config

Per phase (all in one process, so ratios are comparable even on a shared machine):
  - step time: median (and minimum) of --repeats timed steps after --warmup steps, images/s;
  - GFLOP per step, counted once from the compiled step graph (benchmarks/flops.py: conv and
    matmul ops, forward and backward, dead ops pruned), achieved GFLOP/s and its fraction of
    the best matmul GFLOP/s measured in the same process (at the start and after each pass);
  - peak memory: on GPU the allocator's peak during the phase (reset per phase); on CPU the
    process's peak RSS so far (getrusage; it never goes down, so it is cumulative);
  - the ratio to a plain Keras training step of one teacher on the same batch (forward +
    backward + SGD), and whether the targets of issue 6 are met: Step I (G) <= (K + 1) x the
    plain step per teacher, i.e. <= M (K + 1) x with M = 2 teachers; each T^b step <= 2 x.
Other engineers' jobs share this machine's cores, so by default (--paired) every timed step
of a phase follows a timed plain step and the ratio is the median of the per-pair ratios;
the same ratio in process CPU time, which excludes the time other processes hold the cores,
is printed beside it as a second opinion.

Then: XLA off vs on (--compare_jit), mixed precision (a second pass on GPU; skipped on CPU
unless --force_mixed) and the input pipeline (tf.data alone vs the step it feeds).
"""

import dataclasses
import functools
import os
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
import keras
import tensorflow as tf

from benchmarks import flops as flops_lib
from dfka_tf import data
from dfka_tf.errors import DataNotFoundError
from dfka_tf.config import RunConfig
from dfka_tf.models import blocknet
from dfka_tf.models import regroup as regroup_lib
from dfka_tf.models.filters import TeacherFilter
from dfka_tf.models.resnet import build_resnet
from dfka_tf.stages import images, student
from dfka_tf.stages.base import Run, Workdir, default_jit
from dfka_tf.task import TaskMap
from dfka_tf.train import inversion
from dfka_tf.train.teachers import TeacherTrainer
# pylint: enable=g-import-not-at-top,wrong-import-position

NUM_TEACHERS = 2  # M
TEACHER_LABELS = 10  # labels per teacher; the dataset has M x 10 = 20 (scenes20, VOC)

CONFIGS = {
    "default": dict(arch="small", size=32, batch=64, latent=128, width=64,
                    dataset="scenes20", eval_batch=250, matmul=2048),
    "paper": dict(arch="resnet101", size=224, batch=16, latent=256, width=256,
                  dataset="voc2007", eval_batch=32, matmul=2048),
    "tiny": dict(arch="tiny", size=16, batch=8, latent=8, width=16,
                 dataset="scenes20", eval_batch=50, matmul=1024),
}

FLAGS = flags.FLAGS


def define_flags():
  """Called when run as a program only: importing this module (tests) defines no flags."""
  flags.DEFINE_enum("config", "default", list(CONFIGS), "Which scale to measure.")
  flags.DEFINE_integer("repeats", 10, "Timed steps per phase (the median is reported).")
  flags.DEFINE_integer("warmup", 2, "Untimed steps per phase before timing (tracing, XLA).")
  flags.DEFINE_bool("jit", None, "Compile the steps with XLA (ignored with --compare_jit); "
                    "default: the library's default (dfka_tf.stages.base.default_jit: on GPU only).")
  flags.DEFINE_bool("compare_jit", False,
                    "Run every phase with XLA off and on. Off by default: on CPU XLA is slower, "
                    "and at paper scale its first step compiles for ~40 s per phase.")
  flags.DEFINE_bool("force_mixed", False, "Run the mixed_float16 pass on CPU too.")
  flags.DEFINE_list("phases", None, "Phase keys to run (default all); the plain step always "
                    "runs. Keys: plain, G1, G2, G4, T1, T2, T3, T4, FT.")
  flags.DEFINE_bool("pipeline", True, "Measure the input pipeline against the steps.")
  flags.DEFINE_bool("paired", True, "Time a plain step before every timed step of a phase and "
                    "take the median of the per-pair ratios (robust to load from other "
                    "processes); --nopaired times the plain step only first and last.")


def _log(*args):
  print(*args, file=sys.stderr, flush=True)


def _out(*args):
  print(*args, flush=True)


# ------------------------------------------------------------------ the phases


class World:
  """Everything the phases share, built on first use: teachers, task, generators, T, T_u.

  The trainers come from the runner's own factories (`dfka_tf.stages`), configured by a
  RunConfig of this scale; the teachers are untrained networks of the run's architecture.
  """

  def __init__(self, c: Dict, jit: bool):
    self.c, self.jit = c, bool(jit)
    self.shape = (c["size"], c["size"], 3)
    self.batch = c["batch"]
    self.rng = tf.random.Generator.from_seed(0)
    self.config = RunConfig.build(
        c["dataset"], overrides=dict(arch=c["arch"], image_size=c["size"], batch_size=c["batch"],
                                     latent_dim=c["latent"], generator_width=c["width"],
                                     jit=self.jit, workdir="unused"))
    self._generators = {}

  def run(self, **overrides) -> Run:
    """A Run of this scale that never writes (no stage runs through it)."""
    return Run(self.config.replace(**overrides), Workdir("unused"), progress=False)

  def net(self, name, num_labels):
    return blocknet.split_model(build_resnet(self.c["arch"], num_labels, self.shape, name=name),
                                label_names=[f"{name}{i}" for i in range(num_labels)])

  @functools.cached_property
  def teachers(self):
    return [self.net(chr(ord("a") + m), TEACHER_LABELS).freeze() for m in range(NUM_TEACHERS)]

  @functools.cached_property
  def task(self):
    return TaskMap.build([t.label_names for t in self.teachers])

  def generator_trainer(self, k):
    if k not in self._generators:
      self._generators[k] = images.generator_trainer(self.run(groups=k), self.teachers)
    return self._generators[k]

  @functools.cached_property
  def source(self):  # Steps II and III read images from the K = 2 generator.
    return images.Images(self.run(), self.teachers,
                         self.generator_trainer(2).generator).source(11)

  @functools.cached_property
  def target(self):
    return self.net("t", len(self.task.labels))

  @functools.cached_property
  def target_net(self):  # T_u with a branch per teacher after block 3.
    filters = {b: [TeacherFilter() for _ in self.teachers] for b in (1, 2, 3)}
    return regroup_lib.regroup(self.target, self.teachers, filters,
                         {m: 3 for m in range(NUM_TEACHERS)}, self.task)

  @functools.cached_property
  def batch_data(self):
    """A synthetic batch shaped like dfka_tf.data.load's (so real batches don't retrace)."""
    n = NUM_TEACHERS * TEACHER_LABELS
    return {"image": tf.random.uniform((self.batch,) + self.shape),
            "labels": tf.cast(tf.random.uniform((self.batch, n)) > 0.9, tf.float32),
            "ignore": tf.zeros((self.batch, n))}

  @functools.cached_property
  def plain_trainer(self):
    model = build_resnet(self.c["arch"], TEACHER_LABELS, self.shape, name="plain")
    return TeacherTrainer(model, list(range(TEACHER_LABELS)), steps=100, learning_rate=0.01,
                          jit=self.jit)


@dataclasses.dataclass
class Bench:
  step: Callable[[], Dict]  # one training step, no arguments
  concrete: Callable[[], object]  # the step's tf.function ConcreteFunction
  traces: Callable[[], int]  # how often the step has been traced


def _trainer_bench(trainer):
  compiled = trainer._compiled  # pylint: disable=protected-access  (the step's tf.function)
  return Bench(trainer.step, compiled.get_concrete_function, lambda: trainer.trace_count)


def _plain(w: World) -> Bench:
  t = w.plain_trainer
  return Bench(lambda: t.step(w.batch_data), lambda: t.step.get_concrete_function(w.batch_data),
               lambda: t.trace_count)


def _generator(w: World, k: int) -> Bench:
  return _trainer_bench(w.generator_trainer(k))


def _block(w: World, b: int) -> Bench:
  return _trainer_bench(student.block_trainer(w.run(), w.target, b, w.source, w.teachers,
                                              w.task))


def _finetune(w: World) -> Bench:
  return _trainer_bench(student.finetune_trainer(w.run(), w.target_net, w.source, w.teachers,
                                                 w.task))


def _inversion(w: World) -> Bench:
  # One batch with more steps than any run times: the pool never fills.
  return _trainer_bench(inversion.InversionTrainer(
      w.teachers, rng=w.rng, num_images=w.batch, batch_size=w.batch, steps=10**6,
      jit=w.jit).build())


@dataclasses.dataclass(frozen=True)
class Phase:
  key: str
  name: str
  build: Callable[[World], Bench]
  target: Optional[float] = None  # max ratio to the plain step
  rule: str = ""


def _phases() -> List[Phase]:
  out = [Phase("plain", "plain teacher step", _plain)]
  for k in (1, 2, 4):
    out.append(Phase(f"G{k}", f"Step I  G (K={k}, M={NUM_TEACHERS})",
                     functools.partial(_generator, k=k), target=NUM_TEACHERS * (k + 1),
                     rule=f"(K+1) x plain per teacher = {NUM_TEACHERS} x {k + 1}"))
  for b in (1, 2, 3, 4):
    out.append(Phase(f"T{b}", f"Step II T^{b} (M={NUM_TEACHERS})",
                     functools.partial(_block, b=b), target=2.0, rule="2 x plain"))
  out.append(Phase("FT", "Step III fine-tune T_u", _finetune))
  out.append(Phase("INV", f"Pool pixel step (M={NUM_TEACHERS})", _inversion,
                   target=float(NUM_TEACHERS), rule=f"M x plain = {NUM_TEACHERS}"))
  return out


PHASES = _phases()  # The one list of phases: the benchmark, its test and docs/performance.md use it.


# ------------------------------------------------------------------ measuring


def _sync(out):
  """Waits for a step: fetches the first of its outputs (a dict or a list of tensors)."""
  first = next(iter(out.values())) if isinstance(out, dict) else out[0]
  first.numpy()


def _time(fn: Callable, repeats: int, warmup: int, cpu: Optional[List[float]] = None
          ) -> List[float]:
  """Wall seconds of `repeats` calls after `warmup`; appends their CPU seconds to `cpu`.

  CPU time (all threads of this process) does not count the time other processes hold the
  cores, so on a shared machine its ratios are a second, less noisy, opinion.
  """
  for _ in range(warmup):
    out = fn()
  if warmup:
    _sync(out)
  times = []
  for _ in range(repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    _sync(fn())  # Wait for the step to finish.
    times.append(time.perf_counter() - start)
    if cpu is not None:
      cpu.append(time.process_time() - start_cpu)
  return times


def _matmul_gflops(n=2048, repeats=10, dtype="float32"):
  """The best of `repeats` n^3 matmuls: the machine's attainable peak, not its current share."""
  a = tf.cast(tf.random.normal([n, n]), dtype)
  f = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, a), tf.float32)))
  times = _time(lambda: [f()], repeats, warmup=1)
  return 2 * n**3 / min(times) / 1e9


class MatmulPeak:
  """The %matmul reference: the best matmul GFLOP/s measured so far in this run.

  Measured at the start and again after every pass, because a single measurement taken
  while other jobs hold the cores understates what the machine can do.
  """

  def __init__(self, n: int, dtype: str = "float32"):
    self.n, self.dtype = n, dtype
    self.samples = []

  def measure(self) -> float:
    self.samples.append(_matmul_gflops(self.n, dtype=self.dtype))
    return self.samples[-1]

  @property
  def best(self) -> float:
    return max(self.samples)

  def describe(self) -> str:
    return (f"{self.best:.1f} GFLOP/s, the best {self.n}^3 {self.dtype} matmul of this run "
            f"(measured {', '.join(f'{v:.1f}' for v in self.samples)})")


def _gpu():
  return bool(tf.config.list_physical_devices("GPU"))


def _reset_memory():
  if _gpu():
    tf.config.experimental.reset_memory_stats("GPU:0")


def _peak_memory_mib() -> float:
  if _gpu():
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _memory_label():
  return ("GPU:0 allocator peak during the phase" if _gpu()
          else "process peak RSS so far (CPU; cumulative, never decreases)")


@dataclasses.dataclass
class Result:
  phase: Phase
  times: List[float]
  flops: int
  memory_mib: float
  retraced: bool
  cpu_times: List[float]
  ratio: Optional[float] = None  # to the plain step (wall time)
  cpu_ratio: Optional[float] = None  # to the plain step (CPU time)

  @property
  def median(self):
    return statistics.median(self.times)


@dataclasses.dataclass
class Pass:
  label: str
  results: Dict[str, Result]
  plain_samples: List[float]  # every plain step timed in the pass
  plain_cpu: List[float]  # and its CPU seconds
  paired: bool
  world: World

  @property
  def base(self):
    return statistics.median(self.plain_samples)


def run_pass(c: Dict, phases: List[Phase], *, label: str, jit: bool, mixed: bool,
             repeats: int, warmup: int, peak: MatmulPeak, paired: bool) -> Pass:
  """Builds a fresh World and times every phase; prints its table and ratio lines.

  With `paired`, every timed step of a phase directly follows a timed plain step, and the
  phase's ratio is the median of the step / plain step ratios: load from other processes
  that changes over minutes then cancels out. Otherwise the plain step is timed first and
  again last, and the ratio is the phase's median over the median of those plain samples.
  """
  keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
  try:
    world = World(c, jit)
    results, plain, plain_samples, plain_cpu = {}, None, [], []
    for phase in phases:
      _log(f"[{label}] {phase.name}: building")
      _reset_memory()
      bench = phase.build(world)
      start = time.perf_counter()
      flops, _, unknown = flops_lib.count(bench.concrete())
      if unknown:
        _log(f"  {unknown} conv/matmul ops with unknown shapes were not counted")
      traces = bench.traces()
      _log(f"[{label}] {phase.name}: traced and counted in {time.perf_counter() - start:.1f} s;"
           f" timing {warmup} + {repeats} steps")
      for _ in range(warmup):
        bench.step()
      traces_after_warmup = bench.traces()
      ratio = cpu_ratio = None
      cpu = []
      if phase.key == "plain":
        plain, ratio, cpu_ratio = bench, 1.0, 1.0
        times = _time(bench.step, repeats, warmup=0, cpu=cpu)
        plain_samples += times
        plain_cpu += cpu
      elif paired:
        times, before, before_cpu = [], [], []
        for _ in range(repeats):
          before += _time(plain.step, 1, warmup=0, cpu=before_cpu)
          times += _time(bench.step, 1, warmup=0, cpu=cpu)
        plain_samples += before
        plain_cpu += before_cpu
        ratio = statistics.median(t / b for t, b in zip(times, before))
        cpu_ratio = statistics.median(t / b for t, b in zip(cpu, before_cpu))
      else:
        times = _time(bench.step, repeats, warmup=0, cpu=cpu)
      results[phase.key] = Result(phase, times, flops, _peak_memory_mib(),
                                  retraced=bench.traces() != traces_after_warmup,
                                  cpu_times=cpu, ratio=ratio, cpu_ratio=cpu_ratio)
      _log(f"[{label}] {phase.name}: {1000 * statistics.median(times):.1f} ms/step "
           f"(traces: {traces} at first call, {bench.traces()} at the end)")
    if not paired:
      plain_samples += _time(plain.step, repeats, warmup=1, cpu=plain_cpu)
    out = Pass(label, results, plain_samples, plain_cpu, paired, world)
    for r in results.values():
      if r.ratio is None:
        r.ratio = r.median / out.base
        r.cpu_ratio = statistics.median(r.cpu_times) / statistics.median(plain_cpu)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  peak.measure()
  print_pass(out, c, peak)
  return out


def _verdict(r: Result):
  return "met" if r.ratio <= r.phase.target else "NOT met"


def print_pass(p: Pass, c: Dict, peak: MatmulPeak):
  base_flops = p.results["plain"].flops
  _out(f"\n== {p.label}: batch {c['batch']}, {c['size']} px, {c['arch']}; median of "
       f"{len(p.results['plain'].times)} timed steps per phase ==")
  _out(f"{'phase':<26} {'ms/step':>8} {'(min)':>8} {'img/s':>8} {'GFLOP':>8} {'GFLOP/s':>8}"
       f" {'%matmul':>7} {'mem MiB':>8} {'x plain':>8} {'(CPU t)':>8}  target")
  for key, r in p.results.items():
    goal = f"<= {r.phase.target:.1f}x {_verdict(r)}" if r.phase.target else ""
    seconds, fastest = ((p.base, min(p.plain_samples)) if key == "plain"
                        else (r.median, min(r.times)))
    gflops = r.flops / seconds / 1e9
    _out(f"{r.phase.name:<26} {1000 * seconds:8.1f} {1000 * fastest:8.1f} "
         f"{c['batch'] / seconds:8.1f} {r.flops / 1e9:8.3f} {gflops:8.2f} "
         f"{100 * gflops / peak.best:6.1f}% {r.memory_mib:8.0f} {r.ratio:7.2f}x {r.cpu_ratio:7.2f}x"
         f"  {goal}"
         + ("  RETRACED while timing" if r.retraced else ""))
  _out(f"(mem: {_memory_label()}; GFLOP: conv + matmul, forward + backward, per step; "
       f"plain row: all {len(p.plain_samples)} plain samples; (CPU t): the same ratio in "
       "process CPU time)")
  _out(f"%matmul: of {peak.describe()}")
  ms = sorted(1000 * t for t in p.plain_samples)
  cpu = sorted(1000 * t for t in p.plain_cpu)
  how = ("median of per-step ratios, each step timed right after a plain step" if p.paired
         else "phase median / plain median (plain timed first and last)")
  _out(f"plain step over the pass: min {ms[0]:.1f}, median {statistics.median(ms):.1f}, max "
       f"{ms[-1]:.1f} ms wall, CPU time min {cpu[0]:.1f}, median {statistics.median(cpu):.1f}, "
       f"max {cpu[-1]:.1f} ms ({len(ms)} samples; the spread is the machine's noise); "
       f"x plain = {how}")
  for r in p.results.values():
    if r.phase.target:
      _out(f"ratio {r.phase.name:<24} {r.ratio:5.2f}x plain (work {r.flops / base_flops:5.2f}x,"
           f" CPU time {r.cpu_ratio:5.2f}x) target <= {r.phase.target:.1f}x [{r.phase.rule}]: "
           f"{_verdict(r)}")


def print_comparison(title, a: Pass, b: Pass):
  """The two passes ran one after the other: compare CPU time too, which load affects less."""
  _out(f"\n== {title}: {a.label} vs {b.label} (ms/step, median; x plain in each pass) ==")
  for key, ra in a.results.items():
    rb = b.results.get(key)
    if rb is None:
      continue
    ta = a.base if key == "plain" else ra.median
    tb = b.base if key == "plain" else rb.median
    ca = statistics.median(a.plain_cpu if key == "plain" else ra.cpu_times)
    cb = statistics.median(b.plain_cpu if key == "plain" else rb.cpu_times)
    _out(f"{ra.phase.name:<26} {1000 * ta:9.1f} {1000 * tb:9.1f}   {b.label} / {a.label} = "
         f"{tb / ta:5.2f}x wall, {cb / ca:5.2f}x CPU time   ({ra.ratio:.2f}x vs "
         f"{rb.ratio:.2f}x plain)")


# ------------------------------------------------------------------ input pipeline


def _iterate(iterator, n):
  start = time.perf_counter()
  for _ in range(n):
    batch = next(iterator)
  float(batch["image"][0, 0, 0, 0])
  return time.perf_counter() - start


def pipeline_check(c: Dict, p: Pass, repeats: int):
  """tf.data alone vs the step it feeds, for training and for evaluation."""
  _out(f"\n== input pipeline: {c['dataset']} at {c['size']} px ==")
  try:
    data.check_prepared(c["dataset"])
  except DataNotFoundError as e:
    _out(f"input pipeline: skipped, {str(e).splitlines()[0]}")
    return
  batch, size = c["batch"], c["size"]
  # Training: what pipeline.py feeds TeacherTrainer.
  train = data.load(c["dataset"], "train", image_size=size, batch_size=batch, shuffle=True,
                    augment=True, drop_remainder=True).repeat()
  it = iter(train)
  epoch = data.num_examples(c["dataset"], "train") // batch
  first = epoch * batch / _iterate(it, epoch)  # decodes, resizes and fills the cache
  n = max(20, 5 * repeats)
  alone = n * batch / _iterate(it, n)
  trainer = p.world.plain_trainer
  traces = trainer.trace_count
  synthetic, fed = [], []
  for _ in range(n):  # Paired, like the phases: a synthetic step, then one fed by tf.data.
    synthetic += _time(lambda: trainer.step(p.world.batch_data), 1, warmup=0)
    fed += _time(lambda: trainer.step(next(it)), 1, warmup=0)
  step, fed = batch / statistics.median(synthetic), batch / statistics.median(fed)
  _out(f"train pipeline alone: {first:9.1f} img/s first epoch (decode + resize, fills the "
       f"cache), {alone:9.1f} img/s after (cached: every later epoch)")
  _out(f"teacher training step: {step:9.1f} img/s on a synthetic batch, {fed:9.1f} img/s fed by"
       f" the pipeline ({fed / step:.2f}x; {n} steps each, interleaved)" +
       ("" if trainer.trace_count == traces else "  RETRACED on real batches"))
  _out(f"train: pipeline {'IS' if alone < step else 'is not'} the bottleneck "
       f"(alone it delivers {alone / step:.1f}x the step's rate; on a CPU-only machine it "
       "shares the cores with the step, so its cost adds instead of overlapping)")
  # Evaluation: one uncached pass over the test split at eval batch size, as
  # Amalgamation.evaluate does it (M teachers + T_u per batch).
  eb = c["eval_batch"]
  w = p.world
  teachers, target_net = w.teachers, w.target_net  # Built eagerly, not while tracing.
  forward = tf.function(lambda x: [t.tail(x, 0, training=False)["probs"] for t in teachers]
                        + [target_net(x, training=False)])
  test_images = data.num_examples(c["dataset"], "test")

  def one_pass(fn=None):
    ds = data.load(c["dataset"], "test", image_size=size, batch_size=eb)  # fresh: no cache
    start = time.perf_counter()
    for b in ds:
      out = fn(b["image"]) if fn else b["image"]
    float(tf.reduce_sum(out[0]) if fn else out[0, 0, 0, 0])
    return test_images / (time.perf_counter() - start)

  alone = one_pass()
  x = tf.random.uniform((eb,) + w.shape)
  infer = eb / statistics.median(_time(lambda: forward(x), repeats, warmup=2))
  fed = one_pass(forward)
  _out(f"test pipeline alone:  {alone:9.1f} img/s (one uncached pass, batch {eb})")
  _out(f"inference step ({NUM_TEACHERS} teachers + T_u): {infer:9.1f} img/s on a synthetic "
       f"batch, {fed:9.1f} img/s fed by the pipeline ({fed / infer:.2f}x)")
  _out(f"test: pipeline {'IS' if alone < infer else 'is not'} the bottleneck "
       f"(alone it delivers {alone / infer:.1f}x the inference rate)")


# ------------------------------------------------------------------ main


def select_phases(keys) -> List[Phase]:
  if not keys:
    return list(PHASES)
  known = {p.key for p in PHASES}
  bad = sorted(set(keys) - known)
  if bad:
    raise app.UsageError(f"unknown --phases {bad}; use some of {sorted(known)}")
  return [p for p in PHASES if p.key == "plain" or p.key in keys]


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # TFDS logs every dataset it opens at INFO.
  c = CONFIGS[FLAGS.config]
  phases = select_phases(FLAGS.phases)
  gpu = _gpu()
  device = "GPU " + tf.config.experimental.get_device_details(
      tf.config.list_physical_devices("GPU")[0]).get("device_name", "") if gpu else "CPU"
  _out(f"config={FLAGS.config} arch={c['arch']} {c['size']}px batch={c['batch']} "
       f"device={device} cpus={os.cpu_count()} tf={tf.__version__} "
       f"load average={os.getloadavg()[0]:.2f}")
  _out("Wall-clock timings; on a shared machine absolute figures are noisy: compare the "
       "ratios, which are measured within this process.")
  n = c["matmul"]
  peak = MatmulPeak(n)
  _out(f"matmul {n}^3 float32: {peak.measure():.1f} GFLOP/s (best of 10 calls)")
  kw = dict(repeats=FLAGS.repeats, warmup=FLAGS.warmup, peak=peak, paired=FLAGS.paired)
  if FLAGS.compare_jit:
    jits = [False, True]
  else:
    jits = [default_jit() if FLAGS.jit is None else FLAGS.jit]
  passes = [run_pass(c, phases, label=f"float32, jit={'on' if j else 'off'}", jit=j, mixed=False,
                     **kw) for j in jits]
  if FLAGS.compare_jit:
    print_comparison("XLA", *passes)
  if gpu or FLAGS.force_mixed:
    peak16 = MatmulPeak(n, "float16")
    _out(f"\nmatmul {n}^3 float16: {peak16.measure():.1f} GFLOP/s (best of 10 calls)")
    mixed = run_pass(c, phases, label=f"mixed_float16, jit={'on' if jits[-1] else 'off'}",
                     jit=jits[-1], mixed=True, **dict(kw, peak=peak16))
    print_comparison("mixed precision", passes[-1], mixed)
  else:
    _out("\nmixed precision: skipped on CPU (float16 gives no speedup on CPU; "
         "--force_mixed runs it anyway)")
  if FLAGS.pipeline:
    pipeline_check(c, passes[0], FLAGS.repeats)
  _out(f"\nload average at the end: {os.getloadavg()[0]:.2f}; float32 matmul: "
       f"{peak.describe()}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
