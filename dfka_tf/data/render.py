"""Numpy renderer of the embedded scenes20 datasets.

A scene is 1 to 3 shapes (distinct classes) drawn over a cluttered background: a two-colour
gradient, low-frequency colour noise, thin distractor strokes under the objects, sometimes
a stroke over them, and pixel noise on top. Shapes are signed distance functions in a
local frame of radius ~1, so one code path draws them antialiased at any size.

Every random number of example `index` comes from a numpy Generator seeded with
`(seed, stream, index)`; an example does not depend on which other examples are drawn or
in what order. Sampling is per example (cheap scalars); drawing is vectorised over a chunk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from dfka_tf.data import labels as labels_lib

SdfFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

MAX_OBJECTS = 3


# --------------------------------------------------------------------------------------
# Signed distance primitives, in local units (shape radius ~1), negative inside.


def _circle(u, v, r=1.0, cx=0.0, cy=0.0):
  return np.hypot(u - cx, v - cy) - r


def _box(u, v, hx, hy, cx=0.0, cy=0.0):
  dx = np.abs(u - cx) - hx
  dy = np.abs(v - cy) - hy
  outside = np.hypot(np.maximum(dx, 0.0), np.maximum(dy, 0.0))
  return outside + np.minimum(np.maximum(dx, dy), 0.0)


def _convex(u, v, verts):
  # Max of half-plane distances: exact inside, a slight underestimate outside near corners,
  # which only softens corners by a fraction of a pixel.
  verts = np.asarray(verts, np.float64)
  area2 = np.sum(verts[:, 0] * np.roll(verts[:, 1], -1) - np.roll(verts[:, 0], -1) * verts[:, 1])
  if area2 < 0:
    verts = verts[::-1]
  d = None
  for a, b in zip(verts, np.roll(verts, -1, axis=0)):
    e = b - a
    n = np.array([e[1], -e[0]]) / np.hypot(e[0], e[1])
    h = (u - a[0]) * n[0] + (v - a[1]) * n[1]
    d = h if d is None else np.maximum(d, h)
  return d


def _segment(u, v, a, b, t):
  pax, pay = u - a[0], v - a[1]
  bax, bay = b[0] - a[0], b[1] - a[1]
  h = np.clip((pax * bax + pay * bay) / np.maximum(bax * bax + bay * bay, 1e-12), 0.0, 1.0)
  return np.hypot(pax - bax * h, pay - bay * h) - t


def _polyline(u, v, points, t):
  return _union(*[_segment(u, v, a, b, t) for a, b in zip(points[:-1], points[1:])])


def _polygon(u, v, verts):
  # Exact signed distance to a simple polygon (convex or not): distance to the nearest edge,
  # negative where a ray crossing count is odd. Pieces glued by min() would leave seams.
  verts = np.asarray(verts, np.float64)
  d = None
  inside = np.zeros(np.broadcast(u, v).shape, bool)
  for a, b in zip(verts, np.roll(verts, -1, axis=0)):
    s = _segment(u, v, a, b, 0.0)
    d = s if d is None else np.minimum(d, s)
    crosses = (a[1] > v) != (b[1] > v)
    x_cross = a[0] + (v - a[1]) * (b[0] - a[0]) / (b[1] - a[1] if b[1] != a[1] else 1e-12)
    inside ^= crosses & (u < x_cross)
  return np.where(inside, -d, d)


def _regular(n, r, phase=np.pi / 2):
  ang = phase + 2 * np.pi * np.arange(n) / n
  return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


def _star(u, v, points, r_out, r_in):
  ang = np.pi / 2 + np.pi * np.arange(2 * points) / points
  rad = np.where(np.arange(2 * points) % 2 == 0, r_out, r_in)
  return _polygon(u, v, np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1))


def _union(*ds):
  out = ds[0]
  for d in ds[1:]:
    out = np.minimum(out, d)
  return out


def _minus(a, b):
  return np.maximum(a, -b)


def _ellipse(u, v, a, b):
  # Not an exact distance, but correct on the boundary with unit-ish gradient there.
  k = np.hypot(u / a, v / b)
  return (k - 1.0) * min(a, b)


# --------------------------------------------------------------------------------------
# The shapes. Each fits roughly in the unit disc; rotations stay within +-MAX_ROTATION so
# that e.g. plus and x_cross, square and diamond remain different classes.

_S3 = np.sqrt(3.0) / 2

MAIN_SHAPES: dict[str, SdfFn] = {
    "circle": lambda u, v: _circle(u, v, 0.85),
    "square": lambda u, v: _box(u, v, 0.72, 0.72),
    "triangle": lambda u, v: _convex(u, v, [(0, 0.95), (-0.95, -0.7), (0.95, -0.7)]),
    "star": lambda u, v: _star(u, v, 5, 1.05, 0.5),
    "plus": lambda u, v: _union(_box(u, v, 0.9, 0.27), _box(u, v, 0.27, 0.9)),
    "ring": lambda u, v: np.abs(_circle(u, v, 0.68)) - 0.24,
    "diamond": lambda u, v: _convex(u, v, [(0, 1.0), (-0.62, 0), (0, -1.0), (0.62, 0)]),
    "hexagon": lambda u, v: _convex(u, v, _regular(6, 0.92, 0.0)),
    "heart": lambda u, v: _union(
        _circle(u, v, 0.45, -0.42, 0.3), _circle(u, v, 0.45, 0.42, 0.3),
        _convex(u, v, [(-0.84, 0.16), (0.84, 0.16), (0, -0.95)])),
    "crescent": lambda u, v: _minus(_circle(u, v, 0.92), _circle(u, v, 0.68, 0.5, 0.2)),
    "arrow": lambda u, v: _union(
        _box(u, v, 0.5, 0.2, -0.42, 0.0),
        _convex(u, v, [(0.0, 0.7), (0.98, 0.0), (0.0, -0.7)])),
    "semicircle": lambda u, v: _minus(_circle(u, v, 0.98, 0.0, -0.42), v + 0.42),
    "l_shape": lambda u, v: _union(
        _box(u, v, 0.26, 0.88, -0.55, 0.0), _box(u, v, 0.8, 0.26, 0.0, -0.62)),
    "t_shape": lambda u, v: _union(
        _box(u, v, 0.88, 0.25, 0.0, 0.62), _box(u, v, 0.25, 0.88, 0.0, 0.0)),
    "ellipse": lambda u, v: _ellipse(u, v, 0.98, 0.48),
    "equals": lambda u, v: _union(
        _box(u, v, 0.88, 0.2, 0.0, 0.42), _box(u, v, 0.88, 0.2, 0.0, -0.42)),
    "square_frame": lambda u, v: _minus(_box(u, v, 0.82, 0.82), _box(u, v, 0.44, 0.44)),
    "hourglass": lambda u, v: _union(
        _convex(u, v, [(-0.8, 0.9), (0.8, 0.9), (0, 0)]),
        _convex(u, v, [(-0.8, -0.9), (0.8, -0.9), (0, 0)])),
    "two_dots": lambda u, v: _union(_circle(u, v, 0.42, -0.5, 0.0), _circle(u, v, 0.42, 0.5, 0.0)),
    "chevron": lambda u, v: _polyline(u, v, [(-0.82, 0.62), (0.0, -0.62), (0.82, 0.62)], 0.24),
}

SIMILAR_SHAPES: dict[str, SdfFn] = {
    "pentagon": lambda u, v: _convex(u, v, _regular(5, 0.95)),
    "octagon": lambda u, v: _convex(u, v, _regular(8, 0.92, np.pi / 8)),
    "trapezoid": lambda u, v: _convex(u, v, [(-0.95, -0.6), (0.95, -0.6), (0.45, 0.6), (-0.45, 0.6)]),
    "parallelogram": lambda u, v: _convex(u, v, [(-0.95, -0.5), (0.45, -0.5), (0.95, 0.5), (-0.45, 0.5)]),
    "u_shape": lambda u, v: _union(
        _box(u, v, 0.24, 0.85, -0.6, 0.0), _box(u, v, 0.24, 0.85, 0.6, 0.0),
        _box(u, v, 0.84, 0.24, 0.0, -0.62)),
    "h_shape": lambda u, v: _union(
        _box(u, v, 0.24, 0.88, -0.6, 0.0), _box(u, v, 0.24, 0.88, 0.6, 0.0), _box(u, v, 0.6, 0.2)),
    "triangle_frame": lambda u, v: _minus(
        _convex(u, v, [(0, 0.98), (-0.98, -0.72), (0.98, -0.72)]),
        _convex(u, v, [(0, 0.36), (-0.44, -0.42), (0.44, -0.42)])),
    "star4": lambda u, v: _star(u, v, 4, 1.0, 0.35),
    "star6": lambda u, v: _star(u, v, 6, 1.0, 0.55),
    "three_dots": lambda u, v: _union(
        _circle(u, v, 0.36, 0.0, 0.52), _circle(u, v, 0.36, -0.55, -0.42),
        _circle(u, v, 0.36, 0.55, -0.42)),
    "arc": lambda u, v: _minus(np.abs(_circle(u, v, 0.7)) - 0.22, -v),
    "teardrop": lambda u, v: _union(
        _circle(u, v, 0.55, 0.0, -0.35), _convex(u, v, [(0.0, 1.0), (-0.52, -0.2), (0.52, -0.2)])),
    "z_shape": lambda u, v: _polyline(u, v, [(-0.75, 0.7), (0.75, 0.7), (-0.75, -0.7), (0.75, -0.7)], 0.2),
    "kite": lambda u, v: _convex(u, v, [(0, 1.0), (-0.7, 0.35), (0, -1.0), (0.7, 0.35)]),
    "stadium": lambda u, v: _segment(u, v, (-0.55, 0.0), (0.55, 0.0), 0.42),
    "keyhole": lambda u, v: _union(
        _circle(u, v, 0.45, 0.0, 0.4), _convex(u, v, [(0.0, 0.3), (-0.48, -0.95), (0.48, -0.95)])),
    "bullseye": lambda u, v: _union(np.abs(_circle(u, v, 0.78)) - 0.16, _circle(u, v, 0.3)),
    "diamond_frame": lambda u, v: _minus(
        _convex(u, v, [(0, 1.0), (-0.8, 0), (0, -1.0), (0.8, 0)]),
        _convex(u, v, [(0, 0.48), (-0.38, 0), (0, -0.48), (0.38, 0)])),
    "x_cross": lambda u, v: _union(
        _segment(u, v, (-0.7, -0.7), (0.7, 0.7), 0.22), _segment(u, v, (-0.7, 0.7), (0.7, -0.7), 0.22)),
    "zigzag": lambda u, v: _polyline(
        u, v, [(-0.9, 0.55), (-0.45, -0.55), (0.0, 0.55), (0.45, -0.55), (0.9, 0.55)], 0.18),
}

assert tuple(MAIN_SHAPES) == labels_lib.SCENES20_LABELS
assert tuple(SIMILAR_SHAPES) == labels_lib.SCENES20_SIMILAR_LABELS


# --------------------------------------------------------------------------------------
# Style: the knobs that set how hard the scenes are.


@dataclasses.dataclass(frozen=True)
class SceneStyle:
  """Distributions of a scene's random parameters (sizes relative to the image side)."""
  object_count_probs: tuple[float, ...] = (0.4, 0.4, 0.2)
  radius: tuple[float, float] = (0.2, 0.32)
  max_rotation: float = 0.35  # radians
  aspect: tuple[float, float] = (0.85, 1.15)
  min_center_distance: float = 0.75  # in units of r_i + r_j; bounds occlusion
  min_contrast: float = 0.3  # RGB distance from the background under the object
  # With this probability an object's hue is its class hue (+- hue_jitter), else any hue.
  # 0 (the default): colour carries no label, as in VOC, where a car can be any colour, so
  # shape decides the label; a per-label colour-histogram probe then scores within a few
  # points of the base rate (tests/test_benchmark.py). COLOUR_STYLE (scenes20_colour) sets
  # it to 0.95: a shortcut control, where a colour histogram alone scores ~42 mAP.
  class_color_prob: float = 0.0
  hue_jitter: float = 0.02
  shading: float = 0.15
  object_saturation: tuple[float, float] = (0.5, 1.0)
  object_value: tuple[float, float] = (0.35, 1.0)
  # Backgrounds and strokes are weakly coloured, so that hue mostly belongs to objects;
  # they clutter shapes (edges, blotches) without hiding which colours are present.
  background_saturation: tuple[float, float] = (0.0, 0.35)
  background_value: tuple[float, float] = (0.15, 0.95)
  background_noise: tuple[float, float] = (0.05, 0.15)
  background_noise_chroma: float = 0.3
  pixel_noise: tuple[float, float] = (0.01, 0.04)
  strokes_under: tuple[int, int] = (1, 3)
  strokes_over: tuple[int, int] = (0, 1)
  stroke_width: tuple[float, float] = (0.02, 0.045)
  stroke_saturation: tuple[float, float] = (0.0, 0.35)


