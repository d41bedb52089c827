"""Evaluation that scales with the process count: embed a block, gather.

In a run of P processes, process p embeds only rows ``[p·m, (p+1)·m)`` of
an evaluation split (``m = ceil(N / P)``), on its own local devices with its
own replica of the parameters (a process-local computation, so processes
need not make the same number of calls), and the per-row results are then
gathered so that every process holds all N rows in split order. With one
process every helper here is the identity, so single-process evaluation is
unchanged.

Typical use in a method::

    lo, hi = sharded.process_block(len(source))
    params = sharded.local_replica(params)
    ... embed rows lo..hi of the split in batches ...
    rows = sharded.gather_rows({"audio": a, "visual": v}, len(source))
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

PyTree = Any


def process_block(
    n: int, process_index: int | None = None, process_count: int | None = None
) -> tuple[int, int]:
  """``(lo, hi)``: the rows of an ``n``-row split this process evaluates."""
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  block = math.ceil(n / count)
  return min(index * block, n), min((index + 1) * block, n)


class RowSlice:
  """Rows ``[lo, hi)`` of a random-access source, as a source."""

  def __init__(self, source: Sequence[Any], lo: int, hi: int):
    if not 0 <= lo <= hi <= len(source):
      raise ValueError(
          f"rows [{lo}, {hi}) are outside a source of " f"{len(source)} rows"
      )
    self.source, self.lo, self.hi = source, lo, hi

  def __len__(self) -> int:
    return self.hi - self.lo

  def __getitem__(self, index: int) -> Any:
    if not 0 <= index < len(self):
      raise IndexError(index)
    return self.source[self.lo + int(index)]


def local_replica(params: PyTree) -> PyTree:
  """``params`` replicated over this process's devices only.

  A global array that spans other processes' devices cannot enter a
  computation that only this process runs; its (replicated) value can.
  """
  if jax.process_count() == 1:
    return params
  mesh = Mesh(np.asarray(jax.local_devices()), ("data",))
  host = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), params)
  return jax.device_put(host, NamedSharding(mesh, P()))


def gather_rows(tree: PyTree, n: int) -> PyTree:
  """All processes' row blocks of ``tree``, concatenated in row order.

  Args:
    tree: a pytree of numpy arrays whose leading axis holds this process's
      rows (``hi - lo`` of :func:`process_block`).
    n: the split's number of rows.

  Returns:
    The same pytree with every leaf ``[n, ...]``, on every process.
  """
  if jax.process_count() == 1:
    return tree
  block = math.ceil(n / jax.process_count())

  def gather(x):
    x = np.asarray(x)
    padded = np.zeros((block,) + x.shape[1:], x.dtype)
    padded[: len(x)] = x
    rows = np.asarray(multihost_utils.process_allgather(padded))
    return rows.reshape((-1,) + x.shape[1:])[:n]

  return jax.tree.map(gather, tree)


def gather_strings(strings: Sequence[str], n: int) -> list[str]:
  """All processes' row blocks of a list of strings, in row order.

  Like :func:`gather_rows` for text (e.g. captions): the strings travel as
  zero-padded UTF-8 bytes.
  """
  if jax.process_count() == 1:
    return list(strings)
  encoded = [s.encode("utf-8") for s in strings]
  longest = max([len(b) for b in encoded] + [0])
  width = int(np.max(multihost_utils.process_allgather(np.int64(longest))))
  table = np.zeros((len(encoded), max(width, 1)), np.uint8)
  lengths = np.zeros((len(encoded),), np.int64)
  for row, b in enumerate(encoded):
    table[row, : len(b)] = np.frombuffer(b, np.uint8)
    lengths[row] = len(b)
  rows = gather_rows({"bytes": table, "length": lengths}, n)
  return [
      bytes(row[:length]).decode("utf-8")
      for row, length in zip(rows["bytes"], rows["length"])
  ]


def sharded_map(
    fn,
    params: PyTree,
    num_rows: int,
    make_batch,
    batch_size: int,
) -> dict[str, np.ndarray]:
  """Per-row outputs of ``fn`` over a whole split, sharded by process.

  Args:
    fn: ``(params, batch) -> {name: [b, ...]}`` (jitted by the caller).
    params: the model parameters (global or local arrays).
    num_rows: the split's number of rows N.
    make_batch: ``(lo, hi) -> (batch, real)``: the inputs of rows
      ``[lo, hi)``, possibly padded to a fixed shape; the first ``real``
      output rows are kept.
    batch_size: rows per call.

  Returns:
    ``{name: [N, ...]}`` in row order, on every process.
  """
  lo, hi = process_block(num_rows)
  params = local_replica(params)
  # An empty block computes row 0 and keeps none of it, so that every
  # process knows the output shapes for the gather.
  spans = [(i, min(i + batch_size, hi)) for i in range(lo, hi, batch_size)]
  outs: dict[str, list[np.ndarray]] = {}
  for i, j in spans or [(0, 1)]:
    batch, real = make_batch(i, j)
    for name, value in fn(params, batch).items():
      outs.setdefault(name, []).append(
          np.asarray(value)[: real if spans else 0]
      )
  return gather_rows({k: np.concatenate(v) for k, v in outs.items()}, num_rows)


def sharded_embed(
    embed_fn,
    params: PyTree,
    data: dict[str, np.ndarray],
    batch_size: int,
    keys: tuple[str, str] = ("audio", "visual"),
) -> dict[str, np.ndarray]:
  """Two-tower embeddings of a whole in-memory split, sharded by process.

  Args:
    embed_fn: ``(params, x_a [b, ...], x_b [b, ...]) -> (e_a, e_b)``, each
      ``[b, E]`` (jitted by the caller).
    params: the model parameters (global or local arrays).
    data: the split's model inputs; ``data[keys[i]]`` is ``[N, ...]``.
    batch_size: rows per call.
    keys: the two input keys; also the output keys.

  Returns:
    ``{keys[0]: [N, E] float32, keys[1]: [N, E] float32}`` on every process.
  """

  def fn(p, batch):
    embedded = embed_fn(p, batch[keys[0]], batch[keys[1]])
    return {k: np.asarray(e, np.float32) for k, e in zip(keys, embedded)}

  return sharded_map(
      fn,
      params,
      len(data[keys[0]]),
      lambda i, j: ({k: data[k][i:j] for k in keys}, j - i),
      batch_size,
  )
