"""Small / imbalanced training subsets and the subset source."""

import numpy as np
import pytest

from avjax.data.pipeline import subsets

LABELS = np.repeat(np.arange(5), [30, 25, 40, 30, 35])


def test_per_class_cap_is_balanced_and_seeded():
  idx = subsets.subset_indices(LABELS, per_class=10, seed=0)
  assert (np.bincount(LABELS[idx]) == 10).all()
  assert (np.diff(idx) > 0).all()
  np.testing.assert_array_equal(
      idx, subsets.subset_indices(LABELS, per_class=10, seed=0)
  )
  assert not np.array_equal(
      idx, subsets.subset_indices(LABELS, per_class=10, seed=1)
  )


def test_no_cap_keeps_everything():
  np.testing.assert_array_equal(
      subsets.subset_indices(LABELS), np.arange(len(LABELS))
  )


def test_imbalance_is_geometric():
  sizes = subsets.class_sizes(LABELS, per_class=20, imbalance_ratio=0.1, seed=0)
  assert sorted(sizes.values()) == [2, 4, 6, 11, 20]
  idx = subsets.subset_indices(
      LABELS, per_class=20, imbalance_ratio=0.1, seed=0
  )
  counts = np.bincount(LABELS[idx], minlength=5)
  assert {c: int(counts[c]) for c in range(5)} == sizes
  other = subsets.class_sizes(LABELS, 20, 0.1, seed=3)
  assert sorted(other.values()) == sorted(sizes.values())


def test_imbalance_without_cap_uses_largest_class_and_availability():
  sizes = subsets.class_sizes(LABELS, None, 0.5, seed=0, min_per_class=1)
  assert max(sizes.values()) <= 40
  assert all(sizes[c] <= n for c, n in enumerate(np.bincount(LABELS)))


def test_bad_arguments():
  with pytest.raises(ValueError, match="imbalance_ratio=0"):
    subsets.subset_indices(LABELS, imbalance_ratio=0)
  with pytest.raises(ValueError, match="per_class=-1"):
    subsets.subset_indices(LABELS, per_class=-1)


def test_subset_source_relabels_and_keeps_truth():
  src = [{"label": np.int32(i % 3), "id": np.int32(100 + i)} for i in range(9)]
  sub = subsets.SubsetSource(src, [2, 5, 7], labels=np.array([0, 0, 1]))
  assert len(sub) == 3
  assert sub[1]["id"] == 105 and sub[1]["label"] == 0
  assert sub[1]["true_label"] == 2
  assert "true_label" not in subsets.SubsetSource(src, [2])[0]
  with pytest.raises(ValueError, match=r"outside \[0, 9\)"):
    subsets.SubsetSource(src, [9])
  with pytest.raises(ValueError, match="2 labels for 1 indices"):
    subsets.SubsetSource(src, [1], labels=np.array([0, 1]))


def test_subset_of_array_source_gathers_batches():
  from avjax.data.pipeline import iterators  # pylint: disable=import-outside-toplevel

  arrays = {
      "x": np.arange(20, dtype=np.float32) * 10,
      "label": np.arange(20, dtype=np.int32) % 4,
  }
  idx = np.array([3, 5, 8, 13, 17, 19])
  relabel = np.array([1, 1, 2, 2, 3, 0], np.int32)
  sub = subsets.SubsetSource(iterators.ArraySource(arrays), idx, labels=relabel)
  batch = sub.gather(np.array([4, 0, 2]))
  per_item = [sub[k] for k in (4, 0, 2)]
  for key in ("x", "label", "true_label"):
    np.testing.assert_array_equal(batch[key], [item[key] for item in per_item])
  np.testing.assert_array_equal(batch["label"], [3, 1, 2])
  np.testing.assert_array_equal(batch["true_label"], [1, 3, 0])
  # Over a source without ``gather`` (a tfds source), none is offered.
  assert not hasattr(subsets.SubsetSource([{"label": 0}] * 3, [0, 1]), "gather")


def test_fewshot_draws_avoid_the_training_subset_and_their_stream():
  trained = subsets.subset_indices(LABELS, per_class=20, seed=0)
  for draw in range(3):
    shots = subsets.fewshot_indices(LABELS, 5, draw, exclude=trained)
    assert (np.bincount(LABELS[shots]) == 5).all()
    assert not np.intersect1d(shots, trained).size
    # Not the first 5 per class of any seed's training subset.
    first5 = subsets.subset_indices(LABELS, per_class=5, seed=draw)
    assert not np.array_equal(shots, first5)
  assert not np.array_equal(
      subsets.fewshot_indices(LABELS, 5, 0, exclude=trained),
      subsets.fewshot_indices(LABELS, 5, 1, exclude=trained),
  )
  # A class without 5 clips outside the subset draws from all of its clips.
  small = np.repeat(np.arange(2), [6, 30])
  shots = subsets.fewshot_indices(small, 5, 0, exclude=np.arange(4))
  assert (np.bincount(small[shots]) == 5).all()