DEFAULT_STYLE = SceneStyle()
# scenes20_colour: the same scenes with each class drawn in its typical hue (shortcut control).
COLOUR_STYLE = SceneStyle(class_color_prob=0.95)
_MAX_STROKES = 8
_NOISE_GRID = 4


def _class_hue(cls: int) -> float:
  # A fixed permutation of 20 hues, so that look-alike shapes (circle, ring, hexagon) with
  # neighbouring indices get distant hues.
  return ((int(cls) * 7) % 20) / 20


def _random_color(rng, hue=None, saturation=(0.25, 1.0), value=(0.3, 1.0)):
  # HSV to RGB; the hue is uniform unless given.
  h = rng.random() if hue is None else hue
  s = rng.uniform(*saturation)
  val = rng.uniform(*value)
  k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
  return val - val * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def sample_scene(rng: np.random.Generator, num_classes: int, style: SceneStyle = DEFAULT_STYLE,
                 with_objects: bool = True) -> dict[str, np.ndarray]:
  """Draws the parameters of one scene.

  Args:
    rng: the example's own Generator.
    num_classes: classes to draw the objects from.
    style: distributions of the parameters.
    with_objects: False for background only (no labels).

  Returns:
    A dict of numpy arrays (see `render_scenes`).
  """
  c0 = _random_color(rng, saturation=style.background_saturation, value=style.background_value)
  c1 = _random_color(rng, saturation=style.background_saturation, value=style.background_value)
  angle = rng.uniform(0, 2 * np.pi)
  p = {
      "bg_c0": c0, "bg_c1": c1, "bg_dir": np.array([np.cos(angle), np.sin(angle)]),
      # Blotches mostly of brightness, a little of colour.
      "bg_noise": (rng.normal(size=(_NOISE_GRID, _NOISE_GRID, 1))
                   + style.background_noise_chroma * rng.normal(size=(_NOISE_GRID, _NOISE_GRID, 3)))
                  * rng.uniform(*style.background_noise),
      "pixel_noise_std": rng.uniform(*style.pixel_noise),
  }

  def bg_at(x, y):
    t = (x - 0.5) * p["bg_dir"][0] + (y - 0.5) * p["bg_dir"][1] + 0.5
    return c0 + (c1 - c0) * t

  strokes = np.zeros((_MAX_STROKES, 9))  # x0 y0 x1 y1 width r g b layer(1 under, 2 over)
  n_under = rng.integers(style.strokes_under[0], style.strokes_under[1] + 1)
  n_over = rng.integers(style.strokes_over[0], style.strokes_over[1] + 1)
  for k in range(n_under + n_over):
    a = rng.uniform(-0.1, 1.1, size=2)
    b = a + rng.uniform(0.2, 0.8) * np.array([np.cos(t := rng.uniform(0, 2 * np.pi)), np.sin(t)])
    color = _random_color(rng, saturation=style.stroke_saturation, value=style.background_value)
    strokes[k] = [*a, *b, rng.uniform(*style.stroke_width), *color,
                  1 if k < n_under else 2]
  p["strokes"] = strokes

  objects = np.zeros((MAX_OBJECTS, 11))  # valid cls cx cy r rot mirror aspect r g b
  shade = np.zeros((MAX_OBJECTS, 2))
  if with_objects:
    n = 1 + rng.choice(len(style.object_count_probs), p=style.object_count_probs)
    classes = rng.choice(num_classes, size=n, replace=False)
    placed = []
    for k, cls in enumerate(classes):
      r = rng.uniform(*style.radius)
      for _ in range(50):
        c = rng.uniform(0.7 * r, 1 - 0.7 * r, size=2)
        if all(np.hypot(*(c - c2)) >= style.min_center_distance * (r + r2) for c2, r2 in placed):
          break
      placed.append((c, r))
      typical = rng.random() < style.class_color_prob
      for _ in range(30):
        hue = (_class_hue(cls) + rng.normal() * style.hue_jitter) % 1.0 if typical else None
        col = _random_color(rng, hue, style.object_saturation, style.object_value)
        ok = np.linalg.norm(col - bg_at(*c)) >= style.min_contrast
        ok &= all(np.linalg.norm(col - objects[j, 8:]) >= style.min_contrast for j in range(k))
        if ok:
          break
      objects[k] = [1, cls, c[0], c[1], r, rng.uniform(-style.max_rotation, style.max_rotation),
                    rng.choice([-1.0, 1.0]), rng.uniform(*style.aspect), *col]
      shade[k] = rng.normal(size=2) * style.shading
  p["objects"] = objects
  p["shade"] = shade
  return p


