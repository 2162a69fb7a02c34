r"""Two teachers of an architecture dfka_tf does not build, and labelled data to score on:
the inputs of the bring-your-own worked example (docs/bring_your_own_teachers.md).

  python -m experiments.byo_teachers --out=my_teachers                   # plain ResNets
  python -m experiments.byo_teachers --family=keras_cv --out=my_teachers

Trains each teacher from fresh weights with plain `model.fit` (SGD, momentum 0.9, cosine
learning rate from 0.1) on scenes20's train split (teacher a: labels 0–9, teacher b: labels
10–19), as a user would train any multi-label Keras model, prints its mAP on the validation
split, and writes:

  <out>/a.keras, <out>/b.keras (+ .labels.json)   the teachers (Keras 3 files)
  <out>/validation.npz, <out>/test.npz            scenes20's validation and test splits as
                                                  x (uint8 images), y (multi-hot), labels

Families: plain (a residual network of 3×3 convolutions, stage widths 24/40/56/72, one
residual unit per stage, its stage outputs named block1_out..block4_out) and keras_cv (a
keras-cv ResNetBackbone, stage widths 16/32/48/64, one bottleneck block per stage, in an
ImageClassifier). Neither is a preset of dfka_tf.models.resnet. keras-cv's stem divides the
image by 4, which leaves 8×8 maps of a 32-px scene: trained from fresh weights such a
teacher reached 19.5 validation mAP on labels 0–9 after 3000 steps, against 73.7 for the
plain network after 1500 (runtime: about 150 s per plain teacher on 2 CPU cores).
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_enum("family", "plain", ["plain", "keras_cv"], "The teachers' architecture.")
flags.DEFINE_string("out", "my_teachers", "Folder to write the teachers and the data to.")
flags.DEFINE_integer("steps", 1500, "Training steps per teacher (batch 64).")
flags.DEFINE_integer("seed", 0, "Seed of initialisation and data order.")


def keras_cv_classifier(num_labels, name):
  import keras_cv  # pylint: disable=g-import-not-at-top
  backbone = keras_cv.models.ResNetBackbone(
      stackwise_filters=[16, 32, 48, 64], stackwise_blocks=[1, 1, 1, 1],
      stackwise_strides=[1, 2, 2, 2], include_rescaling=False, input_shape=(32, 32, 3))
  return keras_cv.models.ImageClassifier(backbone=backbone, num_classes=num_labels,
                                         activation="sigmoid", name=name)


def plain_classifier(num_labels, name, widths=(24, 40, 56, 72)):
  import keras  # pylint: disable=g-import-not-at-top
  images = keras.Input((32, 32, 3), name="pixels")
  x = keras.layers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="stem")(images)
  x = keras.layers.BatchNormalization(name="stem_bn")(x)
  x = keras.layers.Activation("relu", name="stem_relu")(x)
  for s, width in enumerate(widths):
    stride = 1 if s == 0 else 2
    shortcut = x
    if stride != 1 or x.shape[-1] != width:
      shortcut = keras.layers.Conv2D(width, 1, strides=stride, use_bias=False,
                                     name=f"s{s}_proj")(x)
      shortcut = keras.layers.BatchNormalization(name=f"s{s}_proj_bn")(shortcut)
    y = keras.layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False,
                            name=f"s{s}_a")(x)
    y = keras.layers.BatchNormalization(name=f"s{s}_a_bn")(y)
    y = keras.layers.Activation("relu", name=f"s{s}_a_relu")(y)
    y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"s{s}_b")(y)
    y = keras.layers.BatchNormalization(name=f"s{s}_b_bn")(y)
    x = keras.layers.Add(name=f"s{s}_add")([shortcut, y])
    x = keras.layers.Activation("relu", name=f"block{s + 1}_out")(x)
  x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  out = keras.layers.Dense(num_labels, activation="sigmoid", name="scores")(x)
  return keras.Model(images, out, name=name)


def write_npz(path, split):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dfka_tf import data  # pylint: disable=g-import-not-at-top
  xs, ys = [], []
  for batch in data.load("scenes20", split, image_size=32, batch_size=500):
    xs.append((batch["image"].numpy() * 255).round().astype(np.uint8))
    ys.append(batch["labels"].numpy())
  np.savez_compressed(path, x=np.concatenate(xs), y=np.concatenate(ys),
                      labels=np.array(data.label_names("scenes20")))


def main(argv):
  del argv
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from dfka_tf import data  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(FLAGS.seed)
  names = data.label_names("scenes20")
  os.makedirs(FLAGS.out, exist_ok=True)
  build = keras_cv_classifier if FLAGS.family == "keras_cv" else plain_classifier
  from dfka_tf.eval import evaluate  # pylint: disable=g-import-not-at-top
  validation = data.load("scenes20", "validation", image_size=32, batch_size=250)
  train = data.load("scenes20", "train", image_size=32, batch_size=64, shuffle=True,
                    seed=FLAGS.seed, augment=True, drop_remainder=True).repeat()
  for name, cols in (("a", list(range(10))), ("b", list(range(10, 20)))):
    model = build(len(cols), name)
    schedule = keras.optimizers.schedules.CosineDecay(0.1, FLAGS.steps)
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9), "binary_crossentropy")
    model.fit(train.map(lambda ex, c=cols: (ex["image"], tf.gather(ex["labels"], c, axis=1))),
              steps_per_epoch=FLAGS.steps, epochs=1, verbose=2)
    scores = evaluate(lambda x, m=model: m(x, training=False), validation, label_indices=cols,
                      progress=False)
    print(f"teacher {name}: validation mAP {100 * scores['map']:.1f} on {len(cols)} labels")
    path = os.path.join(FLAGS.out, f"{name}.keras")
    model.save(path)
    with open(path + ".labels.json", "w") as f:
      json.dump({"labels": [names[i] for i in cols]}, f)
  for split in ("validation", "test"):
    write_npz(os.path.join(FLAGS.out, f"{split}.npz"), split)
  print(f"teachers: {FLAGS.out}/a.keras, {FLAGS.out}/b.keras; data: {FLAGS.out}/"
        "validation.npz, test.npz")


if __name__ == "__main__":
  app.run(main)
