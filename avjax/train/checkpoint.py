"""Checkpoints: orbax ``CheckpointManager`` that never discards a good run.

A checkpoint holds two items:
  * ``state``: the TrainState's saved pytree (step, params, optimiser state,
    RNG, aux) — restored into the shapes/shardings of a freshly built state;
  * ``meta``: JSON with the stage index, the grain iterator state, the run's
    config fingerprint (see ``avjax.train.loop``) and the path → shape/dtype
    record of ``state`` (``state_shapes``).

Saving is asynchronous; orbax commits a step only once it is fully written,
so a run killed mid-save leaves the previous checkpoints intact.

In a multi-process run process 0 lists the checkpoints to try, every read
must succeed on every process, and only process 0 moves a damaged step aside
(the others wait at a barrier, then reload).

Restoring tells three failures apart:
  * the checkpoint does not fit the run (its config fingerprint or its array
    shapes differ from the freshly built state): :class:`CheckpointMismatch`,
    naming the directory and what differs. Nothing is moved: the checkpoints
    are good, the command is wrong.
  * a read fails once: it is retried (after ``retry_delay_s``), since network
    and shared file systems fail transiently.
  * a read fails again: the checkpoint is damaged. It is moved to
    ``<dir>_damaged/`` (kept for inspection, never deleted), a warning is
    logged, and the next older one is tried.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging

from avjax.train import multihost

PyTree = Any
# (step, meta) -> the abstract state tree to restore into.
TemplateFn = Callable[[int, dict[str, Any]], PyTree]
# (step, meta) -> None; raises CheckpointMismatch when the run cannot resume.
CheckFn = Callable[[int, dict[str, Any]], None]


class CheckpointMismatch(ValueError):
  """A readable checkpoint that does not fit the run trying to resume it."""


def state_shapes(tree: PyTree) -> dict[str, list[Any]]:
  """``{path: [shape, dtype]}`` of every array leaf of ``tree`` (for meta)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
      jax.tree_util.keystr(path): [list(leaf.shape), str(leaf.dtype)]
      for path, leaf in leaves
  }


def shape_differences(
    saved: dict[str, list[Any]], expected: dict[str, list[Any]], limit: int = 8
) -> list[str]:
  """Human-readable differences between two :func:`state_shapes` records."""
  diffs = []
  for key in sorted(set(saved) | set(expected)):
    if key not in expected:
      diffs.append(f"{key}: in the checkpoint, not in the model")
    elif key not in saved:
      diffs.append(f"{key}: in the model, not in the checkpoint")
    elif list(saved[key][0]) != list(expected[key][0]) or (
        saved[key][1] != expected[key][1]
    ):
      diffs.append(
          f"{key}: checkpoint {saved[key][1]}{saved[key][0]}, "
          f"model {expected[key][1]}{expected[key][0]}"
      )
  if len(diffs) > limit:
    diffs = diffs[:limit] + [f"... and {len(diffs) - limit} more"]
  return diffs


