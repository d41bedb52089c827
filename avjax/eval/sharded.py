"""Evaluation that scales with the process count: embed a block, gather.

In a run of P processes, process p embeds only rows ``[p·m, (p+1)·m)`` of
an evaluation split (``m = ceil(N / P)``), on its own local devices with its
own replica of the parameters (a process-local computation, so processes
need not make the same number of calls), and the per-row results are then
gathered so that every process holds all N rows in split order. With one
process every helper here is the identity, so single-process evaluation is
unchanged.

``map_split`` does all of it for a split's records: every evaluator
(``avjax.eval.evaluators``) embeds or predicts through it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

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
  """``params`` as one copy on this process's first local device.

  A global array that spans other processes' devices cannot enter a
  computation that only this process runs; its (replicated) value can.
  Evaluation inputs are not split over a process's devices, so one device
  does the work that a replicated program would repeat on each of them,
  and the program is the same whatever the layout (4 devices in one
  process or 2 in each of two).
  """
  device = jax.local_devices()[0]
  host = jax.tree.map(
      lambda x: np.asarray(
          x.addressable_data(0) if isinstance(x, jax.Array) else x
      ),
      params,
  )
  return jax.device_put(host, device)


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


def _is_text(value: Any) -> bool:
  return isinstance(value, (str, bytes)) or (
      isinstance(value, np.ndarray) and value.dtype.kind in "SUO"
  )


def _as_str(value: Any) -> str:
  if isinstance(value, np.ndarray):
    value = value.item()
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def stack_records(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Records (dicts) → one dict of stacked rows: numpy arrays [b, ...], or
  a list of str for text fields (bytes are decoded as UTF-8)."""
  return {
      key: (
          [_as_str(r[key]) for r in records]
          if _is_text(records[0][key])
          else np.stack([np.asarray(r[key]) for r in records])
      )
      for key in records[0]
  }


def pad_rows(x: np.ndarray, size: int) -> np.ndarray:
  """[n, ...] → [size, ...] by repeating the last row (n <= size)."""
  n = len(x)
  if n >= size:
    return x
  return np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)])


def map_split(
    fn,
    params: PyTree,
    source: Sequence[Any],
    prepare,
    batch_size: int,
) -> dict[str, Any]:
  """Per-row outputs of ``fn`` over a whole split, sharded by process.

  The one helper every evaluation embeds or predicts a split with. Rows are
  read in batches of ``batch_size`` records, stacked (``stack_records``)
  and turned into model inputs by ``prepare``; every input array is padded
  to ``batch_size`` rows by repeating its last row, so ``fn`` compiles once
  (also when the split or a process's block is shorter).

  Args:
    fn: ``(params, inputs) -> {name: [batch_size, ...] or a dict of
      them}`` (jitted by the caller).
    params: the model parameters (global or process-local arrays).
    source: the split's records, random access.
    prepare: ``stacked records -> (inputs, metadata)``: model inputs (numpy
      arrays with one row per record) and per-row metadata (arrays or lists
      of str: labels, ids, captions) returned beside ``fn``'s outputs.
    batch_size: rows per call.

  Returns:
    ``{name: [N, ...]}`` for every output of ``fn`` and every metadata key
    (lists of str for text), in source order, on every process.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  n = len(source)
  if n == 0:
    raise ValueError("cannot evaluate an empty split")
  lo, hi = process_block(n)
  params = local_replica(params)
  # An empty block computes row 0 and keeps none of it, so that every
  # process knows the output shapes for the gather.
  spans = [(i, min(i + batch_size, hi)) for i in range(lo, hi, batch_size)]
  # Every call has ``batch_size`` rows, whatever the split's length and the
  # process count, so ``fn`` compiles once per run.
  outputs: list[PyTree] = []
  arrays: dict[str, list[np.ndarray]] = {}
  texts: dict[str, list[str]] = {}
  for i, j in spans or [(0, 1)]:
    keep = (j - i) if spans else 0
    stacked = stack_records([source[k] for k in range(i, j)])
    inputs, metadata = prepare(stacked)
    padded = {k: pad_rows(np.asarray(v), batch_size) for k, v in inputs.items()}
    outputs.append(
        jax.tree.map(
            lambda v, keep=keep: np.asarray(v)[:keep],
            jax.device_get(fn(params, padded)),
        )
    )
    for name, value in metadata.items():
      if isinstance(value, list):
        texts.setdefault(name, []).extend(value[:keep])
      else:
        arrays.setdefault(name, []).append(np.asarray(value)[:keep])
  out = dict(
      gather_rows(jax.tree.map(lambda *xs: np.concatenate(xs), *outputs), n)
  )
  out.update(gather_rows({k: np.concatenate(v) for k, v in arrays.items()}, n))
  out.update({k: gather_strings(v, n) for k, v in texts.items()})
  return out
