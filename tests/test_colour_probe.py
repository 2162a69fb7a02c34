"""The benchmark measures shape, not colour: the colour probe of `dfka_tf.data.probe`."""

import numpy as np
import pytest

from benchmarks.colour_probe import splits
from dfka_tf.data import probe, render

pytest.importorskip("sklearn")


def test_hsv_histogram_on_hand_made_pixels():
  # Pure red, green, blue and mid grey; 8x4x4 bins, index (h * 4 + s) * 4 + v.
  pixels = np.array([[[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [128, 128, 128]]]], np.uint8)
  hist = probe.hsv_histogram(pixels)
  assert hist.shape == (1, 128) and np.isclose(hist.sum(), 1.0)
  expected = {(0 * 4 + 3) * 4 + 3: 0.25,   # red: hue 0, saturation 1, value 1
              (2 * 4 + 3) * 4 + 3: 0.25,   # green: hue 1/3 -> bin 2
              (5 * 4 + 3) * 4 + 3: 0.25,   # blue: hue 2/3 -> bin 5
              (0 * 4 + 0) * 4 + 2: 0.25}   # grey: saturation 0, value 0.5 -> bin 2
  nonzero = np.flatnonzero(hist[0])
  assert dict(zip(nonzero.tolist(), hist[0][nonzero].tolist())) == expected


def test_colour_alone_stays_near_the_base_rate_on_scenes20():
  # The first 3000 / 1000 examples of scenes20's train / test splits; the whole splits
  # (python -m benchmarks.colour_probe) score alike (docs/results.md, "The benchmark").
  result = probe.colour_probe(*splits(render.DEFAULT_STYLE, 3000, 1000))
  assert result["map"] - result["base_rate"] < 0.10, result


def test_the_probe_finds_the_colour_shortcut_of_scenes20_colour():
  # The same scenes with each class in its typical hue: the probe must be able to fail.
  result = probe.colour_probe(*splits(render.COLOUR_STYLE, 3000, 1000))
  assert result["map"] - result["base_rate"] > 0.25, result