def _stack(params: Sequence[dict[str, np.ndarray]], key: str) -> np.ndarray:
  return np.stack([np.asarray(p[key], np.float32) for p in params])


def _bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
  # Row i holds the weights of the n_in grid values at output pixel i (align corners).
  x = np.linspace(0, n_in - 1, n_out)
  lo = np.clip(np.floor(x).astype(int), 0, n_in - 2)
  w = x - lo
  m = np.zeros((n_out, n_in))
  m[np.arange(n_out), lo] = 1 - w
  m[np.arange(n_out), lo + 1] = w
  return m


def _pixel_grid(size: int):
  # Pixel centres in [0, 1] image units; y grows downwards.
  c = ((np.arange(size) + 0.5) / size).astype(np.float32)
  return np.meshgrid(c, c)  # x [H, W], y [H, W]


def _over(img, alpha, color):
  a = alpha[..., None]
  return img * (1 - a) + color * a


def _draw_strokes(img, strokes, layer, size, x, y):
  for k in range(strokes.shape[1]):
    s = strokes[:, k]
    on = s[:, 8] == layer
    if not on.any():
      continue
    # Every example is drawn; examples without stroke k here get alpha 0 (cheaper than
    # gathering the subset and scattering it back).
    d = _segment(x[None], y[None], (s[:, 0, None, None], s[:, 1, None, None]),
                 (s[:, 2, None, None], s[:, 3, None, None]), s[:, 4, None, None] / 2)
    alpha = np.clip(0.5 - d * size, 0, 1) * on[:, None, None]
    img = _over(img, alpha, s[:, None, None, 5:8])
  return img


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
  """Bilinear upsampling of [N, g, g, C] grids to [N, size, size, C]."""
  m = _bilinear_matrix(size, grid.shape[1]).astype(np.float32)
  g = np.moveaxis(grid.astype(np.float32), -1, 1)  # [N, C, g, g]
  return np.moveaxis(m @ g @ m.T, 1, -1)


