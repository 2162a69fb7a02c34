r"""Label images with an exported TargetNet; needs TensorFlow only (no dfka_tf import).

  python -m experiments.predict --model=runs/scenes20-seed0/target_net a.png b.jpg

Prints, per image, the labels whose probability is at least --threshold (best first).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "SavedModel directory written by experiments.run.")
flags.DEFINE_float("threshold", 0.5, "Print labels with probability >= this.")
flags.DEFINE_integer("top", 0, "Also print the top-N labels whatever their probability.")


def _fail(message):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  paths = argv[1:]
  if not FLAGS.model:
    _fail("--model is required: the target_net directory of a run.")
  if not paths:
    _fail("name at least one image file after the flags.")
  if not os.path.isdir(FLAGS.model):
    _fail(f"--model={FLAGS.model} is not a directory; pass <workdir>/target_net.")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    serve = tf.saved_model.load(FLAGS.model).signatures["serve_uint8"]
  except (OSError, ValueError, KeyError) as e:
    _fail(f"{FLAGS.model} is not a dfka_tf SavedModel ({type(e).__name__}); export one with "
          "python -m experiments.run.")
  for path in paths:
    try:
      image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except (tf.errors.OpError, ValueError):
      print(f"{path}: cannot read as an image (jpeg, png, gif, bmp)")
      continue
    out = serve(images=image[None])
    probs = out["probabilities"].numpy()[0]
    names = [n.decode() for n in out["label_names"].numpy()[0]]
    ranked = sorted(zip(probs, names), reverse=True)
    shown = [(p, n) for i, (p, n) in enumerate(ranked) if p >= FLAGS.threshold or i < FLAGS.top]
    text = ", ".join(f"{n} {p:.3f}" for p, n in shown) or f"(no label >= {FLAGS.threshold})"
    print(f"{path}: {text}")


def cli():
  """Console script (dfka-predict): the same as `python -m experiments.predict`."""
  app.run(main)


if __name__ == "__main__":
  cli()
