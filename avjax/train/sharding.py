"""Data-parallel placement: one mesh axis ``data`` over every device.

The state is replicated and each batch is split along its leading axis over
all devices of all processes; ``jax.jit`` then runs the step SPMD, so losses
that need every negative see the global batch exactly as on one device.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
  """A 1-D mesh over all devices (all processes), axis name ``data``."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Returns the per-process batch size; errors if it does not divide."""
  n_dev = mesh.devices.size
  if global_batch_size % n_dev:
    raise ValueError(
        f"config.data.batch_size={global_batch_size} is not divisible by the "
        f"{n_dev} devices of the mesh."
    )
  return global_batch_size // jax.process_count()


def shard_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> Any:
  """Assembles per-process numpy batches into one global, sharded batch."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch
  )


def replicate(tree: Any, mesh: Mesh) -> Any:
  return jax.device_put(tree, replicated(mesh))
