"""Data: the embedded scenes20 datasets (TFDS builders), VOC 2007 and COCO 2014 pipelines."""

from dfka_tf.data.labels import (COCO_LABELS, DATASETS, SCENES20_LABELS, VOC_LABELS,
                                 label_names, resolve_labels, teacher_label_split)
from dfka_tf.data.loaders import (check_prepared, load, load_coco_json, num_examples,
                                  split_names, to_unit_range)
