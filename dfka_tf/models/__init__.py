"""Every network of a run: ResNets, teachers cut into blocks, G, the filters, the TargetNet,
T_u."""

from dfka_tf.models.blocknet import BlockNet
from dfka_tf.models.blocknet import check_compatible
from dfka_tf.models.blocknet import DEFAULT_BLOCK_OUTPUTS
from dfka_tf.models.blocknet import split_model
from dfka_tf.models.resnet import build_resnet
from dfka_tf.models.resnet import InputNormalization
from dfka_tf.models.resnet import RESNET_SPECS
from dfka_tf.models.teacher_files import load_teacher
from dfka_tf.models.teacher_files import save_teacher
