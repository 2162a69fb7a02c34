"""One run of data-free knowledge amalgamation: the plan of stages a config asks for.

[pretrain: the backbone teachers and TargetNet start from] -> teachers (train or load) ->
Step I (generator) -> [DeepInversion pool] -> Step II (TargetNet blocks) -> Step III
(regroup + fine-tune) -> evaluation on the real test split -> SavedModel export. DAFL
(--method=dafl) replaces Steps I–III with one joint stage. Which of them run follows from
the config's sections (`generator.enabled`, `source.kind`, `student.mode`), set once from
--method.

Each stage is resumable (`stages.base.run_stages`); the workdir layout is described there.
"""

import os
import time
from typing import Dict, NamedTuple

import keras
import tensorflow as tf

from dfka_tf import distribute
from dfka_tf.config import RunConfig
from dfka_tf.models.regroup import teacher_ensemble
from dfka_tf.stages import evaluation, images, lock, student
from dfka_tf.stages import teachers as teacher_stages
from dfka_tf.stages.base import Run, prepare_workdir
from dfka_tf.train import loop


def worker_config(config: RunConfig, strategy: tf.distribute.Strategy) -> RunConfig:
  """The config a process runs: the chief's as given; a non-chief worker's with its own
  workdir `<workdir>/worker<k>`, for its checkpoints, teachers and progress.json only (it
  writes no logs, results or export): the chief's files are never written twice, and every
  worker resumes from its own checkpoints."""
  if distribute.is_chief(strategy):
    return config
  k = distribute.worker_index(strategy)
  return config.replace(workdir=os.path.join(config.workdir, f"worker{k}"))


def start(config: RunConfig, *, progress: bool = True, resume: bool = False,
          overwrite: bool = False):
  """Checks the inputs, prepares the workdir and seeds; returns (Run, Inputs).

  Every check that can fail fast runs before the workdir is touched. Call it inside the
  run's `strategy.scope()`.
  """
  config.validate()
  distribute.check_batch(config.runtime.batch_size)
  inputs = teacher_stages.check_inputs(config)
  run = Run(inputs.config, prepare_workdir(inputs.config, resume=resume, overwrite=overwrite),
            progress=progress and distribute.is_chief())
  run.template = inputs.loaded[0] if inputs.loaded else None
  keras.utils.set_random_seed(run.config.seed)
  if run.config.runtime.mixed_precision:
    keras.mixed_precision.set_global_policy("mixed_float16")
  return run, inputs


def train(run: Run, inputs) -> Dict:
  """The plan: every stage the config asks for, in order. Returns what they made."""
  c, task = run.config, inputs.task
  out = {"teachers": teacher_stages.teachers(run, inputs), "generator_trainer": None,
         "blocks": {"eta": {}}}
  if c.student.mode == "ensemble":
    out["target_net"] = teacher_ensemble(out["teachers"], task)
    return out
  if c.student.mode == "joint":
    out["target_net"], trainer = student.joint(run, out["teachers"], task)
    out["generator_trainer"] = trainer
    out["images"] = images.Images(run, out["teachers"], trainer.generator)
    return out
  run.curve_scorer = evaluation.curve_scorer(run, task, inputs.dataset_labels)
  out["generator_trainer"] = trainer = images.generator(run, out["teachers"])
  imgs = images.Images(run, out["teachers"], trainer.generator if trainer else None, task)
  out["images"] = imgs
  if c.student.mode == "distill":
    out["target_net"] = student.distilled(run, out["teachers"], imgs, task)
  else:
    out["blocks"] = student.target_blocks(run, out["teachers"], imgs, task)
    out["target_net"] = student.regrouped(run, out["teachers"], imgs, out["blocks"], task,
                                          trainer)
  return out


