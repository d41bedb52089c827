"""grain input pipelines over random-access sources.

Training: a seeded shuffle of the whole source, reshuffled every epoch,
endless repetition, global batches of `batch_size * process_count` examples
(batches may span an epoch boundary), of which process `p` reads and
transforms only rows `[p * batch_size, (p + 1) * batch_size)`; then one call
of the batch transform per batch (vectorised features,
`avjax.data.pipeline.features`). Every process walks the same global sequence, so the
global batch of every step is the same whatever the number of processes
(a 2-process run sees exactly the data of a 1-process run).
Sources that hold their split in memory as arrays (`ArraySource`, and
`subsets.SubsetSource` over one) have a `gather(indices)` method: their
batches are gathered in one vectorised indexing per key instead of one
`source[i]` per example (same examples, same order).
The iterator's `get_state()` is a small JSON-serialisable dict (it goes into
the checkpoint); `set_state()` on a fresh iterator built with the same
arguments resumes the exact batch sequence.

Evaluation: `load_split` reads a whole split in source order into one dict of
numpy arrays.

Threads: batches are produced by `num_threads` threads with at most
`prefetch` batches buffered (grain's defaults, 16 threads and 500 buffered
elements, are sized for small records and would hold hundreds of batches
here).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np

Batch = dict[str, np.ndarray]
BatchTransform = Callable[[Batch], Batch]


def _read_options(num_threads: int, prefetch: int) -> grain.ReadOptions:
  if num_threads < 0 or prefetch < 0:
    raise ValueError(
        f"num_threads and prefetch must be >= 0, got "
        f"{num_threads}, {prefetch}"
    )
  return grain.ReadOptions(
      num_threads=num_threads, prefetch_buffer_size=prefetch
  )


def _with_transform(
    ds: grain.MapDataset, transform: BatchTransform | None
) -> grain.MapDataset:
  """ds.map(transform); a grain Map or any callable on a batch dict."""
  if transform is None:
    return ds
  if not (isinstance(transform, grain.transforms.Map) or callable(transform)):
    raise TypeError(f"batch_transform must be callable, got {transform!r}")
  return ds.map(transform)


def make_train_iterator(
    source: Sequence[Any],
    batch_size: int,
    seed: int,
    batch_transform: BatchTransform | None = None,
    process_index: int = 0,
    process_count: int = 1,
    shuffle: bool = True,
    num_threads: int = 2,
    prefetch: int = 4,
    cache: bool = False,
) -> grain.DatasetIterator:
  """Endless iterator of transformed training batches.

  Args:
    source: random-access source (len, [i] -> dict of arrays).
    batch_size: examples per batch on this process (drop_remainder).
    seed: shuffle seed (same on every process).
    batch_transform: applied to each stacked batch (dict of [B, ...]
      arrays), e.g. `features.PairsFeatures()`; None keeps raw records.
    process_index, process_count: this process reads rows
      `[process_index * batch_size, (process_index + 1) * batch_size)` of
      each global batch of `batch_size * process_count` examples.
    shuffle: reshuffle every epoch; False keeps source order.
    num_threads, prefetch: batch-producing threads and buffered batches.
    cache: transform the whole source once into memory (`cache_features`)
      and gather batches from it: the same batches, for splits that fit.

  Returns:
    A `grain.DatasetIterator`; `next()` gives a dict of numpy arrays with
    leading axis `batch_size`; `get_state()` / `set_state()` checkpoint it.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(
        f"need 0 <= process_index < process_count, got "
        f"{process_index}, {process_count}"
    )
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  global_batch = batch_size * process_count
  if len(source) < global_batch:
    raise ValueError(
        f"the source holds {len(source)} examples, fewer than the global "
        f"batch of {global_batch} ({process_count} process(es) x "
        f"{batch_size})"
    )
  if cache:
    source, batch_transform = cache_features(source, batch_transform), None
  gather = getattr(source, "gather", None)
  if gather is None and process_count > 1:
    gather = functools.partial(_read_and_stack, source)
  # With `gather`, the dataset runs over indices and a batch of indices
  # becomes one gather: the shuffle is the same either way.
  ds = (
      grain.MapDataset.range(len(source))
      if gather
      else grain.MapDataset.source(source)
  )
  ds = ds.seed(seed)
  if shuffle:
    ds = ds.shuffle()
  if gather:
    lo = process_index * batch_size
    ds = ds.repeat().batch(
        global_batch,
        drop_remainder=True,
        batch_fn=lambda ids: np.asarray(ids, np.int64)[lo : lo + batch_size],
    )
    ds = ds.map(gather)
  else:
    ds = ds.repeat().batch(batch_size, drop_remainder=True)
  ds = _with_transform(ds, batch_transform)
  return iter(ds.to_iter_dataset(_read_options(num_threads, prefetch)))


