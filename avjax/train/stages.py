"""Curriculum stages: which phase of training a global step belongs to.

``config.stages`` is a sequence of ConfigDicts, each with at least ``name``
and ``steps``; an optional ``batch_size`` (global examples per step, a
multiple of ``config.data.batch_size``) is read by the loop, every other
field (loss, mining, augmentation schedule, …) by the method. The loop jits
one step function per stage (the stage index is a static argument), so
switching stage never retraces within a stage, and the stage index is saved
in the checkpoint so a resumed run continues in the right stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax.numpy as jnp
import ml_collections


@dataclasses.dataclass(frozen=True)
class Stage:
  """One curriculum phase.

  Attributes:
    index: position in ``config.stages``.
    name: the stage's name (for logs).
    start: first global step of the stage (inclusive).
    steps: number of steps in the stage.
    options: the stage's ConfigDict (method-specific fields).
  """

  index: int
  name: str
  start: int
  steps: int
  options: ml_collections.ConfigDict = dataclasses.field(
      compare=False, hash=False
  )

  @property
  def end(self) -> int:
    """First global step after the stage (exclusive)."""
    return self.start + self.steps

  def progress(self, step: Any) -> Any:
    """Fraction of the stage done at global ``step``, in [0, 1].

    Works on Python ints and on traced arrays (inside the jitted step).
    """
    frac = (step - self.start) / max(self.steps, 1)
    if isinstance(frac, float):
      return min(max(frac, 0.0), 1.0)
    return jnp.clip(frac, 0.0, 1.0)


class StageScheduler:
  """Maps global steps to curriculum stages built from ``config.stages``."""

  def __init__(self, stages: Sequence[ml_collections.ConfigDict]):
    if not stages:
      raise ValueError(
          "config.stages is empty: give at least one stage "
          "with `name` and `steps`."
      )
    built, start = [], 0
    for i, cfg in enumerate(stages):
      if not isinstance(cfg, ml_collections.ConfigDict):
        cfg = ml_collections.ConfigDict(dict(cfg))
      for key in ("name", "steps"):
        if key not in cfg:
          raise ValueError(
              f"config.stages[{i}] has no `{key}` field "
              f"(fields: {sorted(cfg.keys())})."
          )
      steps = int(cfg["steps"])
      if steps <= 0:
        raise ValueError(f"config.stages[{i}].steps={steps} must be > 0.")
      built.append(Stage(i, str(cfg["name"]), start, steps, cfg))
      start += steps
    self.stages: tuple[Stage, ...] = tuple(built)
    self.total_steps: int = start

  def __len__(self) -> int:
    return len(self.stages)

  def __getitem__(self, index: int) -> Stage:
    return self.stages[index]

  def stage_at(self, step: int) -> Stage:
    """The stage that global ``step`` (0-based, the next step to run) is in.

    Steps at or beyond ``total_steps`` belong to the last stage.
    """
    for stage in self.stages:
      if step < stage.end:
        return stage
    return self.stages[-1]


def batches_per_step(
    scheduler: StageScheduler, data_batch_size: int
) -> tuple[int, ...]:
  """How many consecutive data batches each stage's step trains on.

  A stage's optional ``batch_size`` is its global number of examples per
  step; the data pipeline batches ``data_batch_size`` (``config.data.
  batch_size``) examples, so the loop concatenates ``batch_size //
  data_batch_size`` of its batches. A stage without ``batch_size`` takes one.

  Raises:
    ValueError: naming ``config.stages[i].batch_size`` when it is not a
      positive multiple of ``data_batch_size``.
  """
  counts = []
  for stage in scheduler.stages:
    size = stage.options.get("batch_size", None)
    if size is None:
      counts.append(1)
      continue
    size = int(size)
    if size < data_batch_size or size % data_batch_size:
      raise ValueError(
          f"config.stages[{stage.index}].batch_size={size} (stage "
          f"{stage.name!r}) must be a positive multiple of "
          f"config.data.batch_size={data_batch_size}: a stage's step "
          "concatenates whole batches of the data pipeline."
      )
    counts.append(size // data_batch_size)
  return tuple(counts)
