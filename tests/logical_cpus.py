"""Runs a module with the CPU split into N logical devices, as a machine with N devices.

  python tests/logical_cpus.py 2 experiments.run --strategy=mirrored ...

`tf.distribute.MirroredStrategy` then has N replicas on one CPU (test_distribute.py). The
split must happen before TensorFlow starts, hence a process of its own.
"""

import os
import runpy
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top


def main():
  count, module = int(sys.argv[1]), sys.argv[2]
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
  sys.argv = [module] + sys.argv[3:]
  runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