class Checkpointer:
  """Saves and restores (state tree, meta dict) pairs under ``directory``."""

  def __init__(
      self,
      directory: str,
      max_to_keep: int = 3,
      async_save: bool = True,
      read_attempts: int = 2,
      retry_delay_s: float = 1.0,
  ):
    self.directory = os.path.abspath(directory)
    self._read_attempts = max(1, read_attempts)
    self._retry_delay_s = retry_delay_s
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            create=True,
        ),
        item_names=("state", "meta"),
    )

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state_tree: PyTree, meta: dict[str, Any]) -> None:
    """Saves asynchronously; ``meta`` gains the ``state_shapes`` record."""
    meta = dict(meta, state_shapes=state_shapes(state_tree))
    self._manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state_tree),
            meta=ocp.args.JsonSave(meta),
        ),
    )

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def _read(self, step: int, what: str, fn: Callable[[], Any]) -> Any:
    """Calls ``fn`` on every process, retrying until all of them succeed.

    Raises the last error (on every process: another process's failure
    counts as this one's) when the reads still fail after the retries.
    """
    for attempt in range(self._read_attempts):
      error = None
      try:
        value = fn()
      except CheckpointMismatch:
        raise
      except Exception as e:  # pylint: disable=broad-except
        value, error = None, e
      if multihost.all_true(error is None):
        return value
      if error is None:
        error = OSError(
            f"reading the {what} of checkpoint {step} failed on "
            "another process"
        )
      if attempt + 1 == self._read_attempts:
        raise error
      logging.warning(
          "Reading the %s of checkpoint %d in %s failed (%s: " "%s); retrying.",
          what,
          step,
          self.directory,
          type(error).__name__,
          str(error)[:200],
      )
      time.sleep(self._retry_delay_s)
      self._manager.reload()

  def read_meta(self, step: int) -> dict[str, Any]:
    restored = self._manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
    )
    return dict(restored.meta)

  def check_latest(self, check: CheckFn) -> None:
    """Runs ``check`` on the newest checkpoint whose meta is readable.

    Reads no state, so a run can refuse a workdir of another config before
    it builds its model and data; damaged checkpoints are skipped here and
    moved aside by ``restore_latest``.

    Raises:
      CheckpointMismatch: from ``check``.
    """
    candidates = multihost.broadcast_ints(
        sorted(self._manager.all_steps(), reverse=True)
    )
    for step in candidates:
      try:
        meta = self._read(step, "meta", lambda s=step: self.read_meta(s))
      except Exception:  # pylint: disable=broad-except
        continue
      check(step, meta)
      return

  def restore_latest(
      self, template: PyTree | TemplateFn, check: CheckFn | None = None
  ) -> tuple[int, PyTree, dict[str, Any]] | None:
    """Restores the newest readable checkpoint that fits the run.

    Args:
      template: the abstract state tree (arrays or ``jax.ShapeDtypeStruct``s
        with shardings) to restore into, or a function ``(step, meta) ->``
        that tree, for runs whose state structure depends on the checkpoint
        (e.g. a per-stage optimiser).
      check: called with ``(step, meta)`` before the state is read; raises
        :class:`CheckpointMismatch` when the checkpoint's run differs.

    Returns:
      ``(step, state_tree, meta)``, or None when there is no checkpoint.

    Raises:
      CheckpointMismatch: the newest readable checkpoint does not fit (by
        ``check``, or by its recorded array shapes); nothing is moved.
    """
    # Process 0 lists the candidates, so every process walks the same ones.
    candidates = multihost.broadcast_ints(
        sorted(self._manager.all_steps(), reverse=True)
    )
    for step in candidates:
      try:
        meta = self._read(step, "meta", lambda s=step: self.read_meta(s))
      except Exception as e:  # pylint: disable=broad-except
        self._damaged(step, e)
        continue
      if check is not None:
        check(step, meta)
      tree = template(step, meta) if callable(template) else template
      saved_shapes = meta.get("state_shapes")
      if saved_shapes is not None:
        diffs = shape_differences(saved_shapes, state_shapes(tree))
        if diffs:
          raise CheckpointMismatch(
              f"The checkpoint at step {step} in {self.directory} holds "
              "arrays of other shapes than the model and optimiser this "
              "config builds (" + "; ".join(diffs) + "). The config changed "
              "between runs — use a new --workdir (the checkpoints are left "
              "untouched)."
          )
      try:
        restored = self._read(
            step,
            "state",
            lambda s=step, t=tree: (
                self._manager.restore(
                    s,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(t)),
                )
            ),
        )
      except Exception as e:  # pylint: disable=broad-except
        self._damaged(step, e)
        continue
      return step, restored.state, meta
    return None

  def _damaged(self, step: int, error: Exception) -> None:
    logging.warning(
        "Checkpoint at step %d in %s is damaged (%s: %s); moving it aside "
        "and falling back to the previous one.",
        step,
        self.directory,
        type(error).__name__,
        str(error)[:300],
    )
    self._move_aside(step)

  def _move_aside(self, step: int) -> None:
    """Process 0 moves the step's directory; then everyone reloads."""
    src = os.path.join(self.directory, str(step))
    if jax.process_index() == 0 and os.path.exists(src):
      dst_dir = self.directory.rstrip("/") + "_damaged"
      os.makedirs(dst_dir, exist_ok=True)
      dst = os.path.join(dst_dir, str(step))
      if os.path.exists(dst):  # Damaged twice at the same step: keep both.
        dst += f".{int(time.time())}"
      shutil.move(src, dst)
    multihost.barrier(f"avjax_checkpoint_moved_{step}")
    self._manager.reload()
