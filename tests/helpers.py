"""Assertions several test files share."""

import numpy as np
import pytest


def assert_scores_agree(results):
  """Each reported mAP is the NaN-skipping mean of the reported per-label APs, in Y_cst order.

  The 11-point AP is not stored per label, so it is only bounded: with p~(r) the
  non-increasing precision envelope, area AP = ∫_0^1 p~ <= (1/10) Σ_{k<10} p~(k/10) and the
  11-point AP >= (1/11) Σ_{k<=10} p~(k/10), so AP_11pt >= 10/11 · AP_area, label by label.
  """
  for who in ("teacher", "target") + (("regrouped",) if "regrouped_map" in results else ()):
    ap = results[f"{who}_ap"]
    assert list(ap) == results["labels"]
    assert results[f"{who}_map"] == pytest.approx(np.nanmean(list(ap.values())), abs=1e-6)
    assert 10 / 11 * results[f"{who}_map"] - 1e-9 <= results[f"{who}_map_voc07"] <= 1.0
  assert results["target_over_teacher"] == pytest.approx(
      results["target_map"] / results["teacher_map"], rel=1e-9)
  p = results["params"]
  assert p["target_over_teachers"] == pytest.approx(p["target_net"] / p["teachers_total"])


def tensorboard_tags(directory):
  """{tag: kind} of every summary under `directory` (TF2 summaries are all tensors; the kind
  is the plugin that shows them: scalars, images, histograms, hparams)."""
  from tensorboard.backend.event_processing import event_multiplexer  # pylint: disable=g-import-not-at-top
  mux = event_multiplexer.EventMultiplexer(size_guidance={"tensors": 0})
  mux.AddRunsFromDirectory(str(directory))
  mux.Reload()
  tags = {}
  for run, content in mux.Runs().items():
    for tag in content.get("tensors", []):
      meta = mux.SummaryMetadata(run, tag)
      tags[f"{run}/{tag}"] = meta.plugin_data.plugin_name
  return tags
