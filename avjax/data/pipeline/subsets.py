"""Small and class-imbalanced training subsets, deterministic from a seed.

``subset_indices`` picks which examples of a split to train on:

* ``per_class = N`` keeps at most N examples of every class (None: all);
* ``imbalance_ratio = r`` in (0, 1] makes the class sizes decay
  geometrically: the class of rank k (0 = most frequent, ranks a seeded
  permutation of the classes) keeps ``max(min_per_class, round(n_max ·
  r^(k / (C − 1))))`` examples, where ``n_max`` is the per-class cap (or the
  largest class). r = 1 is balanced; r = 0.1 gives a 10:1 head:tail ratio,
  the long-tail convention of e.g. CIFAR-LT.

``SubsetSource`` exposes the chosen examples (and optionally replacement
labels, e.g. a classifier's predictions) as a random-access source that the
grain pipeline reads like the full one. ``ArraySource`` serves a split that
is already in memory as arrays (e.g. precomputed features, which small
training sets reuse every epoch) through the same interface.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def class_sizes(
    labels: np.ndarray,
    per_class: int | None,
    imbalance_ratio: float,
    seed: int,
    min_per_class: int = 2,
) -> dict[int, int]:
  """Target number of examples of each class present in ``labels``.

  Args:
    labels: int [N] class of each example of the split.
    per_class: cap per class (None or 0: no cap).
    imbalance_ratio: smallest/largest class size ratio, in (0, 1].
    seed: picks which classes become rare.
    min_per_class: floor per class (a class never vanishes); 2 keeps a soft
      positive possible for every class.

  Returns:
    {class: size}, each at most the class's available count.
  """
  if not 0 < imbalance_ratio <= 1:
    raise ValueError(f"imbalance_ratio={imbalance_ratio} must be in (0, 1]")
  if per_class is not None and per_class < 0:
    raise ValueError(f"per_class={per_class} must be >= 0 or None")
  classes, counts = np.unique(np.asarray(labels), return_counts=True)
  avail = dict(zip(classes.tolist(), counts.tolist()))
  cap = per_class if per_class else max(counts)
  order = np.random.default_rng(seed).permutation(classes)
  c = len(classes)
  sizes = {}
  for rank, cls in enumerate(order.tolist()):
    frac = imbalance_ratio ** (rank / (c - 1)) if c > 1 else 1.0
    target = max(min_per_class, int(round(cap * frac)))
    sizes[cls] = min(avail[cls], target)
  return sizes


def subset_indices(
    labels: np.ndarray,
    per_class: int | None = None,
    imbalance_ratio: float = 1.0,
    seed: int = 0,
    min_per_class: int = 2,
) -> np.ndarray:
  """Sorted int64 indices of a (small / imbalanced) subset of a split.

  Which examples of each class are kept is a seeded random choice; see
  ``class_sizes`` for how many. With ``per_class=None`` and ratio 1 every
  index is returned.
  """
  labels = np.asarray(labels)
  sizes = class_sizes(labels, per_class, imbalance_ratio, seed, min_per_class)
  rng = np.random.default_rng([seed, 1])
  keep = []
  for cls in sorted(sizes):
    members = np.flatnonzero(labels == cls)
    keep.append(rng.permutation(members)[: sizes[cls]])
  return np.sort(np.concatenate(keep)) if keep else np.zeros((0,), np.int64)


def fewshot_indices(
    labels: np.ndarray,
    per_class: int,
    draw: int,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
  """Sorted indices of ``per_class`` labelled examples per class for a probe.

  Draws come from their own random stream (seeded by ``draw`` only, apart
  from ``subset_indices``' stream), and avoid the indices in ``exclude``
  (e.g. the clips a small training subset trained on, labels included) for
  every class that keeps at least ``per_class`` examples outside it; a class
  without enough left draws from all its examples.
  """
  labels = np.asarray(labels)
  excluded = np.zeros(len(labels), bool)
  if exclude is not None:
    excluded[np.asarray(exclude, np.int64)] = True
  rng = np.random.default_rng([_FEWSHOT_STREAM, int(draw)])
  keep = []
  for cls in np.unique(labels):
    members = np.flatnonzero(labels == cls)
    outside = members[~excluded[members]]
    pool = outside if len(outside) >= per_class else members
    keep.append(rng.permutation(pool)[:per_class])
  return np.sort(np.concatenate(keep)) if keep else np.zeros((0,), np.int64)


# Stream id of the few-shot draws (any constant other than subset seeds).
_FEWSHOT_STREAM = 0xF5


class SubsetSource:
  """A random-access source restricted to ``indices`` of ``source``.

  ``len`` and ``__getitem__`` as the wrapped source; item k is
  ``source[indices[k]]``. With ``labels`` (int [len(indices)]) the item's
  ``"label"`` is replaced and the original kept as ``"true_label"`` (unless
  the item already has one).
  """

  def __init__(
      self,
      source: Any,
      indices: Sequence[int],
      labels: np.ndarray | None = None,
  ):
    self.source = source
    self.indices = np.asarray(indices, np.int64)
    n = len(source)
    if len(self.indices) and (
        self.indices.min() < 0 or self.indices.max() >= n
    ):
      raise ValueError(f"SubsetSource: indices outside [0, {n})")
    if labels is not None and len(labels) != len(self.indices):
      raise ValueError(
          f"SubsetSource: {len(labels)} labels for "
          f"{len(self.indices)} indices"
      )
    self.labels = None if labels is None else np.asarray(labels, np.int32)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, k: int) -> dict[str, Any]:
    item = dict(self.source[int(self.indices[k])])
    if self.labels is not None:
      item["true_label"] = item.get("true_label", item["label"])
      item["label"] = self.labels[k]
    return item

  def __getattr__(self, name: str):
    # ``gather`` exists exactly when the wrapped source has one, so the
    # pipeline gathers whole batches from in-memory sources only.
    if name == "gather" and hasattr(self.source, "gather"):
      return self._gather
    raise AttributeError(name)

  def _gather(self, ks: np.ndarray) -> dict[str, np.ndarray]:
    """Items ``ks`` as one batch: ``{key: [len(ks), ...]}``."""
    ks = np.asarray(ks, np.int64)
    batch = dict(self.source.gather(self.indices[ks]))
    if self.labels is not None:
      batch["true_label"] = batch.get("true_label", batch["label"])
      batch["label"] = self.labels[ks]
    return batch

  def __repr__(self) -> str:
    return f"SubsetSource({len(self)} of {len(self.source)})"