def render_background(params: Sequence[dict[str, np.ndarray]], size: int) -> np.ndarray:
  """Gradient plus low-frequency noise, float [N, H, W, 3] (not clipped)."""
  x, y = _pixel_grid(size)
  c0, c1, d = _stack(params, "bg_c0"), _stack(params, "bg_c1"), _stack(params, "bg_dir")
  t = ((x[None] - 0.5) * d[:, 0, None, None] + (y[None] - 0.5) * d[:, 1, None, None] + 0.5)
  img = c0[:, None, None] + (c1 - c0)[:, None, None] * t[..., None]
  return img + _upsample(_stack(params, "bg_noise"), size)


def render_scenes(params: Sequence[dict[str, np.ndarray]], size: int,
                  shapes: Sequence[SdfFn], noise: Sequence[np.ndarray]) -> np.ndarray:
  """Draws scenes sampled by `sample_scene`.

  Args:
    params: one dict per example.
    size: image side in pixels.
    shapes: sdf function of each class index.
    noise: per example standard normal noise [size, size, 3] (drawn from its own rng).

  Returns:
    uint8 images [N, size, size, 3].
  """
  n = len(params)
  x, y = _pixel_grid(size)
  img = render_background(params, size)
  strokes = _stack(params, "strokes")
  img = _draw_strokes(img, strokes, 1, size, x, y)

  obj = _stack(params, "objects")  # [N, 3, 11]
  shade = _stack(params, "shade")
  alpha = np.zeros((n, MAX_OBJECTS, size, size), np.float32)
  local_u = np.zeros((n, MAX_OBJECTS, size, size), np.float32)
  local_v = np.zeros((n, MAX_OBJECTS, size, size), np.float32)
  valid = obj[..., 0] > 0
  cls = obj[..., 1].astype(int)
  for c in np.unique(cls[valid]):
    ii, kk = np.nonzero(valid & (cls == c))
    o = obj[ii, kk]
    cx, cy, r, rot, mirror, aspect = (o[:, j, None, None] for j in range(2, 8))
    dx, dy = x[None] - cx, y[None] - cy
    cos, sin = np.cos(rot), np.sin(rot)
    # Image y points down; local v points up. Aspect stretches u and shrinks v.
    u = mirror * (cos * dx - sin * dy) / (r * aspect)
    v = -(sin * dx + cos * dy) / (r / aspect)
    d = shapes[c](u, v) * (r * np.minimum(aspect, 1 / aspect)) * size
    alpha[ii, kk] = np.clip(0.5 - d, 0, 1)
    local_u[ii, kk], local_v[ii, kk] = u, v
  for k in range(MAX_OBJECTS):
    shading = shade[:, k, 0, None, None] * local_u[:, k] + shade[:, k, 1, None, None] * local_v[:, k]
    color = obj[:, k, None, None, 8:11] + shading[..., None]
    img = _over(img, alpha[:, k], color)

  img = _draw_strokes(img, strokes, 2, size, x, y)
  std = np.array([p["pixel_noise_std"] for p in params])
  img += np.stack(noise) * std[:, None, None, None].astype(np.float32)
  return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Textures for scenes20_different: no objects, another kind of image altogether.

