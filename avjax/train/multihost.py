"""Agreement between processes of a multi-process run (no-ops for one).

Every process of a run executes the same loop; where they must take one
decision (which checkpoint to restore, whether a read failed somewhere) or
share host data (each process's data-iterator state), these helpers make
process 0 decide or gather it over JAX's distributed runtime.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def is_multiprocess() -> bool:
  return jax.process_count() > 1


def broadcast_ints(values: list[int]) -> list[int]:
  """Process 0's list of ints, on every process."""
  if not is_multiprocess():
    return list(values)
  n = int(multihost_utils.broadcast_one_to_all(np.int64(len(values))))
  mine = np.zeros((n,), np.int64)
  if jax.process_index() == 0:
    mine[:] = values
  return [int(v) for v in multihost_utils.broadcast_one_to_all(mine)]


def all_true(flag: bool) -> bool:
  """True on every process iff ``flag`` is True on every process."""
  if not is_multiprocess():
    return bool(flag)
  flags = multihost_utils.process_allgather(np.asarray([bool(flag)]))
  return bool(np.all(flags))


def barrier(name: str) -> None:
  """Waits until every process has reached the barrier ``name``."""
  if is_multiprocess():
    multihost_utils.sync_global_devices(name)


def gather_json(obj: Any) -> list[Any]:
  """``[obj of process 0, obj of process 1, ...]`` on every process.

  ``obj`` must be JSON-serialisable (e.g. a grain iterator state).
  """
  if not is_multiprocess():
    return [obj]
  data = np.frombuffer(
      json.dumps(obj, sort_keys=True).encode("utf-8"), np.uint8
  )
  lengths = multihost_utils.process_allgather(np.asarray([data.size]))
  width = int(np.max(lengths))
  padded = np.zeros((width,), np.uint8)
  padded[: data.size] = data
  rows = multihost_utils.process_allgather(padded)
  return [
      json.loads(bytes(row[: int(n)]).decode("utf-8"))
      for row, n in zip(np.asarray(rows), np.ravel(lengths))
  ]
