"""The stages of the TargetNet: Step II block by block (measuring η^{b,m} of Eq. 18), Step III
(regrouping and fine-tuning), and the DAFL baselines: joint training (dafl) and plain
distillation from a trained G (dafl_2stage)."""

from typing import Dict

import keras
import tensorflow as tf

from dfka_tf.errors import ConfigError
from dfka_tf.models.filters import built_block_filters
from dfka_tf.models.regroup import regroup, regroup_sizes
from dfka_tf.models.target import check_target, target_blocknet
from dfka_tf.stages import evaluation
from dfka_tf.stages.base import Parts, Run, Stage, run_stages
from dfka_tf.stages.images import Images, generator_state, generator_trainer, summary_noise
from dfka_tf.stages.teachers import fresh_or_pretrained
from dfka_tf.task import TaskMap
from dfka_tf.train.branch_out import EtaMeter, branch_out_blocks, branch_out_within_budget
from dfka_tf.train.optimizers import step_decay_sgd
from dfka_tf.train.steps import (AdversarialFinetuneTrainer, BlockTrainer, FinetuneTrainer,
                                 JointTrainer)


def bank_summary(run: Run, source):
  """TensorBoard's view of Forge's bank, next to real images (None for other sources)."""
  engine = getattr(source, "engine", None)
  if engine is None:
    return None
  c = run.config
  real = []

  def summarize():
    tf.summary.image("forge/bank", tf.cast(engine.images_uint8(16), tf.float32) / 255.0,
                     max_outputs=16)
    if not real and c.eval.evaluate and (c.eval.data or not c.data.teacher_paths):
      real.append(evaluation.real_images(c))
    if real:
      tf.summary.image("forge/real", real[0], max_outputs=16)
  return summarize


def curve_hook(run: Run, stage: str, model, source):
  """on_step that scores `model` every --curve_every steps (`evaluation.curve_scorer`, set
  on the run by the pipeline) and records (step, synthesis seconds, mAP) in progress.json
  under curves/<stage>; None when the curve is off."""
  every, scorer = run.config.eval.curve_every, getattr(run, "curve_scorer", None)
  if not every or scorer is None:
    return None
  engine = getattr(source, "engine", None)

  def on_step(step, values, saving):
    del values, saving
    if step % every:
      return
    if engine is not None:
      synthesis = float(engine.synthesis_seconds.numpy())
    else:  # Images made before the student: Step I's G, the pool.
      synthesis = sum(run.state["times"].get(s, 0.0) for s in ("generator", "inversion"))
    curves = run.state.setdefault("curves", {})
    curves.setdefault(stage, {})[str(step)] = {"step": step, "synthesis_seconds": synthesis,
                                              "map": scorer(model)}
    run.save_state(curves=curves)
  return on_step


def block_trainer(run: Run, target, b: int, source, teachers, task: TaskMap) -> BlockTrainer:
  """Step II's trainer of block b (1-based), built."""
  c = run.config
  return BlockTrainer(target, b, source, teachers, task, batch_size=c.runtime.batch_size,
                      steps=c.student.block_steps, learning_rate=c.student.lr,
                      weight_decay=c.runtime.weight_decay,
                      lambda_in=(c.student.lambda_in1, c.student.lambda_in2),
                      batchnorm=c.student.target_bn, jit=run.jit,
                      adversary=c.source.forge.block_adv, filter_kind=c.student.filter,
                      feature_weight=c.student.feature_weight).build()


def finetune_trainer(run: Run, target_net, source, teachers, task: TaskMap,
                     generator_trainer=None) -> FinetuneTrainer:
  """Step III's trainer (adversarial with --adversarial_weight > 0 and a generator), built."""
  c = run.config
  settings = dict(batch_size=c.runtime.batch_size, steps=c.student.finetune_steps,
                  learning_rate=c.student.lr * c.student.finetune_lr_scale,
                  weight_decay=c.runtime.weight_decay, jit=run.jit,
                  distill_loss=c.student.distill_loss,
                  distill_temperature=c.student.distill_temperature)
  if c.student.adversarial_weight > 0 and generator_trainer is not None:
    return AdversarialFinetuneTrainer(target_net, source, teachers, task, generator_trainer,
                                      weight=c.student.adversarial_weight, **settings).build()
  return FinetuneTrainer(target_net, source, teachers, task, **settings).build()


def target_blocks(run: Run, teachers, images: Images, task: TaskMap) -> Dict:
  """Stages block1..blockB (Step II); returns the TargetNet, its filters and η^{b,m}."""
  c = run.config
  model = fresh_or_pretrained(run, len(task.labels), "target")
  target = target_blocknet(c, run.template, model, task.labels)
  check_target(c, teachers, target)
  num_blocks = len(target.blocks)
  trainers = [block_trainer(run, target, b, images.source(10 + b), teachers, task)
              for b in range(1, num_blocks + 1)]
  filters = [t.filters for t in trainers]
  eta = {int(k): {int(m): v for m, v in e.items()} for k, e in run.state.get("eta", {}).items()}
  curves = run.state.get("block_curves", {})
  run_stages(run, [_block_stage(run, tr, model, filters, task, eta, curves)
                   for tr in trainers])
  # The final state of the last block (also when every block was already done).
  tf.train.Checkpoint(target=model, filters=filters).restore(
      tf.train.latest_checkpoint(run.wd.path("ckpt", f"block{num_blocks}"))).expect_partial()
  return {"target": target, "model": model, "eta": eta,
          "filters": {t.block: t.filters for t in trainers if t.filters}}


