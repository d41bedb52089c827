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
  n = len(data[keys[0]])
  lo, hi = process_block(n)
  params = local_replica(params)
  # An empty block embeds row 0 and keeps none of it, so that every process
  # knows the embedding shape for the gather.
  spans = [(i, min(i + batch_size, hi)) for i in range(lo, hi, batch_size)]
  outs = {key: [] for key in keys}
  for i, j in spans or [(0, 1)]:
    embedded = embed_fn(params, data[keys[0]][i:j], data[keys[1]][i:j])
    for key, e in zip(keys, embedded):
      outs[key].append(np.asarray(e, np.float32)[: j - i if spans else 0])
  return gather_rows({key: np.concatenate(v) for key, v in outs.items()}, n)
