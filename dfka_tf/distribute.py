"""Data parallelism with `tf.distribute`: the strategy, and what a step needs so that R
replicas give the update one device gives on the same global batch.

How a step runs under a strategy (`train.steps.Step`):

1. In cross-replica context, the step draws every random number of the *global* batch (G's
   noise z, jitter offsets, pool indices) from the stage's one seeded generator, and reads
   the global batch of a dataset from the stage's one iterator. Seeded streams, checkpoints
   and a resumed iterator are thus the same for any number of replicas.
2. `strategy.run` hands every replica these draws; each keeps its own rows (`local_rows`).
3. Each replica computes the loss on its rows. Terms that average over samples use the
   local mean; terms that read statistics of the whole batch (L_ie's label frequencies,
   L_bns's moments, the batch norms of the networks trained in training mode) use the
   statistics of the global batch (`batch_mean`, `batch_moments`, `sync_batchnorm`),
   all-reduced and differentiable.
4. The loss is divided by R before the gradient (`scale_for_replicas`): Keras' optimizers
   sum the replicas' gradients, so the update is that of the global batch's loss.
5. The measurements are averaged over replicas (`run_replicated`).

With one replica every helper is the identity, and under the default strategy steps are
called directly: a run without --strategy computes exactly what it did before.

Only the chief writes the run's outputs (`is_chief`): TensorBoard logs, results, figures,
export. The other workers of a multi-worker run compute the same steps and keep their own
checkpoints and progress in `<workdir>/worker<k>` (`pipeline.worker_config`).
"""

import json
import os
from typing import Callable, Dict, Sequence

import keras
import tensorflow as tf

from dfka_tf.options import STRATEGIES
from dfka_tf.errors import ConfigError


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
  """The strategy --strategy names.

  - auto: mirrored over every GPU when more than one is visible, else the default strategy
    (one device, steps called directly);
  - mirrored: MirroredStrategy over every GPU, or over every logical CPU device where there
    is no GPU (tests split the CPU in two with `tf.config.set_logical_device_configuration`);
  - multi_worker: MultiWorkerMirroredStrategy over the cluster TF_CONFIG describes (every
    worker runs the same command; worker 0, or the chief, writes);
  - one_device: OneDeviceStrategy on the first GPU, else the CPU.

  Create it before any other TensorFlow op: a multi-worker strategy configures the
  runtime's collective ops, which cannot change once it has started.
  """
  if name not in STRATEGIES:
    raise ConfigError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}.")
  if name == "multi_worker":
    if not os.environ.get("TF_CONFIG"):
      raise ConfigError("--strategy=multi_worker needs TF_CONFIG describing the cluster "
                        "(every worker's host:port and this worker's index); set it on every "
                        "worker, or use --strategy=mirrored on one machine.")
    try:
      json.loads(os.environ["TF_CONFIG"])
    except ValueError:
      raise ConfigError("TF_CONFIG is not valid JSON; it must look like {\"cluster\": "
                        "{\"worker\": [\"host1:port\", \"host2:port\"]}, \"task\": "
                        "{\"type\": \"worker\", \"index\": 0}}.") from None
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  if name == "mirrored":
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  if len(gpus) > 1:
    return tf.distribute.MirroredStrategy([d.name for d in gpus])
  return tf.distribute.get_strategy()


def is_default(strategy: tf.distribute.Strategy) -> bool:
  """Whether `strategy` is TensorFlow's default (no strategy entered)."""
  return strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy()


def is_chief(strategy: tf.distribute.Strategy = None) -> bool:
  """Whether this process writes: always, except on the non-chief workers of a cluster."""
  strategy = strategy or tf.distribute.get_strategy()
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_index(strategy: tf.distribute.Strategy = None) -> int:
  """This worker's index in its cluster (0 outside one)."""
  strategy = strategy or tf.distribute.get_strategy()
  resolver = getattr(strategy, "cluster_resolver", None)
  return int(resolver.task_id or 0) if resolver is not None and resolver.task_type else 0


def num_workers(strategy: tf.distribute.Strategy = None) -> int:
  """The processes a strategy spans (1 outside a cluster)."""
  strategy = strategy or tf.distribute.get_strategy()
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return 1
  spec = resolver.cluster_spec()
  return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker"))


def barrier(strategy: tf.distribute.Strategy):
  """Waits until every worker of a cluster reaches this point (nothing outside one): a
  worker that left early would stop sending heartbeats while the chief still evaluates and
  exports, and the cluster would report it as crashed."""
  if num_workers(strategy) > 1:
    any_worker(strategy, False)


def any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
  """Whether `flag` is true on any worker of the cluster (`flag` itself outside one); every
  worker must call it at the same point."""
  if num_workers(strategy) == 1:
    return bool(flag)
  return bool(_worker_sums(strategy, [1.0 if flag else 0.0])[0] > 0)


def same_on_every_worker(strategy: tf.distribute.Strategy, value: float) -> bool:
  """Whether every worker of the cluster holds this same `value` (true outside one); every
  worker must call it at the same point."""
  if num_workers(strategy) == 1:
    return True
  total, squares, count = _worker_sums(strategy, [value, value * value, 1.0])
  return abs(squares / count - (total / count) ** 2) < 1e-9 * max(1.0, squares / count)


