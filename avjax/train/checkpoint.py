"""Checkpoints: orbax ``CheckpointManager`` with fall-back on damage.

A checkpoint holds two items:
  * ``state``: the TrainState's saved pytree (step, params, optimiser state,
    RNG, aux) — restored into the shapes/shardings of a freshly built state;
  * ``meta``: JSON with the stage index and the grain iterator state, so a
    resumed run continues in the same stage with the same data order.

Saving is asynchronous; orbax commits a step only once it is fully written,
so a run killed mid-save leaves the previous checkpoints intact. If the newest
committed checkpoint cannot be read, it is moved to ``<dir>_damaged/`` (kept
for inspection, never deleted), a warning is logged, and the next older one is
tried.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
  """Saves and restores (state tree, meta dict) pairs under ``directory``."""

  def __init__(self, directory: str, max_to_keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            create=True),
        item_names=("state", "meta"))

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state_tree: Any, meta: dict[str, Any]) -> None:
    self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state_tree),
                                meta=ocp.args.JsonSave(meta)))

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def restore_latest(self, abstract_state_tree: Any
                     ) -> tuple[int, Any, dict[str, Any]] | None:
    """Restores the newest readable checkpoint.

    Args:
      abstract_state_tree: a pytree of arrays or ``jax.ShapeDtypeStruct``s
        (with shardings) giving the structure to restore into.

    Returns:
      ``(step, state_tree, meta)``, or None when there is no checkpoint.
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state_tree),
                meta=ocp.args.JsonRestore()))
        return step, restored.state, dict(restored.meta)
      except Exception as e:  # pylint: disable=broad-except
        # Any failure to read a committed checkpoint means it is unusable.
        logging.warning(
            "Checkpoint at step %d in %s is damaged (%s: %s); moving it "
            "aside and falling back to the previous one.", step,
            self.directory, type(e).__name__, str(e)[:300])
        self._move_aside(step)
    return None

  def _move_aside(self, step: int) -> None:
    src = os.path.join(self.directory, str(step))
    if jax.process_index() == 0 and os.path.exists(src):
      dst_dir = self.directory.rstrip("/") + "_damaged"
      os.makedirs(dst_dir, exist_ok=True)
      shutil.move(src, os.path.join(dst_dir, str(step)))
    self._manager.reload()
