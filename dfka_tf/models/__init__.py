"""Teacher and backbone models: spec-table ResNets and networks split into blocks."""

from dfka_tf.models.blocknet import BlockNet
from dfka_tf.models.blocknet import check_compatible
from dfka_tf.models.blocknet import DEFAULT_BLOCK_OUTPUTS
from dfka_tf.models.blocknet import load_teacher
from dfka_tf.models.blocknet import save_teacher
from dfka_tf.models.blocknet import split_model
from dfka_tf.models.resnet import build_resnet
from dfka_tf.models.resnet import InputNormalization
from dfka_tf.models.resnet import RESNET_SPECS
