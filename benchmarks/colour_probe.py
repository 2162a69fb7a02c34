"""The colour probe on the embedded benchmarks: how far colour alone gets.

    python -m benchmarks.colour_probe [--train=6000 --test=2000]

Prints, for scenes20 and its colour-coded control scenes20_colour, the test mAP of a
per-label logistic regression on 8×4×4 HSV histograms (`dfka_tf.data.probe`) and the base
rate. Needs scikit-learn (requirements-test.txt).
"""

import time

from absl import app, flags

from dfka_tf.data import builders, probe, render

flags.DEFINE_integer("train", builders.SPLITS["train"][1], "Train examples the probe fits.")
flags.DEFINE_integer("test", builders.SPLITS["test"][1], "Test examples it is scored on.")
FLAGS = flags.FLAGS


def splits(style, num_train: int, num_test: int):
  """The first examples of scenes20's train and test splits, as its TFDS builder draws them."""
  out = []
  for name, count in (("train", num_train), ("test", num_test)):
    stream = builders.SPLITS[name][0]
    out.extend(render.generate("main", range(count), size=32, seed=builders.SEED,
                               stream=stream, style=style))
  return out


def main(argv):
  del argv
  print(f"{'dataset':<16} {'probe mAP':>9} {'base rate':>9} {'gap':>6}")
  for name, style in (("scenes20", render.DEFAULT_STYLE),
                      ("scenes20_colour", render.COLOUR_STYLE)):
    start = time.time()
    result = probe.colour_probe(*splits(style, FLAGS.train, FLAGS.test))
    print(f"{name:<16} {100 * result['map']:9.1f} {100 * result['base_rate']:9.1f} "
          f"{100 * (result['map'] - result['base_rate']):6.1f}   ({time.time() - start:.0f} s)")


if __name__ == "__main__":
  app.run(main)
