"""dfka_tf: Data-Free Knowledge Amalgamation via Group-Stack Dual-GAN (Ye et al., CVPR 2020).

Keras 3 on the TensorFlow backend. The library never reads flags; experiments/ does.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

# The Python API (docs/python_api.md). It imports TensorFlow only when called.
from dfka_tf.api import Amalgamation, amalgamate, evaluate  # noqa: E402  pylint: disable=wrong-import-position

__all__ = ["Amalgamation", "amalgamate", "evaluate", "__version__"]
