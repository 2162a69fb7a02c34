"""dfka_tf: Data-Free Knowledge Amalgamation via Group-Stack Dual-GAN (Ye et al., CVPR 2020).

Keras 3 on the TensorFlow backend. The library never reads flags; experiments/ does.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
