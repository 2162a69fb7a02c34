r"""Data-free knowledge amalgamation end to end: teachers -> Steps I–III -> eval -> export.

  python -m experiments.run                                   # embedded scenes20, 2 teachers
  python -m experiments.run --dataset=voc2007 --teachers=2    # paper scale (GPU + VOC data)
  python -m experiments.run --teacher=a.keras --teacher=b.keras --eval_data=test.npz
  python -m experiments.run --set=generator.bns.weight=20 --set=generator.alpha=0

Every option of `dfka_tf.config` is a flag of its short name (--helpfull lists them with
the presets' values) and a --set key of its dotted path. Writes <workdir>/results.json,
TensorBoard logs, generated.png, block_losses.png and the SavedModel <workdir>/target_net.
User errors print one line and exit with status 2.
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging as absl_logging

from dfka_tf import config as config_lib  # pylint: disable=g-import-not-at-top  (no TensorFlow)
from dfka_tf import options  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "scenes20", ["scenes20", "voc2007", "coco2014"],
                  "Dataset the teachers come from and T_u is evaluated on.")
flags.DEFINE_enum("method", "dfka", list(options.METHODS),
                  "dfka (this method) or a Table 1 baseline: teacher (the teachers "
                  "themselves), ka / similar / diff (block-wise training on unlabeled scenes20 / "
                  "scenes20_similar / scenes20_different images), noise (Gaussian noise "
                  "images), dafl (DAFL: one generator and the student trained jointly), dafl_2stage "
                  "(one generator trained, then plain distillation from it). The experiment "
                  "suites (experiments/table1.py, ...) run them side by side.")
flags.DEFINE_list("preset", None, "Named presets applied after the dataset's, in order "
                  f"({', '.join(sorted(config_lib.PRESETS))}; e.g. quick: a smoke run of a "
                  "few steps per stage; paper_weights: S-Table 1's loss weights as printed).")
flags.DEFINE_multi_string("set", [], "Override any option by its dotted path, e.g. "
                          "--set=generator.bns.weight=20 (repeatable; docs/configuration.md).")
flags.DEFINE_string("workdir", None, "Run directory (default runs/<dataset>-seed<seed>).")
flags.DEFINE_enum("jit", "auto", ["auto", "true", "false"],
                  "XLA: auto = on with a GPU, off on CPU (slower there).")
flags.DEFINE_bool("resume", False, "Continue the run in --workdir from its checkpoints.")
flags.DEFINE_bool("overwrite", False, "Discard whatever --workdir holds and start over.")
flags.DEFINE_bool("quiet", False, "No progress bars.")


def define_option_flags():
  """One flag per config option, named by its short name; None = the preset's value."""
  presets = {n: config_lib.preset_values(n) for n in ("scenes20", "voc2007", "quick")}
  for f in options.FIELDS:
    kind = f.meta["flag"]
    if kind == "none" or f.name in FLAGS:
      continue
    shown = [f"{n} {v[f.name]!r}" for n, v in presets.items() if f.name in v]
    text = f"{f.help} [{f.path}; default {f.default!r}" + (
        f"; presets: {', '.join(shown)}]" if shown else "]")
    typ = options.base_type(f)
    if kind == "multi":
      flags.DEFINE_multi_string(f.name, [], text)
    elif kind == "list":
      flags.DEFINE_list(f.name, None, text)
    elif f.meta["choices"]:
      flags.DEFINE_enum(f.name, None, list(f.meta["choices"]), text)
    elif typ is bool:
      flags.DEFINE_bool(f.name, None, text)
    elif typ is int:
      flags.DEFINE_integer(f.name, None, text)
    elif typ is float:
      flags.DEFINE_float(f.name, None, text)
    else:
      flags.DEFINE_string(f.name, None, text)


define_option_flags()


def config_from_flags() -> config_lib.RunConfig:
  """The RunConfig: the dataset's preset, then --preset, the flags the user set, then --set
  (`dfka_tf.api.config_for`, which `dfka_tf.amalgamate` uses too)."""
  from dfka_tf import api  # pylint: disable=g-import-not-at-top
  f = FLAGS
  overrides = {}
  for field in options.FIELDS:
    if field.meta["flag"] != "none" and FLAGS[field.name].present:
      overrides[field.path] = getattr(f, field.name)
  overrides["runtime.jit"] = None if f.jit == "auto" else f.jit == "true"
  overrides.update(config_lib.parse_assignments(f.set))
  overrides.pop(options.BY_NAME["teacher"].path, None)  # Given below, as teacher_paths.
  return api.config_for(dataset=f.dataset, method=f.method, preset=f.preset,
                        teacher_paths=f.teacher or (), workdir=f.workdir,
                        overrides=overrides)


def summary(results) -> str:
  lines = []
  if "teacher_map" in results:
    teachers = results["teacher_map"]

    def score(key):
      share = 100 * results[key] / max(teachers, 1e-12)
      return f"{100 * results[key]:.1f} ({share:.1f}% of the teachers')"
    lines.append(f"teacher mAP on the {len(results['labels'])} customized labels: "
                 f"{100 * teachers:.1f}")
    if "regrouped_map" in results:
      lines.append(f"T_u before Step III (regrouped):          {score('regrouped_map')}")
      lines.append(f"T_u after Step III (the exported model):  {score('target_map')}")
    else:
      lines.append(f"T_u (the exported model):                 {score('target_map')}")
    if "targetnet_map" in results:
      lines.append(f"TargetNet alone after Step II (no teacher block): "
                   f"{100 * results['targetnet_map']:.1f}")
  p = results["params"]
  share = (f" ({p['target_over_teachers']:.2f} of the teachers')"
           if "target_over_teachers" in p else "")
  lines.append(f"parameters: T_u {p['target_net']:,}{share} vs teachers {p['teachers_total']:,} "
               f"({' + '.join(f'{n:,}' for n in p['teachers'])})")
  lines.append(f"branch-out blocks S_m: {results.get('branch_out')}")
  times = ", ".join(f"{k} {v:.0f}s" + (" (cached)" if k == "pretrain" and
                                        results.get("pretrain_cached") else "")
                    for k, v in results["stage_times"].items())
  lines.append(f"stage times: {times}; total {results['total_time']:.0f}s")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag.")
  if not FLAGS["verbosity"].present:  # TF logs every checkpoint and export line at INFO.
    absl_logging.set_verbosity(absl_logging.WARNING)
  from dfka_tf import api  # pylint: disable=g-import-not-at-top
  from dfka_tf.errors import DfkaError, PreemptedError  # pylint: disable=g-import-not-at-top
  try:
    config = config_from_flags()
    results = api.run_config(config, progress=not FLAGS.quiet, resume=FLAGS.resume,
                             overwrite=FLAGS.overwrite).results
  except PreemptedError as e:  # Not a user error: the running stage is checkpointed.
    print(f"stopped: {e}", file=sys.stderr)
    sys.exit(128 + signal.SIGTERM)
  except DfkaError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if not results:  # A non-chief worker of --strategy=multi_worker: the chief reports.
    return
  print(summary(results))
  exported = (f"; SavedModel: {os.path.join(config.workdir, 'target_net')}"
              if config.eval.export else "")
  print(f"results: {os.path.join(config.workdir, 'results.json')}{exported}")


def cli():
  """Console script (dfka-run): the same as `python -m experiments.run`."""
  app.run(main)


if __name__ == "__main__":
  cli()
