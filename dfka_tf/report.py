"""Figures a run writes: generated images (Fig. 4) and Step II loss curves."""

import math
import os
from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")  # Headless: runs write PNGs, never open windows.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf


def image_grid(images: np.ndarray, columns: int = 8) -> np.ndarray:
  """Tiles [N, H, W, 3] images in [0, 1] into one [rows*H, columns*W, 3] array."""
  n, h, w, c = images.shape
  rows = math.ceil(n / columns)
  grid = np.ones((rows * h, columns * w, c), np.float32)
  for i, im in enumerate(np.clip(images, 0.0, 1.0)):
    r, col = divmod(i, columns)
    grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = im
  return grid


def save_generated_grid(generator, path: str, *, seed: int = 0, n: int = 16,
                        real: Optional[np.ndarray] = None, title: str = "generated",
                        pool: Optional[np.ndarray] = None):
  """Saves n generated images (last group of G), beside pool and real images if given."""
  z = tf.random.stateless_normal([n, generator.latent_dim], seed=[seed, 7])
  fake = generator(z, training=False)[-1].numpy()
  panels = [(title, fake)]
  if pool is not None:
    panels.append(("DeepInversion pool", pool[:n]))
  if real is not None:
    panels.append(("real test images", real[:n]))
  save_image_panels(panels, path)


def save_image_panels(panels, path: str):
  """Saves one grid per (title, images [n, H, W, 3] in [0, 1]) side by side."""
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 2.4), squeeze=False)
  for ax, (name, ims) in zip(axes[0], panels):
    ax.imshow(image_grid(ims))
    ax.set_title(name)
    ax.axis("off")
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def save_block_curves(curves: Dict[str, List[float]], path: str):
  """Plots L_u^b over the steps of each block of Step II."""
  if not curves:
    return
  fig, ax = plt.subplots(figsize=(5, 3))
  for b in sorted(curves, key=int):
    ax.plot(np.arange(1, len(curves[b]) + 1), curves[b], label=f"block {b}")
  ax.set_xlabel("step")
  ax.set_ylabel("L_u^b (Eq. 17)")
  ax.set_yscale("log")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
