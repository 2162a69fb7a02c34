"""FLOPs of a compiled step: 2 x multiply-adds of the conv / matmul ops that actually run.

`tf.compat.v1.profiler.profile(graph, options=float_operation())` counts every op of the
graph, including the dead ones: the gradient of a Conv2D always builds both backprops, so
in Steps I and II (frozen teachers, gradients to the generator or one block only) the graph
holds a Conv2DBackpropFilter for every teacher convolution whose output nothing reads.
TensorFlow prunes those before running the step, but the profiler counts them: at the
default scale it reports 29.9 GFLOP for a Step I (K = 2) step whose live convs and matmuls
do 23.6. This counter keeps only the ops the step's outputs and side effects (variable
updates) depend on, as the runtime does, and counts forward and backward convolutions and
matrix products from their static shapes. Element-wise work (batch norm, activations, the
optimizer update) is left out: about 1 % of the FLOPs of a conv net step (the profiler's
extra 0.2 GFLOP above), though a larger share of its time.
"""

import collections
from typing import Dict, Tuple

# Ops whose cost is 2 x (output elements of the forward conv) x (kernel h x w x in-channels).
_CONV = {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter",
         "DepthwiseConv2dNative", "DepthwiseConv2dNativeBackpropInput",
         "DepthwiseConv2dNativeBackpropFilter"}
_MATMUL = {"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"}
_CALLS = {"PartitionedCall", "StatefulPartitionedCall", "While", "StatelessWhile", "If",
          "StatelessIf"}


def _dims(shape):
  if shape.rank is None:
    return None
  dims = shape.as_list()
  return None if any(d is None for d in dims) else dims


def _prod(values):
  out = 1
  for v in values:
    out *= int(v)
  return out


def _conv_flops(op):
  """2 * |dy| * kh * kw * cin_per_group (depthwise: 2 * |dy| * kh * kw)."""
  t = op.type
  if t in ("Conv2D", "DepthwiseConv2dNative"):
    dy, kernel = _dims(op.outputs[0].shape), _dims(op.inputs[1].shape)
  elif t.endswith("BackpropInput"):  # (input_sizes, filter, out_backprop)
    dy, kernel = _dims(op.inputs[2].shape), _dims(op.inputs[1].shape)
  else:  # BackpropFilter: (input, filter_sizes, out_backprop); the output is the kernel.
    dy, kernel = _dims(op.inputs[2].shape), _dims(op.outputs[0].shape)
  if dy is None or kernel is None:
    return None
  per_output = kernel[0] * kernel[1] * (1 if t.startswith("Depthwise") else kernel[2])
  return 2 * _prod(dy) * per_output


def _matmul_flops(op):
  out, a = _dims(op.outputs[0].shape), _dims(op.inputs[0].shape)
  if out is None or a is None:
    return None
  if op.type == "MatMul":
    inner = a[0] if op.get_attr("transpose_a") else a[1]
  else:
    inner = a[-2] if op.get_attr("adj_x") else a[-1]
  return 2 * _prod(out) * inner


def _called_graphs(op):
  for attr in ("f", "body", "cond", "then_branch", "else_branch"):
    try:
      name = op.get_attr(attr).name
    except (ValueError, AttributeError):
      continue
    fn = op.graph._get_function(name)  # pylint: disable=protected-access
    if fn is not None and getattr(fn, "graph", None) is not None:
      yield fn.graph


def live_ops(graph):
  """The ops that the graph's outputs and control outputs (its side effects) depend on."""
  roots = [t.op for t in getattr(graph, "outputs", [])] + list(
      getattr(graph, "control_outputs", []))
  if not roots:  # Not a function graph: keep everything.
    return list(graph.get_operations())
  seen, stack = set(), list(roots)
  while stack:
    op = stack.pop()
    if op in seen:
      continue
    seen.add(op)
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return [op for op in graph.get_operations() if op in seen]


def count_graph(graph, prune: bool = True) -> Tuple[int, Dict[str, int], int]:
  """Returns (FLOPs, FLOPs per op type, number of conv/matmul ops with unknown shapes).

  With `prune`, ops no output or side effect depends on are skipped (see the module doc).
  Ops inside a While body are counted once (the trip count is not known statically).
  """
  by_type = collections.Counter()
  unknown = 0
  for op in (live_ops(graph) if prune else graph.get_operations()):
    if op.type in _CONV or op.type in _MATMUL:
      flops = _conv_flops(op) if op.type in _CONV else _matmul_flops(op)
      if flops is None:
        unknown += 1
      else:
        by_type[op.type] += flops
    elif op.type in _CALLS:
      for sub in _called_graphs(op):
        _, sub_types, sub_unknown = count_graph(sub, prune)
        by_type.update(sub_types)
        unknown += sub_unknown
  return sum(by_type.values()), dict(by_type), unknown


def count(concrete_function, prune: bool = True):
  """FLOPs of one call of a `tf.function`'s concrete function; see `count_graph`."""
  return count_graph(concrete_function.graph, prune)