def results(run: Run, inputs, made: Dict, wall_start: float) -> Dict:
  """results.json: scores, parameter counts, η, S_m, times; figures and export on the way."""
  from dfka_tf import report  # pylint: disable=g-import-not-at-top
  c, task = run.config, inputs.task
  teachers, target_net = made["teachers"], made["target_net"]
  trainer = made["generator_trainer"]
  generator = trainer.generator if trainer is not None else None
  # Your own teachers come with no dataset: they are scored only on --eval_data.
  scored = c.eval.evaluate and bool(c.eval.data or not c.data.teacher_paths)
  data = evaluation.eval_data(c, task.labels) if scored and c.eval.data else None  # Read once.
  teacher_params = [int(t.num_params()) for t in teachers]
  target_params = int(target_net.count_params())
  out = {
      "config": c.to_dict(), "method": c.method, "labels": list(task.labels),
      "teacher_labels": task.teacher_labels,
      "eta": {str(b): {f"teacher{m + 1}": v for m, v in e.items()}
              for b, e in made["blocks"]["eta"].items()},
      "branch_out": run.state.get("branch_out"),
      "params": {
          "teachers": teacher_params,
          "teachers_total": sum(teacher_params),
          "target_net": target_params,
          "target_over_teachers": target_params / max(sum(teacher_params), 1),
          "generator": int(generator.count_params()) if generator is not None else 0,
      },
      "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
      "jit": run.jit,
  }
  if generator is not None:
    from dfka_tf.train.inversion import pool_grid  # pylint: disable=g-import-not-at-top
    pool = made["images"].pool
    report.save_generated_grid(
        generator, run.wd.path("generated.png"), seed=c.seed,
        real=evaluation.real_images(c, data=data) if scored else None,
        pool=pool_grid(pool.numpy()) if pool is not None else None)
  forge = made.get("images").forge if made.get("images") is not None else None
  if forge is not None:
    out["forge"] = forge.summary()
    bank = forge.images_uint8().numpy().astype("float32") / 255.0
    real = evaluation.real_images(c, data=data) if scored else None
    report.save_image_panels([("Forge bank", bank)] + (
        [("real test images", real[:len(bank)])] if real is not None else []),
        run.wd.path("generated.png"))
  report.save_block_curves(run.state.get("block_curves", {}), run.wd.path("block_losses.png"))
  if scored:
    others, branches = {}, []
    if c.student.mode == "blockwise":
      # Where S_m < B, T_u runs the teachers' own later blocks (copies): the TargetNet alone
      # shows what Steps II–III taught it.
      num_blocks = len(made["blocks"]["target"].blocks)
      alone = student.step2_target_net(run, task, num_blocks)
      others["targetnet"] = tf.function(lambda x: alone(x, training=False))
      # T_u before Step III: what Steps I–II and the regrouping give, before fine-tuning.
      points = {int(k) - 1: v for k, v in run.state["branch_out"].items()}
      before = student.regrouped_before_finetune(run, teachers, task, num_blocks, points)
      others["regrouped"] = tf.function(lambda x: before(x, training=False))
      # The same at every S_m = b: how far down the TargetNet Step II's fit carries to real
      # images (b = B is the TargetNet alone before Step III, as Step II left it).
      branches = list(range(1, num_blocks))
      for b in branches:
        at_b = student.regrouped_before_finetune(run, teachers, task, num_blocks,
                                                 {m: b for m in task.active})
        others[f"branch{b}"] = tf.function(lambda x, net=at_b: net(x, training=False))
    out.update(evaluation.evaluate(run, teachers, target_net, task, inputs.dataset_labels,
                                   others, data=data))
    if branches:  # Kept as one {b: mAP}, not as the per-label fields of each.
      out["regrouped_map_by_branch_out"] = {
          str(b): out.pop(f"branch{b}_map") for b in branches}
      out["regrouped_map_by_branch_out"][str(num_blocks)] = out["targetnet_map"]
      for b in branches:
        for field in ("ap", "map_voc07", "top3"):
          out.pop(f"branch{b}_{field}", None)
    if c.student.mode in ("distill", "joint"):  # T_u is one whole TargetNet: the same.
      out.update({f"targetnet_{k}": out[f"target_{k}"] for k in ("map", "ap", "map_voc07")})
    evaluation.log_results(run, out)
  if c.eval.export:
    evaluation.export(run, target_net, task)
    if c.eval.export_tflite:
      out["tflite"] = evaluation.export_tflite(run, target_net, made.get("images"), task,
                                               inputs.dataset_labels, scored, data=data)
      if scored:
        out["tflite"]["saved_model"]["map"] = out["target_map"]
  if run.state.get("curves"):  # --curve_every: mAP on the first images as training went.
    out["curves"] = {stage: [points[k] for k in sorted(points, key=int)]
                     for stage, points in run.state["curves"].items()}
  out["stage_times"] = dict(run.state["times"])
  if run.state.get("pretrain_cached"):  # Stage "pretrain" took 0 s: its backbone was cached.
    out["pretrain_cached"] = run.state["pretrain_cached"]
  out["total_time"] = float(sum(run.state["times"].values()))
  out["wall_time_this_process"] = time.time() - wall_start
  run.save_state()
  run.wd.write_json("results.json", out)
  return out


class Finished(NamedTuple):
  """What a run leaves in memory: results.json's content, the Run (config, workdir, state),
  its checked inputs (teachers' labels, task) and what the stages made (teachers, T_u,
  images)."""
  results: Dict
  run: Run
  inputs: object
  made: Dict


def execute(config: RunConfig, *, progress: bool = True, resume: bool = False,
            overwrite: bool = False) -> Finished:
  """Runs every stage of `config`: `run`, keeping the models in memory (`dfka_tf.amalgamate`).

  Under --strategy=multi_worker every worker runs this; the chief's results and files are
  the run's, the others' results are {} (`worker_config`).
  """
  t0 = time.time()
  strategy = distribute.make_strategy(config.runtime.strategy)  # Before any other TF op.
  config = worker_config(config, strategy)
  with strategy.scope():
    state, inputs = start(config, progress=progress, resume=resume, overwrite=overwrite)
  previous = loop.handle_preemption()
  try:
    with strategy.scope():
      made = train(state, inputs)
    # Outside the scope: what evaluation builds (the TargetNet alone) holds plain variables,
    # which a multi-worker strategy would otherwise broadcast from worker to worker.
    try:
      out = results(state, inputs, made, t0) if state.chief else {}
      return Finished(out, state, inputs, made)
    finally:
      distribute.barrier(strategy)
  finally:
    loop.restore_sigterm(previous)
    lock.release(state.config.workdir)


def run(config: RunConfig, *, progress: bool = True, resume: bool = False,
        overwrite: bool = False) -> Dict:
  """Runs every stage of `config`; returns (and writes) results.json's content ({} on a
  non-chief worker of --strategy=multi_worker)."""
  return execute(config, progress=progress, resume=resume, overwrite=overwrite).results