def _read_and_stack(source: Sequence[Any], indices: np.ndarray) -> Batch:
  """Reads `source[i]` for each index and stacks them key by key."""
  records = [source[int(i)] for i in indices]
  return {
      key: np.stack([np.asarray(r[key]) for r in records]) for key in records[0]
  }


def iterate_split(
    source: Sequence[Any],
    batch_transform: BatchTransform | None = None,
    batch_size: int = 512,
    num_threads: int = 2,
    prefetch: int = 2,
):
  """Batches of a whole split in source order (the last may be smaller)."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  ds = grain.MapDataset.source(source).batch(batch_size, drop_remainder=False)
  ds = _with_transform(ds, batch_transform)
  return iter(ds.to_iter_dataset(_read_options(num_threads, prefetch)))


def load_split(
    source: Sequence[Any],
    batch_transform: BatchTransform | None = None,
    batch_size: int = 512,
    num_threads: int = 2,
) -> Batch:
  """A whole split as one dict of numpy arrays, in source order.

  Args:
    source: random-access source.
    batch_transform: applied per batch before concatenation.
    batch_size: records per transform call.
    num_threads: batches computed concurrently.

  Returns:
    {key: array [len(source), ...]}.
  """
  if len(source) == 0:
    raise ValueError("cannot load an empty split")
  parts: dict[str, list[np.ndarray]] = {}
  for batch in iterate_split(source, batch_transform, batch_size, num_threads):
    for key, values in batch.items():
      parts.setdefault(key, []).append(np.asarray(values))
  return {key: np.concatenate(values) for key, values in parts.items()}


class ArraySource:
  """Random-access source over a dict of equal-length arrays (in memory).

  `source[i]` is `{key: array[i]}`; used to train from features computed
  once (`cache_features`) instead of once per batch.
  """

  def __init__(self, arrays: Batch):
    lengths = {key: len(value) for key, value in arrays.items()}
    if not lengths or len(set(lengths.values())) != 1:
      raise ValueError(
          f"ArraySource needs arrays of one length; got " f"lengths {lengths}"
      )
    self.arrays = arrays
    self._length = next(iter(lengths.values()))

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> Batch:
    return {key: value[int(index)] for key, value in self.arrays.items()}

  def gather(self, indices: np.ndarray) -> Batch:
    """`{key: array[indices]}`: a whole batch in one indexing per key."""
    return {key: value[indices] for key, value in self.arrays.items()}

  def __repr__(self) -> str:
    return f"ArraySource({self._length} × {sorted(self.arrays)})"


def cache_features(
    source: Sequence[Any],
    batch_transform: BatchTransform | None,
    batch_size: int = 512,
) -> ArraySource:
  """Applies `batch_transform` to a whole split once; an in-memory source.

  For deterministic features of splits that fit in memory (AV-digits
  `pairs`: 1,258 log-mels of [101, 40] = 20 MB), this moves the per-batch
  feature cost (on CPU as much as a training step of the small models) out
  of the training loop. The iterator over it is built and checkpointed exactly as over the
  raw source.
  """
  return ArraySource(load_split(source, batch_transform, batch_size))


class ZipIterator:
  """Several named iterators advanced together: `{name: next(it)}`.

  For steps that read more than one stream (MAMA's train and meta
  batches): `get_state()` / `set_state()` save and restore every member's
  state as one dict, so the loop checkpoints them with no special case
  and a resumed run continues every stream where it stopped.
  """

  def __init__(self, iterators: dict[str, Any]):
    if not iterators:
      raise ValueError("ZipIterator needs at least one iterator")
    for name, it in iterators.items():
      if not (hasattr(it, "get_state") and hasattr(it, "set_state")):
        raise TypeError(
            f"iterator {name!r} has no get_state / " f"set_state: {it!r}"
        )
    self.iterators = dict(iterators)

  def __iter__(self) -> "ZipIterator":
    return self

  def __next__(self) -> dict[str, Any]:
    return {name: next(it) for name, it in self.iterators.items()}

  def get_state(self) -> dict[str, Any]:
    return {name: it.get_state() for name, it in self.iterators.items()}

  def set_state(self, state: dict[str, Any]) -> None:
    if set(state) != set(self.iterators):
      raise ValueError(
          f"iterator state has streams {sorted(state)}, "
          f"expected {sorted(self.iterators)}"
      )
    for name, it in self.iterators.items():
      it.set_state(state[name])