def _worker_sums(strategy: tf.distribute.Strategy, values):
  """The sums over the cluster's replicas of `values` (float64), in one all-reduce."""
  reduce = getattr(strategy, "_dfka_worker_sums", None)
  if reduce is None:  # One traced function per strategy, not per call.

    @tf.function
    def reduce(v):
      return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: v + 0.0),
                             axis=None)

    strategy._dfka_worker_sums = reduce  # pylint: disable=protected-access
  # Each worker adds its value once per local replica: divide that back out.
  local = max(1, strategy.num_replicas_in_sync // num_workers(strategy))
  with strategy.scope():
    sums = reduce(tf.constant(values, tf.float64)).numpy()
  return [float(v) / local for v in sums]


def num_replicas() -> int:
  """The replicas a batch is split over here: R inside `strategy.run`, 1 in cross-replica
  context (where a tensor holds the whole batch)."""
  ctx = tf.distribute.get_replica_context()
  return 1 if ctx is None else int(ctx.num_replicas_in_sync)


def check_batch(batch_size: int, strategy: tf.distribute.Strategy = None):
  """Raises ConfigError unless the global batch splits evenly over the replicas."""
  replicas = int((strategy or tf.distribute.get_strategy()).num_replicas_in_sync)
  if batch_size % replicas:
    raise ConfigError(f"--batch_size={batch_size} does not split over {replicas} replicas; "
                      f"use a multiple of {replicas}.")


def local_rows(x):
  """This replica's rows of a global-batch tensor: rows [i b, (i + 1) b), b = N / R."""
  replicas = num_replicas()
  if replicas == 1 or x is None:
    return x
  if x.shape[0] is not None and int(x.shape[0]) % replicas:
    raise ValueError(f"a batch of {int(x.shape[0])} does not split over {replicas} replicas.")
  n = (int(x.shape[0]) if x.shape[0] is not None else tf.shape(x)[0]) // replicas
  start = tf.distribute.get_replica_context().replica_id_in_sync_group * n
  return x[start:start + n]


def scale_for_replicas(loss):
  """The loss each replica differentiates: loss / R (the optimizers sum the gradients)."""
  replicas = num_replicas()
  return loss if replicas == 1 else loss / float(replicas)


def _all_reduce(op: tf.distribute.ReduceOp, value):
  """`value` reduced across replicas (differentiable); itself on one replica."""
  if num_replicas() == 1:
    return value
  return tf.distribute.get_replica_context().all_reduce(op, value)


def batch_mean(x, axis=0):
  """The mean over the *global* batch along `axis` (which includes the batch axis).

  Within one replica it is `tf.reduce_mean`; across R replicas the local means are
  all-reduced (shards are equal in size), and the gradient flows to every replica's rows.
  """
  return _all_reduce(tf.distribute.ReduceOp.MEAN, tf.reduce_mean(x, axis=axis))


def batch_moments(x, axes: Sequence[int]):
  """(mean, variance) over `axes` of the global batch; `tf.nn.moments` on one replica."""
  if num_replicas() == 1:
    return tf.nn.moments(x, axes=axes)
  mean = batch_mean(x, axis=axes)
  variance = batch_mean(tf.square(x - tf.stop_gradient(mean)), axis=axes)
  # d var / d mean is zero at the mean, so stopping it there changes no gradient.
  return mean, variance


def batch_std(x, axis=0):
  """The standard deviation over the global batch along `axis`; `tf.math.reduce_std` on one
  replica."""
  if num_replicas() == 1:
    return tf.math.reduce_std(x, axis=axis)
  return tf.sqrt(batch_moments(x, [axis] if isinstance(axis, int) else axis)[1])


def batch_sum(x, axis=0):
  """The sum over the global batch along `axis`."""
  return _all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(x, axis=axis))


def sync_batchnorm(*models, synchronized: bool = True):
  """Makes every batch norm in `models` normalise by the global batch's statistics.

  Only where the strategy has several replicas (Keras' `synchronized`, TensorFlow backend);
  with one the layers are left as they are, so single-device numbers do not change.
  `synchronized=False` puts the plain layers back (before a model's config is saved).
  """
  if synchronized and tf.distribute.get_strategy().num_replicas_in_sync == 1:
    return
  for model in models:
    if model is None:
      continue
    for layer in model._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
      if isinstance(layer, keras.layers.BatchNormalization):
        layer.synchronized = synchronized


def compile_step(traced: Callable, replica: Callable, *, jit: bool,
                 strategy: tf.distribute.Strategy, **kwargs):
  """(the step's tf.function, the function each replica runs) with XLA where `jit`.

  On one device the whole step is compiled. Under a strategy XLA compiles each replica's
  function instead, as Keras does: a compiled function cannot contain `strategy.run`.
  """
  if is_default(strategy):
    return tf.function(traced, jit_compile=bool(jit), **kwargs), replica
  return (tf.function(traced, **kwargs),
          tf.function(replica, jit_compile=True) if jit else replica)


def run_replicated(strategy: tf.distribute.Strategy, fn: Callable[..., Dict], *args
                   ) -> Dict[str, tf.Tensor]:
  """`fn(*args)` on every replica; its dict of scalars averaged over the replicas."""
  out = strategy.run(fn, args=args)
  return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
          for k, v in out.items()}