TEXTURE_KINDS = ("stripes", "plasma", "checker", "rings", "waves")


def sample_texture(rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Draws the parameters of one texture image."""
  kind = rng.integers(len(TEXTURE_KINDS))
  theta = rng.uniform(0, np.pi)
  return {
      "kind": np.array(kind),
      "c0": _random_color(rng), "c1": _random_color(rng), "c2": _random_color(rng),
      "freq": np.array(rng.uniform(2.0, 9.0)),
      "dir": np.array([np.cos(theta), np.sin(theta)]),
      "phase": np.array(rng.uniform(0, 2 * np.pi)),
      "center": rng.uniform(0, 1, size=2),
      "grid4": rng.normal(size=(4, 4)),
      "grid8": rng.normal(size=(8, 8)),
      "warp": rng.normal(size=(4, 4)) * rng.uniform(0.0, 0.08),
      "pixel_noise_std": np.array(rng.uniform(0.01, 0.05)),
  }


def render_textures(params: Sequence[dict[str, np.ndarray]], size: int,
                    noise: Sequence[np.ndarray]) -> np.ndarray:
  """Draws textures sampled by `sample_texture`; uint8 [N, size, size, 3]."""
  x, y = _pixel_grid(size)
  kind = np.array([int(p["kind"]) for p in params])[:, None, None]
  d = _stack(params, "dir")
  warp = _upsample(_stack(params, "warp")[..., None], size)[..., 0]
  xw, yw = x[None] + warp, y[None] - warp
  freq = _stack(params, "freq")[:, None, None]
  phase = _stack(params, "phase")[:, None, None]
  along = xw * d[:, 0, None, None] + yw * d[:, 1, None, None]
  across = -xw * d[:, 1, None, None] + yw * d[:, 0, None, None]
  center = _stack(params, "center")
  radius = np.hypot(xw - center[:, 0, None, None], yw - center[:, 1, None, None])
  plasma = (_upsample(_stack(params, "grid4")[..., None], size)[..., 0]
            + 0.5 * _upsample(_stack(params, "grid8")[..., None], size)[..., 0])
  t = np.select(
      [kind == 0, kind == 1, kind == 2, kind == 3],
      [0.5 + 0.5 * np.sin(2 * np.pi * freq * along + phase),
       1 / (1 + np.exp(-2 * plasma)),
       (np.sin(2 * np.pi * freq / 2 * along) * np.sin(2 * np.pi * freq / 2 * across) > 0) * 1.0,
       0.5 + 0.5 * np.sin(2 * np.pi * freq * radius + phase)],
      0.5 + 0.5 * np.sin(2 * np.pi * freq * along + 2 * np.sin(2 * np.pi * across * 2) + phase))
  c0, c1, c2 = (_stack(params, k)[:, None, None] for k in ("c0", "c1", "c2"))
  # A third colour drifts across the image so no two textures share a flat palette.
  img = c0 + (c1 - c0) * t[..., None]
  img = img * (0.75 + 0.25 * across[..., None]) + c2 * 0.25 * (1 - across[..., None])
  std = _stack(params, "pixel_noise_std")
  img += np.stack(noise) * std[:, None, None, None].astype(np.float32)
  return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Entry point used by the TFDS builders and the tests.

KINDS = ("main", "similar", "different")


def generate(kind: str, indices: Sequence[int], *, size: int, seed: int, stream: int,
             style: SceneStyle = DEFAULT_STYLE) -> tuple[np.ndarray, np.ndarray]:
  """Renders examples `indices` of one split.

  Args:
    kind: "main" (SCENES20_LABELS shapes), "similar" (the disjoint shapes) or "different"
      (textures).
    indices: example indices; example i depends only on (seed, stream, i).
    size: image side in pixels.
    seed: dataset seed.
    stream: split id, so train and test never share an example.
    style: scene distributions (ignored for textures).

  Returns:
    images uint8 [N, size, size, 3] and multi-hot labels uint8 [N, 20] (all zero for
    textures).
  """
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  rngs = [np.random.default_rng([seed, KINDS.index(kind), stream, int(i)]) for i in indices]
  labels = np.zeros((len(rngs), 20), np.uint8)
  if kind == "different":
    params = [sample_texture(rng) for rng in rngs]
    noise = [rng.standard_normal((size, size, 3), np.float32) for rng in rngs]
    return render_textures(params, size, noise), labels
  shapes = list((MAIN_SHAPES if kind == "main" else SIMILAR_SHAPES).values())
  params = [sample_scene(rng, len(shapes), style) for rng in rngs]
  noise = [rng.standard_normal((size, size, 3), np.float32) for rng in rngs]
  for row, p in zip(labels, params):
    obj = p["objects"]
    row[obj[obj[:, 0] > 0, 1].astype(int)] = 1
  return render_scenes(params, size, shapes, noise), labels