def _block_stage(run: Run, tr: BlockTrainer, model, filters, task: TaskMap, eta, curves
                 ) -> Stage:
  """Block b. Its checkpoint holds the whole TargetNet so far, every filter, and the running
  sums behind η^{b,m}, so a resumed block measures η exactly as an unbroken one."""
  c, b = run.config, tr.block
  steps = c.student.block_steps
  meter = EtaMeter(task.num_teachers, steps)
  curve = []

  def prepare(ckpt):
    latest = ckpt.manager.latest_checkpoint
    if b > 1 and latest is None:  # Start from the end of block b-1.
      tf.train.Checkpoint(target=model, filters=filters).restore(
          tf.train.latest_checkpoint(run.wd.path("ckpt", f"block{b - 1}"))).expect_partial()
      tr.source.carry_over(run.wd.path("ckpt", f"block{b - 1}"))
    # L_u^b per step. Its part up to each checkpoint goes to progress.json with it, so a
    # block resumed from checkpoint step s (named ckpt-s) starts from the first s losses.
    reached = int(latest.rsplit("-", 1)[-1]) if latest else 0
    curve[:] = list(run.state.get("partial_curve", {}).get(str(b), []))[:reached]

  def on_step(step, values, saving):
    curve.append(values["loss"])
    meter.update(step, {m: values.get(f"dual_t{m + 1}", 0.0) for m in range(task.num_teachers)})
    if saving:  # The checkpoint follows: the curve up to it goes to progress.json.
      run.save_state(partial_curve={str(b): list(curve)})

  def finish():
    eta[b] = meter.value(task.active)
    curves[str(b)] = list(curve)
    run.state.pop("partial_curve", None)
    return dict(eta={str(k): {str(m): v for m, v in e.items()} for k, e in eta.items()},
                block_curves=curves)

  state = dict(target=model, filters=filters, optimizer=tr.optimizer, eta_sum=meter.sum,
               eta_count=meter.count, **tr.source.checkpoint_state())
  return Stage(f"block{b}", steps,
               lambda: Parts(tr.step, state, prepare, on_step,
                             summarize=bank_summary(run, tr.source)),
               summary=f"[step II] TargetNet block {b}/{tr.num_blocks}, {steps} steps",
               restore=False, finish=finish)


def branch_points(run: Run, blocks: Dict, teachers, task: TaskMap) -> Dict[int, int]:
  """S_m: Eq. 18 from η^{b,m}, under --target_param_budget where given (checked to fit in
  `check_inputs`, before any work), or --branch_out for every teacher."""
  num_blocks = len(blocks["target"].blocks)
  forced, budget = run.config.student.branch_out, run.config.student.param_budget
  if budget is not None:
    sizes = regroup_sizes(blocks["target"], teachers, blocks["filters"], task)
    return branch_out_within_budget(blocks["eta"], task, sizes, budget)
  if forced is None:
    return branch_out_blocks(blocks["eta"], task)
  if not 1 <= forced <= num_blocks:
    raise ConfigError(f"--branch_out={forced} must be in 1..{num_blocks}.")
  return {m: forced for m in task.active}


def step2_target_net(run: Run, task: TaskMap, num_blocks: int) -> keras.Model:
  """The TargetNet as Step II left it (its own head, no teacher block), fresh from block
  `num_blocks`' checkpoint: Step III fine-tunes layers T_u shares with it, so the TargetNet
  the run holds no longer is."""
  model = fresh_or_pretrained(run, len(task.labels), "target")
  tf.train.Checkpoint(target=model).restore(
      tf.train.latest_checkpoint(run.wd.path("ckpt", f"block{num_blocks}"))).expect_partial()
  return model


def regrouped_before_finetune(run: Run, teachers, task: TaskMap, num_blocks: int,
                              points: Dict[int, int]) -> keras.Model:
  """T_u as Eq. 18–20 regroup it before Step III: the TargetNet and its filters fresh from
  block `num_blocks`' checkpoint, the teachers' blocks copied again (Step III fine-tunes
  layers the run's T_u shares with them)."""
  model = fresh_or_pretrained(run, len(task.labels), "target")
  target = target_blocknet(run.config, run.template, model, task.labels)
  filters = built_block_filters(target, len(teachers), kind=run.config.student.filter)
  status = tf.train.Checkpoint(target=model, filters=filters).restore(
      tf.train.latest_checkpoint(run.wd.path("ckpt", f"block{num_blocks}")))
  status.expect_partial().assert_existing_objects_matched()  # Every filter found.
  return regroup(target, teachers, {b: fs for b, fs in enumerate(filters, start=1) if fs},
                 points, task, name="regrouped")


