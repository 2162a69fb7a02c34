"""Teacher training: the paper's optimisation (§5.1) on a multi-label tf.data pipeline."""

from typing import Dict

import keras
import tensorflow as tf

from dfka_tf import distribute
from dfka_tf.train.optimizers import poly_sgd


def masked_bce(probs, labels, ignore):
  """Binary cross-entropy averaged over the labels that count (ignore = 0).

  Inside `strategy.run` the average is over the labels that count in the global batch,
  scaled so that the mean over replicas is that average (`dfka_tf.distribute`).
  """
  y = tf.clip_by_value(tf.cast(probs, tf.float32), 1e-7, 1.0 - 1e-7)
  per = -(labels * tf.math.log(y) + (1.0 - labels) * tf.math.log(1.0 - y))
  weight = 1.0 - ignore
  loss = tf.reduce_sum(per * weight) / tf.maximum(distribute.batch_sum(weight, axis=None), 1.0)
  replicas = distribute.num_replicas()
  return loss if replicas == 1 else loss * float(replicas)


class TeacherTrainer:
  """One teacher: SGD momentum 0.9, poly LR (power 0.9), weight decay, masked BCE.

  `step(batch)` takes one global batch; under a strategy of several replicas each replica
  trains on its rows of it (`dfka_tf.distribute`), so the data iterator, and its resume,
  do not depend on the number of replicas.

  Args:
    model: a keras.Model image -> probabilities over the teacher's labels.
    label_columns: the dataset's label columns this teacher learns (its Y_m).
  """

  def __init__(self, model: keras.Model, label_columns, *, steps: int, learning_rate: float,
               weight_decay: float = 5e-3, jit: bool = False):
    self.model = model
    self.columns = tf.constant(list(label_columns), tf.int32)
    self.optimizer = poly_sgd(learning_rate, steps, weight_decay=weight_decay)
    self.trace_count = 0
    self.strategy = tf.distribute.get_strategy()
    distribute.sync_batchnorm(model)
    self.step, self._replica = distribute.compile_step(
        self._traced_step, self._replica_step, jit=jit, strategy=self.strategy,
        reduce_retracing=True)

  def _traced_step(self, batch) -> Dict[str, tf.Tensor]:
    self.trace_count += 1
    if distribute.is_default(self.strategy):
      return self._step(batch)
    return distribute.run_replicated(self.strategy, self._replica, batch)

  def _replica_step(self, batch):
    return self._step(tf.nest.map_structure(distribute.local_rows, batch))

  def _step(self, batch) -> Dict[str, tf.Tensor]:
    labels = tf.gather(batch["labels"], self.columns, axis=1)
    ignore = tf.gather(batch["ignore"], self.columns, axis=1)
    with tf.GradientTape() as tape:
      probs = self.model(batch["image"], training=True)
      probs = probs["probs"] if isinstance(probs, dict) else probs
      loss = masked_bce(probs, labels, ignore)
      scaled = self.optimizer.scale_loss(distribute.scale_for_replicas(loss))
    variables = self.model.trainable_variables
    self.optimizer.apply(tape.gradient(scaled, variables), variables)
    return {"loss": loss}
