"""grain input pipelines over random-access sources.

Training: `source[process_index::process_count]` (each host reads a disjoint
shard), a seeded shuffle reshuffled every epoch, endless repetition, batches
of `batch_size` (batches may span an epoch boundary), then one call of the
batch transform per batch (vectorised features, `avjax.data.features`).
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

from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np

Batch = dict[str, np.ndarray]
BatchTransform = Callable[[Batch], Batch]


def _read_options(num_threads: int, prefetch: int) -> grain.ReadOptions:
    if num_threads < 0 or prefetch < 0:
        raise ValueError(f"num_threads and prefetch must be >= 0, got "
                         f"{num_threads}, {prefetch}")
    return grain.ReadOptions(num_threads=num_threads,
                             prefetch_buffer_size=prefetch)


def _with_transform(ds: grain.MapDataset,
                    transform: BatchTransform | None) -> grain.MapDataset:
    """ds.map(transform); a grain Map or any callable on a batch dict."""
    if transform is None:
        return ds
    if not (isinstance(transform, grain.transforms.Map) or callable(transform)):
        raise TypeError(f"batch_transform must be callable, got {transform!r}")
    return ds.map(transform)


def make_train_iterator(source: Sequence[Any], batch_size: int, seed: int,
                        batch_transform: BatchTransform | None = None,
                        process_index: int = 0, process_count: int = 1,
                        shuffle: bool = True, num_threads: int = 2,
                        prefetch: int = 4) -> grain.DatasetIterator:
    """Endless iterator of transformed training batches.

    Args:
      source: random-access source (len, [i] -> dict of arrays).
      batch_size: examples per batch on this process (drop_remainder).
      seed: shuffle seed (same on every process).
      batch_transform: applied to each stacked batch (dict of [B, ...]
        arrays), e.g. `features.PairsFeatures()`; None keeps raw records.
      process_index, process_count: this host's shard of the source.
      shuffle: reshuffle every epoch; False keeps source order.
      num_threads, prefetch: batch-producing threads and buffered batches.

    Returns:
      A `grain.DatasetIterator`; `next()` gives a dict of numpy arrays with
      leading axis `batch_size`; `get_state()` / `set_state()` checkpoint it.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"need 0 <= process_index < process_count, got "
                         f"{process_index}, {process_count}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shard_size = len(range(process_index, len(source), process_count))
    if shard_size < batch_size:
        raise ValueError(
            f"process {process_index}/{process_count} holds {shard_size} "
            f"examples, fewer than batch_size {batch_size}")
    ds = grain.MapDataset.source(source)
    if process_count > 1:
        ds = ds[process_index::process_count]
    ds = ds.seed(seed)
    if shuffle:
        ds = ds.shuffle()
    ds = ds.repeat().batch(batch_size, drop_remainder=True)
    ds = _with_transform(ds, batch_transform)
    return iter(ds.to_iter_dataset(_read_options(num_threads, prefetch)))


def iterate_split(source: Sequence[Any],
                  batch_transform: BatchTransform | None = None,
                  batch_size: int = 512, num_threads: int = 2,
                  prefetch: int = 2):
    """Batches of a whole split in source order (the last may be smaller)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ds = grain.MapDataset.source(source).batch(batch_size,
                                               drop_remainder=False)
    ds = _with_transform(ds, batch_transform)
    return iter(ds.to_iter_dataset(_read_options(num_threads, prefetch)))


def load_split(source: Sequence[Any],
               batch_transform: BatchTransform | None = None,
               batch_size: int = 512, num_threads: int = 2) -> Batch:
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
    for batch in iterate_split(source, batch_transform, batch_size,
                               num_threads):
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
            raise ValueError(f"ArraySource needs arrays of one length; got "
                             f"lengths {lengths}")
        self.arrays = arrays
        self._length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Batch:
        return {key: value[int(index)] for key, value in self.arrays.items()}

    def __repr__(self) -> str:
        return f"ArraySource({self._length} × {sorted(self.arrays)})"


def cache_features(source: Sequence[Any],
                   batch_transform: BatchTransform | None,
                   batch_size: int = 512) -> ArraySource:
    """Applies `batch_transform` to a whole split once; an in-memory source.

    For deterministic features of splits that fit in memory (AV-digits
    `pairs`: 1,258 log-mels of [101, 40] = 20 MB), this moves the per-batch
    feature cost (~0.1 s per 128 examples on 2 cores) out of the training
    loop. The iterator over it is built and checkpointed exactly as over the
    raw source.
    """
    return ArraySource(load_split(source, batch_transform, batch_size))