def regrouped(run: Run, teachers, images: Images, blocks: Dict, task: TaskMap,
              generator_trainer=None) -> keras.Model:
  """Stage "finetune" (Step III): T_u regrouped by Eq. 18–20, then fine-tuned.

  With --adversarial_weight > 0 G keeps training during the fine-tuning (DFAD, beyond the
  paper); G, its filters and its optimizer are then saved in the fine-tuning checkpoint.
  """
  c = run.config
  points = branch_points(run, blocks, teachers, task)
  target_net = regroup(blocks["target"], teachers, blocks["filters"], points, task,
                       branch_bn=c.student.branch_bn,
                       branch_trainable=c.student.finetune_trainable == "all")
  source = images.source(20)
  trainer = finetune_trainer(run, target_net, source, teachers, task, generator_trainer)
  extra = ({} if not isinstance(trainer, AdversarialFinetuneTrainer)
           else generator_state(generator_trainer, prefix="generator"))
  state = dict(target_net=target_net, optimizer=trainer.optimizer,
               **source.checkpoint_state(), **extra)
  shown = {f"teacher{m + 1}": s for m, s in points.items()}
  num_blocks = len(blocks["target"].blocks)

  def prepare(ckpt):  # Forge's bank and generator go on from the end of Step II.
    if ckpt.manager.latest_checkpoint is None:
      source.carry_over(run.wd.path("ckpt", f"block{num_blocks}"))

  run_stages(run, [Stage(
      "finetune", c.student.finetune_steps,
      lambda: Parts(trainer.step, state, prepare,
                    on_step=curve_hook(run, "finetune", target_net, source),
                    summarize=bank_summary(run, source)),
      summary=f"[step III] regrouped T_u, branch-out blocks S_m = {shown}, fine-tuning "
              f"{c.student.finetune_steps} steps",
      finish=lambda: dict(branch_out={str(m + 1): s for m, s in points.items()}))])
  return target_net


def student_budget(run: Run, teachers) -> int:
  """The steps a whole-network student gets: Steps II + III of DFKA together (B ×
  block_steps + finetune_steps), so the Table 1 rows compare methods, not budgets."""
  c = run.config
  return teachers[0].num_blocks * c.student.block_steps + c.student.finetune_steps


def joint(run: Run, teachers, task: TaskMap):
  """Stage "joint", DAFL as its code runs: G and a whole TargetNet trained together.

  G (K = 1, γ = 0) has DAFL's loss weights and Adam (β1 0.9); the student DAFL's SGD with
  step decay and weight decay; both learning rates are DAFL's at batch 1024 scaled to
  --batch_size. Returns (T_u, G's trainer); G, its optimizer and noise stream are in the
  stage checkpoint.
  """
  c = run.config
  j = c.student.joint
  scale = c.runtime.batch_size / 1024
  steps = j.steps if j.steps is not None else student_budget(run, teachers)
  g = generator_trainer(run, teachers, alpha=j.alpha, beta=j.beta,
                        learning_rate=j.generator_lr * scale, beta_1=0.9)
  model = fresh_or_pretrained(run, len(task.labels), "target_net")
  trainer = JointTrainer(g, model, teachers, task, jit=run.jit,
                         optimizer=step_decay_sgd(j.student_lr * scale, steps,
                                                  weight_decay=j.weight_decay)).build()
  state = dict(target_net=model, optimizer=trainer.optimizer,
               **generator_state(g, prefix="generator"))
  z = summary_noise(run, g)
  run_stages(run, [Stage("joint", steps,
                         lambda: Parts(trainer.step, state, summarize=lambda: g.summarize(z)),
                         summary=f"[dafl] G and a TargetNet trained jointly, {steps} steps")])
  return model, g


def distilled(run: Run, teachers, images: Images, task: TaskMap) -> keras.Model:
  """Stage "distill": plain distillation of a whole TargetNet, with the step budget of
  `student_budget`, on the run's images: G that Step I trained and froze (dafl_2stage), or
  with --student=distill those of any image method (Forge's, real unlabeled, noise)."""
  c = run.config
  model = fresh_or_pretrained(run, len(task.labels), "target_net")
  steps = student_budget(run, teachers)
  trainer = FinetuneTrainer(model, images.source(20), teachers, task,
                            batch_size=c.runtime.batch_size, steps=steps,
                            learning_rate=c.student.lr, weight_decay=c.runtime.weight_decay,
                            jit=run.jit, distill_loss=c.student.distill_loss,
                            distill_temperature=c.student.distill_temperature).build()
  state = dict(target_net=model, optimizer=trainer.optimizer,
               **trainer.source.checkpoint_state())
  run_stages(run, [Stage("distill", steps,
                         lambda: Parts(trainer.step, state,
                                       on_step=curve_hook(run, "distill", model,
                                                          trainer.source),
                                       summarize=bank_summary(run, trainer.source)),
                         summary=f"[distill] a whole TargetNet distilled end to end on "
                                 f"{c.source.kind} images, {steps} steps")])
  return model
